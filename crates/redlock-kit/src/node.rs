//! The parts every adapter's node type has: an id, a [`Queue`] (or one per
//! client of a pool), maybe a release watch; and [`Node`] over them
//! ([`QueueNode`], [`node_via!`]).
//!
//! [`node_via!`]: crate::node_via

use std::fmt;
use std::future::Future;
use std::time::Duration;

use redlock_core::node::ttl_millis;
use redlock_core::slot::hash_slot;
use redlock_core::{
    Acquire, BoxFuture, Durability, Extend, InvalidArgument, KeyState, Node, NodeError, Options,
    Redlock,
};

use crate::queue::Queue;
use crate::slots::{self, SlotSender};
use crate::watch::{ReleaseHub, Subscriptions};

/// A [`Redlock`] over one node per URL, each made by `open` (an adapter's
/// constructor that connects in the background): an adapter's
/// `redlock_with` in one call. The first error of `open` is returned as it
/// is; invalid `options` are `E::from(InvalidArgument)`.
pub fn redlock_from<S, N, E>(
    urls: &[S],
    options: Options,
    open: impl Fn(&str) -> Result<N, E>,
) -> Result<Redlock, E>
where
    S: AsRef<str>,
    N: Node + 'static,
    E: From<InvalidArgument>,
{
    let nodes = urls
        .iter()
        .map(|u| open(u.as_ref()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Redlock::new(nodes, options)?)
}

/// What [`QueueNode::with_quit`] runs instead of draining the queues.
pub type OnQuit = Box<dyn Fn() -> BoxFuture<'static, Result<(), NodeError>> + Send + Sync>;

/// A node: its id (without secrets), the queue every call goes through and
/// the release watch, if it has one. Implements [`Node`]; an adapter's
/// node type wraps one (in an `Arc`, to be cheap to clone) and forwards
/// [`Node`] to it with [`node_via!`](crate::node_via).
///
/// A client that routes by slot itself (a pool, or a Redis Cluster client
/// that sends each command to the slot's owner) gets one queue per client
/// ([`with_queues`](Self::with_queues)) and has multi-key calls split by
/// slot above the queues ([`split_by_slot`](Self::split_by_slot)).
pub struct QueueNode {
    id: String,
    /// Never empty: the first is the one [`QueueNode::new`] was given.
    queues: Vec<Queue>,
    watch: Option<ReleaseHub>,
    durability: Durability,
    by_slot: bool,
    response_timeout: Option<Duration>,
    on_quit: Option<OnQuit>,
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
            queues: vec![queue],
            watch,
            durability: Durability::Master,
            by_slot: false,
            response_timeout: None,
            on_quit: None,
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

    /// More queues, one per further client of a pool: a call goes through
    /// the queue its first key's hash slot picks, so calls for the same
    /// keys always share a queue and keep their order.
    #[must_use]
    pub fn with_queues(mut self, more: impl IntoIterator<Item = Queue>) -> Self {
        self.queues.extend(more);
        self
    }

    /// Whether a call's keys are split by hash slot above the queues, one
    /// request per slot, all or nothing ([`slots`]): for a Redis Cluster
    /// client whose executor sends each call as it is.
    #[must_use]
    pub fn split_by_slot(mut self, clustered: bool) -> Self {
        self.by_slot = clustered;
        self
    }

    /// How long a caller waits for one request (`None`: until answered).
    /// A request the caller stopped waiting for is not withdrawn: it keeps
    /// its place in the queue's order and in the backlog until answered.
    #[must_use]
    pub fn with_response_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// What [`Node::quit`] does instead of draining the queues: for an
    /// adapter that closes its client's connections itself (it can call
    /// [`close`](Self::close) and drain [`queues`](Self::queues)).
    #[must_use]
    pub fn with_quit(mut self, on_quit: OnQuit) -> Self {
        self.on_quit = Some(on_quit);
        self
    }

    /// The node's (first) queue.
    pub fn queue(&self) -> &Queue {
        &self.queues[0]
    }

    /// Every queue of the node, one per client.
    pub fn queues(&self) -> &[Queue] {
        &self.queues
    }

    /// The pub/sub status of wake-on-release; `None` without a watch.
    pub fn subscriptions(&self) -> Option<Subscriptions> {
        self.watch.as_ref().map(ReleaseHub::subscriptions)
    }

    /// Stops taking requests (what the queues hold is still sent) and
    /// stops the release watch.
    pub fn close(&self) {
        for queue in &self.queues {
            queue.close();
        }
        if let Some(hub) = &self.watch {
            hub.close();
        }
    }

    /// The queue that carries requests for `keys`.
    fn pick(&self, keys: &[String]) -> &Queue {
        match (self.queues.len(), keys.first()) {
            (1, _) | (_, None) => &self.queues[0],
            (n, Some(key)) => &self.queues[usize::from(hash_slot(key.as_bytes())) % n],
        }
    }

    /// Waits for `answer` up to the response timeout, if one is set
    /// ([`with_response_timeout`](Self::with_response_timeout)).
    pub async fn bounded<T>(
        &self,
        answer: impl Future<Output = Result<T, NodeError>>,
    ) -> Result<T, NodeError> {
        let Some(timeout) = self.response_timeout else {
            return answer.await;
        };
        tokio::time::timeout(timeout, answer)
            .await
            .unwrap_or_else(|_| {
                Err(NodeError::Connection(format!(
                    "no answer within {timeout:?}; the request keeps its place in the node's order"
                )))
            })
    }
}

/// One request per slot, each through the queue of its keys.
#[async_trait::async_trait]
impl SlotSender for QueueNode {
    fn clustered(&self) -> bool {
        self.by_slot
    }

    async fn acquire(
        &self,
        _: u16,
        keys: Vec<String>,
        token: &str,
        ttl_ms: u64,
    ) -> Result<Acquire, NodeError> {
        let ttl = Duration::from_millis(ttl_ms);
        self.bounded(self.pick(&keys).acquire(&keys, token, ttl))
            .await
    }

    async fn release(&self, _: u16, keys: Vec<String>, token: &str) -> Result<u64, NodeError> {
        self.bounded(self.pick(&keys).release(&keys, token)).await
    }

    async fn extend(
        &self,
        _: u16,
        keys: Vec<String>,
        token: &str,
        ttl_ms: u64,
    ) -> Result<Extend, NodeError> {
        let ttl = Duration::from_millis(ttl_ms);
        self.bounded(self.pick(&keys).extend(&keys, token, ttl))
            .await
    }

    async fn inspect(&self, _: u16, keys: Vec<String>) -> Result<Vec<KeyState>, NodeError> {
        self.bounded(self.pick(&keys).inspect(&keys)).await
    }

    async fn fence(&self, _: u16, keys: Vec<String>, floor: u64) -> Result<u64, NodeError> {
        self.bounded(self.pick(&keys).fence(&keys, floor)).await
    }
}

/// With [`split_by_slot`](QueueNode::split_by_slot), every call on keys
/// in several slots goes through [`slots`]: all or nothing, what one slot
/// took released again when another conflicts or fails, and an extend
/// first checks every slot for the token. All of a call's requests are
/// handed to their queues on the first poll, so a release keeps its order
/// also when its caller drops the future.
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
        if self.by_slot {
            return slots::acquire(self, keys, token, ttl_millis(ttl)).await;
        }
        self.bounded(self.pick(keys).acquire(keys, token, ttl))
            .await
    }

    async fn release(&self, keys: &[String], token: &str) -> Result<u64, NodeError> {
        if self.by_slot {
            return slots::release(self, keys, token).await;
        }
        self.bounded(self.pick(keys).release(keys, token)).await
    }

    async fn extend(
        &self,
        keys: &[String],
        token: &str,
        ttl: Duration,
    ) -> Result<Extend, NodeError> {
        if self.by_slot {
            return slots::extend(self, keys, token, ttl_millis(ttl)).await;
        }
        self.bounded(self.pick(keys).extend(keys, token, ttl)).await
    }

    async fn inspect(&self, keys: &[String]) -> Result<Vec<KeyState>, NodeError> {
        if self.by_slot {
            return slots::inspect(self, keys).await;
        }
        self.bounded(self.pick(keys).inspect(keys)).await
    }

    async fn fence(&self, keys: &[String], floor: u64) -> Result<u64, NodeError> {
        if self.by_slot {
            return slots::fence(self, keys, floor).await;
        }
        self.bounded(self.pick(keys).fence(keys, floor)).await
    }

    /// A watch on the node's shared pub/sub connection (`None` without
    /// one).
    fn watch_release(&self, keys: &[String]) -> Option<BoxFuture<'static, ()>> {
        self.watch.as_ref()?.watch(keys)
    }

    /// Shared by the queues: they count against one backlog.
    fn outstanding(&self) -> Option<usize> {
        Some(self.queues[0].outstanding())
    }

    fn durability(&self) -> Durability {
        self.durability
    }

    /// Stops taking requests, waits until everything already queued (a
    /// release still in flight, say) has been sent and answered, and
    /// closes the connections. Dropping the node does the same in the
    /// background. With [`with_quit`](QueueNode::with_quit), runs that
    /// instead.
    async fn quit(&self) -> Result<(), NodeError> {
        if let Some(on_quit) = &self.on_quit {
            return on_quit().await;
        }
        if let Some(hub) = &self.watch {
            hub.close();
        }
        for queue in &self.queues {
            queue.drain().await;
        }
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
