//! The per-node request queue that keeps order on the wire.
//!
//! A call is pushed onto an unbounded channel synchronously, on the first
//! poll of the node's future, so it is committed to the node's order even if
//! the caller drops the future right after. One driver task per node takes
//! everything that has queued up, sends it as one pipeline (one round trip),
//! waits for the replies, and only then sends the next batch. A release can
//! therefore never overtake the acquire before it, whatever the caller does
//! with its futures, and concurrent lock requests share round trips.

use redis::Value;
use redlock_core::NodeError;
use tokio::sync::{mpsc, oneshot};

use crate::scripts::{Call, Kind};

/// Carries out batches of calls, in order, for one node.
#[async_trait::async_trait]
pub(crate) trait Executor: Send + 'static {
    /// Runs once when the driver starts: connect and load scripts.
    async fn warm_up(&mut self);
    /// Executes `calls` in order; returns one result per call.
    async fn execute(&mut self, calls: &[Call]) -> Vec<Result<Value, NodeError>>;
}

struct Request {
    call: Call,
    reply: oneshot::Sender<Result<Value, NodeError>>,
}

/// The sending side of a node's queue.
#[derive(Debug)]
pub(crate) struct Queue {
    tx: std::sync::Mutex<Option<mpsc::UnboundedSender<Request>>>,
    driver: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Queue {
    /// Spawns the driver on the current tokio runtime.
    pub(crate) fn spawn<E: Executor>(executor: E, max_batch: usize) -> Result<Self, crate::Error> {
        let handle = tokio::runtime::Handle::try_current().map_err(|_| crate::Error::NoRuntime)?;
        let (tx, rx) = mpsc::unbounded_channel();
        let driver = handle.spawn(drive(rx, executor, max_batch.max(1)));
        Ok(Queue {
            tx: std::sync::Mutex::new(Some(tx)),
            driver: std::sync::Mutex::new(Some(driver)),
        })
    }

    /// Pushes `call` now and waits for its reply.
    pub(crate) async fn call(&self, call: Call) -> Result<Value, NodeError> {
        let (reply, rx) = oneshot::channel();
        {
            let guard = self.tx.lock().unwrap_or_else(|p| p.into_inner());
            let tx = guard.as_ref().ok_or(NodeError::Closed)?;
            tx.send(Request { call, reply })
                .map_err(|_| NodeError::Closed)?;
        }
        rx.await.map_err(|_| NodeError::Closed)?
    }

    /// Stops accepting calls; the driver finishes what is queued and exits.
    pub(crate) fn close(&self) {
        self.tx.lock().unwrap_or_else(|p| p.into_inner()).take();
    }

    /// Closes the queue and waits until the driver has sent everything that
    /// was queued (releases in flight included) and stopped.
    pub(crate) async fn drain(&self) {
        self.close();
        let driver = self.driver.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(driver) = driver {
            let _ = driver.await;
        }
    }
}

async fn drive<E: Executor>(mut rx: mpsc::UnboundedReceiver<Request>, mut executor: E, max: usize) {
    executor.warm_up().await;
    // Calls and their reply slots side by side, so the calls are handed to
    // the executor as they are (no copy per batch); both are reused.
    let mut calls: Vec<Call> = Vec::new();
    let mut replies: Vec<oneshot::Sender<Result<Value, NodeError>>> = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some(r) = next.take() {
            // An extend whose caller is gone need not be sent. Acquires are
            // sent even then: the core decides as soon as a quorum answered,
            // and a key on every node, not just on a bare quorum, is what
            // keeps a lock safe when one node loses its keys early. Whatever
            // an acquire takes is released by the release queued after it
            // (the ordering contract). Releases are always sent.
            if r.call.kind != Kind::Extend || !r.reply.is_closed() {
                calls.push(r.call);
                replies.push(r.reply);
            }
            if calls.len() < max {
                next = rx.try_recv().ok();
            }
        }
        if calls.is_empty() {
            continue;
        }
        let mut results = executor.execute(&calls).await.into_iter();
        calls.clear();
        for reply in replies.drain(..) {
            let result = results
                .next()
                .unwrap_or_else(|| Err(NodeError::Protocol("missing reply in pipeline".into())));
            let _ = reply.send(result);
        }
    }
}
