//! Native compare-and-delete / compare-and-set against real servers, on
//! the fred adapter: the shared checks of `redlock_testkit::suites::native`
//! over `FredNode`s. A Valkey 9 binary is found with
//! `redlock_testkit::server::binaries`; a check is skipped with a printed
//! reason where it is missing.

use std::sync::Arc;

use redlock_core::{Node, NodeError};
use redlock_fred::FredNode;
use redlock_testkit::conformance::BoxError;
use redlock_testkit::suites::native::NativeSettings;

async fn node(url: String, settings: NativeSettings) -> Result<Arc<dyn Node>, BoxError> {
    let node = FredNode::builder()
        .native_commands(settings.native_commands)
        .scripts(settings.scripts)
        .connect(&url)
        .await?;
    Ok(Arc::new(node))
}

/// A release refused by an ACL without `@scripting`, as this adapter
/// reports it.
fn refused_evalsha(e: &NodeError) -> bool {
    matches!(e, NodeError::Auth(m) | NodeError::Server(m) if m.to_lowercase().contains("evalsha"))
}

redlock_testkit::native_tests!(node, refused_evalsha);
