//! Executing batches over one connection to one server (directly, through a
//! connection the user has, or to the master Sentinel names), on the
//! `redis` crate's own connection types.
//!
//! # Nothing left behind across a stall
//!
//! A batch is waited for until the server answers: a node that stops
//! answering holds its queue, and the queue's [`Backlog`] refuses new
//! acquires without sending them, so nothing piles up. Two things can end
//! the wait early, and both keep every release after the acquires it
//! follows:
//!
//! - **The connection breaks.** The releases of the batch (and any that
//!   could not be sent) are *owed*: sent again, first thing, on the next
//!   connection. A release is safe to repeat (it deletes only keys that
//!   still hold its token).
//! - **No reply within the response timeout** (a server paused, a link
//!   black-holed). The connection is given up and replaced, and its
//!   releases are owed. The old socket may still hold acquires that the
//!   server has not read yet and will run once it resumes; a release on the
//!   new connection could then overtake them. So the new connection first
//!   **fences** the old one: `CLIENT KILL ID` of the old connection, on the
//!   same server process (same `run_id`), before anything else is sent on
//!   it. After the kill, nothing of the old connection runs any more, so
//!   the owed releases come after whatever of it did run. Where the fence
//!   is impossible (the server refuses `CLIENT ID` or `INFO`, or the
//!   connection is one the user passed in), the connection is never given
//!   up on a timeout: the batch is simply waited for.

use std::collections::VecDeque;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, MultiplexedConnection};
use redis::{AsyncConnectionConfig, Client, RedisResult, Value};
use redlock_core::backlog::{Backlog, Permit};
use redlock_core::{Durability, NodeError};

use redlock_kit::plan::{Command, Entry, Planner};
use redlock_kit::reply::Reply;
use redlock_kit::{Call, Executor, Kind, LoadedScripts};

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

impl Connector {
    /// Whether a connection can be given up and made anew here.
    fn replaceable(&self) -> bool {
        !matches!(self, Connector::Fixed(_) | Connector::Manager(_))
    }
}

enum Conn {
    Multiplexed(MultiplexedConnection),
    Manager(ConnectionManager),
}

