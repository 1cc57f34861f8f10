//! # redlock-kit
//!
//! What every Redlock adapter needs near the wire, written once. An adapter
//! (`redlock-redis-rs`, `redlock-fred`, or one of your own over another
//! client) implements [`redlock_core::Node`] by carrying requests to its
//! client's connections; everything that does not depend on the client lives
//! here:
//!
//! - [`watch`]: the wake-on-release task (subscribe on demand, reconnect,
//!   fan out to waiters), generic over a small [`Subscriber`] / [`PubSub`]
//!   pair an adapter implements in a few lines, with an awaitable
//!   [`Subscriptions`] status (which channels the server confirmed).
//! - [`slots`]: a multi-key call on Redis Cluster split by hash slot, with
//!   its compensation (what one slot took is released when another
//!   conflicts), over any per-slot sender ([`SlotSender`]).
//! - [`FinishOnDrop`]: a request whose caller dropped its future after the
//!   first poll still completes, in order.
//! - [`reply`]: the lock scripts' replies in lock terms, and the one-key
//!   acquire as a plain `SET NX PX`.
//! - [`Secrets`] and [`redact_url`]: passwords never reach an id, a log
//!   line, an error or `Debug` output.
//!
//! ## Why a crate of its own
//!
//! `redlock-core` is the algorithm and nothing else: no I/O and no async
//! runtime, so that it runs on any executor and its tests run on a
//! simulated clock. The pieces here need a runtime: the release watch is a
//! background task with timers and channels, and finishing a dropped
//! request means spawning it. A feature of the core would put tokio behind
//! a flag of the crate every user depends on and blur what the core
//! promises; a crate of its own keeps the arrows one way (core ← kit ←
//! adapters), is what the adapters share (as `sqlx-core` is for sqlx's
//! drivers), and lets a third-party adapter use it without depending on
//! either Redis client.
#![cfg_attr(docsrs, feature(doc_auto_cfg))]
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod call;
mod finish;
pub mod plan;
pub mod queue;
pub mod reply;
mod secrets;
pub mod slots;
pub mod watch;

pub use call::{Call, Kind, LoadedScripts};
pub use finish::FinishOnDrop;
pub use plan::{Command, Planner};
pub use queue::{Executor, Queue};
pub use secrets::{redact_url, Secrets};
pub use slots::SlotSender;
pub use watch::{PubSub, ReleaseHub, Subscriber, Subscriptions};
