//! The per-node request queue that keeps order on the wire.
//!
//! A node has one executor (its connection and scripts). At most one
//! request or batch uses it at a time, so a batch's replies (and any
//! NOSCRIPT resend) are in before the next batch is sent: a release can
//! never overtake the acquire before it.
//!
//! - **Idle node**: the caller takes the executor and sends its request
//!   itself, on the first poll of the node's future. No extra task sits in
//!   the path, so one request costs what a plain call of the client costs.
//! - **Busy node**: the request is queued (synchronously, on the first
//!   poll). When the executor comes back, the node's driver task takes
//!   everything that has queued up and sends it as one pipeline (one round
//!   trip), so concurrent requests share round trips.
//!
//! Either way a request is committed to the node's order on its first poll
//! and is carried out even if the caller drops the future afterwards: a
//! request running on the caller's task is handed to the driver when its
//! future is dropped (the driver finishes it, then sends whatever queued up
//! behind it), and a queued request belongs to the queue.
//!
//! **Bounded.** Every request holds a [`Permit`] of the node's [`Backlog`]
//! from the moment it is admitted until its reply is in (or its connection
//! was given up). A node that stops answering therefore holds at most the
//! backlog's limit of requests: beyond it, acquires, extends and reads fail
//! at once with [`NodeError::Backlog`] without being queued or sent, and
//! the core sends no release for them. Releases are always admitted; one
//! that finds its own acquire still waiting, unsent, withdraws it and is
//! answered at once (neither is sent: there is nothing to release), so a
//! stalled node does not even keep the pairs.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use std::time::Duration;

use redlock_core::backlog::{Backlog, Permit};
use redlock_core::node::ttl_millis;
use redlock_core::{Acquire, BoxFuture, Extend, KeyState, NodeError};
use tokio::runtime::Handle;
use tokio::sync::{oneshot, Notify};

use crate::call::{Call, Kind};
use crate::reply::{self, Reply};
use crate::FinishOnDrop;

/// Carries out batches of calls, in order, for one node: an adapter's
/// connection (or cluster client) and its scripts.
///
/// The queue hands it one batch at a time and waits for the results
/// before it hands over the next, so an executor never sees two batches at
/// once and keeps the order it is given by sending each batch in order.
/// It never repeats a call the server may have run (no hidden retries).
#[async_trait::async_trait]
pub trait Executor: Send + 'static {
    /// Runs once when the driver starts: connect and load scripts.
    async fn warm_up(&mut self);
    /// Executes `calls` in order; returns one result per call (a missing
    /// result is an error for its call). A call that was not sent fails
    /// with an error whose [`NodeError::was_sent`] is `false`. An empty
    /// batch only sends what the executor [`owes`](Self::owes).
    async fn execute(&mut self, calls: &[Call]) -> Vec<Result<Reply, NodeError>>;

    /// Executes one call (without the batch around it, if that is cheaper).
    async fn execute_one(&mut self, call: &Call) -> Result<Reply, NodeError> {
        self.execute(std::slice::from_ref(call))
            .await
            .pop()
            .unwrap_or_else(|| Err(NodeError::Protocol("missing reply".into())))
    }

    /// Whether releases are still owed to the server from a connection that
    /// failed; the driver then retries (an empty batch) now and then.
    fn owes(&self) -> bool {
        false
    }
}

/// How often a driver with releases owed and nothing else to do retries
/// sending them.
const OWED_RETRY: std::time::Duration = std::time::Duration::from_millis(500);

/// A call's outcome.
type Answer = Result<Reply, NodeError>;

/// The queue could not start: no tokio runtime is running on this thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoRuntime;

impl std::fmt::Display for NoRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("no tokio runtime: create nodes from within a tokio runtime")
    }
}

impl std::error::Error for NoRuntime {}

struct Request {
    call: Call,
    reply: oneshot::Sender<Answer>,
    /// Its place in the backlog, until the reply is in.
    _permit: Permit,
}

