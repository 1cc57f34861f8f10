//! Holders of a one-node Redlock over a Sentinel deployment (through
//! fred) while the master is killed and the replica promoted, again and
//! again (`redlock_testkit::checker::failover`): how many holds overlap.
//!
//! ```text
//! cargo run --release -p redlock-fred --example fred_failover -- <failovers> [lag|no-lag] [wait=<replicas>,<ms>]
//! cargo run --release -p redlock-fred --example fred_failover -- 10 lag wait=1,50
//! ```
//!
//! The same run as the `redis` adapter's `failover` example: `lag` (the
//! default) stops the replica and cuts its link before each kill;
//! `wait=1,50` builds the nodes with
//! `Builder::durability(Durability::replicas(1, 50 ms))`. TTL 8 s, each
//! hold's work 5 s, 4 contenders with a node each.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use redlock_core::{Durability, Node};
use redlock_fred::FredNode;
use redlock_testkit::checker::{failover, Config, Failovers};
use redlock_testkit::Sentinel;

/// `redis-sentinel://` URL for fred from the sentinels' `redis://` URLs.
fn sentinel_url(sentinels: &[String]) -> String {
    let host_port = |u: &str| {
        u.trim_start_matches("redis://")
            .trim_end_matches('/')
            .to_owned()
    };
    let first = sentinels.first().map(|s| host_port(s)).unwrap_or_default();
    let others: String = sentinels
        .iter()
        .skip(1)
        .map(|s| format!("&node={}", host_port(s)))
        .collect();
    format!(
        "redis-sentinel://{first}?sentinelServiceName={}{others}",
        Sentinel::MASTER_NAME
    )
}

async fn node(sentinels: Vec<String>, durability: Durability) -> Result<Arc<dyn Node>, String> {
    FredNode::builder()
        .durability(durability)
        .connect(&sentinel_url(&sentinels))
        .await
        .map(|n| Arc::new(n) as Arc<dyn Node>)
        .map_err(|e| e.to_string())
}

/// `<replicas>,<ms>` as a replica wait.
fn parse_wait(spec: &str) -> Option<Result<Durability, String>> {
    let (count, ms) = spec.split_once(',')?;
    let count = count.parse().ok()?;
    let ms = ms.parse().ok()?;
    Some(Durability::replicas(count, Duration::from_millis(ms)).map_err(|e| e.to_string()))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(count) = args.first().and_then(|a| a.parse::<u32>().ok()) else {
        eprintln!("usage: failover <failovers> [lag|no-lag] [wait=<replicas>,<ms>]");
        return ExitCode::from(2);
    };
    let mut lag = true;
    let mut durability = Durability::Master;
    for arg in &args[1..] {
        match arg.as_str() {
            "lag" => lag = true,
            "no-lag" => lag = false,
            other => match other.strip_prefix("wait=").and_then(parse_wait) {
                Some(Ok(d)) => durability = d,
                Some(Err(e)) => {
                    eprintln!("{other}: {e}");
                    return ExitCode::from(2);
                }
                None => {
                    eprintln!(
                        "unknown argument {other:?}: use lag, no-lag or wait=<replicas>,<ms>"
                    );
                    return ExitCode::from(2);
                }
            },
        }
    }
    let name = if durability.replica_wait().is_some() {
        "fred-failover-wait"
    } else {
        "fred-failover"
    };
    let config = Config::new(name)
        .contenders(4)
        .ttl(Duration::from_secs(8))
        .hold(Duration::from_secs(5));
    let failovers = Failovers::new(count).stop_replica(lag);
    match failover(config, failovers, |urls| node(urls, durability)).await {
        Ok(run) => {
            println!("{run}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
