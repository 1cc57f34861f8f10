//! A Jepsen-style safety checker for Redlock on real nodes.
//!
//! `K` contenders (tasks) contend for one resource on the given nodes (any
//! adapter: `Vec<Arc<dyn Node>>`). While holding it through
//! [`Redlock::using_with`], each does a deliberately non-atomic
//! read-modify-write on a shared in-memory [`Register`]: read, wait
//! [`Config::hold`], check the lease, write the value plus one. Every hold
//! records `[obtained, end]` and its write on one monotonic clock. A fault
//! runs next to the contenders (pause, kill, proxy faults, early expiry; see
//! the functions of this module), and the [`Report`] says what happened:
//!
//! - **overlaps**: holds whose `[obtained, end]` intervals intersect, where
//!   `obtained` is when the lock call returned and `end` the earlier of the
//!   end of the work and the validity at that time. Redlock promises none.
//! - **lost updates**: writes the register accepted although another holder
//!   had written since this holder's read.
//! - **stale writes** (and how many the register *accepted*): writes by a
//!   holder after another holder touched the register since its read. With
//!   [`Config::fenced`], the register checks fencing tokens
//!   ([`Lease::fence`]) on every read and write and rejects them all.
//! - **lost-lock detections**: holders whose lease said "lost" before they
//!   wrote (so they did not write), or whose work was cancelled by the loss.
//! - acquisitions per second, keys left on the nodes after the run, and —
//!   when [`Config::count_holders`] is on — how often the holder had exactly
//!   a quorum of nodes.
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::time::Duration;
//! use redlock_core::Node;
//! use redlock_testkit::checker::{self, Config};
//!
//! # async fn run(nodes: Vec<Arc<dyn Node>>) -> Result<(), Box<dyn std::error::Error>> {
//! let report = checker::run(nodes, Config::new("no-fault").acquisitions(500), |_stop| async {}).await?;
//! assert_eq!(report.violations(), 0);
//! println!("{report}");
//! # Ok(())
//! # }
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use redlock_core::{
    InvalidArgument, Lease, LockError, Node, Options, Redlock, Retries, RetryPolicy, ScopeOptions,
};
use tokio::sync::watch;

use crate::fault_proxy::{FaultProxy, Mode};

pub mod processes;
use crate::server::RedisServer;

/// What a run does.
#[derive(Debug, Clone)]
pub struct Config {
    /// A name for the report.
    pub name: String,
    /// Concurrent contenders (tasks).
    pub contenders: usize,
    /// Stop once this many holds happened.
    pub acquisitions: u64,
    /// The lock's TTL.
    pub ttl: Duration,
    /// The gap between the read and the write while holding the lock.
    pub hold: Duration,
    /// The resource name (the key is `key_prefix + resource`).
    pub resource: String,
    /// A key prefix, so runs on the same nodes do not meet.
    pub key_prefix: String,
    /// Take fencing tokens and make the register check them.
    pub fenced: bool,
    /// Every `n`-th hold pauses its whole task (the lock's keep-alive too)
    /// for the given time between read and write: a client stopped by a GC
    /// pause or SIGSTOP. Needs a multi-threaded tokio runtime.
    pub client_pause: Option<(u64, Duration)>,
    /// After each acquisition, read the nodes to count how many hold the
    /// token (costs a round trip per hold): `Some(skip)` reads every node but
    /// those in `skip` (nodes whose keys a fault removes, so a read there
    /// says nothing) and counts a hold as "exactly a quorum" when the others
    /// hold `quorum - skip.len()` (with fewer, the quorum needed the skipped
    /// nodes).
    pub count_holders: Option<Vec<usize>>,
    /// Retry delay between attempts (jitter is the same again at most).
    pub retry_delay: Duration,
    /// A fixed per-node timeout (default: derived from the TTL by the core).
    pub node_timeout: Option<Duration>,
    /// The run goes on at least this long (so a fault goes through a whole
    /// cycle), even after [`Config::acquisitions`] holds.
    pub min_duration: Duration,
    /// The run stops after this long even if fewer holds happened.
    pub max_duration: Duration,
}

impl Config {
    /// Defaults: 8 contenders, 1000 holds, TTL 1 s, hold 1 ms, no fencing.
    pub fn new(name: &str) -> Self {
        Config {
            name: name.to_owned(),
            contenders: 8,
            acquisitions: 1000,
            ttl: Duration::from_secs(1),
            hold: Duration::from_millis(1),
            resource: "checker".to_owned(),
            key_prefix: format!("chk:{name}:{}:", std::process::id()),
            fenced: false,
            client_pause: None,
            count_holders: None,
            retry_delay: Duration::from_millis(2),
            node_timeout: None,
            min_duration: Duration::ZERO,
            max_duration: Duration::from_secs(600),
        }
    }

    /// Sets [`Config::acquisitions`].
    pub fn acquisitions(mut self, n: u64) -> Self {
        self.acquisitions = n;
        self
    }

    /// Sets [`Config::contenders`].
    pub fn contenders(mut self, k: usize) -> Self {
        self.contenders = k;
        self
    }