struct State {
    /// `None` while a request or batch is using it (or while warming up).
    executor: Option<Box<dyn Executor>>,
    /// Requests that arrived while the executor was in use, oldest first.
    /// Non-empty only while the executor is in use or about to be taken by
    /// the driver, so a request may go direct only when this is empty.
    waiting: VecDeque<Request>,
    closed: bool,
    /// A request that started on its caller's task, whose future was
    /// dropped before it finished; the driver finishes it. There is at most
    /// one, since it holds the executor.
    adopted: Option<BoxFuture<'static, Answer>>,
    /// Tokens of acquires that were answered "not sent" (no connection)
    /// after their caller may have moved on: their release, if it comes,
    /// has nothing to delete and is answered at once. Oldest first, at most
    /// the backlog's limit (the core sends no release for an acquire it
    /// saw fail unsent, so most entries are never claimed).
    unsent: VecDeque<String>,
}

impl State {
    /// Notes the acquires among `answered` whose answer says they were
    /// never sent: a release of theirs already waiting is answered at once
    /// (and leaves the queue); one that comes later is, too.
    fn note_unsent<'c>(
        &mut self,
        answered: impl Iterator<Item = (&'c Call, &'c Answer)>,
        limit: usize,
    ) {
        for (call, reply) in answered {
            if call.kind != Kind::Acquire || !matches!(reply, Err(e) if !e.was_sent()) {
                continue;
            }
            let Some(token) = &call.token else { continue };
            let waiting = self
                .waiting
                .iter()
                .position(|r| r.call.kind == Kind::Release && r.call.token.as_ref() == Some(token));
            if let Some(release) = waiting.and_then(|i| self.waiting.remove(i)) {
                let _ = release.reply.send(Ok(Reply::Int(0)));
                continue;
            }
            if self.unsent.len() >= limit {
                self.unsent.pop_front();
            }
            self.unsent.push_back(token.clone());
        }
    }

    /// Whether `release`'s acquire was never sent (and forgets it).
    fn claim_unsent(&mut self, release: &Call) -> bool {
        let Some(token) = &release.token else {
            return false;
        };
        match self.unsent.iter().rposition(|t| t == token) {
            Some(i) => {
                self.unsent.remove(i);
                true
            }
            None => false,
        }
    }
}

struct Shared {
    state: Mutex<State>,
    /// Wakes the driver: the executor came back with requests waiting, or
    /// the queue was closed.
    wake: Notify,
    max_batch: usize,
    backlog: Backlog,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Returns the executor; wakes the driver if requests queued meanwhile.
    fn put_back(&self, executor: Box<dyn Executor>) {
        // What it owes (releases, announcements) after a call run on the
        // caller's task is the driver's to send, now and not with the
        // next call, which may never come.
        let owes = executor.owes();
        let mut state = self.lock();
        state.executor = Some(executor);
        let wake = !state.waiting.is_empty() || state.closed || owes;
        drop(state);
        if wake {
            self.wake.notify_one();
        }
    }
}

/// Holds the executor while one request runs on the caller's task and
/// returns it to the queue however that ends (completed, or dropped with the
/// runtime).
struct Lease {
    shared: Arc<Shared>,
    executor: Option<Box<dyn Executor>>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(executor) = self.executor.take() {
            self.shared.put_back(executor);
        }
    }
}

/// Where [`Queue::enqueue`] put a call.
enum Enqueued {
    /// Sent from the caller's task.
    Direct(FinishOnDrop<Answer>),
    /// Waiting for the driver.
    Queued(oneshot::Receiver<Answer>),
    /// Answered without being sent.
    Done(Answer),
}

impl Request {
    /// Whether `release` withdraws this request: an acquire of the same
    /// keys and token, not sent yet. It took nothing, and never will.
    fn withdrawn_by(&self, release: &Call) -> bool {
        self.call.kind == Kind::Acquire
            && self.call.token == release.token
            && self.call.keys == release.keys
    }
}

/// The sending side of a node's queue: an adapter's node holds one and
/// sends every call through it.
pub struct Queue {
    shared: Arc<Shared>,
    driver: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue").finish_non_exhaustive()
    }
}

