//! The real-server part of the conformance suite: checks that look at the
//! servers behind a node (PTTL, `SCRIPT FLUSH`, keys left behind) and checks
//! that start, pause, kill and proxy their own servers.
//!
//! An adapter provides a [`NodeFactory`] that turns a [`Target`] (one
//! server, a cluster, or a sentinel deployment) into an `Arc<dyn Node>`, and
//! calls [`run_on_target`] for each kind of deployment it supports and
//! [`run_standalone`] once (those checks start their own servers), or lets
//! [`server_conformance_tests!`](crate::server_conformance_tests) emit one
//! test per check. Checks panic with a message on a contract violation.
//!
//! ```no_run
//! use std::sync::Arc;
//! use redlock_testkit::conformance::{self, BoxError, Target};
//!
//! # async fn my_node(_t: Target) -> Result<Arc<dyn redlock_core::Node>, BoxError> { unimplemented!() }
//! # async fn demo() {
//! let server = redlock_testkit::RedisServer::start().unwrap();
//! let target = Target::Single(server.url());
//! conformance::run_on_target(&my_node, &target).await;
//! conformance::run_standalone(&my_node).await;
//! # }
//! ```

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::AsyncCommands;
use redlock_core::{Acquire, Extend, LockError, NodeError, Options, Redlock};

use super::{
    eventually, keys_in_distinct_slots, make, poll_once_then_drop, unique_prefix, NodeFactory,
    Subject, Target,
};
use crate::fault_proxy::{Direction, FaultProxy, Mode};
use crate::server::{test_nodes, RedisServer};

/// A node from `f` on one server started for it (or the first of
/// `REDLOCK_TEST_NODES`), kept running as long as the subject: what
/// [`conformance_tests!`](crate::conformance_tests) needs for an adapter.
pub async fn single_subject(f: &dyn NodeFactory) -> Subject {
    let nodes = test_nodes(1).unwrap_or_else(|e| panic!("test server: {e}"));
    let node = make(f, &Target::Single(nodes.urls()[0].clone())).await;
    Subject::new(node).keeping(nodes)
}

/// Raw access to the servers behind a target, for checks the `Node` trait
/// cannot make (PTTL, SCRIPT FLUSH, counting keys).
pub struct Raw {
    masters: Vec<MultiplexedConnection>,
    #[allow(dead_code)]
    cluster: Option<redis::cluster_async::ClusterConnection>,
}

impl std::fmt::Debug for Raw {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Raw")
            .field("masters", &self.masters.len())
            .finish()
    }
}

async fn conn(url: &str) -> MultiplexedConnection {
    let client = redis::Client::open(url).unwrap_or_else(|e| panic!("bad url: {e}"));
    client
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| panic!("raw connection failed: {e}"))
}

impl Raw {
    /// Connects to the master(s) of `target`.
    pub async fn connect(target: &Target) -> Raw {
        match target {
            Target::Single(url) => Raw {
                masters: vec![conn(url).await],
                cluster: None,
            },
            Target::Cluster(urls) => {
                let mut masters = Vec::new();
                for u in urls {
                    let mut c = conn(u).await;
                    let role: Vec<redis::Value> = redis::cmd("ROLE")
                        .query_async(&mut c)
                        .await
                        .unwrap_or_default();
                    if matches!(role.first(), Some(redis::Value::BulkString(b)) if b == b"master") {
                        masters.push(c);
                    }
                }
                let client = redis::cluster::ClusterClient::new(urls.clone())
                    .unwrap_or_else(|e| panic!("cluster client: {e}"));
                let cluster = client
                    .get_async_connection()
                    .await
                    .unwrap_or_else(|e| panic!("cluster connection: {e}"));
                Raw {
                    masters,
                    cluster: Some(cluster),
                }
            }
            Target::Sentinel { sentinels, master } => {
                let mut s = conn(&sentinels[0]).await;
                let addr: Vec<String> = redis::cmd("SENTINEL")
                    .arg("get-master-addr-by-name")
                    .arg(master)
                    .query_async(&mut s)
                    .await
                    .unwrap_or_else(|e| panic!("sentinel lookup: {e}"));
                let url = format!("redis://{}:{}", addr[0], addr[1]);
                Raw {
                    masters: vec![conn(&url).await],
                    cluster: None,
                }
            }
        }
    }

