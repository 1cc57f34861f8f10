//! For adapter authors: the bookkeeping behind [`Node::watch_release`].
//!
//! An adapter that can hear release announcements (the release script
//! publishes on [`release_channel`] of every key it deletes) keeps one
//! [`Watchers`] per node and a task of its own that holds the subscription.
//! [`Watchers::watch`] registers a waiter under the channel of each key and
//! returns at once; the adapter's task learns through the `on_change`
//! callback that the set of watched channels changed, reads it with
//! [`WatchersHandle::channels`], subscribes and unsubscribes, and passes
//! every message to [`WatchersHandle::announce`].
//!
//! A message wakes the longest-waiting watch of its channel that was not
//! woken yet, not all of them: one release frees the lock for one waiter,
//! and waking every waiter of the process would only have all but one fail
//! their attempt. The next release wakes the next one.
//!
//! [`Reconnect`] is the pause policy for the subscription's connection.
//!
//! [`Node::watch_release`]: crate::Node::watch_release

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_util::task::AtomicWaker;

use crate::runtime::BoxFuture;
use crate::scripts::release_channel;

/// The waiters of one node, by release channel. Dropping it (and every
/// watch) makes [`WatchersHandle::channels`] return `None`, the sign for the
/// adapter's task to end.
pub struct Watchers {
    shared: Arc<Shared>,
}

/// The adapter task's side of a [`Watchers`]: does not keep it alive.
#[derive(Clone)]
pub struct WatchersHandle {
    shared: Weak<Shared>,
}

struct Shared {
    state: Mutex<State>,
    /// Tells the adapter's task that the watched channels changed.
    on_change: Box<dyn Fn() + Send + Sync>,
    /// The channel a key's release is announced on, if any.
    channel_of: fn(&str) -> Option<String>,
    closed: AtomicBool,
}

#[derive(Default)]
struct State {
    /// Channel → the waiters watching it (watch id, its wake-up).
    channels: HashMap<String, Vec<(u64, Arc<Wake>)>>,
    next_id: u64,
}

/// One watch's wake-up.
#[derive(Default)]
struct Wake {
    waker: AtomicWaker,
    woken: AtomicBool,
}

impl fmt::Debug for Watchers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watchers")
            .field("channels", &self.shared.state().channels.len())
            .field("closed", &self.shared.closed.load(Ordering::Relaxed))
            .finish()
    }
}

impl fmt::Debug for WatchersHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WatchersHandle").finish_non_exhaustive()
    }
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The future [`Watchers::watch`] returns. It keeps its registration until
/// it is dropped, also after it completed, so that a waiter that re-arms
/// before letting go keeps the channel subscribed.
struct Watch {
    wake: Arc<Wake>,
    _registration: Registration,
}

impl Future for Watch {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.wake.woken.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        self.wake.waker.register(cx.waker());
        if self.wake.woken.load(Ordering::Acquire) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

/// Withdraws a watch when its future is dropped (woken or not).
struct Registration {
    shared: Arc<Shared>,
    id: u64,
    channels: Vec<String>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut emptied = false;
        {
            let mut st = self.shared.state();
            for ch in &self.channels {
                if let Some(waiters) = st.channels.get_mut(ch) {
                    waiters.retain(|(id, _)| *id != self.id);
                    if waiters.is_empty() {
                        st.channels.remove(ch);
                        emptied = true;
                    }
                }
            }
        }
        if emptied {
            (self.shared.on_change)();
        }
    }
}

impl Watchers {
    /// No waiters yet. `on_change` is called (without locks held) whenever
    /// a channel gains its first waiter or loses its last, and on
    /// [`close`](Self::close); it should only nudge the adapter's task.
    pub fn new(on_change: impl Fn() + Send + Sync + 'static) -> Self {
        Self::with_channels(on_change, |key| Some(release_channel(key)))
    }

