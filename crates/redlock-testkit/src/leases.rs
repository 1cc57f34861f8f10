//! End-to-end bodies for scoped locks, release on drop, status and fencing,
//! against real servers with faults. Every adapter's tests call them with its
//! own nodes, connected to `servers` in the same order.

use std::sync::Arc;
use std::time::{Duration, Instant};

use redlock_core::{LockError, LockOptions, Node, Options, Redlock, Verdict};

use crate::server::RedisServer;
use crate::wait::eventually;

fn redlock(nodes: Vec<Arc<dyn Node>>) -> Redlock {
    match Redlock::from_nodes(
        nodes,
        Options::new()
            .retry_count(3)
            .retry_delay(Duration::from_millis(20)),
    ) {
        Ok(r) => r,
        Err(e) => panic!("valid options rejected: {e}"),
    }
}

/// How many of `servers` still hold `key`.
pub fn holders(servers: &[RedisServer], key: &str) -> usize {
    servers
        .iter()
        .filter(|s| s.text(&["EXISTS", key]).is_ok_and(|t| t == "1"))
        .count()
}

/// Waits (polling, bounded by `limit`) until no server holds `key`; returns
/// how long it took, or `None` if it never happened.
pub async fn until_gone(servers: &[RedisServer], key: &str, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    eventually(limit, || async { holders(servers, key) == 0 })
        .await
        .then(|| started.elapsed())
}

fn resume_all(servers: &[RedisServer]) {
    for s in servers {
        if s.is_paused() {
            if let Err(e) = s.resume() {
                panic!("resume failed: {e}");
            }
        }
    }
}

/// A majority paused while `using` runs: `lost()` fires before
/// `valid_until`, the future is cancelled, `using` returns `Lost`, and after
/// the nodes resume nothing is left.
pub async fn majority_paused_during_using(servers: &[RedisServer], nodes: Vec<Arc<dyn Node>>) {
    assert!(servers.len() >= 3);
    let redlock = redlock(nodes);
    let majority = servers.len() / 2 + 1;
    let key = "leases:majority-paused";
    let ttl = Duration::from_millis(3000);
    let mut reached_after_loss = false;
    let (in_time_tx, in_time_rx) = tokio::sync::oneshot::channel();
    let result = redlock
        .using(key, ttl, |lease| {
            let reached = &mut reached_after_loss;
            async move {
                // A watcher outside the scoped future sees when the loss fires.
                let watcher = lease.clone();
                let valid_until = lease.valid_until();
                tokio::spawn(async move {
                    watcher.lost().await;
                    let _ = in_time_tx.send(Instant::now() < valid_until);
                });
                for s in &servers[..majority] {
                    if let Err(e) = s.pause() {
                        panic!("pause failed: {e}");
                    }
                }
                // Cancel mode drops this future at the loss; were it not
                // dropped, it would finish and `using` would return Ok.
                tokio::time::sleep(ttl * 3).await;
                *reached = true;
            }
        })
        .await;
    let lost_in_time = in_time_rx.await.ok();
    resume_all(servers);
    assert!(
        matches!(result, Err(LockError::Lost(_))),
        "expected Lost, got {result:?}"
    );
    assert_eq!(
        lost_in_time,
        Some(true),
        "lost() did not fire before valid_until"
    );
    assert!(!reached_after_loss, "the future ran on after the loss");
    assert!(
        until_gone(servers, key, ttl * 3).await.is_some(),
        "keys left after the paused nodes resumed"
    );
}