    /// Sets [`Config::ttl`].
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Sets [`Config::hold`].
    pub fn hold(mut self, hold: Duration) -> Self {
        self.hold = hold;
        self
    }

    /// Sets [`Config::fenced`].
    pub fn fenced(mut self, fenced: bool) -> Self {
        self.fenced = fenced;
        self
    }

    /// Sets [`Config::client_pause`].
    pub fn client_pause(mut self, every: u64, pause: Duration) -> Self {
        self.client_pause = Some((every.max(1), pause));
        self
    }

    /// Sets [`Config::count_holders`]: count holders on every node but
    /// those in `skip`.
    pub fn count_holders(mut self, skip: Vec<usize>) -> Self {
        self.count_holders = Some(skip);
        self
    }

    /// Sets [`Config::node_timeout`].
    pub fn node_timeout(mut self, timeout: Duration) -> Self {
        self.node_timeout = Some(timeout);
        self
    }

    /// Sets [`Config::min_duration`].
    pub fn min_duration(mut self, d: Duration) -> Self {
        self.min_duration = d;
        self
    }

    /// Sets [`Config::max_duration`].
    pub fn max_duration(mut self, d: Duration) -> Self {
        self.max_duration = d;
        self
    }

    /// The lock key on the nodes.
    pub fn key(&self) -> String {
        format!("{}{}", self.key_prefix, self.resource)
    }
}

/// Why a run could not be carried out.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckError {
    /// The configuration or the node list was rejected by the core.
    #[error("invalid configuration: {0}")]
    Invalid(#[from] InvalidArgument),
    /// A client pause needs a multi-threaded tokio runtime.
    #[error("client pauses need a multi-threaded tokio runtime")]
    NeedsMultiThread,
    /// Servers, proxies or nodes for a scenario could not be set up.
    #[error("setup failed: {0}")]
    Setup(String),
    /// No scenario has this name.
    #[error("unknown scenario {0:?}; known: {SCENARIOS:?}")]
    UnknownScenario(String),
    /// The checker's own tasks failed.
    #[error("checker task failed: {0}")]
    Task(String),
}

/// The outcome of a run.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// The run's name.
    pub name: String,
    /// Contenders.
    pub contenders: usize,
    /// Holds: lock calls that returned a lock.
    pub acquisitions: u64,
    /// Wall time of the contention phase.
    pub elapsed: Duration,
    /// Holds whose intervals intersect another hold's.
    pub overlaps: u64,
    /// Writes the register accepted that overwrote another holder's write.
    pub lost_updates: u64,
    /// Writes attempted after another holder touched the register since the
    /// writer's read.
    pub stale_writes: u64,
    /// Stale writes the register accepted (zero with fencing).
    pub stale_writes_accepted: u64,
    /// Reads and writes the fenced register rejected.
    pub fence_rejections: u64,
    /// Holds whose fencing token was not above every earlier hold's.
    pub fence_regressions: u64,
    /// Writes the register accepted.
    pub writes: u64,
    /// The register's final value.
    pub register: u64,
    /// Holders that learnt of the loss before writing (skipped the write or
    /// were cancelled).
    pub lost_lock_detections: u64,
    /// Client pauses injected.
    pub client_pauses: u64,
    /// Lock calls that failed, by error kind.
    pub lock_errors: BTreeMap<String, u64>,
    /// Lock keys found on the nodes after the run.
    pub keys_left: u64,
    /// Nodes that could not be read after the run.
    pub nodes_unreadable: u64,
    /// Holds checked for how many nodes held the token (with
    /// [`Config::count_holders`]).
    pub holds_counted: u64,
    /// Of those, holds where exactly a quorum of nodes held the token.
    pub exact_quorum_holds: u64,
    /// Of those, how many holds saw the token on how many of the read nodes.
    pub holders_seen: BTreeMap<usize, u64>,
    /// Whether the run stopped at [`Config::max_duration`].
    pub timed_out: bool,
}

