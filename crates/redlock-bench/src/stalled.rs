//! The `stalled` workload: one node of five stopped (SIGSTOP) for a long
//! time (`--stall-secs`, default 60) under a sustained lock + unlock loop,
//! then continued (SIGCONT).
//!
//! Each (client, loop) runs in a child process of this program (the same
//! binary, re-executed with a hidden subcommand), so that the memory it
//! reports is its own. The parent owns the servers and sends the signals;
//! it tells the child what happened over the child's stdin, one word a
//! line, and the child answers on stdout:
//!
//! ```text
//! child  -> ready                 connected, warmed up, loop running
//! parent -> stopped               node just got SIGSTOP
//! parent -> end                   end of the stop (child samples memory)
//! child  -> sampled
//! parent -> resumed               node just got SIGCONT
//! parent -> finish                stop the loop, quit the client, report
//! child  -> STALLED key=value ... one machine-readable result line
//! ```
//!
//! With `--resume-after-exit` the node gets SIGCONT only once the child
//! has quit and exited (no `resumed` step): what a node that comes back
//! after its clients are gone receives.
//!
//! Whatever goes wrong (the child dies, hangs, or the parent fails), the
//! node gets SIGCONT again ([`StopGuard`]) and the child is killed
//! ([`ChildGuard`]).

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::clients::{self, Held, Kind, Waiting};
use crate::servers::Server;
use crate::{median, Env, PAUSED_NODE, TTL};

/// The hidden subcommand a child runs.
pub const CHILD_COMMAND: &str = "__stalled-child";

/// Memory is sampled this long into the stop (or halfway through a
/// shorter stop) and again at its end.
const EARLY_SAMPLE: Duration = Duration::from_secs(10);
/// How long the loop keeps running after SIGCONT (the "resumed" rate).
const RESUMED: Duration = Duration::from_secs(3);
/// Bounds on the child's steps, so that a hung client cannot hang the run.
const CONNECT_BOUND: Duration = Duration::from_secs(60);
const STEP_BOUND: Duration = Duration::from_secs(30);
/// The child waits this long for its tasks, and as long again for `quit`.
const FINISH_BOUND: Duration = Duration::from_secs(10);

/// The two loops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loop {
    /// One task, lock + unlock in a loop.
    Serial,
    /// 64 tasks, one key each.
    Wide,
}

impl Loop {
    pub const ALL: [Loop; 2] = [Loop::Serial, Loop::Wide];

    pub fn tasks(self) -> usize {
        match self {
            Loop::Serial => 1,
            Loop::Wide => 64,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Loop::Serial => "serial (1 task)",
            Loop::Wide => "64 tasks",
        }
    }
}

/// What the parent needs to run one measurement.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Healthy loop before the stop.
    pub healthy: Duration,
    /// How long the node stays stopped.
    pub stall: Duration,
    /// SIGCONT only after the child quit and exited, instead of while its
    /// loop still runs.
    pub resume_after_exit: bool,
}

impl Plan {
    fn early_sample(&self) -> Duration {
        EARLY_SAMPLE.min(self.stall / 2)
    }
}

/// One measurement of one (client, loop).
#[derive(Debug, Clone, Default)]
pub struct StallResult {
    pub healthy_rate: f64,
    pub stopped_rate: f64,
    pub resumed_rate: f64,
    /// VmHWM / VmRSS in kB, early in the stop and at its end.
    pub hwm_early_kb: u64,
    pub rss_early_kb: u64,
    pub hwm_end_kb: u64,
    pub rss_end_kb: u64,
    /// Largest `Node::outstanding` seen during the stop; `None` when the
    /// client does not keep a count.
    pub outstanding_max: Option<usize>,
    pub failures: u64,
    pub failures_stopped: u64,
    /// Tasks that had not finished `FINISH_BOUND` after the end (aborted).
    pub hung: bool,
    /// `quit` did not return within `FINISH_BOUND`.
    pub close_timed_out: bool,
    /// DBSIZE per node once the counts settled.
    pub keys: Vec<u64>,
    /// The counts had not settled within the bound.
    pub keys_unsettled: bool,
}

impl StallResult {
    pub fn keys_total(&self) -> u64 {
        self.keys.iter().sum()
    }

    /// Growth of the child's peak RSS from the early sample to the end, kB.
    pub fn growth_kb(&self) -> i64 {
        self.hwm_end_kb as i64 - self.hwm_early_kb as i64
    }

    pub fn ratio(&self) -> f64 {
        self.stopped_rate / self.healthy_rate
    }

