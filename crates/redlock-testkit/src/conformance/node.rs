//! Checks of the `Node` contract made through the trait alone: no Redis
//! client, no server access, so any implementation can run them (the
//! in-memory [`SimNode`](crate::sim::SimNode) does, and so does every
//! adapter on a real server).
//!
//! Each check takes the node under test, uses keys under a fresh
//! [`unique_prefix`], leaves nothing behind, and panics with a message on a
//! contract violation. [`conformance_tests!`](crate::conformance_tests)
//! emits one test per check; [`run_all`] runs them in sequence.
//!
//! ```
//! use redlock_testkit::conformance::node;
//! use redlock_testkit::sim::SimNode;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! node::run_all(&SimNode::new("sim").as_dyn()).await;
//! # }
//! ```

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use redlock_core::{Acquire, Extend, Node, Options, Redlock};

use super::{eventually, keys_in_distinct_slots, poll_once_then_drop, unique_prefix};

/// The names of the checks, in the order [`run_all`] runs them.
pub const CHECKS: &[&str] = &[
    "acquire_release",
    "ttl_and_extend",
    "inspect",
    "multi_key_all_or_nothing",
    "expiry",
    "concurrent_calls",
    "dropped_after_first_poll",
    "through_redlock",
];

fn one(key: String) -> Vec<String> {
    vec![key]
}

async fn holder(node: &dyn Node, key: &str) -> Option<String> {
    let states = node
        .inspect(&one(key.to_string()))
        .await
        .unwrap_or_else(|e| panic!("inspect({key}) failed: {e}"));
    states.into_iter().next().and_then(|s| s.holder)
}

async fn ttl(node: &dyn Node, key: &str) -> Option<Duration> {
    let states = node
        .inspect(&one(key.to_string()))
        .await
        .unwrap_or_else(|e| panic!("inspect({key}) failed: {e}"));
    states.into_iter().next().and_then(|s| s.ttl)
}

/// Acquire, conflict (also for the same token: not re-entrant), inspect,
/// wrong-token release, release, release again, re-acquire by another.
pub async fn acquire_release(node: &dyn Node) {
    let k = one(unique_prefix("acquire") + "a");
    let ttl = Duration::from_secs(10);
    assert_eq!(node.acquire(&k, "tok-a", ttl).await, Ok(Acquire::Acquired));
    assert_eq!(holder(node, &k[0]).await.as_deref(), Some("tok-a"));
    assert_eq!(node.acquire(&k, "tok-b", ttl).await, Ok(Acquire::Held));
    assert_eq!(
        node.acquire(&k, "tok-a", ttl).await,
        Ok(Acquire::Held),
        "not re-entrant"
    );
    assert_eq!(
        node.release(&k, "tok-b").await,
        Ok(0),
        "a wrong token releases nothing"
    );
    assert_eq!(holder(node, &k[0]).await.as_deref(), Some("tok-a"));
    assert_eq!(node.release(&k, "tok-a").await, Ok(1));
    assert_eq!(holder(node, &k[0]).await, None);
    assert_eq!(
        node.release(&k, "tok-a").await,
        Ok(0),
        "releasing twice is fine"
    );
    assert_eq!(node.acquire(&k, "tok-b", ttl).await, Ok(Acquire::Acquired));
    assert_eq!(node.release(&k, "tok-b").await, Ok(1));
}

/// The TTL is set (seen through inspect) and extend moves it; a
/// wrong-token extend changes nothing; an extend of a released key never
/// recreates it; a TTL with a fraction of a millisecond is rounded up,
/// never to "no expiry".
pub async fn ttl_and_extend(node: &dyn Node) {
    let p = unique_prefix("ttl");
    let k = one(format!("{p}a"));
    assert_eq!(
        node.acquire(&k, "tok", Duration::from_secs(5)).await,
        Ok(Acquire::Acquired)
    );
    let left = ttl(node, &k[0]).await.expect("a held key has a TTL");
    assert!(
        left > Duration::from_secs(3) && left <= Duration::from_secs(5),
        "TTL after acquire(5 s) was {left:?}"
    );
    assert_eq!(
        node.extend(&k, "tok", Duration::from_secs(30)).await,
        Ok(Extend::Extended)
    );
    let left = ttl(node, &k[0]).await.expect("a held key has a TTL");
    assert!(
        left > Duration::from_secs(28) && left <= Duration::from_secs(30),
        "TTL after extend(30 s) was {left:?}"
    );
    assert_eq!(
        node.extend(&k, "other", Duration::from_secs(60)).await,
        Ok(Extend::NotHeld)
    );
    let left = ttl(node, &k[0]).await.expect("a held key has a TTL");
    assert!(
        left <= Duration::from_secs(30),
        "a wrong-token extend changed the TTL to {left:?}"
    );
    let k2 = one(format!("{p}b"));
    assert_eq!(
        node.acquire(&k2, "tok", Duration::from_micros(1_500_300))
            .await,
        Ok(Acquire::Acquired)
    );
    let left = ttl(node, &k2[0])
        .await
        .expect("a sub-millisecond TTL is kept");
    assert!(
        left > Duration::ZERO && left <= Duration::from_millis(1_501),
        "TTL after acquire(1.5003 s) was {left:?}"
    );
    assert_eq!(node.release(&k, "tok").await, Ok(1));
    assert_eq!(
        node.extend(&k, "tok", Duration::from_secs(30)).await,
        Ok(Extend::NotHeld)
    );
    assert_eq!(
        holder(node, &k[0]).await,
        None,
        "extend recreated a released key"
    );
    assert_eq!(node.release(&k2, "tok").await, Ok(1));
}