impl Queue {
    /// Spawns the driver of `executor` on the current tokio runtime;
    /// batches carry at most `max_batch` calls; `backlog` bounds the
    /// requests admitted and not answered.
    pub fn spawn<E: Executor>(
        executor: E,
        max_batch: usize,
        backlog: Backlog,
    ) -> Result<Self, NoRuntime> {
        let runtime = Handle::try_current().map_err(|_| NoRuntime)?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                executor: None,
                waiting: VecDeque::new(),
                closed: false,
                adopted: None,
                unsent: VecDeque::new(),
            }),
            wake: Notify::new(),
            max_batch: max_batch.max(1),
            backlog,
        });
        let driver = runtime.spawn(drive(shared.clone(), Box::new(executor)));
        Ok(Queue {
            shared,
            driver: Mutex::new(Some(driver)),
        })
    }

    /// Commits `call` to the node's order now (on the first poll) and waits
    /// for its reply.
    pub async fn call(&self, call: Call) -> Result<Reply, NodeError> {
        match self.enqueue(call)? {
            Enqueued::Direct(direct) => direct.await,
            Enqueued::Queued(rx) => rx.await.map_err(|_| NodeError::Closed)?,
            Enqueued::Done(reply) => reply,
        }
    }

    /// Requests admitted and not answered yet.
    pub fn outstanding(&self) -> usize {
        self.shared.backlog.outstanding()
    }

    /// `PING` through the queue.
    pub async fn ping(&self) -> Result<(), NodeError> {
        self.call(Call::ping()).await.map(drop)
    }

    /// [`Node::acquire`](redlock_core::Node::acquire) through the queue.
    pub async fn acquire(
        &self,
        keys: &[String],
        token: &str,
        ttl: Duration,
    ) -> Result<Acquire, NodeError> {
        let call = Call::new(Kind::Acquire, keys, Some(token), Some(ttl_millis(ttl)));
        reply::acquire(&self.call(call).await?)
    }

    /// [`Node::release`](redlock_core::Node::release) through the queue.
    pub async fn release(&self, keys: &[String], token: &str) -> Result<u64, NodeError> {
        let call = Call::new(Kind::Release, keys, Some(token), None);
        reply::release(&self.call(call).await?)
    }

    /// [`Node::extend`](redlock_core::Node::extend) through the queue.
    pub async fn extend(
        &self,
        keys: &[String],
        token: &str,
        ttl: Duration,
    ) -> Result<Extend, NodeError> {
        let call = Call::new(Kind::Extend, keys, Some(token), Some(ttl_millis(ttl)));
        reply::extend(&self.call(call).await?)
    }

    /// [`Node::inspect`](redlock_core::Node::inspect) through the queue.
    pub async fn inspect(&self, keys: &[String]) -> Result<Vec<KeyState>, NodeError> {
        let call = Call::new(Kind::Inspect, keys, None, None);
        reply::inspect(keys, self.call(call).await?)
    }

    /// [`Node::fence`](redlock_core::Node::fence) through the queue.
    pub async fn fence(&self, keys: &[String], floor: u64) -> Result<u64, NodeError> {
        let call = Call::new(Kind::Fence, keys, None, Some(floor));
        reply::fence(&self.call(call).await?)
    }

    /// Takes the idle executor for `call`, or queues `call` behind the
    /// requests already waiting, or answers it at once (a release whose
    /// acquire was still waiting). Refuses all but releases when the
    /// backlog is full.
    fn enqueue(&self, call: Call) -> Result<Enqueued, NodeError> {
        let backlog = &self.shared.backlog;
        let mut state = self.shared.lock();
        if state.closed {
            return Err(NodeError::Closed);
        }
        let permit = if call.kind == Kind::Release {
            if let Some(i) = state.waiting.iter().position(|r| r.withdrawn_by(&call)) {
                if let Some(acquire) = state.waiting.remove(i) {
                    let _ = acquire.reply.send(Err(NodeError::NotConnected(
                        "withdrawn before it was sent: its release followed it".into(),
                    )));
                }
                return Ok(Enqueued::Done(Ok(Reply::Int(0))));
            }
            if state.claim_unsent(&call) {
                return Ok(Enqueued::Done(Ok(Reply::Int(0))));
            }
            backlog.admit()
        } else {
            backlog.try_admit().ok_or_else(|| backlog.full_error())?
        };
        if state.waiting.is_empty() {
            if let Some(executor) = state.executor.take() {
                drop(state);
                return Ok(Enqueued::Direct(self.direct(executor, call, permit)));
            }
        }
        let (reply, rx) = oneshot::channel();
        state.waiting.push_back(Request {
            call,
            reply,
            _permit: permit,
        });
        Ok(Enqueued::Queued(rx))
    }

    /// Runs `call` on the caller's task. Dropped before it finished, it is
    /// handed to the driver ([`FinishOnDrop::handing_to`]) so that it is
    /// still sent and answered (some clients skip a request whose receiver
    /// is gone) and the executor comes back afterwards.
    fn direct(
        &self,
        executor: Box<dyn Executor>,
        call: Call,
        permit: Permit,
    ) -> FinishOnDrop<Answer> {
        let mut lease = Lease {
            shared: self.shared.clone(),
            executor: Some(executor),
        };
        let run = async move {
            let Some(executor) = lease.executor.as_mut() else {
                return Err(NodeError::Closed);
            };
            let reply = executor.execute_one(&call).await;
            let shared = lease.shared.clone();
            drop(lease);
            if reply.is_err() {
                let limit = shared.backlog.limit();
                shared
                    .lock()
                    .note_unsent(std::iter::once((&call, &reply)), limit);
            }
            drop(permit);
            reply
        };
        let shared = self.shared.clone();
        FinishOnDrop::handing_to(run, move |rest| {
            shared.lock().adopted = Some(rest);
            shared.wake.notify_one();
        })
    }

    /// Stops accepting calls; what is queued or running is still carried out.
    pub fn close(&self) {
        self.shared.lock().closed = true;
        self.shared.wake.notify_one();
    }

    /// Closes the queue and waits until everything that was queued or
    /// running (releases in flight included) has been sent and answered.
    pub async fn drain(&self) {
        self.close();
        let driver = self.driver.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(driver) = driver {
            let _ = driver.await;
        }
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        self.close();
    }
}