    fn parse(line: &str) -> Result<StallResult, String> {
        let mut r = StallResult::default();
        for field in line.split_whitespace().skip(1) {
            let (k, v) = field
                .split_once('=')
                .ok_or_else(|| format!("bad field {field:?} in child result"))?;
            let f = || {
                v.parse::<f64>()
                    .map_err(|e| format!("child result {k}={v}: {e}"))
            };
            let u = || {
                v.parse::<u64>()
                    .map_err(|e| format!("child result {k}={v}: {e}"))
            };
            match k {
                "healthy_rate" => r.healthy_rate = f()?,
                "stopped_rate" => r.stopped_rate = f()?,
                "resumed_rate" => r.resumed_rate = f()?,
                "hwm_early_kb" => r.hwm_early_kb = u()?,
                "rss_early_kb" => r.rss_early_kb = u()?,
                "hwm_end_kb" => r.hwm_end_kb = u()?,
                "rss_end_kb" => r.rss_end_kb = u()?,
                "outstanding_max" => {
                    r.outstanding_max = if v == "none" {
                        None
                    } else {
                        Some(u()? as usize)
                    }
                }
                "failures" => r.failures = u()?,
                "failures_stopped" => r.failures_stopped = u()?,
                "hung" => r.hung = v == "1",
                "close_timed_out" => r.close_timed_out = v == "1",
                _ => {} // newer fields are ignored
            }
        }
        Ok(r)
    }
}

// ---------------------------------------------------------------- parent

/// SIGSTOP on creation; SIGCONT when resumed or dropped (error paths,
/// panics).
struct StopGuard<'a> {
    server: &'a Server,
    stopped: bool,
}

impl<'a> StopGuard<'a> {
    fn stop(server: &'a Server) -> Result<Self, String> {
        server.pause().map_err(|e| format!("SIGSTOP: {e}"))?;
        Ok(StopGuard {
            server,
            stopped: true,
        })
    }

    fn resume(&mut self) -> Result<(), String> {
        self.stopped = false;
        self.server.resume().map_err(|e| format!("SIGCONT: {e}"))
    }
}

impl Drop for StopGuard<'_> {
    fn drop(&mut self) {
        if self.stopped {
            let _ = self.server.resume();
        }
    }
}

/// The child process: killed and reaped on drop unless it exited.
struct ChildGuard {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl ChildGuard {
    fn send(&mut self, word: &str) -> Result<(), String> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| "child stdin closed".to_string())?;
        writeln!(stdin, "{word}")
            .and_then(|()| stdin.flush())
            .map_err(|e| format!("telling the child {word:?}: {e}"))
    }

    /// Waits up to `bound` for the child to exit on its own.
    async fn wait(&mut self, bound: Duration) -> Result<(), String> {
        self.stdin = None;
        let until = Instant::now() + bound;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) if status.success() => return Ok(()),
                Ok(Some(status)) => return Err(format!("child exited with {status}")),
                Ok(None) if Instant::now() < until => {
                    tokio::time::sleep(Duration::from_millis(20)).await
                }
                Ok(None) => return Err("child did not exit".into()),
                Err(e) => return Err(format!("waiting for the child: {e}")),
            }
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.stdin = None;
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// The child's stdout, line by line.
struct Lines(mpsc::UnboundedReceiver<String>);

impl Lines {
    /// The next line for which `want` holds, within `bound`; other lines
    /// are passed through to our stdout.
    async fn expect(
        &mut self,
        bound: Duration,
        want: impl Fn(&str) -> bool,
    ) -> Result<String, String> {
        let until = tokio::time::Instant::now() + bound;
        loop {
            match tokio::time::timeout_at(until, self.0.recv()).await {
                Err(_) => return Err(format!("child silent for {} s", bound.as_secs())),
                Ok(None) => return Err("child exited early".into()),
                Ok(Some(line)) if want(&line) => return Ok(line),
                Ok(Some(line)) => println!("  child: {line}"),
            }
        }
    }

    /// Sleeps `d`, failing early if the child's output ends.
    async fn sleep(&mut self, d: Duration) -> Result<(), String> {
        let until = tokio::time::Instant::now() + d;
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(until) => return Ok(()),
                line = self.0.recv() => match line {
                    Some(line) => println!("  child: {line}"),
                    None => return Err("child exited early".into()),
                },
            }
        }
    }
}

