//! The safety checker at full length, over `RedisNode` and five fresh
//! redis-servers (started on free loopback ports, stopped at the end).
//!
//! ```text
//! cargo run --release -p redlock-redis-rs --example checker -- <scenario> <acquisitions>
//! cargo run --release -p redlock-redis-rs --example checker -- all 10000
//! cargo run --release -p redlock-redis-rs --example checker -- pause-minority 2000 1   # one contender
//! cargo run --release -p redlock-redis-rs --example checker -- processes 10000          # 8 processes
//! ```
//!
//! Scenarios: see `redlock_testkit::checker::SCENARIOS`, plus `processes`,
//! `processes-pause-minority` and `processes-kill-minority`: the contenders
//! are separate processes (this program again, started with the contender's
//! spec in `REDLOCK_CHECKER_CONTENDER`) sharing a register on a sixth
//! redis-server (see `redlock_testkit::checker::processes`). Exits non-zero
//! when a run Redlock protects against shows a violation, or when fencing
//! let a stale write through.

use std::process::ExitCode;
use std::sync::Arc;

use redlock_core::Node;
use redlock_redis_rs::RedisNode;
use redlock_testkit::checker::{self, processes, Config, SCENARIOS};

async fn node(url: String) -> Result<Arc<dyn Node>, String> {
    RedisNode::connect(&url)
        .await
        .map(|n| Arc::new(n) as Arc<dyn Node>)
        .map_err(|e| e.to_string())
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
            "usage: checker <scenario|all> <acquisitions> [contenders]; scenarios: {SCENARIOS:?}, processes, processes-pause-minority, processes-kill-minority"
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
    let names: Vec<&str> = if name == "all" {
        SCENARIOS.to_vec()
    } else {
        vec![name.as_str()]
    };
    let mut failed = false;
    for name in names {
        let base = Config::new(name).acquisitions(count).contenders(contenders);
        let result = match name.strip_prefix("processes") {
            Some(fault) => {
                let fault = fault.strip_prefix('-').unwrap_or("no-fault");
                processes::run(fault, base, contender_command, node).await
            }
            None => checker::scenario_with(name, base, node).await,
        };
        match result {
            Ok(report) => {
                println!("{report}");
                let bad = if checker::is_safe_scenario(name) || name.starts_with("processes") {
                    report.violations() > 0 || report.stale_writes_accepted > 0
                } else {
                    report.stale_writes_accepted > 0 && name != "expire-majority-unfenced"
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
