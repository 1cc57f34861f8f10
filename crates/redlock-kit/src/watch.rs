//! Wake-on-release: one pub/sub connection per node, subscribed on demand to
//! the release channels that waiters watch.
//!
//! The waiters are kept by [`redlock_core::watchers`]; the [`ReleaseHub`]'s
//! task subscribes to channels that gained their first waiter and
//! unsubscribes from those that lost their last, batching whatever changed
//! meanwhile, and hands every message to the registry (which wakes the
//! longest-waiting watch of that channel). An adapter only says how to open
//! a pub/sub connection ([`Subscriber`]) and how to use one ([`PubSub`]).
//!
//! Everything here is best effort, as the [`Node::watch_release`] contract
//! allows: a broken or paused pub/sub connection only means no wake-up, and
//! the waiter retries after its delay. The task reconnects while any channel
//! is watched: at once after losing a connection that worked, after failures
//! backing off from 50 ms to 1 s ([`Reconnect`]). Connecting, a SUBSCRIBE
//! and an UNSUBSCRIBE may each take [`STEP_TIMEOUT`] before the connection
//! is given up (a paused server).
//!
//! A Redis Cluster node announces releases with a sharded `SPUBLISH` on a
//! channel in the key's slot, and its hub ([`ReleaseHub::spawn_sharded`])
//! watches those channels; the adapter's [`PubSub`] subscribes to them with
//! `SSUBSCRIBE` on the shard that owns each. A server that does not know
//! the command (Redis before 7.0) refuses it as unknown: the hub then stops
//! trying for [`UNSUPPORTED_PAUSE`] and its waiters poll
//! ([`Status::unsupported`]).
//!
//! What the task did is observable ([`Subscriptions`]): which channels the
//! server confirmed, and how many connections were opened and lost.
//!
//! [`Node::watch_release`]: redlock_core::Node::watch_release

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use redlock_core::watchers::{Reconnect, Watchers, WatchersHandle};
use redlock_core::BoxFuture;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::Secrets;

/// How long connecting, a SUBSCRIBE or an UNSUBSCRIBE may take before the
/// connection is given up.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(1);

/// How long the hub waits before trying again after the server refused a
/// subscription as an unknown command (a Redis 6 cluster refuses
/// `SSUBSCRIBE`); its waiters poll meanwhile.
pub const UNSUPPORTED_PAUSE: Duration = Duration::from_secs(60);

/// Whether a failed (un)subscription's error text says that the server does
/// not know the command, as Redis before 7.0 answers a sharded one.
///
/// ```
/// assert!(redlock_kit::watch::is_unknown_command("ERR unknown command 'SSUBSCRIBE', with args beginning with: "));
/// assert!(!redlock_kit::watch::is_unknown_command("broken pipe"));
/// ```
pub fn is_unknown_command(error: &str) -> bool {
    error.to_ascii_lowercase().contains("unknown command")
}

/// What a pub/sub connection delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// A message on this channel.
    Message(String),
    /// Messages were dropped because the task fell behind.
    Lagged,
    /// The connection is gone.
    Lost,
}

/// Opens pub/sub connections to one node's server.
#[async_trait::async_trait]
pub trait Subscriber: Send + 'static {
    /// The connection it opens.
    type Conn: PubSub;

    /// Opens a connection (authenticated, on the node's database). The
    /// error text is redacted by the hub before it is logged.
    async fn connect(&mut self) -> Result<Self::Conn, String>;
}

/// One pub/sub connection. Dropping it must close it without waiting.
#[async_trait::async_trait]
pub trait PubSub: Send + 'static {
    /// Subscribes to `channels`; `Ok` once the server confirmed them.
    async fn subscribe(&mut self, channels: &[String]) -> Result<(), String>;
    /// Unsubscribes from `channels`; `Ok` once the server confirmed it.
    async fn unsubscribe(&mut self, channels: &[String]) -> Result<(), String>;
    /// The next message, or the loss of the connection.
    async fn next(&mut self) -> Incoming;
    /// Closes politely (`QUIT`); the hub bounds it by [`STEP_TIMEOUT`] and
    /// drops the connection afterwards. Does nothing by default.
    async fn quit(&mut self) {}
}

