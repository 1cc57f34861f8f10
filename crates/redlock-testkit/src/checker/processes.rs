//! The checker with contenders in separate processes.
//!
//! The parent ([`run`]) starts five `redis-server` nodes and a sixth one
//! that holds the shared register, then spawns `K` copies of a contender
//! program (the caller's command: usually its own executable, see
//! [`spec_from_env`]). Each contender connects to the five nodes on its own
//! and, once every contender is ready, contends for one lock. While holding
//! it, a contender reads the register with `GET`, waits [`Config::hold`],
//! checks its lease and writes the value plus one with `SET`: a deliberately
//! non-atomic read-modify-write across processes. Every hold records
//! `[obtained, end]`, its read and its write on `CLOCK_MONOTONIC`, which is
//! one clock for all processes on the machine; the contenders print their
//! records on stdout and the parent merges them:
//!
//! - **overlaps**: holds whose `[obtained, end]` intervals intersect
//!   (`end` is the earlier of the end of the work and the lease's validity);
//! - **stale writes**: writes with another hold's read or write between this
//!   hold's read and its write (the register has no fencing here, so every
//!   one of them is accepted);
//! - **lost updates**: accepted writes minus the register's final value
//!   (each write stores its read plus one, so serial holds end with the
//!   value equal to the number of writes);
//! - lost-lock detections, lock errors, keys left on the nodes after the run.
//!
//! A contender program calls [`spec_from_env`] first and, when it returns a
//! spec, runs [`contender`] and exits:
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use redlock_core::Node;
//! # async fn node(url: String) -> Result<Arc<dyn Node>, String> { unimplemented!() }
//! # async fn main_() {
//! use redlock_testkit::checker::processes;
//! if let Some(spec) = processes::spec_from_env() {
//!     let spec = spec.expect("contender spec");
//!     processes::contender(spec, node).await.expect("contender");
//!     return;
//! }
//! # }
//! ```
//!
//! A contender ends when a shared count of holds (an `INCR` on the register
//! server) reaches [`Config::acquisitions`], after [`Config::max_duration`],
//! or when its stdin closes (the parent went away). On Linux it also asks
//! for `SIGKILL` when the parent dies, and the parent kills every contender
//! it spawned when it returns or unwinds.

use std::collections::BTreeMap;
use std::future::Future;
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use redlock_core::{LockError, LockOptions, Node, Redlock};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::watch;

use super::{error_kind, keys_left, options, CheckError, Config, Report, Stop};
use crate::server::RedisServer;

/// The environment variable that carries a contender's [`Spec`].
pub const ENV: &str = "REDLOCK_CHECKER_CONTENDER";

/// Output lines of a contender that the parent reads start with this.
const TAG: &str = "@chk";

/// The faults [`run`] can put next to the contender processes.
pub const FAULTS: &[&str] = &["no-fault", "pause-minority", "kill-minority"];

/// Nanoseconds on `CLOCK_MONOTONIC`: one clock for every process on the
/// machine (unlike [`Instant`], whose values cannot be exchanged).
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    if rc != 0 {
        return 0;
    }
    let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(ts.tv_nsec).unwrap_or(0);
    secs.saturating_mul(1_000_000_000).saturating_add(nanos)
}

