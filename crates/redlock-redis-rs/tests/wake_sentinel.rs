//! Wake-on-release on a redis-rs Sentinel node, against real sentinels: the
//! shared check of `redlock_testkit::suites::wake_sentinel` over `RedisNode`s.

use std::sync::Arc;

use redlock_redis_rs::RedisNode;
use redlock_testkit::conformance::{BoxError, Target};
use redlock_testkit::suites::wake::WatchedNode;

async fn node(target: Target) -> Result<WatchedNode, BoxError> {
    let Target::Sentinel { sentinels, master } = target else {
        return Err("sentinel targets only".into());
    };
    let node = RedisNode::connect_sentinel(&sentinels, &master).await?;
    Ok(WatchedNode {
        subscriptions: node.release_subscriptions(),
        node: Arc::new(node),
    })
}

redlock_testkit::wake_sentinel_tests!(node);
