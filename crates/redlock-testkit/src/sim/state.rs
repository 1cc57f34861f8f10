//! The node's state and its FIFO of requests, processed lazily in order
//! (see the [module docs](super) for the ordering model).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use redlock_core::node::ttl_millis;
use redlock_core::{Acquire, Extend, KeyState, NodeError, NodeOutcome, Operation, Runtime};
use tokio::sync::Notify;

use super::*;

pub(super) struct Inner {
    pub(super) id: String,
    pub(super) runtime: Arc<dyn Runtime>,
    pub(super) state: Mutex<State>,
    pub(super) notify: Notify,
}

#[derive(Default)]
pub(super) struct State {
    pub(super) store: HashMap<String, Entry>,
    pub(super) queue: VecDeque<Queued>,
    pub(super) last_due: Option<Instant>,
    pub(super) next_ticket: u64,
    pub(super) results: HashMap<u64, Result<Reply, NodeError>>,
    pub(super) abandoned: HashSet<u64>,
    pub(super) log: Vec<LoggedOp>,
    pub(super) refused: Vec<RefusedCall>,
    pub(super) next_seq: u64,
    pub(super) calls: u64,
    pub(super) down: bool,
    pub(super) hung: bool,
    pub(super) delay: Duration,
    pub(super) fail_after: Option<u64>,
    pub(super) backlog: Option<usize>,
    pub(super) closed: bool,
    pub(super) announce: Announce,
    pub(super) watchers: Vec<(Vec<String>, tokio::sync::oneshot::Sender<()>)>,
}

pub(super) struct Entry {
    pub(super) token: String,
    pub(super) expires_at: Option<Instant>,
}

impl Entry {
    pub(super) fn live_at(&self, at: Instant) -> bool {
        self.expires_at.is_none_or(|e| e > at)
    }
}

pub(super) struct Queued {
    pub(super) ticket: u64,
    pub(super) due: Instant,
    pub(super) request: Request,
}

pub(super) enum Request {
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
    pub(super) fn is_release(&self) -> bool {
        matches!(self, Request::Release { .. })
    }

    pub(super) fn describe(&self) -> (Operation, Vec<String>, Option<String>) {
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

pub(super) enum Reply {
    Acquire(Acquire),
    Release(u64),
    Extend(Extend),
    Inspect(Vec<KeyState>),
}

pub(super) fn expiry(at: Instant, ttl: Duration) -> Option<Instant> {
    // Redis rounds PX up to whole milliseconds; so does the sim. A TTL too
    // large for the clock never expires.
    at.checked_add(Duration::from_millis(ttl_millis(ttl)))
}

impl State {
    /// Applies, in order, every queued request due by `now`.
    pub(super) fn process(&mut self, now: Instant) {
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
    pub(super) fn announce_release(&mut self, key: &str) {
        let (fire, keep) = std::mem::take(&mut self.watchers)
            .into_iter()
            .partition(|(keys, _)| keys.iter().any(|k| k == key));
        self.watchers = keep;
        for (_, tx) in fire {
            let _ = tx.send(());
        }
    }

    pub(super) fn live(&mut self, key: &str, at: Instant) -> Option<&Entry> {
        if self.store.get(key).is_some_and(|e| !e.live_at(at)) {
            self.store.remove(key);
        }
        self.store.get(key)
    }

    pub(super) fn apply(&mut self, request: Request, at: Instant) -> (Reply, LoggedOp) {
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
pub(super) struct Ticket<'a> {
    pub(super) inner: &'a Inner,
    pub(super) ticket: u64,
    pub(super) done: bool,
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
    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Locks the state after applying every request due by now.
    pub(super) fn current(&self) -> MutexGuard<'_, State> {
        let now = self.runtime.now();
        let mut st = self.lock();
        st.process(now);
        st
    }

    pub(super) async fn submit(&self, request: Request) -> Result<Reply, NodeError> {
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