/// What the hub's task has done so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Status {
    /// The channels the server confirmed and that are still subscribed.
    pub subscribed: BTreeSet<String>,
    /// Connections opened.
    pub connects: u64,
    /// Connections lost or given up (a failed or timed-out step).
    pub losses: u64,
    /// Whether the task has ended (the node was closed or dropped).
    pub ended: bool,
    /// Whether the server refused the last subscription as an unknown
    /// command (sharded pub/sub on Redis before 7.0); waiters poll until
    /// the next try after [`UNSUPPORTED_PAUSE`].
    pub unsupported: bool,
}

/// A view of a [`ReleaseHub`]'s [`Status`] that can be awaited: to know
/// that a waiter can now be woken, or that a connection was given up.
///
/// ```no_run
/// # async fn demo(mut subscriptions: redlock_kit::Subscriptions) {
/// let channel = redlock_core::scripts::release_channel("nightly-export");
/// subscriptions.until(|s| s.subscribed.contains(&channel)).await;
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Subscriptions {
    rx: watch::Receiver<Status>,
}

impl Subscriptions {
    /// The status now.
    pub fn now(&self) -> Status {
        self.rx.borrow().clone()
    }

    /// Waits until `condition` holds for the status and returns that
    /// status; returns the last status once the task ended without it.
    pub async fn until(&mut self, mut condition: impl FnMut(&Status) -> bool) -> Status {
        if let Ok(s) = self.rx.wait_for(|s| condition(s) || s.ended).await {
            return s.clone();
        }
        self.now()
    }
}

/// The node's side of the hub; dropping it (with every watch) ends the task.
#[derive(Debug)]
pub struct ReleaseHub {
    watchers: Watchers,
    status: watch::Receiver<Status>,
}

impl ReleaseHub {
    /// Starts the hub's task on the current tokio runtime (`None` outside
    /// one). It connects only once something is watched. `id` names the
    /// node in logs; every error text is passed through `secrets`.
    pub fn spawn<S: Subscriber>(subscriber: S, secrets: Secrets, id: String) -> Option<Self> {
        Self::spawn_with(subscriber, secrets, id, |key| {
            Some(redlock_core::scripts::release_channel(key))
        })
    }

    /// Like [`spawn`](Self::spawn), for a Redis Cluster node: watches the
    /// sharded channels its release scripts `SPUBLISH` on
    /// ([`sharded_release_channel`](redlock_core::scripts::sharded_release_channel));
    /// `subscriber`'s connections subscribe with `SSUBSCRIBE`.
    pub fn spawn_sharded<S: Subscriber>(
        subscriber: S,
        secrets: Secrets,
        id: String,
    ) -> Option<Self> {
        Self::spawn_with(
            subscriber,
            secrets,
            id,
            redlock_core::scripts::sharded_release_channel,
        )
    }

    fn spawn_with<S: Subscriber>(
        subscriber: S,
        secrets: Secrets,
        id: String,
        channel_of: fn(&str) -> Option<String>,
    ) -> Option<Self> {
        let handle = tokio::runtime::Handle::try_current().ok()?;
        let (ping, rx) = mpsc::unbounded_channel();
        let watchers = Watchers::with_channels(
            move || {
                let _ = ping.send(());
            },
            channel_of,
        );
        let (status_tx, status) = watch::channel(Status::default());
        let task = Task {
            subscriber,
            secrets,
            id,
            watchers: watchers.handle(),
            rx,
            conn: None,
            subscribed: HashSet::new(),
            retry_at: None,
            reconnect: Reconnect::default(),
            status: status_tx,
        };
        handle.spawn(task.run());
        Some(ReleaseHub { watchers, status })
    }

    /// A future that completes once a release of any of `keys` is
    /// announced; `None` once the hub is closed. What
    /// [`Node::watch_release`](redlock_core::Node::watch_release) returns.
    pub fn watch(&self, keys: &[String]) -> Option<BoxFuture<'static, ()>> {
        self.watchers.watch(keys)
    }

    /// What the task has done, to be awaited.
    pub fn subscriptions(&self) -> Subscriptions {
        Subscriptions {
            rx: self.status.clone(),
        }
    }

    /// Stops the task, which closes its connection in the background; later
    /// watches return `None`. Does not wait.
    pub fn close(&self) {
        self.watchers.close();
    }
}

struct Task<S: Subscriber> {
    subscriber: S,
    secrets: Secrets,
    id: String,
    watchers: WatchersHandle,
    rx: mpsc::UnboundedReceiver<()>,
    conn: Option<S::Conn>,
    subscribed: HashSet<String>,
    retry_at: Option<Instant>,
    reconnect: Reconnect,
    status: watch::Sender<Status>,
}

