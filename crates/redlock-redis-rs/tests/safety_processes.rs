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
    run_with(fault, config, acquisitions).await
}

async fn run_with(fault: &str, config: Config, acquisitions: u64) -> Report {
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
    // A TTL well above any scheduling stall of a loaded test machine: with
    // no fault, no lock may be lost (holds are 1 ms; the TTL costs nothing).
    let config = Config::new("processes-no-fault")
        .contenders(4)
        .acquisitions(300)
        .max_duration(std::time::Duration::from_secs(120))
        .ttl(std::time::Duration::from_secs(10));
    let report = run_with("no-fault", config, 300).await;
    assert_eq!(report.keys_left, 0, "{report}");
    assert_eq!(report.lost_lock_detections, 0, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn separate_processes_minority_paused_in_a_loop() {
    let recording = redlock_testkit::timeline::Recording::start();
    let report = run("pause-minority", 4, 150).await;
    // The timeline holds every contender process's holds, beside the
    // pauses (another test's holds may add to it: at least, not exactly).
    let timeline = recording.finish();
    assert!(
        timeline.holds.len() as u64 >= report.acquisitions,
        "{} holds drawn for {} acquisitions",
        timeline.holds.len(),
        report.acquisitions
    );
    for contender in 0..4 {
        assert!(
            timeline.holds.iter().any(|h| h.contender == contender),
            "no hold drawn for contender {contender}"
        );
    }
    assert!(timeline.holds.iter().all(|h| h.from <= h.to));
    assert!(
        timeline
            .faults
            .iter()
            .any(|f| f.label.starts_with("SIGSTOP")),
        "{:?}",
        timeline.faults
    );
    let dir = std::env::temp_dir().join(format!("redlock-timeline-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let svg = dir.join("processes.svg");
    timeline
        .write_svg(&svg, "processes/pause-minority")
        .unwrap_or_else(|e| panic!("{e}"));
    let drawn = std::fs::read_to_string(&svg).unwrap_or_else(|e| panic!("{e}"));
    let _ = std::fs::remove_dir_all(&dir);
    assert!(drawn.contains("<svg"), "not an SVG");
}
