//! Running contenders against a fault: [`run`], [`run_clients`], [`Stop`].

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use redlock_core::{
    InvalidArgument, Lease, LockError, LockOptions, Node, Options, Redlock, Retries, RetryPolicy,
};
use tokio::sync::watch;

use super::*;

/// Tells a fault when the run is over. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Stop(pub(crate) watch::Receiver<bool>);

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
pub(crate) struct Hold {
    pub(crate) obtained: Instant,
    pub(crate) end: Instant,
    pub(crate) fence: Option<u64>,
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

pub(crate) fn error_kind(e: &LockError) -> &'static str {
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
    run_with(clients, config, fault, false).await
}

/// [`run_clients`]; with `fault_ends_run`, a fault that returns on its own
/// (after a fixed number of failovers, say) also ends the run: contenders
/// finish their holds and stop.
pub(crate) async fn run_with<F, Fut>(
    clients: Vec<Vec<Arc<dyn Node>>>,
    config: Config,
    fault: F,
    fault_ends_run: bool,
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
    let (stop_tx, stop_rx) = watch::channel(false);
    let fault = fault(Stop(stop_rx));
    let ends = shared.clone();
    let fault_task = tokio::spawn(async move {
        fault.await;
        if fault_ends_run {
            ends.done.store(true, Ordering::Relaxed);
        }
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
pub(crate) fn options(config: &Config) -> Options {
    let mut options = Options::new()
        .key_prefix(config.key_prefix.clone())
        .retry_policy(
            RetryPolicy::default()
                .retries(Retries::Forever)
                .delay(config.retry_delay)
                .jitter(config.retry_delay)
                .deadline(Some(Duration::from_secs(5).max(config.ttl * 4))),
        );
    if let Some(t) = config.node_timeout {
        options = options.node_timeout(t);
    }
    options
}

/// Counts overlapping holds (each hold that starts before an earlier one
/// ended counts once) and fencing tokens not above all earlier ones.
pub(crate) fn analyse(mut holds: Vec<Hold>) -> (u64, u64) {
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
pub(crate) async fn keys_left(nodes: &[Arc<dyn Node>], key: &str) -> (u64, u64) {
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
    let scope = LockOptions::new(config.resource.as_str(), config.ttl).fenced(config.fenced);
    while !shared.done.load(Ordering::Relaxed) {
        if began.elapsed() >= config.max_duration {
            shared.done.store(true, Ordering::Relaxed);
            break;
        }
        let work = |lease: Lease| hold_once(lease, &redlock, &config, &register, &shared);
        match redlock.scoped(&scope, work).await {
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
}
