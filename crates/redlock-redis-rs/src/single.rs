//! Executing batches over one connection to one server (directly, through a
//! connection the user has, or to the master Sentinel names).

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, MultiplexedConnection};
use redis::{AsyncConnectionConfig, Client, RedisResult, Value};
use redlock_core::NodeError;

use crate::address::Redactor;
use crate::direct::Direct;
use crate::error::{is_noscript, is_readonly, needs_reconnect, node_error};
use crate::queue::Executor;
use crate::scripts::{Call, Kind, LoadedScripts};

/// Where connections come from. One per node, so its size does not matter.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Connector {
    /// A client: connect (and reconnect) ourselves.
    Client {
        client: Client,
        /// For the `redis` crate's connection (TLS, RESP3).
        config: AsyncConnectionConfig,
        /// For a [`Direct`] connection (plain TCP or Unix socket, RESP2).
        connection_timeout: Option<Duration>,
        response_timeout: Option<Duration>,
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
    Direct(Direct),
    Multiplexed(MultiplexedConnection),
    Manager(ConnectionManager),
}

impl Conn {
    async fn query(&mut self, pipe: &redis::Pipeline) -> RedisResult<Vec<RedisResult<Value>>> {
        match self {
            Conn::Direct(c) => c.query(pipe).await,
            Conn::Multiplexed(c) => query(c, pipe).await,
            Conn::Manager(c) => query(c, pipe).await,
        }
    }
}

impl Conn {
    /// One command on its own (no pipeline around it); a server's error
    /// reply is the command's result, a broken connection the `Err`.
    async fn query_one(&mut self, cmd: &redis::Cmd) -> RedisResult<RedisResult<Value>> {
        let reply = match self {
            Conn::Direct(c) => return c.query_one(cmd).await,
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
        if matches!(&self.conn, Some(Conn::Direct(d)) if !d.is_usable()) {
            self.conn = None;
        }
        if self.conn.is_none() {
            let conn = match &mut self.connector {
                Connector::Client {
                    client,
                    connection_timeout,
                    response_timeout,
                    ..
                } if crate::direct::supports(client.get_connection_info()) => Conn::Direct(
                    Direct::connect(
                        client.get_connection_info(),
                        *connection_timeout,
                        *response_timeout,
                    )
                    .await
                    .map_err(|e| node_error(&e, &self.redact))?,
                ),
                Connector::Client { client, config, .. } => Conn::Multiplexed(
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
                    self.broke(&e);
                }
            }
        }
    }

    /// Sends one command on the connection (made first if needed). The
    /// innermost result is the server's reply or error reply; the one
    /// around it is `Err` when the connection broke; the outer one is `Err`
    /// when no connection could be made.
    async fn send_one(
        &mut self,
        cmd: redis::Cmd,
    ) -> Result<RedisResult<RedisResult<Value>>, NodeError> {
        Ok(self.connect().await?.query_one(&cmd).await)
    }

    /// After a broken connection: drops it when it must be replaced and
    /// says whether it was.
    fn broke(&mut self, e: &redis::RedisError) -> bool {
        let reconnect = needs_reconnect(e);
        if reconnect {
            self.drop_connection();
        }
        reconnect
    }

    /// After a reply: a `READONLY` answer means the server became a replica
    /// (failover), so the master is looked up again.
    fn check_readonly<'r>(
        &mut self,
        mut replies: impl Iterator<Item = &'r Result<Value, NodeError>>,
    ) {
        if replies.any(|r| matches!(r, Err(NodeError::Server(m)) if m.contains("READONLY"))) {
            self.drop_connection();
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

    /// Sends `entries` as one pipeline (as EVAL instead of EVALSHA when
    /// `eval`); one result per entry.
    async fn run(
        &mut self,
        calls: &[Call],
        entries: &[Entry],
        eval: bool,
    ) -> Result<Vec<RedisResult<Value>>, redis::RedisError> {
        // One command on its own, several as a pipeline.
        let (one, pipe) = match entries {
            [only] => (Some(only.command(calls, &self.scripts, eval)), None),
            _ => {
                let mut pipe = redis::Pipeline::with_capacity(entries.len());
                pipe.ignore_errors();
                for e in entries {
                    pipe.add_command(e.command(calls, &self.scripts, eval));
                }
                (None, Some(pipe))
            }
        };
        let conn = match self.connect().await {
            Ok(c) => c,
            Err(e) => {
                return Ok(entries.iter().map(|_| Err(to_redis(&e))).collect());
            }
        };
        match (one, pipe) {
            (Some(cmd), _) => conn.query_one(&cmd).await.map(|r| vec![r]),
            (None, Some(pipe)) => conn.query(&pipe).await,
            (None, None) => Ok(Vec::new()),
        }
    }
}

/// One command of a pipeline: one call, or several releases sent as one
/// [`RELEASE_MANY`](crate::scripts::RELEASE_MANY) call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Entry {
    One(usize),
    Releases(Vec<usize>),
}

impl Entry {
    fn command(&self, calls: &[Call], scripts: &LoadedScripts, eval: bool) -> redis::Cmd {
        match self {
            Entry::One(i) if eval => calls[*i].eval(scripts),
            Entry::One(i) => calls[*i].single_server(scripts),
            Entry::Releases(members) => {
                let Some(many) = scripts.release_many() else {
                    // `plan` only merges when the script is there.
                    return calls[members[0]].evalsha(scripts);
                };
                let nkeys: usize = members.iter().map(|&i| calls[i].keys.len()).sum();
                let bytes: usize = members
                    .iter()
                    .flat_map(|&i| calls[i].keys.iter().chain(&calls[i].token))
                    .map(|s| s.len() + 4)
                    .sum();
                let mut cmd = redis::Cmd::with_capacity(
                    3 + nkeys + 2 * members.len(),
                    many.source.len().max(many.sha.len()) + 16 + bytes,
                );
                if eval {
                    cmd.arg("EVAL").arg(&many.source);
                } else {
                    cmd.arg("EVALSHA").arg(&many.sha);
                }
                cmd.arg(nkeys);
                for &i in members {
                    cmd.arg(&calls[i].keys);
                }
                for &i in members {
                    cmd.arg(calls[i].keys.len())
                        .arg(calls[i].token.as_deref().unwrap_or(""));
                }
                cmd
            }
        }
    }

