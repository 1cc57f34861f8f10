//! The safety checker at full length, over `RedisNode` and five fresh
//! redis-servers (started on free loopback ports, stopped at the end).
//!
//! ```text
//! cargo run --release -p redlock-redis-rs --example checker -- <scenario> <acquisitions>
//! cargo run --release -p redlock-redis-rs --example checker -- all 10000
//! cargo run --release -p redlock-redis-rs --example checker -- pause-minority 2000 1   # one contender
//! cargo run --release -p redlock-redis-rs --example checker -- processes 10000          # 8 processes
//! cargo run --release -p redlock-redis-rs --example checker -- pause-minority 2000 8 10 # node timeout 10 ms
//! ```
//!
//! Scenarios: see `redlock_testkit::checker::Scenario`, plus `processes`,
//! `processes-pause-minority` and `processes-kill-minority`: the contenders
//! are separate processes (this program again, started with the contender's
//! spec in `REDLOCK_CHECKER_CONTENDER`) sharing a register on a sixth
//! redis-server (see `redlock_testkit::checker::processes`). Exits non-zero
//! when a run Redlock protects against shows a violation, or when fencing
//! let a stale write through. With `REDLOCK_CHECKER_TIMELINE=DIR`, each
//! scenario's timeline (the multi-process ones too) is drawn to `DIR/timeline-<scenario>.svg`.

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use redlock_core::Node;
use redlock_redis_rs::RedisNode;
use redlock_testkit::checker::{self, processes, Config, Scenario, SCENARIOS};

async fn node(url: String) -> Result<Arc<dyn Node>, String> {
    RedisNode::connect(&url)
        .await
        .map(|n| Arc::new(n) as Arc<dyn Node>)
        .map_err(|e| e.to_string())
}

/// Counts the core's failed acquire attempts (its `attempt failed` debug
/// events) and, among them, split votes: attempts in which this client got
/// at least one node but not a quorum (so the votes were split between
/// contenders), and those in which some node failed (an error, a timeout,
/// or skipped as unresponsive). Nothing else is recorded; other events are
/// disabled.
#[derive(Default)]
struct Attempts {
    failed: AtomicU64,
    split: AtomicU64,
    node_failed: AtomicU64,
}

impl Attempts {
    fn snapshot(&self) -> (u64, u64, u64) {
        (
            self.failed.load(Ordering::Relaxed),
            self.split.load(Ordering::Relaxed),
            self.node_failed.load(Ordering::Relaxed),
        )
    }
}

struct Message(String);

impl tracing::field::Visit for Message {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

struct AttemptCounter(Arc<Attempts>);

impl tracing::Subscriber for AttemptCounter {
    fn enabled(&self, m: &tracing::Metadata<'_>) -> bool {
        m.is_event()
            && *m.level() == tracing::Level::DEBUG
            && m.target().starts_with("redlock_core")
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut message = Message(String::new());
        event.record(&mut message);
        if let Some(failure) = message.0.strip_prefix("attempt failed: ") {
            self.0.failed.fetch_add(1, Ordering::Relaxed);
            if failure.contains(" acquired") {
                self.0.split.fetch_add(1, Ordering::Relaxed);
            }
            if ["error: ", "timed out", "unresponsive"]
                .iter()
                .any(|o| failure.contains(o))
            {
                self.0.node_failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// This program again, as a contender process.
fn contender_command() -> std::process::Command {
    let exe = std::env::current_exe().unwrap_or_else(|_| "checker".into());
    std::process::Command::new(exe)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    if let Some(spec) = processes::spec_from_env() {
        let result = match spec {
            Ok(spec) => processes::contender(spec, node)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        return match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("contender: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let mut args = std::env::args().skip(1);
    let (Some(name), Some(count)) = (args.next(), args.next()) else {
        eprintln!(
            "usage: checker <scenario|all> <acquisitions> [contenders] [node-timeout-ms]; scenarios: {SCENARIOS:?}, processes, processes-pause-minority, processes-kill-minority"
        );
        return ExitCode::from(2);
    };
    let Ok(count) = count.parse::<u64>() else {
        eprintln!("acquisitions must be a number, got {count:?}");
        return ExitCode::from(2);
    };
    let contenders = match args.next().map(|c| c.parse::<usize>()) {
        None => 8,
        Some(Ok(c)) if c > 0 => c,
        Some(_) => {
            eprintln!("contenders must be a positive number");
            return ExitCode::from(2);
        }
    };
    let node_timeout = match args.next().map(|t| t.parse::<u64>()) {
        None => None,
        Some(Ok(ms)) if ms > 0 => Some(std::time::Duration::from_millis(ms)),
        Some(_) => {
            eprintln!("the node timeout is a positive number of milliseconds");
            return ExitCode::from(2);
        }
    };
    let names: Vec<&str> = if name == "all" {
        SCENARIOS.to_vec()
    } else {
        vec![name.as_str()]
    };
    let attempts = Arc::new(Attempts::default());
    let _ = tracing::subscriber::set_global_default(AttemptCounter(attempts.clone()));
    let timelines = std::env::var_os("REDLOCK_CHECKER_TIMELINE").map(std::path::PathBuf::from);
    let mut failed = false;
    for name in names {
        let recording = timelines
            .as_ref()
            .map(|_| redlock_testkit::timeline::Recording::start());
        let before = attempts.snapshot();
        let mut base = Config::new(name).acquisitions(count).contenders(contenders);
        if let Some(t) = node_timeout {
            base = base.node_timeout(t);
        }
        let result = match name.strip_prefix("processes") {
            Some(fault) => {
                let fault = fault.strip_prefix('-').unwrap_or("no-fault");
                processes::run(fault, base, contender_command, node).await
            }
            None => match name.parse::<Scenario>() {
                Ok(scenario) => checker::run_scenario(scenario, base, node).await,
                Err(e) => Err(e),
            },
        };
        match result {
            Ok(report) => {
                println!("{report}");
                if let (Some(dir), Some(recording)) = (&timelines, recording) {
                    let path = dir.join(format!("timeline-{name}.svg"));
                    let title = format!(
                        "{name}: {} holds by {} contenders, {} violations",
                        report.acquisitions,
                        report.contenders,
                        report.violations()
                    );
                    match recording.finish().write_svg(&path, &title) {
                        Ok(()) => println!("  timeline: {}", path.display()),
                        Err(e) => eprintln!("  timeline: {e}"),
                    }
                }
                let (f, sp, nf) = attempts.snapshot();
                if !name.starts_with("processes") {
                    println!(
                        "  failed acquire attempts {}, of which split votes {}, with a node failing {}",
                        f - before.0,
                        sp - before.1,
                        nf - before.2
                    );
                }
                let scenario = name.parse::<Scenario>().ok();
                let bad =
                    if scenario.is_some_and(Scenario::is_safe) || name.starts_with("processes") {
                        report.violations() > 0 || report.stale_writes_accepted > 0
                    } else {
                        report.stale_writes_accepted > 0
                            && scenario != Some(Scenario::ExpireMajorityUnfenced)
                    };
                if bad || report.timed_out {
                    println!("  ^ FAILED");
                    failed = true;
                }
            }
            Err(e) => {
                eprintln!("{name}: {e}");
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
