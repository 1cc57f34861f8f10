//! Holders of a lock on a Sentinel deployment while its master is killed
//! and the replica promoted, again and again: [`failover`].
//!
//! Redlock over one replicated node trusts the master's acknowledgement.
//! Replication is asynchronous, so a master that acknowledged a lock write
//! and died before its replica received it hands the key's absence to the
//! promoted replica, and a second client acquires while the first still
//! holds the lock. This run makes that window likely and counts what
//! follows with the checker:
//!
//! 1. With [`Failovers::stop_replica`], the replica is stopped (SIGSTOP)
//!    and the master drops its replication link (`CLIENT KILL TYPE
//!    replica`): a replica that fell behind (a link that broke and is
//!    being re-established, a stalled host). From here on, writes exist on
//!    the master only. (A stopped replica alone loses nothing: what the
//!    master sent waits in its socket buffer and arrives when it
//!    continues.)
//! 2. The run waits until the master holds a new token (a new holder, or
//!    an attempt of one), at most [`Failovers::window`], then
//!    [`Failovers::grace`] more so the holder's reply reaches it.
//! 3. The master is killed (SIGKILL, its data gone), the replica resumed;
//!    the sentinels promote it; the old master is restarted empty and
//!    becomes the new master's replica.
//!
//! A holder whose write the replica missed keeps working; the promoted
//! replica does not have its key, so the next contender to ask gets it.
//! With the holders' work longer than the failover and the TTL short
//! enough that the previous holder's leftover key expires on the replica
//! first (see [`failover`] for the numbers), each lost write shows as an
//! overlap in the [`Report`].

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use redlock_core::Node;

use crate::server::{raw_command, Sentinel};

use super::*;

/// How a [`failover`] run fails the master over.
#[derive(Debug, Clone)]
pub struct Failovers {
    /// Failovers to go through; the run ends after the last one.
    pub count: u32,
    /// Stop the replica (SIGSTOP) and cut its replication link before each
    /// kill, so that writes the master acknowledges meanwhile never reach
    /// it. Without, the replica is as current as replication keeps it.
    pub stop_replica: bool,
    /// The longest wait for a new token on the master before it is killed
    /// anyway.
    pub window: Duration,
    /// The time between seeing the new token and the kill.
    pub grace: Duration,
}

impl Failovers {
    /// `count` failovers with the replica stopped before each kill, a
    /// window of 10 s and a grace of 100 ms.
    pub fn new(count: u32) -> Self {
        Failovers {
            count,
            stop_replica: true,
            window: Duration::from_secs(10),
            grace: Duration::from_millis(100),
        }
    }

    /// Sets [`Failovers::stop_replica`].
    pub fn stop_replica(mut self, stop: bool) -> Self {
        self.stop_replica = stop;
        self
    }

    /// Sets [`Failovers::window`].
    pub fn window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// Sets [`Failovers::grace`].
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }
}

/// The outcome of a [`failover`] run.
#[derive(Debug, Clone, Default)]
pub struct FailoverReport {
    /// The checker's report over the whole run.
    pub report: Report,
    /// Failovers completed (master killed, replica promoted, old master
    /// back as its replica).
    pub failovers: u32,
    /// Failovers in which the master held a new token before the kill.
    pub new_token_before_kill: u32,
    /// Failovers that could not be carried out, and why.
    pub errors: Vec<String>,
}

impl fmt::Display for FailoverReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}; failovers {} (new token on the master before the kill in {})",
            self.report, self.failovers, self.new_token_before_kill
        )?;
        if !self.errors.is_empty() {
            write!(f, "; failover errors {:?}", self.errors)?;
        }
        Ok(())
    }
}

#[derive(Default)]
struct Counts {
    failovers: AtomicU32,
    new_tokens: AtomicU32,
    errors: Mutex<Vec<String>>,
}

impl Counts {
    fn error(&self, e: String) {
        tracing::warn!("failover: {e}");
        self.errors
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(e);
    }
}