/// `at` on [`monotonic_ns`]'s clock.
fn instant_ns(at: Instant) -> u64 {
    let (now, now_ns) = (Instant::now(), monotonic_ns());
    if at >= now {
        now_ns.saturating_add(nanos(at - now))
    } else {
        now_ns.saturating_sub(nanos(now - at))
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// What one contender process does; passed in [`ENV`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    /// The contender's number.
    pub id: usize,
    /// The parent's process id (the contender exits when it is gone).
    pub parent: u32,
    /// The lock nodes' URLs.
    pub nodes: Vec<String>,
    /// The register server's URL.
    pub register: String,
    /// Key prefix of the lock and of the register's keys.
    pub key_prefix: String,
    /// The resource.
    pub resource: String,
    /// The lock's TTL.
    pub ttl: Duration,
    /// The gap between read and write.
    pub hold: Duration,
    /// Retry delay (and jitter).
    pub retry_delay: Duration,
    /// Holds by all contenders together before they stop.
    pub acquisitions: u64,
    /// Keep going at least this long after the start.
    pub min_duration: Duration,
    /// Stop after this long.
    pub max_duration: Duration,
}

impl Spec {
    /// The spec as one line (`key=value` pairs separated by `;`).
    pub fn encode(&self) -> String {
        format!(
            "id={};parent={};nodes={};register={};prefix={};resource={};ttl={};hold={};retry={};acquisitions={};min={};max={}",
            self.id,
            self.parent,
            self.nodes.join(","),
            self.register,
            self.key_prefix,
            self.resource,
            self.ttl.as_micros(),
            self.hold.as_micros(),
            self.retry_delay.as_micros(),
            self.acquisitions,
            self.min_duration.as_micros(),
            self.max_duration.as_micros(),
        )
    }

    /// Parses [`Spec::encode`]'s output.
    pub fn decode(text: &str) -> Result<Spec, String> {
        let fields: BTreeMap<&str, &str> = text
            .split(';')
            .filter_map(|kv| kv.split_once('='))
            .collect();
        let get = |k: &str| {
            fields
                .get(k)
                .copied()
                .ok_or_else(|| format!("contender spec lacks {k:?}"))
        };
        let num = |k: &str| {
            get(k)?
                .parse::<u64>()
                .map_err(|e| format!("contender spec {k:?}: {e}"))
        };
        let micros = |k: &str| num(k).map(Duration::from_micros);
        Ok(Spec {
            id: usize::try_from(num("id")?).map_err(|e| e.to_string())?,
            parent: u32::try_from(num("parent")?).map_err(|e| e.to_string())?,
            nodes: get("nodes")?.split(',').map(str::to_owned).collect(),
            register: get("register")?.to_owned(),
            key_prefix: get("prefix")?.to_owned(),
            resource: get("resource")?.to_owned(),
            ttl: micros("ttl")?,
            hold: micros("hold")?,
            retry_delay: micros("retry")?,
            acquisitions: num("acquisitions")?,
            min_duration: micros("min")?,
            max_duration: micros("max")?,
        })
    }

    fn config(&self) -> Config {
        let mut c = Config::new("contender")
            .ttl(self.ttl)
            .hold(self.hold)
            .acquisitions(self.acquisitions)
            .min_duration(self.min_duration)
            .max_duration(self.max_duration);
        c.key_prefix = self.key_prefix.clone();
        c.resource = self.resource.clone();
        c.retry_delay = self.retry_delay;
        c
    }

    fn register_key(&self) -> String {
        format!("{}register", self.key_prefix)
    }

    fn count_key(&self) -> String {
        format!("{}holds", self.key_prefix)
    }

    fn done_key(&self) -> String {
        format!("{}done", self.key_prefix)
    }
}

/// The contender spec of this process, if it was started as a contender
/// ([`ENV`] is set).
pub fn spec_from_env() -> Option<Result<Spec, String>> {
    let text = std::env::var(ENV).ok()?;
    Some(Spec::decode(&text))
}

/// One hold as a contender records it (times on [`monotonic_ns`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Record {
    obtained: u64,
    end: u64,
    read_at: u64,
    read: u64,
    /// When the write happened; `None` when the holder saw its lease lost
    /// (or the register failed) and did not write.
    write_at: Option<u64>,
}

impl Record {
    fn line(&self) -> String {
        format!(
            "{TAG} hold {} {} {} {} {}",
            self.obtained,
            self.end,
            self.read_at,
            self.read,
            self.write_at
                .map_or_else(|| "-".to_owned(), |w| w.to_string())
        )
    }

