//! The conformance suite over the ways of handing a node a connection that
//! do not use the node's own plain connection: a `MultiplexedConnection`
//! the caller made, a `ConnectionManager`, and a URL asking for RESP3 (the
//! `redis` crate's multiplexed connection, made by the node).

use std::sync::Arc;

use redis::aio::ConnectionManager;
use redlock_core::Node;
use redlock_redis_rs::RedisNode;
use redlock_testkit::conformance::{single_subject, BoxError, Subject, Target};

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
    ($module:ident, $factory:ident) => {
        mod $module {
            use super::*;

            async fn subject() -> Subject {
                single_subject(&$factory).await
            }

            redlock_testkit::conformance_tests!(subject);
            redlock_testkit::server_conformance_tests!(on_target_only: super::$factory);
        }
    };
}

suite!(user_connection, from_connection);
suite!(connection_manager, from_manager);
suite!(resp3_url, resp3);
