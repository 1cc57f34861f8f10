//! Wake-on-release: one shared pub/sub connection per node, subscribed on
//! demand to the release channels that waiters watch.
//!
//! [`ReleaseHub::watch`] registers a waiter under the release channel of
//! each key (see [`release_channel`]) and returns at once; a background task
//! subscribes to channels that gained their first waiter and unsubscribes
//! from those that lost their last, batching whatever changed meanwhile.
//! A message on a channel wakes the longest-waiting watch of it that was not
//! woken yet (one release frees the lock for one waiter; the next release
//! wakes the next).
//!
//! Everything here is best effort, as the [`Node::watch_release`] contract
//! allows: a broken or paused pub/sub connection only means no wake-up, and
//! the waiter retries after its delay. The task reconnects while any channel
//! is watched: at once after losing a connection that worked, and after
//! failures backing off from 50 ms to 1 s.
//!
//! [`Node::watch_release`]: redlock_core::Node::watch_release

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::task::AtomicWaker;
use futures_util::StreamExt;
use redis::aio::{PubSubSink, PubSubStream};
use redis::Client;
use redlock_core::scripts::release_channel;
use redlock_core::BoxFuture;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::address::Redactor;

/// How long connecting or a SUBSCRIBE may take before the connection is
/// given up (a paused server).
const STEP_TIMEOUT: Duration = Duration::from_secs(1);
/// The longest pause between reconnection attempts. A connection that
/// worked for at least [`STABLE`] and then broke (a reset, a restarted
/// server) is replaced at once; failures to connect or subscribe back off
/// from 50 ms, doubling up to this.
const RECONNECT_PAUSE: Duration = Duration::from_secs(1);
/// How long a subscription must have worked for its loss to be retried at
/// once.
const STABLE: Duration = Duration::from_millis(100);

/// The node's side of the hub; dropping it (with every watch) ends the task.
#[derive(Debug)]
pub(crate) struct ReleaseHub {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    /// Asks the task to compare watched and subscribed channels.
    ping: mpsc::UnboundedSender<()>,
    closed: AtomicBool,
}

#[derive(Debug, Default)]
struct State {
    /// Channel → the waiters watching it (watch id, its wake-up).
    channels: HashMap<String, Vec<(u64, Arc<Wake>)>>,
    next_id: u64,
}

/// One watch's wake-up.
#[derive(Debug, Default)]
struct Wake {
    waker: AtomicWaker,
    woken: AtomicBool,
}

/// The future [`ReleaseHub::watch`] returns. It keeps its registration until
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

impl Shared {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
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
            let _ = self.shared.ping.send(());
        }
    }
}

impl ReleaseHub {
    /// Starts the hub's task on the current tokio runtime. It connects only
    /// once something is watched.
    pub(crate) fn spawn(client: Client, redact: Redactor, id: String) -> Option<Self> {
        let handle = tokio::runtime::Handle::try_current().ok()?;
        let (ping, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            ping,
            closed: AtomicBool::new(false),
        });
        let task = Task {
            client,
            redact,
            id,
            shared: Arc::downgrade(&shared),
            rx,
            conn: None,
            subscribed: HashSet::new(),
            retry_at: None,
            failures: 0,
            subscribed_at: None,
        };
        handle.spawn(task.run());
        Some(ReleaseHub { shared })
    }

    /// A future that completes once a release of any of `keys` is announced.
    pub(crate) fn watch(&self, keys: &[String]) -> Option<BoxFuture<'static, ()>> {
        if self.shared.closed.load(Ordering::Acquire) {
            return None;
        }
        let wake = Arc::new(Wake::default());
        let channels: Vec<String> = keys.iter().map(|k| release_channel(k)).collect();
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
            let _ = self.shared.ping.send(());
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

    /// Stops the task and its connection; later watches return `None`.
    pub(crate) fn close(&self) {
        self.shared.closed.store(true, Ordering::Release);
        let _ = self.shared.ping.send(());
    }
}

struct Task {
    client: Client,
    redact: Redactor,
    id: String,
    shared: Weak<Shared>,
    rx: mpsc::UnboundedReceiver<()>,
    conn: Option<(PubSubSink, PubSubStream)>,
    subscribed: HashSet<String>,
    retry_at: Option<Instant>,
    /// Failed connects or subscribes in a row (sets the next pause).
    failures: u32,
    /// When the current connection's subscriptions last succeeded.
    subscribed_at: Option<Instant>,
}

enum Event {
    Reconcile,
    Message(redis::Msg),
    Lost,
    Stop,
}

impl Task {
    async fn run(mut self) {
        loop {
            let event = self.next_event().await;
            match event {
                Event::Stop => return,
                Event::Message(msg) => self.fan_out(msg.get_channel_name()),
                Event::Lost => {
                    tracing::debug!(node = %self.id, "release subscription lost; waiters poll until it is back");
                    self.conn = None;
                    self.subscribed.clear();
                    let stable = self
                        .subscribed_at
                        .take()
                        .is_some_and(|at| at.elapsed() >= STABLE);
                    self.retry_at = Some(if stable {
                        Instant::now()
                    } else {
                        Instant::now() + self.backoff()
                    });
                }
                Event::Reconcile => {
                    while self.rx.try_recv().is_ok() {}
                    if !self.reconcile().await {
                        return;
                    }
                }
            }
        }
    }

