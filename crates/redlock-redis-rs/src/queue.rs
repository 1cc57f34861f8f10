//! The per-node request queue that keeps order on the wire.
//!
//! A node has one executor (its connection and scripts). At most one
//! request or batch uses it at a time, so a batch's replies (and any
//! NOSCRIPT resend) are in before the next batch is sent: a release can
//! never overtake the acquire before it.
//!
//! - **Idle node**: the caller takes the executor and sends its request
//!   itself, on the first poll of the node's future. No extra task sits in
//!   the path, so one request costs what a plain `redis` call costs.
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

use redis::Value;
use redlock_core::backlog::{Backlog, Permit};
use redlock_core::{BoxFuture, NodeError};
use redlock_kit::FinishOnDrop;
use tokio::runtime::Handle;
use tokio::sync::{oneshot, Notify};

use crate::scripts::{Call, Kind};

/// Carries out batches of calls, in order, for one node.
#[async_trait::async_trait]
pub(crate) trait Executor: Send + 'static {
    /// Runs once when the driver starts: connect and load scripts.
    async fn warm_up(&mut self);
    /// Executes `calls` in order; returns one result per call.
    async fn execute(&mut self, calls: &[Call]) -> Vec<Result<Value, NodeError>>;

    /// Executes one call.
    async fn execute_one(&mut self, call: &Call) -> Result<Value, NodeError> {
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

type Reply = Result<Value, NodeError>;

struct Request {
    call: Call,
    reply: oneshot::Sender<Reply>,
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
    adopted: Option<BoxFuture<'static, Reply>>,
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
        answered: impl Iterator<Item = (&'c Call, &'c Reply)>,
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
                let _ = release.reply.send(Ok(Value::Int(0)));
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
        let mut state = self.lock();
        state.executor = Some(executor);
        let wake = !state.waiting.is_empty() || state.closed;
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
    Direct(FinishOnDrop<Reply>),
    /// Waiting for the driver.
    Queued(oneshot::Receiver<Reply>),
    /// Answered without being sent.
    Done(Reply),
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

/// The sending side of a node's queue.
pub(crate) struct Queue {
    shared: Arc<Shared>,
    driver: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue").finish_non_exhaustive()
    }
}

impl Queue {
    /// Spawns the driver on the current tokio runtime.
    pub(crate) fn spawn<E: Executor>(
        executor: E,
        max_batch: usize,
        backlog: Backlog,
    ) -> Result<Self, crate::Error> {
        let runtime = Handle::try_current().map_err(|_| crate::Error::NoRuntime)?;
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

    /// Commits `call` to the node's order now and waits for its reply.
    pub(crate) async fn call(&self, call: Call) -> Result<Value, NodeError> {
        match self.enqueue(call)? {
            Enqueued::Direct(direct) => direct.await,
            Enqueued::Queued(rx) => rx.await.map_err(|_| NodeError::Closed)?,
            Enqueued::Done(reply) => reply,
        }
    }

    /// Requests admitted and not answered yet.
    pub(crate) fn outstanding(&self) -> usize {
        self.shared.backlog.outstanding()
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
                return Ok(Enqueued::Done(Ok(Value::Int(0))));
            }
            if state.claim_unsent(&call) {
                return Ok(Enqueued::Done(Ok(Value::Int(0))));
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
    /// still sent and answered (the `redis` crate skips a request whose
    /// receiver is gone) and the executor comes back afterwards.
    fn direct(
        &self,
        executor: Box<dyn Executor>,
        call: Call,
        permit: Permit,
    ) -> FinishOnDrop<Reply> {
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
    pub(crate) fn close(&self) {
        self.shared.lock().closed = true;
        self.shared.wake.notify_one();
    }

    /// Closes the queue and waits until everything that was queued or
    /// running (releases in flight included) has been sent and answered.
    pub(crate) async fn drain(&self) {
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
    let mut replies: Vec<oneshot::Sender<Reply>> = Vec::new();
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
