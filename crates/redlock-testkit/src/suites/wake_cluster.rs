//! Wake-on-release on a Redis Cluster node, against a real cluster: the
//! release is announced with a sharded `SPUBLISH` on the key's shard, the
//! waiter's node listens there with `SSUBSCRIBE`, and a waiter whose retry
//! delay is an hour gets the lock as soon as the holder releases. On a
//! Redis 6 cluster (no sharded pub/sub) waiters poll and releases work.
//!
//! An adapter runs them with [`wake_cluster_tests!`](crate::wake_cluster_tests),
//! given a [`WatchedNodeFactory`] for a `Target::Cluster`.

use std::time::Duration;

use redlock_core::scripts::sharded_release_channel;
use redlock_core::{Options, Redlock};

use super::wake::{
    retry_every, spawn_acquire, watched_node, WakeOnce, WatchedNode, WatchedNodeFactory,
};
use crate::conformance::Target;
use crate::server::binaries::find_server;
use crate::server::RedisCluster;
use crate::wait::until;

const TTL: Duration = Duration::from_secs(30);
const PATIENCE: Duration = Duration::from_secs(20);
/// The waiters' deadline: a missing wake-up fails the test, not hangs it.
const DEADLINE: Duration = Duration::from_secs(60);

/// A node over the cluster with the given seed URLs.
async fn cluster_node(f: &dyn WatchedNodeFactory, urls: &[String]) -> WatchedNode {
    watched_node(f, Target::Cluster(urls.to_vec())).await
}

/// A waiter in another client, with a retry delay of an hour, is woken by a
/// release announced with `SPUBLISH` on the key's shard (a key with and one
/// without a hash tag); the subscription is confirmed by that shard only,
/// given up once nobody waits, and no cluster-wide `PUBLISH` goes out.
pub async fn a_release_on_the_keys_shard_wakes_the_waiter(f: &dyn WatchedNodeFactory) {
    let cluster = RedisCluster::start(3, 0).expect("cluster starts");
    let urls = cluster.urls();
    let holder = cluster_node(f, &urls).await;
    let holder = Redlock::from_nodes(vec![holder.node], Options::new()).expect("valid");
    // Another client, as another process would be: only the cluster's
    // announcements can wake it (calls of one client hand over directly).
    let watching = cluster_node(f, &urls).await;
    let mut subscriptions = watching
        .subscriptions
        .expect("a cluster node watches releases");
    let waiter = Redlock::from_nodes(vec![watching.node], Options::new()).expect("valid");

    // A key without a hash tag, and one with: both channels lie in their
    // key's slot.
    for key in ["wake-job", "{account:7}:export"] {
        let channel = sharded_release_channel(key).expect("has a channel");
        let mut once = WakeOnce::new(&holder, &waiter, &mut subscriptions, PATIENCE, DEADLINE);
        once.run(key, &channel, |status| {
            assert!(!status.unsupported);
            // Confirmed by the shard that owns the key, and only there.
            let counts: Vec<i64> = cluster
                .master_servers()
                .iter()
                .map(|s| s.shard_numsub(&channel))
                .collect();
            assert_eq!(counts.iter().sum::<i64>(), 1, "{channel}: {counts:?}");
        })
        .await;
        // Nobody waits any more: the channel is given up.
        tokio::time::timeout(
            PATIENCE,
            subscriptions.until(|s| !s.subscribed.contains(&channel)),
        )
        .await
        .expect("unsubscribed");
    }
    // The announcements went out sharded, never as a cluster-wide PUBLISH.
    let masters = cluster.master_servers();
    let spublish: u64 = masters.iter().map(|s| s.command_calls("spublish")).sum();
    let publish: u64 = masters.iter().map(|s| s.command_calls("publish")).sum();
    assert!(spublish >= 2, "spublish calls: {spublish}");
    assert_eq!(publish, 0, "no PUBLISH on a cluster");
}

/// On a Redis 6 cluster (no sharded pub/sub) the subscription is marked
/// unsupported without reconnecting in a loop, and a waiter gets the lock
/// by polling. Skipped with a printed reason when no Redis 6 binary is
/// found.
pub async fn a_cluster_without_sharded_pub_sub_polls(f: &dyn WatchedNodeFactory) {
    let Some((binary, version)) = find_server(|v| !v.is_valkey() && !v.at_least(7, 0)) else {
        eprintln!("skipped: no Redis 6 binary found");
        return;
    };
    let cluster = RedisCluster::start_binary(&binary, 3, 0).expect("cluster starts");
    let urls = cluster.urls();
    let node = cluster_node(f, &urls).await;
    let mut subscriptions = node.subscriptions.expect("watches");
    let redlock = Redlock::from_nodes(vec![node.node], Options::new()).expect("valid");
    let other = cluster_node(f, &urls).await;
    let other = Redlock::from_nodes(vec![other.node], Options::new()).expect("valid");

    let held = other.lock("old-job", TTL).await.expect("free");
    let polling = retry_every(Duration::from_millis(100), DEADLINE);
    let task = spawn_acquire(&redlock, "old-job", TTL, polling);
    let status = tokio::time::timeout(PATIENCE, subscriptions.until(|s| s.unsupported))
        .await
        .unwrap_or_else(|_| panic!("{version}: SSUBSCRIBE refused as unknown"));
    assert!(status.subscribed.is_empty());
    assert_eq!(status.connects, 1, "not reconnecting in a loop");
    // The release script's SPUBLISH fails quietly and the key is deleted:
    // the waiter gets it long before the TTL runs out.
    held.unlock().await.expect("unlocked");
    let lock = tokio::time::timeout(PATIENCE, task)
        .await
        .expect("acquired by polling")
        .expect("task")
        .expect("acquired");
    lock.unlock().await.expect("unlocked");
    until("no keys left", PATIENCE, || async {
        cluster
            .master_servers()
            .iter()
            .all(|s| s.text(&["DBSIZE"]).is_ok_and(|n| n == "0"))
    })
    .await;
}

/// Emits the checks of [`suites::wake_cluster`](crate::suites::wake_cluster)
/// as tests, with their names: `$factory` is a
/// [`WatchedNodeFactory`](crate::suites::wake::WatchedNodeFactory) that
/// builds the adapter's node for a `Target::Cluster`.
#[macro_export]
macro_rules! wake_cluster_tests {
    ($factory:path) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_release_on_the_keys_shard_wakes_the_waiter() {
            $crate::suites::wake_cluster::a_release_on_the_keys_shard_wakes_the_waiter(&$factory)
                .await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_cluster_without_sharded_pub_sub_polls() {
            $crate::suites::wake_cluster::a_cluster_without_sharded_pub_sub_polls(&$factory).await;
        }
    };
}