    fn parse(words: &[&str]) -> Option<Record> {
        let n = |i: usize| words.get(i).and_then(|w| w.parse::<u64>().ok());
        Some(Record {
            obtained: n(0)?,
            end: n(1)?,
            read_at: n(2)?,
            read: n(3)?,
            write_at: match words.get(4) {
                Some(&"-") => None,
                _ => Some(n(4)?),
            },
        })
    }
}

type RegisterConnection = redis::aio::MultiplexedConnection;

async fn register_connection(url: &str) -> Result<RegisterConnection, String> {
    let client = redis::Client::open(url).map_err(|e| format!("register url: {e}"))?;
    client
        .get_multiplexed_async_connection()
        .await
        .map_err(|e| format!("register connection: {e}"))
}

fn die_with_parent(parent: u32) {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: prctl with PR_SET_PDEATHSIG and a signal number.
        unsafe {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        }
        // The parent may have gone before the call.
        // SAFETY: getppid has no preconditions.
        if u32::try_from(unsafe { libc::getppid() }).ok() != Some(parent) {
            std::process::exit(1);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = parent;
}

/// Runs one contender process: connects to the nodes (through `make`, the
/// adapter under test) and to the register, says `ready` on stdout, waits
/// for the parent's `go` line on stdin, then contends until the shared hold
/// count reaches the target, and prints its records on stdout.
pub async fn contender<M, Fut>(spec: Spec, make: M) -> Result<(), CheckError>
where
    M: Fn(String) -> Fut,
    Fut: Future<Output = Result<Arc<dyn Node>, String>>,
{
    die_with_parent(spec.parent);
    let config = spec.config();
    let mut nodes = Vec::with_capacity(spec.nodes.len());
    for url in &spec.nodes {
        nodes.push(make(url.clone()).await.map_err(CheckError::Setup)?);
    }
    let redlock = Redlock::from_nodes(nodes, options(&config))?;
    let register = register_connection(&spec.register)
        .await
        .map_err(CheckError::Setup)?;

    // Stdin is read on a thread of its own: tokio's stdin would hold up the
    // runtime's shutdown until the parent closes it.
    let (lines_tx, mut stdin) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    println!("{TAG} ready {}", spec.id);
    let began = match stdin.recv().await {
        Some(line) => line
            .strip_prefix("go ")
            .and_then(|t| t.trim().parse::<u64>().ok())
            .ok_or_else(|| CheckError::Setup(format!("expected `go <ns>`, got {line:?}")))?,
        None => return Err(CheckError::Setup("stdin closed before `go`".into())),
    };
    // The parent closing our stdin (or dying) ends the run.
    let (gone_tx, gone) = watch::channel(false);
    tokio::spawn(async move {
        while stdin.recv().await.is_some() {}
        let _ = gone_tx.send(true);
    });

    let state = ContenderState {
        spec: &spec,
        config: &config,
        began,
        register,
        records: Mutex::default(),
        detections: Mutex::default(),
    };
    let mut errors: BTreeMap<&'static str, u64> = BTreeMap::new();
    let scope = LockOptions::new(config.resource.as_str(), config.ttl);
    let max_ns = began.saturating_add(nanos(config.max_duration));
    loop {
        if *gone.borrow() || monotonic_ns() >= max_ns || state.done().await {
            break;
        }
        let work = |lease| state.hold_once(lease);
        match redlock.scoped(&scope, work).await {
            Ok(()) => {}
            Err(LockError::Lost(_)) => {
                *state
                    .detections
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) += 1;
            }
            Err(e) => *errors.entry(error_kind(&e)).or_default() += 1,
        }
    }
    // Let releases still queued behind an early quorum decision reach their
    // nodes before the process exits.
    let _ = redlock.quit().await;
    let records =
        std::mem::take(&mut *state.records.lock().unwrap_or_else(PoisonError::into_inner));
    let mut out = String::with_capacity(records.len() * 64);
    for r in &records {
        out.push_str(&r.line());
        out.push('\n');
    }
    let detections = *state
        .detections
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    out.push_str(&format!("{TAG} detections {detections}\n"));
    for (kind, n) in &errors {
        out.push_str(&format!("{TAG} error {} {n}\n", kind.replace(' ', "_")));
    }
    out.push_str(&format!("{TAG} end {}\n", spec.id));
    let mut stdout = tokio::io::stdout();
    stdout
        .write_all(out.as_bytes())
        .await
        .map_err(|e| CheckError::Task(format!("stdout: {e}")))?;
    stdout
        .flush()
        .await
        .map_err(|e| CheckError::Task(format!("stdout: {e}")))?;
    Ok(())
}

