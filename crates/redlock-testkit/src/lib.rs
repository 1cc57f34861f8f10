//! Test support for redlock-rs.
//!
//! Two kinds of node stand behind the same `Node` trait in tests:
//!
//! - the in-memory [`sim::SimNode`], on a controllable clock with fault
//!   switches, for deterministic tests of the algorithm in `redlock-core`;
//! - real `redis-server` processes ([`RedisServer`], [`RedisCluster`],
//!   [`Sentinel`], [`tls::TlsRedisServer`]) started on free loopback ports and
//!   stopped on drop, with faults: pause (SIGSTOP), kill, restart, and the
//!   TCP [`fault_proxy`] (delay, hold, reset, close after N bytes).
//!   `REDLOCK_TEST_NODES=redis://…,redis://…` points the suites at servers
//!   started elsewhere ([`test_nodes`]).
//!
//! On top of them: the [`conformance`] suite every adapter runs (in the manner
//! of object_store's `integration.rs`), shared end-to-end bodies ([`e2e`],
//! [`leases`]) and the safety [`checker`].
//!
//! # Features
//!
//! - `conformance`: the trait-level `Node` checks and
//!   [`conformance_tests!`]; no Redis client is pulled in, so any `Node`
//!   implementation can run them.
//! - `servers` (default; implies `conformance`): real servers, fault
//!   injection, the real-server checks and [`server_conformance_tests!`],
//!   the end-to-end bodies and the safety checker.
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
