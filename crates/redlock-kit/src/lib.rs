//! # redlock-kit
//!
//! What every Redlock adapter needs near the wire, written once. An adapter
//! (`redlock-redis-rs`, `redlock-fred`, or one of your own over another
//! client) implements [`redlock_core::Node`] by carrying requests to its
//! client's connections; everything that does not depend on the client lives
//! here:
//!
//! - [`queue`]: the per-node [`Queue`] every call goes through: order kept
//!   (also when a caller drops its future), calls that wait while the node
//!   is busy sent together as one batch, a bounded backlog, a release that
//!   withdraws its own unsent acquire. Generic over an [`Executor`].
//! - [`session`]: [`Session`], the [`Executor`] of one server over a small
//!   [`Link`] (connect, send commands in one round trip, disconnect):
//!   scripts loaded, a connection given up on fenced (`CLIENT KILL ID`),
//!   releases owed after a failure sent first, `NOSCRIPT` answered with
//!   the source, `READONLY` followed to the new master; the default
//!   timeouts.
//! - [`plan`]: a batch of [`Call`]s as abstract [`Command`]s ([`Planner`]),
//!   each with the calls its reply answers: the one-key acquire as
//!   `SET NX PX`, releases merged into one script call; each command's
//!   words in wire order ([`Command::each_arg`]), from which an adapter
//!   builds its client's command in one loop.
//! - [`node`]: [`node::QueueNode`] (id, queue, release watch) implements
//!   [`redlock_core::Node`]; [`node_via!`] forwards it from an adapter's
//!   own node type.
//! - [`settings`]: the settings every node builder has ([`settings::Settings`]:
//!   same names, defaults and checks), and its builder methods written once
//!   ([`builder_methods!`]); [`adapter_error!`], the error type for making
//!   a node, its shared variants written once.
//! - [`call`]: the lock-level request ([`Call`], [`Kind`]) and the scripts
//!   with their SHA1 digests ([`LoadedScripts`]).
//! - [`cluster`]: a batch on a Redis Cluster over a one-method
//!   [`cluster::Router`], split by slot with [`slots`].
//! - [`watch`]: the wake-on-release task (subscribe on demand, reconnect,
//!   fan out to waiters), generic over a small [`Subscriber`] / [`PubSub`]
//!   pair an adapter implements in a few lines, with an awaitable
//!   [`Subscriptions`] status (which channels the server confirmed).
//! - [`slots`]: a multi-key call on Redis Cluster split by hash slot, with
//!   its compensation (what one slot took is released when another
//!   conflicts), over any per-slot sender ([`SlotSender`]).
//! - [`FinishOnDrop`]: a request whose caller dropped its future after the
//!   first poll still completes, in order.
//! - [`reply`]: the lock scripts' replies in lock terms.
//! - [`Secrets`] and [`redact_url`]: passwords never reach an id, a log
//!   line, an error or `Debug` output; [`url`]: what is wrong with a node
//!   URL, in words a user can act on ([`url::invalid_url`]).
//!
//! ## An adapter in four pieces
//!
//! 1. A [`Link`] over the client's connection: make it, send a slice of
//!    [`Command`]s as one pipeline (each built from its words,
//!    [`Command::name`] and [`Command::each_arg`]), decode each reply into a
//!    [`reply::Reply`], drop it.
//! 2. A [`Session`] over that link, spawned in a [`Queue`]
//!    ([`Queue::spawn`]) with the node's backlog.
//! 3. A [`node::QueueNode`] over the queue (and the release watch), which
//!    implements [`redlock_core::Node`]; the adapter's node type wraps it
//!    and forwards `Node` to it with [`node_via!`].
//! 4. Optionally a [`Subscriber`] for wake-on-release and a
//!    [`cluster::Router`] for Redis Cluster.

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
pub mod cluster;
mod error;
mod finish;
pub mod native;
pub mod node;
pub mod plan;
pub mod queue;
pub mod reply;
mod secrets;
pub mod session;
pub mod settings;
pub mod slots;
pub mod url;
pub mod watch;

#[doc(hidden)]
pub use async_trait::async_trait as __async_trait;
#[doc(hidden)]
pub use redlock_core as __core;

pub use call::{Call, Kind, LoadedScripts};
pub use error::{is_auth_reply, AUTH_CODES};
pub use finish::FinishOnDrop;
pub use plan::{Command, Planner};
pub use queue::{Executor, Queue};
pub use secrets::{redact_url, Secrets};
pub use session::{Link, Session};
pub use slots::SlotSender;
pub use watch::{PubSub, ReleaseHub, Subscriber, Subscriptions};