    async fn on_key<T: redis::FromRedisValue>(&self, cmd: redis::Cmd) -> T {
        if let Some(c) = &self.cluster {
            let mut c = c.clone();
            return cmd
                .query_async(&mut c)
                .await
                .unwrap_or_else(|e| panic!("raw command failed: {e}"));
        }
        let mut c = self.masters[0].clone();
        cmd.query_async(&mut c)
            .await
            .unwrap_or_else(|e| panic!("raw command failed: {e}"))
    }

    /// `PTTL key` (-2 missing, -1 no expiry).
    pub async fn pttl(&self, key: &str) -> i64 {
        self.on_key(redis::cmd("PTTL").arg(key).clone()).await
    }

    /// `GET key`.
    pub async fn get(&self, key: &str) -> Option<String> {
        self.on_key(redis::cmd("GET").arg(key).clone()).await
    }

    /// `SET key value PX ms`.
    pub async fn set_px(&self, key: &str, value: &str, ms: u64) {
        let _: () = self
            .on_key(
                redis::cmd("SET")
                    .arg(key)
                    .arg(value)
                    .arg("PX")
                    .arg(ms)
                    .clone(),
            )
            .await;
    }

    /// `DEL key`.
    pub async fn del(&self, key: &str) {
        let _: i64 = self.on_key(redis::cmd("DEL").arg(key).clone()).await;
    }

    /// `SCRIPT FLUSH` on every master.
    pub async fn script_flush(&self) {
        for c in &self.masters {
            let mut c = c.clone();
            let _: () = redis::cmd("SCRIPT")
                .arg("FLUSH")
                .query_async(&mut c)
                .await
                .unwrap_or_else(|e| panic!("SCRIPT FLUSH failed: {e}"));
        }
    }

    /// How many keys start with `prefix`, over all masters.
    pub async fn count(&self, prefix: &str) -> usize {
        let mut n = 0;
        for c in &self.masters {
            let mut c = c.clone();
            let keys: Vec<String> = c
                .keys(format!("{prefix}*"))
                .await
                .unwrap_or_else(|e| panic!("KEYS failed: {e}"));
            n += keys.len();
        }
        n
    }
}

/// Counts keys with `prefix` on a server over a fresh connection; `None`
/// when it does not answer.
pub async fn count_on(url: &str, prefix: &str) -> Option<usize> {
    let client = redis::Client::open(url).ok()?;
    let mut c = tokio::time::timeout(
        Duration::from_secs(2),
        client.get_multiplexed_async_connection(),
    )
    .await
    .ok()?
    .ok()?;
    let keys: Vec<String> =
        tokio::time::timeout(Duration::from_secs(2), c.keys(format!("{prefix}*")))
            .await
            .ok()?
            .ok()?;
    Some(keys.len())
}

fn ks(keys: &[&str]) -> Vec<String> {
    keys.iter().map(|s| s.to_string()).collect()
}

