//! Test support for redlock-rs.

/// An in-memory [`Node`](redlock_core::Node) on a controllable clock, with
/// fault switches (down, slow, hung, failing after N calls, early expiry) and
/// introspection, for deterministic tests of the algorithm.
pub mod sim;
