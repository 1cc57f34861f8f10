//! # redlock-redis-rs
//!
//! [Redlock](redlock_core) distributed locks over the [`redis`] crate: one
//! [`RedisNode`] per independent Redis server, or one for a whole Redis
//! Cluster (feature `cluster`) or Sentinel deployment (feature `sentinel`).
//!
//! ## The model
//!
//! A lock is held when a majority (quorum) of N independent Redis masters
//! store the same random token under the resource's key, each with a time to
//! live. The algorithm — quorum, validity time, retries, timeouts — lives in
//! [`redlock_core::Redlock`]; this crate only carries single requests to one
//! node each, as atomic Lua scripts.
//!
//! Each [`RedisNode`] has one connection, used by one request or batch at a
//! time, and one background task. A call is committed to the node's order
//! when its future is first polled: on an idle node it is sent right away
//! from the caller's task; on a busy node it waits, and the task sends
//! everything that has queued up as one pipeline (one round trip) as soon
//! as the connection is free again. So:
//!
//! - **Order is kept.** The core decides as soon as a quorum answered and
//!   drops the slower nodes' futures; the release it sends next can never
//!   overtake the acquire still in flight on a slow node, so no stale key is
//!   left behind.
//! - **No hidden retries.** A lock command is sent at most once. Only a
//!   command the server refused without running it (`NOSCRIPT`, and in a
//!   cluster `MOVED`/`ASK`/`TRYAGAIN`/`CLUSTERDOWN`) is sent again, by the
//!   rule of [`redlock_kit::slots`]: an acquire only while no release of
//!   its keys can have gone out since (the node's queue runs one batch at a
//!   time, so none can).
//! - **Shared round trips.** Concurrent lock requests to one node travel in
//!   the same pipeline, and the releases among them (with the built-in
//!   script) as one script call.
//! - **One send path.** Every request goes out on the `redis` crate's own
//!   connection (a `MultiplexedConnection` made from the node's
//!   [`Client`](redis::Client), or the `MultiplexedConnection` /
//!   `ConnectionManager` you pass in), so what you configure on the client
//!   (TCP settings, TLS, credentials, RESP3) applies.
//! - **Bounded.** A node owes at most [`Builder::max_outstanding`] requests
//!   (default 1024). A server that stops answering (paused, black-holed)
//!   holds its queue; beyond the bound, acquires fail at once **without
//!   being sent** ([`NodeError::Backlog`](redlock_core::NodeError::Backlog)),
//!   and the core sends no release for them. A release that finds its own
//!   acquire still unsent withdraws it. Memory stays flat however long the
//!   stall lasts; [`RedisNode::outstanding`] shows the count.
//! - **Nothing left behind across a stall.** A batch is waited for until
//!   the server answers. After [`Builder::response_timeout`] without a
//!   reply (10 s) the connection is replaced, and the new one first kills
//!   the old one on the server (`CLIENT KILL ID`), so no acquire still
//!   buffered on the old socket can run after a release sent later.
//!   Releases that were in flight on a failed connection, or could not be
//!   sent, are sent again first thing on the next one.
//! - **Reconnects.** A broken connection is replaced on the next request;
//!   after a server restart the scripts are loaded again (and `NOSCRIPT`
//!   falls back to `EVAL`, so a `SCRIPT FLUSH` does no harm). Behind
//!   Sentinel, a `READONLY` answer makes the node ask for the master again.
//! - **Wakes waiters on release.** A node opened from a URL or a
//!   [`Client`](redis::Client) keeps one pub/sub connection, subscribed to
//!   the release channels of resources someone waits for; a waiting `lock`
//!   retries as soon as the holder releases, and never later than its retry
//!   delay if a message is lost ([`Builder::wake_on_release`]). A cluster
//!   node announces and listens with sharded pub/sub on each key's shard
//!   (Redis 7.0+, Valkey; waiters poll on older servers); a Sentinel node's
//!   subscription follows the master across failovers.
//! - **No secrets.** [`Node::id`](redlock_core::Node::id), `Debug` and every
//!   error show the address without the password.
//!
//! ## The API
//!
//! - [`redlock`] / [`redlock_with`]: URLs in, a [`Redlock`] out.
//! - [`RedisNode`]: [`open`](RedisNode::open) /
//!   [`connect`](RedisNode::connect) a URL, wrap a
//!   [`Client`](redis::Client), a `MultiplexedConnection` or a
//!   `ConnectionManager`, a cluster or a sentinel; tune it with
//!   [`RedisNode::builder`].
//!
//! ```no_run
//! use std::time::Duration;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let redlock = redlock_redis_rs::redlock(&[
//!     "redis://127.0.0.1:6381", "redis://127.0.0.1:6382", "redis://127.0.0.1:6383",
//! ])?;
//! let lock = redlock.lock("nightly-export", Duration::from_secs(10)).await?;
//! // ... only one process at a time gets here ...
//! lock.unlock().await?;
//! # Ok(()) }
//! ```
//!
//! ## Features
//!
//! - `cluster`: `RedisNode::connect_cluster` (and `Builder::connect_cluster`), a whole Redis Cluster as one
//!   node; multi-resource locks spanning hash slots are split by slot and
//!   compensated, `CROSSSLOT` never surfaces.
//! - `sentinel`: `RedisNode::connect_sentinel` (and `Builder::connect_sentinel`), following the master across
//!   failovers.
//! - `tls`: `rediss://` URLs over rustls.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod address;
#[cfg(feature = "cluster")]
mod cluster;
mod error;
mod node;
#[cfg(feature = "sentinel")]
mod sentinel;
mod single;
#[cfg(feature = "tls")]
mod tls;
mod watch;
mod wire;

pub use error::Error;
pub use node::{Builder, RedisNode};
pub use redlock_core::{self, Lock, LockError, Options, Redlock};
pub use redlock_kit::redact_url;
pub use redlock_kit::session::{DEFAULT_CONNECTION_TIMEOUT, DEFAULT_RESPONSE_TIMEOUT};
pub use redlock_kit::Subscriptions;

#[cfg(feature = "sentinel")]
pub use redis::sentinel::SentinelNodeConnectionInfo;

/// A [`Redlock`] over one independent Redis server per URL, with default
/// options. Nodes connect in the background, so servers that are down now
/// count as failed nodes until they come up. Must be called within a tokio
/// runtime.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let redlock = redlock_redis_rs::redlock(&["redis://a:6379", "redis://b:6379", "redis://c:6379"])?;
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
/// use redlock_redis_rs::Options;
/// let redlock = redlock_redis_rs::redlock_with(
///     &["redis://a:6379", "redis://b:6379", "redis://c:6379"],
///     Options::new().retry_count(3).key_prefix("locks:"),
/// )?;
/// # let _ = redlock; Ok(()) }
/// ```
pub fn redlock_with<S: AsRef<str>>(urls: &[S], options: Options) -> Result<Redlock, Error> {
    redlock_kit::node::redlock_from(urls, options, RedisNode::open)
}