async fn drive(shared: Arc<Shared>, mut executor: Box<dyn Executor>) {
    executor.warm_up().await;
    shared.put_back(executor);
    run(&shared).await;
    // Closed and drained: close the connections now (the queue's `Shared`
    // may live on in a clone of the node).
    let executor = shared.lock().executor.take();
    drop(executor);
}

async fn run(shared: &Shared) {
    // Calls and their reply slots side by side, so the calls are handed to
    // the executor as they are (no copy per batch); both are reused.
    let mut calls: Vec<Call> = Vec::new();
    let mut replies: Vec<oneshot::Sender<Answer>> = Vec::new();
    let mut permits: Vec<Permit> = Vec::new();
    // An empty batch was just tried for owed releases: wait before the next.
    let mut retried_owed = false;
    loop {
        let adopted = shared.lock().adopted.take();
        if let Some(run) = adopted {
            // It gives the executor back when done.
            let _ = run.await;
            continue;
        }
        let mut executor = {
            let mut state = shared.lock();
            let idle = state.executor.is_some();
            let owes = state.executor.as_ref().is_some_and(|e| e.owes());
            if state.waiting.is_empty() {
                if state.closed && idle && (!owes || retried_owed) {
                    return;
                }
                if owes && !retried_owed {
                    // Releases owed and nothing else to do: an empty batch
                    // sends them (after connecting, if need be).
                    state.executor.take()
                } else {
                    None
                }
            } else if idle {
                while calls.len() < shared.max_batch {
                    let Some(r) = state.waiting.pop_front() else {
                        break;
                    };
                    // Every request is sent, also when its caller is gone:
                    // the core decides as soon as a quorum answered, and
                    // keys on every node, not just on a bare quorum, are
                    // what keep a lock safe when one node loses its keys
                    // early (for extends as for acquires). Whatever an
                    // acquire takes is released by the release queued
                    // after it (the ordering contract).
                    calls.push(r.call);
                    replies.push(r.reply);
                    permits.push(r._permit);
                }
                state.executor.take()
            } else {
                None
            }
        };
        let Some(exec) = executor.as_mut() else {
            // Nothing to do until the executor comes back with requests
            // waiting, or the queue is closed; with releases owed, retry
            // them now and then.
            if retried_owed {
                let _ = tokio::time::timeout(OWED_RETRY, shared.wake.notified()).await;
                retried_owed = false;
            } else {
                shared.wake.notified().await;
            }
            continue;
        };
        retried_owed = calls.is_empty();
        let mut results = exec.execute(&calls).await;
        results.resize_with(calls.len(), || {
            Err(NodeError::Protocol("missing reply in pipeline".into()))
        });
        if results.iter().any(Result::is_err) {
            let limit = shared.backlog.limit();
            shared.lock().note_unsent(calls.iter().zip(&results), limit);
        }
        calls.clear();
        for (reply, result) in replies.drain(..).zip(results) {
            let _ = reply.send(result);
        }
        permits.clear();
        if let Some(exec) = executor {
            let mut state = shared.lock();
            state.executor = Some(exec);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use futures_util::poll;
    use tokio::sync::Semaphore;

    use super::*;

    type Log = Arc<Mutex<Vec<Vec<Call>>>>;

    /// Records every batch, then waits for a permit of `gate` before it
    /// answers; `owes` until it ran an empty batch.
    struct Fake {
        log: Log,
        gate: Arc<Semaphore>,
        answer: fn(&Call) -> Answer,
        owes: Arc<AtomicBool>,
        paid: Arc<Notify>,
    }

    fn yes(call: &Call) -> Answer {
        Ok(match call.kind {
            Kind::Ping => Reply::Text("PONG".into()),
            _ => Reply::Int(1),
        })
    }

    #[async_trait::async_trait]
    impl Executor for Fake {
        async fn warm_up(&mut self) {}

        async fn execute(&mut self, calls: &[Call]) -> Vec<Answer> {
            self.log.lock().unwrap().push(calls.to_vec());
            if calls.is_empty() {
                self.owes.store(false, Ordering::SeqCst);
                self.paid.notify_one();
                return Vec::new();
            }
            if let Ok(permit) = self.gate.acquire().await {
                permit.forget();
            }
            if calls.iter().any(|c| c.token.as_deref() == Some("owe")) {
                self.owes.store(true, Ordering::SeqCst);
            }
            calls.iter().map(self.answer).collect()
        }

        fn owes(&self) -> bool {
            self.owes.load(Ordering::SeqCst)
        }
    }

    struct Setup {
        queue: Queue,
        log: Log,
        gate: Arc<Semaphore>,
    }

    /// A queue over a [`Fake`] whose executor is idle (warmed up, one
    /// PING done) and whose gate is closed.
    async fn setup(limit: usize, answer: fn(&Call) -> Answer) -> Setup {
        let log = Log::default();
        let gate = Arc::new(Semaphore::new(1));
        let fake = Fake {
            log: log.clone(),
            gate: gate.clone(),
            answer,
            owes: Arc::default(),
            paid: Arc::default(),
        };
        let backlog = Backlog::new(limit).expect("valid limit");
        let queue = Queue::spawn(fake, 16, backlog).expect("in a runtime");
        queue.ping().await.expect("the fake answers");
        log.lock().unwrap().clear();
        Setup { queue, log, gate }
    }

    fn call(kind: Kind, key: &str, token: &str) -> Call {
        Call::new(kind, &[key.to_owned()], Some(token), None)
    }

    fn kinds(log: &Log) -> Vec<Vec<(Kind, String)>> {
        log.lock()
            .unwrap()
            .iter()
            .map(|b| b.iter().map(|c| (c.kind, c.keys.join(","))).collect())
            .collect()
    }

    #[tokio::test]
    async fn what_waits_behind_a_busy_node_goes_out_together_in_order() {
        let s = setup(16, yes).await;
        let mut a = Box::pin(s.queue.call(call(Kind::Acquire, "a", "t")));
        let mut b = Box::pin(s.queue.call(call(Kind::Extend, "b", "t")));
        let mut c = Box::pin(s.queue.call(call(Kind::Release, "c", "t")));
        assert!(poll!(&mut a).is_pending());
        assert!(poll!(&mut b).is_pending());
        assert!(poll!(&mut c).is_pending());
        assert_eq!(kinds(&s.log), vec![vec![(Kind::Acquire, "a".into())]]);
        assert_eq!(s.queue.outstanding(), 3);
        s.gate.add_permits(2);
        assert_eq!(a.await, Ok(Reply::Int(1)));
        assert_eq!(b.await, Ok(Reply::Int(1)));
        assert_eq!(c.await, Ok(Reply::Int(1)));
        assert_eq!(
            kinds(&s.log),
            vec![
                vec![(Kind::Acquire, "a".into())],
                vec![(Kind::Extend, "b".into()), (Kind::Release, "c".into())]
            ]
        );
        assert_eq!(s.queue.outstanding(), 0);
    }

    #[tokio::test]
    async fn a_dropped_call_is_still_carried_out_before_what_follows() {
        let s = setup(16, yes).await;
        let mut a = Box::pin(s.queue.call(call(Kind::Acquire, "k", "t")));
        assert!(poll!(&mut a).is_pending());
        drop(a);
        let mut r = Box::pin(s.queue.call(call(Kind::Release, "k", "t")));
        assert!(poll!(&mut r).is_pending());
        s.gate.add_permits(2);
        assert_eq!(r.await, Ok(Reply::Int(1)));
        assert_eq!(
            kinds(&s.log),
            vec![
                vec![(Kind::Acquire, "k".into())],
                vec![(Kind::Release, "k".into())]
            ]
        );
    }

    #[tokio::test]
    async fn a_full_backlog_refuses_all_but_releases_without_sending() {
        let s = setup(2, yes).await;
        let mut a = Box::pin(s.queue.call(call(Kind::Acquire, "a", "t")));
        let mut b = Box::pin(s.queue.call(call(Kind::Acquire, "b", "t")));
        assert!(poll!(&mut a).is_pending());
        assert!(poll!(&mut b).is_pending());
        let refused = s.queue.call(call(Kind::Extend, "c", "t")).await;
        assert_eq!(refused, Err(NodeError::Backlog(2)));
        assert!(!NodeError::Backlog(2).was_sent());
        let mut r = Box::pin(s.queue.call(call(Kind::Release, "d", "u")));
        assert!(poll!(&mut r).is_pending(), "releases are always admitted");
        assert_eq!(s.queue.outstanding(), 3);
        s.gate.add_permits(2);
        assert!(a.await.is_ok() && b.await.is_ok() && r.await.is_ok());
        let sent: Vec<String> = kinds(&s.log).concat().into_iter().map(|c| c.1).collect();
        assert_eq!(sent, ["a", "b", "d"]);
        assert_eq!(s.queue.outstanding(), 0);
    }

    #[tokio::test]
    async fn a_release_withdraws_its_acquire_while_it_waits_unsent() {
        let s = setup(16, yes).await;
        let mut busy = Box::pin(s.queue.call(call(Kind::Inspect, "x", "t")));
        assert!(poll!(&mut busy).is_pending());
        let mut acquire = Box::pin(s.queue.call(call(Kind::Acquire, "k", "t")));
        assert!(poll!(&mut acquire).is_pending());
        // Another token's release does not withdraw it.
        let mut other = Box::pin(s.queue.call(call(Kind::Release, "k", "u")));
        assert!(poll!(&mut other).is_pending());
        let release = s.queue.call(call(Kind::Release, "k", "t")).await;
        assert_eq!(release, Ok(Reply::Int(0)));
        let withdrawn = acquire.await.expect_err("withdrawn");
        assert!(!withdrawn.was_sent(), "{withdrawn:?}");
        s.gate.add_permits(2);
        assert!(busy.await.is_ok() && other.await.is_ok());
        assert_eq!(
            kinds(&s.log),
            vec![
                vec![(Kind::Inspect, "x".into())],
                vec![(Kind::Release, "k".into())]
            ]
        );
    }

    #[tokio::test]
    async fn the_release_of_an_acquire_that_failed_unsent_is_not_sent() {
        fn down(call: &Call) -> Answer {
            match call.kind {
                Kind::Acquire => Err(NodeError::NotConnected("down".into())),
                _ => yes(call),
            }
        }
        let s = setup(16, down).await;
        s.gate.add_permits(Semaphore::MAX_PERMITS / 2);
        let acquire = s.queue.call(call(Kind::Acquire, "k", "t")).await;
        assert!(matches!(acquire, Err(NodeError::NotConnected(_))));
        let release = s.queue.call(call(Kind::Release, "k", "t")).await;
        assert_eq!(release, Ok(Reply::Int(0)));
        // A second release of the same token is sent: the claim is used up.
        assert_eq!(
            s.queue.call(call(Kind::Release, "k", "t")).await,
            Ok(Reply::Int(1))
        );
        assert_eq!(
            kinds(&s.log),
            vec![
                vec![(Kind::Acquire, "k".into())],
                vec![(Kind::Release, "k".into())]
            ]
        );
    }

    #[tokio::test]
    async fn drain_carries_out_what_was_queued_then_refuses() {
        let s = setup(16, yes).await;
        let mut a = Box::pin(s.queue.call(call(Kind::Acquire, "a", "t")));
        let mut r = Box::pin(s.queue.call(call(Kind::Release, "a", "t")));
        assert!(poll!(&mut a).is_pending());
        assert!(poll!(&mut r).is_pending());
        drop((a, r));
        let mut drain = Box::pin(s.queue.drain());
        assert!(poll!(&mut drain).is_pending());
        assert_eq!(
            s.queue.call(call(Kind::Acquire, "b", "t")).await,
            Err(NodeError::Closed)
        );
        s.gate.add_permits(2);
        drain.await;
        assert_eq!(kinds(&s.log).concat().len(), 2);
        assert_eq!(s.queue.outstanding(), 0);
    }

    #[tokio::test]
    async fn owed_releases_are_sent_by_an_empty_batch() {
        let log = Log::default();
        let paid = Arc::new(Notify::new());
        let fake = Fake {
            log: log.clone(),
            gate: Arc::new(Semaphore::new(0)),
            answer: yes,
            owes: Arc::new(AtomicBool::new(true)),
            paid: paid.clone(),
        };
        let queue = Queue::spawn(fake, 16, Backlog::default()).expect("in a runtime");
        paid.notified().await;
        assert_eq!(log.lock().unwrap().as_slice(), [Vec::<Call>::new()]);
        drop(queue);
    }

    #[tokio::test]
    async fn what_a_call_on_the_callers_task_leaves_owed_is_sent_without_another_call() {
        let log = Log::default();
        let paid = Arc::new(Notify::new());
        let fake = Fake {
            log: log.clone(),
            gate: Arc::new(Semaphore::new(8)),
            answer: yes,
            owes: Arc::default(),
            paid: paid.clone(),
        };
        let queue = Queue::spawn(fake, 16, Backlog::default()).expect("in a runtime");
        queue.ping().await.expect("the fake answers");
        // The executor is idle: the call runs on this task, and leaves
        // something owed.
        let reply = queue.call(call(Kind::Release, "a", "owe")).await;
        assert_eq!(reply, Ok(Reply::Int(1)));
        tokio::time::timeout(std::time::Duration::from_secs(10), paid.notified())
            .await
            .expect("the driver sends what is owed at once");
        assert_eq!(kinds(&log).last(), Some(&Vec::new()));
        drop(queue);
    }

    #[test]
    fn spawning_outside_a_runtime_is_an_error() {
        let fake = Fake {
            log: Log::default(),
            gate: Arc::new(Semaphore::new(0)),
            answer: yes,
            owes: Arc::default(),
            paid: Arc::default(),
        };
        let err = Queue::spawn(fake, 1, Backlog::default()).expect_err("no runtime");
        assert!(err.to_string().contains("tokio runtime"));
    }
}
