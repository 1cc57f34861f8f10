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

macro_rules! standalone {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            conformance::$name(&common::factory).await;
        }
    )*};
}

standalone!(
    order_kept_under_early_decisions,
    stopped_server_then_restarted,
    paused_server_does_not_block,
    release_resent_after_reset,
);
