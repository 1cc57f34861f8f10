//! The conformance suite on one real `redis-server` (or the first of
//! `REDLOCK_TEST_NODES`), plus the checks that start their own servers.

mod common;

use redlock_testkit::conformance::{self, Target};
use redlock_testkit::test_nodes;

fn target() -> (redlock_testkit::TestNodes, Target) {
    let nodes = test_nodes(1).expect("redis-server");
    let t = Target::Single(nodes.urls()[0].clone());
    (nodes, t)
}

macro_rules! on_single {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let (_servers, t) = target();
            conformance::$name(&common::factory, &t).await;
        }
    )*};
}

on_single!(
    acquire_release,
    ttl_and_extend,
    inspect,
    multi_key_all_or_nothing,
    script_flush,
    concurrent_calls,
    dropped_after_first_poll,
    through_redlock,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_kept_under_early_decisions() {
    conformance::order_kept_under_early_decisions(&common::factory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_server_then_restarted() {
    conformance::stopped_server_then_restarted(&common::factory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_server_does_not_block() {
    conformance::paused_server_does_not_block(&common::factory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_resent_after_reset() {
    conformance::release_resent_after_reset(&common::factory).await;
}
