//! Checks for a node that stops answering, shared by every adapter: public
//! async functions over a [`NodeFactory`], like the [`conformance`] suite.
//! Each starts its own `redis-server` processes on free ports (stopped when
//! the check ends, also when it panics) and panics with a message on a
//! violation.
//!
//! - [`stalled_node_stays_bounded`]: a node SIGSTOPped under a sustained
//!   lock/unlock loop owes at most its backlog limit, and after SIGCONT
//!   nothing is left on any server.
//! - [`quit_closes_connections`], [`quit_is_bounded`],
//!   [`drop_closes_connections`]: no connection of ours stays open.
//! - [`extend_reaches_paused_node`]: an extend is sent to every node, also
//!   to one that answers late.
//! - [`released_lock_has_no_validity`].
//!
//! [`conformance`]: crate::conformance

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redlock_core::{Node, Options, Redlock};

use crate::conformance::{eventually as until, make, unique_prefix, NodeFactory, Target};
use crate::server::{RedisServer, Reply};

/// The TTL of the locks the checks take.
const TTL: Duration = Duration::from_secs(10);
/// How long a condition on the servers may take to come true before a
/// check fails: a bound against hanging, not a measure of speed.
const PATIENCE: Duration = Duration::from_secs(30);

fn servers(n: usize) -> Vec<RedisServer> {
    (0..n)
        .map(|_| RedisServer::start().expect("redis-server starts"))
        .collect()
}

async fn nodes(f: &dyn NodeFactory, servers: &[RedisServer]) -> Vec<Arc<dyn Node>> {
    let mut nodes = Vec::with_capacity(servers.len());
    for s in servers {
        nodes.push(make(f, &Target::Single(s.url())).await);
    }
    nodes
}

/// `DBSIZE` of `server`, `None` when it does not answer.
pub fn dbsize(server: &RedisServer) -> Option<i64> {
    match server.command(&["DBSIZE"]) {
        Ok(Reply::Int(n)) => Some(n),
        _ => None,
    }
}

/// Client connections on `server`, not counting the one that asks; `None`
/// when it does not answer.
pub fn client_connections(server: &RedisServer) -> Option<usize> {
    let list = server.text(&["CLIENT", "LIST"]).ok()?;
    Some(
        list.lines()
            .filter(|l| !l.trim().is_empty())
            // The asking connection: its current command is CLIENT LIST
            // (`cmd=client|list` since Redis 7, `cmd=client` before).
            .filter(|l| !l.contains(" cmd=client|list ") && !l.contains(" cmd=client "))
            .count(),
    )
}

/// This process's resident set size in KiB (Linux), if known.
pub fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// What [`stalled_node_stays_bounded`] saw.
#[derive(Debug, Clone, Default)]
pub struct StallReport {
    /// The limit the node was built with.
    pub limit: usize,
    /// The largest `outstanding()` of the stopped node while it was stopped
    /// (`None` when the node keeps no count).
    pub max_outstanding: Option<usize>,
    /// How often the count was read.
    pub samples: usize,
    /// Lock/unlock pairs completed while the node was stopped.
    pub pairs_during: u64,
    /// Lock attempts that failed while the node was stopped.
    pub failures_during: u64,
    /// This process's RSS a quarter into the stop, in KiB.
    pub rss_early_kib: Option<u64>,
    /// This process's RSS at the end of the stop, in KiB.
    pub rss_end_kib: Option<u64>,
    /// `DBSIZE` of every server once drained (or when the drain gave up).
    pub keys_left: Vec<Option<i64>>,
    /// How long after SIGCONT every server was empty.
    pub drain: Option<Duration>,
}

