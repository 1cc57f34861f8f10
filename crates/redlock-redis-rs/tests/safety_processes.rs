//! The safety checker with contenders in separate processes
//! (`redlock_testkit::checker::processes`) over `RedisNode`: short runs.
//! Each starts five lock servers and a register server (stopped at the end)
//! and re-runs this test binary as the contender program: the parent test
//! starts `contender_process` alone, with the contender's spec in the
//! environment. Timings are printed, never asserted; the full-length run is
//! `cargo run --release -p redlock-redis-rs --example checker -- processes 10000`.

use std::process::Command;
use std::sync::Arc;

use redlock_core::Node;
use redlock_redis_rs::RedisNode;
use redlock_testkit::checker::{processes, Config, Report};

async fn node(url: String) -> Result<Arc<dyn Node>, String> {
    RedisNode::connect(&url)
        .await
        .map(|n| Arc::new(n) as Arc<dyn Node>)
        .map_err(|e| e.to_string())
}

/// The contender program. Does nothing unless started by
/// `processes::run` (which sets the spec in the environment).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contender_process() {
    if let Some(spec) = processes::spec_from_env() {
        let spec = spec.unwrap_or_else(|e| panic!("{e}"));
        processes::contender(spec, node)
            .await
            .unwrap_or_else(|e| panic!("contender: {e}"));
    }
}

fn contender_command() -> Command {
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("test binary: {e}"));
    let mut cmd = Command::new(exe);
    cmd.args([
        "contender_process",
        "--exact",
        "--nocapture",
        "--test-threads",
        "1",
        "--quiet",
    ]);
    cmd
}

async fn run(fault: &str, contenders: usize, acquisitions: u64) -> Report {
    let config = Config::new(&format!("processes-{fault}"))
        .contenders(contenders)
        .acquisitions(acquisitions)
        .max_duration(std::time::Duration::from_secs(120));
    let report = processes::run(fault, config, contender_command, node)
        .await
        .unwrap_or_else(|e| panic!("{fault}: {e}"));
    println!("{report}");
    report.assert_complete(acquisitions);
    report.assert_safe();
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn separate_processes_no_fault() {
    let report = run("no-fault", 4, 300).await;
    assert_eq!(report.keys_left, 0, "{report}");
    assert_eq!(report.lost_lock_detections, 0, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn separate_processes_minority_paused_in_a_loop() {
    run("pause-minority", 4, 150).await;
}
