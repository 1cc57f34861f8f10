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
use redlock_core::{LockOptions, Options, Redlock, Retries, RetryPolicy};

use super::wake::{WatchedNode, WatchedNodeFactory};
use crate::conformance::Target;
use crate::server::binaries::find_server;
use crate::server::{RedisCluster, RedisServer, Reply};
use crate::wait::until;

const TTL: Duration = Duration::from_secs(30);
const PATIENCE: Duration = Duration::from_secs(20);

/// Retry delay of an hour, bounded by a deadline that fails the test (not
/// hangs it) if no wake-up comes.
fn hour_delay() -> RetryPolicy {
    RetryPolicy::default()
        .retries(Retries::Forever)
        .delay(Duration::from_secs(3600))
        .jitter(Duration::ZERO)
        .deadline(Some(Duration::from_secs(60)))
}

/// A node over the cluster with the given seed URLs.
async fn cluster_node(f: &dyn WatchedNodeFactory, urls: &[String]) -> WatchedNode {
    let target = Target::Cluster(urls.to_vec());
    match f.node(&target).await {
        Ok(n) => n,
        Err(e) => panic!("node factory failed for {target:?}: {e}"),
    }
}

/// Sharded subscribers of `channel` on `server`.
fn shardnumsub(server: &RedisServer, channel: &str) -> i64 {
    match server.command(&["PUBSUB", "SHARDNUMSUB", channel]) {
        Ok(Reply::Array(Some(items))) => match items.get(1) {
            Some(Reply::Int(n)) => *n,
            _ => -1,
        },
        _ => -1,
    }
}

/// Calls of `command` on `server` so far (scripts' calls included).
fn calls(server: &RedisServer, command: &str) -> u64 {
    let info = server.text(&["INFO", "commandstats"]).unwrap_or_default();
    let prefix = format!("cmdstat_{command}:calls=");
    info.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
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
        let status = tokio::time::timeout(
            PATIENCE,
            subscriptions.until(|s| s.subscribed.contains(&channel)),
        )
        .await
        .expect("the sharded subscription is confirmed");
        assert!(!status.unsupported);
        // Confirmed by the shard that owns the key, and only there.
        let counts: Vec<i64> = cluster
            .master_servers()
            .iter()
            .map(|s| shardnumsub(s, &channel))
            .collect();
        assert_eq!(counts.iter().sum::<i64>(), 1, "{channel}: {counts:?}");

        held.unlock().await.expect("unlocked");
        let lock = tokio::time::timeout(PATIENCE, task)
            .await
            .expect("woken by the release, long before the hour")
            .expect("task")
            .expect("acquired");
        assert_eq!(lock.attempts(), 2, "{key}: one wait, then the lock");
        lock.unlock().await.expect("unlocked");
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
    let spublish: u64 = masters.iter().map(|s| calls(s, "spublish")).sum();
    let publish: u64 = masters.iter().map(|s| calls(s, "publish")).sum();
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
    let polling = RetryPolicy::default()
        .retries(Retries::Forever)
        .delay(Duration::from_millis(100))
        .jitter(Duration::ZERO)
        .deadline(Some(Duration::from_secs(60)));
    let task = tokio::spawn(async move {
        redlock
            .acquire(&LockOptions::new("old-job", TTL).retry(polling))
            .await
    });
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
