//! What the wake-on-release checks ([`wake_sentinel`](super::wake_sentinel),
//! [`wake_cluster`](super::wake_cluster))
//! build: a node with the status of its release subscriptions.

use std::future::Future;
use std::sync::Arc;

use redlock_core::Node;
use redlock_kit::Subscriptions;

use crate::conformance::{BoxError, Target};

/// A node under test and the status of its wake-on-release subscriptions
/// (the adapter's `release_subscriptions()`).
pub struct WatchedNode {
    /// The node.
    pub node: Arc<dyn Node>,
    /// Which release channels the server confirmed, connections opened and
    /// lost; `None` when the node does not watch releases.
    pub subscriptions: Option<Subscriptions>,
}

/// Builds the adapter's node for a target, with its subscriptions' status.
///
/// Implemented for every `Fn(Target) -> Future<Output = Result<WatchedNode,
/// BoxError>>`.
#[async_trait::async_trait]
pub trait WatchedNodeFactory: Send + Sync {
    /// A node connected to `target`.
    async fn node(&self, target: &Target) -> Result<WatchedNode, BoxError>;
}

#[async_trait::async_trait]
impl<F, Fut> WatchedNodeFactory for F
where
    F: Fn(Target) -> Fut + Send + Sync,
    Fut: Future<Output = Result<WatchedNode, BoxError>> + Send,
{
    async fn node(&self, target: &Target) -> Result<WatchedNode, BoxError> {
        self(target.clone()).await
    }
}
