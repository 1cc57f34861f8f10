//! Wake-on-release over the `redis` crate: how to open and use the pub/sub
//! connection; the task that subscribes on demand, reconnects and wakes
//! waiters is [`redlock_kit::watch`].

use futures_util::StreamExt;
use redis::aio::{PubSubSink, PubSubStream};
use redis::Client;
use redlock_kit::watch::{Incoming, PubSub, Subscriber};

/// Opens pub/sub connections from the node's [`Client`] (server,
/// credentials, TLS, database).
pub(crate) struct Opener(pub(crate) Client);

/// One pub/sub connection; the `redis` crate answers a (UN)SUBSCRIBE once
/// the server confirmed it.
pub(crate) struct Conn(PubSubSink, PubSubStream);

#[async_trait::async_trait]
impl Subscriber for Opener {
    type Conn = Conn;

    async fn connect(&mut self) -> Result<Conn, String> {
        let (sink, stream) = self
            .0
            .get_async_pubsub()
            .await
            .map_err(|e| e.to_string())?
            .split();
        Ok(Conn(sink, stream))
    }
}

#[async_trait::async_trait]
impl PubSub for Conn {
    async fn subscribe(&mut self, channels: &[String]) -> Result<(), String> {
        self.0.subscribe(channels).await.map_err(|e| e.to_string())
    }

    async fn unsubscribe(&mut self, channels: &[String]) -> Result<(), String> {
        self.0
            .unsubscribe(channels)
            .await
            .map_err(|e| e.to_string())
    }

    async fn next(&mut self) -> Incoming {
        match self.1.next().await {
            Some(msg) => Incoming::Message(msg.get_channel_name().to_owned()),
            None => Incoming::Lost,
        }
    }
}

/// Opens pub/sub connections to the master the sentinels name at the time
/// (feature `sentinel`): after a failover the hub's next connection goes to
/// the new master.
#[cfg(feature = "sentinel")]
pub(crate) struct SentinelOpener(pub(crate) redis::sentinel::SentinelClient);

#[cfg(feature = "sentinel")]
#[async_trait::async_trait]
impl Subscriber for SentinelOpener {
    type Conn = Conn;

    async fn connect(&mut self) -> Result<Conn, String> {
        let master = self.0.async_get_client().await.map_err(|e| e.to_string())?;
        Opener(master).connect().await
    }
}

/// Opens sharded pub/sub connections to a Redis Cluster (feature
/// `cluster`): a RESP3 cluster connection of its own, whose `SSUBSCRIBE`s
/// go to the shard that owns each channel's slot and follow the slot when
/// it moves.
#[cfg(feature = "cluster")]
pub(crate) struct ClusterOpener {
    pub(crate) seeds: Vec<String>,
    pub(crate) connection_timeout: Option<std::time::Duration>,
}

/// A sharded pub/sub connection to a Redis Cluster: the cluster connection
/// and the pushes (messages, disconnections) its nodes send.
#[cfg(feature = "cluster")]
pub(crate) struct ShardedConn {
    conn: redis::cluster_async::ClusterConnection,
    pushes: tokio::sync::mpsc::UnboundedReceiver<redis::PushInfo>,
}

#[cfg(feature = "cluster")]
#[async_trait::async_trait]
impl Subscriber for ClusterOpener {
    type Conn = ShardedConn;

    async fn connect(&mut self) -> Result<ShardedConn, String> {
        let (tx, pushes) = tokio::sync::mpsc::unbounded_channel();
        let mut b = redis::cluster::ClusterClientBuilder::new(self.seeds.clone())
            .use_protocol(redis::ProtocolVersion::RESP3)
            .push_sender(tx);
        if let Some(t) = self.connection_timeout {
            b = b.connection_timeout(t);
        }
        let client = b.build().map_err(|e| e.to_string())?;
        let conn = client
            .get_async_connection()
            .await
            .map_err(|e| e.to_string())?;
        Ok(ShardedConn { conn, pushes })
    }
}

#[cfg(feature = "cluster")]
#[async_trait::async_trait]
impl PubSub for ShardedConn {
    /// One `SSUBSCRIBE` per slot: a sharded (un)subscription may name only
    /// channels of one slot.
    async fn subscribe(&mut self, channels: &[String]) -> Result<(), String> {
        for (_, group) in redlock_core::slot::group_by_slot(channels) {
            self.conn
                .ssubscribe(&group)
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    async fn unsubscribe(&mut self, channels: &[String]) -> Result<(), String> {
        for (_, group) in redlock_core::slot::group_by_slot(channels) {
            self.conn
                .sunsubscribe(&group)
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// A node's lost connection is re-established, and its subscriptions
    /// sent again, by the cluster connection itself; messages published
    /// meanwhile are lost, which the hub treats as a lag.
    async fn next(&mut self) -> Incoming {
        loop {
            let Some(push) = self.pushes.recv().await else {
                return Incoming::Lost;
            };
            match push.kind {
                redis::PushKind::SMessage => {
                    let channel = push
                        .data
                        .into_iter()
                        .next()
                        .and_then(|v| redis::from_redis_value::<String>(v).ok());
                    if let Some(channel) = channel {
                        return Incoming::Message(channel);
                    }
                }
                redis::PushKind::Disconnection => return Incoming::Lagged,
                _ => {}
            }
        }
    }
}