impl Report {
    /// Holds per second.
    pub fn rate(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.acquisitions as f64 / secs
        } else {
            0.0
        }
    }

    /// Safety violations: overlapping holds plus lost updates.
    pub fn violations(&self) -> u64 {
        self.overlaps + self.lost_updates
    }

    /// Panics (with the report) unless the run finished in time with at
    /// least `acquisitions` holds.
    pub fn assert_complete(&self, acquisitions: u64) {
        assert!(!self.timed_out, "{self}");
        assert!(self.acquisitions >= acquisitions, "{self}");
    }

    /// Panics (with the report) on any overlap, lost update or stale write,
    /// or when the register disagrees with the writes made.
    pub fn assert_safe(&self) {
        assert_eq!(self.overlaps, 0, "{self}");
        assert_eq!(self.lost_updates, 0, "{self}");
        assert_eq!(self.stale_writes, 0, "{self}");
        assert_eq!(self.register, self.writes, "{self}");
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} acquisitions in {:.2?} ({:.0}/s) by {} contenders; violations {} \
             (overlaps {}, lost updates {}); stale writes {} (accepted {}); fence rejections {}; \
             fence regressions {}; writes {} (register {}); lost-lock detections {} (client pauses {}); \
             keys left {}",
            self.name,
            self.acquisitions,
            self.elapsed,
            self.rate(),
            self.contenders,
            self.violations(),
            self.overlaps,
            self.lost_updates,
            self.stale_writes,
            self.stale_writes_accepted,
            self.fence_rejections,
            self.fence_regressions,
            self.writes,
            self.register,
            self.lost_lock_detections,
            self.client_pauses,
            self.keys_left,
        )?;
        if self.nodes_unreadable > 0 {
            write!(f, " ({} nodes unreadable)", self.nodes_unreadable)?;
        }
        if self.holds_counted > 0 {
            write!(
                f,
                "; exactly a quorum in {} of {} holds (holds by nodes seen holding: {:?})",
                self.exact_quorum_holds, self.holds_counted, self.holders_seen
            )?;
        }
        if !self.lock_errors.is_empty() {
            write!(f, "; lock errors {:?}", self.lock_errors)?;
        }
        if self.timed_out {
            write!(f, "; TIMED OUT")?;
        }
        Ok(())
    }
}

/// A register in memory that the holders update without atomicity, and that
/// can check fencing tokens like a storage layer would.
#[derive(Debug, Default)]
pub struct Register {
    state: Mutex<RegisterState>,
}

#[derive(Debug, Default)]
struct RegisterState {
    value: u64,
    /// The hold that last touched the register successfully.
    last_hold: Option<u64>,
    /// The highest fencing token accepted, and the hold it came with.
    highest: Option<(u64, u64)>,
    writes: u64,
    lost_updates: u64,
    stale_writes: u64,
    stale_accepted: u64,
    rejections: u64,
}

/// A read or write the fenced register refused: its token is below the
/// highest one seen (or equal to it from another holder).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejected;

impl RegisterState {
    fn admit(&mut self, hold: u64, fence: Option<u64>) -> Result<(), Rejected> {
        let Some(token) = fence else {
            return Ok(());
        };
        match self.highest {
            Some((t, h)) if token < t || (token == t && h != hold) => {
                self.rejections += 1;
                Err(Rejected)
            }
            _ => {
                self.highest = Some((token, hold));
                Ok(())
            }
        }
    }
}

impl Register {
    fn lock(&self) -> std::sync::MutexGuard<'_, RegisterState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reads the value as hold `hold` (with its fencing token, if any).
    pub fn read(&self, hold: u64, fence: Option<u64>) -> Result<u64, Rejected> {
        let mut s = self.lock();
        s.admit(hold, fence)?;
        s.last_hold = Some(hold);
        Ok(s.value)
    }

    /// Writes `value` as hold `hold`, which read `read` before.
    pub fn write(
        &self,
        hold: u64,
        fence: Option<u64>,
        read: u64,
        value: u64,
    ) -> Result<(), Rejected> {
        let mut s = self.lock();
        let stale = s.last_hold != Some(hold);
        if stale {
            s.stale_writes += 1;
        }
        s.admit(hold, fence)?;
        if stale {
            s.stale_accepted += 1;
        }
        if s.value != read {
            s.lost_updates += 1;
        }
        s.value = value;
        s.writes += 1;
        s.last_hold = Some(hold);
        Ok(())
    }

    /// The current value.
    pub fn value(&self) -> u64 {
        self.lock().value
    }
}

/// Tells a fault when the run is over. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Stop(watch::Receiver<bool>);

impl Stop {
    /// Whether the run is over.
    pub fn is_stopped(&self) -> bool {
        *self.0.borrow()
    }

    /// Sleeps for `d` or until the run is over; `true` while the run goes on.
    pub async fn sleep(&mut self, d: Duration) -> bool {
        if self.is_stopped() {
            return false;
        }
        let stopped = tokio::select! {
            () = tokio::time::sleep(d) => false,
            _ = self.0.wait_for(|s| *s) => true,
        };
        !stopped && !self.is_stopped()
    }

    /// Completes when the run is over.
    pub async fn stopped(&mut self) {
        let _ = self.0.wait_for(|s| *s).await;
    }
}

#[derive(Debug, Clone, Copy)]
struct Hold {
    obtained: Instant,
    end: Instant,
    fence: Option<u64>,
}

struct Shared {
    began: Instant,
    holds: Mutex<Vec<Hold>>,
    started: AtomicU64,
    detections: AtomicU64,
    pauses: AtomicU64,
    counted: AtomicU64,
    exact_quorum: AtomicU64,
    holders_seen: Mutex<BTreeMap<usize, u64>>,
    errors: Mutex<BTreeMap<String, u64>>,
    done: AtomicBool,
}

fn error_kind(e: &LockError) -> &'static str {
    match e {
        LockError::Conflict(_) => "conflict",
        LockError::NoQuorum(_) => "no quorum",
        LockError::ValidityExpired(_) => "validity expired",
        LockError::Lost(_) => "lost",
        LockError::DeadlineExceeded(_) => "deadline",
        LockError::InvalidArgument(_) => "invalid argument",
        _ => "other",
    }
}