/// Acquire, conflict, inspect, wrong-token release, release, re-acquire.
pub async fn acquire_release(f: &dyn NodeFactory, target: &Target) {
    let node = make(f, target).await;
    let raw = Raw::connect(target).await;
    let p = unique_prefix("acquire");
    let k = ks(&[&format!("{p}a")]);
    let ttl = Duration::from_secs(10);
    assert_eq!(
        node.acquire(&k, "tok-a", ttl).await.unwrap(),
        Acquire::Acquired
    );
    assert_eq!(raw.get(&k[0]).await.as_deref(), Some("tok-a"));
    assert_eq!(node.acquire(&k, "tok-b", ttl).await.unwrap(), Acquire::Held);
    assert_eq!(
        node.acquire(&k, "tok-a", ttl).await.unwrap(),
        Acquire::Held,
        "not re-entrant"
    );
    assert_eq!(
        node.release(&k, "tok-b").await.unwrap(),
        0,
        "wrong token releases nothing"
    );
    assert_eq!(raw.get(&k[0]).await.as_deref(), Some("tok-a"));
    assert_eq!(node.release(&k, "tok-a").await.unwrap(), 1);
    assert_eq!(raw.get(&k[0]).await, None);
    assert_eq!(
        node.release(&k, "tok-a").await.unwrap(),
        0,
        "releasing twice is fine"
    );
    assert_eq!(
        node.acquire(&k, "tok-b", ttl).await.unwrap(),
        Acquire::Acquired
    );
    assert_eq!(node.release(&k, "tok-b").await.unwrap(), 1);
    assert_eq!(raw.count(&p).await, 0);
}

/// The TTL really is set (PTTL), and extend moves it; extend with a wrong
/// token or on a vanished key changes nothing and never recreates a key.
pub async fn ttl_and_extend(f: &dyn NodeFactory, target: &Target) {
    let node = make(f, target).await;
    let raw = Raw::connect(target).await;
    let p = unique_prefix("ttl");
    let k = ks(&[&format!("{p}a")]);
    assert_eq!(
        node.acquire(&k, "tok", Duration::from_millis(5_000))
            .await
            .unwrap(),
        Acquire::Acquired
    );
    let pttl = raw.pttl(&k[0]).await;
    assert!(
        (3_000..=5_000).contains(&pttl),
        "PTTL after acquire(5s) was {pttl}"
    );
    assert_eq!(
        node.extend(&k, "tok", Duration::from_secs(30))
            .await
            .unwrap(),
        Extend::Extended
    );
    let pttl = raw.pttl(&k[0]).await;
    assert!(
        (28_000..=30_000).contains(&pttl),
        "PTTL after extend(30s) was {pttl}"
    );
    assert_eq!(
        node.extend(&k, "other", Duration::from_secs(60))
            .await
            .unwrap(),
        Extend::NotHeld
    );
    let pttl = raw.pttl(&k[0]).await;
    assert!(
        pttl <= 30_000,
        "a wrong-token extend changed the TTL to {pttl}"
    );
    // Sub-millisecond TTLs round up, never to "no expiry".
    let k2 = ks(&[&format!("{p}b")]);
    node.acquire(&k2, "tok", Duration::from_micros(1_500_000))
        .await
        .unwrap();
    let pttl2 = raw.pttl(&k2[0]).await;
    assert!(pttl2 > 0 && pttl2 <= 1_500, "PTTL was {pttl2}");
    assert_eq!(node.release(&k, "tok").await.unwrap(), 1);
    assert_eq!(
        node.extend(&k, "tok", Duration::from_secs(30))
            .await
            .unwrap(),
        Extend::NotHeld
    );
    assert_eq!(raw.pttl(&k[0]).await, -2, "extend recreated a released key");
    node.release(&k2, "tok").await.unwrap();
    assert_eq!(raw.count(&p).await, 0);
}

/// Inspect reports holder and TTL per key, in order, and nothing for a
/// missing key.
pub async fn inspect(f: &dyn NodeFactory, target: &Target) {
    let node = make(f, target).await;
    let p = unique_prefix("inspect");
    let keys = keys_in_distinct_slots(&p, 3);
    node.acquire(&keys[1..2], "tok", Duration::from_secs(10))
        .await
        .unwrap();
    let states = node.inspect(&keys).await.unwrap();
    assert_eq!(states.len(), 3);
    for (s, k) in states.iter().zip(&keys) {
        assert_eq!(&s.key, k, "inspect must keep key order");
    }
    assert_eq!(states[0].holder, None);
    assert_eq!(states[0].ttl, None);
    assert_eq!(states[1].holder.as_deref(), Some("tok"));
    let ttl = states[1].ttl.expect("a held key has a TTL");
    assert!(ttl > Duration::from_secs(5) && ttl <= Duration::from_secs(10));
    assert_eq!(states[2].holder, None);
    node.release(&keys, "tok").await.unwrap();
}

