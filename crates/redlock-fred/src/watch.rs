//! Wake-on-release: one shared pub/sub connection per node, subscribed on
//! demand to the release channels that waiters watch.
//!
//! The waiters are kept by [`redlock_core::watchers`]; a background task
//! subscribes to channels that gained their first waiter and unsubscribes
//! from those that lost their last, batching whatever changed meanwhile, and
//! hands every message to the registry (which wakes the longest-waiting
//! watch of that channel).
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

use std::collections::HashSet;
use std::time::Duration;

use fred::clients::Client;
use fred::interfaces::{ClientLike, EventInterface, PubsubInterface};
use fred::types::config::{Config, ConnectionConfig, PerformanceConfig};
use fred::types::{ConnectHandle, Message};
use redlock_core::watchers::{Reconnect, Watchers, WatchersHandle};
use redlock_core::BoxFuture;
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;

use crate::error::Secrets;

/// How long connecting, a SUBSCRIBE or an UNSUBSCRIBE may take before the
/// connection is given up (a paused server).
const STEP_TIMEOUT: Duration = Duration::from_secs(1);
/// Messages fred buffers for the task before the oldest are dropped (a lag
/// wakes one waiter of every channel, see [`Task::run`]).
const MESSAGE_BUFFER: usize = 1024;

/// The node's side of the hub; dropping it (with every watch) ends the task.
#[derive(Debug)]
pub(crate) struct ReleaseHub {
    watchers: Watchers,
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
        let watchers = Watchers::new(move || {
            let _ = ping.send(());
        });
        let task = Task {
            recipe,
            secrets,
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
    /// `None` once the hub is closed.
    pub(crate) fn watch(&self, keys: &[String]) -> Option<BoxFuture<'static, ()>> {
        self.watchers.watch(keys)
    }

    /// Stops the task and closes its connection in the background; later
    /// watches return `None`. Does not wait.
    pub(crate) fn close(&self) {
        self.watchers.close();
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
    watchers: WatchersHandle,
    rx: mpsc::UnboundedReceiver<()>,
    conn: Option<Conn>,
    subscribed: HashSet<String>,
    retry_at: Option<Instant>,
    reconnect: Reconnect,
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
                    for ch in self.watchers.channels().unwrap_or_default() {
                        self.watchers.announce(&ch);
                    }
                }
                Event::Lost => {
                    tracing::debug!(node = %self.id, "release subscription lost; waiters poll until it is back");
                    if let Some(conn) = self.conn.take() {
                        conn.abort();
                    }
                    self.subscribed.clear();
                    self.retry_at = Some(Instant::now() + self.reconnect.lost());
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
        self.watchers.announce(channel);
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
            match self.connect().await {
                Some(conn) => {
                    self.conn = Some(conn);
                    self.subscribed.clear();
                }
                None => {
                    self.retry_at = Some(Instant::now() + self.reconnect.failed());
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
                    self.reconnect.subscribed();
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
            self.retry_at = Some(Instant::now() + self.reconnect.failed());
        }
        true
    }
}

#[cfg(test)]
mod tests {
    // The waiter bookkeeping is tested with `redlock_core::watchers`.
    use super::*;

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
}
