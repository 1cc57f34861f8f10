//! An in-memory Redlock node with fault switches, for deterministic tests.
//!
//! [`SimNode`] implements [`redlock_core::Node`] on a map held in memory. Its
//! time comes from a [`Runtime`]: with [`TokioRuntime`] under
//! `#[tokio::test(start_paused = true)]` the whole test runs on tokio's paused
//! clock, so keys expire and delays pass at exact, repeatable instants and no
//! test sleeps for real.
//!
//! # The ordering model
//!
//! A `SimNode` keeps the ordering contract of [`Node`]:
//!
//! - a request enters the node's FIFO queue when its future is **first
//!   polled** (a future dropped before that was never sent);
//! - it is due `delay` after that (the delay in force when it was sent, see
//!   [`SimNode::set_delay`]), and never before the request queued ahead of it,
//!   so requests are processed strictly in the order they were sent;
//! - it takes effect at its due instant **even if the caller dropped the
//!   future** in the meantime: a dropped acquire still sets its keys, and the
//!   release sent after it still deletes them.
//!
//! Processing is evaluated lazily: whenever the node is touched (a call, a
//! fault switch, an introspection method), every request due by now is
//! applied in order, each at its own due instant. Observably this is the same
//! as a server working through its queue in the background.
//!
//! # Faults
//!
//! Every switch can be flipped while requests are in flight, through any
//! clone of the node (clones share one state, so a test keeps a clone as its
//! handle and gives another to the `Redlock`):
//!
//! - [`set_down`](SimNode::set_down): new calls fail at once with
//!   [`NodeError::Connection`];
//! - [`set_delay`](SimNode::set_delay): a slow node;
//! - [`set_hung`](SimNode::set_hung): requests queue but are not processed
//!   until the node is un-hung (a paused process);
//! - [`fail_after`](SimNode::fail_after): the next `n` calls work, later ones
//!   fail with [`NodeError::Connection`];
//! - [`expire_now`](SimNode::expire_now), [`shorten_ttl`](SimNode::shorten_ttl),
//!   [`expire_all`](SimNode::expire_all): keys expire early (what a clock jump
//!   on the server does);
//! - [`put_key`](SimNode::put_key): another owner writes a key;
//! - [`set_announce`](SimNode::set_announce): releases are announced to
//!   [`Node::watch_release`] watchers (off by default, like a node without
//!   pub/sub), or watches are taken but every announcement is lost.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use redlock_core::{Options, Redlock};
//! use redlock_testkit::sim::SimNode;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let nodes = SimNode::many(5);
//! let redlock = Redlock::new(nodes.clone(), Options::new()).expect("valid options");
//! nodes[4].set_hung(true);
//!
//! let lock = redlock.lock("job", Duration::from_secs(10)).await.expect("quorum of 4");
//! assert_eq!(nodes[0].keys().len(), 1);
//! lock.unlock().await.expect("released");
//!
//! nodes[4].set_hung(false);
//! for node in &nodes {
//!     node.drained().await;
//!     assert!(node.keys().is_empty());
//! }
//! # }
//! ```

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use redlock_core::node::ttl_millis;
use redlock_core::{
    async_trait, Acquire, BoxFuture, Extend, KeyState, Node, NodeError, NodeOutcome, Operation,
    Runtime, TokioRuntime,
};
use tokio::sync::Notify;

/// Whether a [`SimNode`] announces releases to [`Node::watch_release`]
/// watchers (the release script's `PUBLISH`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Announce {
    /// The node cannot announce: `watch_release` returns `None` (default).
    #[default]
    Off,
    /// Every release that deleted a key wakes the watchers of that key.
    On,
    /// Watches are taken, but every announcement is lost: they never fire.
    Lost,
}

/// A key as stored on a [`SimNode`], from [`SimNode::keys`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimKey {
    /// The token stored under the key.
    pub token: String,
    /// Remaining time to live; `None` when the key never expires.
    pub ttl: Option<Duration>,
}