struct ContenderState<'a> {
    spec: &'a Spec,
    config: &'a Config,
    began: u64,
    register: RegisterConnection,
    records: Mutex<Vec<Record>>,
    detections: Mutex<u64>,
}

impl ContenderState<'_> {
    async fn done(&self) -> bool {
        let mut con = self.register.clone();
        matches!(
            redis::cmd("EXISTS")
                .arg(self.spec.done_key())
                .query_async::<u64>(&mut con)
                .await,
            Ok(n) if n > 0
        )
    }

    /// One hold: GET, wait, check the lease, SET; then count the hold.
    async fn hold_once(&self, lease: redlock_core::Lease) {
        let obtained = monotonic_ns();
        let mut con = self.register.clone();
        let key = self.spec.register_key();
        let read = redis::cmd("GET")
            .arg(&key)
            .query_async::<Option<u64>>(&mut con)
            .await;
        let read_at = monotonic_ns();
        let mut record = Record {
            obtained,
            end: obtained,
            read_at,
            read: 0,
            write_at: None,
        };
        if let Ok(read) = read {
            record.read = read.unwrap_or(0);
            if !self.config.hold.is_zero() {
                tokio::time::sleep(self.config.hold).await;
            }
            if lease.is_held() {
                let wrote = redis::cmd("SET")
                    .arg(&key)
                    .arg(record.read + 1)
                    .query_async::<()>(&mut con)
                    .await;
                if wrote.is_ok() {
                    record.write_at = Some(monotonic_ns());
                }
            } else {
                *self
                    .detections
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) += 1;
            }
        }
        record.end = monotonic_ns().min(instant_ns(lease.valid_until()));
        self.records
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(record);
        let count = redis::cmd("INCR")
            .arg(self.spec.count_key())
            .query_async::<u64>(&mut con)
            .await;
        let long_enough =
            monotonic_ns().saturating_sub(self.began) >= nanos(self.config.min_duration);
        if matches!(count, Ok(n) if n >= self.config.acquisitions) && long_enough {
            let _ = redis::cmd("SET")
                .arg(self.spec.done_key())
                .arg(1)
                .query_async::<()>(&mut con)
                .await;
        }
    }
}

/// Kills every contender still running when dropped (also on unwinding).
struct Contenders(Vec<tokio::process::Child>);

impl Drop for Contenders {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.start_kill();
        }
    }
}

/// What the parent collects from one contender's stdout.
#[derive(Debug, Default)]
struct Output {
    records: Vec<Record>,
    detections: u64,
    errors: BTreeMap<String, u64>,
    ended: bool,
}

fn parse_line(line: &str, out: &mut Output) {
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        [TAG, "hold", rest @ ..] => {
            if let Some(r) = Record::parse(rest) {
                out.records.push(r);
            }
        }
        [TAG, "detections", n] => out.detections += n.parse::<u64>().unwrap_or(0),
        [TAG, "error", kind, n] => {
            *out.errors.entry(kind.replace('_', " ")).or_default() += n.parse::<u64>().unwrap_or(0)
        }
        [TAG, "end", _] => out.ended = true,
        _ => {}
    }
}

