//! Wake-on-release on a Sentinel node, against real sentinels: the release
//! subscription is on the master the sentinels name, and after the master
//! is killed and the replica promoted, it follows: a release on the new
//! master still wakes a waiter whose retry delay is an hour.
//!
//! An adapter runs it with [`wake_sentinel_tests!`](crate::wake_sentinel_tests),
//! given a [`WatchedNodeFactory`].

use std::time::Duration;

use redlock_core::scripts::release_channel;
use redlock_core::{LockOptions, Options, Redlock, Retries, RetryPolicy};
use redlock_kit::Subscriptions;

use super::wake::{WatchedNode, WatchedNodeFactory};
use crate::conformance::Target;
use crate::server::{RedisServer, Reply, Sentinel};

const TTL: Duration = Duration::from_secs(30);
const PATIENCE: Duration = Duration::from_secs(30);

/// Retry delay of an hour, bounded by a deadline that fails the test (not
/// hangs it) if no wake-up comes.
fn hour_delay() -> RetryPolicy {
    RetryPolicy::default()
        .retries(Retries::Forever)
        .delay(Duration::from_secs(3600))
        .jitter(Duration::ZERO)
        .deadline(Some(Duration::from_secs(90)))
}

/// Subscribers of `channel` on `server`.
fn numsub(server: &RedisServer, channel: &str) -> i64 {
    match server.command(&["PUBSUB", "NUMSUB", channel]) {
        Ok(Reply::Array(Some(items))) => match items.get(1) {
            Some(Reply::Int(n)) => *n,
            _ => -1,
        },
        _ => -1,
    }
}

async fn node(f: &dyn WatchedNodeFactory, sentinel: &Sentinel) -> WatchedNode {
    let target = Target::Sentinel {
        sentinels: sentinel.sentinel_urls(),
        master: Sentinel::MASTER_NAME.to_owned(),
    };
    match f.node(&target).await {
        Ok(n) => n,
        Err(e) => panic!("node factory failed for {target:?}: {e}"),
    }
}

/// Holds `key` with `holder`, waits in a task of its own with `waiter`
/// until the subscription is confirmed on the current master, releases,
/// and checks that the waiter got the lock on that wake-up.
async fn woken_once(
    sentinel: &Sentinel,
    holder: &Redlock,
    waiter: &Redlock,
    subscriptions: &mut Subscriptions,
    key: &str,
) {
    let channel = release_channel(key);
    let held = holder.lock(key, TTL).await.expect("free");
    let task = {
        let waiter = waiter.clone();
        let key = key.to_owned();
        tokio::spawn(async move {
            waiter
                .acquire(&LockOptions::new(key, TTL).retry(hour_delay()))
                .await
        })
    };
    tokio::time::timeout(
        PATIENCE,
        subscriptions.until(|s| s.subscribed.contains(&channel)),
    )
    .await
    .expect("subscribed");
    let master = sentinel.current_master();
    assert_eq!(
        numsub(master, &channel),
        1,
        "on the master, port {}",
        master.port()
    );
    held.unlock().await.expect("unlocked");
    let lock = tokio::time::timeout(PATIENCE, task)
        .await
        .expect("woken by the release, long before the hour")
        .expect("task")
        .expect("acquired");
    assert_eq!(lock.attempts(), 2, "one wait, then the lock");
    lock.unlock().await.expect("unlocked");
}

/// A waiter in another client, with a retry delay of an hour, is woken by
/// the release on the master the sentinels name; after the master is killed
/// and the replica promoted, its subscription follows to the new master and
/// a release there wakes it again.
pub async fn the_release_watch_follows_the_master_across_a_failover(f: &dyn WatchedNodeFactory) {
    let sentinel = Sentinel::start().expect("sentinel starts");
    let holder =
        Redlock::from_nodes(vec![node(f, &sentinel).await.node], Options::new()).expect("valid");
    // Another client, as another process would be: only the master's
    // announcements can wake it (calls of one client hand over directly).
    let watching = node(f, &sentinel).await;
    let mut subscriptions = watching
        .subscriptions
        .expect("a sentinel node watches releases");
    let waiter = Redlock::from_nodes(vec![watching.node], Options::new()).expect("valid");

    woken_once(
        &sentinel,
        &holder,
        &waiter,
        &mut subscriptions,
        "before-job",
    )
    .await;
    let before = subscriptions.now();

    let old = sentinel.current_master().port();
    let new = sentinel.kill_master(|_| {}).expect("failover");
    assert_ne!(old, new);
    // The killed master took the subscription's connection with it.
    tokio::time::timeout(PATIENCE, subscriptions.until(|s| s.losses > before.losses))
        .await
        .expect("the lost connection is noticed");
    // Let the lock nodes find the new master too.
    let probe = LockOptions::new("probe", TTL).retry(
        RetryPolicy::default()
            .retries(Retries::Forever)
            .delay(Duration::from_millis(100))
            .deadline(Some(PATIENCE)),
    );
    for redlock in [&holder, &waiter] {
        redlock
            .acquire(&probe)
            .await
            .expect("the new master answers")
            .unlock()
            .await
            .expect("unlocked");
    }

    woken_once(&sentinel, &holder, &waiter, &mut subscriptions, "after-job").await;
    assert_eq!(sentinel.current_master().port(), new);
    assert!(
        subscriptions.now().connects > before.connects,
        "reconnected"
    );
}

/// Emits the check of [`suites::wake_sentinel`](crate::suites::wake_sentinel)
/// as a test, with its name: `$factory` is a
/// [`WatchedNodeFactory`](crate::suites::wake::WatchedNodeFactory) that
/// builds the adapter's node for a `Target::Sentinel`.
#[macro_export]
macro_rules! wake_sentinel_tests {
    ($factory:path) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn the_release_watch_follows_the_master_across_a_failover() {
            $crate::suites::wake_sentinel::the_release_watch_follows_the_master_across_a_failover(
                &$factory,
            )
            .await;
        }
    };
}
