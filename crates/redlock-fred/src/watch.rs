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
//! The connection is a fred [`Client`] of its own, made from the node's
//! configuration but without a reconnect policy: the task reconnects by
//! itself, only while any channel is watched (at once after losing a
//! connection that worked; after failures, backing off from 50 ms to 1 s),
//! and subscribes again to what is watched then.
//!
//! Everything here is best effort, as the [`Node::watch_release`] contract
//! allows: a broken or paused pub/sub connection only means no wake-up, and
//! the waiter retries after its delay.
//!
//! [`Node::watch_release`]: redlock_core::Node::watch_release

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use fred::clients::Client;
use fred::interfaces::{ClientLike, EventInterface, PubsubInterface};
use fred::types::config::{Config, ConnectionConfig, PerformanceConfig};
use fred::types::{ConnectHandle, Message};
use futures_util::task::AtomicWaker;
use redlock_core::scripts::release_channel;
use redlock_core::BoxFuture;
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;

use crate::error::Secrets;

/// How long connecting, a SUBSCRIBE or an UNSUBSCRIBE may take before the
/// connection is given up (a paused server).
const STEP_TIMEOUT: Duration = Duration::from_secs(1);
/// The longest pause between reconnection attempts. A connection that
/// worked for at least [`STABLE`] and then broke (a reset, a restarted
/// server) is replaced at once; failures to connect or subscribe back off
/// from 50 ms, doubling up to this.
const RECONNECT_PAUSE: Duration = Duration::from_secs(1);
/// How long a subscription must have worked for its loss to be retried at
/// once.
const STABLE: Duration = Duration::from_millis(100);
/// Messages fred buffers for the task before the oldest are dropped (a lag
/// wakes one waiter of every channel, see [`Task::run`]).
const MESSAGE_BUFFER: usize = 1024;

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
    fn state(&self) -> MutexGuard<'_, State> {
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

/// What the task needs to open its own connection to the node's server.
pub(crate) struct Recipe {
    config: Config,
    connection: ConnectionConfig,
    perf: PerformanceConfig,
}

impl Recipe {
    /// The settings of `client` (server, credentials, TLS, database), for a
    /// connection that fails fast, has no reconnect policy and buffers more
    /// messages.
    pub(crate) fn from_client(client: &Client) -> Self {
        let mut config = client.client_config();
        config.fail_fast = true;
        let mut connection = client.connection_config().clone();
        connection.connection_timeout = STEP_TIMEOUT;
        connection.internal_command_timeout = STEP_TIMEOUT;
        connection.max_command_attempts = 1;
        let mut perf = client.perf_config();
        perf.broadcast_channel_capacity = perf.broadcast_channel_capacity.max(MESSAGE_BUFFER);
        Recipe {
            config,
            connection,
            perf,
        }
    }

    fn client(&self) -> Client {
        Client::new(
            self.config.clone(),
            Some(self.perf.clone()),
            Some(self.connection.clone()),
            None,
        )
    }
}

impl ReleaseHub {
    /// Starts the hub's task on the current tokio runtime (`None` outside
    /// one). It connects only once something is watched.
    pub(crate) fn spawn(recipe: Recipe, secrets: Secrets, id: String) -> Option<Self> {
        let handle = tokio::runtime::Handle::try_current().ok()?;
        let (ping, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            ping,
            closed: AtomicBool::new(false),
        });
        let task = Task {
            recipe,
            secrets,
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
    /// `None` once the hub is closed.
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

    /// Stops the task and closes its connection in the background; later
    /// watches return `None`. Does not wait.
    pub(crate) fn close(&self) {
        self.shared.closed.store(true, Ordering::Release);
        let _ = self.shared.ping.send(());
    }
}

/// The task's pub/sub connection.
struct Conn {
    client: Client,
    /// fred's connection task; it ends when the connection does (there is no
    /// reconnect policy).
    task: ConnectHandle,
    messages: broadcast::Receiver<Message>,
}

impl Conn {
    /// Closes the connection without waiting for a server that may not
    /// answer.
    fn abort(self) {
        self.task.abort();
    }

    /// Says QUIT (briefly), then closes the connection.
    async fn quit(self) {
        let _ = tokio::time::timeout(STEP_TIMEOUT, self.client.quit()).await;
        self.task.abort();
    }
}

struct Task {
    recipe: Recipe,
    secrets: Secrets,
    id: String,
    shared: Weak<Shared>,
    rx: mpsc::UnboundedReceiver<()>,
    conn: Option<Conn>,
    subscribed: HashSet<String>,
    retry_at: Option<Instant>,
    /// Failed connects or subscribes in a row (sets the next pause).
    failures: u32,
    /// When the current connection's subscriptions last succeeded.
    subscribed_at: Option<Instant>,
}

enum Event {
    Reconcile,
    Message(Message),
    /// Messages were dropped because the task fell behind.
    Lagged,
    Lost,
    Stop,
}

impl Task {
    async fn run(mut self) {
        loop {
            match self.next_event().await {
                Event::Stop => break,
                Event::Message(msg) => self.fan_out(&msg.channel),
                Event::Lagged => {
                    // Some announcements were lost; a needless wake-up only
                    // costs one attempt, a missed one the whole delay.
                    tracing::debug!(node = %self.id, "release messages dropped; waking one waiter per channel");
                    if let Some(shared) = self.shared.upgrade() {
                        let channels: Vec<String> =
                            shared.state().channels.keys().cloned().collect();
                        for ch in &channels {
                            wake_next(&shared, ch);
                        }
                    }
                }
                Event::Lost => {
                    tracing::debug!(node = %self.id, "release subscription lost; waiters poll until it is back");
                    if let Some(conn) = self.conn.take() {
                        conn.abort();
                    }
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
                        break;
                    }
                }
            }
        }
        if let Some(conn) = self.conn.take() {
            conn.quit().await;
        }
    }