/// Several keys in one call: all or nothing for acquire and extend; release
/// takes only what holds the token. On a cluster the keys lie in different
/// hash slots, so this also checks the split and its compensation (and that
/// no CROSSSLOT error surfaces).
pub async fn multi_key_all_or_nothing(f: &dyn NodeFactory, target: &Target) {
    let node = make(f, target).await;
    let raw = Raw::connect(target).await;
    let p = unique_prefix("multi");
    let keys = keys_in_distinct_slots(&p, 3);
    let ttl = Duration::from_secs(10);
    raw.set_px(&keys[2], "someone-else", 10_000).await;
    assert_eq!(
        node.acquire(&keys, "tok", ttl).await.unwrap(),
        Acquire::Held
    );
    assert_eq!(
        raw.get(&keys[0]).await,
        None,
        "a partial acquire was left behind"
    );
    assert_eq!(
        raw.get(&keys[1]).await,
        None,
        "a partial acquire was left behind"
    );
    assert_eq!(raw.get(&keys[2]).await.as_deref(), Some("someone-else"));
    raw.del(&keys[2]).await;
    assert_eq!(
        node.acquire(&keys, "tok", ttl).await.unwrap(),
        Acquire::Acquired
    );
    for k in &keys {
        assert_eq!(raw.get(k).await.as_deref(), Some("tok"));
    }
    // One key lost: extend must change none of them.
    raw.del(&keys[1]).await;
    assert_eq!(
        node.extend(&keys, "tok", Duration::from_secs(60))
            .await
            .unwrap(),
        Extend::NotHeld
    );
    assert_eq!(raw.pttl(&keys[1]).await, -2, "extend recreated a key");
    assert!(raw.pttl(&keys[0]).await <= 10_000);
    assert_eq!(node.release(&keys, "tok").await.unwrap(), 2);
    assert_eq!(raw.count(&p).await, 0);
}

/// After `SCRIPT FLUSH` on the server the node still works (NOSCRIPT
/// fallback or reload).
pub async fn script_flush(f: &dyn NodeFactory, target: &Target) {
    let node = make(f, target).await;
    let raw = Raw::connect(target).await;
    let p = unique_prefix("flush");
    let k = ks(&[&format!("{p}a")]);
    let ttl = Duration::from_secs(10);
    assert_eq!(
        node.acquire(&k, "tok", ttl).await.unwrap(),
        Acquire::Acquired
    );
    raw.script_flush().await;
    assert_eq!(node.extend(&k, "tok", ttl).await.unwrap(), Extend::Extended);
    raw.script_flush().await;
    assert_eq!(node.release(&k, "tok").await.unwrap(), 1);
    raw.script_flush().await;
    assert_eq!(node.inspect(&k).await.unwrap()[0].holder, None);
    raw.script_flush().await;
    assert_eq!(
        node.acquire(&k, "tok", ttl).await.unwrap(),
        Acquire::Acquired
    );
    node.release(&k, "tok").await.unwrap();
    assert_eq!(raw.count(&p).await, 0);
}