    /// Like [`new`](Self::new), for a node whose releases are announced on
    /// `channel_of(key)` instead of [`release_channel`]: a Redis Cluster
    /// node announces on
    /// [`sharded_release_channel`](crate::scripts::sharded_release_channel).
    /// A key without a channel (`None`) is not watched.
    pub fn with_channels(
        on_change: impl Fn() + Send + Sync + 'static,
        channel_of: fn(&str) -> Option<String>,
    ) -> Self {
        Watchers {
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                on_change: Box::new(on_change),
                channel_of,
                closed: AtomicBool::new(false),
            }),
        }
    }

    /// The handle for the adapter's task.
    pub fn handle(&self) -> WatchersHandle {
        WatchersHandle {
            shared: Arc::downgrade(&self.shared),
        }
    }

    /// A future that completes once a release of any of `keys` is
    /// announced; `None` once closed, or when none of `keys` has a channel.
    /// What [`Node::watch_release`] returns.
    ///
    /// [`Node::watch_release`]: crate::Node::watch_release
    pub fn watch(&self, keys: &[String]) -> Option<BoxFuture<'static, ()>> {
        if self.shared.closed.load(Ordering::Acquire) {
            return None;
        }
        let channels: Vec<String> = keys
            .iter()
            .filter_map(|k| (self.shared.channel_of)(k))
            .collect();
        if channels.is_empty() {
            return None;
        }
        let wake = Arc::new(Wake::default());
        let (id, new_channel) = {
            let mut st = self.shared.state();
            let id = st.next_id;
            st.next_id = st.next_id.wrapping_add(1);
            let mut new_channel = false;
            for ch in &channels {
                let waiters = st.channels.entry(ch.clone()).or_insert_with(|| {
                    new_channel = true;
                    Vec::new()
                });
                waiters.push((id, wake.clone()));
            }
            (id, new_channel)
        };
        if new_channel {
            (self.shared.on_change)();
        }
        let registration = Registration {
            shared: self.shared.clone(),
            id,
            channels,
        };
        Some(Box::pin(Watch {
            wake,
            _registration: registration,
        }))
    }

    /// Refuses new watches and tells the adapter's task to end.
    pub fn close(&self) {
        self.shared.closed.store(true, Ordering::Release);
        (self.shared.on_change)();
    }
}

impl WatchersHandle {
    /// The channels watched now, or `None` when the [`Watchers`] was
    /// dropped or closed (the task should end).
    pub fn channels(&self) -> Option<HashSet<String>> {
        let shared = self.shared.upgrade()?;
        if shared.closed.load(Ordering::Acquire) {
            return None;
        }
        let st = shared.state();
        Some(st.channels.keys().cloned().collect())
    }

    /// A release was announced on `channel`: wakes the longest-waiting watch
    /// of it that was not woken yet.
    pub fn announce(&self, channel: &str) {
        let Some(shared) = self.shared.upgrade() else {
            return;
        };
        let st = shared.state();
        if let Some(waiters) = st.channels.get(channel) {
            if let Some((_, wake)) = waiters
                .iter()
                .find(|(_, w)| !w.woken.swap(true, Ordering::AcqRel))
            {
                wake.waker.wake();
            }
        }
    }
}

/// When to reconnect a release subscription: at once after losing a
/// connection whose subscriptions worked for at least 100 ms (a reset, a
/// restarted server); after failures to connect or subscribe, from 50 ms,
/// doubling up to 1 s.
#[derive(Debug, Default)]
pub struct Reconnect {
    failures: u32,
    subscribed_at: Option<Instant>,
}

impl Reconnect {
    /// The longest pause.
    pub const MAX: Duration = Duration::from_secs(1);
    /// How long subscriptions must have worked for their loss to be retried
    /// at once.
    pub const STABLE: Duration = Duration::from_millis(100);

    /// Subscribing succeeded.
    pub fn subscribed(&mut self) {
        self.failures = 0;
        self.subscribed_at = Some(Instant::now());
    }

    /// Connecting or subscribing failed: the pause before the next try.
    pub fn failed(&mut self) -> Duration {
        let pause = Duration::from_millis(50)
            .saturating_mul(1 << self.failures.min(5))
            .min(Self::MAX);
        self.failures = self.failures.saturating_add(1);
        pause
    }

