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

pub mod checker;
pub mod conformance;
pub mod e2e;
pub mod fault_proxy;
pub mod leases;
pub mod server;
pub mod sim;
pub mod stall;
pub mod timeline;
pub mod tls;

pub use server::{test_nodes, RedisCluster, RedisServer, Sentinel, ServerError, TestNodes};