    async fn next_event(&mut self) -> Event {
        let retry = self.retry_at;
        match self.conn.as_mut() {
            Some((_, stream)) => tokio::select! {
                ping = self.rx.recv() => match ping {
                    Some(()) => Event::Reconcile,
                    None => Event::Stop,
                },
                msg = stream.next() => match msg {
                    Some(m) => Event::Message(m),
                    None => Event::Lost,
                },
            },
            None => {
                let reconnect = async {
                    match retry {
                        Some(at) => tokio::time::sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    ping = self.rx.recv() => match ping {
                        Some(()) => Event::Reconcile,
                        None => Event::Stop,
                    },
                    () = reconnect => Event::Reconcile,
                }
            }
        }
    }

    fn fan_out(&self, channel: &str) {
        if let Some(shared) = self.shared.upgrade() {
            wake_next(&shared, channel);
        }
    }

    /// The pause before the next reconnection: 50 ms, doubling with every
    /// failure in a row, at most [`RECONNECT_PAUSE`].
    fn backoff(&mut self) -> Duration {
        let pause = Duration::from_millis(50)
            .saturating_mul(1 << self.failures.min(5))
            .min(RECONNECT_PAUSE);
        self.failures = self.failures.saturating_add(1);
        pause
    }

    /// Brings the subscriptions in line with what is watched. Returns
    /// `false` when the hub is gone or closed.
    async fn reconcile(&mut self) -> bool {
        let wanted: HashSet<String> = {
            let Some(shared) = self.shared.upgrade() else {
                return false;
            };
            if shared.closed.load(Ordering::Acquire) {
                return false;
            }
            let st = shared.state();
            st.channels.keys().cloned().collect()
        };
        if self.conn.is_none() {
            if self.retry_at.is_some_and(|at| Instant::now() < at) {
                return true;
            }
            self.retry_at = None;
            if wanted.is_empty() {
                return true;
            }
            match tokio::time::timeout(STEP_TIMEOUT, self.client.get_async_pubsub()).await {
                Ok(Ok(pubsub)) => {
                    self.conn = Some(pubsub.split());
                    self.subscribed.clear();
                }
                Ok(Err(e)) => {
                    tracing::debug!(node = %self.id, "release subscription: connect failed: {}", self.redact.scrub(&e.to_string()));
                    self.retry_at = Some(Instant::now() + self.backoff());
                    return true;
                }
                Err(_) => {
                    tracing::debug!(node = %self.id, "release subscription: connect timed out");
                    self.retry_at = Some(Instant::now() + self.backoff());
                    return true;
                }
            }
        }
        let add: Vec<String> = wanted.difference(&self.subscribed).cloned().collect();
        let remove: Vec<String> = self.subscribed.difference(&wanted).cloned().collect();
        let Some((sink, _)) = self.conn.as_mut() else {
            return true;
        };
        let mut ok = true;
        if !add.is_empty() {
            match tokio::time::timeout(STEP_TIMEOUT, sink.subscribe(&add)).await {
                Ok(Ok(())) => {
                    self.subscribed.extend(add);
                    self.failures = 0;
                    self.subscribed_at = Some(Instant::now());
                }
                _ => ok = false,
            }
        }
        if ok && !remove.is_empty() {
            match tokio::time::timeout(STEP_TIMEOUT, sink.unsubscribe(&remove)).await {
                Ok(Ok(())) => {
                    for ch in &remove {
                        self.subscribed.remove(ch);
                    }
                }
                _ => ok = false,
            }
        }
        if !ok {
            tracing::debug!(node = %self.id, "release subscription failed; reconnecting later");
            self.conn = None;
            self.subscribed.clear();
            self.retry_at = Some(Instant::now() + self.backoff());
        }
        true
    }
}

/// Wakes the longest-waiting watch of `channel` not woken yet, not all of
/// them: one release frees the lock for one waiter, and waking every waiter
/// of this process would only have all but one fail their attempt. The next
/// release wakes the next one; the winner's watch is withdrawn.
fn wake_next(shared: &Shared, channel: &str) {
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

#[cfg(test)]
mod tests {
    use std::task::Waker;

    use super::*;

    fn hub() -> (ReleaseHub, mpsc::UnboundedReceiver<()>) {
        let (ping, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            ping,
            closed: AtomicBool::new(false),
        });
        (ReleaseHub { shared }, rx)
    }

    fn ready(f: &mut BoxFuture<'static, ()>) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        f.as_mut().poll(&mut cx).is_ready()
    }

    #[test]
    fn each_announcement_wakes_the_next_waiter_in_order() {
        let (hub, mut pings) = hub();
        let keys = ["job".to_string()];
        let ch = release_channel("job");
        let mut a = hub.watch(&keys).expect("open");
        let mut b = hub.watch(&keys).expect("open");
        let mut c = hub.watch(&keys).expect("open");
        assert!(pings.try_recv().is_ok(), "first watch asks to subscribe");
        assert!(
            pings.try_recv().is_err(),
            "later watches of the channel do not"
        );
        assert!(!ready(&mut a) && !ready(&mut b) && !ready(&mut c));

        wake_next(&hub.shared, &ch);
        assert!(ready(&mut a));
        assert!(!ready(&mut b) && !ready(&mut c));
        // `a` re-arms (a new watch at the back) before letting go.
        let mut a2 = hub.watch(&keys).expect("open");
        drop(a);
        wake_next(&hub.shared, &ch);
        assert!(ready(&mut b));
        assert!(!ready(&mut c) && !ready(&mut a2));
        drop(b);
        drop(c);
        wake_next(&hub.shared, &ch);
        assert!(ready(&mut a2));
        assert!(pings.try_recv().is_err(), "the channel never emptied");
        drop(a2);
        assert!(pings.try_recv().is_ok(), "last watch gone: unsubscribe");
        assert!(hub.shared.state().channels.is_empty());
        wake_next(&hub.shared, &ch);
    }

    #[test]
    fn a_closed_hub_gives_no_watch() {
        let (hub, _pings) = hub();
        hub.close();
        assert!(hub.watch(&["job".to_string()]).is_none());
    }
}
