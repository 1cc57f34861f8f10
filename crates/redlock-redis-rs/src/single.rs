//! Executing batches over one connection to one server (directly, through a
//! connection the user has, or to the master Sentinel names).

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, MultiplexedConnection};
use redis::{AsyncConnectionConfig, Client, RedisResult, Value};
use redlock_core::NodeError;

use crate::address::Redactor;
use crate::error::{is_noscript, is_readonly, needs_reconnect, node_error};
use crate::queue::Executor;
use crate::scripts::{Call, Kind, LoadedScripts};

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
}

async fn query<C: ConnectionLike>(
    con: &mut C,
    pipe: &redis::Pipeline,
) -> RedisResult<Vec<RedisResult<Value>>> {
    pipe.query_async::<Vec<RedisResult<Value>>>(con).await
}

pub(crate) struct SingleExecutor {
    connector: Connector,
    conn: Option<Conn>,
    scripts: LoadedScripts,
    redact: Redactor,
    id: String,
}

impl SingleExecutor {
    pub(crate) fn new(
        connector: Connector,
        scripts: LoadedScripts,
        redact: Redactor,
        id: String,
    ) -> Self {
        SingleExecutor {
            connector,
            conn: None,
            scripts,
            redact,
            id,
        }
    }

    async fn connect(&mut self) -> Result<&mut Conn, NodeError> {
        if self.conn.is_none() {
            let conn = match &mut self.connector {
                Connector::Client { client, config } => Conn::Multiplexed(
                    client
                        .get_multiplexed_async_connection_with_config(config)
                        .await
                        .map_err(|e| node_error(&e, &self.redact))?,
                ),
                Connector::Fixed(c) => Conn::Multiplexed(c.clone()),
                Connector::Manager(m) => Conn::Manager(m.clone()),
                #[cfg(feature = "sentinel")]
                Connector::Sentinel { client, config } => {
                    let master = client
                        .async_get_client()
                        .await
                        .map_err(|e| node_error(&e, &self.redact))?;
                    Conn::Multiplexed(
                        master
                            .get_multiplexed_async_connection_with_config(config)
                            .await
                            .map_err(|e| node_error(&e, &self.redact))?,
                    )
                }
            };
            self.conn = Some(conn);
            self.preload().await;
        }
        self.conn
            .as_mut()
            .ok_or_else(|| NodeError::Connection("not connected".into()))
    }

    /// Loads every script so that the first EVALSHA finds it. A failure is
    /// only logged: EVALSHA falls back to EVAL.
    async fn preload(&mut self) {
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for s in self.scripts.all() {
            pipe.cmd("SCRIPT").arg("LOAD").arg(&s.source);
        }
        if let Some(conn) = self.conn.as_mut() {
            match conn.query(&pipe).await {
                Ok(results) => {
                    for r in results {
                        if let Err(e) = r {
                            tracing::debug!(node = %self.id, "SCRIPT LOAD failed: {}", self.redact.scrub(&e.to_string()));
                        }
                    }
                }
                Err(e) => {
                    tracing::debug!(node = %self.id, "SCRIPT LOAD failed: {}", self.redact.scrub(&e.to_string()));
                    if needs_reconnect(&e) {
                        self.drop_connection();
                    }
                }
            }
        }
    }

    fn drop_connection(&mut self) {
        match self.connector {
            // The manager reconnects by itself; a fixed connection cannot be
            // replaced (it reports its errors).
            Connector::Manager(_) | Connector::Fixed(_) => {}
            _ => self.conn = None,
        }
    }

    async fn run(
        &mut self,
        calls: &[Call],
        eval: bool,
    ) -> Result<Vec<RedisResult<Value>>, redis::RedisError> {
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for c in calls {
            pipe.add_command(if eval {
                c.eval(&self.scripts)
            } else {
                c.single_server(&self.scripts)
            });
        }
        let conn = match self.connect().await {
            Ok(c) => c,
            Err(e) => {
                return Ok(calls.iter().map(|_| Err(to_redis(&e))).collect());
            }
        };
        conn.query(&pipe).await
    }
}

/// Carries a NodeError through the RedisResult plumbing.
fn to_redis(e: &NodeError) -> redis::RedisError {
    redis::RedisError::from((redis::ErrorKind::Client, "node error", e.to_string()))
}