/// What goes on the wire in one go: a pipeline, or one command on its own.
#[derive(Clone, Copy)]
enum Wire<'a> {
    Pipe(&'a redis::Pipeline),
    One(&'a redis::Cmd),
}

/// The replies to a [`Wire`].
enum Replies {
    Many(Vec<RedisResult<Value>>),
    One(RedisResult<Value>),
}

fn to_redis_error(what: &'static str) -> redis::RedisError {
    redis::RedisError::from((redis::ErrorKind::Client, what))
}

impl Conn {
    async fn send(&mut self, wire: Wire<'_>) -> RedisResult<Replies> {
        match wire {
            Wire::Pipe(pipe) => self.query(pipe).await.map(Replies::Many),
            Wire::One(cmd) => self.query_one(cmd).await.map(Replies::One),
        }
    }

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

/// Which connection of which server process: what a fence needs.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Identity {
    run_id: String,
    client_id: i64,
}

/// A release that must still reach the server, and its place in the
/// node's backlog.
struct Owed {
    call: Call,
    _permit: Permit,
}

/// How waiting for a batch ended when it did not end with replies.
enum Failed {
    /// No connection could be made: nothing was sent.
    NotConnected(NodeError),
    /// The connection broke under the batch.
    Broken(redis::RedisError),
    /// No reply within the response timeout; the connection was given up.
    TimedOut(Duration),
}

pub(crate) struct SingleExecutor {
    connector: Connector,
    conn: Option<Conn>,
    /// The connection needs its scripts loaded and its identity read before
    /// the next request (new, or reconnected by a manager).
    unprepared: bool,
    identity: Option<Identity>,
    /// A connection given up with requests unanswered on it: killed on the
    /// server before the next connection sends anything.
    fence: Option<Identity>,
    /// Releases that must still be sent, oldest first.
    owed: VecDeque<Owed>,
    backlog: Backlog,
    response_timeout: Option<Duration>,
    /// Cheap to clone, so that a plan borrowing it can live beside
    /// `&mut self`.
    planner: Planner,
    redact: Secrets,
    id: String,
}

impl SingleExecutor {
    pub(crate) fn new(
        connector: Connector,
        scripts: LoadedScripts,
        redact: Secrets,
        id: String,
        response_timeout: Option<Duration>,
        backlog: Backlog,
    ) -> Self {
        SingleExecutor {
            connector,
            conn: None,
            unprepared: true,
            identity: None,
            fence: None,
            owed: VecDeque::new(),
            backlog,
            response_timeout,
            planner: Planner::new(scripts),
            redact,
            id,
        }
    }

    /// Sets what acquires and extends wait for: with a replica wait, every
    /// batch holding one ends with a `WAIT` (see [`Planner::plan`]).
    pub(crate) fn with_durability(mut self, durability: Durability) -> Self {
        self.planner = self.planner.with_durability(durability);
        self
    }

    /// The connection, made first if needed (and prepared: fence, scripts,
    /// identity).
    async fn connect(&mut self) -> Result<&mut Conn, NodeError> {
        if self.conn.is_none() {
            let not_connected = |e: &redis::RedisError, r: &Secrets| match node_error(e, r) {
                // Refused credentials are a configuration error, not an outage.
                auth @ NodeError::Auth(_) => auth,
                other => NodeError::NotConnected(other.to_string()),
            };
            let conn = match &mut self.connector {
                Connector::Client { client, config } => Conn::Multiplexed(
                    client
                        .get_multiplexed_async_connection_with_config(config)
                        .await
                        .map_err(|e| not_connected(&e, &self.redact))?,
                ),
                Connector::Fixed(c) => Conn::Multiplexed(c.clone()),
                Connector::Manager(m) => Conn::Manager(m.clone()),
                #[cfg(feature = "sentinel")]
                Connector::Sentinel { client, config } => {
                    let master = client
                        .async_get_client()
                        .await
                        .map_err(|e| not_connected(&e, &self.redact))?;
                    Conn::Multiplexed(
                        master
                            .get_multiplexed_async_connection_with_config(config)
                            .await
                            .map_err(|e| not_connected(&e, &self.redact))?,
                    )
                }
            };
            self.conn = Some(conn);
            self.unprepared = true;
        }
        if self.unprepared {
            self.prepare().await?;
        }
        self.conn
            .as_mut()
            .ok_or_else(|| NodeError::NotConnected("no connection".into()))
    }

    /// Readies a new connection before any request goes out on it: reads
    /// which connection of which server it is, fences a connection given up
    /// on the same server, loads every script (so the first EVALSHA finds
    /// it; a failure only costs an EVAL later).
    async fn prepare(&mut self) -> Result<(), NodeError> {
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        pipe.add_command(wire::command(&Command::ClientId));
        pipe.add_command(wire::command(&Command::InfoServer));
        for script in self.planner.scripts().all() {
            pipe.add_command(wire::command(&Command::ScriptLoad { script }));
        }
        let replies = match self.bounded_query(&pipe).await {
            Ok(r) => r,
            Err(failed) => return Err(self.failed_prepare(failed)),
        };
        let mut replies = replies.into_iter();
        let client_id = match replies.next() {
            Some(Ok(Value::Int(id))) => Some(id),
            _ => None,
        };
        let run_id = match replies.next() {
            Some(Ok(v)) => run_id(&v),
            _ => None,
        };
        for r in replies {
            if let Err(e) = r {
                tracing::debug!(node = %self.id, "SCRIPT LOAD failed: {}", self.redact.redact(&e.to_string()));
            }
        }
        self.identity = match (run_id, client_id) {
            (Some(run_id), Some(client_id)) => Some(Identity { run_id, client_id }),
            _ => {
                tracing::debug!(node = %self.id, "CLIENT ID or INFO refused: this connection is never replaced on a timeout");
                None
            }
        };
        if let Some(old) = self.fence.clone() {
            let same_server = self
                .identity
                .as_ref()
                .is_some_and(|new| new.run_id == old.run_id);
            if same_server {
                let mut kill = redis::pipe();
                kill.ignore_errors();
                kill.add_command(wire::command(&Command::ClientKill { id: old.client_id }));
                match self.bounded_query(&kill).await {
                    // Killed, or already gone ("No such client"): either
                    // way nothing of it runs any more.
                    Ok(replies) => {
                        if let Some(Err(e)) = replies.first() {
                            tracing::debug!(node = %self.id, "fence: {}", self.redact.redact(&e.to_string()));
                        }
                    }
                    Err(failed) => return Err(self.failed_prepare(failed)),
                }
            }
            // A different server process (restarted, or a new master after
            // a failover) has no trace of the old connection.
            self.fence = None;
        }
        self.unprepared = false;
        Ok(())
    }

    /// The connection failed while being prepared: nothing of ours was
    /// sent on it yet.
    fn failed_prepare(&mut self, failed: Failed) -> NodeError {
        let e = match failed {
            Failed::NotConnected(e) => e,
            Failed::Broken(e) => {
                self.broke(&e);
                node_error(&e, &self.redact)
            }
            Failed::TimedOut(t) => NodeError::Connection(format!("no reply within {t:?}")),
        };
        match e {
            NodeError::Auth(_) | NodeError::NotConnected(_) => e,
            other => NodeError::NotConnected(other.to_string()),
        }
    }

    /// The response timeout, where giving the connection up is safe (it
    /// can be replaced and fenced); `None` means wait for the server.
    fn give_up_after(&self) -> Option<Duration> {
        if self.connector.replaceable() && self.identity.is_some() {
            self.response_timeout
        } else {
            None
        }
    }

    /// Runs `pipe` on the current connection, bounded as
    /// [`give_up_after`](Self::give_up_after) says (during `prepare`,
    /// when the identity is not known yet, by the response timeout: only
    /// our own setup commands are on the connection then).
    async fn bounded_query(
        &mut self,
        pipe: &redis::Pipeline,
    ) -> Result<Vec<RedisResult<Value>>, Failed> {
        match self.bounded(Wire::Pipe(pipe)).await? {
            Replies::Many(r) => Ok(r),
            Replies::One(r) => Ok(vec![r]),
        }
    }

    /// [`bounded_query`](Self::bounded_query) for one command.
    async fn bounded_one(&mut self, cmd: &redis::Cmd) -> Result<RedisResult<Value>, Failed> {
        match self.bounded(Wire::One(cmd)).await? {
            Replies::One(r) => Ok(r),
            Replies::Many(mut r) => Ok(r.pop().unwrap_or(Err(to_redis_error("no reply")))),
        }
    }

    async fn bounded(&mut self, wire: Wire<'_>) -> Result<Replies, Failed> {
        let limit = if self.unprepared && self.connector.replaceable() {
            self.response_timeout
        } else {
            self.give_up_after()
        };
        let Some(conn) = self.conn.as_mut() else {
            return Err(Failed::NotConnected(NodeError::NotConnected(
                "no connection".into(),
            )));
        };
        let result = match limit {
            Some(limit) => match tokio::time::timeout(limit, conn.send(wire)).await {
                Ok(r) => r,
                Err(_) => {
                    self.give_up(limit);
                    return Err(Failed::TimedOut(limit));
                }
            },
            None => conn.send(wire).await,
        };
        result.map_err(Failed::Broken)
    }

    /// Gives the connection up after no reply within `limit`; the next one
    /// fences it.
    fn give_up(&mut self, limit: Duration) {
        tracing::warn!(node = %self.id, "no reply within {limit:?}: replacing the connection (the old one is killed on the server first)");
        self.fence = self.identity.take().or(self.fence.take());
        self.conn = None;
        self.unprepared = true;
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
        mut replies: impl Iterator<Item = &'r Result<Reply, NodeError>>,
    ) {
        if replies.any(|r| matches!(r, Err(NodeError::Server(m)) if m.contains("READONLY"))) {
            self.drop_connection();
        }
    }

    fn drop_connection(&mut self) {
        // A broken connection may still have had our requests in its
        // buffers; fencing it is harmless when the server already closed it.
        self.fence = self.identity.take().or(self.fence.take());
        self.unprepared = true;
        match self.connector {
            // The manager reconnects by itself; a fixed connection cannot be
            // replaced (it reports its errors).
            Connector::Manager(_) | Connector::Fixed(_) => {}
            _ => self.conn = None,
        }
    }

    /// Keeps the releases among `calls` to be sent again on the next
    /// connection; at most the backlog's limit (the oldest are given up
    /// first, and their keys expire with their TTL).
    fn owe(&mut self, calls: impl IntoIterator<Item = Call>) {
        for call in calls {
            if call.kind != Kind::Release {
                continue;
            }
            if self.owed.len() >= self.backlog.limit() {
                if let Some(dropped) = self.owed.pop_front() {
                    tracing::warn!(node = %self.id, keys = ?dropped.call.keys, "too many releases owed to an unreachable node: giving one up (its keys expire with their TTL)");
                }
            }
            self.owed.push_back(Owed {
                call,
                _permit: self.backlog.admit(),
            });
        }
    }

    /// Sends the owed releases (as EVAL: the server may have restarted
    /// without scripts) and returns their replies, oldest first. On failure
    /// they stay owed.
    async fn pay_owed(&mut self) -> Result<Vec<RedisResult<Value>>, NodeError> {
        if self.owed.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::Pipeline::with_capacity(self.owed.len());
        pipe.ignore_errors();
        let script = self.planner.scripts().get(Kind::Release);
        for o in &self.owed {
            pipe.add_command(wire::command(&Command::Script {
                script,
                call: &o.call,
                source: true,
            }));
        }
        match self.bounded_query(&pipe).await {
            Ok(replies) => {
                tracing::debug!(node = %self.id, releases = self.owed.len(), "owed releases sent");
                self.owed.clear();
                Ok(replies)
            }
            Err(failed) => Err(self.failed_prepare(failed)),
        }
    }

    /// The connection, prepared and with nothing owed on it: what every
    /// batch needs before it is sent. On `Err` nothing of the batch was sent.
    async fn ready(&mut self) -> Result<(), NodeError> {
        self.connect().await?;
        self.pay_owed().await.map(drop)
    }

    /// Sends `entries` as one pipeline (one command on its own); one result
    /// per entry.
    async fn run(&mut self, entries: &[Entry<'_>]) -> Result<Vec<RedisResult<Value>>, Failed> {
        match entries {
            [] => Ok(Vec::new()),
            [only] => {
                let cmd = wire::command(&only.command);
                self.bounded_one(&cmd).await.map(|r| vec![r])
            }
            _ => {
                let mut pipe = redis::Pipeline::with_capacity(entries.len());
                pipe.ignore_errors();
                for e in entries {
                    pipe.add_command(wire::command(&e.command));
                }
                self.bounded_query(&pipe).await
            }
        }
    }

    /// A reply as the kit's, errors without secrets.
    fn decode(&self, reply: RedisResult<Value>) -> Result<Reply, NodeError> {
        reply
            .map(|v| wire::decode(v, &self.redact))
            .map_err(|e| node_err_keep(&e, &self.redact))
    }

    /// The batch did not get its replies: its releases are owed, and every
    /// other call fails. When the connection broke under the batch, the
    /// releases are sent again at once on a new connection (after the
    /// fence) and answered from there; acquires and extends are never
    /// repeated.
    async fn fail_batch(
        &mut self,
        calls: &[Call],
        failed: Failed,
    ) -> Vec<Result<Reply, NodeError>> {
        let (e, retry) = match failed {
            Failed::NotConnected(e) => (e, false),
            Failed::Broken(e) => {
                let replaced = self.broke(&e);
                (node_error(&e, &self.redact), replaced)
            }
            Failed::TimedOut(t) => (
                NodeError::Connection(format!(
                    "no reply within {t:?}; the connection was replaced"
                )),
                false,
            ),
        };
        let mut results: Vec<Result<Reply, NodeError>> =
            calls.iter().map(|_| Err(e.clone())).collect();
        let releases: Vec<usize> = (0..calls.len())
            .filter(|&i| calls[i].kind == Kind::Release)
            .collect();
        if releases.is_empty() {
            return results;
        }
        self.owe(releases.iter().map(|&i| calls[i].clone()));
        if retry && self.connect().await.is_ok() {
            if let Ok(replies) = self.pay_owed().await {
                let ours = replies.len().saturating_sub(releases.len());
                for (&i, reply) in releases.iter().zip(replies.into_iter().skip(ours)) {
                    results[i] = self.decode(reply);
                }
            }
        }
        results
    }
}

/// The `run_id` field of an `INFO server` reply.
fn run_id(v: &Value) -> Option<String> {
    let text = match v {
        Value::BulkString(b) => std::str::from_utf8(b).ok()?.to_owned(),
        Value::VerbatimString { text, .. } => text.clone(),
        Value::SimpleString(s) => s.clone(),
        _ => return None,
    };
    text.lines()
        .find_map(|l| l.strip_prefix("run_id:"))
        .map(|id| id.trim().to_owned())
}

#[async_trait::async_trait]
impl Executor for SingleExecutor {
    async fn warm_up(&mut self) {
        if let Err(e) = self.connect().await {
            tracing::debug!(node = %self.id, "initial connection failed: {e}");
        }
    }

    fn owes(&self) -> bool {
        !self.owed.is_empty()
    }

    async fn execute(&mut self, calls: &[Call]) -> Vec<Result<Reply, NodeError>> {
        if let Err(e) = self.ready().await {
            return self.fail_batch(calls, Failed::NotConnected(e)).await;
        }
        if calls.is_empty() {
            return Vec::new();
        }
        let planner = self.planner.clone();
        let entries = planner.plan(calls);
        let replies = match self.run(&entries).await {
            Ok(r) => r,
            Err(failed) => return self.fail_batch(calls, failed).await,
        };
        let mut results: Vec<Result<Reply, NodeError>> =
            calls.iter().map(|_| Err(NodeError::Closed)).collect();
        // NOSCRIPT (a SCRIPT FLUSH, or a restarted server): send those
        // entries again, in order, as EVAL (which also caches the script).
        // They were not executed, so this is no retry.
        let mut missing: Vec<Entry<'_>> = Vec::new();
        for (entry, reply) in entries.into_iter().zip(replies) {
            // The trailing WAIT covered only what ran before it: with
            // requests to send again it follows them once more.
            let resend_wait = matches!(entry.command, Command::Wait { .. }) && !missing.is_empty();
            if resend_wait || matches!(&reply, Err(e) if is_noscript(e)) {
                missing.push(Entry {
                    command: entry.command.by_source(),
                    answers: entry.answers,
                });
            } else {
                entry.distribute(self.decode(reply), &mut results);
            }
        }
        if !missing.is_empty() {
            match self.run(&missing).await {
                Ok(replies) => {
                    for (entry, reply) in missing.iter().zip(replies) {
                        entry.distribute(self.decode(reply), &mut results);
                    }
                }
                Err(failed) => {
                    let indices: Vec<usize> = missing
                        .iter()
                        .flat_map(|e| e.answers.calls().iter().copied())
                        .collect();
                    let members: Vec<Call> = indices.iter().map(|&i| calls[i].clone()).collect();
                    let errors = self.fail_batch(&members, failed).await;
                    for (i, e) in indices.into_iter().zip(errors) {
                        results[i] = e;
                    }
                    // Writes of the first pipeline whose WAIT never ran
                    // are not known to be replicated.
                    for entry in missing
                        .iter()
                        .filter(|e| matches!(e.command, Command::Wait { .. }))
                    {
                        let lost =
                            NodeError::Connection("connection failed before WAIT answered".into());
                        entry.distribute(Err(lost), &mut results);
                    }
                }
            }
        }
        self.check_readonly(results.iter());
        results
    }
}

fn node_err_keep(e: &redis::RedisError, redact: &Secrets) -> NodeError {
    if is_noscript(e) {
        return NodeError::Server(format!("NOSCRIPT {}", redact.redact(&e.to_string())));
    }
    if is_readonly(e) {
        return NodeError::Server(format!("READONLY {}", redact.redact(&e.to_string())));
    }
    node_error(e, redact)
}

/// Default response timeout: how long a node waits for a reply before it
/// gives the connection up and replaces it (fencing the old one). The core
/// bounds each request by its own, much shorter per-node timeout; this only
/// decides when a silent server's connection is abandoned.
pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default bound on establishing a connection (see
/// [`Builder::connection_timeout`](crate::Builder::connection_timeout)).
pub const DEFAULT_CONNECTION_TIMEOUT: Duration = Duration::from_secs(1);