/// A node SIGSTOPped for `stall` (≥ 20 s to mean something) under one task
/// running a sustained lock/unlock loop (TTL 10 s, no retries, a new
/// resource each time) through a [`Redlock`] over `n` servers, the last of
/// them stopped: its `outstanding()` count, read every 10 ms, never goes
/// above `limit` + 1 (the limit the factory's nodes were built with; the one
/// more is the release of the last acquire admitted, which is always sent),
/// locks keep being taken, and once the node is continued and has drained,
/// every server's `DBSIZE` is 0: each acquire that reached it was followed
/// there by its release.
///
/// Returns what it measured (RSS, throughput, keys) for the caller to
/// print; panics after measuring when a bound was broken.
pub async fn stalled_node_stays_bounded(
    f: &dyn NodeFactory,
    n: usize,
    stall: Duration,
    limit: usize,
) -> StallReport {
    assert!(n >= 3, "a stall check needs at least 3 servers");
    let servers = servers(n);
    let nodes = nodes(f, &servers).await;
    let stopped = nodes[n - 1].clone();
    let prefix = unique_prefix("stall");
    let redlock = Redlock::from_nodes(
        nodes.clone(),
        Options::new().key_prefix(prefix.clone()).retry_count(0),
    )
    .expect("valid options");

    let stop = Arc::new(AtomicBool::new(false));
    let pairs = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(AtomicU64::new(0));
    let worker = {
        let (redlock, stop, pairs, failures) = (
            redlock.clone(),
            stop.clone(),
            pairs.clone(),
            failures.clone(),
        );
        tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                match redlock.lock(format!("r{i}"), TTL).await {
                    Ok(lock) => {
                        if redlock.unlock(&lock).await.is_ok() {
                            pairs.fetch_add(1, Ordering::Relaxed);
                        } else {
                            failures.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Err(_) => {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        })
    };
    // Healthy first: the loop runs.
    assert!(
        until(PATIENCE, || {
            let pairs = pairs.clone();
            async move { pairs.load(Ordering::Relaxed) >= 50 }
        })
        .await,
        "the lock/unlock loop made no progress on healthy servers"
    );

    servers[n - 1].pause().expect("SIGSTOP");
    let stopped_at = Instant::now();
    let (pairs_before, failures_before) = (
        pairs.load(Ordering::Relaxed),
        failures.load(Ordering::Relaxed),
    );
    let mut report = StallReport {
        limit,
        ..StallReport::default()
    };
    let mut over = None;
    while stopped_at.elapsed() < stall {
        let now = stopped.outstanding();
        report.samples += 1;
        if let Some(c) = now {
            report.max_outstanding = Some(report.max_outstanding.unwrap_or(0).max(c));
            if c > limit + 1 && over.is_none() {
                over = Some((stopped_at.elapsed(), c));
            }
        }
        if report.rss_early_kib.is_none() && stopped_at.elapsed() >= stall / 4 {
            report.rss_early_kib = rss_kib();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    report.rss_end_kib = rss_kib();
    report.pairs_during = pairs.load(Ordering::Relaxed) - pairs_before;
    report.failures_during = failures.load(Ordering::Relaxed) - failures_before;
    stop.store(true, Ordering::Relaxed);
    let finished = tokio::time::timeout(PATIENCE, worker).await;

    servers[n - 1].resume().expect("SIGCONT");
    let resumed = Instant::now();
    let drained = until(PATIENCE, || async {
        servers.iter().all(|s| dbsize(s) == Some(0))
    })
    .await;
    if drained {
        report.drain = Some(resumed.elapsed());
    }
    report.keys_left = servers.iter().map(dbsize).collect();
    let settled = until(PATIENCE, || {
        let stopped = stopped.clone();
        async move { stopped.outstanding().is_none_or(|c| c == 0) }
    })
    .await;
    eprintln!("stalled node: {report:?}");

    assert!(finished.is_ok(), "the lock/unlock loop hung after the stop");
    assert!(
        report.max_outstanding.is_some(),
        "the node keeps no count of its outstanding requests (Node::outstanding is None)"
    );
    if let Some((at, count)) = over {
        panic!(
            "the stopped node owed {count} requests {at:?} into the stop, above its limit {limit} (+1): {report:?}"
        );
    }
    assert!(
        report.pairs_during > 0,
        "no lock was taken while one node of {n} was stopped: {report:?}"
    );
    assert!(
        drained,
        "keys left after the stopped node resumed and drained: {report:?}"
    );
    assert!(
        settled,
        "requests still outstanding after the node resumed: {:?}",
        stopped.outstanding()
    );
    let _ = redlock.quit().await;
    report
}

/// `quit` (through a [`Redlock`] over three servers, after a lock and an
/// unlock whose release to one server was sent while it was paused) waits
/// for that release, and leaves no connection of ours in any server's
/// `CLIENT LIST`.
pub async fn quit_closes_connections(f: &dyn NodeFactory) {
    let servers = servers(3);
    let before: Vec<Option<usize>> = servers.iter().map(client_connections).collect();
    let nodes = nodes(f, &servers).await;
    let prefix = unique_prefix("quit");
    let redlock = Redlock::from_nodes(nodes, Options::new().key_prefix(prefix).retry_count(0))
        .expect("valid options");
    let lock = redlock.lock("r", TTL).await.expect("lock");
    for (i, s) in servers.iter().enumerate() {
        let now = client_connections(s);
        assert!(
            now.unwrap_or(0) > before[i].unwrap_or(0),
            "server {i}: no connection of the node is visible ({before:?} before, {now:?} now)"
        );
    }
    servers[2].pause().expect("SIGSTOP");
    redlock.unlock(&lock).await.expect("unlock by quorum");
    servers[2].resume().expect("SIGCONT");
    redlock.quit().await.expect("quit");
    for (i, s) in servers.iter().enumerate() {
        assert_eq!(
            dbsize(s),
            Some(0),
            "server {i}: quit did not wait for the release sent before it"
        );
    }
    let closed = until(PATIENCE, || async {
        servers
            .iter()
            .zip(&before)
            .all(|(s, b)| client_connections(s) == *b)
    })
    .await;
    let after: Vec<Option<usize>> = servers.iter().map(client_connections).collect();
    assert!(
        closed,
        "connections left after quit: {before:?} before the nodes, {after:?} after quit"
    );
}

/// `quit` with one server stopped returns within `bound`, and once the
/// server continues no connection of ours is left on it.
pub async fn quit_is_bounded(f: &dyn NodeFactory, bound: Duration) {
    let servers = servers(3);
    let before: Vec<Option<usize>> = servers.iter().map(client_connections).collect();
    let nodes = nodes(f, &servers).await;
    let prefix = unique_prefix("quit-bounded");
    let redlock = Redlock::from_nodes(nodes, Options::new().key_prefix(prefix).retry_count(0))
        .expect("valid options");
    let lock = redlock.lock("r", TTL).await.expect("lock");
    servers[2].pause().expect("SIGSTOP");
    redlock.unlock(&lock).await.expect("unlock by quorum");
    let started = Instant::now();
    let quit = tokio::time::timeout(bound, redlock.quit()).await;
    let took = started.elapsed();
    servers[2].resume().expect("SIGCONT");
    assert!(
        quit.is_ok(),
        "quit with a stopped server took more than {bound:?}"
    );
    let closed = until(PATIENCE, || async {
        servers
            .iter()
            .zip(&before)
            .all(|(s, b)| client_connections(s) == *b)
    })
    .await;
    let after: Vec<Option<usize>> = servers.iter().map(client_connections).collect();
    assert!(
        closed,
        "connections left after quit ({took:?}) with a stopped server: {before:?} before, {after:?} after"
    );
}

/// Dropping the [`Redlock`] and every node without `quit` closes their
/// connections in the background.
pub async fn drop_closes_connections(f: &dyn NodeFactory) {
    let servers = servers(3);
    let before: Vec<Option<usize>> = servers.iter().map(client_connections).collect();
    {
        let nodes = nodes(f, &servers).await;
        let redlock = Redlock::from_nodes(
            nodes,
            Options::new()
                .key_prefix(unique_prefix("drop"))
                .retry_count(0),
        )
        .expect("valid options");
        let lock = redlock.lock("r", TTL).await.expect("lock");
        redlock.unlock(&lock).await.expect("unlock");
    }
    let closed = until(PATIENCE, || async {
        servers
            .iter()
            .zip(&before)
            .all(|(s, b)| client_connections(s) == *b)
    })
    .await;
    let after: Vec<Option<usize>> = servers.iter().map(client_connections).collect();
    assert!(
        closed,
        "connections left after dropping the nodes: {before:?} before, {after:?} after"
    );
    for (i, s) in servers.iter().enumerate() {
        assert_eq!(dbsize(s), Some(0), "server {i} kept a key");
    }
}

/// An extend reaches a node that was paused while it was sent: lock with a
/// TTL of 10 s on three servers, pause one, extend to 30 s (decided by the
/// other two), keep it paused for `pause`, continue it; then its key's PTTL
/// is above 20 s once it has drained.
pub async fn extend_reaches_paused_node(f: &dyn NodeFactory, pause: Duration) {
    let servers = servers(3);
    let nodes = nodes(f, &servers).await;
    let redlock = Redlock::from_nodes(
        nodes,
        Options::new()
            .key_prefix(unique_prefix("extend"))
            .retry_count(0),
    )
    .expect("valid options");
    let mut lock = redlock.lock("r", TTL).await.expect("lock");
    let key = lock.keys()[0].clone();
    servers[2].pause().expect("SIGSTOP");
    redlock
        .extend(&mut lock, Duration::from_secs(30))
        .await
        .expect("extend by the two running servers");
    // The fault lasts `pause`: a duration of the scenario, not a wait for a
    // condition.
    tokio::time::sleep(pause).await;
    servers[2].resume().expect("SIGCONT");
    let pttl = |s: &RedisServer| match s.command(&["PTTL", &key]) {
        Ok(Reply::Int(ms)) => ms,
        _ => -3,
    };
    let reached = until(PATIENCE, || async { pttl(&servers[2]) > 20_000 }).await;
    let seen: Vec<i64> = servers.iter().map(pttl).collect();
    assert!(
        reached,
        "the extend did not reach the paused node: PTTL per server {seen:?}"
    );
    redlock.unlock(&lock).await.expect("unlock");
    let _ = redlock.quit().await;
}

/// A lock released through [`Redlock::unlock`] has no validity left.
pub async fn released_lock_has_no_validity(f: &dyn NodeFactory) {
    let servers = servers(3);
    let nodes = nodes(f, &servers).await;
    let redlock = Redlock::from_nodes(
        nodes,
        Options::new()
            .key_prefix(unique_prefix("released"))
            .retry_count(0),
    )
    .expect("valid options");
    let lock = redlock.lock("r", TTL).await.expect("lock");
    assert!(!lock.is_expired());
    redlock.unlock(&lock).await.expect("unlock");
    assert_eq!(
        lock.remaining(),
        Duration::ZERO,
        "a released lock still reports validity"
    );
    assert!(lock.is_expired(), "a released lock is not expired");
    let _ = redlock.quit().await;
}

/// Emits the tests of this module for an adapter, one `#[tokio::test]`
/// each: `$node` is an `async fn(Target, usize) -> Result<Arc<dyn Node>,
/// BoxError>` that makes a node for a single server with the given backlog
/// limit.
///
/// ```ignore
/// redlock_testkit::stall_tests!(my_node);
/// ```
#[macro_export]
macro_rules! stall_tests {
    ($node:path) => {
        /// The backlog limit of the stalled-node check: small, so that the
        /// limit is reached early in the stop.
        const STALL_LIMIT: usize = 256;

        async fn stall_default_node(
            target: $crate::conformance::Target,
        ) -> ::std::result::Result<
            ::std::sync::Arc<dyn ::redlock_core::Node>,
            $crate::conformance::BoxError,
        > {
            $node(target, ::redlock_core::backlog::DEFAULT_LIMIT).await
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn stalled_node_stays_bounded() {
            let report = $crate::stall::stalled_node_stays_bounded(
                &|t| $node(t, STALL_LIMIT),
                3,
                ::std::time::Duration::from_secs(20),
                STALL_LIMIT,
            )
            .await;
            println!("{report:?}");
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn quit_closes_connections() {
            $crate::stall::quit_closes_connections(&stall_default_node).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn quit_is_bounded() {
            // Generous for a loaded machine: the point is that quit ends.
            $crate::stall::quit_is_bounded(
                &stall_default_node,
                ::std::time::Duration::from_secs(5),
            )
            .await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn drop_closes_connections() {
            $crate::stall::drop_closes_connections(&stall_default_node).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn extend_reaches_paused_node() {
            $crate::stall::extend_reaches_paused_node(
                &stall_default_node,
                ::std::time::Duration::from_millis(500),
            )
            .await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn released_lock_has_no_validity() {
            $crate::stall::released_lock_has_no_validity(&stall_default_node).await;
        }
    };
}
