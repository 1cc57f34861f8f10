//! Holders of a one-node Redlock over a Sentinel deployment while the
//! master is killed and the replica promoted, again and again
//! (`redlock_testkit::checker::failover`): how many holds overlap.
//!
//! ```text
//! cargo run --release -p redlock-redis-rs --features sentinel --example failover -- <failovers> [lag|no-lag] [wait=<replicas>,<ms>]
//! cargo run --release -p redlock-redis-rs --features sentinel --example failover -- 10 lag
//! cargo run --release -p redlock-redis-rs --features sentinel --example failover -- 10 lag wait=1,50
//! ```
//!
//! `lag` (the default) stops the replica (SIGSTOP) and cuts its link
//! before each kill, so writes the master acknowledges meanwhile are lost
//! in the failover; `no-lag` leaves it replicating. `wait=1,50` builds the
//! nodes with `Builder::durability(Durability::replicas(1, 50 ms))`. TTL
//! 8 s, each hold's work 5 s, 4 contenders with a node each. Prints the
//! checker's report; `REDLOCK_FAILOVER_VERBOSE=1` adds every hold, fault
//! and log event, `REDLOCK_CHECKER_TIMELINE=DIR` draws the timeline.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use redlock_core::{Durability, Node};
use redlock_redis_rs::RedisNode;
use redlock_testkit::checker::{failover, Config, Failovers};
use redlock_testkit::Sentinel;

async fn node(sentinels: Vec<String>, durability: Durability) -> Result<Arc<dyn Node>, String> {
    RedisNode::builder()
        .durability(durability)
        .connect_sentinel(&sentinels, Sentinel::MASTER_NAME, None)
        .await
        .map(|n| Arc::new(n) as Arc<dyn Node>)
        .map_err(|e| e.to_string())
}

struct Message(String);

impl tracing::field::Visit for Message {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        use std::fmt::Write;
        let _ = write!(self.0, " {}={value:?}", field.name());
    }
}

/// Prints the core's and the adapter's events, each distinct message once
/// per second.
struct Printer(
    std::time::Instant,
    std::sync::Mutex<std::collections::HashSet<(u64, String)>>,
);

impl tracing::Subscriber for Printer {
    fn enabled(&self, m: &tracing::Metadata<'_>) -> bool {
        m.is_event() && m.target().starts_with("redlock")
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut message = Message(String::new());
        event.record(&mut message);
        let text: String = message
            .0
            .chars()
            .map(|c| if c.is_ascii_digit() { '#' } else { c })
            .collect();
        let second = self.0.elapsed().as_secs();
        if self.1.lock().unwrap().insert((second, text)) {
            println!("  {:>10.2?}  event{}", self.0.elapsed(), message.0);
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
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
    if std::env::var_os("REDLOCK_FAILOVER_VERBOSE").is_some() {
        let _ = tracing::subscriber::set_global_default(Printer(
            std::time::Instant::now(),
            Default::default(),
        ));
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(count) = args.first().and_then(|a| a.parse::<u32>().ok()) else {
        eprintln!("usage: failover <failovers> [lag|no-lag]");
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
    let name = match (lag, durability.replica_wait().is_some()) {
        (true, true) => "failover-lag-wait",
        (true, false) => "failover-lag",
        (false, true) => "failover-wait",
        (false, false) => "failover",
    };
    let config = Config::new(name)
        .contenders(4)
        .ttl(Duration::from_secs(8))
        .hold(Duration::from_secs(5));
    let failovers = Failovers::new(count).stop_replica(lag);
    let recording = redlock_testkit::timeline::Recording::start();
    let result = failover(config, failovers, |urls| node(urls, durability)).await;
    let timeline = recording.finish();
    match result {
        Ok(run) => {
            println!("{run}");
            if std::env::var_os("REDLOCK_FAILOVER_VERBOSE").is_some() {
                let mut events: Vec<(Duration, String)> = timeline
                    .holds
                    .iter()
                    .map(|h| {
                        (
                            h.from,
                            format!("hold  contender {} until {:.2?}", h.contender, h.to),
                        )
                    })
                    .chain(
                        timeline
                            .faults
                            .iter()
                            .map(|f| (f.from, format!("fault {} until {:.2?}", f.label, f.to))),
                    )
                    .collect();
                events.sort_by_key(|e| e.0);
                for (at, what) in events {
                    println!("  {at:>10.2?}  {what}");
                }
            }
            if let Some(dir) = std::env::var_os("REDLOCK_CHECKER_TIMELINE") {
                let path = std::path::Path::new(&dir).join(format!("timeline-{name}.svg"));
                match timeline.write_svg(&path, name) {
                    Ok(()) => println!("  timeline: {}", path.display()),
                    Err(e) => eprintln!("  timeline: {e}"),
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