#[async_trait::async_trait]
impl Executor for SingleExecutor {
    async fn warm_up(&mut self) {
        if let Err(e) = self.connect().await {
            tracing::debug!(node = %self.id, "initial connection failed: {e}");
        }
    }

    async fn execute(&mut self, calls: &[Call]) -> Vec<Result<Value, NodeError>> {
        // Connect first so a connect error is reported as such.
        if let Err(e) = self.connect().await {
            return calls.iter().map(|_| Err(e.clone())).collect();
        }
        let mut results: Vec<Result<Value, NodeError>> = match self.run(calls, false).await {
            Ok(r) => r
                .into_iter()
                .map(|r| r.map_err(|e| node_err_keep(&e, &self.redact)))
                .collect(),
            Err(e) => {
                let reconnect = needs_reconnect(&e);
                if reconnect {
                    self.drop_connection();
                }
                let ne = node_error(&e, &self.redact);
                let mut results: Vec<Result<Value, NodeError>> =
                    calls.iter().map(|_| Err(ne.clone())).collect();
                if reconnect {
                    self.resend_releases(calls, &mut results).await;
                }
                return results;
            }
        };
        // NOSCRIPT (a SCRIPT FLUSH, or a restarted server): send those calls
        // again, in order, as EVAL (which also caches the script). They were
        // not executed, so this is no retry.
        let missing: Vec<usize> = results
            .iter()
            .enumerate()
            .filter(|(_, r)| matches!(r, Err(NodeError::Server(m)) if m.contains("NOSCRIPT")))
            .map(|(i, _)| i)
            .collect();
        if !missing.is_empty() {
            let again: Vec<Call> = missing.iter().map(|&i| calls[i].clone()).collect();
            match self.run(&again, true).await {
                Ok(r) => {
                    for (i, r) in missing.iter().zip(r) {
                        results[*i] = r.map_err(|e| node_err_keep(&e, &self.redact));
                    }
                }
                Err(e) => {
                    if needs_reconnect(&e) {
                        self.drop_connection();
                    }
                    let ne = node_error(&e, &self.redact);
                    for i in missing {
                        results[i] = Err(ne.clone());
                    }
                }
            }
        }
        if results
            .iter()
            .any(|r| matches!(r, Err(NodeError::Server(m)) if m.contains("READONLY")))
        {
            // The server became a replica (failover): find the master again.
            self.drop_connection();
        }
        results
    }
}

impl SingleExecutor {
    /// After the connection broke under a batch, sends its releases once more
    /// on a new connection. A release is safe to repeat (it deletes only keys
    /// that still hold its token), and one lost with the connection would
    /// leave a key behind until its TTL. Acquires and extends are never
    /// repeated.
    async fn resend_releases(&mut self, calls: &[Call], results: &mut [Result<Value, NodeError>]) {
        let releases: Vec<usize> = calls
            .iter()
            .enumerate()
            .filter(|(_, c)| c.kind == Kind::Release)
            .map(|(i, _)| i)
            .collect();
        if releases.is_empty() || self.connect().await.is_err() {
            return;
        }
        let again: Vec<Call> = releases.iter().map(|&i| calls[i].clone()).collect();
        match self.run(&again, true).await {
            Ok(replies) => {
                for (&i, r) in releases.iter().zip(replies) {
                    results[i] = r.map_err(|e| node_err_keep(&e, &self.redact));
                }
            }
            Err(e) => {
                if needs_reconnect(&e) {
                    self.drop_connection();
                }
            }
        }
    }
}

fn node_err_keep(e: &redis::RedisError, redact: &Redactor) -> NodeError {
    if is_noscript(e) {
        return NodeError::Server(format!("NOSCRIPT {}", redact.scrub(&e.to_string())));
    }
    if is_readonly(e) {
        return NodeError::Server(format!("READONLY {}", redact.scrub(&e.to_string())));
    }
    node_error(e, redact)
}

/// Default response timeout of a node's connection: generous, since the
/// core bounds each request by its own per-node timeout; it only frees the
/// driver from a server that never answers.
pub(crate) const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default connection timeout.
pub(crate) const DEFAULT_CONNECTION_TIMEOUT: Duration = Duration::from_secs(1);