enum Event {
    Reconcile,
    Incoming(Incoming),
    Stop,
}

impl<S: Subscriber> Task<S> {
    async fn run(mut self) {
        loop {
            match self.next_event().await {
                Event::Stop => break,
                Event::Incoming(Incoming::Message(channel)) => self.watchers.announce(&channel),
                Event::Incoming(Incoming::Lagged) => {
                    // Some announcements were lost; a needless wake-up only
                    // costs one attempt, a missed one the whole delay.
                    tracing::debug!(node = %self.id, "release messages dropped; waking one waiter per channel");
                    for ch in self.watchers.channels().unwrap_or_default() {
                        self.watchers.announce(&ch);
                    }
                }
                Event::Incoming(Incoming::Lost) => {
                    tracing::debug!(node = %self.id, "release subscription lost; waiters poll until it is back");
                    let pause = self.reconnect.lost();
                    self.give_up(pause);
                }
                Event::Reconcile => {
                    while self.rx.try_recv().is_ok() {}
                    if !self.reconcile().await {
                        break;
                    }
                }
            }
        }
        if let Some(mut conn) = self.conn.take() {
            let _ = tokio::time::timeout(STEP_TIMEOUT, conn.quit()).await;
        }
        self.subscribed.clear();
        self.publish(|s| s.ended = true);
    }