    async fn next_event(&mut self) -> Event {
        let retry = self.retry_at;
        match self.conn.as_mut() {
            Some(conn) => tokio::select! {
                ping = self.rx.recv() => match ping {
                    Some(()) => Event::Reconcile,
                    None => Event::Stop,
                },
                msg = conn.messages.recv() => match msg {
                    Ok(m) => Event::Message(m),
                    Err(broadcast::error::RecvError::Lagged(_)) => Event::Lagged,
                    Err(broadcast::error::RecvError::Closed) => Event::Lost,
                },
                _ = &mut conn.task => Event::Lost,
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

    /// Opens a new pub/sub connection, bounded by [`STEP_TIMEOUT`].
    async fn connect(&self) -> Option<Conn> {
        let client = self.recipe.client();
        // Listen before anything can be subscribed.
        let messages = client.message_rx();
        let mut task = client.connect();
        let connected = tokio::select! {
            r = tokio::time::timeout(STEP_TIMEOUT, client.wait_for_connect()) => r,
            // Failed before `wait_for_connect` listened, or closed at once.
            _ = &mut task => {
                tracing::debug!(node = %self.id, "release subscription: connect failed");
                return None;
            }
        };
        match connected {
            Ok(Ok(())) => Some(Conn {
                client,
                task,
                messages,
            }),
            Ok(Err(e)) => {
                tracing::debug!(node = %self.id, error = %self.secrets.redact(&e.to_string()), "release subscription: connect failed");
                task.abort();
                None
            }
            Err(_) => {
                tracing::debug!(node = %self.id, "release subscription: connect timed out");
                task.abort();
                None
            }
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
            match self.connect().await {
                Some(conn) => {
                    self.conn = Some(conn);
                    self.subscribed.clear();
                }
                None => {
                    self.retry_at = Some(Instant::now() + self.backoff());
                    return true;
                }
            }
        }
        let add: Vec<String> = wanted.difference(&self.subscribed).cloned().collect();
        let remove: Vec<String> = self.subscribed.difference(&wanted).cloned().collect();
        let Some(conn) = self.conn.as_ref() else {
            return true;
        };
        let mut failure = None;
        if !add.is_empty() {
            match tokio::time::timeout(STEP_TIMEOUT, conn.client.subscribe(add.clone())).await {
                Ok(Ok(())) => {
                    self.subscribed.extend(add);
                    self.failures = 0;
                    self.subscribed_at = Some(Instant::now());
                }
                Ok(Err(e)) => failure = Some(self.secrets.redact(&e.to_string())),
                Err(_) => failure = Some("SUBSCRIBE timed out".to_owned()),
            }
        }
        if failure.is_none() && !remove.is_empty() {
            match tokio::time::timeout(STEP_TIMEOUT, conn.client.unsubscribe(remove.clone())).await
            {
                Ok(Ok(())) => {
                    for ch in &remove {
                        self.subscribed.remove(ch);
                    }
                }
                Ok(Err(e)) => failure = Some(self.secrets.redact(&e.to_string())),
                Err(_) => failure = Some("UNSUBSCRIBE timed out".to_owned()),
            }
        }
        if let Some(error) = failure {
            tracing::debug!(node = %self.id, %error, "release subscription failed; reconnecting later");
            if let Some(conn) = self.conn.take() {
                conn.abort();
            }
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
    fn a_watch_of_several_keys_is_withdrawn_from_each_channel() {
        let (hub, _pings) = hub();
        let keys = ["a".to_string(), "b".to_string()];
        let mut w = hub.watch(&keys).expect("open");
        let other = hub.watch(&keys[1..]).expect("open");
        wake_next(&hub.shared, &release_channel("b"));
        assert!(ready(&mut w), "a release of either key wakes it");
        drop(w);
        let st = hub.shared.state();
        assert!(!st.channels.contains_key(&release_channel("a")));
        assert_eq!(
            st.channels.get(&release_channel("b")).map(Vec::len),
            Some(1)
        );
        drop(st);
        drop(other);
        assert!(hub.shared.state().channels.is_empty());
    }

    #[test]
    fn the_recipe_keeps_the_server_and_credentials_but_not_the_policy() {
        let config = Config::from_url("redis://user:pw@127.0.0.1:6390/2").expect("valid url");
        let client = fred::types::Builder::from_config(config)
            .set_policy(crate::default_reconnect_policy())
            .build()
            .expect("client");
        let recipe = Recipe::from_client(&client);
        let made = recipe.client();
        assert!(!made.has_reconnect_policy(), "the task reconnects itself");
        let config = made.client_config();
        assert_eq!(config.password.as_deref(), Some("pw"));
        assert_eq!(config.username.as_deref(), Some("user"));
        assert_eq!(config.database, Some(2));
        assert!(config.fail_fast);
        assert_eq!(made.connection_config().connection_timeout, STEP_TIMEOUT);
        assert!(made.perf_config().broadcast_channel_capacity >= MESSAGE_BUFFER);
    }

    #[test]
    fn a_closed_hub_gives_no_watch() {
        let (hub, _pings) = hub();
        hub.close();
        assert!(hub.watch(&["job".to_string()]).is_none());
    }
}
