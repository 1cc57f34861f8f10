//! Wake-on-release on a redis-rs Redis Cluster node, against a real
//! cluster: the shared checks of `redlock_testkit::suites::wake_cluster`
//! over `RedisNode`s connected with `connect_cluster`.

use std::sync::Arc;

use redlock_redis_rs::RedisNode;
use redlock_testkit::conformance::{BoxError, Target};
use redlock_testkit::suites::wake::WatchedNode;

async fn node(target: Target) -> Result<WatchedNode, BoxError> {
    let Target::Cluster(urls) = target else {
        return Err("cluster targets only".into());
    };
    let node = RedisNode::connect_cluster(&urls).await?;
    Ok(WatchedNode {
        subscriptions: node.release_subscriptions(),
        node: Arc::new(node),
    })
}

redlock_testkit::wake_cluster_tests!(node);