    /// The connection was lost: the pause before reconnecting (zero after a
    /// connection that worked).
    pub fn lost(&mut self) -> Duration {
        let stable = self
            .subscribed_at
            .take()
            .is_some_and(|at| at.elapsed() >= Self::STABLE);
        if stable {
            Duration::ZERO
        } else {
            self.failed()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::task::Waker;

    use super::*;

    fn ready(f: &mut BoxFuture<'static, ()>) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        f.as_mut().poll(&mut cx).is_ready()
    }

    #[test]
    fn sharded_watchers_listen_on_the_keys_slot_channels() {
        use crate::scripts::sharded_release_channel;
        let watchers = Watchers::with_channels(|| {}, sharded_release_channel);
        let handle = watchers.handle();
        let mut watch = watchers.watch(&["job".to_owned()]).expect("open");
        let channel = sharded_release_channel("job").expect("has one");
        assert_eq!(handle.channels(), Some(HashSet::from([channel.clone()])));
        handle.announce(&release_channel("job"));
        assert!(!ready(&mut watch), "not the standalone channel");
        handle.announce(&channel);
        assert!(ready(&mut watch));
        assert!(
            watchers.watch(&["a}b".to_owned()]).is_none(),
            "no channel, no watch: the waiter polls"
        );
    }

    #[test]
    fn each_announcement_wakes_the_next_waiter_in_order() {
        let changes = Arc::new(AtomicUsize::new(0));
        let counted = changes.clone();
        let watchers = Watchers::new(move || {
            counted.fetch_add(1, Ordering::Relaxed);
        });
        let handle = watchers.handle();
        let keys = vec!["job".to_owned()];
        let mut first = watchers.watch(&keys).expect("open");
        let mut second = watchers.watch(&keys).expect("open");
        assert_eq!(changes.load(Ordering::Relaxed), 1, "one new channel");
        let channel = release_channel("job");
        assert_eq!(handle.channels(), Some(HashSet::from([channel.clone()])));
        assert!(!ready(&mut first) && !ready(&mut second));
        handle.announce(&channel);
        assert!(ready(&mut first) && !ready(&mut second));
        handle.announce(&channel);
        assert!(ready(&mut second));
        drop(first);
        assert_eq!(changes.load(Ordering::Relaxed), 1, "still watched");
        drop(second);
        assert_eq!(changes.load(Ordering::Relaxed), 2, "last watch withdrawn");
        assert_eq!(handle.channels(), Some(HashSet::new()));
    }

    #[test]
    fn a_watch_of_several_keys_is_withdrawn_from_each_channel() {
        let watchers = Watchers::new(|| {});
        let handle = watchers.handle();
        let keys = vec!["a".to_owned(), "b".to_owned()];
        let mut watch = watchers.watch(&keys).expect("open");
        assert_eq!(handle.channels().map(|c| c.len()), Some(2));
        handle.announce(&release_channel("b"));
        assert!(ready(&mut watch));
        drop(watch);
        assert_eq!(handle.channels(), Some(HashSet::new()));
    }

    #[test]
    fn a_closed_or_dropped_hub_gives_no_watch_and_ends_the_task() {
        let watchers = Watchers::new(|| {});
        let handle = watchers.handle();
        watchers.close();
        assert!(watchers.watch(&["job".to_owned()]).is_none());
        assert_eq!(handle.channels(), None);
        let watchers = Watchers::new(|| {});
        let handle = watchers.handle();
        drop(watchers);
        assert_eq!(handle.channels(), None);
    }

    #[test]
    fn reconnect_backs_off_on_failures_and_not_after_a_working_connection() {
        let mut r = Reconnect::default();
        assert_eq!(r.failed(), Duration::from_millis(50));
        assert_eq!(r.failed(), Duration::from_millis(100));
        assert_eq!(r.lost(), Duration::from_millis(200), "never subscribed");
        for _ in 0..10 {
            r.failed();
        }
        assert_eq!(r.failed(), Reconnect::MAX);
        r.subscribed();
        r.subscribed_at = Instant::now().checked_sub(Reconnect::STABLE);
        assert_eq!(r.lost(), Duration::ZERO);
        r.subscribed();
        assert_eq!(
            r.lost(),
            Duration::from_millis(50),
            "lost at once: a failure"
        );
    }
}