/// One operation a [`SimNode`] processed, from [`SimNode::log`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedOp {
    /// Position in this node's processing order, from 0.
    pub seq: u64,
    /// The instant (runtime clock) at which it took effect.
    pub at: Instant,
    /// Which operation it was.
    pub operation: Operation,
    /// The keys of the request.
    pub keys: Vec<String>,
    /// The token of the request (`None` for inspect).
    pub token: Option<String>,
    /// The TTL of the request (acquire and extend only).
    pub ttl: Option<Duration>,
    /// What the node answered.
    pub outcome: NodeOutcome,
    /// Whether the caller had already dropped the request's future.
    pub abandoned: bool,
}

/// A call a [`SimNode`] refused without queueing it (down, closed, or out of
/// [`fail_after`](SimNode::fail_after) calls), from [`SimNode::refused`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedCall {
    /// When the call was made (runtime clock).
    pub at: Instant,
    /// Which operation it was.
    pub operation: Operation,
    /// The keys of the request.
    pub keys: Vec<String>,
    /// The token of the request (`None` for inspect).
    pub token: Option<String>,
    /// The error the caller got.
    pub error: NodeError,
}

/// An in-memory [`Node`] with a controllable clock and fault switches.
///
/// Cheap to clone; clones share the same keys, queue and switches, so a test
/// keeps one clone as a handle while a `Redlock` owns another. See the
/// [module docs](self) for the ordering model.
#[derive(Clone)]
pub struct SimNode {
    inner: Arc<Inner>,
}

struct Inner {
    id: String,
    runtime: Arc<dyn Runtime>,
    state: Mutex<State>,
    notify: Notify,
}

#[derive(Default)]
struct State {
    store: HashMap<String, Entry>,
    queue: VecDeque<Queued>,
    last_due: Option<Instant>,
    next_ticket: u64,
    results: HashMap<u64, Result<Reply, NodeError>>,
    abandoned: HashSet<u64>,
    log: Vec<LoggedOp>,
    refused: Vec<RefusedCall>,
    next_seq: u64,
    calls: u64,
    down: bool,
    hung: bool,
    delay: Duration,
    fail_after: Option<u64>,
    backlog: Option<usize>,
    closed: bool,
    announce: Announce,
    watchers: Vec<(Vec<String>, tokio::sync::oneshot::Sender<()>)>,
}

struct Entry {
    token: String,
    expires_at: Option<Instant>,
}

impl Entry {
    fn live_at(&self, at: Instant) -> bool {
        self.expires_at.is_none_or(|e| e > at)
    }
}

struct Queued {
    ticket: u64,
    due: Instant,
    request: Request,
}

enum Request {
    Acquire {
        keys: Vec<String>,
        token: String,
        ttl: Duration,
    },
    Release {
        keys: Vec<String>,
        token: String,
    },
    Extend {
        keys: Vec<String>,
        token: String,
        ttl: Duration,
    },
    Inspect {
        keys: Vec<String>,
    },
}

impl Request {
    fn is_release(&self) -> bool {
        matches!(self, Request::Release { .. })
    }

    fn describe(&self) -> (Operation, Vec<String>, Option<String>) {
        match self {
            Request::Acquire { keys, token, .. } => {
                (Operation::Acquire, keys.clone(), Some(token.clone()))
            }
            Request::Release { keys, token } => {
                (Operation::Release, keys.clone(), Some(token.clone()))
            }
            Request::Extend { keys, token, .. } => {
                (Operation::Extend, keys.clone(), Some(token.clone()))
            }
            Request::Inspect { keys } => (Operation::Inspect, keys.clone(), None),
        }
    }
}

enum Reply {
    Acquire(Acquire),
    Release(u64),
    Extend(Extend),
    Inspect(Vec<KeyState>),
}

fn expiry(at: Instant, ttl: Duration) -> Option<Instant> {
    // Redis rounds PX up to whole milliseconds; so does the sim. A TTL too
    // large for the clock never expires.
    at.checked_add(Duration::from_millis(ttl_millis(ttl)))
}