/// Runs the checker: contenders on `nodes` while `fault` runs beside them.
/// The fault gets a [`Stop`] and must return soon after it fires, leaving
/// the nodes healthy (resumed, restarted, healed). Keys are counted after it
/// returned.
pub async fn run<F, Fut>(
    nodes: Vec<Arc<dyn Node>>,
    config: Config,
    fault: F,
) -> Result<Report, CheckError>
where
    F: FnOnce(Stop) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    run_clients(vec![nodes], config, fault).await
}

/// Like [`run`], with one client (its own set of node connections) per
/// contender: contender `i` uses `clients[i % clients.len()]`. Separate
/// connections let concurrent attempts reach the nodes in different orders
/// and split the votes, as separate processes do; contenders sharing one
/// multiplexed connection per node always reach every node in the same
/// order.
pub async fn run_clients<F, Fut>(
    clients: Vec<Vec<Arc<dyn Node>>>,
    config: Config,
    fault: F,
) -> Result<Report, CheckError>
where
    F: FnOnce(Stop) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    if config.client_pause.is_some()
        && tokio::runtime::Handle::current().runtime_flavor()
            != tokio::runtime::RuntimeFlavor::MultiThread
    {
        return Err(CheckError::NeedsMultiThread);
    }
    let options = options(&config);
    let mut redlocks = Vec::with_capacity(clients.len());
    for nodes in &clients {
        redlocks.push(Redlock::from_nodes(nodes.clone(), options.clone())?);
    }
    let Some(first) = redlocks.first().cloned() else {
        return Err(CheckError::Invalid(InvalidArgument::NoNodes));
    };
    let register = Arc::new(Register::default());
    let config = Arc::new(config);

    let (stop_tx, stop_rx) = watch::channel(false);
    let fault_task = tokio::spawn(fault(Stop(stop_rx)));

    let began = Instant::now();
    let shared = Arc::new(Shared {
        began,
        holds: Mutex::default(),
        started: AtomicU64::default(),
        detections: AtomicU64::default(),
        pauses: AtomicU64::default(),
        counted: AtomicU64::default(),
        exact_quorum: AtomicU64::default(),
        holders_seen: Mutex::default(),
        errors: Mutex::default(),
        done: AtomicBool::default(),
    });
    let mut tasks = Vec::with_capacity(config.contenders);
    for i in 0..config.contenders.max(1) {
        let task = contender(
            redlocks
                .get(i % redlocks.len())
                .cloned()
                .unwrap_or_else(|| first.clone()),
            config.clone(),
            register.clone(),
            shared.clone(),
            began,
        );
        tasks.push(tokio::spawn(crate::timeline::CONTENDER.scope(i, task)));
    }
    let mut task_error = None;
    for t in tasks {
        if let Err(e) = t.await {
            task_error = Some(e.to_string());
        }
    }
    let elapsed = began.elapsed();
    let timed_out = elapsed >= config.max_duration;
    let _ = stop_tx.send(true);
    if let Err(e) = fault_task.await {
        task_error = Some(format!("fault: {e}"));
    }
    if let Some(e) = task_error {
        return Err(CheckError::Task(e));
    }

    let (keys_left, nodes_unreadable) = keys_left(first.nodes(), &config.key()).await;
    let holds = std::mem::take(&mut *shared.holds.lock().unwrap_or_else(PoisonError::into_inner));
    let (overlaps, fence_regressions) = analyse(holds);
    let lock_errors = shared
        .errors
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let reg = register.lock();
    let report = Report {
        name: config.name.clone(),
        contenders: config.contenders,
        acquisitions: shared.started.load(Ordering::Relaxed),
        elapsed,
        overlaps,
        lost_updates: reg.lost_updates,
        stale_writes: reg.stale_writes,
        stale_writes_accepted: reg.stale_accepted,
        fence_rejections: reg.rejections,
        fence_regressions,
        writes: reg.writes,
        register: reg.value,
        lost_lock_detections: shared.detections.load(Ordering::Relaxed),
        client_pauses: shared.pauses.load(Ordering::Relaxed),
        lock_errors,
        keys_left,
        nodes_unreadable,
        holds_counted: shared.counted.load(Ordering::Relaxed),
        exact_quorum_holds: shared.exact_quorum.load(Ordering::Relaxed),
        holders_seen: shared
            .holders_seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone(),
        timed_out,
    };
    Ok(report)
}

/// The client options every contender uses: the key prefix, retries
/// forever (every `retry_delay` plus as much jitter) within a deadline of
/// 5 s or four TTLs, and the node timeout if one is set.
fn options(config: &Config) -> Options {
    let mut options = Options::new()
        .key_prefix(config.key_prefix.clone())
        .retry_policy(RetryPolicy {
            retries: Retries::Forever,
            delay: config.retry_delay,
            jitter: config.retry_delay,
            deadline: Some(Duration::from_secs(5).max(config.ttl * 4)),
        });
    if let Some(t) = config.node_timeout {
        options = options.node_timeout(t);
    }
    options
}

