//! Wake-on-release over fred: how to open and use the pub/sub connection;
//! the task that subscribes on demand, reconnects and wakes waiters is
//! [`redlock_kit::watch`].
//!
//! The connection is a fred [`Client`] of its own, made from the node's
//! configuration but without a reconnect policy (the hub's task reconnects
//! by itself, only while any channel is watched) and with a larger message
//! buffer; a buffer that overflows wakes one waiter per channel.
//!
//! On a Redis Cluster the connection is a clustered client that subscribes
//! with `SSUBSCRIBE`, one slot at a time, on the shard that owns the slot.
//! Behind Sentinel every connection the task opens asks the sentinels for
//! the master first, so the subscription follows a failover.

use fred::clients::Client;
use fred::interfaces::{ClientLike, ClusterInterface, EventInterface, PubsubInterface};
use fred::types::config::{Config, ConnectionConfig, PerformanceConfig};
use fred::types::{ConnectHandle, Message};
use redlock_kit::watch::{Incoming, PubSub, Subscriber, STEP_TIMEOUT};
use tokio::sync::broadcast;

/// Messages fred buffers for the task before the oldest are dropped.
const MESSAGE_BUFFER: usize = 1024;

/// What the task needs to open its own connection to the node's server.
pub(crate) struct Recipe {
    config: Config,
    /// A cluster: sharded subscriptions.
    sharded: bool,
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
            sharded: config.server.is_clustered(),
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

/// The task's pub/sub connection; dropping it stops fred's connection task,
/// which closes the socket without waiting.
pub(crate) struct Conn {
    client: Client,
    sharded: bool,
    task: ConnectHandle,
    /// fred's connection task has ended.
    ended: bool,
    messages: broadcast::Receiver<Message>,
}

impl Conn {
    /// Waits until the server has run everything sent before.
    async fn confirm(&self) -> Result<(), String> {
        let pong = self.client.ping::<fred::types::Value>(None).await;
        pong.map(drop).map_err(|e| e.to_string())
    }

    /// Waits until the cluster node that owns `slot` has run everything
    /// sent to it before.
    async fn confirm_on(&self, slot: u16) -> Result<(), String> {
        let owner = self
            .client
            .cached_cluster_state()
            .and_then(|state| state.get_server(slot).cloned());
        let Some(owner) = owner else {
            return Err(format!("no cluster node known for slot {slot}"));
        };
        let pong = self
            .client
            .with_cluster_node(owner)
            .ping::<fred::types::Value>(None)
            .await;
        pong.map(drop).map_err(|e| e.to_string())
    }

    /// `SSUBSCRIBE` (or `SUNSUBSCRIBE`) one slot's channels at a time, each
    /// confirmed by a PING to the node that owns the slot.
    async fn sharded(&self, channels: &[String], subscribe: bool) -> Result<(), String> {
        for (slot, group) in redlock_core::slot::group_by_slot(channels) {
            let written = match subscribe {
                true => self.client.ssubscribe(group).await,
                false => self.client.sunsubscribe(group).await,
            };
            written.map_err(|e| e.to_string())?;
            self.confirm_on(slot).await?;
        }
        Ok(())
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[redlock_core::async_trait]
impl Subscriber for Recipe {
    type Conn = Conn;

    async fn connect(&mut self) -> Result<Conn, String> {
        let client = self.client();
        // Listen before anything can be subscribed.
        let messages = client.message_rx();
        let task = client.connect();
        let mut conn = Conn {
            client,
            sharded: self.sharded,
            task,
            ended: false,
            messages,
        };
        let connected = tokio::select! {
            r = conn.client.wait_for_connect() => r.map_err(|e| e.to_string()),
            // Failed before `wait_for_connect` listened, or closed at once.
            _ = &mut conn.task => Err("the connection closed at once".to_owned()),
        };
        connected.map(|()| conn)
    }
}

#[redlock_core::async_trait]
impl PubSub for Conn {
    /// fred answers a SUBSCRIBE as soon as it is written; the PING after it
    /// is answered only once the server has run both, which confirms it.
    async fn subscribe(&mut self, channels: &[String]) -> Result<(), String> {
        if self.sharded {
            return self.sharded(channels, true).await;
        }
        let written = self.client.subscribe(channels.to_vec()).await;
        written.map_err(|e| e.to_string())?;
        self.confirm().await
    }

    async fn unsubscribe(&mut self, channels: &[String]) -> Result<(), String> {
        if self.sharded {
            return self.sharded(channels, false).await;
        }
        let written = self.client.unsubscribe(channels.to_vec()).await;
        written.map_err(|e| e.to_string())?;
        self.confirm().await
    }

    /// A message, or the end of fred's connection task: without a
    /// reconnect policy it ends when the connection closes (a killed
    /// connection, a master gone in a failover).
    async fn next(&mut self) -> Incoming {
        if self.ended {
            return Incoming::Lost;
        }
        tokio::select! {
            received = self.messages.recv() => match received {
                Ok(m) => Incoming::Message(m.channel.to_string()),
                Err(broadcast::error::RecvError::Lagged(_)) => Incoming::Lagged,
                Err(broadcast::error::RecvError::Closed) => Incoming::Lost,
            },
            _ = &mut self.task => {
                self.ended = true;
                Incoming::Lost
            }
        }
    }

    async fn quit(&mut self) {
        let _ = self.client.quit().await;
    }
}

#[cfg(test)]
mod tests {
    // The hub's task is tested in `redlock_kit::watch`; against real
    // servers in `tests/wake.rs`.
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