impl State {
    /// Applies, in order, every queued request due by `now`.
    fn process(&mut self, now: Instant) {
        if self.hung {
            return;
        }
        while self.queue.front().is_some_and(|q| q.due <= now) {
            let Some(queued) = self.queue.pop_front() else {
                break;
            };
            let at = queued.due;
            let (reply, entry) = self.apply(queued.request, at);
            let abandoned = self.abandoned.remove(&queued.ticket);
            let seq = self.next_seq;
            self.next_seq += 1;
            self.log.push(LoggedOp {
                seq,
                at,
                abandoned,
                ..entry
            });
            if !abandoned {
                self.results.insert(queued.ticket, Ok(reply));
            }
        }
    }

    /// Wakes (and forgets) every watcher of `key`.
    fn announce_release(&mut self, key: &str) {
        let (fire, keep) = std::mem::take(&mut self.watchers)
            .into_iter()
            .partition(|(keys, _)| keys.iter().any(|k| k == key));
        self.watchers = keep;
        for (_, tx) in fire {
            let _ = tx.send(());
        }
    }

    fn live(&mut self, key: &str, at: Instant) -> Option<&Entry> {
        if self.store.get(key).is_some_and(|e| !e.live_at(at)) {
            self.store.remove(key);
        }
        self.store.get(key)
    }

    fn apply(&mut self, request: Request, at: Instant) -> (Reply, LoggedOp) {
        let mut log = LoggedOp {
            seq: 0,
            at,
            operation: Operation::Inspect,
            keys: Vec::new(),
            token: None,
            ttl: None,
            outcome: NodeOutcome::Inspected,
            abandoned: false,
        };
        let reply = match request {
            Request::Acquire { keys, token, ttl } => {
                let free = keys.iter().all(|k| self.live(k, at).is_none());
                let answer = if free {
                    for k in &keys {
                        self.store.insert(
                            k.clone(),
                            Entry {
                                token: token.clone(),
                                expires_at: expiry(at, ttl),
                            },
                        );
                    }
                    Acquire::Acquired
                } else {
                    Acquire::Held
                };
                log.operation = Operation::Acquire;
                log.outcome = match answer {
                    Acquire::Acquired => NodeOutcome::Acquired,
                    Acquire::Held => NodeOutcome::Held,
                };
                log.keys = keys;
                log.token = Some(token);
                log.ttl = Some(ttl);
                Reply::Acquire(answer)
            }
            Request::Release { keys, token } => {
                let mut deleted = 0;
                for k in &keys {
                    if self.live(k, at).is_some_and(|e| e.token == token) {
                        self.store.remove(k);
                        deleted += 1;
                        if self.announce == Announce::On {
                            self.announce_release(k);
                        }
                    }
                }
                log.operation = Operation::Release;
                log.outcome = NodeOutcome::Released(deleted);
                log.keys = keys;
                log.token = Some(token);
                Reply::Release(deleted)
            }
            Request::Extend { keys, token, ttl } => {
                let ours = keys
                    .iter()
                    .all(|k| self.live(k, at).is_some_and(|e| e.token == token));
                let answer = if ours {
                    for k in &keys {
                        if let Some(e) = self.store.get_mut(k) {
                            e.expires_at = expiry(at, ttl);
                        }
                    }
                    Extend::Extended
                } else {
                    Extend::NotHeld
                };
                log.operation = Operation::Extend;
                log.outcome = match answer {
                    Extend::Extended => NodeOutcome::Extended,
                    Extend::NotHeld => NodeOutcome::NotHeld,
                };
                log.keys = keys;
                log.token = Some(token);
                log.ttl = Some(ttl);
                Reply::Extend(answer)
            }
            Request::Inspect { keys } => {
                let states = keys
                    .iter()
                    .map(|k| {
                        let (holder, ttl) = match self.live(k, at) {
                            Some(e) => (
                                Some(e.token.clone()),
                                e.expires_at.map(|x| x.saturating_duration_since(at)),
                            ),
                            None => (None, None),
                        };
                        KeyState::new(k.clone(), holder, ttl)
                    })
                    .collect();
                log.keys = keys;
                Reply::Inspect(states)
            }
        };
        (reply, log)
    }
}

