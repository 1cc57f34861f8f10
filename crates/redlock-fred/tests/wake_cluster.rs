//! Wake-on-release on a fred Redis Cluster node, against a real
//! cluster: the shared checks of `redlock_testkit::suites::wake_cluster`
//! over `FredNode`s over a fred cluster client of their own.

mod common;

use std::sync::Arc;

use redlock_fred::FredNode;
use redlock_testkit::conformance::{BoxError, Target};
use redlock_testkit::suites::wake::WatchedNode;

async fn node(target: Target) -> Result<WatchedNode, BoxError> {
    let Target::Cluster(urls) = target else {
        return Err("cluster targets only".into());
    };
    let node = FredNode::from_client(common::cluster_client(&urls)?).await?;
    Ok(WatchedNode {
        subscriptions: node.release_subscriptions(),
        node: Arc::new(node),
    })
}

redlock_testkit::wake_cluster_tests!(node);
