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

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use redis::Value;
use redlock_core::{BoxFuture, NodeError};
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
}

type Reply = Result<Value, NodeError>;

struct Request {
    call: Call,
    reply: oneshot::Sender<Reply>,
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
}

struct Shared {
    state: Mutex<State>,
    /// Wakes the driver: the executor came back with requests waiting, or
    /// the queue was closed.
    wake: Notify,
    max_batch: usize,
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

/// A request running on the caller's task. Dropped before it finished, it
/// is handed to the driver so that it is still sent and answered (the
/// `redis` crate skips a request whose receiver is gone) and the executor
/// comes back afterwards.
struct Detached {
    run: Option<BoxFuture<'static, Reply>>,
    shared: Arc<Shared>,
}

impl Future for Detached {
    type Output = Reply;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Reply> {
        let Some(run) = self.run.as_mut() else {
            return Poll::Ready(Err(NodeError::Closed));
        };
        let reply = std::task::ready!(run.as_mut().poll(cx));
        self.run = None;
        Poll::Ready(reply)
    }
}

impl Drop for Detached {
    fn drop(&mut self) {
        if let Some(run) = self.run.take() {
            self.shared.lock().adopted = Some(run);
            self.shared.wake.notify_one();
        }
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
    pub(crate) fn spawn<E: Executor>(executor: E, max_batch: usize) -> Result<Self, crate::Error> {
        let runtime = Handle::try_current().map_err(|_| crate::Error::NoRuntime)?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                executor: None,
                waiting: VecDeque::new(),
                closed: false,
                adopted: None,
            }),
            wake: Notify::new(),
            max_batch: max_batch.max(1),
        });
        let driver = runtime.spawn(drive(shared.clone(), Box::new(executor)));
        Ok(Queue {
            shared,
            driver: Mutex::new(Some(driver)),
        })
    }

    /// Commits `call` to the node's order now and waits for its reply.
    pub(crate) async fn call(&self, call: Call) -> Result<Value, NodeError> {
        let rx = match self.enqueue(call)? {
            Ok(direct) => return direct.await,
            Err(rx) => rx,
        };
        rx.await.map_err(|_| NodeError::Closed)?
    }

    /// Takes the idle executor for `call` (`Ok`), or queues `call` behind
    /// the requests already waiting (`Err`, with the reply's receiver).
    fn enqueue(&self, call: Call) -> Result<Result<Detached, oneshot::Receiver<Reply>>, NodeError> {
        let mut state = self.shared.lock();
        if state.closed {
            return Err(NodeError::Closed);
        }
        if state.waiting.is_empty() {
            if let Some(executor) = state.executor.take() {
                drop(state);
                return Ok(Ok(self.direct(executor, call)));
            }
        }
        let (reply, rx) = oneshot::channel();
        state.waiting.push_back(Request { call, reply });
        Ok(Err(rx))
    }

    fn direct(&self, executor: Box<dyn Executor>, call: Call) -> Detached {
        let mut lease = Lease {
            shared: self.shared.clone(),
            executor: Some(executor),
        };
        let run: BoxFuture<'static, Reply> = Box::pin(async move {
            let Some(executor) = lease.executor.as_mut() else {
                return Err(NodeError::Closed);
            };
            let reply = executor.execute_one(&call).await;
            drop(lease);
            reply
        });
        Detached {
            run: Some(run),
            shared: self.shared.clone(),
        }
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
    // Calls and their reply slots side by side, so the calls are handed to
    // the executor as they are (no copy per batch); both are reused.
    let mut calls: Vec<Call> = Vec::new();
    let mut replies: Vec<oneshot::Sender<Reply>> = Vec::new();
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
            if state.waiting.is_empty() {
                if state.closed && idle {
                    return;
                }
                None
            } else if idle {
                while calls.len() < shared.max_batch {
                    let Some(r) = state.waiting.pop_front() else {
                        break;
                    };
                    // An extend whose caller is gone need not be sent.
                    // Acquires are sent even then: the core decides as soon
                    // as a quorum answered, and a key on every node, not just
                    // on a bare quorum, is what keeps a lock safe when one
                    // node loses its keys early. Whatever an acquire takes is
                    // released by the release queued after it (the ordering
                    // contract). Releases are always sent.
                    if r.call.kind != Kind::Extend || !r.reply.is_closed() {
                        calls.push(r.call);
                        replies.push(r.reply);
                    }
                }
                state.executor.take()
            } else {
                None
            }
        };
        let Some(exec) = executor.as_mut() else {
            // Nothing to do until the executor comes back with requests
            // waiting, or the queue is closed.
            shared.wake.notified().await;
            continue;
        };
        if !calls.is_empty() {
            let mut results = exec.execute(&calls).await.into_iter();
            calls.clear();
            for reply in replies.drain(..) {
                let result = results.next().unwrap_or_else(|| {
                    Err(NodeError::Protocol("missing reply in pipeline".into()))
                });
                let _ = reply.send(result);
            }
        }
        if let Some(exec) = executor {
            let mut state = shared.lock();
            state.executor = Some(exec);
        }
    }
}