/// Forgets the result of a request whose caller went away; the request
/// itself stays queued and still takes effect.
struct Ticket<'a> {
    inner: &'a Inner,
    ticket: u64,
    done: bool,
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if !self.done {
            let mut st = self.inner.lock();
            if st.results.remove(&self.ticket).is_none() {
                st.abandoned.insert(self.ticket);
            }
        }
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Locks the state after applying every request due by now.
    fn current(&self) -> MutexGuard<'_, State> {
        let now = self.runtime.now();
        let mut st = self.lock();
        st.process(now);
        st
    }

    async fn submit(&self, request: Request) -> Result<Reply, NodeError> {
        let ticket = {
            let now = self.runtime.now();
            let mut st = self.lock();
            st.process(now);
            let refusal = if st.closed {
                Some(NodeError::Closed)
            } else if st.down {
                Some(NodeError::Connection(format!("{} is down", self.id)))
            } else if st
                .backlog
                .is_some_and(|limit| st.queue.len() >= limit && !request.is_release())
            {
                Some(NodeError::Backlog(st.queue.len()))
            } else {
                st.calls += 1;
                match st.fail_after.as_mut() {
                    Some(0) => Some(NodeError::Connection(format!(
                        "{} failed (fail_after ran out)",
                        self.id
                    ))),
                    Some(left) => {
                        *left -= 1;
                        None
                    }
                    None => None,
                }
            };
            if let Some(error) = refusal {
                let (operation, keys, token) = request.describe();
                st.refused.push(RefusedCall {
                    at: now,
                    operation,
                    keys,
                    token,
                    error: error.clone(),
                });
                return Err(error);
            }
            let mut due = now.checked_add(st.delay).unwrap_or(now);
            if let Some(last) = st.last_due {
                due = due.max(last);
            }
            st.last_due = Some(due);
            let ticket = st.next_ticket;
            st.next_ticket += 1;
            st.queue.push_back(Queued {
                ticket,
                due,
                request,
            });
            st.process(now);
            ticket
        };
        let mut guard = Ticket {
            inner: self,
            ticket,
            done: false,
        };
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let wait = {
                let now = self.runtime.now();
                let mut st = self.lock();
                st.process(now);
                if let Some(result) = st.results.remove(&ticket) {
                    guard.done = true;
                    return result;
                }
                if st.hung {
                    None
                } else {
                    match st.queue.iter().find(|q| q.ticket == ticket) {
                        Some(q) => Some(q.due.saturating_duration_since(now)),
                        None => {
                            guard.done = true;
                            return Err(NodeError::Protocol(format!(
                                "{}: request {ticket} vanished from the queue",
                                self.id
                            )));
                        }
                    }
                }
            };
            match wait {
                Some(d) => {
                    let sleep = self.runtime.sleep(d);
                    tokio::select! {
                        _ = sleep => {}
                        _ = &mut notified => {}
                    }
                }
                None => notified.await,
            }
        }
    }
}

impl fmt::Debug for SimNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.inner.lock();
        f.debug_struct("SimNode")
            .field("id", &self.inner.id)
            .field("keys", &st.store.len())
            .field("queued", &st.queue.len())
            .field("down", &st.down)
            .field("hung", &st.hung)
            .field("delay", &st.delay)
            .field("fail_after", &st.fail_after)
            .finish()
    }
}

impl SimNode {
    /// A healthy, empty node named `id`, on tokio's clock ([`TokioRuntime`]).
    pub fn new(id: impl Into<String>) -> Self {
        Self::with_runtime(id, Arc::new(TokioRuntime))
    }

