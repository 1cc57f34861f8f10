//! The in-process queue: lock calls of one [`Redlock`](crate::Redlock) (and
//! its clones) that wait for the same resources take turns instead of racing.
//!
//! Without it, every waiting call polls the nodes on its own, a release wakes
//! them all (or whichever wins the race), and the call that just released
//! usually takes the lock straight back with its next `lock` call, because
//! it is already running while the others are still being woken. With it:
//!
//! - a call that has to wait joins a FIFO queue per set of keys; only the
//!   call at the head makes attempts and watches for releases; the others
//!   wait for their turn and send nothing;
//! - a new call that finds others waiting joins the back of the queue
//!   without an attempt of its own (no barging), unless it may not retry;
//! - when the head gets the lock, the next call becomes head and waits for
//!   a release; when a lock of this process on those keys is released, the
//!   head is told as soon as the release requests are sent, so its acquire
//!   goes out right behind them on every node's ordered connection (one
//!   round trip per handover instead of release, announcement, acquire);
//! - a head that gives up or is cancelled hands its turn on at once.
//!
//! Calls in other processes are unaffected: they contend through the nodes
//! as before. A queued call spends its retry budget while it waits (each
//! retry delay counts as an attempt) and keeps its real last attempt, so
//! `retry_count` and the deadline bound a call as they do without the queue.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;

/// Every queue of one `Redlock`.
#[derive(Debug, Default)]
pub(crate) struct LocalQueues {
    /// Calls queued over all key sets: lets the uncontended path skip the
    /// lock and the map.
    waiting: AtomicUsize,
    queues: Mutex<HashMap<Vec<String>, VecDeque<Arc<Waiter>>>>,
}

/// One queued call.
#[derive(Debug, Default)]
struct Waiter {
    /// At the front of its queue: the one call that makes attempts.
    head: AtomicBool,
    /// Attempt now: the resources were just released in this process, or
    /// the head before this one gave up.
    go: AtomicBool,
    waker: AtomicWaker,
}

impl Waiter {
    fn signal(&self) {
        self.waker.wake();
    }
}

fn canonical(keys: &[String]) -> Vec<String> {
    let mut k = keys.to_vec();
    k.sort_unstable();
    k
}

impl LocalQueues {
    fn map(&self) -> MutexGuard<'_, HashMap<Vec<String>, VecDeque<Arc<Waiter>>>> {
        self.queues.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether other calls of this process wait for exactly these keys.
    pub(crate) fn has_waiters(&self, keys: &[String]) -> bool {
        if self.waiting.load(Ordering::Acquire) == 0 {
            return false;
        }
        self.map()
            .get(&canonical(keys))
            .is_some_and(|q| !q.is_empty())
    }

    /// Tells the head of the queue for `keys` that a lock of this process on
    /// them was just released (its release requests are sent).
    pub(crate) fn released(&self, keys: &[String]) {
        if self.waiting.load(Ordering::Acquire) == 0 {
            return;
        }
        let head = self
            .map()
            .get(&canonical(keys))
            .and_then(|q| q.front().cloned());
        if let Some(head) = head {
            head.go.store(true, Ordering::Release);
            head.signal();
        }
    }
}

/// A call's place in a queue; leaving (drop) hands the turn on.
pub(crate) struct Ticket {
    queues: Arc<LocalQueues>,
    key: Vec<String>,
    me: Arc<Waiter>,
    /// Set by [`Ticket::acquired`]: the next call should wait for a release
    /// rather than attempt at once.
    acquired: bool,
}

impl Ticket {
    /// Joins the back of the queue for `keys`.
    pub(crate) fn join(queues: &Arc<LocalQueues>, keys: &[String]) -> Ticket {
        let key = canonical(keys);
        let me = Arc::new(Waiter::default());
        {
            let mut map = queues.map();
            let queue = map.entry(key.clone()).or_default();
            if queue.is_empty() {
                me.head.store(true, Ordering::Release);
            }
            queue.push_back(me.clone());
            queues.waiting.fetch_add(1, Ordering::AcqRel);
        }
        Ticket {
            queues: queues.clone(),
            key,
            me,
            acquired: false,
        }
    }

    /// Whether this call is at the front and may attempt.
    pub(crate) fn is_head(&self) -> bool {
        self.me.head.load(Ordering::Acquire)
    }

    /// Takes the "attempt now" signal, if it was given.
    pub(crate) fn take_go(&self) -> bool {
        self.me.go.swap(false, Ordering::AcqRel)
    }

    /// Completes when this call becomes the head.
    pub(crate) fn turn(&self) -> Signal {
        Signal {
            waiter: self.me.clone(),
            which: Which::Head,
        }
    }

    /// Completes when this call is told to attempt now.
    pub(crate) fn go(&self) -> Signal {
        Signal {
            waiter: self.me.clone(),
            which: Which::Go,
        }
    }

    /// Leaves the queue after getting the lock: the next call becomes head
    /// and waits for the release.
    pub(crate) fn acquired(mut self) {
        self.acquired = true;
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let next = {
            let mut map = self.queues.map();
            let Some(queue) = map.get_mut(&self.key) else {
                return;
            };
            let was_head = queue.front().is_some_and(|w| Arc::ptr_eq(w, &self.me));
            queue.retain(|w| !Arc::ptr_eq(w, &self.me));
            self.queues.waiting.fetch_sub(1, Ordering::AcqRel);
            let next = if was_head {
                queue.front().cloned()
            } else {
                None
            };
            if queue.is_empty() {
                map.remove(&self.key);
            }
            next
        };
        if let Some(next) = next {
            if !self.acquired || self.me.go.load(Ordering::Acquire) {
                // Gave up or was cancelled (or a release came meanwhile):
                // the next call should attempt at once.
                next.go.store(true, Ordering::Release);
            }
            next.head.store(true, Ordering::Release);
            next.signal();
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Which {
    Head,
    Go,
}

/// A wait for a [`Ticket`]'s turn or go signal.
pub(crate) struct Signal {
    waiter: Arc<Waiter>,
    which: Which,
}

impl Signal {
    fn ready(&self) -> bool {
        match self.which {
            Which::Head => self.waiter.head.load(Ordering::Acquire),
            Which::Go => self.waiter.go.load(Ordering::Acquire),
        }
    }
}

impl Future for Signal {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.ready() {
            return Poll::Ready(());
        }
        self.waiter.waker.register(cx.waker());
        if self.ready() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}