    async fn next_event(&mut self) -> Event {
        let retry = self.retry_at;
        match self.conn.as_mut() {
            Some(conn) => tokio::select! {
                ping = self.rx.recv() => match ping {
                    Some(()) => Event::Reconcile,
                    None => Event::Stop,
                },
                incoming = conn.next() => Event::Incoming(incoming),
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

    fn publish(&self, change: impl FnOnce(&mut Status)) {
        let subscribed = &self.subscribed;
        self.status.send_modify(|s| {
            change(s);
            s.subscribed = subscribed.iter().cloned().collect();
        });
    }

    /// Drops the connection; the next try comes after `pause`.
    fn give_up(&mut self, pause: Duration) {
        self.conn = None;
        self.subscribed.clear();
        self.retry_at = Some(Instant::now() + pause);
        self.publish(|s| s.losses += 1);
    }

    /// Brings the subscriptions in line with what is watched. Returns
    /// `false` when the hub is gone or closed.
    async fn reconcile(&mut self) -> bool {
        let Some(wanted) = self.watchers.channels() else {
            return false;
        };
        if self.conn.is_none() {
            if self.retry_at.is_some_and(|at| Instant::now() < at) {
                return true;
            }
            self.retry_at = None;
            if wanted.is_empty() {
                return true;
            }
            match tokio::time::timeout(STEP_TIMEOUT, self.subscriber.connect()).await {
                Ok(Ok(conn)) => {
                    self.conn = Some(conn);
                    self.subscribed.clear();
                    self.publish(|s| s.connects += 1);
                }
                Ok(Err(e)) => {
                    let error = self.secrets.redact(&e);
                    tracing::debug!(node = %self.id, %error, "release subscription: connect failed");
                    self.retry_at = Some(Instant::now() + self.reconnect.failed());
                    return true;
                }
                Err(_) => {
                    tracing::debug!(node = %self.id, "release subscription: connect timed out");
                    self.retry_at = Some(Instant::now() + self.reconnect.failed());
                    return true;
                }
            }
        }
        let add: Vec<String> = wanted.difference(&self.subscribed).cloned().collect();
        let remove: Vec<String> = self.subscribed.difference(&wanted).cloned().collect();
        let Some(conn) = self.conn.as_mut() else {
            return true;
        };
        let mut failure = None;
        if !add.is_empty() {
            match tokio::time::timeout(STEP_TIMEOUT, conn.subscribe(&add)).await {
                Ok(Ok(())) => {
                    self.subscribed.extend(add);
                    self.reconnect.subscribed();
                    self.status.send_modify(|s| s.unsupported = false);
                }
                Ok(Err(e)) => failure = Some(e),
                Err(_) => failure = Some("SUBSCRIBE timed out".to_owned()),
            }
        }
        if failure.is_none() && !remove.is_empty() {
            match tokio::time::timeout(STEP_TIMEOUT, conn.unsubscribe(&remove)).await {
                Ok(Ok(())) => {
                    for ch in &remove {
                        self.subscribed.remove(ch);
                    }
                }
                Ok(Err(e)) => failure = Some(e),
                Err(_) => failure = Some("UNSUBSCRIBE timed out".to_owned()),
            }
        }
        match failure {
            Some(e) if is_unknown_command(&e) => {
                let error = self.secrets.redact(&e);
                tracing::debug!(node = %self.id, %error, "release subscription refused as unknown; waiters poll");
                self.give_up(UNSUPPORTED_PAUSE);
                self.publish(|s| s.unsupported = true);
            }
            Some(e) => {
                let error = self.secrets.redact(&e);
                tracing::debug!(node = %self.id, %error, "release subscription failed; reconnecting later");
                let pause = self.reconnect.failed();
                self.give_up(pause);
            }
            None => self.publish(|_| {}),
        }
        true
    }
}

#[cfg(test)]
mod tests {
    //! The hub's task over an in-memory pub/sub "server"; the adapters' own
    //! tests run it against real servers.
    use std::sync::{Arc, Mutex};

    use redlock_core::scripts::release_channel;

    use super::*;

    /// What the fake server saw and how it behaves.
    #[derive(Default)]
    struct Server {
        subscribed: HashSet<String>,
        refuse: bool,
        /// Refuses as a server without the command would.
        unknown: bool,
        connects: usize,
        /// Messages to deliver, by connection generation.
        outbox: Option<mpsc::UnboundedSender<Incoming>>,
    }

    #[derive(Clone, Default)]
    struct Fake(Arc<Mutex<Server>>);

    struct FakeConn {
        server: Fake,
        inbox: mpsc::UnboundedReceiver<Incoming>,
    }

    #[async_trait::async_trait]
    impl Subscriber for Fake {
        type Conn = FakeConn;
        async fn connect(&mut self) -> Result<FakeConn, String> {
            let (tx, inbox) = mpsc::unbounded_channel();
            let mut s = self.0.lock().unwrap();
            s.connects += 1;
            s.outbox = Some(tx);
            s.subscribed.clear();
            Ok(FakeConn {
                server: self.clone(),
                inbox,
            })
        }
    }

    #[async_trait::async_trait]
    impl PubSub for FakeConn {
        async fn subscribe(&mut self, channels: &[String]) -> Result<(), String> {
            let mut s = self.server.0.lock().unwrap();
            if s.refuse {
                return Err(if s.unknown {
                    "ERR unknown command 'SSUBSCRIBE' (password hunter2)".into()
                } else {
                    "NOPERM no permissions for channel (password hunter2)".into()
                });
            }
            s.subscribed.extend(channels.iter().cloned());
            Ok(())
        }
        async fn unsubscribe(&mut self, channels: &[String]) -> Result<(), String> {
            let mut s = self.server.0.lock().unwrap();
            for c in channels {
                s.subscribed.remove(c);
            }
            Ok(())
        }
        async fn next(&mut self) -> Incoming {
            self.inbox.recv().await.unwrap_or(Incoming::Lost)
        }
    }

    impl Fake {
        fn send(&self, incoming: Incoming) {
            let s = self.0.lock().unwrap();
            if let Some(tx) = &s.outbox {
                let _ = tx.send(incoming);
            }
        }
    }

    const PATIENCE: Duration = Duration::from_secs(10);

    async fn until(subs: &mut Subscriptions, what: &str, cond: impl FnMut(&Status) -> bool) {
        tokio::time::timeout(PATIENCE, subs.until(cond))
            .await
            .unwrap_or_else(|_| panic!("timed out waiting until {what}"));
    }

    #[tokio::test]
    async fn subscribes_on_demand_wakes_and_unsubscribes() {
        let fake = Fake::default();
        let hub = ReleaseHub::spawn(fake.clone(), Secrets::default(), "n".into()).expect("rt");
        let mut subs = hub.subscriptions();
        assert_eq!(subs.now().connects, 0, "no connection before a watch");
        let channel = release_channel("job");
        let watch = hub.watch(&["job".to_owned()]).expect("open");
        until(&mut subs, "subscribed", |s| s.subscribed.contains(&channel)).await;
        assert!(fake.0.lock().unwrap().subscribed.contains(&channel));
        fake.send(Incoming::Message(channel.clone()));
        tokio::time::timeout(PATIENCE, watch).await.expect("woken");
        until(&mut subs, "unsubscribed", |s| s.subscribed.is_empty()).await;
        assert!(fake.0.lock().unwrap().subscribed.is_empty());
        hub.close();
        until(&mut subs, "ended", |s| s.ended).await;
        assert!(hub.watch(&["job".to_owned()]).is_none());
    }

    #[tokio::test]
    async fn a_lost_connection_is_replaced_and_subscribed_again() {
        let fake = Fake::default();
        let hub = ReleaseHub::spawn(fake.clone(), Secrets::default(), "n".into()).expect("rt");
        let mut subs = hub.subscriptions();
        let channel = release_channel("job");
        let watch = hub.watch(&["job".to_owned()]).expect("open");
        until(&mut subs, "subscribed", |s| {
            s.connects == 1 && !s.subscribed.is_empty()
        })
        .await;
        fake.send(Incoming::Lost);
        until(&mut subs, "lost", |s| s.losses == 1).await;
        until(&mut subs, "subscribed again", |s| {
            s.connects == 2 && s.subscribed.contains(&channel)
        })
        .await;
        fake.send(Incoming::Message(channel));
        tokio::time::timeout(PATIENCE, watch).await.expect("woken");
    }

    #[tokio::test]
    async fn a_lag_wakes_one_waiter_per_channel() {
        let fake = Fake::default();
        let hub = ReleaseHub::spawn(fake.clone(), Secrets::default(), "n".into()).expect("rt");
        let mut subs = hub.subscriptions();
        let watch = hub.watch(&["a".to_owned()]).expect("open");
        until(&mut subs, "subscribed", |s| !s.subscribed.is_empty()).await;
        fake.send(Incoming::Lagged);
        tokio::time::timeout(PATIENCE, watch).await.expect("woken");
    }

    #[tokio::test]
    async fn a_refused_subscription_is_given_up_and_retried() {
        let fake = Fake::default();
        fake.0.lock().unwrap().refuse = true;
        let hub = ReleaseHub::spawn(fake.clone(), Secrets::default(), "n".into()).expect("rt");
        let mut subs = hub.subscriptions();
        let _watch = hub.watch(&["job".to_owned()]).expect("open");
        until(&mut subs, "given up twice", |s| s.losses >= 2).await;
        assert!(subs.now().subscribed.is_empty());
        fake.0.lock().unwrap().refuse = false;
        until(&mut subs, "subscribed once allowed", |s| {
            !s.subscribed.is_empty()
        })
        .await;
    }

    #[tokio::test]
    async fn an_unknown_command_is_not_retried_at_once() {
        let fake = Fake::default();
        fake.0.lock().unwrap().refuse = true;
        fake.0.lock().unwrap().unknown = true;
        let hub =
            ReleaseHub::spawn_sharded(fake.clone(), Secrets::default(), "n".into()).expect("rt");
        let mut subs = hub.subscriptions();
        let _watch = hub.watch(&["job".to_owned()]).expect("open");
        let s = tokio::time::timeout(PATIENCE, subs.until(|s| s.unsupported))
            .await
            .expect("refused");
        assert_eq!((s.connects, s.losses), (1, 1));
        // Other watches meanwhile neither connect nor subscribe again.
        let _other = hub.watch(&["other".to_owned()]).expect("open");
        tokio::task::yield_now().await;
        let s = subs.now();
        assert_eq!((s.connects, s.losses, s.unsupported), (1, 1, true));
    }

    #[tokio::test]
    async fn a_sharded_hub_watches_the_keys_slot_channels() {
        let fake = Fake::default();
        let hub =
            ReleaseHub::spawn_sharded(fake.clone(), Secrets::default(), "n".into()).expect("rt");
        let mut subs = hub.subscriptions();
        let channel = redlock_core::scripts::sharded_release_channel("job").expect("one");
        let watch = hub.watch(&["job".to_owned()]).expect("open");
        until(&mut subs, "subscribed", |s| s.subscribed.contains(&channel)).await;
        fake.send(Incoming::Message(channel));
        tokio::time::timeout(PATIENCE, watch).await.expect("woken");
    }

    #[tokio::test]
    async fn dropping_the_hub_ends_the_task() {
        let fake = Fake::default();
        let hub = ReleaseHub::spawn(fake, Secrets::default(), "n".into()).expect("rt");
        let mut subs = hub.subscriptions();
        drop(hub);
        until(&mut subs, "ended", |s| s.ended).await;
    }

    #[test]
    fn no_hub_outside_a_runtime() {
        assert!(ReleaseHub::spawn(Fake::default(), Secrets::default(), "n".into()).is_none());
    }
}