/// Runs the checker on a fresh Sentinel deployment (a master, one replica,
/// three sentinels; stopped afterwards) through `failovers.count`
/// failovers. `make` turns the sentinels' URLs into a node of the adapter
/// under test that follows the master named [`Sentinel::MASTER_NAME`];
/// every contender gets its own. The Redlock has that one node.
///
/// The run ends after the last failover; [`Config::acquisitions`] is
/// ignored. For a lost write to show as an overlap, the holders' work
/// ([`Config::hold`]) must outlast the failover (about 2 s with the
/// sentinels' `down-after-milliseconds` of 1 s) and exceed half the TTL
/// (the holder before it released its key on the master only, so the
/// replica keeps that key until its TTL ends), and stay below two thirds
/// of the TTL (a scoped lock extends then, pushing that leftover key's
/// expiry back): TTL 8 s and work 5 s do.
///
/// ```no_run
/// use std::sync::Arc;
/// use std::time::Duration;
/// use redlock_core::Node;
/// use redlock_testkit::checker::{failover, Config, Failovers};
///
/// # async fn node(sentinels: Vec<String>) -> Result<Arc<dyn Node>, String> { unimplemented!() }
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let config = Config::new("failover")
///     .ttl(Duration::from_secs(8))
///     .hold(Duration::from_secs(5));
/// let run = failover(config, Failovers::new(5), node).await?;
/// println!("{run}");
/// # Ok(()) }
/// ```
pub async fn failover<M, Fut>(
    base: Config,
    failovers: Failovers,
    make: M,
) -> Result<FailoverReport, CheckError>
where
    M: Fn(Vec<String>) -> Fut,
    Fut: Future<Output = Result<Arc<dyn Node>, String>>,
{
    let deployment = blocking(Sentinel::start)
        .await
        .ok_or_else(|| CheckError::Setup("sentinel start task failed".into()))?
        .map_err(|e| CheckError::Setup(e.to_string()))?;
    let deployment = Arc::new(deployment);
    let urls = deployment.sentinel_urls();
    let mut clients = Vec::with_capacity(base.contenders.max(1));
    for _ in 0..base.contenders.max(1) {
        clients.push(vec![make(urls.clone()).await.map_err(CheckError::Setup)?]);
    }
    let per_failover = failovers.window + Duration::from_secs(60);
    let config = base
        .acquisitions(u64::MAX)
        .min_duration(Duration::ZERO)
        .max_duration(per_failover * failovers.count.max(1));
    let counts = Arc::new(Counts::default());
    let key = config.key();
    let fault = {
        let deployment = deployment.clone();
        let counts = counts.clone();
        move |stop| failover_loop(deployment, key, failovers, counts, stop)
    };
    let report = run_with(clients, config, fault, true).await?;
    let errors = std::mem::take(&mut *counts.errors.lock().unwrap_or_else(PoisonError::into_inner));
    let run = FailoverReport {
        report,
        failovers: counts.failovers.load(Ordering::Relaxed),
        new_token_before_kill: counts.new_tokens.load(Ordering::Relaxed),
        errors,
    };
    // The deployment stops when the last handle goes.
    drop(deployment);
    Ok(run)
}

/// The token under `key` on the server at `port` (`None`: no key, or no
/// answer).
fn token_at(port: u16, key: &str) -> Option<String> {
    let reply = raw_command(port, None, &["GET", key], Duration::from_secs(1)).ok()?;
    let text = reply.text();
    (!text.is_empty() && !text.starts_with('-')).then_some(text)
}

async fn failover_loop(
    deployment: Arc<Sentinel>,
    key: String,
    failovers: Failovers,
    counts: Arc<Counts>,
    mut stop: Stop,
) {
    for _ in 0..failovers.count {
        if stop.is_stopped() {
            break;
        }
        let d = deployment.clone();
        let lag = failovers.stop_replica;
        let Some((port, paused)) = blocking(move || {
            let port = d.current_master().port();
            let paused = lag && d.current_replica().pause().is_ok();
            if paused {
                // What the master sent before is in the stopped replica's
                // socket buffer and reaches it when it continues; what the
                // master takes after the link is cut reaches nobody.
                if let Err(e) = raw_command(
                    port,
                    None,
                    &["CLIENT", "KILL", "TYPE", "replica"],
                    Duration::from_secs(1),
                ) {
                    tracing::warn!("cutting the replication link failed: {e}");
                }
            }
            (port, paused)
        })
        .await
        else {
            counts.error("setup task failed".into());
            break;
        };
        if lag && !paused {
            counts.error("could not stop the replica".into());
        }
        let k = key.clone();
        let before = blocking(move || token_at(port, &k)).await.flatten();
        // Polls the master for a token other than the one held when the
        // replica stopped: a write the replica will not have.
        let began = Instant::now();
        let stopped_at = began;
        let mut changed = false;
        while began.elapsed() < failovers.window && !stop.is_stopped() {
            let k = key.clone();
            let now = blocking(move || token_at(port, &k)).await.flatten();
            if now.is_some() && now != before {
                changed = true;
                break;
            }
            if !stop.sleep(Duration::from_millis(2)).await {
                break;
            }
        }
        if changed {
            counts.new_tokens.fetch_add(1, Ordering::Relaxed);
            // The fault's own timing: the acknowledged holder's reply
            // travels meanwhile.
            let _ = stop.sleep(failovers.grace).await;
        }
        let killed_at = Instant::now();
        let d = deployment.clone();
        let result = blocking(move || {
            d.kill_master(|replica| {
                if replica.is_paused() {
                    if let Err(e) = replica.resume() {
                        tracing::warn!("resume failed: {e}");
                    }
                }
            })
        })
        .await;
        match result {
            Some(Ok(_)) => {
                counts.failovers.fetch_add(1, Ordering::Relaxed);
                if paused {
                    crate::timeline::fault("replica stopped", stopped_at);
                }
                crate::timeline::fault("master killed until the old one replicates", killed_at);
            }
            Some(Err(e)) => {
                counts.error(e.to_string());
                break;
            }
            None => {
                counts.error("failover task failed".into());
                break;
            }
        }
    }
    // A replica still stopped (the loop left early) runs again.
    let d = deployment.clone();
    let _ = blocking(move || {
        for s in d.data_servers() {
            if s.is_paused() {
                let _ = s.resume();
            }
        }
    })
    .await;
}
