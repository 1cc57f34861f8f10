//! Wake-on-release on a Sentinel node, against real sentinels: the release
//! subscription is on the master the sentinels name, and after the master
//! is killed and the replica promoted, it follows: a release on the new
//! master still wakes a waiter whose retry delay is an hour.
//!
//! An adapter runs it with [`wake_sentinel_tests!`](crate::wake_sentinel_tests),
//! given a [`WatchedNodeFactory`].

use std::time::Duration;

use redlock_core::scripts::release_channel;
use redlock_core::{LockOptions, Options, Redlock};

use super::wake::{retry_every, watched_node, WakeOnce, WatchedNode, WatchedNodeFactory};
use crate::server::Sentinel;

const TTL: Duration = Duration::from_secs(30);
const PATIENCE: Duration = Duration::from_secs(30);
/// The waiter's deadline: a missing wake-up fails the test, not hangs it.
const DEADLINE: Duration = Duration::from_secs(90);

async fn node(f: &dyn WatchedNodeFactory, sentinel: &Sentinel) -> WatchedNode {
    watched_node(f, sentinel.target()).await
}

/// Holds `key`, has the waiter wait for it, and checks that the release
/// woke it ([`WakeOnce::run`]), with the subscription confirmed on the
/// master the sentinels name now.
async fn woken_once(sentinel: &Sentinel, once: &mut WakeOnce<'_>, key: &str) {
    let channel = release_channel(key);
    once.run(key, &channel, |_| {
        let master = sentinel.current_master();
        assert_eq!(
            master.numsub(&channel),
            1,
            "on the master, port {}",
            master.port()
        );
    })
    .await;
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

    let mut once = WakeOnce::new(&holder, &waiter, &mut subscriptions, PATIENCE, DEADLINE);
    woken_once(&sentinel, &mut once, "before-job").await;
    let before = once.subscriptions.now();

    let old = sentinel.current_master().port();
    let new = sentinel.kill_master(|_| {}).expect("failover");
    assert_ne!(old, new);
    // The killed master took the subscription's connection with it.
    tokio::time::timeout(
        PATIENCE,
        once.subscriptions.until(|s| s.losses > before.losses),
    )
    .await
    .expect("the lost connection is noticed");
    // Let the lock nodes find the new master too.
    let probe =
        LockOptions::new("probe", TTL).retry(retry_every(Duration::from_millis(100), PATIENCE));
    for redlock in [&holder, &waiter] {
        redlock
            .acquire(&probe)
            .await
            .expect("the new master answers")
            .unlock()
            .await
            .expect("unlocked");
    }

    woken_once(&sentinel, &mut once, "after-job").await;
    assert_eq!(sentinel.current_master().port(), new);
    assert!(
        once.subscriptions.now().connects > before.connects,
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