/// Counts overlapping holds (each hold that starts before an earlier one
/// ended counts once) and fencing tokens not above all earlier ones.
fn analyse(mut holds: Vec<Hold>) -> (u64, u64) {
    holds.sort_by_key(|h| h.obtained);
    let mut overlaps = 0;
    let mut regressions = 0;
    let mut max_end: Option<Instant> = None;
    let mut max_fence: Option<u64> = None;
    for h in &holds {
        if max_end.is_some_and(|e| h.obtained < e) {
            overlaps += 1;
        }
        max_end = Some(max_end.map_or(h.end, |e| e.max(h.end)));
        if let Some(f) = h.fence {
            if max_fence.is_some_and(|m| f <= m) {
                regressions += 1;
            }
            max_fence = Some(max_fence.map_or(f, |m| m.max(f)));
        }
    }
    (overlaps, regressions)
}

/// Lock keys present on the nodes, and nodes that could not be read.
async fn keys_left(nodes: &[Arc<dyn Node>], key: &str) -> (u64, u64) {
    let keys = vec![key.to_owned()];
    let mut left = 0;
    let mut unreadable = 0;
    for node in nodes {
        let mut read = None;
        // A node that just came back may need its client to reconnect.
        for _ in 0..50 {
            match tokio::time::timeout(Duration::from_secs(1), node.inspect(&keys)).await {
                Ok(Ok(states)) => {
                    read = Some(states);
                    break;
                }
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        match read {
            Some(states) => left += states.iter().filter(|s| s.holder.is_some()).count() as u64,
            None => unreadable += 1,
        }
    }
    (left, unreadable)
}

async fn contender(
    redlock: Redlock,
    config: Arc<Config>,
    register: Arc<Register>,
    shared: Arc<Shared>,
    began: Instant,
) {
    let scope = ScopeOptions::new().fenced(config.fenced);
    while !shared.done.load(Ordering::Relaxed) {
        if began.elapsed() >= config.max_duration {
            shared.done.store(true, Ordering::Relaxed);
            break;
        }
        let work = |lease: Lease| hold_once(lease, &redlock, &config, &register, &shared);
        match redlock
            .using_with(config.resource.as_str(), config.ttl, &scope, work)
            .await
        {
            Ok(()) => {}
            Err(LockError::Lost(_)) => {
                // The work was cancelled by the loss before it wrote.
                shared.detections.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                *shared
                    .errors
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .entry(error_kind(&e).to_owned())
                    .or_default() += 1;
            }
        }
    }
}

/// One hold: read, wait, check the lease, write. Records the interval.
async fn hold_once(
    lease: Lease,
    redlock: &Redlock,
    config: &Config,
    register: &Register,
    shared: &Shared,
) {
    let obtained = Instant::now();
    let n = shared.started.fetch_add(1, Ordering::Relaxed) + 1;
    if n >= config.acquisitions && obtained.duration_since(shared.began) >= config.min_duration {
        shared.done.store(true, Ordering::Relaxed);
    }
    // Recorded even if this future is dropped (cancelled by the loss).
    let mut record = Recorder {
        shared,
        hold: Hold {
            obtained,
            end: obtained,
            fence: lease.fence(),
        },
        lease: &lease,
    };
    if let Some(skip) = &config.count_holders {
        count_holders(redlock, &config.key(), lease.token(), skip, shared).await;
    }
    let fence = lease.fence();
    let Ok(read) = register.read(n, fence) else {
        return;
    };
    if !config.hold.is_zero() {
        tokio::time::sleep(config.hold).await;
    }
    if let Some((every, pause)) = config.client_pause {
        if n.is_multiple_of(every) {
            shared.pauses.fetch_add(1, Ordering::Relaxed);
            // Stops this whole task, the lock's keep-alive included, like a
            // process stopped by a GC pause or SIGSTOP.
            tokio::task::block_in_place(|| std::thread::sleep(pause));
        }
    }
    if !lease.is_held() {
        shared.detections.fetch_add(1, Ordering::Relaxed);
        record.finish();
        return;
    }
    let _ = register.write(n, fence, read, read + 1);
    record.finish();
}

struct Recorder<'a> {
    shared: &'a Shared,
    hold: Hold,
    lease: &'a Lease,
}

impl Recorder<'_> {
    fn finish(&mut self) {
        let now = Instant::now();
        self.hold.end = now.min(self.lease.valid_until());
    }
}

impl Drop for Recorder<'_> {
    fn drop(&mut self) {
        if self.hold.end == self.hold.obtained {
            self.finish();
        }
        crate::timeline::hold(self.hold.obtained, self.hold.end);
        self.shared
            .holds
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(self.hold);
    }
}