/// Many concurrent calls on one node from many tasks: every acquire has one
/// winner per key and nothing is left after the releases.
pub async fn concurrent_calls(f: &dyn NodeFactory, target: &Target) {
    let node = make(f, target).await;
    let raw = Raw::connect(target).await;
    let p = unique_prefix("concurrent");
    let wins = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for t in 0..16 {
        let node = node.clone();
        let p = p.clone();
        let wins = wins.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..20 {
                let k = vec![format!("{p}{i}")];
                let tok = format!("t{t}");
                if node
                    .acquire(&k, &tok, Duration::from_secs(10))
                    .await
                    .unwrap()
                    == Acquire::Acquired
                {
                    wins.fetch_add(1, Ordering::SeqCst);
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(
        wins.load(Ordering::SeqCst),
        20,
        "exactly one winner per key"
    );
    for i in 0..20 {
        let k = vec![format!("{p}{i}")];
        let holder = node.inspect(&k).await.unwrap()[0].holder.clone().unwrap();
        assert_eq!(node.release(&k, &holder).await.unwrap(), 1);
    }
    assert_eq!(raw.count(&p).await, 0);
}

/// A request whose future is dropped right after its first poll is still
/// carried out (the `Node` contract: polled once means committed): a
/// release dropped that way on an idle node, then twenty dropped at once
/// (most of them waiting behind the first), still delete their keys. The
/// server has lost its scripts first (as after a restart), so each release
/// is refused with NOSCRIPT and must be sent again in full, although its
/// caller is gone.
pub async fn dropped_after_first_poll(f: &dyn NodeFactory, target: &Target) {
    let node = make(f, target).await;
    let raw = Raw::connect(target).await;
    let p = unique_prefix("dropped");
    let ttl = Duration::from_secs(60);
    let keys: Vec<Vec<String>> = (0..21).map(|i| vec![format!("{p}{i}")]).collect();
    for k in &keys {
        assert_eq!(node.acquire(k, "tok", ttl).await, Ok(Acquire::Acquired));
    }
    raw.script_flush().await;
    poll_once_then_drop(node.release(&keys[0], "tok"));
    let first = &keys[0][0];
    assert!(
        eventually(Duration::from_secs(10), || async {
            raw.get(first).await.is_none()
        })
        .await,
        "a release dropped after its first poll was not carried out"
    );
    for k in &keys[1..] {
        poll_once_then_drop(node.release(k, "tok"));
    }
    assert!(
        eventually(Duration::from_secs(10), || async {
            raw.count(&p).await == 0
        })
        .await,
        "releases dropped after their first poll left {} keys",
        raw.count(&p).await
    );
}

/// A Redlock over this one node: lock, conflict, extend, unlock.
pub async fn through_redlock(f: &dyn NodeFactory, target: &Target) {
    let node = make(f, target).await;
    let raw = Raw::connect(target).await;
    let p = unique_prefix("redlock");
    let redlock = Redlock::from_nodes(vec![node], Options::new().key_prefix(p.clone())).unwrap();
    let mut lock = redlock
        .lock(["a", "b", "c"], Duration::from_secs(10))
        .await
        .unwrap();
    let err = redlock
        .try_lock("b", Duration::from_secs(10))
        .await
        .unwrap_err();
    assert!(err.is_conflict(), "expected a conflict, got {err}");
    lock.extend(Duration::from_secs(20)).await.unwrap();
    assert!(raw.pttl(&format!("{p}a")).await > 10_000);
    lock.unlock().await.unwrap();
    assert_eq!(raw.count(&p).await, 0);
}

/// Every check that runs on a given target: the trait-level checks of
/// [`node`](super::node), then those that also look at the servers.
pub async fn run_on_target(f: &dyn NodeFactory, target: &Target) {
    super::node::run_all(&make(f, target).await).await;
    acquire_release(f, target).await;
    ttl_and_extend(f, target).await;
    inspect(f, target).await;
    multi_key_all_or_nothing(f, target).await;
    script_flush(f, target).await;
    concurrent_calls(f, target).await;
    dropped_after_first_poll(f, target).await;
    through_redlock(f, target).await;
}

/// Order under early decisions: a Redlock over two fast servers and one
/// reached through a delaying proxy (jitter per connection). Every attempt is
/// decided by the fast nodes while the slow node's acquire is still in
/// flight; its release must not overtake it. Afterwards no key may be left
/// on any server (the TTL is long, so a stale key would stay).
pub async fn order_kept_under_early_decisions(f: &dyn NodeFactory) {
    let servers: Vec<RedisServer> = (0..3)
        .map(|_| RedisServer::start().expect("redis-server"))
        .collect();
    let proxy = FaultProxy::start(servers[2].port()).await.expect("proxy");
    proxy.set_both(Mode::delay(
        Duration::from_millis(5),
        Duration::from_millis(55),
    ));
    let nodes = vec![
        make(f, &Target::Single(servers[0].url())).await,
        make(f, &Target::Single(servers[1].url())).await,
        make(f, &Target::Single(proxy.url())).await,
    ];
    let p = unique_prefix("order");
    let redlock = Redlock::from_nodes(
        nodes,
        Options::new()
            .key_prefix(p.clone())
            .node_timeout(Duration::from_millis(250))
            .retry_count(0),
    )
    .unwrap();
    let mut tasks = Vec::new();
    for t in 0..8 {
        let redlock = redlock.clone();
        tasks.push(tokio::spawn(async move {
            let mut acquired = 0;
            for i in 0..25 {
                // Shared names make some attempts fail early on conflict,
                // which releases too.
                let name = format!("r{}", (t + i) % 5);
                match redlock.lock(name.as_str(), Duration::from_secs(60)).await {
                    Ok(lock) => {
                        acquired += 1;
                        lock.unlock().await.expect("unlock");
                    }
                    Err(e) => assert!(
                        matches!(e, LockError::Conflict(_) | LockError::NoQuorum(_)),
                        "unexpected error: {e}"
                    ),
                }
            }
            acquired
        }));
    }
    let mut acquired = 0;
    for t in tasks {
        acquired += t.await.unwrap();
    }
    assert!(acquired > 0, "no lock was acquired at all");
    for s in &servers {
        let url = s.url();
        let p = p.clone();
        assert!(
            eventually(Duration::from_secs(10), || {
                let url = url.clone();
                let p = p.clone();
                async move { count_on(&url, &p).await == Some(0) }
            })
            .await,
            "stale keys left on {url}: {:?}",
            count_on(&url, &p).await
        );
    }
}

/// A stopped server gives errors (not success, not a hang); once it is back
/// the node works again (reconnect).
pub async fn stopped_server_then_restarted(f: &dyn NodeFactory) {
    let server = RedisServer::start().expect("redis-server");
    let node = make(f, &Target::Single(server.url())).await;
    let p = unique_prefix("stopped");
    let k = ks(&[&format!("{p}a")]);
    let ttl = Duration::from_secs(10);
    assert_eq!(
        node.acquire(&k, "tok", ttl).await.unwrap(),
        Acquire::Acquired
    );
    server.kill();
    for _ in 0..3 {
        let r = tokio::time::timeout(Duration::from_secs(10), node.acquire(&k, "tok2", ttl))
            .await
            .expect("a call to a stopped server must not hang");
        assert!(
            matches!(
                r,
                Err(NodeError::Connection(_) | NodeError::NotConnected(_) | NodeError::Server(_))
            ),
            "a stopped server answered {r:?}"
        );
    }
    // As the core does after a failed attempt: release what the attempts
    // may have taken. An acquire the node still holds for the server (sent
    // once it reconnects) must be followed there by this release.
    let _ = tokio::time::timeout(Duration::from_millis(100), node.release(&k, "tok2")).await;
    server.restart().expect("restart");
    let node2 = node.clone();
    let k2 = k.clone();
    assert!(
        eventually(Duration::from_secs(10), || {
            let node = node2.clone();
            let k = k2.clone();
            async move { matches!(node.acquire(&k, "tok3", ttl).await, Ok(Acquire::Acquired)) }
        })
        .await,
        "the node did not reconnect after the server restarted"
    );
    // Scripts were lost with the restart; everything still works.
    assert_eq!(node.release(&k, "tok3").await.unwrap(), 1);
}

/// A paused server (SIGSTOP) costs a Redlock no more than its per-node
/// timeout per call, and after it resumes nothing is left on it.
pub async fn paused_server_does_not_block(f: &dyn NodeFactory) {
    let servers: Vec<RedisServer> = (0..3)
        .map(|_| RedisServer::start().expect("redis-server"))
        .collect();
    let mut nodes = Vec::new();
    for s in &servers {
        nodes.push(make(f, &Target::Single(s.url())).await);
    }
    let p = unique_prefix("paused");
    let node_timeout = Duration::from_millis(100);
    let redlock = Redlock::from_nodes(
        nodes.clone(),
        Options::new()
            .key_prefix(p.clone())
            .node_timeout(node_timeout)
            .retry_count(0),
    )
    .unwrap();
    servers[2].pause().unwrap();
    for i in 0..20 {
        let started = Instant::now();
        let lock = redlock
            .lock(format!("r{i}"), Duration::from_secs(30))
            .await
            .expect("lock with one of three paused");
        lock.unlock()
            .await
            .expect("unlock with one of three paused");
        let took = started.elapsed();
        assert!(
            took < node_timeout * 10,
            "lock+unlock took {took:?} with one node paused (node timeout {node_timeout:?})"
        );
    }
    // A direct call to the paused node is bounded by the caller's timeout
    // and does not hold up other nodes.
    let k = ks(&[&format!("{p}direct")]);
    let slow = tokio::time::timeout(
        node_timeout,
        nodes[2].acquire(&k, "t", Duration::from_secs(30)),
    );
    let fast = nodes[0].acquire(&k, "t", Duration::from_secs(30));
    let (slow, fast) = tokio::join!(slow, fast);
    assert!(slow.is_err(), "a paused server answered");
    assert_eq!(fast.unwrap(), Acquire::Acquired);
    assert_eq!(nodes[0].release(&k, "t").await.unwrap(), 1);
    servers[2].resume().unwrap();
    // The direct acquire dropped on the paused node may still land; the
    // release queued after it must follow it. Once resumed, nothing may
    // remain of it or of the Redlock calls.
    let url = servers[2].url();
    let _ = nodes[2].release(&k, "t").await;
    assert!(
        eventually(Duration::from_secs(15), || {
            let url = url.clone();
            let p = p.clone();
            async move { count_on(&url, &p).await == Some(0) }
        })
        .await,
        "keys left on the resumed server: {:?}",
        count_on(&url, &p).await
    );
    for s in &servers[..2] {
        assert_eq!(count_on(&s.url(), &p).await, Some(0));
    }
}

/// Every check that starts its own servers.
pub async fn run_standalone(f: &dyn NodeFactory) {
    order_kept_under_early_decisions(f).await;
    stopped_server_then_restarted(f).await;
    paused_server_does_not_block(f).await;
    release_resent_after_reset(f).await;
}

/// Resets every connection through `proxy`, waits until it did, then passes
/// traffic again.
async fn reset_then_heal(proxy: &FaultProxy) {
    let before = proxy.stats().resets;
    proxy.reset();
    assert!(
        eventually(Duration::from_secs(5), || async {
            proxy.stats().resets > before
        })
        .await,
        "the proxy did not reset"
    );
    proxy.heal();
}

/// A release whose connection breaks under it (it ran on the server, but
/// the reply was cut off) is sent once more after the node reconnects, and
/// answers instead of failing: releases are safe to repeat, and a release
/// lost to a reset would leave the key until its TTL. An acquire cut off
/// the same way is never repeated: it reports the error.
pub async fn release_resent_after_reset(f: &dyn NodeFactory) {
    let server = RedisServer::start().expect("redis-server starts");
    let proxy = FaultProxy::start(server.port()).await.expect("proxy");
    let node = make(f, &Target::Single(proxy.url())).await;
    let key = format!("{}k", unique_prefix("resend"));
    let keys = vec![key.clone()];
    let ttl = Duration::from_secs(60);
    assert_eq!(node.acquire(&keys, "tok", ttl).await, Ok(Acquire::Acquired));
    let exists = |want: &'static str| {
        let server = &server;
        let key = key.clone();
        move || {
            let ok = server.text(&["EXISTS", &key]).is_ok_and(|t| t == want);
            async move { ok }
        }
    };

    // The release runs on the server, but its reply never comes back...
    proxy.set_mode(Direction::ToClient, Mode::Hold);
    let releasing = {
        let node = node.clone();
        let keys = keys.clone();
        tokio::spawn(async move { node.release(&keys, "tok").await })
    };
    assert!(eventually(Duration::from_secs(5), exists("0")).await);
    // ...because the connection is reset. The node reconnects and sends the
    // release again: it answers (0 deleted, the first one did it) instead of
    // a connection error.
    reset_then_heal(&proxy).await;
    let answer = tokio::time::timeout(Duration::from_secs(10), releasing)
        .await
        .expect("release answered")
        .expect("task");
    assert_eq!(answer, Ok(0));

    // An acquire cut off the same way is not repeated: it reports the error.
    proxy.set_mode(Direction::ToClient, Mode::Hold);
    let acquiring = {
        let node = node.clone();
        let keys = keys.clone();
        tokio::spawn(async move { node.acquire(&keys, "tok2", ttl).await })
    };
    assert!(eventually(Duration::from_secs(5), exists("1")).await);
    reset_then_heal(&proxy).await;
    let answer = tokio::time::timeout(Duration::from_secs(10), acquiring)
        .await
        .expect("acquire answered")
        .expect("task");
    assert!(answer.is_err(), "an acquire was repeated: {answer:?}");
}

/// Emits, in a module named `on_server`, one `#[tokio::test]` per
/// real-server check: those of [`run_on_target`] on one server started for
/// the test (or the first of `REDLOCK_TEST_NODES`), and those of
/// [`run_standalone`], which start their own servers
/// (`server_conformance_tests!(on_target_only: factory)` leaves these out).
/// `$factory` is the path of a [`NodeFactory`] function. The calling crate needs `tokio` with the
/// `macros` and `rt-multi-thread` features.
///
/// ```no_run
/// use std::sync::Arc;
/// use redlock_testkit::conformance::{BoxError, Subject, Target};
///
/// async fn factory(target: Target) -> Result<Arc<dyn redlock_core::Node>, BoxError> {
///     # unimplemented!()
///     // connect the node under test to `target`
/// }
///
/// async fn subject() -> Subject {
///     redlock_testkit::conformance::single_subject(&factory).await
/// }
///
/// redlock_testkit::conformance_tests!(subject);
/// redlock_testkit::server_conformance_tests!(factory);
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! server_conformance_tests {
    ($factory:path) => {
        #[allow(unused_imports)]
        mod on_server {
            use super::*;
            $crate::server_conformance_tests!(@on_target $factory);
            $crate::server_conformance_tests!(@standalone $factory);
        }
    };
    (on_target_only: $factory:path) => {
        #[allow(unused_imports)]
        mod on_server {
            use super::*;
            $crate::server_conformance_tests!(@on_target $factory);
        }
    };
    (@on_target $factory:path) => {
        $crate::server_conformance_tests!(@each_on_target $factory;
            acquire_release,
            ttl_and_extend,
            inspect,
            multi_key_all_or_nothing,
            script_flush,
            concurrent_calls,
            dropped_after_first_poll,
            through_redlock
        );
    };
    (@standalone $factory:path) => {
        $crate::server_conformance_tests!(@each_standalone $factory;
            order_kept_under_early_decisions,
            stopped_server_then_restarted,
            paused_server_does_not_block,
            release_resent_after_reset
        );
    };
    (@each_on_target $factory:path; $($name:ident),+) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let nodes = $crate::test_nodes(1).unwrap_or_else(|e| panic!("test server: {e}"));
                let target = $crate::conformance::Target::Single(nodes.urls()[0].clone());
                $crate::conformance::$name(&$factory, &target).await;
            }
        )+
    };
    (@each_standalone $factory:path; $($name:ident),+) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                $crate::conformance::$name(&$factory).await;
            }
        )+
    };
}
