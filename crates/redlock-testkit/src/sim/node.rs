//! [`SimNode`]: constructors, introspection and the [`Node`] implementation.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redlock_core::{
    async_trait, Acquire, BoxFuture, Extend, KeyState, Node, NodeError, Runtime, TokioRuntime,
};
use tokio::sync::Notify;

use super::state::*;
use super::*;

/// An in-memory [`Node`] with a controllable clock and fault switches.
///
/// Cheap to clone; clones share the same keys, queue and switches, so a test
/// keeps one clone as a handle while a `Redlock` owns another. See the
/// [module docs](crate::sim) for the ordering model.
#[derive(Clone)]
pub struct SimNode {
    pub(super) inner: Arc<Inner>,
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

    /// Watches registered and not yet woken or dropped.
    pub fn watchers(&self) -> usize {
        let mut st = self.inner.current();
        st.watchers.retain(|(_, tx)| !tx.is_closed());
        st.watchers.len()
    }

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
