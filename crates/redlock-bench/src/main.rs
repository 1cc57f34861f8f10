//! `redlock-bench`: our adapters, a raw-protocol baseline and `rslock` side
//! by side on five local `redis-server` nodes. See the crate README and
//! `BENCHMARKS.md` at the repository root.
//!
//! ```text
//! cargo run --release -p redlock-bench -- [--runs 3] [--secs 3]
//!     [--clients redis-rs,fred,raw,raw-fred,rslock]
//!     [--workloads uncontended,serial,contended,paused,stalled]
//!     [--stall-secs 60] [--resume-after-exit]
//!     [--urls redis://a,redis://b,...]   (no `paused` / `stalled` then)
//!     [--wait-replicas 1,50]   (redis-rs nodes wait for replicas; with --urls)
//!     [--charts DIR]   (SVG charts of the medians into DIR)
//!     [--cluster]   (one Redis Cluster of 3 masters as the single node;
//!                    contended only, redis-rs and fred)
//! ```
//!
//! `stalled` (one node stopped for `--stall-secs` under the serial and the
//! 64-task loop, each client in a child process) is not in the default
//! list: it takes about `--stall-secs` + 10 s per client and loop per run.

mod charts;
mod clients;
mod servers;
mod stalled;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clients::{Held, Kind, Waiting};
use servers::Server as RedisServer;

