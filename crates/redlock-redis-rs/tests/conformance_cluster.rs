//! The conformance suite on a real Redis Cluster (3 masters, 3 replicas)
//! seen as one Redlock node. Multi-key calls span hash slots.

mod common;

use redlock_testkit::conformance::{self, Target};
use redlock_testkit::RedisCluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_on_cluster() {
    let cluster = RedisCluster::start(3, 1).expect("redis cluster");
    let target = Target::Cluster(cluster.urls());
    conformance::run_on_target(&common::factory, &target).await;
}
