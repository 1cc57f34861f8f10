//! A five-node Redlock of `FredNode`s end to end, on servers the tests start:
//! the same bodies the redis-rs adapter runs (`redlock_testkit::e2e`).

mod common;

use redlock_testkit::e2e;

macro_rules! e2e_tests {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            e2e::$name(&common::factory).await;
        }
    )*};
}

e2e_tests!(
    lock_extend_unlock,
    contention_never_two_holders,
    one_node_paused,
    two_of_five_killed,
    three_of_five_killed,
    node_restarted,
);
