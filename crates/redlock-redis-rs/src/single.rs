//! One server (directly, through a connection the user has, or the master
//! Sentinel names) as a kit [`Link`] on the `redis` crate's own connection
//! types; the kit's [`Session`](redlock_kit::session::Session) does the
//! rest (fencing, owed releases, `NOSCRIPT`, `READONLY`).

use redis::aio::{ConnectionLike, ConnectionManager, MultiplexedConnection};
use redis::{AsyncConnectionConfig, Client, RedisResult, Value};
use redlock_core::NodeError;
use redlock_kit::plan::Command;
use redlock_kit::reply::Reply;
use redlock_kit::session::{Broken, Link};

use crate::address::Secrets;
use crate::error::{is_noscript, is_readonly, needs_reconnect, node_error};
use crate::wire;

/// Where connections come from. One per node, so its size does not matter.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Connector {
    /// A client: connect (and reconnect) ourselves.
    Client {
        client: Client,
        config: AsyncConnectionConfig,
    },
    /// A connection the user made; it cannot be re-established here.
    Fixed(MultiplexedConnection),
    /// A connection manager; it reconnects by itself.
    Manager(ConnectionManager),
    /// The master named by Sentinel, looked up again on every reconnect.
    #[cfg(feature = "sentinel")]
    Sentinel {
        client: redis::sentinel::SentinelClient,
        config: AsyncConnectionConfig,
    },
}

enum Conn {
    Multiplexed(MultiplexedConnection),
    Manager(ConnectionManager),
}

impl Conn {
    async fn query(&mut self, pipe: &redis::Pipeline) -> RedisResult<Vec<RedisResult<Value>>> {
        match self {
            Conn::Multiplexed(c) => query(c, pipe).await,
            Conn::Manager(c) => query(c, pipe).await,
        }
    }

    /// One command on its own (no pipeline around it); a server's error
    /// reply is the command's result, a broken connection the `Err`.
    async fn query_one(&mut self, cmd: &redis::Cmd) -> RedisResult<RedisResult<Value>> {
        let reply = match self {
            Conn::Multiplexed(c) => c.req_packed_command(cmd).await,
            Conn::Manager(c) => c.req_packed_command(cmd).await,
        };
        match reply {
            Ok(Value::ServerError(e)) => Ok(Err(e.into())),
            Ok(v) => Ok(Ok(v)),
            Err(e) if e.code().is_some() && !e.is_connection_dropped() && !e.is_io_error() => {
                Ok(Err(e))
            }
            Err(e) => Err(e),
        }
    }
}

async fn query<C: ConnectionLike>(
    con: &mut C,
    pipe: &redis::Pipeline,
) -> RedisResult<Vec<RedisResult<Value>>> {
    pipe.query_async::<Vec<RedisResult<Value>>>(con).await
}

/// One server's connection over the `redis` crate.
pub(crate) struct RedisLink {
    connector: Connector,
    conn: Option<Conn>,
    redact: Secrets,
}

impl RedisLink {
    pub(crate) fn new(connector: Connector, redact: Secrets) -> Self {
        RedisLink {
            connector,
            conn: None,
            redact,
        }
    }
}

#[async_trait::async_trait]
impl Link for RedisLink {
    async fn connect(&mut self) -> Result<(), NodeError> {
        let redact = &self.redact;
        let err = |e: redis::RedisError| node_error(&e, redact);
        let conn = match &mut self.connector {
            Connector::Client { client, config } => Conn::Multiplexed(
                client
                    .get_multiplexed_async_connection_with_config(config)
                    .await
                    .map_err(err)?,
            ),
            Connector::Fixed(c) => Conn::Multiplexed(c.clone()),
            Connector::Manager(m) => Conn::Manager(m.clone()),
            #[cfg(feature = "sentinel")]
            Connector::Sentinel { client, config } => {
                let master = client.async_get_client().await.map_err(err)?;
                Conn::Multiplexed(
                    master
                        .get_multiplexed_async_connection_with_config(config)
                        .await
                        .map_err(err)?,
                )
            }
        };
        self.conn = Some(conn);
        Ok(())
    }

    async fn send(
        &mut self,
        commands: &[&Command<'_>],
    ) -> Result<Vec<Result<Reply, NodeError>>, Broken> {
        let Some(conn) = self.conn.as_mut() else {
            return Err(Broken {
                error: NodeError::NotConnected("no connection".into()),
                reconnect: false,
            });
        };
        let replies = match commands {
            [one] => conn.query_one(&wire::command(one)).await.map(|r| vec![r]),
            _ => {
                let mut pipe = redis::Pipeline::with_capacity(commands.len());
                pipe.ignore_errors();
                for c in commands {
                    pipe.add_command(wire::command(c));
                }
                conn.query(&pipe).await
            }
        };
        let redact = &self.redact;
        match replies {
            Ok(replies) => Ok(replies
                .into_iter()
                .map(|r| {
                    r.map(|v| wire::decode(v, redact))
                        .map_err(|e| node_err_keep(&e, redact))
                })
                .collect()),
            Err(e) => Err(Broken {
                error: node_error(&e, redact),
                reconnect: needs_reconnect(&e),
            }),
        }
    }

    fn disconnect(&mut self) {
        self.conn = None;
    }

    fn replaceable(&self) -> bool {
        !matches!(self.connector, Connector::Fixed(_) | Connector::Manager(_))
    }
}

/// [`node_error`], with the codes the session reads (`NOSCRIPT`,
/// `READONLY`) first.
fn node_err_keep(e: &redis::RedisError, redact: &Secrets) -> NodeError {
    if is_noscript(e) {
        return NodeError::Server(format!("NOSCRIPT {}", redact.redact(&e.to_string())));
    }
    if is_readonly(e) {
        return NodeError::Server(format!("READONLY {}", redact.redact(&e.to_string())));
    }
    node_error(e, redact)
}