async fn count_holders(redlock: &Redlock, key: &str, token: &str, skip: &[usize], shared: &Shared) {
    let keys = vec![key.to_owned()];
    let read = redlock
        .nodes()
        .iter()
        .enumerate()
        .filter(|(i, _)| !skip.contains(i))
        .map(|(_, n)| n);
    let reads = futures_util::future::join_all(read.map(|n| {
        let keys = &keys;
        async move { tokio::time::timeout(Duration::from_millis(200), n.inspect(keys)).await }
    }))
    .await;
    let holding = reads
        .iter()
        .filter(|r| {
            matches!(r, Ok(Ok(states)) if states.first().and_then(|s| s.holder.as_deref()) == Some(token))
        })
        .count();
    shared.counted.fetch_add(1, Ordering::Relaxed);
    *shared
        .holders_seen
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .entry(holding)
        .or_default() += 1;
    if holding + skip.len() == redlock.quorum() {
        shared.exact_quorum.fetch_add(1, Ordering::Relaxed);
    }
}

// ---------------------------------------------------------------------------
// Scenarios: five fresh servers, one fault, one run.
// ---------------------------------------------------------------------------

/// The named runs of [`scenario`]. The first five must show no violation;
/// the others are the cases Redlock does not protect against, run with
/// fencing (except `expire-majority-unfenced`, which shows the lost updates
/// fencing prevents).
pub const SCENARIOS: &[&str] = &[
    "no-fault",
    "pause-minority",
    "kill-minority",
    "proxy-chaos",
    "client-pause",
    "restart-majority",
    "expire-one",
    "expire-majority",
    "expire-majority-unfenced",
    "proxy-latency",
];

/// Whether a scenario is one Redlock protects against (zero violations
/// expected).
pub fn is_safe_scenario(name: &str) -> bool {
    SCENARIOS.iter().take(5).any(|s| *s == name) || name == "proxy-latency"
}

/// Runs one of [`SCENARIOS`] with at least `acquisitions` holds on five
/// fresh `redis-server` processes (stopped afterwards). `make` turns a URL
/// into a node of the adapter under test; every contender gets its own
/// nodes (see [`run_clients`]).
///
/// | scenario | fault |
/// |---|---|
/// | `no-fault` | none |
/// | `pause-minority` | 2 of 5 paused (SIGSTOP) 300 ms, resumed 300 ms, in a loop |
/// | `kill-minority` | 2 of 5 killed, restarted empty after 1.2 s (TTL 1 s), up 500 ms, in a loop |
/// | `proxy-chaos` | every node behind a [`FaultProxy`]: 1 ms + 0–2 ms jitter each way, one proxy's connections reset every 200 ms |
/// | `client-pause` | every 25th holder's task stopped for 500 ms (TTL 200 ms) between read and write |
/// | `restart-majority` | 3 of 5 killed and restarted empty together, 50 ms apart; holders hold 100 ms (fenced) |
/// | `expire-one` | the lock key deleted on node 1 whenever present, every 1 ms (fenced; counts exact-quorum holds) |
/// | `expire-majority` | the same on 3 of 5 nodes (fenced) |
/// | `expire-majority-unfenced` | the same without fencing |
/// | `proxy-latency` | `proxy-chaos` without the resets (separates the cost of latency from that of resets) |
pub async fn scenario<M, Fut>(name: &str, acquisitions: u64, make: M) -> Result<Report, CheckError>
where
    M: Fn(String) -> Fut,
    Fut: Future<Output = Result<Arc<dyn Node>, String>>,
{
    scenario_with(name, Config::new(name).acquisitions(acquisitions), make).await
}

