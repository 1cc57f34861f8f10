//! Wake-on-release: the head of a lock call waits for its retry delay, a
//! release announced by the nodes, or a release in this process, whichever
//! comes first.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::{self, Either};

use crate::local::Ticket;
use crate::runtime::{BoxFuture, Runtime};
use crate::shared::Shared;
use crate::telemetry;

/// What ended a wait between attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Woke {
    /// The retry delay passed.
    Delay,
    /// The nodes announced a release (another client's, possibly).
    Announced,
    /// A lock of this process on the same keys was released, or the turn
    /// was handed on.
    Local,
}

/// The release watch of one lock call: armed after the first conflict,
/// then re-armed before every later attempt, so that a release between a
/// failed attempt and the wait after it is not missed.
pub(super) struct Watch {
    shared: Arc<Shared>,
    keys: Arc<[String]>,
    armed: Option<BoxFuture<'static, ()>>,
}

impl Watch {
    /// A watch for `keys`, not armed yet.
    pub fn new(shared: &Arc<Shared>, keys: &Arc<[String]>) -> Self {
        Watch {
            shared: shared.clone(),
            keys: keys.clone(),
            armed: None,
        }
    }

    /// Whether a watch is in place.
    pub fn is_armed(&self) -> bool {
        self.armed.is_some()
    }

    /// Puts a fresh watch in place (none when no node announces releases).
    /// Arming before dropping the old one keeps the subscription in place.
    pub fn arm(&mut self) {
        let next = combine(&self.shared, &self.keys);
        self.armed = next;
    }

    /// Re-arms only a watch that is in place.
    pub fn rearm(&mut self) {
        if self.is_armed() {
            self.arm();
        }
    }

    /// Drops the watch: only the head of a queue watches, and a watch held
    /// by another call would take wake-ups meant for it.
    pub fn clear(&mut self) {
        self.armed = None;
    }

    /// Waits for `delay`, cut short by an announced release or by the
    /// ticket's go signal (a release in this process).
    pub async fn wait(&mut self, runtime: &dyn Runtime, delay: Duration, ticket: &Ticket) -> Woke {
        let go = ticket.go();
        let wake: BoxFuture<'_, Woke> = match self.armed.as_mut() {
            Some(w) => Box::pin(async move {
                match future::select(go, w).await {
                    Either::Left(_) => Woke::Local,
                    Either::Right(_) => Woke::Announced,
                }
            }),
            None => Box::pin(async move {
                go.await;
                Woke::Local
            }),
        };
        let woke = match future::select(runtime.sleep(delay), wake).await {
            Either::Left(_) => Woke::Delay,
            Either::Right((woke, _)) => woke,
        };
        let woke = if ticket.take_go() { Woke::Local } else { woke };
        if woke != Woke::Delay {
            tracing::debug!("woken by a release");
            telemetry::woken_by_release();
        }
        woke
    }
}

/// One watch over every node that announces releases, or `None`. It fires
/// once a quorum of them (or all, if fewer announce) announced a release: a
/// holder's release reaches every node it held, and waking on the first
/// node alone would let the later nodes' announcements of the same release
/// fire the next watch too (one useless attempt per waiter).
fn combine(shared: &Shared, keys: &[String]) -> Option<BoxFuture<'static, ()>> {
    let mut watches: Vec<BoxFuture<'static, ()>> = shared
        .nodes
        .iter()
        .filter_map(|n| n.watch_release(keys))
        .collect();
    if watches.is_empty() {
        return None;
    }
    let needed = shared.quorum.min(watches.len());
    Some(Box::pin(async move {
        let mut announced = 0;
        while announced < needed {
            let (_, _, rest) = future::select_all(watches).await;
            watches = rest;
            announced += 1;
        }
    }))
}