    /// The calls this entry carries.
    fn members(&self) -> Vec<usize> {
        match self {
            Entry::One(i) => vec![*i],
            Entry::Releases(members) => members.clone(),
        }
    }

    /// Hands this entry's reply to its calls.
    fn distribute(
        &self,
        reply: RedisResult<Value>,
        results: &mut [Result<Value, NodeError>],
        redact: &Redactor,
    ) {
        match self {
            Entry::One(i) => results[*i] = reply.map_err(|e| node_err_keep(&e, redact)),
            Entry::Releases(members) => match reply {
                Ok(Value::Array(items)) if items.len() == members.len() => {
                    for (&i, item) in members.iter().zip(items) {
                        results[i] = match item {
                            Value::ServerError(e) => Err(node_err_keep(&e.into(), redact)),
                            v => Ok(v),
                        };
                    }
                }
                Ok(other) => {
                    let mut text = format!("{other:?}");
                    text.truncate(200);
                    for &i in members {
                        results[i] = Err(NodeError::Protocol(text.clone()));
                    }
                }
                Err(e) => {
                    let ne = node_err_keep(&e, redact);
                    for &i in members {
                        results[i] = Err(ne.clone());
                    }
                }
            },
        }
    }
}

/// How a batch goes on the wire: releases (with the built-in script) are
/// gathered into one script call where that keeps the batch's meaning. A
/// release may move later in the batch, past calls on other keys only, so
/// every call still meets the keys in the state the original order gives
/// (a release deletes only keys that hold its own token).
pub(crate) fn plan(calls: &[Call], scripts: &LoadedScripts) -> Vec<Entry> {
    let mut entries = Vec::with_capacity(calls.len());
    if scripts.release_many().is_none() {
        entries.extend((0..calls.len()).map(Entry::One));
        return entries;
    }
    let mut group: Vec<usize> = Vec::new();
    let mut group_keys: std::collections::HashSet<&str> = std::collections::HashSet::new();
    let flush = |group: &mut Vec<usize>, entries: &mut Vec<Entry>| match group.len() {
        0 => {}
        1 => entries.push(Entry::One(group[0])),
        _ => entries.push(Entry::Releases(std::mem::take(group))),
    };
    for (i, call) in calls.iter().enumerate() {
        if call.kind == Kind::Release {
            group.push(i);
            group_keys.extend(call.keys.iter().map(String::as_str));
            continue;
        }
        if !group.is_empty() && call.keys.iter().any(|k| group_keys.contains(k.as_str())) {
            flush(&mut group, &mut entries);
            group.clear();
            group_keys.clear();
        }
        entries.push(Entry::One(i));
    }
    flush(&mut group, &mut entries);
    entries
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
        if let [call] = calls {
            return vec![self.execute_one(call).await];
        }
        // Connect first so a connect error is reported as such.
        if let Err(e) = self.connect().await {
            return calls.iter().map(|_| Err(e.clone())).collect();
        }
        let entries = plan(calls, &self.scripts);
        let replies = match self.run(calls, &entries, false).await {
            Ok(r) => r,
            Err(e) => {
                let reconnect = self.broke(&e);
                let ne = node_error(&e, &self.redact);
                let mut results: Vec<Result<Value, NodeError>> =
                    calls.iter().map(|_| Err(ne.clone())).collect();
                if reconnect {
                    self.resend_releases(calls, &mut results).await;
                }
                return results;
            }
        };
        let mut results: Vec<Result<Value, NodeError>> =
            calls.iter().map(|_| Err(NodeError::Closed)).collect();
        // NOSCRIPT (a SCRIPT FLUSH, or a restarted server): send those
        // entries again, in order, as EVAL (which also caches the script).
        // They were not executed, so this is no retry.
        let mut missing: Vec<Entry> = Vec::new();
        for (entry, reply) in entries.into_iter().zip(replies) {
            if matches!(&reply, Err(e) if is_noscript(e)) {
                missing.push(entry);
            } else {
                entry.distribute(reply, &mut results, &self.redact);
            }
        }
        if !missing.is_empty() {
            match self.run(calls, &missing, true).await {
                Ok(replies) => {
                    for (entry, reply) in missing.iter().zip(replies) {
                        entry.distribute(reply, &mut results, &self.redact);
                    }
                }
                Err(e) => {
                    self.broke(&e);
                    let ne = node_error(&e, &self.redact);
                    for entry in &missing {
                        for i in entry.members() {
                            results[i] = Err(ne.clone());
                        }
                    }
                }
            }
        }
        self.check_readonly(results.iter());
        results
    }