    /// A healthy, empty node named `id` whose time comes from `runtime`
    /// (for example a [`ManualClock`](redlock_core::ManualClock)).
    pub fn with_runtime(id: impl Into<String>, runtime: Arc<dyn Runtime>) -> Self {
        SimNode {
            inner: Arc::new(Inner {
                id: id.into(),
                runtime,
                state: Mutex::new(State::default()),
                notify: Notify::new(),
            }),
        }
    }

    /// `n` healthy nodes named `sim-0` … `sim-{n-1}` on tokio's clock.
    pub fn many(n: usize) -> Vec<SimNode> {
        Self::many_with_runtime(n, Arc::new(TokioRuntime))
    }

    /// `n` healthy nodes named `sim-0` … `sim-{n-1}` sharing `runtime`.
    pub fn many_with_runtime(n: usize, runtime: Arc<dyn Runtime>) -> Vec<SimNode> {
        (0..n)
            .map(|i| Self::with_runtime(format!("sim-{i}"), runtime.clone()))
            .collect()
    }

    /// The node as a shared trait object, for `Redlock::from_nodes`.
    pub fn as_dyn(&self) -> Arc<dyn Node> {
        Arc::new(self.clone())
    }

    // ----- fault switches -------------------------------------------------

    /// While `true`, every new call fails at once with
    /// [`NodeError::Connection`] and is not queued. Requests queued before
    /// still take effect (they were already on the wire).
    pub fn set_down(&self, down: bool) {
        self.inner.current().down = down;
    }

    /// Requests sent from now on are processed `delay` after they were sent
    /// (and never before the request ahead of them).
    pub fn set_delay(&self, delay: Duration) {
        self.inner.current().delay = delay;
    }

    /// While `true`, requests are queued but not processed. Un-hanging
    /// processes everything overdue at once, in order, at that instant.
    pub fn set_hung(&self, hung: bool) {
        let now = self.inner.runtime.now();
        {
            let mut st = self.inner.lock();
            if hung {
                st.process(now);
                st.hung = true;
            } else if st.hung {
                st.hung = false;
                for q in st.queue.iter_mut() {
                    q.due = q.due.max(now);
                }
                if let Some(last) = st.last_due.as_mut() {
                    *last = (*last).max(now);
                }
                st.process(now);
            }
        }
        self.inner.notify.notify_waiters();
    }

    /// The next `calls` calls work; every later call fails at once with
    /// [`NodeError::Connection`] until [`clear_fail_after`](Self::clear_fail_after)
    /// or [`heal`](Self::heal).
    pub fn fail_after(&self, calls: u64) {
        self.inner.current().fail_after = Some(calls);
    }

    /// Bounds the requests queued and not processed yet, as the adapters'
    /// backlogs do: at `limit`, new calls other than releases are refused
    /// at once with [`NodeError::Backlog`] (not sent). `None` (the
    /// default) queues without bound.
    pub fn set_backlog_limit(&self, limit: Option<usize>) {
        self.inner.current().backlog = limit;
    }

    /// Undoes [`fail_after`](Self::fail_after).
    pub fn clear_fail_after(&self) {
        self.inner.current().fail_after = None;
    }

    /// Clears every fault: up, no delay, not hung, no failure countdown, not
    /// closed. Keys and the queue are kept.
    pub fn heal(&self) {
        {
            let mut st = self.inner.current();
            st.down = false;
            st.delay = Duration::ZERO;
            st.fail_after = None;
            st.closed = false;
        }
        self.set_hung(false);
    }

    /// Whether and how releases are announced to
    /// [`Node::watch_release`] watchers; see [`Announce`].
    pub fn set_announce(&self, announce: Announce) {
        let mut st = self.inner.current();
        st.announce = announce;
        if announce != Announce::On {
            // Pending watches stay pending forever, like lost messages.
            st.watchers.clear();
        }
    }

    /// Watches registered and not yet woken or dropped.
    pub fn watchers(&self) -> usize {
        let mut st = self.inner.current();
        st.watchers.retain(|(_, tx)| !tx.is_closed());
        st.watchers.len()
    }