/// A minority paused while `using` runs: extensions keep the lock.
pub async fn minority_paused_during_using(servers: &[RedisServer], nodes: Vec<Arc<dyn Node>>) {
    assert!(servers.len() >= 3);
    let redlock = redlock(nodes);
    let minority = (servers.len() - 1) / 2;
    let key = "leases:minority-paused";
    let ttl = Duration::from_millis(1500);
    let result = redlock
        .using(key, ttl, |lease| async move {
            for s in &servers[..minority] {
                if let Err(e) = s.pause() {
                    panic!("pause failed: {e}");
                }
            }
            // Work for three TTLs; the lease must hold throughout.
            let until = Instant::now() + ttl * 3;
            let mut held_all_along = true;
            while Instant::now() < until {
                tokio::time::sleep(ttl / 6).await;
                held_all_along &= lease.is_held();
            }
            held_all_along
        })
        .await;
    resume_all(servers);
    assert_eq!(
        result.ok(),
        Some(true),
        "the lease was lost with only a minority paused"
    );
    assert!(
        until_gone(servers, key, ttl * 3).await.is_some(),
        "keys left after resume"
    );
}

/// A lock dropped without release is released in the background, long
/// before its TTL.
pub async fn dropped_lock_is_released(servers: &[RedisServer], nodes: Vec<Arc<dyn Node>>) {
    let redlock = redlock(nodes);
    let key = "leases:dropped";
    let lock = match redlock.lock(key, Duration::from_secs(60)).await {
        Ok(l) => l,
        Err(e) => panic!("lock failed: {e}"),
    };
    assert!(holders(servers, key) >= redlock.quorum());
    drop(lock);
    let gone = until_gone(servers, key, Duration::from_secs(5)).await;
    assert!(gone.is_some(), "keys of a dropped lock stayed (TTL 60 s)");
}

/// Successive holders get strictly increasing fencing tokens, also when the
/// quorums differ because a different minority is paused each time.
pub async fn fencing_tokens_increase(servers: &[RedisServer], nodes: Vec<Arc<dyn Node>>) {
    let n = servers.len();
    let redlock = redlock(nodes);
    let key = "leases:fenced";
    let minority = (n - 1) / 2;
    let mut last = 0u64;
    for round in 0..n {
        let paused: Vec<usize> = (0..minority).map(|i| (round + i) % n).collect();
        for &i in &paused {
            if let Err(e) = servers[i].pause() {
                panic!("pause failed: {e}");
            }
        }
        let lock = match redlock
            .acquire(&LockOptions::new(key, Duration::from_secs(5)).fenced(true))
            .await
        {
            Ok(l) => l,
            Err(e) => panic!("fenced lock failed in round {round}: {e}"),
        };
        let fence = lock.fence().unwrap_or(0);
        assert!(
            fence > last,
            "round {round}: fence {fence} not above {last}"
        );
        last = fence;
        if let Err(e) = lock.unlock().await {
            panic!("unlock failed: {e}");
        }
        resume_all(servers);
    }
}

/// A storage that accepts a write only with a fencing token at least as high
/// as every token it has seen.
#[derive(Debug, Default)]
pub struct FencedStorage {
    highest: u64,
    /// The accepted writes, in order.
    pub writes: Vec<(u64, String)>,
}

impl FencedStorage {
    /// Accepts `value` if `fence` is not below the highest seen.
    pub fn write(&mut self, fence: u64, value: &str) -> Result<(), u64> {
        if fence < self.highest {
            return Err(self.highest);
        }
        self.highest = fence;
        self.writes.push((fence, value.to_owned()));
        Ok(())
    }
}

/// An old holder paused past its TTL while a new holder wrote: the storage
/// rejects the old holder's late write by its fencing token.
pub async fn stale_holder_is_fenced_off(servers: &[RedisServer], nodes: Vec<Arc<dyn Node>>) {
    let redlock = redlock(nodes);
    let key = "leases:stale";
    let ttl = Duration::from_millis(300);
    let mut storage = FencedStorage::default();
    let old = match redlock
        .acquire(&LockOptions::new(key, ttl).fenced(true))
        .await
    {
        Ok(l) => l,
        Err(e) => panic!("first lock failed: {e}"),
    };
    let old_fence = old.fence().unwrap_or(0);
    // The old holder stalls (a GC pause, a stopped VM) until its keys expire.
    old.leave_to_ttl();
    assert!(until_gone(servers, key, ttl * 10).await.is_some());
    let new = match redlock
        .acquire(&LockOptions::new(key, ttl * 10).fenced(true))
        .await
    {
        Ok(l) => l,
        Err(e) => panic!("second lock failed: {e}"),
    };
    let new_fence = new.fence().unwrap_or(0);
    assert!(new_fence > old_fence);
    assert!(storage.write(new_fence, "new holder").is_ok());
    // The old holder wakes up and writes: rejected.
    assert_eq!(storage.write(old_fence, "old holder"), Err(new_fence));
    assert_eq!(storage.writes, vec![(new_fence, "new holder".to_owned())]);
    if let Err(e) = new.unlock().await {
        panic!("unlock failed: {e}");
    }
}

