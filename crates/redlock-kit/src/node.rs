//! The parts every adapter's node type has: an id, a [`Queue`], maybe a
//! release watch; and [`Node`] over them ([`QueueNode`], [`node_via!`]).
//!
//! [`node_via!`]: crate::node_via

use std::fmt;
use std::time::Duration;

use redlock_core::{Acquire, BoxFuture, Durability, Extend, KeyState, Node, NodeError};

use crate::queue::Queue;
use crate::watch::{ReleaseHub, Subscriptions};

/// A node: its id (without secrets), the queue every call goes through and
/// the release watch, if it has one. Implements [`Node`]; an adapter's
/// node type wraps one (in an `Arc`, to be cheap to clone) and forwards
/// [`Node`] to it with [`node_via!`](crate::node_via).
pub struct QueueNode {
    id: String,
    queue: Queue,
    watch: Option<ReleaseHub>,
    durability: Durability,
}

impl fmt::Debug for QueueNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueueNode")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl QueueNode {
    /// A node `id` over `queue`, woken on release by `watch` if given.
    pub fn new(id: String, queue: Queue, watch: Option<ReleaseHub>) -> Self {
        QueueNode {
            id,
            queue,
            watch,
            durability: Durability::Master,
        }
    }

    /// The same, telling the core what its acquires and extends wait for
    /// (the executor's planner must end writes with the matching `WAIT`:
    /// [`Planner::with_durability`](crate::plan::Planner::with_durability)).
    #[must_use]
    pub fn with_durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// The node's queue.
    pub fn queue(&self) -> &Queue {
        &self.queue
    }

    /// The pub/sub status of wake-on-release; `None` without a watch.
    pub fn subscriptions(&self) -> Option<Subscriptions> {
        self.watch.as_ref().map(ReleaseHub::subscriptions)
    }
}

#[async_trait::async_trait]
impl Node for QueueNode {
    fn id(&self) -> &str {
        &self.id
    }

    async fn acquire(
        &self,
        keys: &[String],
        token: &str,
        ttl: Duration,
    ) -> Result<Acquire, NodeError> {
        self.queue.acquire(keys, token, ttl).await
    }

    async fn release(&self, keys: &[String], token: &str) -> Result<u64, NodeError> {
        self.queue.release(keys, token).await
    }

    async fn extend(
        &self,
        keys: &[String],
        token: &str,
        ttl: Duration,
    ) -> Result<Extend, NodeError> {
        self.queue.extend(keys, token, ttl).await
    }

    async fn inspect(&self, keys: &[String]) -> Result<Vec<KeyState>, NodeError> {
        self.queue.inspect(keys).await
    }

    async fn fence(&self, keys: &[String], floor: u64) -> Result<u64, NodeError> {
        self.queue.fence(keys, floor).await
    }

    /// A watch on the node's shared pub/sub connection (`None` without
    /// one).
    fn watch_release(&self, keys: &[String]) -> Option<BoxFuture<'static, ()>> {
        self.watch.as_ref()?.watch(keys)
    }

    fn outstanding(&self) -> Option<usize> {
        Some(self.queue.outstanding())
    }

    fn durability(&self) -> Durability {
        self.durability
    }

    /// Stops taking requests, waits until everything already queued (a
    /// release still in flight, say) has been sent and answered, and
    /// closes the connections. Dropping the node does the same in the
    /// background.
    async fn quit(&self) -> Result<(), NodeError> {
        if let Some(hub) = &self.watch {
            hub.close();
        }
        self.queue.drain().await;
        Ok(())
    }
}

/// Implements [`Node`](redlock_core::Node) for an adapter's node type by
/// forwarding every method to an expression of type
/// [`QueueNode`](crate::node::QueueNode) (or anything else that implements
/// `Node`).
///
/// ```
/// use std::sync::Arc;
/// use redlock_kit::node::QueueNode;
///
/// #[derive(Debug, Clone)]
/// pub struct MyNode {
///     inner: Arc<QueueNode>,
/// }
///
/// redlock_kit::node_via!(MyNode, |node| &*node.inner);
/// ```
#[macro_export]
macro_rules! node_via {
    ($ty:ty, |$this:ident| $inner:expr) => {
        #[$crate::__async_trait]
        impl $crate::__core::Node for $ty {
            fn id(&self) -> &str {
                let $this = self;
                $crate::__core::Node::id($inner)
            }

            async fn acquire(
                &self,
                keys: &[String],
                token: &str,
                ttl: ::std::time::Duration,
            ) -> Result<$crate::__core::Acquire, $crate::__core::NodeError> {
                let $this = self;
                $crate::__core::Node::acquire($inner, keys, token, ttl).await
            }

            async fn release(
                &self,
                keys: &[String],
                token: &str,
            ) -> Result<u64, $crate::__core::NodeError> {
                let $this = self;
                $crate::__core::Node::release($inner, keys, token).await
            }

            async fn extend(
                &self,
                keys: &[String],
                token: &str,
                ttl: ::std::time::Duration,
            ) -> Result<$crate::__core::Extend, $crate::__core::NodeError> {
                let $this = self;
                $crate::__core::Node::extend($inner, keys, token, ttl).await
            }

            async fn inspect(
                &self,
                keys: &[String],
            ) -> Result<Vec<$crate::__core::KeyState>, $crate::__core::NodeError> {
                let $this = self;
                $crate::__core::Node::inspect($inner, keys).await
            }

            async fn fence(
                &self,
                keys: &[String],
                floor: u64,
            ) -> Result<u64, $crate::__core::NodeError> {
                let $this = self;
                $crate::__core::Node::fence($inner, keys, floor).await
            }

            fn watch_release(
                &self,
                keys: &[String],
            ) -> Option<$crate::__core::BoxFuture<'static, ()>> {
                let $this = self;
                $crate::__core::Node::watch_release($inner, keys)
            }

            fn outstanding(&self) -> Option<usize> {
                let $this = self;
                $crate::__core::Node::outstanding($inner)
            }

            fn durability(&self) -> $crate::__core::Durability {
                let $this = self;
                $crate::__core::Node::durability($inner)
            }

            async fn quit(&self) -> Result<(), $crate::__core::NodeError> {
                let $this = self;
                $crate::__core::Node::quit($inner).await
            }
        }
    };
}
