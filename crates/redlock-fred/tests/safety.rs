//! The safety checker (`redlock_testkit::checker`) over `FredNode`: the runs
//! Redlock protects against, each on five fresh redis-servers. Contenders
//! record every hold on one clock; no two may overlap, no update may be
//! lost, and (without faults) no key may be left behind. Connection resets
//! in `proxy-chaos` are where a client that resent lock commands would
//! leave stale keys or double holders.

use std::sync::Arc;

use redlock_core::Node;
use redlock_fred::FredNode;
use redlock_testkit::checker::{self, Report};

async fn node(url: String) -> Result<Arc<dyn Node>, String> {
    FredNode::connect(&url)
        .await
        .map(|n| Arc::new(n) as Arc<dyn Node>)
        .map_err(|e| e.to_string())
}

async fn run(name: &str, acquisitions: u64) -> Report {
    assert!(checker::is_safe_scenario(name), "{name} is not a safe run");
    let report = checker::completed_scenario(name, acquisitions, node).await;
    report.assert_safe();
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_fault() {
    checker::no_fault_is_clean(node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minority_paused_in_a_loop() {
    run("pause-minority", 300).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minority_killed_and_restarted_after_the_ttl() {
    run("kill-minority", 300).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_jitter_and_resets_on_every_node() {
    // 1-3 ms of latency each way: ~50 locks per second, so a shorter run.
    run("proxy-chaos", 150).await;
}
