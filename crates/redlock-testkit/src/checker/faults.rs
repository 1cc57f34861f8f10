//! Faults. Each runs until its [`Stop`] fires and leaves the nodes healthy.

use std::sync::Arc;
use std::time::{Duration, Instant};

use redlock_core::Node;

use crate::fault_proxy::{FaultProxy, Mode};
use crate::server::RedisServer;

use super::*;

pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    tokio::task::spawn_blocking(f).await.ok()
}

/// Pauses `servers` (SIGSTOP) for `paused`, resumes them for `running`, in a
/// loop; resumed at the end.
pub async fn pause_loop(
    servers: Vec<Arc<RedisServer>>,
    paused: Duration,
    running: Duration,
    mut stop: Stop,
) {
    loop {
        if !stop.sleep(running).await {
            break;
        }
        let paused_at = Instant::now();
        for s in &servers {
            if let Err(e) = s.pause() {
                tracing::warn!("pause failed: {e}");
            }
        }
        let go_on = stop.sleep(paused).await;
        for s in &servers {
            if let Err(e) = s.resume() {
                tracing::warn!("resume failed: {e}");
            }
        }
        crate::timeline::fault(format!("SIGSTOP {} nodes", servers.len()), paused_at);
        if !go_on {
            break;
        }
    }
}

/// Kills `servers`, keeps them down for `down` (longer than the TTL: the
/// distlock page's delayed restart), restarts them empty, leaves them up for
/// `up`, in a loop; running at the end.
pub async fn kill_restart_loop(
    servers: Vec<Arc<RedisServer>>,
    down: Duration,
    up: Duration,
    mut stop: Stop,
) {
    loop {
        if !stop.sleep(up).await {
            break;
        }
        let killed_at = Instant::now();
        for s in &servers {
            s.kill();
        }
        // The restart happens even when the run ends meanwhile.
        let _ = stop.sleep(down).await;
        for s in &servers {
            let s = s.clone();
            match blocking(move || s.restart()).await {
                Some(Err(e)) => tracing::warn!("restart failed: {e}"),
                None => tracing::warn!("restart task failed"),
                Some(Ok(())) => {}
            }
        }
        crate::timeline::fault(format!("{} nodes down", servers.len()), killed_at);
        if stop.is_stopped() {
            break;
        }
    }
}

/// Latency with jitter on every proxy, and one random proxy's connections
/// reset every `reset_every`; healed at the end.
pub async fn proxy_chaos(
    proxies: Vec<Arc<FaultProxy>>,
    fixed: Duration,
    jitter: Duration,
    reset_every: Duration,
    mut stop: Stop,
) {
    for p in &proxies {
        p.set_both(Mode::delay(fixed, jitter));
    }
    let mut i = 0usize;
    while stop.sleep(reset_every).await {
        if let Some(p) = proxies.get(i % proxies.len().max(1)) {
            p.reset();
            crate::timeline::fault("connections reset", Instant::now());
        }
        i = i.wrapping_add(1);
    }
    for p in &proxies {
        p.heal();
    }
}

/// Deletes the lock key on `nodes` whenever it exists, checking every
/// `every`: an early expiry on those nodes (what a clock jump forward or a
/// lost key does). Uses the nodes' own release (a `DEL` of whatever token is
/// there).
pub async fn expire_early(nodes: Vec<Arc<dyn Node>>, key: String, every: Duration, mut stop: Stop) {
    let keys = vec![key];
    let began = Instant::now();
    while stop.sleep(every).await {
        for node in &nodes {
            if let Ok(Ok(states)) =
                tokio::time::timeout(Duration::from_millis(200), node.inspect(&keys)).await
            {
                for s in states {
                    if let Some(holder) = s.holder {
                        let _ = tokio::time::timeout(
                            Duration::from_millis(200),
                            node.release(std::slice::from_ref(&s.key), &holder),
                        )
                        .await;
                    }
                }
            }
        }
    }
    crate::timeline::fault(
        format!("keys deleted early on {} nodes", nodes.len()),
        began,
    );
}

/// Kills and at once restarts `servers` (no persistence: they come back
/// empty, lock keys and fencing counters gone), every `every`; running at
/// the end.
pub async fn restart_loop(servers: Vec<Arc<RedisServer>>, every: Duration, mut stop: Stop) {
    while stop.sleep(every).await {
        let killed_at = Instant::now();
        for s in &servers {
            s.kill();
        }
        let restarts = servers
            .iter()
            .cloned()
            .map(|s| blocking(move || s.restart()));
        for r in futures_util::future::join_all(restarts).await {
            match r {
                Some(Err(e)) => tracing::warn!("restart failed: {e}"),
                None => tracing::warn!("restart task failed"),
                Some(Ok(())) => {}
            }
        }
        crate::timeline::fault(
            format!("{} nodes restarted empty", servers.len()),
            killed_at,
        );
    }
}
