//! Runs the example programs and checks their exit status and output.
//!
//! `cargo test -p redlock-examples` builds the examples before running this
//! file (they are found next to the test binary, in `target/<profile>/examples`).
//! Each run is bounded; servers are started on free loopback ports, by the
//! test (quickstart) or by the example itself (the others).

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use redlock_testkit::server::Reply;
use redlock_testkit::RedisServer;

/// What a finished example run produced.
struct Run {
    success: bool,
    stdout: String,
    stderr: String,
}

impl Run {
    fn assert_ok(&self, name: &str) {
        assert!(
            self.success,
            "{name} failed\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
    }

    fn assert_line(&self, line: &str) {
        assert!(
            self.stdout.lines().any(|l| l.trim() == line),
            "no line {line:?} in\n{}\n--- stderr\n{}",
            self.stdout,
            self.stderr
        );
    }
}

fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/run_examples-<hash> -> target/<profile>/examples/<name>
    let path = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|profile| profile.join("examples").join(name))
        .expect("target directory layout");
    assert!(
        path.exists(),
        "{} not built; `cargo test -p redlock-examples` builds the examples \
         (or run `cargo build -p redlock-examples --examples` first)",
        path.display()
    );
    path
}

/// Runs an example with extra environment, killed after `limit`.
fn run(name: &str, env: &[(&str, &str)], limit: Duration) -> Run {
    let mut cmd = Command::new(example(name));
    for var in [
        "REDIS_URL",
        "REDLOCK_NODES",
        "REDLOCK_CLUSTER",
        "REDLOCK_SENTINELS",
    ] {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn example");
    // Drain both pipes on threads so a chatty child never blocks.
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let end = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for example") {
            break status;
        }
        if Instant::now() >= end {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{name} did not finish within {limit:?}\n--- stdout\n{}",
                out.join().unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Run {
        success: status.success(),
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

#[test]
fn quickstart_against_a_test_server() {
    let server = RedisServer::start().expect("redis-server");
    let url = server.url();
    let run = run(
        "quickstart",
        &[("REDIS_URL", url.as_str())],
        Duration::from_secs(60),
    );
    run.assert_ok("quickstart");
    run.assert_line("second owner refused: held by another owner");
    run.assert_line("using: done, the closure returned 42, lock released");
    run.assert_line("quickstart finished");
    // It cleaned up after itself.
    let keys = server
        .command(&["KEYS", "redlock-example:quickstart:*"])
        .expect("KEYS");
    assert_eq!(keys, Reply::Array(Some(Vec::new())), "keys left behind");
}

#[test]
fn quickstart_without_a_server_fails_cleanly() {
    // A port nobody listens on (bound, then released).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let url = format!("redis://127.0.0.1:{port}");
    let run = run(
        "quickstart",
        &[("REDIS_URL", url.as_str())],
        Duration::from_secs(60),
    );
    assert!(!run.success, "quickstart succeeded without a server");
    assert!(
        run.stderr
            .contains("error: could not reach a quorum of nodes"),
        "unexpected stderr: {}",
        run.stderr
    );
}

#[test]
fn five_nodes_with_a_paused_node() {
    let run = run(
        "five_nodes",
        &[("FIVE_NODES_RUN_MS", "1500")],
        Duration::from_secs(90),
    );
    run.assert_ok("five_nodes");
    run.assert_line("overlapping holders: 0");
    run.assert_line("no keys left on any node");
    run.assert_line("five_nodes finished");
    // Locking went on while the node was paused.
    let paused = run
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("one node paused: "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or_else(|| panic!("no acquisition count while paused in\n{}", run.stdout));
    assert!(paused > 0, "no acquisitions while a node was paused");
}

#[test]
fn fencing_rejects_the_stale_writer() {
    let run = run("fencing", &[], Duration::from_secs(60));
    run.assert_ok("fencing");
    run.assert_line("storage holds \"written by B\"");
    run.assert_line("fencing finished");
    assert!(
        run.stdout.contains("A wakes up and writes: rejected write"),
        "{}",
        run.stdout
    );
}

#[test]
fn cluster_locks_across_slots() {
    let run = run("cluster", &[], Duration::from_secs(120));
    run.assert_ok("cluster");
    run.assert_line("locked all 6 accounts at once");
    run.assert_line("the other five are still free: nothing was left behind");
    run.assert_line("cluster finished");
}

#[test]
fn fred_cluster_locks_across_slots() {
    let run = run("fred_cluster", &[], Duration::from_secs(120));
    run.assert_ok("fred_cluster");
    run.assert_line("locked all 6 orders at once");
    run.assert_line("the other five are still free: nothing was left behind");
    run.assert_line("fred_cluster finished");
}

#[test]
fn sentinel_locks_across_a_failover() {
    let run = run("sentinel", &[], Duration::from_secs(180));
    run.assert_ok("sentinel");
    assert!(
        run.stdout
            .contains("failover done: the master is now on port"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("locked after the failover"),
        "{}",
        run.stdout
    );
    run.assert_line("sentinel finished");
}
