//! The conformance suite over the ways of handing a node a connection that
//! do not use the node's own plain connection: a `MultiplexedConnection`
//! the caller made, a `ConnectionManager`, and a URL asking for RESP3 (the
//! `redis` crate's multiplexed connection, made by the node).

use std::sync::Arc;

use redis::aio::ConnectionManager;
use redlock_core::Node;
use redlock_redis_rs::RedisNode;
use redlock_testkit::conformance::{self, BoxError, Target};
use redlock_testkit::test_nodes;

fn single(target: Target) -> Result<String, BoxError> {
    match target {
        Target::Single(url) => Ok(url),
        other => Err(format!("single servers only: {other:?}").into()),
    }
}

async fn from_connection(target: Target) -> Result<Arc<dyn Node>, BoxError> {
    let url = single(target)?;
    let client = redis::Client::open(url.as_str())?;
    let connection = client.get_multiplexed_async_connection().await?;
    Ok(Arc::new(
        RedisNode::builder().from_connection(connection, &url)?,
    ))
}

async fn from_manager(target: Target) -> Result<Arc<dyn Node>, BoxError> {
    let url = single(target)?;
    let manager = ConnectionManager::new(redis::Client::open(url.as_str())?).await?;
    Ok(Arc::new(RedisNode::builder().from_manager(manager, &url)?))
}

async fn resp3(target: Target) -> Result<Arc<dyn Node>, BoxError> {
    let url = single(target)?;
    let sep = if url.contains('?') { '&' } else { '?' };
    Ok(Arc::new(
        RedisNode::connect(&format!("{url}{sep}protocol=resp3")).await?,
    ))
}

macro_rules! suite {
    ($module:ident, $factory:path) => {
        suite!(@checks $module, $factory,
            acquire_release,
            ttl_and_extend,
            inspect,
            multi_key_all_or_nothing,
            script_flush,
            concurrent_calls,
            dropped_after_first_poll,
            through_redlock
        );
    };
    (@checks $module:ident, $factory:path, $($name:ident),*) => {
        mod $module {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let nodes = test_nodes(1).expect("redis-server");
                    let target = Target::Single(nodes.urls()[0].clone());
                    conformance::$name(&$factory, &target).await;
                }
            )*
        }
    };
}

suite!(user_connection, super::from_connection);
suite!(connection_manager, super::from_manager);
suite!(resp3_url, super::resp3);
