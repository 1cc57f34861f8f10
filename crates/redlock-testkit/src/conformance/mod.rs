//! The `Node` conformance suite, in the manner of object_store's
//! `integration.rs`: public async functions that check the `Node` contract,
//! and macros that emit one test per check.
//!
//! Two parts:
//!
//! - [`node`] (feature `conformance`): checks made through the `Node` trait
//!   alone, so they need no Redis client and run on any implementation,
//!   Redis-backed or not. [`conformance_tests!`](crate::conformance_tests)
//!   emits the whole list for a function that makes a [`Subject`].
//! - the real-server checks (feature `servers`, on by default): they also
//!   look at the servers behind the node (PTTL, `SCRIPT FLUSH`, keys left
//!   behind) or start, pause, kill and proxy their own servers; run through
//!   [`server_conformance_tests!`](crate::server_conformance_tests), or
//!   [`run_on_target`] and [`run_standalone`].
//!
//! ```
//! use redlock_testkit::conformance::Subject;
//! use redlock_testkit::sim::SimNode;
//!
//! async fn subject() -> Subject {
//!     Subject::new(SimNode::new("sim").as_dyn())
//! }
//!
//! redlock_testkit::conformance_tests!(subject);
//! # fn main() {}
//! ```

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::sync::Arc;

use redlock_core::slot::hash_slot;
use redlock_core::Node;

pub mod node;
#[cfg(feature = "servers")]
mod servers;

#[cfg(feature = "servers")]
pub use servers::*;

pub use crate::wait::eventually;

/// A node under test, with whatever must live as long as it (the server it
/// talks to, a temporary directory, ...).
pub struct Subject {
    node: Arc<dyn Node>,
    _keep: Vec<Box<dyn Any + Send + Sync>>,
}

impl fmt::Debug for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subject")
            .field("node", &self.node.id())
            .finish()
    }
}

impl Subject {
    /// A subject that needs nothing else kept alive.
    pub fn new(node: Arc<dyn Node>) -> Self {
        Subject {
            node,
            _keep: Vec::new(),
        }
    }

    /// Keeps `guard` (e.g. the server the node talks to) until the check
    /// ends.
    #[must_use]
    pub fn keeping(mut self, guard: impl Any + Send + Sync) -> Self {
        self._keep.push(Box::new(guard));
        self
    }

    /// The node.
    pub fn node(&self) -> &Arc<dyn Node> {
        &self.node
    }
}

/// A boxed error from a factory.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What a node under test talks to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// One server at this URL.
    Single(String),
    /// A Redis Cluster; the URLs of all its nodes (any is a seed).
    Cluster(Vec<String>),
    /// A master behind Sentinel.
    Sentinel {
        /// The sentinels' URLs.
        sentinels: Vec<String>,
        /// The monitored master's name.
        master: String,
    },
}

/// Makes a node for a [`Target`]. Implemented for any
/// `Fn(Target) -> impl Future<Output = Result<Arc<dyn Node>, BoxError>>`.
#[async_trait::async_trait]
pub trait NodeFactory: Send + Sync {
    /// A node connected to `target`.
    async fn node(&self, target: &Target) -> Result<Arc<dyn Node>, BoxError>;
}

#[async_trait::async_trait]
impl<F, Fut> NodeFactory for F
where
    F: Fn(Target) -> Fut + Send + Sync,
    Fut: Future<Output = Result<Arc<dyn Node>, BoxError>> + Send,
{
    async fn node(&self, target: &Target) -> Result<Arc<dyn Node>, BoxError> {
        self(target.clone()).await
    }
}

/// Makes a node or fails the test with the factory's error.
pub async fn make(f: &dyn NodeFactory, target: &Target) -> Arc<dyn Node> {
    match f.node(target).await {
        Ok(n) => n,
        Err(e) => panic!("node factory failed for {target:?}: {e}"),
    }
}

/// A unique key prefix for one check (no hash tag, so keys spread over
/// cluster slots).
pub fn unique_prefix(check: &str) -> String {
    let n: u64 = rand::random();
    format!("redlock-conformance:{check}:{n:016x}:")
}

/// `count` keys with the prefix, each in a different cluster hash slot.
pub fn keys_in_distinct_slots(prefix: &str, count: usize) -> Vec<String> {
    let mut keys: Vec<String> = Vec::new();
    let mut i = 0;
    while keys.len() < count {
        let k = format!("{prefix}k{i}");
        if !keys
            .iter()
            .any(|x| hash_slot(x.as_bytes()) == hash_slot(k.as_bytes()))
        {
            keys.push(k);
        }
        i += 1;
    }
    keys
}

/// Polls `request` once, then drops it.
pub(crate) fn poll_once_then_drop<F: Future>(request: F) {
    let mut request = std::pin::pin!(request);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    let _ = request.as_mut().poll(&mut cx);
}
