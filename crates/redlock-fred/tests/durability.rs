//! `Builder::durability` on the fred adapter: the shared checks of
//! `redlock_testkit::suites::durability` over `FredNode`s (a master and a
//! replica started per check).

use std::sync::Arc;

use redlock_core::{Durability, Node};
use redlock_fred::FredNode;
use redlock_testkit::conformance::BoxError;

async fn node(url: String, durability: Durability) -> Result<Arc<dyn Node>, BoxError> {
    let node = FredNode::builder()
        .durability(durability)
        .connect(&url)
        .await?;
    Ok(Arc::new(node))
}

redlock_testkit::durability_tests!(node);