/// Runs `config.contenders` contender processes, each started by `command`
/// (with [`ENV`] set on top; stdin and stdout are piped, stderr inherited),
/// on five fresh servers with one of [`FAULTS`] beside them, and merges
/// their records into a [`Report`]. `make` turns a URL into a node of the
/// adapter under test (the parent uses it to count keys left). Uses
/// `config.acquisitions`, `ttl`, `hold`, `retry_delay`, `resource`,
/// `key_prefix` and `max_duration` (fencing and client pauses are not
/// available across processes). Contenders still running when this returns
/// or unwinds are killed.
pub async fn run<C, M, Fut>(
    fault: &str,
    config: Config,
    command: C,
    make: M,
) -> Result<Report, CheckError>
where
    C: Fn() -> std::process::Command,
    M: Fn(String) -> Fut,
    Fut: Future<Output = Result<Arc<dyn Node>, String>>,
{
    if !FAULTS.contains(&fault) {
        return Err(CheckError::UnknownScenario(fault.to_owned()));
    }
    let k = config.contenders.max(1);
    let servers = super::blocking(|| {
        (0..6)
            .map(|_| RedisServer::start().map(Arc::new))
            .collect::<Result<Vec<_>, _>>()
    })
    .await
    .ok_or_else(|| CheckError::Setup("server start task failed".into()))?
    .map_err(|e| CheckError::Setup(e.to_string()))?;
    let (nodes_servers, register_server) = servers.split_at(5);
    let register_url = register_server
        .first()
        .map(|s| s.url())
        .ok_or_else(|| CheckError::Setup("no register server".into()))?;
    let min_duration = match fault {
        "pause-minority" => Duration::from_secs(1),
        "kill-minority" => Duration::from_secs(2),
        _ => Duration::ZERO,
    };
    let spec = |id| Spec {
        id,
        parent: std::process::id(),
        nodes: nodes_servers.iter().map(|s| s.url()).collect(),
        register: register_url.clone(),
        key_prefix: config.key_prefix.clone(),
        resource: config.resource.clone(),
        ttl: config.ttl,
        hold: config.hold,
        retry_delay: config.retry_delay,
        acquisitions: config.acquisitions,
        min_duration: config.min_duration.max(min_duration),
        max_duration: config.max_duration,
    };

    let mut children = Contenders(Vec::with_capacity(k));
    let mut readers = Vec::with_capacity(k);
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::unbounded_channel();
    for id in 0..k {
        let mut cmd = tokio::process::Command::from(command());
        cmd.env(ENV, spec(id).encode())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .map_err(|e| CheckError::Setup(format!("spawn contender: {e}")))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| CheckError::Setup("contender stdout".into()))?;
        let ready_tx = ready_tx.clone();
        readers.push(tokio::spawn(async move {
            let mut out = Output::default();
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if line.starts_with(&format!("{TAG} ready")) {
                    let _ = ready_tx.send(());
                } else {
                    parse_line(&line, &mut out);
                }
            }
            out
        }));
        children.0.push(child);
    }
    drop(ready_tx);
    // Setup hang guard: connecting takes milliseconds; a contender that
    // cannot start ends its stdout, which ends the channel early.
    let setup = tokio::time::timeout(Duration::from_secs(120), async {
        for _ in 0..k {
            if ready_rx.recv().await.is_none() {
                return false;
            }
        }
        true
    })
    .await;
    if setup != Ok(true) {
        return Err(CheckError::Setup(
            "a contender did not become ready (see its stderr)".into(),
        ));
    }

    let (stop_tx, stop_rx) = watch::channel(false);
    let stop = Stop(stop_rx);
    let fault_task = match fault {
        "pause-minority" => tokio::spawn(super::pause_loop(
            nodes_servers[3..].to_vec(),
            Duration::from_millis(300),
            Duration::from_millis(300),
            stop,
        )),
        "kill-minority" => tokio::spawn(super::kill_restart_loop(
            nodes_servers[3..].to_vec(),
            Duration::from_millis(1200),
            Duration::from_millis(500),
            stop,
        )),
        _ => tokio::spawn(async move { drop(stop) }),
    };
    let began = monotonic_ns();
    let started = Instant::now();
    let mut stdins = Vec::with_capacity(k);
    for c in &mut children.0 {
        let mut stdin = c
            .stdin
            .take()
            .ok_or_else(|| CheckError::Setup("contender stdin".into()))?;
        stdin
            .write_all(format!("go {began}\n").as_bytes())
            .await
            .map_err(|e| CheckError::Setup(format!("contender stdin: {e}")))?;
        stdin
            .flush()
            .await
            .map_err(|e| CheckError::Setup(format!("contender stdin: {e}")))?;
        // Kept open: closing it tells the contender to stop.
        stdins.push(stdin);
    }

    // Hang guard: contenders stop by themselves at `max_duration`.
    let guard = config.max_duration + Duration::from_secs(60);
    let mut failures = Vec::new();
    for (id, c) in children.0.iter_mut().enumerate() {
        let left = guard.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, c.wait()).await {
            Ok(Ok(status)) if status.success() => {}
            Ok(Ok(status)) => failures.push(format!("contender {id}: {status}")),
            Ok(Err(e)) => failures.push(format!("contender {id}: {e}")),
            Err(_) => failures.push(format!("contender {id}: still running after {guard:?}")),
        }
    }
    let elapsed = started.elapsed();
    drop(stdins);
    drop(children);
    let _ = stop_tx.send(true);
    let _ = fault_task.await;
    let mut outputs = Vec::with_capacity(k);
    for r in readers {
        outputs.push(r.await.map_err(|e| CheckError::Task(e.to_string()))?);
    }
    if !failures.is_empty() {
        return Err(CheckError::Task(failures.join("; ")));
    }
    if let Some(id) = outputs.iter().position(|o| !o.ended) {
        return Err(CheckError::Task(format!(
            "contender {id} ended without its records"
        )));
    }

    let mut inspect = Vec::with_capacity(5);
    for s in nodes_servers {
        inspect.push(make(s.url()).await.map_err(CheckError::Setup)?);
    }
    let (keys_left, nodes_unreadable) = keys_left(&inspect, &config.key()).await;
    let register_value = {
        let mut con = register_connection(&register_url)
            .await
            .map_err(CheckError::Setup)?;
        redis::cmd("GET")
            .arg(format!("{}register", config.key_prefix))
            .query_async::<Option<u64>>(&mut con)
            .await
            .map_err(|e| CheckError::Task(format!("register: {e}")))?
            .unwrap_or(0)
    };

    let mut records = Vec::new();
    let mut report = Report {
        name: format!("processes/{fault}"),
        contenders: k,
        elapsed,
        keys_left,
        nodes_unreadable,
        register: register_value,
        timed_out: elapsed >= config.max_duration,
        ..Report::default()
    };
    let (now, now_ns) = (Instant::now(), monotonic_ns());
    let instant = |ns: u64| now.checked_sub(Duration::from_nanos(now_ns.saturating_sub(ns)));
    for (contender, o) in outputs.into_iter().enumerate() {
        for r in &o.records {
            if let (Some(from), Some(to)) = (instant(r.obtained), instant(r.end)) {
                crate::timeline::hold_of(contender, from, to);
            }
        }
        records.extend(o.records);
        report.lost_lock_detections += o.detections;
        for (kind, n) in o.errors {
            *report.lock_errors.entry(kind).or_default() += n;
        }
    }
    let analysis = analyse(&records);
    report.acquisitions = records.len() as u64;
    report.overlaps = analysis.overlaps;
    report.stale_writes = analysis.stale_writes;
    report.stale_writes_accepted = analysis.stale_writes;
    report.writes = analysis.writes;
    report.lost_updates = analysis.writes.saturating_sub(register_value);
    drop(servers);
    Ok(report)
}

