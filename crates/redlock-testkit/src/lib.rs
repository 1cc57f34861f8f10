//! Test support for redlock-rs: the checks every `Node` adapter runs, the
//! servers and faults they run against, and the tools to wait and to judge.
//!
//! # The model
//!
//! A [`Node`](redlock_core::Node) is one Redis deployment as Redlock sees it
//! (a single server, a Cluster, a Sentinel-managed master); an adapter
//! (`redlock-redis-rs`, `redlock-fred`, yours) implements it over a Redis
//! client. The testkit checks an adapter without knowing its client: the
//! adapter hands it a **factory**, a function that builds the adapter's node
//! for a target (a URL, a [`conformance::Target`], with the builder settings
//! a check asks for), and the testkit owns everything else: it starts the
//! servers, injects the faults, makes the calls and asserts on the replies
//! and on the servers' state.
//!
//! Each check is a public async function over such a factory, named for
//! what it shows; each group of checks has a macro that emits one
//! `#[tokio::test]` per check, with the check's name. An adapter's test
//! file is therefore a factory and one macro call, and every adapter runs
//! the same list; a check added here runs everywhere.
//!
//! Two kinds of node stand behind the same `Node` trait in tests:
//!
//! - the in-memory [`sim::SimNode`], on a controllable clock with fault
//!   switches, for deterministic tests of the algorithm in `redlock-core`;
//! - real `redis-server` / `valkey-server` processes ([`RedisServer`],
//!   [`RedisCluster`], [`Sentinel`], [`tls::TlsRedisServer`]) started on
//!   free loopback ports and stopped on drop (also when a test panics),
//!   with faults: pause (SIGSTOP), kill, restart, and the TCP
//!   [`fault_proxy`] (delay, hold, reset, close after N bytes).
//!   `REDLOCK_SERVER_BIN` / `REDLOCK_SENTINEL_BIN` choose the binaries;
//!   `REDLOCK_TEST_NODES=redis://…,redis://…` points the suites at servers
//!   started elsewhere ([`test_nodes`]).
//!
//! Tests never sleep hoping something happened: they wait for the condition
//! with a deadline ([`wait`]), so a slow machine makes them slower, not
//! flaky, and a missing event fails them instead of hanging them.
//!
//! # Modules
//!
//! - [`conformance`]: the `Node` contract. [`conformance_tests!`] emits the
//!   trait-level checks for a function that makes a
//!   [`Subject`](conformance::Subject) (any `Node`, no Redis client
//!   needed); [`server_conformance_tests!`] the checks that also look at the
//!   servers (PTTL, `SCRIPT FLUSH`, keys left) or start, pause, kill and
//!   proxy their own, for a factory of
//!   [`Target`](conformance::Target)s.
//! - [`suites`]: real-server checks of adapter options and of
//!   wake-on-release, one module and one macro each (see below).
//! - [`stall`]: a node whose server stops answering stays bounded
//!   (backlog limit), and quit and drop close every connection;
//!   [`stall_tests!`].
//! - [`e2e`]: five-node Redlock end to end (lock, extend, unlock;
//!   contention; one node paused; two or three of five killed; a node
//!   restarted); [`e2e_tests!`].
//! - [`leases`]: scoped locks, release on drop, status and fencing on five
//!   servers with faults; [`lease_tests!`].
//! - [`checker`]: a Jepsen-style safety checker: contenders on one
//!   resource while a fault runs, and a [`Report`](checker::Report) of
//!   overlaps, lost updates and stale writes; [`timeline`] records a run
//!   and draws it (feature `charts`).
//! - [`server`]: the server processes, their binaries and versions, and
//!   raw commands to look at them ([`RedisServer::numsub`],
//!   [`RedisServer::command_calls`], …); [`tls`]: a TLS server with its
//!   own test CA; [`fault_proxy`]: the TCP proxy that injects network
//!   faults.
//! - [`sim`]: the in-memory node; [`wait`]: waiting for a condition with a
//!   deadline.
//!
//! # The suites
//!
//! Each module of [`suites`] holds the checks of one adapter feature
//! against real servers, over a factory trait of its own:
//!
//! | macro | factory | what it checks |
//! |---|---|---|
//! | [`durability_tests!`] | [`DurableNodeFactory`](suites::durability::DurableNodeFactory): `(url, Durability)` | [`suites::durability`]: `Builder::durability` waits for a replica (`WAIT`) after an acquire or extend; a write the replica did not acknowledge is a failed vote whose keys are released; a TTL the wait would use up is refused before sending |
//! | [`native_tests!`] | [`NativeNodeFactory`](suites::native::NativeNodeFactory): `(url, NativeSettings)`, and how the adapter reports an `EVALSHA` an ACL refused | [`suites::native`]: on Valkey 9 releases are `DELIFEQ` and extends `SET … IFEQ` (no script runs), scripts run on older servers, for several keys and with native commands off; a user without `@scripting` locks end to end; a native release still wakes waiters; a Valkey replaced by an older server behind the same address gets scripts again; a native command the ACL refuses gets the script instead |
//! | [`wake_sentinel_tests!`] | [`WatchedNodeFactory`](suites::wake::WatchedNodeFactory): a `Target::Sentinel` node and its release subscriptions | [`suites::wake_sentinel`]: a waiter with an hour's retry delay is woken by a release on the master the sentinels name, and again after a failover, on the new master |
//! | [`wake_cluster_tests!`] | [`WatchedNodeFactory`](suites::wake::WatchedNodeFactory): a `Target::Cluster` node and its release subscriptions | [`suites::wake_cluster`]: a release announced with `SPUBLISH` on the key's shard wakes a waiter, only that shard has the subscription, no `PUBLISH` goes out; a Redis 6 cluster polls |
//!
//! [`suites::wake`] holds what the wake checks share, and what an adapter's
//! own wake tests use: the factory, [`retry_every`](suites::wake::retry_every)
//! and [`hour_delay`](suites::wake::hour_delay),
//! [`spawn_acquire`](suites::wake::spawn_acquire),
//! [`until_subscribed`](suites::wake::until_subscribed), and whole steps
//! such as [`woken_by_the_release`](suites::wake::woken_by_the_release).
//!
//! A check whose server is missing (a Valkey 9 or Redis 6 binary, found by
//! [`server::binaries`]) returns early with a printed reason.
//!
//! # Running the checks from an adapter
//!
//! The adapter writes its factories, builder calls and nothing more, and
//! one test file per group (here a module each):
//!
#![cfg_attr(feature = "servers", doc = "```no_run")]
#![cfg_attr(not(feature = "servers"), doc = "```ignore")]
//! use std::sync::Arc;
//!
//! use redlock_core::{Durability, Node, NodeError};
//! use redlock_testkit::conformance::{single_subject, BoxError, Subject, Target};
//! use redlock_testkit::suites::native::NativeSettings;
//! use redlock_testkit::suites::wake::WatchedNode;
//!
//! // The adapter's node for a target: `MyNode::connect(url)` and the like.
//! async fn node(target: Target) -> Result<Arc<dyn Node>, BoxError> {
//!     # unimplemented!()
//!     // connect to `target`
//! }
//!
//! // …with `MyNode::builder().durability(durability)`.
//! async fn durable_node(url: String, durability: Durability) -> Result<Arc<dyn Node>, BoxError> {
//!     # unimplemented!()
//!     // build with `durability`, connect to `url`
//! }
//!
//! // …with `.native_commands(…)` and `.scripts(…)`.
//! async fn native_node(url: String, settings: NativeSettings) -> Result<Arc<dyn Node>, BoxError> {
//!     # unimplemented!()
//!     // build with `settings`, connect to `url`
//! }
//!
//! // How this adapter reports an `EVALSHA` the server's ACL refused.
//! fn refused_evalsha(e: &NodeError) -> bool {
//!     matches!(e, NodeError::Auth(m) if m.contains("evalsha"))
//! }
//!
//! // The node with its `release_subscriptions()`.
//! async fn watched_node(target: Target) -> Result<WatchedNode, BoxError> {
//!     # unimplemented!()
//!     // connect to `target`, keep its subscriptions' status
//! }
//!
//! async fn subject() -> Subject {
//!     single_subject(&node).await
//! }
//!
//! // tests/conformance_single.rs
//! mod conformance_single {
//!     use super::*;
//!     redlock_testkit::conformance_tests!(subject);
//!     redlock_testkit::server_conformance_tests!(node);
//! }
//!
//! // tests/durability.rs
//! mod durability {
//!     use super::*;
//!     redlock_testkit::durability_tests!(durable_node);
//! }
//!
//! // tests/native.rs
//! mod native {
//!     use super::*;
//!     redlock_testkit::native_tests!(native_node, refused_evalsha);
//! }
//!
//! // tests/wake_sentinel.rs
//! mod wake_sentinel {
//!     use super::*;
//!     redlock_testkit::wake_sentinel_tests!(watched_node);
//! }
//!
//! // tests/wake_cluster.rs
//! mod wake_cluster {
//!     use super::*;
//!     redlock_testkit::wake_cluster_tests!(watched_node);
//! }
//! # fn main() {}
//! ```
//!
//! `cargo test --test wake_cluster` then runs
//! `a_release_on_the_keys_shard_wakes_the_waiter` and
//! `a_cluster_without_sharded_pub_sub_polls` against clusters the checks
//! start themselves.
//!
//! # Features
//!
//! - `conformance`: the trait-level `Node` checks and
//!   [`conformance_tests!`]; no Redis client is pulled in, so any `Node`
//!   implementation can run them.
//! - `servers` (default; implies `conformance`): real servers, fault
//!   injection, the real-server checks and [`server_conformance_tests!`],
//!   the suites, the end-to-end bodies and the safety checker.
//! - `charts` (implies `servers`): `timeline::Timeline::write_svg`, a
//!   run's timeline as an SVG file.
//!
//! The in-memory [`sim`] node and the [`wait`] helpers are always there.

#[cfg(feature = "servers")]
pub mod checker;
#[cfg(feature = "conformance")]
pub mod conformance;
#[cfg(feature = "servers")]
pub mod e2e;
#[cfg(feature = "servers")]
pub mod fault_proxy;
#[cfg(feature = "servers")]
pub mod leases;
#[cfg(feature = "servers")]
pub mod server;
pub mod sim;
#[cfg(feature = "servers")]
pub mod stall;
#[cfg(feature = "servers")]
pub mod suites;
#[cfg(feature = "servers")]
pub mod timeline;
#[cfg(feature = "servers")]
pub mod tls;
pub mod wait;

#[cfg(feature = "servers")]
pub use server::{
    server_supports, server_version, test_nodes, RedisCluster, RedisServer, Sentinel, ServerError,
    ServerVersion, TestNodes,
};
