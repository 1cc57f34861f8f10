//! # redlock-fred
//!
//! Redlock distributed locks over the [`fred`] Redis client: a
//! [`FredNode`] is one Redlock node — an independent Redis server, or a whole
//! Redis Cluster or Sentinel deployment — seen through a fred client or pool.
//! Give several independent nodes to [`redlock_core::Redlock`] and it decides
//! who holds a lock.
//!
//! ## The model
//!
//! The algorithm (quorum, validity time, retries, per-node timeouts,
//! releasing after a failed attempt) lives in `redlock-core`. This crate only
//! carries single requests to one deployment and keeps the promises the core
//! relies on (the [`Node`](redlock_core::Node) contract):
//!
//! - **Atomic.** Every request is one Lua script on the server, sent with
//!   `EVALSHA`. The scripts are loaded at connect time (on every primary of a
//!   cluster); after a `SCRIPT FLUSH` the server answers `NOSCRIPT` and the
//!   script is sent once in full with `EVAL`, which caches it again.
//! - **Sent at most once.** Lock commands go out with fred's
//!   `max_attempts = 1`: a command whose connection breaks is reported as
//!   failed, never written again behind the core's back (a resent `SET`
//!   landing after the release would leave a stale key). Releases are the
//!   exception: they get one more attempt, so fred writes a release again
//!   after a reconnect (also when the core stopped waiting for it), and a
//!   connection reset does not leave the key behind until its TTL. A cluster `MOVED`
//!   reply therefore fails that one request; fred refreshes its slot map and
//!   the core's next attempt goes to the new owner.
//! - **Ordered, also when dropped.** fred hands a command to its connection
//!   task over a channel the moment the request future is first polled, and
//!   the task writes commands in that order; so once the core has polled an
//!   acquire, a release sent after it cannot overtake it, even if the core
//!   dropped the acquire's future. In a pool, requests for the same keys
//!   always use the same client.
//! - **Bounded.** A node owes at most
//!   [`FredNodeBuilder::max_outstanding`] requests (sent or queued in fred,
//!   not answered yet); beyond it acquires, extends and reads fail at once
//!   without being sent ([`NodeError::Backlog`](redlock_core::NodeError)),
//!   so a stopped server costs flat memory. A caller waits at most
//!   [`FredNodeBuilder::command_timeout`] (the core's shorter per-node
//!   timeout usually decides first); a request it stopped waiting for still
//!   keeps its place in the node's order and in the count until fred
//!   answers it. By default a command fails at once, unsent
//!   ([`NodeError::NotConnected`](redlock_core::NodeError)), while its
//!   connection is down (fail fast). Clients made from a URL reconnect
//!   forever with exponential backoff ([`default_reconnect_policy`]);
//!   [`quit`](redlock_core::Node::quit), or dropping the last handle,
//!   closes their connections after the answers still owed, within the
//!   command timeout.
//! - **Cluster keys.** A multi-resource lock whose keys live in different
//!   hash slots is split with [`redlock_core::slot::group_by_slot`], one
//!   request per slot, all sent at once. If any slot conflicts or fails, what
//!   the others took is released before answering: all or nothing, and never
//!   a `CROSSSLOT` error. An extend across slots first checks every slot for
//!   the token and changes nothing when one key is no longer ours.
//! - **No secrets.** [`Node::id`](redlock_core::Node::id) is the address
//!   without credentials (`redis://10.0.0.1:6379/0`,
//!   `redis-cluster://h1:7000,h2:7001`, `redis-sentinel://h:26379/mymaster`);
//!   `Debug` output and errors never contain a password.
//! - **Wakes waiters on release.** A node on a single server keeps one
//!   pub/sub connection, subscribed to the release channels of resources
//!   someone waits for; a waiting `lock` retries as soon as a quorum of nodes
//!   announced the release, and still after its retry delay if a message is
//!   lost ([`FredNodeBuilder::wake_on_release`]). Cluster and Sentinel nodes
//!   do not announce; their waiters poll.
//!
//! ## The API
//!
//! - [`FredNode::connect`] from a URL; [`FredNode::from_client`] and
//!   [`FredNode::from_pool`] for clients the application built (any
//!   `ServerConfig`: centralized, clustered, sentinel).
//! - [`FredNodeBuilder`] for the command timeout, fail-fast, reconnect
//!   policy, pool size and custom [`Scripts`](redlock_core::Scripts).
//! - [`ConnectError`] when a node cannot be made.
//!
//! ```no_run
//! use std::time::Duration;
//! use redlock_core::{Options, Redlock};
//! use redlock_fred::FredNode;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let mut nodes = Vec::new();
//! for url in ["redis://10.0.0.1:6379", "redis://10.0.0.2:6379", "redis://10.0.0.3:6379"] {
//!     nodes.push(FredNode::connect(url).await?);
//! }
//! let redlock = Redlock::new(nodes, Options::default())?;
//! let lock = redlock.lock("account:322456", Duration::from_secs(5)).await?;
//! // ... mutate the account while the lock is valid ...
//! lock.unlock().await?;
//! # Ok(())
//! # }
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs)]

mod builder;
mod error;
mod node;
mod reply;
mod scripts;
mod watch;

pub use builder::{
    default_reconnect_policy, FredNodeBuilder, DEFAULT_COMMAND_TIMEOUT, DEFAULT_CONNECTION_TIMEOUT,
};
pub use error::ConnectError;
pub use node::FredNode;

/// The `fred` crate this adapter is built on, for building clients of the
/// same version.
pub use fred;

/// The README's examples, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
