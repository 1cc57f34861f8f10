//! A node that comes back is used again: after one of five redis-servers is
//! killed and restarted (empty, same port), or paused (SIGSTOP) and resumed,
//! lock acquisitions through `RedisNode` include it again — its key holds
//! the lock's token. The time from the restart / resume to the first
//! acquisition that includes it is printed (RELIABILITY.md reports it),
//! never asserted; the only limit is a generous hang guard.

use std::sync::Arc;
use std::time::{Duration, Instant};

use redlock_core::{Node, Options, Redlock};
use redlock_redis_rs::RedisNode;
use redlock_testkit::conformance::eventually;
use redlock_testkit::server::Reply;
use redlock_testkit::RedisServer;

/// Give up (and fail) if a returned node is not used again within this.
const HANG_GUARD: Duration = Duration::from_secs(60);
const CYCLES: usize = 5;
/// How long a node's acquire may trail the lock's decision.
const STRAGGLER: Duration = Duration::from_millis(200);
/// As in the checker's runs (per-node timeout 100 ms, a tenth of it).
const TTL: Duration = Duration::from_secs(1);

struct Setup {
    servers: Vec<Arc<RedisServer>>,
    redlock: Redlock,
    key: String,
}

async fn setup(name: &str) -> Setup {
    let servers = tokio::task::spawn_blocking(|| {
        (0..5)
            .map(|_| RedisServer::start().map(Arc::new))
            .collect::<Result<Vec<_>, _>>()
    })
    .await
    .unwrap_or_else(|e| panic!("start task: {e}"))
    .unwrap_or_else(|e| panic!("redis-server: {e}"));
    let mut nodes: Vec<Arc<dyn Node>> = Vec::new();
    for s in &servers {
        let node = RedisNode::connect(&s.url())
            .await
            .unwrap_or_else(|e| panic!("connect: {e}"));
        nodes.push(Arc::new(node));
    }
    let prefix = format!("ret:{name}:{}:", std::process::id());
    let redlock = Redlock::from_nodes(nodes, Options::new().key_prefix(prefix.clone()))
        .unwrap_or_else(|e| panic!("redlock: {e}"));
    Setup {
        servers,
        redlock,
        key: format!("{prefix}r"),
    }
}

/// Whether `server` holds `key` with `token` (read over a fresh connection).
async fn holds(server: &Arc<RedisServer>, key: &str, token: &str) -> bool {
    let (server, key) = (server.clone(), key.to_owned());
    let reply = tokio::task::spawn_blocking(move || server.command(&["GET", &key]))
        .await
        .unwrap_or_else(|e| panic!("read task: {e}"));
    matches!(reply, Ok(Reply::Bulk(Some(v))) if v == token)
}

/// One lock, checked on `server`, released. `None` when the lock failed.
/// The lock is decided by the first three answers, so `server`'s own
/// acquire may still be on its way when `lock` returns: it counts if the
/// server holds the token within a short while.
async fn acquisition_includes(s: &Setup, server: &Arc<RedisServer>) -> Option<bool> {
    let lock = s.redlock.lock("r", TTL).await.ok()?;
    let included = eventually(STRAGGLER, || holds(server, &s.key, lock.token())).await;
    let _ = s.redlock.unlock(&lock).await;
    Some(included)
}

/// Acquires until an acquisition includes `server`; returns the time taken
/// and the number of acquisitions.
async fn until_used_again(s: &Setup, server: &Arc<RedisServer>) -> (Duration, u64) {
    let back = Instant::now();
    let mut attempts = 0u64;
    loop {
        attempts += 1;
        if acquisition_includes(s, server).await == Some(true) {
            return (back.elapsed(), attempts);
        }
        assert!(
            back.elapsed() < HANG_GUARD,
            "the returned node was not used again within {HANG_GUARD:?} ({attempts} acquisitions)"
        );
        tokio::task::yield_now().await;
    }
}

/// While the node is out, acquisitions go on without it (not read: a
/// paused server would not answer the read).
async fn lock_without(s: &Setup) {
    for _ in 0..2 {
        let lock = s.redlock.lock("r", TTL).await;
        let lock = lock.unwrap_or_else(|e| panic!("four of five nodes must grant the lock: {e}"));
        let _ = s.redlock.unlock(&lock).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_is_used_again_after_its_restart() {
    let s = setup("kill").await;
    let node = s.servers[4].clone();
    assert_eq!(acquisition_includes(&s, &node).await, Some(true));
    let mut times = Vec::new();
    for _ in 0..CYCLES {
        node.kill();
        lock_without(&s).await;
        let restarting = node.clone();
        tokio::task::spawn_blocking(move || restarting.restart())
            .await
            .unwrap_or_else(|e| panic!("restart task: {e}"))
            .unwrap_or_else(|e| panic!("restart: {e}"));
        times.push(until_used_again(&s, &node).await);
    }
    println!("killed node used again after restart (time, acquisitions): {times:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_node_is_used_again_after_it_resumes() {
    let s = setup("pause").await;
    let node = s.servers[4].clone();
    assert_eq!(acquisition_includes(&s, &node).await, Some(true));
    let mut times = Vec::new();
    for _ in 0..CYCLES {
        node.pause().unwrap_or_else(|e| panic!("pause: {e}"));
        // Resumed also if the check below panics.
        let resume = Resume(node.clone());
        lock_without(&s).await;
        drop(resume);
        times.push(until_used_again(&s, &node).await);
    }
    println!("paused node used again after resume (time, acquisitions): {times:?}");
}

struct Resume(Arc<RedisServer>);

impl Drop for Resume {
    fn drop(&mut self) {
        let _ = self.0.resume();
    }
}