const TTL: Duration = Duration::from_secs(10);
/// Node paused in the `paused` workload (of five).
const PAUSED_NODE: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Workload {
    /// 64 tasks, one key each, lock + unlock in a loop.
    Uncontended,
    /// One task, lock + unlock in a loop.
    Serial,
    /// 16 tasks on one key, retrying forever.
    Contended,
    /// Serial, with one node of five paused (SIGSTOP) a third into the run.
    Paused,
    /// One node of five stopped for `--stall-secs` under the serial and the
    /// 64-task loop; memory, throughput and keys left ([`stalled`]).
    Stalled,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::Uncontended => "uncontended",
            Workload::Serial => "serial",
            Workload::Contended => "contended",
            Workload::Paused => "paused",
            Workload::Stalled => "stalled",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [
            Workload::Uncontended,
            Workload::Serial,
            Workload::Contended,
            Workload::Paused,
            Workload::Stalled,
        ]
        .into_iter()
        .find(|w| w.name() == s)
    }

    fn tasks(self) -> usize {
        match self {
            Workload::Uncontended => 64,
            Workload::Serial | Workload::Paused | Workload::Stalled => 1,
            Workload::Contended => 16,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Config {
    workload: Workload,
    kind: Kind,
    waiting: Waiting,
}

impl Config {
    fn label(&self) -> String {
        match self.waiting {
            Waiting::Default => self.kind.name().to_string(),
            Waiting::Poll if matches!(self.kind, Kind::RedisRs | Kind::Fred) => {
                format!("{} (no pub/sub, retry 10±10 ms)", self.kind.name())
            }
            Waiting::Poll => format!("{} (poll 10±10 ms)", self.kind.name()),
            Waiting::Wake => format!("{} (wake on release)", self.kind.name()),
            Waiting::Separate => format!("{} (16 clients, wake on release)", self.kind.name()),
            Waiting::SeparatePoll => format!(
                "{} (16 clients, no pub/sub, retry 10±10 ms)",
                self.kind.name()
            ),
            Waiting::Once => format!("{} (try once)", self.kind.name()),
        }
    }
}

#[derive(Debug, Clone, Default)]
struct RunResult {
    pairs_per_s: f64,
    lock_p50_us: f64,
    lock_p99_us: f64,
    /// Lock latency (µs) at each of [`charts::QUANTILES`].
    lock_quantiles: Vec<f64>,
    unlock_p50_us: f64,
    unlock_p99_us: f64,
    cpu_us_per_pair: f64,
    /// CPU of the five redis-server processes per pair (µs).
    server_us_per_pair: f64,
    keys_left: u64,
    failures: u64,
    min_task: u64,
    max_task: u64,
    /// Paused workload: pairs/s from the pause to the end.
    paused_rate: f64,
    /// Paused workload: the slowest lock call after the pause (µs).
    paused_max_lock_us: f64,
    /// Tasks still stuck 10 s after the end (aborted).
    hung: bool,
}

struct Args {
    runs: usize,
    secs: f64,
    urls: Option<Vec<String>>,
    clients: Vec<Kind>,
    workloads: Vec<Workload>,
    stall_secs: f64,
    resume_after_exit: bool,
    charts: Option<std::path::PathBuf>,
    /// One Redis Cluster as the only node.
    cluster: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        runs: 3,
        secs: 3.0,
        urls: None,
        clients: vec![
            Kind::RedisRs,
            Kind::Fred,
            Kind::Raw,
            Kind::RawFred,
            Kind::Rslock,
        ],
        workloads: vec![
            Workload::Uncontended,
            Workload::Serial,
            Workload::Contended,
            Workload::Paused,
        ],
        stall_secs: 60.0,
        resume_after_exit: false,
        charts: None,
        cluster: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--runs" => args.runs = value()?.parse().map_err(|e| format!("--runs: {e}"))?,
            "--secs" => args.secs = value()?.parse().map_err(|e| format!("--secs: {e}"))?,
            "--stall-secs" => {
                args.stall_secs = value()?.parse().map_err(|e| format!("--stall-secs: {e}"))?
            }
            "--resume-after-exit" => args.resume_after_exit = true,
            "--cluster" => args.cluster = true,
            "--charts" => args.charts = Some(value()?.into()),
            "--urls" => args.urls = Some(value()?.split(',').map(str::to_owned).collect()),
            "--wait-replicas" => {
                let spec = value()?;
                let (count, ms) = spec
                    .split_once(',')
                    .ok_or("--wait-replicas: expected <replicas>,<ms>, such as 1,50")?;
                let count = count.parse().map_err(|e| format!("--wait-replicas: {e}"))?;
                let ms = ms.parse().map_err(|e| format!("--wait-replicas: {e}"))?;
                let durability =
                    redlock_core::Durability::replicas(count, Duration::from_millis(ms))
                        .map_err(|e| format!("--wait-replicas: {e}"))?;
                let _ = clients::DURABILITY.set(durability);
            }
            "--clients" => {
                args.clients = value()?
                    .split(',')
                    .map(|s| Kind::parse(s).ok_or_else(|| format!("unknown client {s}")))
                    .collect::<Result<_, _>>()?
            }
            "--workloads" => {
                args.workloads = value()?
                    .split(',')
                    .map(|s| Workload::parse(s).ok_or_else(|| format!("unknown workload {s}")))
                    .collect::<Result<_, _>>()?
            }
            "-h" | "--help" => {
                println!(
                    "redlock-bench [--runs N] [--secs S] [--clients redis-rs,fred,raw,raw-fred,rslock] \
                     [--workloads uncontended,serial,contended,paused,stalled] [--stall-secs S] [--resume-after-exit] [--urls u1,u2,...] [--wait-replicas N,MS] [--charts DIR] [--cluster]\n\n\
                     Default workloads: uncontended,serial,contended,paused. `stalled` stops one node of five \
                     for --stall-secs (default 60) under a serial and a 64-task loop, --secs healthy before it, \
                     each client and loop in a child process; about --stall-secs + 10 s per client, loop and run. \
                     --resume-after-exit: continue the node only after the client quit and exited. \
                     --charts DIR: also write throughput.svg and latency.svg (medians) into DIR. \
                     --wait-replicas N,MS: the redis-rs nodes wait for N replicas (WAIT, at most MS ms) after \
                     each acquire and extend; point --urls at masters that have replicas. \
                     --cluster: a Redis Cluster of 3 masters as the one node (with --urls: the URLs are \
                     its masters); only the contended workload, redis-rs and fred, each with one client \
                     and with 16 separate clients, with and without wake-on-release."
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if args.runs == 0 || args.secs <= 0.0 {
        return Err("--runs and --secs must be positive".into());
    }
    if !(args.stall_secs >= 2.0 && args.stall_secs <= 86_400.0) {
        return Err("--stall-secs must be between 2 and 86400".into());
    }
    Ok(args)
}

fn cpu_time() -> Duration {
    // SAFETY: getrusage only writes into the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    if rc != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[idx.min(sorted.len() - 1)])
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

/// The nodes: started here, or given.
struct Env {
    urls: Vec<String>,
    servers: Vec<RedisServer>,
    admin: Vec<redis::aio::MultiplexedConnection>,
}

impl Env {
    async fn keys(&self) -> u64 {
        let mut total = 0;
        for c in &self.admin {
            let mut c = c.clone();
            let n: u64 = redis::cmd("DBSIZE").query_async(&mut c).await.unwrap_or(0);
            total += n;
        }
        total
    }

    /// DBSIZE of each node; an error names the node that did not answer.
    async fn keys_per_node(&self) -> Result<Vec<u64>, String> {
        let mut out = Vec::new();
        for (i, c) in self.admin.iter().enumerate() {
            let mut c = c.clone();
            let n: u64 = redis::cmd("DBSIZE")
                .query_async(&mut c)
                .await
                .map_err(|e| format!("DBSIZE on node {}: {e}", i + 1))?;
            out.push(n);
        }
        Ok(out)
    }

    async fn flush(&self) {
        for c in &self.admin {
            let mut c = c.clone();
            let _: Result<(), _> = redis::cmd("FLUSHALL").query_async(&mut c).await;
        }
    }

    /// Keys left once the nodes have worked through what was sent: the
    /// count read twice, 100 ms apart, until it stops changing.
    async fn settled_keys(&self) -> u64 {
        let mut last = self.keys().await;
        for _ in 0..30 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let now = self.keys().await;
            if now == last {
                return now;
            }
            last = now;
        }
        last
    }
}

#[derive(Default)]
struct TaskOut {
    pairs: u64,
    pairs_after_pause: u64,
    failures: u64,
    lock: Vec<u32>,
    unlock: Vec<u32>,
    max_lock_after_pause: u32,
}

async fn run_one(env: &Env, cfg: Config, secs: f64) -> Result<RunResult, String> {
    env.flush().await;
    let locker = clients::build(cfg.kind, &env.urls, cfg.waiting).await?;
    // Warm up connections and script caches.
    for _ in 0..20 {
        if let Ok(h) = locker.lock("bench:warm", TTL).await {
            let _ = locker.unlock(h).await;
        }
    }
    // One client per task (connected before the clock starts), or all
    // tasks on `locker`.
    let mut separate = Vec::new();
    if matches!(cfg.waiting, Waiting::Separate | Waiting::SeparatePoll) {
        for _ in 0..cfg.workload.tasks() {
            separate.push(clients::build(cfg.kind, &env.urls, cfg.waiting).await?);
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    let pause_at =
        (cfg.workload == Workload::Paused).then(|| t0 + Duration::from_secs_f64(secs / 3.0));
    let cpu0 = cpu_time();
    let server_cpu = || env.servers.iter().map(|s| s.cpu()).sum::<Duration>();
    let server0 = server_cpu();
    let mut handles = Vec::new();
    for i in 0..cfg.workload.tasks() {
        let locker = separate.get(i).cloned().unwrap_or_else(|| locker.clone());
        let stop = stop.clone();
        let key = match cfg.workload {
            Workload::Uncontended => format!("bench:u:{i}"),
            Workload::Contended => "bench:c".to_string(),
            Workload::Serial | Workload::Paused | Workload::Stalled => "bench:s".to_string(),
        };
        handles.push(tokio::spawn(async move {
            let mut out = TaskOut::default();
            while !stop.load(Ordering::Relaxed) {
                let a = Instant::now();
                let held: Held = match locker.lock(&key, TTL).await {
                    Ok(h) => h,
                    Err(_) => {
                        out.failures += 1;
                        continue;
                    }
                };
                let b = Instant::now();
                let unlocked = locker.unlock(held).await;
                let c = Instant::now();
                if unlocked.is_err() {
                    out.failures += 1;
                }
                out.lock.push(micros(b - a));
                out.unlock.push(micros(c - b));
                out.pairs += 1;
                if pause_at.is_some_and(|p| a >= p) {
                    out.pairs_after_pause += 1;
                    out.max_lock_after_pause = out.max_lock_after_pause.max(micros(b - a));
                }
            }
            out
        }));
    }
    if let Some(p) = pause_at {
        tokio::time::sleep_until(p.into()).await;
        env.servers[PAUSED_NODE]
            .pause()
            .map_err(|e| format!("pause: {e}"))?;
    }
    tokio::time::sleep_until((t0 + Duration::from_secs_f64(secs)).into()).await;
    stop.store(true, Ordering::Relaxed);
    let stopped = Instant::now();
    let mut outs = Vec::new();
    let mut hung = false;
    for h in handles {
        let abort = h.abort_handle();
        let left = Duration::from_secs(10).saturating_sub(stopped.elapsed());
        match tokio::time::timeout(left, h).await {
            Ok(Ok(out)) => outs.push(out),
            _ => {
                abort.abort();
                hung = true;
            }
        }
    }
    let elapsed = t0.elapsed();
    let cpu = cpu_time().saturating_sub(cpu0);
    let server = server_cpu().saturating_sub(server0);
    if pause_at.is_some() {
        env.servers[PAUSED_NODE]
            .resume()
            .map_err(|e| format!("resume: {e}"))?;
    }
    locker.close().await;
    drop(locker);
    let keys_left = env.settled_keys().await;

    let pairs: u64 = outs.iter().map(|o| o.pairs).sum();
    let mut lock: Vec<u32> = outs.iter().flat_map(|o| o.lock.iter().copied()).collect();
    let mut unlock: Vec<u32> = outs.iter().flat_map(|o| o.unlock.iter().copied()).collect();
    lock.sort_unstable();
    unlock.sort_unstable();
    let paused_rate = match pause_at {
        Some(p) => {
            let after: u64 = outs.iter().map(|o| o.pairs_after_pause).sum();
            after as f64 / stopped.saturating_duration_since(p).as_secs_f64()
        }
        None => 0.0,
    };
    Ok(RunResult {
        pairs_per_s: pairs as f64 / elapsed.as_secs_f64(),
        lock_p50_us: percentile(&lock, 0.5),
        lock_p99_us: percentile(&lock, 0.99),
        lock_quantiles: charts::QUANTILES
            .iter()
            .map(|&q| percentile(&lock, q))
            .collect(),
        unlock_p50_us: percentile(&unlock, 0.5),
        unlock_p99_us: percentile(&unlock, 0.99),
        cpu_us_per_pair: if pairs > 0 {
            cpu.as_secs_f64() * 1e6 / pairs as f64
        } else {
            f64::NAN
        },
        server_us_per_pair: if pairs > 0 && !env.servers.is_empty() {
            server.as_secs_f64() * 1e6 / pairs as f64
        } else {
            f64::NAN
        },
        keys_left,
        failures: outs.iter().map(|o| o.failures).sum(),
        min_task: outs.iter().map(|o| o.pairs).min().unwrap_or(0),
        max_task: outs.iter().map(|o| o.pairs).max().unwrap_or(0),
        paused_rate,
        paused_max_lock_us: outs
            .iter()
            .map(|o| f64::from(o.max_lock_after_pause))
            .fold(0.0, f64::max),
        hung,
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| !x.is_nan());
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn med(rs: &[RunResult], f: impl Fn(&RunResult) -> f64) -> f64 {
    median(rs.iter().map(f).collect())
}

fn ms(us: f64) -> String {
    if us.is_nan() {
        "–".into()
    } else if us >= 10_000.0 {
        format!("{:.0} ms", us / 1000.0)
    } else {
        format!("{:.2} ms", us / 1000.0)
    }
}

fn line(r: &RunResult) -> String {
    format!(
        "pairs/s {:>8.0}  lock p50 {:>9} p99 {:>9}  unlock p50 {:>9} p99 {:>9}  cpu/pair {:>6.1} µs  servers {:>6.1} µs  keys left {}  fail {}{}",
        r.pairs_per_s,
        ms(r.lock_p50_us),
        ms(r.lock_p99_us),
        ms(r.unlock_p50_us),
        ms(r.unlock_p99_us),
        r.cpu_us_per_pair,
        r.server_us_per_pair,
        r.keys_left,
        r.failures,
        if r.hung { "  HUNG (aborted)" } else { "" }
    )
}

async fn setup(args: &Args) -> Result<Env, String> {
    let (urls, servers) = match &args.urls {
        Some(u) => (u.clone(), Vec::new()),
        None if args.cluster => {
            let servers = servers::cluster(3).map_err(|e| format!("starting a cluster: {e}"))?;
            (servers.iter().map(|s| s.url()).collect(), servers)
        }
        None => {
            let servers: Vec<RedisServer> = (0..5)
                .map(|_| RedisServer::start())
                .collect::<Result<_, _>>()
                .map_err(|e| format!("starting redis-server: {e}"))?;
            let version = std::process::Command::new(servers::binary())
                .arg("--version")
                .output();
            if let Ok(v) = version {
                print!("{}", String::from_utf8_lossy(&v.stdout));
            }
            (servers.iter().map(|s| s.url()).collect(), servers)
        }
    };
    let mut admin = Vec::new();
    for u in &urls {
        let client = redis::Client::open(u.as_str()).map_err(|e| e.to_string())?;
        admin.push(
            client
                .get_multiplexed_async_connection()
                .await
                .map_err(|e| format!("{u}: {e}"))?,
        );
    }
    Ok(Env {
        urls,
        servers,
        admin,
    })
}

fn configs(args: &Args, can_pause: bool) -> Vec<Config> {
    let mut out = Vec::new();
    for &workload in &args.workloads {
        if workload == Workload::Stalled {
            continue; // run by `stalled`, each case in a child process
        }
        if workload == Workload::Paused && !can_pause {
            eprintln!("skipping `paused`: nodes were given by URL, cannot pause them");
            continue;
        }
        for &kind in &args.clients {
            if args.cluster {
                // One Redis Cluster node: our adapters, contended only.
                if workload == Workload::Contended && matches!(kind, Kind::RedisRs | Kind::Fred) {
                    for waiting in [
                        Waiting::Wake,
                        Waiting::Poll,
                        Waiting::Separate,
                        Waiting::SeparatePoll,
                    ] {
                        out.push(Config {
                            workload,
                            kind,
                            waiting,
                        });
                    }
                }
                continue;
            }
            if workload == Workload::Contended {
                if matches!(kind, Kind::RedisRs | Kind::Fred) {
                    for waiting in [Waiting::Wake, Waiting::Separate] {
                        out.push(Config {
                            workload,
                            kind,
                            waiting,
                        });
                    }
                }
                out.push(Config {
                    workload,
                    kind,
                    waiting: Waiting::Poll,
                });
            } else {
                out.push(Config {
                    workload,
                    kind,
                    waiting: Waiting::Default,
                });
            }
        }
    }
    out
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some(stalled::CHILD_COMMAND) {
        std::process::exit(stalled::child_main(&argv[2..]).await);
    }
    let args = match parse_args() {
        Ok(a) => {
            let _ = clients::CLUSTER.set(a.cluster);
            a
        }
        Err(e) => {
            eprintln!("redlock-bench: {e}");
            std::process::exit(2);
        }
    };
    let env = match setup(&args).await {
        Ok(e) => e,
        Err(e) => {
            eprintln!("redlock-bench: {e}");
            std::process::exit(1);
        }
    };
    let can_pause = !args.cluster && !env.servers.is_empty() && env.servers.len() > PAUSED_NODE;
    let configs = configs(&args, can_pause);
    let stall_cases: Vec<(Kind, stalled::Loop)> =
        if args.workloads.contains(&Workload::Stalled) && can_pause {
            stalled::Loop::ALL
                .into_iter()
                .flat_map(|lp| args.clients.iter().map(move |&k| (k, lp)))
                .collect()
        } else {
            if args.workloads.contains(&Workload::Stalled) {
                eprintln!("skipping `stalled`: nodes were given by URL, cannot stop them");
            }
            Vec::new()
        };
    let plan = stalled::Plan {
        healthy: Duration::from_secs_f64(args.secs),
        stall: Duration::from_secs_f64(args.stall_secs),
        resume_after_exit: args.resume_after_exit,
    };
    let mut stall_results: Vec<Vec<stalled::StallResult>> = vec![Vec::new(); stall_cases.len()];
    let mut results: Vec<Vec<RunResult>> = vec![Vec::new(); configs.len()];
    let began = Instant::now();
    for run in 1..=args.runs {
        for (i, cfg) in configs.iter().enumerate() {
            match run_one(&env, *cfg, args.secs).await {
                Ok(r) => {
                    println!(
                        "[run {run}/{}] {:<11} {:<40} {}",
                        args.runs,
                        cfg.workload.name(),
                        cfg.label(),
                        line(&r)
                    );
                    results[i].push(r);
                }
                Err(e) => println!(
                    "[run {run}/{}] {:<11} {:<40} ERROR {e}",
                    args.runs,
                    cfg.workload.name(),
                    cfg.label()
                ),
            }
        }
        for (i, &(kind, lp)) in stall_cases.iter().enumerate() {
            let label = format!("{} / {}", kind.name(), lp.name());
            match stalled::run(&env, kind, lp, plan).await {
                Ok(r) => {
                    println!(
                        "[run {run}/{}] stalled     {label:<40} {}",
                        args.runs,
                        stalled::line(&r)
                    );
                    stall_results[i].push(r);
                }
                Err(e) => println!(
                    "[run {run}/{}] stalled     {label:<40} ERROR {e}",
                    args.runs
                ),
            }
        }
    }
    if configs.is_empty() {
        if !stall_cases.is_empty() {
            stalled::report(&stall_cases, &stall_results, plan, args.runs);
        }
        return;
    }
    println!(
        "\nMedians of {} runs of {:.1} s each ({} s in all); TTL 10 s; {}.\n",
        args.runs,
        args.secs,
        began.elapsed().as_secs(),
        if args.cluster {
            "one node: a Redis Cluster of 3 masters"
        } else {
            "5 nodes"
        }
    );
    println!("| workload | client | pairs/s | lock p50 | lock p99 | unlock p50 | unlock p99 | client CPU µs/pair | servers' CPU µs/pair | keys left (max) | notes |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for (cfg, rs) in configs.iter().zip(&results) {
        if rs.is_empty() {
            continue;
        }
        let keys = rs.iter().map(|r| r.keys_left).max().unwrap_or(0);
        let mut notes = Vec::new();
        match cfg.workload {
            Workload::Contended => notes.push(format!(
                "per task min/max {:.0}/{:.0}",
                med(rs, |r| r.min_task as f64),
                med(rs, |r| r.max_task as f64)
            )),
            Workload::Paused => notes.push(format!(
                "{:.0} pairs/s while paused, slowest lock {}",
                med(rs, |r| r.paused_rate),
                ms(med(rs, |r| r.paused_max_lock_us))
            )),
            _ => {}
        }
        let fails = med(rs, |r| r.failures as f64);
        if fails > 0.0 {
            notes.push(format!("{fails:.0} failed calls"));
        }
        if rs.iter().any(|r| r.hung) {
            notes.push("hung, aborted".into());
        }
        println!(
            "| {} | {} | {:.0} | {} | {} | {} | {} | {:.1} | {:.1} | {} | {} |",
            cfg.workload.name(),
            cfg.label(),
            med(rs, |r| r.pairs_per_s),
            ms(med(rs, |r| r.lock_p50_us)),
            ms(med(rs, |r| r.lock_p99_us)),
            ms(med(rs, |r| r.unlock_p50_us)),
            ms(med(rs, |r| r.unlock_p99_us)),
            med(rs, |r| r.cpu_us_per_pair),
            med(rs, |r| r.server_us_per_pair),
            keys,
            notes.join("; ")
        );
    }
    print_targets(&configs, &results);
    if let Some(dir) = &args.charts {
        match write_charts(dir, &args, &configs, &results) {
            Ok(written) => {
                for path in written {
                    println!("\nwrote {}", path.display());
                }
            }
            Err(e) => eprintln!("redlock-bench: charts: {e}"),
        }
    }
    if !stall_cases.is_empty() {
        stalled::report(&stall_cases, &stall_results, plan, args.runs);
    }
}

fn find<'a>(
    configs: &[Config],
    results: &'a [Vec<RunResult>],
    w: Workload,
    k: Kind,
    waiting: Waiting,
) -> Option<&'a [RunResult]> {
    configs
        .iter()
        .position(|c| c.workload == w && c.kind == k && c.waiting == waiting)
        .map(|i| results[i].as_slice())
        .filter(|r| !r.is_empty())
}

fn print_targets(configs: &[Config], results: &[Vec<RunResult>]) {
    println!("\nTargets, medians:");
    let d = Waiting::Default;
    // Every adapter against the `redis` baseline (the targets), and fred's
    // adapter also against fred used directly (what the adapter adds).
    for (k, base) in [
        (Kind::RedisRs, Kind::Raw),
        (Kind::Fred, Kind::Raw),
        (Kind::Fred, Kind::RawFred),
    ] {
        let get = |w, wt| find(configs, results, w, k, wt);
        let raw = |w, wt| find(configs, results, w, base, wt);
        let vs = if base == Kind::Raw {
            "raw".to_string()
        } else {
            base.name().to_string()
        };
        let target = |t: &str| {
            if base == Kind::Raw {
                format!(" (target {t})")
            } else {
                String::new()
            }
        };
        if let (Some(o), Some(r)) = (get(Workload::Uncontended, d), raw(Workload::Uncontended, d)) {
            let x = med(o, |x| x.pairs_per_s) / med(r, |x| x.pairs_per_s);
            println!(
                "- {}: uncontended {x:.2}x {vs}{}",
                k.name(),
                target(">= 1.3")
            );
            let c = med(o, |x| x.cpu_us_per_pair) / med(r, |x| x.cpu_us_per_pair);
            println!(
                "- {}: uncontended CPU/pair {c:.2}x {vs}{}",
                k.name(),
                target("<= 1.0")
            );
        }
        if let (Some(o), Some(r)) = (get(Workload::Serial, d), raw(Workload::Serial, d)) {
            let x = med(o, |x| x.lock_p50_us) / med(r, |x| x.lock_p50_us);
            println!(
                "- {}: serial lock p50 {x:.2}x {vs}{}",
                k.name(),
                target("<= 1.05")
            );
            let c = med(o, |x| x.cpu_us_per_pair) / med(r, |x| x.cpu_us_per_pair);
            println!(
                "- {}: serial CPU/pair {c:.2}x {vs}{}",
                k.name(),
                target("<= 1.0")
            );
        }
        if base != Kind::Raw {
            continue;
        }
        if let (Some(p), Some(s)) = (get(Workload::Paused, d), get(Workload::Serial, d)) {
            let x = med(p, |x| x.paused_rate) / med(s, |x| x.pairs_per_s);
            println!(
                "- {}: one node paused {:.2}x healthy serial (target >= 0.9)",
                k.name(),
                x
            );
        }
    }
    if let (Some(w), Some(p)) = (
        find(
            configs,
            results,
            Workload::Contended,
            Kind::RedisRs,
            Waiting::Wake,
        ),
        find(
            configs,
            results,
            Workload::Contended,
            Kind::RedisRs,
            Waiting::Poll,
        ),
    ) {
        println!(
            "- redlock-redis-rs contended: wait p99 {} with wake vs {} polling (target <= 5 ms); {:.0} vs {:.0} pairs/s",
            ms(med(w, |x| x.lock_p99_us)),
            ms(med(p, |x| x.lock_p99_us)),
            med(w, |x| x.pairs_per_s),
            med(p, |x| x.pairs_per_s)
        );
    }
    let leaked: u64 = results.iter().flatten().map(|r| r.keys_left).sum();
    println!("- keys left over all runs and clients: {leaked} (target 0)");
}

/// The case drawn for a client in a workload: under contention, our
/// adapters as configured by default (one `Redlock`, wake on release) and
/// the others polling; elsewhere the only case.
fn charted(workload: Workload, kind: Kind) -> Waiting {
    match workload {
        Workload::Contended if matches!(kind, Kind::RedisRs | Kind::Fred) => Waiting::Wake,
        Workload::Contended => Waiting::Poll,
        _ => Waiting::Default,
    }
}

/// Writes `throughput.svg` and `latency.svg` (medians over the runs) into
/// `dir`, created if missing; returns the paths written.
fn write_charts(
    dir: &std::path::Path,
    args: &Args,
    configs: &[Config],
    results: &[Vec<RunResult>],
) -> Result<Vec<std::path::PathBuf>, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let workloads: Vec<Workload> = args
        .workloads
        .iter()
        .copied()
        .filter(|&w| w != Workload::Stalled)
        .filter(|&w| configs.iter().any(|c| c.workload == w))
        .collect();
    let client = |k: Kind| charts::Client {
        label: k.name().to_owned(),
        colour: k as usize,
    };
    let runs = |w: Workload, k: Kind| find(configs, results, w, k, charted(w, k));
    let subtitle = format!(
        "5 nodes, medians of {} runs of {:.0} s",
        args.runs, args.secs
    );
    let notes: Vec<String> = if workloads.contains(&Workload::Contended) {
        [
            "contended: redlock-redis-rs and",
            "redlock-fred wake on release (one",
            "Redlock, 16 tasks); the others poll",
            "every 10 ± 10 ms",
        ]
        .map(str::to_owned)
        .to_vec()
    } else {
        Vec::new()
    };
    let throughput = charts::Throughput {
        title: format!("Throughput ({subtitle})"),
        workloads: workloads.iter().map(|w| w.name().to_owned()).collect(),
        clients: args.clients.iter().map(|&k| client(k)).collect(),
        pairs_per_s: args
            .clients
            .iter()
            .map(|&k| {
                workloads
                    .iter()
                    .map(|&w| runs(w, k).map(|rs| med(rs, |r| r.pairs_per_s)))
                    .collect()
            })
            .collect(),
        notes: notes.clone(),
    };
    let panels: Vec<charts::LatencyPanel> = workloads
        .iter()
        .map(|&w| charts::LatencyPanel {
            title: format!(
                "{} ({} task{})",
                w.name(),
                w.tasks(),
                if w.tasks() == 1 { "" } else { "s" }
            ),
            curves: args
                .clients
                .iter()
                .filter_map(|&k| {
                    let rs = runs(w, k)?;
                    let curve = (0..charts::QUANTILES.len())
                        .map(|i| med(rs, |r| r.lock_quantiles.get(i).copied().unwrap_or(f64::NAN)))
                        .collect();
                    Some((client(k), curve))
                })
                .collect(),
        })
        .collect();
    let throughput_path = dir.join("throughput.svg");
    let latency_path = dir.join("latency.svg");
    charts::throughput_svg(&throughput_path, &throughput)?;
    charts::latency_svg(
        &latency_path,
        &format!("Lock call latency by percentile ({subtitle})"),
        &panels,
        &notes,
    )?;
    Ok(vec![throughput_path, latency_path])
}
