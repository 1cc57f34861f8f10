//! Wake-on-release: one shared pub/sub connection per node, subscribed on
//! demand to the release channels that waiters watch.
//!
//! The waiters are kept by [`redlock_core::watchers`]; a background task
//! subscribes to channels that gained their first waiter and unsubscribes
//! from those that lost their last, batching whatever changed meanwhile, and
//! hands every message to the registry (which wakes the longest-waiting
//! watch of that channel).
//!
//! Everything here is best effort, as the [`Node::watch_release`] contract
//! allows: a broken or paused pub/sub connection only means no wake-up, and
//! the waiter retries after its delay. The task reconnects while any channel
//! is watched: at once after losing a connection that worked, and after
//! failures backing off from 50 ms to 1 s.
//!
//! [`Node::watch_release`]: redlock_core::Node::watch_release

use std::collections::HashSet;
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::{PubSubSink, PubSubStream};
use redis::Client;
use redlock_core::watchers::{Reconnect, Watchers, WatchersHandle};
use redlock_core::BoxFuture;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::address::Redactor;

/// How long connecting or a SUBSCRIBE may take before the connection is
/// given up (a paused server).
const STEP_TIMEOUT: Duration = Duration::from_secs(1);

/// The node's side of the hub; dropping it (with every watch) ends the task.
#[derive(Debug)]
pub(crate) struct ReleaseHub {
    watchers: Watchers,
}

impl ReleaseHub {
    /// Starts the hub's task on the current tokio runtime. It connects only
    /// once something is watched.
    pub(crate) fn spawn(client: Client, redact: Redactor, id: String) -> Option<Self> {
        let handle = tokio::runtime::Handle::try_current().ok()?;
        let (ping, rx) = mpsc::unbounded_channel();
        let watchers = Watchers::new(move || {
            let _ = ping.send(());
        });
        let task = Task {
            client,
            redact,
            id,
            watchers: watchers.handle(),
            rx,
            conn: None,
            subscribed: HashSet::new(),
            retry_at: None,
            reconnect: Reconnect::default(),
        };
        handle.spawn(task.run());
        Some(ReleaseHub { watchers })
    }

    /// A future that completes once a release of any of `keys` is announced.
    pub(crate) fn watch(&self, keys: &[String]) -> Option<BoxFuture<'static, ()>> {
        self.watchers.watch(keys)
    }

    /// Stops the task and its connection; later watches return `None`.
    pub(crate) fn close(&self) {
        self.watchers.close();
    }
}

struct Task {
    client: Client,
    redact: Redactor,
    id: String,
    watchers: WatchersHandle,
    rx: mpsc::UnboundedReceiver<()>,
    conn: Option<(PubSubSink, PubSubStream)>,
    subscribed: HashSet<String>,
    retry_at: Option<Instant>,
    reconnect: Reconnect,
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
                    self.retry_at = Some(Instant::now() + self.reconnect.lost());
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
        self.watchers.announce(channel);
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
            match tokio::time::timeout(STEP_TIMEOUT, self.client.get_async_pubsub()).await {
                Ok(Ok(pubsub)) => {
                    self.conn = Some(pubsub.split());
                    self.subscribed.clear();
                }
                Ok(Err(e)) => {
                    tracing::debug!(node = %self.id, "release subscription: connect failed: {}", self.redact.scrub(&e.to_string()));
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
        let Some((sink, _)) = self.conn.as_mut() else {
            return true;
        };
        let mut ok = true;
        if !add.is_empty() {
            match tokio::time::timeout(STEP_TIMEOUT, sink.subscribe(&add)).await {
                Ok(Ok(())) => {
                    self.subscribed.extend(add);
                    self.reconnect.subscribed();
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
            self.retry_at = Some(Instant::now() + self.reconnect.failed());
        }
        true
    }
}