    /// Deletes `key` now, as if it had expired. Returns whether it was live.
    pub fn expire_now(&self, key: &str) -> bool {
        let now = self.inner.runtime.now();
        let mut st = self.inner.current();
        let live = st.live(key, now).is_some();
        st.store.remove(key);
        live
    }

    /// Lowers the remaining TTL of `key` to at most `ttl` from now. Returns
    /// whether the key was live.
    pub fn shorten_ttl(&self, key: &str, ttl: Duration) -> bool {
        let now = self.inner.runtime.now();
        let mut st = self.inner.current();
        if st.live(key, now).is_none() {
            return false;
        }
        if let Some(e) = st.store.get_mut(key) {
            let new = now.checked_add(ttl);
            e.expires_at = match (e.expires_at, new) {
                (Some(old), Some(new)) => Some(old.min(new)),
                (None, new) => new,
                (old, None) => old,
            };
        }
        true
    }

    /// Deletes every key now (a restart without persistence, or a big clock
    /// jump). Returns how many were live.
    pub fn expire_all(&self) -> usize {
        let now = self.inner.runtime.now();
        let mut st = self.inner.current();
        let live = st.store.values().filter(|e| e.live_at(now)).count();
        st.store.clear();
        live
    }

    /// Writes `key = token` with `ttl` now, replacing whatever was there (a
    /// different owner, or a test setting the stage). `None` never expires.
    pub fn put_key(&self, key: impl Into<String>, token: impl Into<String>, ttl: Option<Duration>) {
        let now = self.inner.runtime.now();
        let mut st = self.inner.current();
        st.store.insert(
            key.into(),
            Entry {
                token: token.into(),
                expires_at: ttl.and_then(|t| now.checked_add(t)),
            },
        );
    }

    // ----- introspection --------------------------------------------------

    /// The node's id, as [`Node::id`] returns it.
    pub fn name(&self) -> &str {
        &self.inner.id
    }

    /// The keys live now (after every request due by now was processed):
    /// key → token and remaining TTL.
    pub fn keys(&self) -> BTreeMap<String, SimKey> {
        let now = self.inner.runtime.now();
        let st = self.inner.current();
        st.store
            .iter()
            .filter(|(_, e)| e.live_at(now))
            .map(|(k, e)| {
                (
                    k.clone(),
                    SimKey {
                        token: e.token.clone(),
                        ttl: e.expires_at.map(|x| x.saturating_duration_since(now)),
                    },
                )
            })
            .collect()
    }

    /// The token under `key` now, if the key is live.
    pub fn token_of(&self, key: &str) -> Option<String> {
        self.keys().remove(key).map(|k| k.token)
    }

    /// Every operation processed so far, in processing order.
    pub fn log(&self) -> Vec<LoggedOp> {
        self.inner.current().log.clone()
    }

    /// Every call refused without being queued, in order: those never
    /// reached the keys.
    pub fn refused(&self) -> Vec<RefusedCall> {
        self.inner.lock().refused.clone()
    }

    /// Forgets the log (sequence numbers keep counting).
    pub fn clear_log(&self) {
        self.inner.current().log.clear();
    }

    /// Requests sent but not processed yet.
    pub fn queue_len(&self) -> usize {
        self.inner.current().queue.len()
    }

    /// Calls made to the node that were not refused by [`set_down`](Self::set_down)
    /// or a closed node (including those [`fail_after`](Self::fail_after) failed).
    pub fn calls(&self) -> u64 {
        self.inner.current().calls
    }

    /// Whether [`Node::quit`] was called (and the node not healed since).
    pub fn is_closed(&self) -> bool {
        self.inner.current().closed
    }