    /// [`execute`](Executor::execute) for one call, with the same handling
    /// (NOSCRIPT sent again in full, a release sent again after the
    /// connection broke under it) and no pipeline or lists around it.
    async fn execute_one(&mut self, call: &Call) -> Result<Value, NodeError> {
        let reply = self.send_one(call.single_server(&self.scripts)).await?;
        let reply = match reply {
            Ok(Err(e)) if is_noscript(&e) => self.send_one(call.eval(&self.scripts)).await?,
            other => other,
        };
        match reply {
            Ok(r) => {
                let r = r.map_err(|e| node_err_keep(&e, &self.redact));
                self.check_readonly(std::iter::once(&r));
                r
            }
            Err(e) => {
                let reconnect = self.broke(&e);
                let broken = Err(node_error(&e, &self.redact));
                if !reconnect || call.kind != Kind::Release {
                    return broken;
                }
                // See `resend_releases`.
                match self.send_one(call.eval(&self.scripts)).await {
                    Ok(Ok(r)) => r.map_err(|e| node_err_keep(&e, &self.redact)),
                    Ok(Err(e)) => {
                        self.broke(&e);
                        broken
                    }
                    Err(_) => broken,
                }
            }
        }
    }
}

impl SingleExecutor {
    /// After the connection broke under a batch, sends its releases once more
    /// on a new connection. A release is safe to repeat (it deletes only keys
    /// that still hold its token), and one lost with the connection would
    /// leave a key behind until its TTL. Acquires and extends are never
    /// repeated.
    async fn resend_releases(&mut self, calls: &[Call], results: &mut [Result<Value, NodeError>]) {
        let releases: Vec<Entry> = calls
            .iter()
            .enumerate()
            .filter(|(_, c)| c.kind == Kind::Release)
            .map(|(i, _)| Entry::One(i))
            .collect();
        if releases.is_empty() || self.connect().await.is_err() {
            return;
        }
        match self.run(calls, &releases, true).await {
            Ok(replies) => {
                for (entry, r) in releases.iter().zip(replies) {
                    entry.distribute(r, results, &self.redact);
                }
            }
            Err(e) => {
                self.broke(&e);
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

#[cfg(test)]
mod tests {
    use super::*;
    use redlock_core::Scripts;

    fn call(kind: Kind, keys: &[&str]) -> Call {
        Call {
            kind,
            keys: keys.iter().map(|k| k.to_string()).collect(),
            token: Some("tok".into()),
            number: None,
        }
    }

    #[test]
    fn releases_on_other_keys_share_one_entry() {
        let scripts = LoadedScripts::new(&Scripts::default());
        let calls = [
            call(Kind::Release, &["a"]),
            call(Kind::Acquire, &["x"]),
            call(Kind::Release, &["b", "c"]),
            call(Kind::Ping, &[]),
            call(Kind::Release, &["d"]),
        ];
        assert_eq!(
            plan(&calls, &scripts),
            vec![Entry::One(1), Entry::One(3), Entry::Releases(vec![0, 2, 4])]
        );
    }

    #[test]
    fn a_release_never_moves_past_a_call_on_its_keys() {
        let scripts = LoadedScripts::new(&Scripts::default());
        let calls = [
            call(Kind::Release, &["a"]),
            call(Kind::Release, &["b"]),
            call(Kind::Acquire, &["x", "b"]),
            call(Kind::Release, &["c"]),
            call(Kind::Extend, &["c"]),
            call(Kind::Release, &["d"]),
        ];
        assert_eq!(
            plan(&calls, &scripts),
            vec![
                Entry::Releases(vec![0, 1]),
                Entry::One(2),
                Entry::One(3),
                Entry::One(4),
                Entry::One(5),
            ]
        );
    }

    #[test]
    fn a_substitute_release_script_is_sent_as_it_is() {
        let scripts = LoadedScripts::new(&Scripts::default().with_release("return 0"));
        let calls = [call(Kind::Release, &["a"]), call(Kind::Release, &["b"])];
        assert_eq!(plan(&calls, &scripts), vec![Entry::One(0), Entry::One(1)]);
    }
}