/// Runs one (client, loop) measurement in a child process.
pub async fn run(env: &Env, kind: Kind, lp: Loop, plan: Plan) -> Result<StallResult, String> {
    let server = env
        .servers
        .get(PAUSED_NODE)
        .ok_or("stalled needs the five nodes this program starts")?;
    env.flush().await;
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let mut command = Command::new(exe);
    crate::servers::die_with_parent(&mut command);
    let mut child = command
        .arg(CHILD_COMMAND)
        .arg(kind.id())
        .arg(lp.tasks().to_string())
        .arg(plan.early_sample().as_millis().to_string())
        .arg(env.urls.join(","))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("starting the child: {e}"))?;
    let stdout = child.stdout.take().ok_or("child has no stdout")?;
    let stdin = child.stdin.take();
    let mut child = ChildGuard { child, stdin };
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Lines(rx);

    lines.expect(CONNECT_BOUND, |l| l == "ready").await?;
    lines.sleep(plan.healthy).await?;
    let mut stop = StopGuard::stop(server)?;
    child.send("stopped")?;
    lines.sleep(plan.stall).await?;
    child.send("end")?;
    lines.expect(STEP_BOUND, |l| l == "sampled").await?;
    if !plan.resume_after_exit {
        stop.resume()?;
        child.send("resumed")?;
        lines.sleep(RESUMED).await?;
    }
    child.send("finish")?;
    let line = lines
        .expect(FINISH_BOUND * 2 + STEP_BOUND, |l| l.starts_with("STALLED "))
        .await?;
    child.wait(STEP_BOUND).await?;
    stop.resume()?;
    let mut r = StallResult::parse(&line)?;
    (r.keys, r.keys_unsettled) = settled_keys(env).await?;
    env.flush().await;
    Ok(r)
}

