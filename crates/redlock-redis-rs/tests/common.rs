//! The factory that turns a conformance target into a `RedisNode`.
#![allow(dead_code)]

use std::sync::Arc;

use redlock_core::Node;
use redlock_redis_rs::RedisNode;
use redlock_testkit::conformance::{BoxError, Target};

pub async fn factory(target: Target) -> Result<Arc<dyn Node>, BoxError> {
    let node = match target {
        Target::Single(url) => RedisNode::connect(&url).await?,
        #[cfg(feature = "cluster")]
        Target::Cluster(urls) => RedisNode::connect_cluster(&urls).await?,
        #[cfg(feature = "sentinel")]
        Target::Sentinel { sentinels, master } => {
            RedisNode::connect_sentinel(&sentinels, &master).await?
        }
        #[allow(unreachable_patterns)]
        other => return Err(format!("target not enabled in this build: {other:?}").into()),
    };
    Ok(Arc::new(node))
}