#[derive(Debug, Default, PartialEq, Eq)]
struct Analysis {
    overlaps: u64,
    stale_writes: u64,
    writes: u64,
}

/// Overlapping holds (each hold that starts before an earlier one ended
/// counts once), writes, and writes with another hold's register access
/// between their read and their write.
fn analyse(records: &[Record]) -> Analysis {
    let mut by_start: Vec<&Record> = records.iter().collect();
    by_start.sort_by_key(|r| r.obtained);
    let mut a = Analysis::default();
    let mut max_end: Option<u64> = None;
    for r in &by_start {
        if max_end.is_some_and(|e| r.obtained < e) {
            a.overlaps += 1;
        }
        max_end = Some(max_end.map_or(r.end, |e| e.max(r.end)));
    }
    // Every register access as (time, hold, is_write); a write is stale
    // when the access right before it is not its own read.
    let mut accesses: Vec<(u64, usize, bool)> = Vec::with_capacity(records.len() * 2);
    for (i, r) in records.iter().enumerate() {
        accesses.push((r.read_at, i, false));
        if let Some(w) = r.write_at {
            accesses.push((w, i, true));
            a.writes += 1;
        }
    }
    accesses.sort_unstable();
    for pair in accesses.windows(2) {
        if let [(_, before, _), (_, hold, true)] = pair {
            if before != hold {
                a.stale_writes += 1;
            }
        }
    }
    if let Some((_, _, true)) = accesses.first() {
        a.stale_writes += 1;
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(obtained: u64, end: u64, read_at: u64, write_at: Option<u64>) -> Record {
        Record {
            obtained,
            end,
            read_at,
            read: 0,
            write_at,
        }
    }

    #[test]
    fn spec_round_trips() {
        let spec = Spec {
            id: 3,
            parent: 42,
            nodes: vec!["redis://127.0.0.1:1".into(), "redis://127.0.0.1:2".into()],
            register: "redis://127.0.0.1:3".into(),
            key_prefix: "chk:x:1:".into(),
            resource: "checker".into(),
            ttl: Duration::from_secs(1),
            hold: Duration::from_millis(1),
            retry_delay: Duration::from_millis(2),
            acquisitions: 10_000,
            min_duration: Duration::ZERO,
            max_duration: Duration::from_secs(600),
        };
        assert_eq!(Spec::decode(&spec.encode()), Ok(spec));
        assert!(Spec::decode("id=1").is_err());
        assert!(Spec::decode("").is_err());
    }

    #[test]
    fn records_round_trip_through_lines() {
        let mut out = Output::default();
        for r in [rec(1, 5, 2, Some(4)), rec(6, 9, 7, None)] {
            parse_line(&r.line(), &mut out);
        }
        parse_line(&format!("{TAG} error no_quorum 3"), &mut out);
        parse_line("running 1 test", &mut out);
        parse_line(&format!("{TAG} end 0"), &mut out);
        assert_eq!(out.records, vec![rec(1, 5, 2, Some(4)), rec(6, 9, 7, None)]);
        assert_eq!(out.errors.get("no quorum"), Some(&3));
        assert!(out.ended);
    }

    #[test]
    fn overlaps_and_stale_writes_are_counted() {
        let serial = [rec(0, 10, 1, Some(9)), rec(10, 20, 11, Some(19))];
        assert_eq!(
            analyse(&serial),
            Analysis {
                overlaps: 0,
                stale_writes: 0,
                writes: 2
            }
        );
        // Each hold's read and write have the other's access in between.
        let racing = [rec(0, 10, 1, Some(9)), rec(5, 20, 6, Some(19))];
        assert_eq!(
            analyse(&racing),
            Analysis {
                overlaps: 1,
                stale_writes: 2,
                writes: 2
            }
        );
    }

    #[test]
    fn the_clock_is_monotonic_and_converts_instants() {
        let a = monotonic_ns();
        let now = Instant::now();
        let b = instant_ns(now + Duration::from_millis(100));
        assert!(b >= a + 99_000_000, "{a} {b}");
        assert!(monotonic_ns() >= a);
    }
}
