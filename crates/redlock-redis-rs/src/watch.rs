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
