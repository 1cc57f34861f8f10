//! Test support for redlock-rs.

/// Real `redis-server` processes (single, cluster, sentinel) on free loopback
/// ports, with fault injection (pause, kill, restart), stopped on drop.
pub mod server;

pub use server::{test_nodes, RedisCluster, RedisServer, Sentinel, ServerError, TestNodes};
