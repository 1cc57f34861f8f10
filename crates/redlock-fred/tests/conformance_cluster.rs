//! The conformance suite on a real Redis Cluster (3 masters, 3 replicas) seen
//! as one Redlock node, then a master failover (`CLUSTER FAILOVER` on a
//! replica) in the middle of a lock's life, after which locking goes on.

mod common;

use std::sync::Arc;
use std::time::Duration;

use redlock_core::{Acquire, Node, Options, Redlock};
use redlock_testkit::conformance::{self, eventually, Target};
use redlock_testkit::server::Reply;
use redlock_testkit::{RedisCluster, RedisServer};

fn role(server: &RedisServer) -> Option<String> {
    server.info_field("replication", "role")
}

/// Keys with `prefix` whose slots `server` serves (it answers them instead
/// of redirecting with MOVED).
fn keys_served_by(server: &RedisServer, prefix: &str, count: usize) -> Vec<String> {
    let mut keys = Vec::new();
    let mut i = 0;
    while keys.len() < count {
        let k = format!("{prefix}{i}");
        match server.command(&["GET", &k]).expect("GET") {
            Reply::Error(_) => {}
            _ => keys.push(k),
        }
        i += 1;
        assert!(i < 100_000, "no key found on {}", server.addr());
    }
    keys
}

/// Acquires `key` through `node` within a bounded time: right after a
/// failover one request may be spent on a MOVED reply (fred sends lock
/// commands once), after which fred has the new slot map.
async fn acquire_eventually(node: &Arc<dyn Node>, key: &str, token: &str) -> bool {
    let k = vec![key.to_string()];
    eventually(Duration::from_secs(20), || {
        let node = node.clone();
        let k = k.clone();
        let token = token.to_string();
        async move {
            matches!(
                node.acquire(&k, &token, Duration::from_secs(60)).await,
                Ok(Acquire::Acquired)
            )
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_on_cluster_and_master_failover() {
    let cluster = RedisCluster::start(3, 1).expect("redis cluster");
    let target = Target::Cluster(cluster.urls());
    conformance::run_on_target(&common::factory, &target).await;

    // A lock on keys served by the master that is about to be replaced.
    let node = common::factory(target.clone()).await.expect("node");
    let replica = cluster
        .servers()
        .iter()
        .find(|s| role(s).as_deref() == Some("slave"))
        .expect("a replica");
    let master_port: u16 = replica
        .info_field("replication", "master_port")
        .and_then(|p| p.parse().ok())
        .expect("replica knows its master");
    let master = cluster
        .servers()
        .iter()
        .find(|s| s.port() == master_port)
        .expect("the replica's master");
    let prefix = conformance::unique_prefix("cluster-failover");
    let held = keys_served_by(master, &prefix, 3);
    assert_eq!(
        node.acquire(&held[..1], "before", Duration::from_secs(60))
            .await
            .expect("acquire before failover"),
        Acquire::Acquired
    );

    // The held key is on the replica before the failover starts.
    let mut waited = String::new();
    let replicated = eventually(Duration::from_secs(20), || {
        waited = master
            .text(&["WAIT", "1", "1000"])
            .unwrap_or_else(|e| e.to_string());
        let ok = waited == "1";
        async move { ok }
    })
    .await;
    assert!(
        replicated,
        "the replica did not acknowledge: WAIT said {waited:?}"
    );

    // CLUSTER FAILOVER (coordinated: the replica catches up first). A manual
    // failover can time out on a busy machine; ask again, and the last time
    // without the old master's agreement (the data is already replicated).
    let mut promoted = false;
    for args in [
        &["CLUSTER", "FAILOVER"][..],
        &["CLUSTER", "FAILOVER"][..],
        &["CLUSTER", "FAILOVER", "FORCE"][..],
    ] {
        assert_eq!(replica.text(args).expect("failover"), "OK");
        promoted = eventually(Duration::from_secs(10), || async {
            role(replica).as_deref() == Some("master") && role(master).as_deref() == Some("slave")
        })
        .await;
        if promoted {
            break;
        }
    }
    assert!(
        promoted,
        "the replica did not take over: replica {} role {:?}, master {} role {:?}\n{}",
        replica.addr(),
        role(replica),
        master.addr(),
        role(master),
        replica.text(&["CLUSTER", "NODES"]).unwrap_or_default()
    );

    // Locking goes on against the new master.
    assert!(
        acquire_eventually(&node, &held[1], "after").await,
        "no acquire succeeded after the failover"
    );
    assert_eq!(
        replica.text(&["GET", &held[1]]).expect("GET"),
        "after",
        "the key is not on the new master"
    );
    // The lock taken before the failover survived it and is still exclusive.
    assert_eq!(
        node.acquire(&held[..1], "intruder", Duration::from_secs(60))
            .await
            .expect("acquire after failover"),
        Acquire::Held
    );
    assert_eq!(replica.text(&["GET", &held[0]]).expect("GET"), "before");
    // Multi-slot calls keep working across the new topology.
    let spread = conformance::keys_in_distinct_slots(&format!("{prefix}spread:"), 6);
    assert_eq!(
        node.acquire(&spread, "multi", Duration::from_secs(60))
            .await
            .expect("multi-slot acquire"),
        Acquire::Acquired
    );
    assert_eq!(node.release(&spread, "multi").await.expect("release"), 6);
    assert_eq!(
        node.release(&held[..1], "before").await.expect("release"),
        1
    );
    assert_eq!(
        node.release(&held[1..2], "after").await.expect("release"),
        1
    );

    // And through a Redlock, as users see it.
    let redlock = Redlock::from_nodes(vec![node.clone()], Options::new().key_prefix(prefix))
        .expect("redlock");
    let lock = redlock
        .lock("after-failover", Duration::from_secs(10))
        .await
        .expect("lock after failover");
    lock.unlock().await.expect("unlock");
}
