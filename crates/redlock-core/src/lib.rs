//! # redlock-core
//!
//! The Redlock distributed-lock algorithm over N independent Redis nodes,
//! independent of any Redis client or async runtime.
//!
//! ## The model
//!
//! A *resource* is a name ("nightly-export", "account:322456"). To lock it,
//! a client writes a fresh random *token* under the resource's key on every
//! node, only where the key does not exist, with a time to live (TTL). The
//! lock is held when a *quorum* (`N / 2 + 1`) of nodes took the token, and it
//! is safe to rely on until its *validity* ends:
//!
//! ```text
//! drift       = floor(ttl_ms * drift_factor) + 2 ms
//! valid_until = start + ttl - drift        (start: before the first request)
//! success     = acquired >= quorum  and  now < valid_until
//! ```
//!
//! All nodes are asked at once, each within a per-node timeout small next to
//! the TTL, and the attempt is decided as soon as the outcome is known either
//! way, so a slow or paused minority costs nothing. A node that timed out is
//! still sent every request but no longer waited for until it answers again
//! (a background probe notices its return), so a stopped minority costs one
//! timeout, not one per failed attempt; and a contended attempt (another
//! client already holds some node) waits for silent nodes only briefly,
//! since it blocks the other contenders meanwhile. A failed attempt releases on every
//! node that may have taken the key before the next one starts (or in the
//! background when the caller's future is dropped), so nothing is left
//! behind. Extending needs a
//! quorum too and never recreates a vanished key; a failed extension keeps the
//! old validity and does not release. If the holder dies, the keys expire with
//! their TTL.
//!
//! ## The API
//!
//! - [`Node`]: the seam to a Redis client, implemented by the adapter crates
//!   (`redlock-redis-rs`, `redlock-fred`) and by the in-memory node of
//!   `redlock-testkit`. [`scripts`] holds the Lua every node runs.
//! - [`Redlock`] from nodes and [`Options`] (node-redlock's drift factor, retry
//!   count, delay and jitter, plus a deadline, a per-node timeout, a key
//!   prefix and a per-node error hook).
//! - One lock call, one options value: [`Redlock::acquire`] takes a
//!   [`LockOptions`] (resources, TTL, retry policy, fencing, and for scoped
//!   locks the extension settings); [`Redlock::scoped`] holds the lock while
//!   a future runs. node-redlock's names are conveniences over them:
//!   [`Redlock::lock`], [`Redlock::try_lock`] (one attempt),
//!   [`Redlock::using`]; then [`Redlock::extend`], [`Redlock::unlock`],
//!   [`Redlock::quit`]. The [`Lock`] value carries its token (never shown
//!   by `Debug`) and validity; [`Lock::hold`] keeps one extended.
//! - [`LockError`] tells contention, infrastructure failure, lost validity,
//!   bad input and deadlines apart, each with a bounded [`Failure`] summary.
//! - [`Runtime`]: clock, sleep and spawn; `TokioRuntime` with the `tokio`
//!   feature, [`ManualClock`] for tests.
//! - Beyond node-redlock: [`Redlock::scoped`] / [`Redlock::using`] hold a
//!   lock while a future runs, extend it automatically and push its loss
//!   ([`Lease::lost`]);
//!   [`Redlock::status`] says who holds a resource by quorum;
//!   [`LockOptions::fenced`] adds a [fencing token](fence).
//! - Waiting wakes on release: a node that can announce releases
//!   ([`Node::watch_release`]) cuts a waiter's retry delay short; the delay
//!   stays the upper bound when an announcement is lost.
//! - Calls of one process take turns: lock calls of a `Redlock` (and its
//!   clones) that wait for the same resources queue first come, first
//!   served; only the first one polls the nodes, and a release in the
//!   process hands over to it as soon as the release is sent. A queued call
//!   spends its retry budget and deadline while it waits; `try_lock` never
//!   queues. Across processes, a client that lost a race (woken by a
//!   release and beaten to it, or a split vote) backs off exponentially
//!   with a random pause, so clients woken by the same release stop
//!   splitting the nodes between them.
//! - Feature `metrics`: acquisition wait, attempts, conflicts, node errors
//!   and extension failures through the `metrics` facade (see [`telemetry`]);
//!   nothing is compiled in without it.
//!
//! ## Example
//!
//! The nodes come from an adapter crate (`redlock-redis-rs`, `redlock-fred`);
//! this function works with any of them.
//!
//! ```
//! use std::time::Duration;
//! use redlock_core::{LockError, Node, Options, Redlock};
//!
//! async fn nightly_export<N: Node + 'static>(nodes: Vec<N>) -> Result<(), LockError> {
//!     let redlock = Redlock::new(nodes, Options::new().retry_count(3))?;
//!
//!     // By hand, as in node-redlock:
//!     let mut lock = redlock.lock("nightly-export", Duration::from_secs(30)).await?;
//!     // ... work, then more time if needed:
//!     lock.extend(Duration::from_secs(30)).await?;
//!     lock.unlock().await?;
//!
//!     // Scoped: extended while the future runs, released afterwards; the
//!     // future is cancelled if the lock is lost.
//!     let rows = redlock
//!         .using("nightly-export", Duration::from_secs(30), |lease| async move {
//!             assert!(lease.is_held());
//!             42
//!         })
//!         .await?;
//!     assert_eq!(rows, 42);
//!     Ok(())
//! }
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod acquire;
mod address;
mod admin;
pub mod backlog;
pub mod durability;
pub mod error;
mod extend;
pub mod fence;
mod health;
mod lease;
mod local;
mod lock;
pub mod node;
pub mod options;
mod redlock;
mod release;
mod resources;
mod round;
pub mod runtime;
pub mod scripts;
mod shared;
mod signal;
pub mod slot;
pub mod status;
pub mod telemetry;
pub mod token;
pub mod watchers;

pub use admin::Released;
pub use durability::{Durability, DurabilityError};
pub use error::{Failure, InvalidArgument, LockError, NodeOutcome, NodeReport, Operation};
pub use lease::{Lease, Lost};
pub use lock::Lock;
pub use node::{Acquire, Extend, KeyState, Node, NodeError};
pub use options::{
    LockOptions, NodeErrorEvent, NodeErrorHook, Options, Retries, RetryPolicy, MAX_TTL,
};
pub use redlock::Redlock;
pub use resources::{IntoResources, MAX_KEY_BYTES};
#[cfg(feature = "tokio")]
pub use runtime::TokioRuntime;
pub use runtime::{BoxFuture, ManualClock, Runtime};
pub use scripts::Scripts;
pub use status::{Holder, NodeView, ResourceStatus, Verdict};

/// Re-exported so that `Node` implementations can use the same macro version.
pub use async_trait::async_trait;
