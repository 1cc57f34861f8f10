//! Real-server checks of adapter options, shared by every adapter: public
//! async functions over a factory that builds the adapter's node with the
//! option under test, and a macro per module that emits the `#[tokio::test]`
//! list, like [`stall`](crate::stall) and its [`stall_tests!`](crate::stall_tests).
//!
//! - [`durability`]: `Builder::durability`, the replica wait (`WAIT`), and
//!   [`durability_tests!`](crate::durability_tests).
//! - [`native`]: `DELIFEQ` / `SET … IFEQ` where the server has them, scripts
//!   elsewhere, and [`native_tests!`](crate::native_tests).
//! - [`wake_sentinel`]: wake-on-release across a Sentinel failover, and
//!   [`wake_sentinel_tests!`](crate::wake_sentinel_tests), over a
//!   [`wake::WatchedNodeFactory`].
//! - [`wake_cluster`]: wake-on-release on a Redis Cluster (sharded pub/sub,
//!   polling without it), and [`wake_cluster_tests!`](crate::wake_cluster_tests).
//! - [`wake`]: what the wake checks share and the adapters' own wake tests
//!   use: the [`wake::WatchedNodeFactory`], retry policies only a wake-up
//!   can beat, a waiter in a task of its own, waiting for the servers'
//!   subscriber counts, and whole steps ([`wake::woken_by_the_release`],
//!   [`wake::killed_subscriptions_fall_back_to_polling`],
//!   [`wake::a_conflict_subscribes_nowhere`]).

pub mod durability;
pub mod native;
pub mod wake;
pub mod wake_cluster;
pub mod wake_sentinel;