/// `status` on a free resource, one held by us, one held by another owner,
/// and with a majority of nodes paused.
pub async fn status_verdicts(servers: &[RedisServer], nodes: Vec<Arc<dyn Node>>) {
    let redlock = redlock(nodes);
    let key = "leases:status";
    let free = match redlock.status(key).await {
        Ok(s) => s,
        Err(e) => panic!("status failed: {e}"),
    };
    assert_eq!(free[0].verdict, Verdict::Free);
    let lock = match redlock.lock(key, Duration::from_secs(10)).await {
        Ok(l) => l,
        Err(e) => panic!("lock failed: {e}"),
    };
    match lock.status().await[0].verdict {
        Verdict::HeldByUs { remaining } => assert!(remaining > Duration::from_secs(8)),
        ref v => panic!("expected held by us, got {v}"),
    }
    let seen = match redlock.status(key).await {
        Ok(s) => s,
        Err(e) => panic!("status failed: {e}"),
    };
    assert!(
        matches!(seen[0].verdict, Verdict::HeldByOther { .. }),
        "{}",
        seen[0].verdict
    );
    let shown = format!("{:?}", seen[0]);
    assert!(
        !shown.contains(lock.token()),
        "another owner's token shown in full"
    );
    let majority = servers.len() / 2 + 1;
    for s in &servers[..majority] {
        if let Err(e) = s.pause() {
            panic!("pause failed: {e}");
        }
    }
    let unknown = redlock.status(key).await.map(|s| s[0].verdict.clone());
    resume_all(servers);
    assert_eq!(unknown.ok(), Some(Verdict::Unknown));
    if let Err(e) = lock.unlock().await {
        panic!("unlock failed: {e}");
    }
    // `unlock` returns once a quorum answered; the nodes that were paused
    // work off their backlog and follow.
    assert!(
        until_gone(servers, key, Duration::from_secs(5))
            .await
            .is_some(),
        "keys left after unlock"
    );
}

/// Five fresh servers and a node on each, made by `connect(url)`.
pub async fn five_nodes<F, Fut>(connect: F) -> (Vec<RedisServer>, Vec<Arc<dyn Node>>)
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Arc<dyn Node>>,
{
    let mut servers = Vec::with_capacity(5);
    let mut nodes = Vec::with_capacity(5);
    for _ in 0..5 {
        let server = match RedisServer::start() {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        nodes.push(connect(server.url()).await);
        servers.push(server);
    }
    (servers, nodes)
}

/// Defines one `#[tokio::test]` per body of this module, each on five fresh
/// servers with nodes made by `$connect` (an `Fn(String) -> impl Future<Output
/// = Arc<dyn Node>>`).
#[macro_export]
macro_rules! lease_tests {
    ($connect:expr) => {
        $crate::lease_tests!(@one $connect,
            majority_paused_during_using,
            minority_paused_during_using,
            dropped_lock_is_released,
            fencing_tokens_increase,
            stale_holder_is_fenced_off,
            status_verdicts
        );
    };
    (@one $connect:expr, $($name:ident),+) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let (servers, nodes) = $crate::leases::five_nodes($connect).await;
                $crate::leases::$name(&servers, nodes).await;
            }
        )+
    };
}