/// Inspect reports holder and TTL per key, in the order asked, and nothing
/// for a missing key.
pub async fn inspect(node: &dyn Node) {
    let keys = keys_in_distinct_slots(&unique_prefix("inspect"), 3);
    assert_eq!(
        node.acquire(&keys[1..2], "tok", Duration::from_secs(10))
            .await,
        Ok(Acquire::Acquired)
    );
    let states = node.inspect(&keys).await.expect("inspect");
    assert_eq!(states.len(), 3);
    for (s, k) in states.iter().zip(&keys) {
        assert_eq!(&s.key, k, "inspect must keep the keys' order");
    }
    assert_eq!((states[0].holder.as_deref(), states[0].ttl), (None, None));
    assert_eq!(states[1].holder.as_deref(), Some("tok"));
    let left = states[1].ttl.expect("a held key has a TTL");
    assert!(left > Duration::from_secs(5) && left <= Duration::from_secs(10));
    assert_eq!((states[2].holder.as_deref(), states[2].ttl), (None, None));
    assert_eq!(node.release(&keys, "tok").await, Ok(1));
}

/// Several keys in one call (in different cluster hash slots): acquire and
/// extend are all or nothing; release takes only what holds the token.
pub async fn multi_key_all_or_nothing(node: &dyn Node) {
    let keys = keys_in_distinct_slots(&unique_prefix("multi"), 3);
    let ttl = Duration::from_secs(10);
    assert_eq!(
        node.acquire(&keys[2..], "someone-else", ttl).await,
        Ok(Acquire::Acquired)
    );
    assert_eq!(node.acquire(&keys, "tok", ttl).await, Ok(Acquire::Held));
    for k in &keys[..2] {
        assert_eq!(holder(node, k).await, None, "a partial acquire was left");
    }
    assert_eq!(
        holder(node, &keys[2]).await.as_deref(),
        Some("someone-else")
    );
    assert_eq!(node.release(&keys[2..], "someone-else").await, Ok(1));
    assert_eq!(node.acquire(&keys, "tok", ttl).await, Ok(Acquire::Acquired));
    for k in &keys {
        assert_eq!(holder(node, k).await.as_deref(), Some("tok"));
    }
    // One key lost: extend must change none of them.
    assert_eq!(node.release(&keys[1..2], "tok").await, Ok(1));
    assert_eq!(
        node.extend(&keys, "tok", Duration::from_secs(60)).await,
        Ok(Extend::NotHeld)
    );
    assert_eq!(holder(node, &keys[1]).await, None, "extend recreated a key");
    let left = ttl_of(node, &keys[0]).await;
    assert!(left <= ttl, "a failed extend moved a TTL to {left:?}");
    assert_eq!(node.release(&keys, "tok").await, Ok(2));
}

async fn ttl_of(node: &dyn Node, key: &str) -> Duration {
    ttl(node, key).await.expect("a held key has a TTL")
}

/// A key expires on its own after its TTL: another token can take it.
pub async fn expiry(node: &dyn Node) {
    let k = one(unique_prefix("expiry") + "a");
    assert_eq!(
        node.acquire(&k, "tok", Duration::from_millis(50)).await,
        Ok(Acquire::Acquired)
    );
    let taken = eventually(Duration::from_secs(5), || async {
        node.acquire(&k, "next", Duration::from_secs(10)).await == Ok(Acquire::Acquired)
    })
    .await;
    assert!(taken, "a key with a 50 ms TTL was still held after 5 s");
    assert_eq!(
        node.release(&k, "tok").await,
        Ok(0),
        "the old token is gone"
    );
    assert_eq!(node.release(&k, "next").await, Ok(1));
}