/// [`scenario`] from a base configuration (contenders, acquisitions, TTL,
/// ...); the scenario sets its own fault-specific fields on top.
pub async fn scenario_with<M, Fut>(name: &str, base: Config, make: M) -> Result<Report, CheckError>
where
    M: Fn(String) -> Fut,
    Fut: Future<Output = Result<Arc<dyn Node>, String>>,
{
    if !SCENARIOS.contains(&name) {
        return Err(CheckError::UnknownScenario(name.to_owned()));
    }
    let servers = blocking(|| {
        (0..5)
            .map(|_| RedisServer::start().map(Arc::new))
            .collect::<Result<Vec<_>, _>>()
    })
    .await
    .ok_or_else(|| CheckError::Setup("server start task failed".into()))?
    .map_err(|e| CheckError::Setup(e.to_string()))?;
    let mut proxies = Vec::new();
    if name == "proxy-chaos" || name == "proxy-latency" {
        for s in &servers {
            let p = FaultProxy::start(s.port())
                .await
                .map_err(|e| CheckError::Setup(format!("proxy: {e}")))?;
            proxies.push(Arc::new(p));
        }
    }
    let mut clients = Vec::with_capacity(base.contenders);
    for _ in 0..base.contenders.max(1) {
        let mut nodes = Vec::with_capacity(5);
        for (i, s) in servers.iter().enumerate() {
            let url = proxies.get(i).map_or_else(|| s.url(), |p| p.url());
            nodes.push(make(url).await.map_err(CheckError::Setup)?);
        }
        clients.push(nodes);
    }
    // Five servers, at least one client: the indexing below cannot fail.
    let nodes = clients.first().cloned().unwrap_or_default();
    if nodes.len() != servers.len() {
        return Err(CheckError::Setup("no client nodes".into()));
    }
    let unsafe_base = base.clone().fenced(true).hold(Duration::from_millis(20));
    let report = match name {
        "no-fault" => run_clients(clients.clone(), base, |_| async {}).await,
        "pause-minority" => {
            let minority = servers[3..].to_vec();
            let config = base.min_duration(Duration::from_secs(1));
            run_clients(clients.clone(), config, move |stop| {
                pause_loop(
                    minority,
                    Duration::from_millis(300),
                    Duration::from_millis(300),
                    stop,
                )
            })
            .await
        }
        "kill-minority" => {
            let minority = servers[3..].to_vec();
            let config = base.min_duration(Duration::from_secs(2));
            run_clients(clients.clone(), config, move |stop| {
                kill_restart_loop(
                    minority,
                    Duration::from_millis(1200),
                    Duration::from_millis(500),
                    stop,
                )
            })
            .await
        }
        "proxy-chaos" | "proxy-latency" => {
            let all = proxies.clone();
            let config = base.min_duration(Duration::from_millis(500));
            // Resets every 200 ms, or (latency only) never within a run.
            let reset_every = if name == "proxy-chaos" {
                Duration::from_millis(200)
            } else {
                Duration::from_secs(1 << 30)
            };
            run_clients(clients.clone(), config, move |stop| {
                proxy_chaos(
                    all,
                    Duration::from_millis(1),
                    Duration::from_millis(2),
                    reset_every,
                    stop,
                )
            })
            .await
        }
        "client-pause" => {
            let config = base
                .ttl(Duration::from_millis(200))
                .client_pause(25, Duration::from_millis(500));
            run_clients(clients.clone(), config, |_| async {}).await
        }
        "restart-majority" => {
            let majority = servers[..3].to_vec();
            let config = unsafe_base.hold(Duration::from_millis(100));
            run_clients(clients.clone(), config, move |stop| {
                restart_loop(majority, Duration::from_millis(50), stop)
            })
            .await
        }
        "expire-one" | "expire-majority" | "expire-majority-unfenced" => {
            let targets: Vec<Arc<dyn Node>> = if name == "expire-one" {
                vec![nodes[1].clone()]
            } else {
                nodes[..3].to_vec()
            };
            let mut config = unsafe_base;
            if name == "expire-one" {
                config = config.count_holders(vec![1]);
            }
            if name == "expire-majority-unfenced" {
                config = config.fenced(false);
            }
            let key = config.key();
            run_clients(clients.clone(), config, move |stop| {
                expire_early(targets, key, Duration::from_millis(1), stop)
            })
            .await
        }
        other => Err(CheckError::UnknownScenario(other.to_owned())),
    };
    drop(proxies);
    // Servers stop when the last handle goes; the faults gave theirs back.
    drop(servers);
    report
}

// ---------------------------------------------------------------------------
// Faults. Each runs until its `Stop` fires and leaves the nodes healthy.
// ---------------------------------------------------------------------------

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    tokio::task::spawn_blocking(f).await.ok()
}

/// Pauses `servers` (SIGSTOP) for `paused`, resumes them for `running`, in a
/// loop; resumed at the end.
pub async fn pause_loop(
    servers: Vec<Arc<RedisServer>>,
    paused: Duration,
    running: Duration,
    mut stop: Stop,
) {
    loop {
        if !stop.sleep(running).await {
            break;
        }
        let paused_at = Instant::now();
        for s in &servers {
            if let Err(e) = s.pause() {
                tracing::warn!("pause failed: {e}");
            }
        }
        let go_on = stop.sleep(paused).await;
        for s in &servers {
            if let Err(e) = s.resume() {
                tracing::warn!("resume failed: {e}");
            }
        }
        crate::timeline::fault(format!("SIGSTOP {} nodes", servers.len()), paused_at);
        if !go_on {
            break;
        }
    }
}

/// Kills `servers`, keeps them down for `down` (longer than the TTL: the
/// distlock page's delayed restart), restarts them empty, leaves them up for
/// `up`, in a loop; running at the end.
pub async fn kill_restart_loop(
    servers: Vec<Arc<RedisServer>>,
    down: Duration,
    up: Duration,
    mut stop: Stop,
) {
    loop {
        if !stop.sleep(up).await {
            break;
        }
        let killed_at = Instant::now();
        for s in &servers {
            s.kill();
        }
        // The restart happens even when the run ends meanwhile.
        let _ = stop.sleep(down).await;
        for s in &servers {
            let s = s.clone();
            match blocking(move || s.restart()).await {
                Some(Err(e)) => tracing::warn!("restart failed: {e}"),
                None => tracing::warn!("restart task failed"),
                Some(Ok(())) => {}
            }
        }
        crate::timeline::fault(format!("{} nodes down", servers.len()), killed_at);
        if stop.is_stopped() {
            break;
        }
    }
}

