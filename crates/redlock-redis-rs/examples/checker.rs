//! The safety checker at full length, over `RedisNode` and five fresh
//! redis-servers (started on free loopback ports, stopped at the end).
//!
//! ```text
//! cargo run --release -p redlock-redis-rs --example checker -- <scenario> <acquisitions>
//! cargo run --release -p redlock-redis-rs --example checker -- all 10000
//! cargo run --release -p redlock-redis-rs --example checker -- pause-minority 2000 1   # one contender
//! ```
//!
//! Scenarios: see `redlock_testkit::checker::SCENARIOS`. Exits non-zero when
//! a run Redlock protects against shows a violation, or when fencing let a
//! stale write through.

use std::process::ExitCode;
use std::sync::Arc;

use redlock_core::Node;
use redlock_redis_rs::RedisNode;
use redlock_testkit::checker::{self, Config, SCENARIOS};

async fn node(url: String) -> Result<Arc<dyn Node>, String> {
    RedisNode::connect(&url)
        .await
        .map(|n| Arc::new(n) as Arc<dyn Node>)
        .map_err(|e| e.to_string())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (Some(name), Some(count)) = (args.next(), args.next()) else {
        eprintln!(
            "usage: checker <scenario|all> <acquisitions> [contenders]; scenarios: {SCENARIOS:?}"
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
        match checker::scenario_with(name, base, node).await {
            Ok(report) => {
                println!("{report}");
                let bad = if checker::is_safe_scenario(name) {
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
