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
//!   connection reset does not leave the key behind until its TTL. A
//!   request the server refused without running it (`NOSCRIPT`, or in a
//!   cluster `MOVED`, `ASK`, `TRYAGAIN`, `CLUSTERDOWN`) is sent again, an
//!   acquire only while no release went out on the node since
//!   ([`redlock_kit::slots::Resends`]).
//! - **Ordered and batched.** Each client has a queue
//!   ([`redlock_kit::Queue`]): a request to an idle client is sent from the
//!   caller's task; requests that arrive while a batch is on the wire wait
//!   and go out together as the next batch, one batch at a time, so a
//!   release can never overtake the acquire before it, even if the core
//!   dropped the acquire's future. A batch is the kit's wire plan in fred's
//!   terms: a one-key acquire as fred's own `SET … NX PX` (which fred
//!   writes without flushing while more commands follow) and the batch's
//!   releases as one script call, so a batch costs one or two socket writes
//!   rather than one per command. In a pool, requests for the same keys
//!   always use the same client.
//! - **Bounded.** A node owes at most
//!   [`Builder::max_outstanding`] requests (sent or queued in fred,
//!   not answered yet); beyond it acquires, extends and reads fail at once
//!   without being sent ([`NodeError::Backlog`](redlock_core::NodeError)),
//!   so a stopped server costs flat memory. A caller waits at most
//!   [`Builder::response_timeout`] (the core's shorter per-node
//!   timeout usually decides first); a request it stopped waiting for still
//!   keeps its place in the node's order and in the count until fred
//!   answers it. By default a command fails at once, unsent
//!   ([`NodeError::NotConnected`](redlock_core::NodeError)), while its
//!   connection is down (fail fast), also before the first connection:
//!   [`redlock`] and [`Builder::open`] do not wait for the servers. Clients
//!   made from a URL reconnect forever with exponential backoff
//!   ([`default_reconnect_policy`]);
//!   [`quit`](redlock_core::Node::quit), or dropping the last handle,
//!   closes their connections after the answers still owed, within the
//!   response timeout.
//! - **Cluster keys.** A multi-resource lock whose keys live in different
//!   hash slots is split with [`redlock_kit::slots`], one request per slot, all sent at once. If any slot conflicts or fails, what
//!   the others took is released before answering: all or nothing, and never
//!   a `CROSSSLOT` error. An extend across slots first checks every slot for
//!   the token and changes nothing when one key is no longer ours.
//! - **No secrets.** [`Node::id`](redlock_core::Node::id) is the address
//!   without credentials (`redis://10.0.0.1:6379/0`,
//!   `redis-cluster://h1:7000,h2:7001`, `redis-sentinel://h:26379/mymaster`);
//!   `Debug` output and errors never contain a password.
//! - **Wakes waiters on release.** A node keeps one pub/sub connection,
//!   subscribed to the release channels of resources someone waits for; a
//!   waiting `lock` retries as soon as a quorum of nodes announced the
//!   release, and still after its retry delay if a message is lost
//!   ([`Builder::wake_on_release`]). On a Redis Cluster the announcement is
//!   a sharded `SPUBLISH` on the key's shard (Redis 7.0+ and Valkey; older
//!   clusters poll); behind Sentinel the subscription follows the master.
//!
//! ## The API
//!
//! - [`redlock`] / [`redlock_with`]: URLs in, a [`Redlock`] out (the same
//!   names as in `redlock-redis-rs`).
//! - [`FredNode::connect`] from a URL; [`FredNode::from_client`] and
//!   [`FredNode::from_pool`] for clients the application built (any
//!   `ServerConfig`: centralized, clustered, sentinel).
//! - [`Builder`] for the response and connection timeouts, fail-fast, reconnect
//!   policy, pool size and custom [`Scripts`](redlock_core::Scripts).
//! - [`Error`] when a node cannot be made.
//!
//! ## Features
//!
//! - `tls`: `rediss://` URLs over rustls with the ring provider (as in
//!   `redlock-redis-rs`); `enable-rustls` selects the aws-lc-rs provider.
//! - `cluster`, `sentinel`: accepted for the same feature names as
//!   `redlock-redis-rs`; fred supports both deployments always.
//! - `metrics`: each node's outstanding requests as a gauge.
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
#![forbid(unsafe_code)]

mod builder;
mod error;
mod node;
mod watch;
mod wire;

pub use builder::{default_reconnect_policy, Builder};
#[doc(hidden)]
pub use builder::{FredNodeBuilder, DEFAULT_COMMAND_TIMEOUT};
#[doc(hidden)]
pub use error::ConnectError;
pub use error::Error;
pub use node::FredNode;
pub use redlock_core::{self, Lock, LockError, Options, Redlock};
pub use redlock_kit::session::{DEFAULT_CONNECTION_TIMEOUT, DEFAULT_RESPONSE_TIMEOUT};
pub use redlock_kit::{redact_url, Subscriptions};

/// The `fred` crate this adapter is built on, for building clients of the
/// same version.
pub use fred;

/// A [`Redlock`] over one independent Redis server per URL, with default
/// options. Nodes connect in the background ([`Builder::open`]), so servers
/// that are down now count as failed nodes until they come up. Must be
/// called within a tokio runtime ([`Error::NoRuntime`] otherwise).
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let redlock = redlock_fred::redlock(&["redis://a:6379", "redis://b:6379", "redis://c:6379"])?;
/// let lock = redlock.lock("account:322456", std::time::Duration::from_secs(5)).await?;
/// lock.unlock().await?;
/// # Ok(()) }
/// ```
pub fn redlock<S: AsRef<str>>(urls: &[S]) -> Result<Redlock, Error> {
    redlock_with(urls, Options::default())
}

/// Like [`redlock`], with [`Options`].
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use redlock_fred::Options;
/// let redlock = redlock_fred::redlock_with(
///     &["redis://a:6379", "redis://b:6379", "redis://c:6379"],
///     Options::new().retry_count(3).key_prefix("locks:"),
/// )?;
/// # let _ = redlock; Ok(()) }
/// ```
pub fn redlock_with<S: AsRef<str>>(urls: &[S], options: Options) -> Result<Redlock, Error> {
    redlock_kit::node::redlock_from(urls, options, FredNode::open)
}

/// The README's examples, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