/// DBSIZE of every node once it stops changing: the same counts read five
/// times in a row, 100 ms apart, within 20 s (`unsettled` otherwise). A
/// node that does not answer is an error, never a count of 0.
async fn settled_keys(env: &Env) -> Result<(Vec<u64>, bool), String> {
    let mut last: Option<Vec<u64>> = None;
    let mut failure = String::new();
    let mut same = 0;
    for _ in 0..200 {
        match env.keys_per_node().await {
            Ok(now) if last.as_ref() == Some(&now) => {
                same += 1;
                if same >= 4 {
                    return Ok((now, false));
                }
            }
            Ok(now) => {
                same = 0;
                last = Some(now);
            }
            Err(e) => failure = e,
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    last.map(|l| (l, true))
        .ok_or_else(|| format!("counting keys: {failure}"))
}

// ---------------------------------------------------------------- child

/// `(VmRSS, VmHWM)` of this process in kB.
fn memory_kb() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// The child: `__stalled-child <client> <tasks> <early-sample-ms> <urls>`.
/// Returns the exit code.
pub async fn child_main(args: &[String]) -> i32 {
    match child(args).await {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("redlock-bench {CHILD_COMMAND}: {e}");
            1
        }
    }
}

async fn child(args: &[String]) -> Result<(), String> {
    let [kind, tasks, early_ms, urls] = args else {
        return Err("usage: <client> <tasks> <early-sample-ms> <urls>".into());
    };
    let kind = Kind::parse(kind).ok_or_else(|| format!("unknown client {kind}"))?;
    let tasks: usize = tasks.parse().map_err(|e| format!("tasks: {e}"))?;
    let early = Duration::from_millis(early_ms.parse().map_err(|e| format!("early: {e}"))?);
    let urls: Vec<String> = urls.split(',').map(str::to_owned).collect();

    let locker = clients::build(kind, &urls, Waiting::Once).await?;
    for _ in 0..20 {
        if let Ok(h) = locker.lock("bench:warm", TTL).await {
            let _ = locker.unlock(h).await;
        }
    }

    let (tx, mut commands) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.send(line.trim().to_owned()).is_err() {
                return;
            }
        }
        let _ = tx.send("eof".to_owned());
    });

    let pairs = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(AtomicU64::new(0));
    let halt = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();
    for i in 0..tasks {
        let locker = locker.clone();
        let (pairs, failures, halt) = (pairs.clone(), failures.clone(), halt.clone());
        handles.push(tokio::spawn(async move {
            // A resource of its own for every pair: a key left behind then
            // counts once per lost release, not once per task.
            let mut n = 0u64;
            while !halt.load(Ordering::Relaxed) {
                n += 1;
                let key = format!("bench:st:{i}:{n}");
                let held: Held = match locker.lock(&key, TTL).await {
                    Ok(h) => h,
                    Err(_) => {
                        failures.fetch_add(1, Ordering::Relaxed);
                        // A failure that returns at once must not spin.
                        tokio::task::yield_now().await;
                        continue;
                    }
                };
                if locker.unlock(held).await.is_err() {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
                pairs.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let started = Instant::now();
    say("ready");

    let count = || pairs.load(Ordering::Relaxed);
    let rate = |n0: u64, t0: Instant, n1: u64, t1: Instant| {
        (n1 - n0) as f64 / t1.saturating_duration_since(t0).as_secs_f64()
    };
    let mut stopped: Option<(Instant, u64, u64)> = None;
    let mut end: Option<(Instant, u64)> = None;
    let mut resumed: Option<(Instant, u64)> = None;
    let mut early_mem: Option<(u64, u64)> = None;
    let mut end_mem = (0, 0);
    let mut outstanding: Option<usize> = None;
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    let far = tokio::time::Instant::now() + Duration::from_secs(365 * 86_400);
    loop {
        let early_at = match (stopped, early_mem) {
            (Some((t, _, _)), None) => tokio::time::Instant::from_std(t + early),
            _ => far,
        };
        tokio::select! {
            command = commands.recv() => {
                let command = command.unwrap_or_else(|| "eof".into());
                match command.as_str() {
                    "stopped" => {
                        stopped = Some((Instant::now(), count(), failures.load(Ordering::Relaxed)));
                    }
                    "end" => {
                        if early_mem.is_none() {
                            early_mem = Some(memory_kb());
                        }
                        end_mem = memory_kb();
                        end = Some((Instant::now(), count()));
                        say("sampled");
                    }
                    "resumed" => resumed = Some((Instant::now(), count())),
                    "finish" => break,
                    "eof" => return Err("parent went away".into()),
                    other => return Err(format!("unknown command {other:?}")),
                }
            }
            () = tokio::time::sleep_until(early_at) => early_mem = Some(memory_kb()),
            _ = tick.tick(), if stopped.is_some() && end.is_none() => {
                if let Some(n) = locker.outstanding() {
                    outstanding = Some(outstanding.map_or(n, |m| m.max(n)));
                }
            }
        }
    }
    let finished = (Instant::now(), count());
    halt.store(true, Ordering::Relaxed);
    let (Some((t_stop, n_stop, f_stop)), Some((t_end, n_end))) = (stopped, end) else {
        return Err("finish before stopped / end".into());
    };
    // No `resumed` step when the node is continued after we exit.
    let resumed_rate = resumed.map_or(f64::NAN, |(t_res, n_res)| {
        rate(n_res, t_res, finished.1, finished.0)
    });
    let until = tokio::time::Instant::now() + FINISH_BOUND;
    let mut hung = false;
    for h in handles {
        let abort = h.abort_handle();
        if tokio::time::timeout_at(until, h).await.is_err() {
            abort.abort();
            hung = true;
        }
    }
    let close_timed_out = tokio::time::timeout(FINISH_BOUND, locker.close())
        .await
        .is_err();
    let (rss_early, hwm_early) = early_mem.unwrap_or_default();
    let (rss_end, hwm_end) = end_mem;
    let failures_total = failures.load(Ordering::Relaxed);
    say(&format!(
        "STALLED healthy_rate={:.1} stopped_rate={:.1} resumed_rate={:.1} \
         hwm_early_kb={hwm_early} rss_early_kb={rss_early} hwm_end_kb={hwm_end} rss_end_kb={rss_end} \
         outstanding_max={} failures={failures_total} failures_stopped={} hung={} close_timed_out={}",
        rate(0, started, n_stop, t_stop),
        rate(n_stop, t_stop, n_end, t_end),
        resumed_rate,
        outstanding.map_or("none".to_string(), |n| n.to_string()),
        failures_total.saturating_sub(f_stop),
        u8::from(hung),
        u8::from(close_timed_out),
    ));
    Ok(())
}

// ---------------------------------------------------------------- report

fn rate_text(r: f64) -> String {
    if r.is_nan() {
        "–".into()
    } else {
        format!("{r:.0}")
    }
}

fn mb(kb: f64) -> String {
    if kb.is_nan() {
        "–".into()
    } else {
        format!("{:.1} MB", kb / 1024.0)
    }
}

/// One line per measurement, as it finishes.
pub fn line(r: &StallResult) -> String {
    format!(
        "healthy {:>7.0}/s  stopped {:>7.0}/s ({:.2}x)  resumed {:>7}/s  max RSS {} -> {} ({:+.1} MB; RSS now {} -> {})  outstanding max {}  keys left {:?}{}  fail {} ({} while stopped){}{}",
        r.healthy_rate,
        r.stopped_rate,
        r.ratio(),
        rate_text(r.resumed_rate),
        mb(r.hwm_early_kb as f64),
        mb(r.hwm_end_kb as f64),
        r.growth_kb() as f64 / 1024.0,
        mb(r.rss_early_kb as f64),
        mb(r.rss_end_kb as f64),
        r.outstanding_max.map_or("–".into(), |n| n.to_string()),
        r.keys,
        if r.keys_unsettled { " (not settled)" } else { "" },
        r.failures,
        r.failures_stopped,
        if r.hung { "  HUNG (aborted)" } else { "" },
        if r.close_timed_out { "  QUIT TIMED OUT" } else { "" },
    )
}

/// The table of medians (keys: the maximum over the runs) and the targets.
pub fn report(cases: &[(Kind, Loop)], results: &[Vec<StallResult>], plan: Plan, runs: usize) {
    let resume = if plan.resume_after_exit {
        "SIGCONT once the client quit and its process exited".to_string()
    } else {
        format!("then SIGCONT and {} s more of the loop", RESUMED.as_secs())
    };
    println!(
        "\n`stalled`: node {} of 5 stopped (SIGSTOP) for {} s after {:.0} s healthy, {resume}; \
         lock + unlock on a new resource per pair, TTL 10 s, one attempt per lock call; each client in a process of its own. \
         Medians of {runs} run(s); max RSS = the client process's VmHWM {} s into the stop and at its end; \
         keys = DBSIZE summed over the five nodes once settled, after the client quit.\n",
        PAUSED_NODE + 1,
        plan.stall.as_secs(),
        plan.healthy.as_secs_f64(),
        plan.early_sample().as_secs(),
    );
    println!(
        "Targets: max RSS growth from {} s to the end of the stop <= 5 MB; 0 keys left on all nodes after SIGCONT; \
         pairs/s while stopped >= 0.9x healthy.\n",
        plan.early_sample().as_secs()
    );
    println!("| loop | client | healthy pairs/s | pairs/s while stopped | × healthy | pairs/s after SIGCONT | max RSS at {} s | max RSS at end | growth | outstanding (max) | keys left (max) | targets missed | notes |", plan.early_sample().as_secs());
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|");
    for ((kind, lp), rs) in cases.iter().zip(results) {
        if rs.is_empty() {
            continue;
        }
        let med = |f: &dyn Fn(&StallResult) -> f64| median(rs.iter().map(f).collect());
        let growth = med(&|r| r.growth_kb() as f64);
        let ratio = med(&|r| r.ratio());
        let keys = rs.iter().map(|r| r.keys_total()).max().unwrap_or(0);
        let worst = rs.iter().max_by_key(|r| r.keys_total());
        let outstanding = rs.iter().filter_map(|r| r.outstanding_max).max();
        let mut missed = Vec::new();
        if growth.is_nan() || growth > 5.0 * 1024.0 {
            missed.push("RSS");
        }
        if keys > 0 {
            missed.push("keys");
        }
        if ratio.is_nan() || ratio < 0.9 {
            missed.push("throughput");
        }
        let mut notes = Vec::new();
        if keys > 0 {
            if let Some(w) = worst {
                notes.push(format!(
                    "per node {}",
                    w.keys
                        .iter()
                        .map(u64::to_string)
                        .collect::<Vec<_>>()
                        .join("/")
                ));
            }
        }
        let fails = med(&|r| r.failures_stopped as f64);
        if fails > 0.0 {
            notes.push(format!("{fails:.0} failed calls while stopped"));
        }
        if rs.iter().any(|r| r.hung) {
            notes.push("hung, aborted".into());
        }
        if rs.iter().any(|r| r.close_timed_out) {
            notes.push("quit timed out".into());
        }
        if rs.iter().any(|r| r.keys_unsettled) {
            notes.push("key count not settled".into());
        }
        println!(
            "| {} | {} | {:.0} | {:.0} | {:.2} | {} | {} | {} | {:+.1} MB | {} | {} | {} | {} |",
            lp.name(),
            kind.name(),
            med(&|r| r.healthy_rate),
            med(&|r| r.stopped_rate),
            ratio,
            rate_text(med(&|r| r.resumed_rate)),
            mb(med(&|r| r.hwm_early_kb as f64)),
            mb(med(&|r| r.hwm_end_kb as f64)),
            growth / 1024.0,
            outstanding.map_or("–".into(), |n| n.to_string()),
            keys,
            if missed.is_empty() {
                "none".to_string()
            } else {
                missed.join(", ")
            },
            notes.join("; ")
        );
    }
}
