//! Test support for redlock-rs.

/// An in-memory [`Node`](redlock_core::Node) on a controllable clock, with
/// fault switches (down, slow, hung, failing after N calls, early expiry) and
/// introspection, for deterministic tests of the algorithm.
pub mod sim;

/// Real `redis-server` processes (single, cluster, sentinel) on free loopback
/// ports, with fault injection (pause, kill, restart), stopped on drop.
pub mod server;

/// End-to-end bodies for scoped locks, release on drop, status and fencing
/// on real servers; every adapter runs them.
pub mod leases;

/// A TCP proxy that delays traffic (per connection, order kept), for
/// slow-node tests.
pub mod proxy;

/// The `Node` conformance suite every adapter runs.
pub mod conformance;

/// A TCP fault proxy with per-direction modes switchable while running:
/// pass, delay, hold (blackhole), reset, close after N bytes.
pub mod fault_proxy;

/// A Jepsen-style safety checker: contenders, a non-atomic register, faults,
/// and a report of overlaps, lost updates and stale writes.
pub mod checker;

/// A TLS-only `redis-server` with a CA and certificate generated for the test.
pub mod tls;

pub use server::{test_nodes, RedisCluster, RedisServer, Sentinel, ServerError, TestNodes};

/// Five-node Redlock end-to-end bodies every adapter runs.
pub mod e2e;
