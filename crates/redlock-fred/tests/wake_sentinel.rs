//! Wake-on-release on a fred Sentinel node, against real sentinels: the
//! shared check of `redlock_testkit::suites::wake_sentinel` over `FredNode`s.

mod common;

use std::sync::Arc;

use redlock_fred::FredNode;
use redlock_testkit::conformance::{BoxError, Target};
use redlock_testkit::suites::wake::WatchedNode;

async fn node(target: Target) -> Result<WatchedNode, BoxError> {
    let Target::Sentinel { sentinels, master } = target else {
        return Err("sentinel targets only".into());
    };
    let node = FredNode::connect(&common::sentinel_url(&sentinels, &master)).await?;
    Ok(WatchedNode {
        subscriptions: node.release_subscriptions(),
        node: Arc::new(node),
    })
}

redlock_testkit::wake_sentinel_tests!(node);