    /// Completes once every request sent so far has been processed. While the
    /// node is hung this waits until it is un-hung.
    pub async fn drained(&self) {
        loop {
            let notified = self.inner.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let wait = {
                let now = self.inner.runtime.now();
                let st = self.inner.current();
                let Some(last) = st.queue.back() else {
                    return;
                };
                if st.hung {
                    None
                } else {
                    Some(last.due.saturating_duration_since(now))
                }
            };
            match wait {
                Some(d) => {
                    let sleep = self.inner.runtime.sleep(d);
                    tokio::select! {
                        _ = sleep => {}
                        _ = &mut notified => {}
                    }
                }
                None => notified.await,
            }
        }
    }
}

/// Waits until every node in `nodes` has drained its queue (see
/// [`SimNode::drained`]).
pub async fn drain_all(nodes: &[SimNode]) {
    for node in nodes {
        node.drained().await;
    }
}

/// The number of live keys over all `nodes`, after each processed what is
/// due by now.
pub fn live_keys(nodes: &[SimNode]) -> usize {
    nodes.iter().map(|n| n.keys().len()).sum()
}

fn mismatch(id: &str) -> NodeError {
    NodeError::Protocol(format!("{id}: reply of the wrong kind"))
}

#[async_trait]
impl Node for SimNode {
    fn id(&self) -> &str {
        &self.inner.id
    }

    async fn acquire(
        &self,
        keys: &[String],
        token: &str,
        ttl: Duration,
    ) -> Result<Acquire, NodeError> {
        let request = Request::Acquire {
            keys: keys.to_vec(),
            token: token.to_owned(),
            ttl,
        };
        match self.inner.submit(request).await? {
            Reply::Acquire(a) => Ok(a),
            _ => Err(mismatch(&self.inner.id)),
        }
    }

    async fn release(&self, keys: &[String], token: &str) -> Result<u64, NodeError> {
        let request = Request::Release {
            keys: keys.to_vec(),
            token: token.to_owned(),
        };
        match self.inner.submit(request).await? {
            Reply::Release(n) => Ok(n),
            _ => Err(mismatch(&self.inner.id)),
        }
    }

    async fn extend(
        &self,
        keys: &[String],
        token: &str,
        ttl: Duration,
    ) -> Result<Extend, NodeError> {
        let request = Request::Extend {
            keys: keys.to_vec(),
            token: token.to_owned(),
            ttl,
        };
        match self.inner.submit(request).await? {
            Reply::Extend(e) => Ok(e),
            _ => Err(mismatch(&self.inner.id)),
        }
    }

    async fn inspect(&self, keys: &[String]) -> Result<Vec<KeyState>, NodeError> {
        let request = Request::Inspect {
            keys: keys.to_vec(),
        };
        match self.inner.submit(request).await? {
            Reply::Inspect(states) => Ok(states),
            _ => Err(mismatch(&self.inner.id)),
        }
    }