/// Many concurrent calls on one node (sixteen callers at once): one winner per key,
/// nothing left after the releases.
pub async fn concurrent_calls(node: &dyn Node) {
    let p = unique_prefix("concurrent");
    let wins = Arc::new(AtomicUsize::new(0));
    let calls = (0..16).map(|t| {
        let p = p.clone();
        let wins = wins.clone();
        async move {
            for i in 0..20 {
                let k = one(format!("{p}{i}"));
                let tok = format!("t{t}");
                match node.acquire(&k, &tok, Duration::from_secs(10)).await {
                    Ok(Acquire::Acquired) => {
                        wins.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(Acquire::Held) => {}
                    Err(e) => panic!("acquire failed under concurrency: {e}"),
                }
            }
        }
    });
    futures_util::future::join_all(calls).await;
    assert_eq!(wins.load(Ordering::SeqCst), 20, "one winner per key");
    for i in 0..20 {
        let k = format!("{p}{i}");
        let tok = holder(node, &k).await.expect("a winner holds every key");
        assert_eq!(node.release(&one(k), &tok).await, Ok(1));
    }
}

/// A release whose future is dropped right after its first poll is still
/// carried out (polled once means committed): one on an idle node, then
/// twenty dropped at once.
pub async fn dropped_after_first_poll(node: &dyn Node) {
    let p = unique_prefix("dropped");
    let keys: Vec<Vec<String>> = (0..21).map(|i| one(format!("{p}{i}"))).collect();
    for k in &keys {
        assert_eq!(
            node.acquire(k, "tok", Duration::from_secs(60)).await,
            Ok(Acquire::Acquired)
        );
    }
    poll_once_then_drop(node.release(&keys[0], "tok"));
    assert!(
        eventually(Duration::from_secs(10), || async {
            holder(node, &keys[0][0]).await.is_none()
        })
        .await,
        "a release dropped after its first poll was not carried out"
    );
    for k in &keys[1..] {
        poll_once_then_drop(node.release(k, "tok"));
    }
    let all: Vec<String> = keys.concat();
    assert!(
        eventually(Duration::from_secs(10), || async {
            let states = node.inspect(&all).await.expect("inspect");
            states.iter().all(|s| s.holder.is_none())
        })
        .await,
        "releases dropped after their first poll left keys behind"
    );
}

/// A Redlock over this one node: lock, conflict, extend, unlock.
pub async fn through_redlock(node: Arc<dyn Node>) {
    let p = unique_prefix("redlock");
    let redlock = Redlock::from_nodes(vec![node.clone()], Options::new().key_prefix(p.clone()))
        .expect("valid options");
    let mut lock = redlock
        .lock(["a", "b", "c"], Duration::from_secs(10))
        .await
        .expect("free");
    let err = redlock
        .try_lock("b", Duration::from_secs(10))
        .await
        .expect_err("held");
    assert!(err.is_conflict(), "expected a conflict, got {err}");
    lock.extend(Duration::from_secs(20))
        .await
        .expect("extended");
    let left = ttl_of(&*node, &format!("{p}a")).await;
    assert!(left > Duration::from_secs(10), "extend(20 s) left {left:?}");
    lock.unlock().await.expect("unlocked");
    for k in ["a", "b", "c"] {
        assert_eq!(holder(&*node, &format!("{p}{k}")).await, None);
    }
}

/// Every check, in sequence, on one node.
pub async fn run_all(node: &Arc<dyn Node>) {
    acquire_release(&**node).await;
    ttl_and_extend(&**node).await;
    inspect(&**node).await;
    multi_key_all_or_nothing(&**node).await;
    expiry(&**node).await;
    concurrent_calls(&**node).await;
    dropped_after_first_poll(&**node).await;
    through_redlock(node.clone()).await;
}

/// Emits one `#[tokio::test]` per check of
/// [`conformance::node`](crate::conformance::node), in a module named
/// `node_contract`. `$subject` is the path of an `async fn() ->
/// Subject` making a fresh node (and keeping what it needs alive) for each
/// test. The calling crate needs `tokio` with the `macros` and
/// `rt-multi-thread` features.
///
/// ```
/// use redlock_testkit::conformance::Subject;
/// use redlock_testkit::sim::SimNode;
///
/// async fn subject() -> Subject {
///     Subject::new(SimNode::new("sim").as_dyn())
/// }
///
/// redlock_testkit::conformance_tests!(subject);
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! conformance_tests {
    ($subject:path) => {
        $crate::conformance_tests!(@by_ref $subject,
            acquire_release,
            ttl_and_extend,
            inspect,
            multi_key_all_or_nothing,
            expiry,
            concurrent_calls,
            dropped_after_first_poll
        );
    };
    (@by_ref $subject:path, $($name:ident),+) => {
        #[allow(unused_imports)]
        mod node_contract {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let subject: $crate::conformance::Subject = $subject().await;
                    $crate::conformance::node::$name(&**subject.node()).await;
                }
            )+
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn through_redlock() {
                let subject: $crate::conformance::Subject = $subject().await;
                $crate::conformance::node::through_redlock(subject.node().clone()).await;
            }
        }
    };
}
