//! Scoped locks, release on drop, status and fencing on five real servers
//! through RedisNode (the bodies live in `redlock_testkit::leases`).

use std::sync::Arc;

use redlock_core::Node;
use redlock_redis_rs::RedisNode;

redlock_testkit::lease_tests!(|url: String| async move {
    Arc::new(RedisNode::connect(&url).await.expect("connect")) as Arc<dyn Node>
});