    fn watch_release(&self, keys: &[String]) -> Option<BoxFuture<'static, ()>> {
        let mut st = self.inner.current();
        match st.announce {
            Announce::Off => None,
            Announce::Lost => Some(Box::pin(std::future::pending())),
            Announce::On => {
                let (tx, rx) = tokio::sync::oneshot::channel();
                st.watchers.retain(|(_, tx)| !tx.is_closed());
                st.watchers.push((keys.to_vec(), tx));
                Some(Box::pin(async move {
                    if rx.await.is_err() {
                        // Announcements were switched off: never fires.
                        std::future::pending::<()>().await;
                    }
                }))
            }
        }
    }

    async fn quit(&self) -> Result<(), NodeError> {
        self.inner.current().closed = true;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(k: &[&str]) -> Vec<String> {
        k.iter().map(|s| s.to_string()).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn keys_expire_by_the_runtime_clock() {
        let n = SimNode::new("sim-0");
        let k = keys(&["a"]);
        assert_eq!(
            n.acquire(&k, "t", Duration::from_millis(100)).await,
            Ok(Acquire::Acquired)
        );
        assert_eq!(
            n.acquire(&k, "u", Duration::from_millis(100)).await,
            Ok(Acquire::Held)
        );
        tokio::time::advance(Duration::from_millis(99)).await;
        assert_eq!(n.token_of("a").as_deref(), Some("t"));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(n.keys().is_empty());
        assert_eq!(
            n.extend(&k, "t", Duration::from_millis(100)).await,
            Ok(Extend::NotHeld),
            "extend never recreates"
        );
        assert!(n.keys().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn dropped_request_still_takes_effect_in_order() {
        let n = SimNode::new("sim-0");
        n.set_delay(Duration::from_millis(50));
        let k = keys(&["a"]);
        {
            let mut fut = n.acquire(&k, "t", Duration::from_secs(1));
            // Poll once so the request is sent, then drop it.
            assert!(futures_poll_once(&mut fut).await.is_none());
        }
        assert_eq!(n.queue_len(), 1);
        n.set_delay(Duration::ZERO);
        // Sent later with no delay, but must not overtake the acquire.
        assert_eq!(n.release(&k, "t").await, Ok(1));
        let log = n.log();
        assert_eq!(log.len(), 2);
        assert_eq!(log[0].operation, Operation::Acquire);
        assert!(log[0].abandoned);
        assert_eq!(log[1].operation, Operation::Release);
        assert!(n.keys().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn unpolled_request_is_never_sent() {
        let n = SimNode::new("sim-0");
        let k = keys(&["a"]);
        drop(n.acquire(&k, "t", Duration::from_secs(1)));
        assert_eq!(n.queue_len(), 0);
        assert!(n.keys().is_empty());
        assert!(n.log().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn hung_node_queues_until_unhung() {
        let n = SimNode::new("sim-0");
        n.set_hung(true);
        let k = keys(&["a"]);
        let other = n.clone();
        let task = tokio::spawn(async move {
            other
                .acquire(&["a".to_string()], "t", Duration::from_secs(1))
                .await
        });
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(n.queue_len(), 1);
        assert!(n.keys().is_empty());
        n.set_hung(false);
        assert_eq!(task.await.ok(), Some(Ok(Acquire::Acquired)));
        assert_eq!(n.token_of("a").as_deref(), Some("t"));
        n.drained().await;
        let _ = k;
    }

    #[tokio::test(start_paused = true)]
    async fn down_and_fail_after() {
        let n = SimNode::new("sim-0");
        let k = keys(&["a"]);
        n.set_down(true);
        assert!(matches!(
            n.release(&k, "t").await,
            Err(NodeError::Connection(_))
        ));
        n.set_down(false);
        n.fail_after(1);
        assert_eq!(n.release(&k, "t").await, Ok(0));
        assert!(matches!(
            n.release(&k, "t").await,
            Err(NodeError::Connection(_))
        ));
        n.heal();
        assert_eq!(n.release(&k, "t").await, Ok(0));
        assert_eq!(n.calls(), 3);
        let refused = n.refused();
        assert_eq!(refused.len(), 2);
        assert!(refused
            .iter()
            .all(|r| r.operation == Operation::Release && r.token.as_deref() == Some("t")));
    }

    #[tokio::test(start_paused = true)]
    async fn early_expiry_and_put_key() {
        let n = SimNode::new("sim-0");
        n.put_key("a", "x", Some(Duration::from_secs(10)));
        n.put_key("b", "y", None);
        assert!(n.shorten_ttl("a", Duration::from_secs(1)));
        assert_eq!(
            n.keys().get("a").and_then(|k| k.ttl),
            Some(Duration::from_secs(1))
        );
        assert!(n.expire_now("b"));
        assert!(!n.expire_now("b"));
        assert_eq!(n.expire_all(), 1);
        assert!(n.keys().is_empty());
    }

    /// Polls a future once; `Some` if it completed.
    async fn futures_poll_once<F: std::future::Future + Unpin>(f: &mut F) -> Option<F::Output> {
        use std::task::Poll;
        std::future::poll_fn(|cx| match std::pin::Pin::new(&mut *f).poll(cx) {
            Poll::Ready(v) => Poll::Ready(Some(v)),
            Poll::Pending => Poll::Ready(None),
        })
        .await
    }
}