/// Latency with jitter on every proxy, and one random proxy's connections
/// reset every `reset_every`; healed at the end.
pub async fn proxy_chaos(
    proxies: Vec<Arc<FaultProxy>>,
    fixed: Duration,
    jitter: Duration,
    reset_every: Duration,
    mut stop: Stop,
) {
    for p in &proxies {
        p.set_both(Mode::delay(fixed, jitter));
    }
    let mut i = 0usize;
    while stop.sleep(reset_every).await {
        if let Some(p) = proxies.get(i % proxies.len().max(1)) {
            p.reset();
            crate::timeline::fault("connections reset", Instant::now());
        }
        i = i.wrapping_add(1);
    }
    for p in &proxies {
        p.heal();
    }
}

/// Deletes the lock key on `nodes` whenever it exists, checking every
/// `every`: an early expiry on those nodes (what a clock jump forward or a
/// lost key does). Uses the nodes' own release (a `DEL` of whatever token is
/// there).
pub async fn expire_early(nodes: Vec<Arc<dyn Node>>, key: String, every: Duration, mut stop: Stop) {
    let keys = vec![key];
    let began = Instant::now();
    while stop.sleep(every).await {
        for node in &nodes {
            if let Ok(Ok(states)) =
                tokio::time::timeout(Duration::from_millis(200), node.inspect(&keys)).await
            {
                for s in states {
                    if let Some(holder) = s.holder {
                        let _ = tokio::time::timeout(
                            Duration::from_millis(200),
                            node.release(std::slice::from_ref(&s.key), &holder),
                        )
                        .await;
                    }
                }
            }
        }
    }
    crate::timeline::fault(
        format!("keys deleted early on {} nodes", nodes.len()),
        began,
    );
}

/// Kills and at once restarts `servers` (no persistence: they come back
/// empty, lock keys and fencing counters gone), every `every`; running at
/// the end.
pub async fn restart_loop(servers: Vec<Arc<RedisServer>>, every: Duration, mut stop: Stop) {
    while stop.sleep(every).await {
        let killed_at = Instant::now();
        for s in &servers {
            s.kill();
        }
        let restarts = servers
            .iter()
            .cloned()
            .map(|s| blocking(move || s.restart()));
        for r in futures_util::future::join_all(restarts).await {
            match r {
                Some(Err(e)) => tracing::warn!("restart failed: {e}"),
                None => tracing::warn!("restart task failed"),
                Some(Ok(())) => {}
            }
        }
        crate::timeline::fault(
            format!("{} nodes restarted empty", servers.len()),
            killed_at,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(base: Instant, ms: u64) -> Instant {
        base + Duration::from_millis(ms)
    }

    #[test]
    fn overlaps_and_fence_regressions_are_counted() {
        let b = Instant::now();
        let hold = |s, e, f| Hold {
            obtained: at(b, s),
            end: at(b, e),
            fence: f,
        };
        let (o, r) = analyse(vec![
            hold(0, 10, Some(1)),
            hold(10, 20, Some(2)),
            hold(15, 30, Some(2)),
            hold(40, 50, Some(5)),
            hold(41, 42, Some(3)),
        ]);
        assert_eq!(o, 2);
        assert_eq!(r, 2);
    }

    #[test]
    fn plain_register_accepts_stale_writes_and_loses_updates() {
        let reg = Register::default();
        let a = reg.read(1, None).expect("read");
        let b = reg.read(2, None).expect("read");
        reg.write(1, None, a, a + 1).expect("accepted");
        reg.write(2, None, b, b + 1).expect("accepted");
        let s = reg.lock();
        assert_eq!(s.value, 1);
        assert_eq!(s.lost_updates, 1);
        assert_eq!(s.stale_writes, 2);
        assert_eq!(s.stale_accepted, 2);
    }

    #[test]
    fn fenced_register_rejects_every_stale_write() {
        let reg = Register::default();
        let a = reg.read(1, Some(7)).expect("read");
        let b = reg.read(2, Some(8)).expect("read");
        assert_eq!(reg.write(1, Some(7), a, a + 1), Err(Rejected));
        reg.write(2, Some(8), b, b + 1).expect("accepted");
        // Same token from another holder, and an older token: rejected.
        assert_eq!(reg.read(3, Some(8)), Err(Rejected));
        assert_eq!(reg.read(4, Some(2)), Err(Rejected));
        let s = reg.lock();
        assert_eq!(s.value, 1);
        assert_eq!(s.lost_updates, 0);
        assert_eq!(s.stale_writes, 1);
        assert_eq!(s.stale_accepted, 0);
        assert_eq!(s.rejections, 3);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sim_nodes_no_fault_have_no_violations() {
        let nodes: Vec<Arc<dyn Node>> = (0..5)
            .map(|i| Arc::new(crate::sim::SimNode::new(format!("sim-{i}"))) as Arc<dyn Node>)
            .collect();
        let report = run(
            nodes,
            Config::new("sim")
                .acquisitions(200)
                .max_duration(Duration::from_secs(5)),
            |_stop| async {},
        )
        .await
        .expect("run");
        println!("{report}");
        assert!(report.acquisitions >= 200, "{report}");
        assert_eq!(report.violations(), 0, "{report}");
        assert_eq!(report.stale_writes_accepted, 0, "{report}");
        assert_eq!(report.keys_left, 0, "{report}");
    }
}
