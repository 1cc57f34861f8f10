//! Executing batches over one connection to one server, over any client:
//! connecting, loading scripts, fencing a connection given up on, releases
//! owed after a failure, `NOSCRIPT` and `READONLY`.
//!
//! An adapter implements [`Link`] (connect, send commands as one round
//! trip, disconnect) over its client's connection; [`Session`] does the
//! rest and is the [`Executor`] of the node's [`Queue`](crate::Queue).
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
//!   connection cannot be replaced, [`Link::replaceable`]), the connection
//!   is never given up on a timeout: the batch is simply waited for.

use std::collections::VecDeque;
use std::time::Duration;

use redlock_core::backlog::{Backlog, Permit};
use redlock_core::NodeError;

use crate::call::{Call, Kind, LoadedScripts};
use crate::native::{self, Capabilities};
use crate::plan::{Command, Entry, Planner};
use crate::queue::Executor;
use crate::reply::Reply;

/// Default response timeout: how long a node waits for a reply before it
/// gives the connection up and replaces it (fencing the old one). The core
/// bounds each request by its own, much shorter per-node timeout; this only
/// decides when a silent server's connection is abandoned.
pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);

/// Default bound on establishing a connection.
pub const DEFAULT_CONNECTION_TIMEOUT: Duration = Duration::from_secs(1);

/// Refuses a zero timeout (it would fail every request, or none could be
/// made), naming the setting: the text of an adapter's configuration error.
///
/// ```
/// use std::time::Duration;
/// use redlock_kit::session::check_timeouts;
///
/// assert!(check_timeouts(Some(Duration::from_secs(1)), None).is_ok());
/// let e = check_timeouts(Some(Duration::ZERO), None).unwrap_err();
/// assert!(e.starts_with("response_timeout is zero"));
/// ```
pub fn check_timeouts(
    response_timeout: Option<Duration>,
    connection_timeout: Option<Duration>,
) -> Result<(), String> {
    for (name, value) in [
        ("response_timeout", response_timeout),
        ("connection_timeout", connection_timeout),
    ] {
        if value.is_some_and(|t| t.is_zero()) {
            return Err(format!(
                "{name} is zero: give a positive duration, or None to wait without a bound"
            ));
        }
    }
    Ok(())
}

/// A connection failed under a round trip: no replies.
#[derive(Debug, Clone, PartialEq)]
pub struct Broken {
    /// What happened (without secrets).
    pub error: NodeError,
    /// Whether the connection must be replaced: it broke, or its server
    /// became a replica. `false` for a failure that left it usable.
    pub reconnect: bool,
}

/// One client's connection to one server, as a [`Session`] uses it.
///
/// Errors are already free of secrets. A server's error reply to a command
/// is [`NodeError::Server`] (or [`NodeError::Auth`] for refused
/// credentials), with the server's code first (`NOSCRIPT …`,
/// `READONLY …`): the session reads those two.
#[async_trait::async_trait]
pub trait Link: Send + 'static {
    /// Makes a connection (or takes up again the one the link was given).
    /// On `Err` nothing was sent.
    async fn connect(&mut self) -> Result<(), NodeError>;

    /// Sends `commands` in order in one round trip (a pipeline, or one
    /// command on its own) over the current connection and returns one
    /// reply per command, or [`Broken`] when the connection failed under
    /// them. Decodes replies with [`Reply::Error`] for an error inside an
    /// array.
    async fn send(
        &mut self,
        commands: &[&Command<'_>],
    ) -> Result<Vec<Result<Reply, NodeError>>, Broken>;

    /// Drops the current connection; the next [`connect`](Self::connect)
    /// makes a new one.
    fn disconnect(&mut self);

    /// Whether a connection can be given up and made anew (not for a
    /// connection passed in by the user, or one that reconnects by
    /// itself); only then is a connection given up on a timeout.
    fn replaceable(&self) -> bool {
        true
    }
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
    Broken(Broken),
    /// No reply within the response timeout; the connection was given up.
    TimedOut(Duration),
}

/// The [`Executor`] of a node with one connection to one server, over a
/// [`Link`]; see the [module docs](self).
pub struct Session<L> {
    link: L,
    /// A connection was made (and not dropped since).
    connected: bool,
    /// The connection needs its scripts loaded and its identity read before
    /// the next request.
    unprepared: bool,
    identity: Option<Identity>,
    /// A connection given up with requests unanswered on it: killed on the
    /// server before the next connection sends anything.
    fence: Option<Identity>,
    /// Releases that must still be sent, oldest first.
    owed: VecDeque<Owed>,
    /// Native releases that deleted their key and are still to be
    /// announced (key, token): sent at the head of the next batch, or in
    /// an empty batch of their own right after this one. Best effort: lost
    /// with a connection that fails.
    announce: Vec<(String, String)>,
    backlog: Backlog,
    response_timeout: Option<Duration>,
    /// Cheap to clone, so that a plan borrowing it can live beside
    /// `&mut self`. Its capabilities are what the current connection's
    /// server answered (see [`native`](crate::native)), or none.
    planner: Planner,
    /// Whether native commands may replace the built-in scripts.
    native_allowed: bool,
    id: String,
}

impl<L: Link> Session<L> {
    /// A session over `link` for the node `id` (for logs), running
    /// `scripts`; gives a silent connection up after `response_timeout`
    /// (`None`: never); owed releases hold permits of `backlog`.
    pub fn new(
        link: L,
        scripts: LoadedScripts,
        id: String,
        response_timeout: Option<Duration>,
        backlog: Backlog,
    ) -> Self {
        Session {
            link,
            connected: false,
            unprepared: true,
            identity: None,
            fence: None,
            owed: VecDeque::new(),
            announce: Vec::new(),
            backlog,
            response_timeout,
            planner: Planner::new(scripts),
            native_allowed: true,
            id,
        }
    }

    /// What acquires and extends wait for: with a replica wait, every
    /// batch holding one ends with a `WAIT` (see
    /// [`Planner::with_durability`]).
    #[must_use]
    pub fn with_durability(mut self, durability: redlock_core::Durability) -> Self {
        self.planner = self.planner.with_durability(durability);
        self
    }

    /// Whether one-key releases and extends may use the server's native
    /// commands where it has them (default `true`; see
    /// [`native`]).
    #[must_use]
    pub fn with_native(mut self, allowed: bool) -> Self {
        self.native_allowed = allowed;
        self
    }

    /// The connection, made first if needed, and prepared (fence,
    /// scripts, identity).
    async fn connect(&mut self) -> Result<(), NodeError> {
        if !self.connected {
            self.link.connect().await.map_err(not_connected)?;
            self.connected = true;
            self.unprepared = true;
        }
        if self.unprepared {
            self.prepare().await?;
        }
        Ok(())
    }

    /// Readies a new connection before any request goes out on it: reads
    /// which connection of which server it is, fences a connection given up
    /// on the same server, asks which native commands the server has (see
    /// [`native`](crate::native)), loads every script (so the first
    /// EVALSHA finds it; a failure, such as an ACL without `@scripting`,
    /// only costs an EVAL later).
    async fn prepare(&mut self) -> Result<(), NodeError> {
        let planner = self.planner.clone();
        let mut commands = vec![Command::ClientId, Command::InfoServer];
        if self.native_allowed {
            commands.push(Command::Native(native::detect()));
        }
        commands.extend(
            planner
                .scripts()
                .all()
                .map(|script| Command::ScriptLoad { script }),
        );
        let replies = match self.bounded(&commands.iter().collect::<Vec<_>>()).await {
            Ok(r) => r,
            Err(failed) => return Err(self.failed_prepare(failed)),
        };
        let mut replies = replies.into_iter();
        let client_id = match replies.next() {
            Some(Ok(Reply::Int(id))) => Some(id),
            _ => None,
        };
        let run_id = match replies.next() {
            Some(Ok(Reply::Text(info))) => run_id(&info),
            _ => None,
        };
        let capabilities = match self.native_allowed.then(|| replies.next()) {
            Some(Some(Ok(reply))) => Capabilities::from_command_info(&reply),
            _ => Capabilities::NONE,
        };
        if capabilities.any() {
            tracing::debug!(node = %self.id, ?capabilities, "one-key releases and extends use the server's native commands");
        }
        self.planner = self.planner.clone().with_capabilities(capabilities);
        for r in replies {
            if let Err(e) = r {
                tracing::debug!(node = %self.id, "SCRIPT LOAD failed: {e}");
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
                let kill = Command::ClientKill { id: old.client_id };
                match self.bounded(&[&kill]).await {
                    // Killed, or already gone ("No such client"): either
                    // way nothing of it runs any more.
                    Ok(replies) => {
                        if let Some(Err(e)) = replies.first() {
                            tracing::debug!(node = %self.id, "fence: {e}");
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
        not_connected(match failed {
            Failed::NotConnected(e) => e,
            Failed::Broken(b) => {
                self.broke(&b);
                b.error
            }
            Failed::TimedOut(t) => NodeError::Connection(format!("no reply within {t:?}")),
        })
    }

    /// The response timeout, where giving the connection up is safe (it
    /// can be replaced and fenced); `None` means wait for the server.
    fn give_up_after(&self) -> Option<Duration> {
        if self.link.replaceable() && self.identity.is_some() {
            self.response_timeout
        } else {
            None
        }
    }

    /// Sends `commands` on the current connection, bounded as
    /// [`give_up_after`](Self::give_up_after) says (during `prepare`, when
    /// the identity is not known yet, by the response timeout: only our own
    /// setup commands are on the connection then). One reply per command.
    async fn bounded(
        &mut self,
        commands: &[&Command<'_>],
    ) -> Result<Vec<Result<Reply, NodeError>>, Failed> {
        let limit = if self.unprepared && self.link.replaceable() {
            self.response_timeout
        } else {
            self.give_up_after()
        };
        if !self.connected {
            return Err(Failed::NotConnected(NodeError::NotConnected(
                "no connection".into(),
            )));
        }
        let sent = match limit {
            Some(limit) => match tokio::time::timeout(limit, self.link.send(commands)).await {
                Ok(r) => r,
                Err(_) => {
                    self.give_up(limit);
                    return Err(Failed::TimedOut(limit));
                }
            },
            None => self.link.send(commands).await,
        };
        let mut replies = sent.map_err(Failed::Broken)?;
        replies.resize_with(commands.len(), || {
            Err(NodeError::Protocol("missing reply in pipeline".into()))
        });
        Ok(replies)
    }

    /// Gives the connection up after no reply within `limit`; the next one
    /// fences it.
    fn give_up(&mut self, limit: Duration) {
        tracing::warn!(node = %self.id, "no reply within {limit:?}: replacing the connection (the old one is killed on the server first)");
        self.drop_connection();
    }

    /// After a broken connection: drops it when it must be replaced and
    /// says whether it was.
    fn broke(&mut self, broken: &Broken) -> bool {
        if broken.reconnect {
            self.drop_connection();
        }
        broken.reconnect
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
        self.connected = false;
        self.link.disconnect();
    }

    /// Keeps the releases among `calls` to be sent again on the next
    /// connection; at most the backlog's limit (the oldest are given up
    /// first, and their keys expire with their TTL).
    fn owe<'c>(&mut self, calls: impl IntoIterator<Item = &'c Call>) {
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
                call: call.clone(),
                _permit: self.backlog.admit(),
            });
        }
    }

    /// Sends the owed releases (natively where the server can, else as
    /// EVAL: the server may have restarted without scripts) and returns
    /// their replies, oldest first. On failure they stay owed.
    async fn pay_owed(&mut self) -> Result<Vec<Result<Reply, NodeError>>, NodeError> {
        if self.owed.is_empty() {
            return Ok(Vec::new());
        }
        let owed = std::mem::take(&mut self.owed);
        let planner = self.planner.clone();
        let script = planner.scripts().get(Kind::Release);
        let mut commands: Vec<Command<'_>> = Vec::with_capacity(owed.len());
        for o in &owed {
            commands.push(planner.native_release(&o.call).unwrap_or(Command::Script {
                script,
                call: &o.call,
                source: true,
            }));
        }
        let sent = self.bounded(&commands.iter().collect::<Vec<_>>()).await;
        drop(commands);
        match sent {
            Ok(replies) => {
                tracing::debug!(node = %self.id, releases = owed.len(), "owed releases sent");
                let mut replies = replies.into_iter();
                let replies: Vec<Result<Reply, NodeError>> = owed
                    .iter()
                    .map(|_| {
                        replies
                            .next()
                            .unwrap_or_else(|| Err(NodeError::Protocol("no reply".into())))
                    })
                    .collect();
                for (o, reply) in owed.iter().zip(&replies) {
                    let deleted = matches!(reply, Ok(Reply::Int(n)) if *n > 0);
                    if deleted && planner.native_release(&o.call).is_some() {
                        if let (Some(key), Some(token)) = (o.call.keys.first(), &o.call.token) {
                            self.announce.push((key.clone(), token.clone()));
                        }
                    }
                }
                Ok(replies)
            }
            Err(failed) => {
                // Owed meanwhile (none, as things are) come after these.
                let newer = std::mem::replace(&mut self.owed, owed);
                self.owed.extend(newer);
                Err(self.failed_prepare(failed))
            }
        }
    }

    /// The connection, prepared and with nothing owed on it: what every
    /// batch needs before it is sent. On `Err` nothing of the batch was sent.
    async fn ready(&mut self) -> Result<(), NodeError> {
        self.connect().await?;
        self.pay_owed().await.map(drop)
    }

    /// Sends `entries` in one round trip; one reply per entry.
    async fn run(
        &mut self,
        entries: &[Entry<'_>],
    ) -> Result<Vec<Result<Reply, NodeError>>, Failed> {
        let commands: Vec<&Command<'_>> = entries.iter().map(|e| &e.command).collect();
        self.bounded(&commands).await
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
            Failed::Broken(b) => {
                let replaced = self.broke(&b);
                (b.error, replaced)
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
        self.owe(releases.iter().map(|&i| &calls[i]));
        if retry && self.connect().await.is_ok() {
            if let Ok(replies) = self.pay_owed().await {
                let ours = replies.len().saturating_sub(releases.len());
                for (&i, reply) in releases.iter().zip(replies.into_iter().skip(ours)) {
                    results[i] = reply;
                }
            }
        }
        results
    }
}

/// A connection that could not be made or prepared: refused credentials
/// stay a configuration error, anything else means not connected (nothing
/// was sent).
fn not_connected(e: NodeError) -> NodeError {
    match e {
        NodeError::Auth(_) | NodeError::NotConnected(_) => e,
        other => NodeError::NotConnected(other.to_string()),
    }
}

/// Whether `reply` says the script is not cached (it did not run).
fn is_noscript(reply: &Result<Reply, NodeError>) -> bool {
    matches!(reply, Err(NodeError::Server(m)) if m.contains("NOSCRIPT"))
}

/// The `run_id` field of an `INFO server` reply.
fn run_id(info: &str) -> Option<String> {
    info.lines()
        .find_map(|l| l.strip_prefix("run_id:"))
        .map(|id| id.trim().to_owned())
}

#[async_trait::async_trait]
impl<L: Link> Executor for Session<L> {
    async fn warm_up(&mut self) {
        if let Err(e) = self.connect().await {
            tracing::debug!(node = %self.id, "initial connection failed: {e}");
        }
    }

    fn owes(&self) -> bool {
        !self.owed.is_empty() || !self.announce.is_empty()
    }

    async fn execute(&mut self, calls: &[Call]) -> Vec<Result<Reply, NodeError>> {
        if let Err(e) = self.ready().await {
            self.announce.clear();
            return self.fail_batch(calls, Failed::NotConnected(e)).await;
        }
        // Announcements of releases answered earlier go first.
        let pending = std::mem::take(&mut self.announce);
        let announced = Entry::announcements(&pending);
        if calls.is_empty() {
            let entries: Vec<Entry<'_>> = announced.collect();
            if !entries.is_empty() {
                if let Err(Failed::Broken(b)) = self.run(&entries).await {
                    self.broke(&b);
                }
            }
            return Vec::new();
        }
        let planner = self.planner.clone();
        let entries: Vec<Entry<'_>> = announced.chain(planner.plan(calls)).collect();
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
            if resend_wait || is_noscript(&reply) {
                missing.push(Entry {
                    command: entry.command.by_source(),
                    answers: entry.answers,
                });
            } else if let Some(script) = entry.script_instead(&reply, &planner, calls) {
                // The server refused the native command unrun: the script
                // instead, and scripts only on this connection from now on.
                self.planner = self.planner.clone().with_capabilities(Capabilities::NONE);
                missing.push(script);
            } else {
                entry.settle(reply, calls, &mut results, &mut self.announce);
            }
        }
        if !missing.is_empty() {
            match self.run(&missing).await {
                Ok(replies) => {
                    for (entry, reply) in missing.iter().zip(replies) {
                        entry.distribute(reply, &mut results);
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

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use redlock_core::Scripts;

    use super::*;

    /// What the fake server does, and what it was sent.
    #[derive(Default)]
    struct Server {
        log: Vec<String>,
        connects: i64,
        /// Connections cannot be made.
        down: bool,
        /// Lock commands take this long to answer.
        stall: Option<Duration>,
        /// The next lock round trip breaks the connection.
        break_next: bool,
        /// Scripts are not cached: `EVALSHA` answers `NOSCRIPT`.
        flushed: bool,
        /// `CLIENT ID` is refused.
        no_client_id: bool,
        /// The server has Valkey's `DELIFEQ` and `SET … IFEQ`.
        valkey: bool,
        /// How many replicas `WAIT` says acknowledged.
        replicas: i64,
        /// What a native delete answers (default 1).
        deletes: Option<i64>,
    }

    #[derive(Clone, Default)]
    struct Fake(Arc<Mutex<Server>>);

    impl Fake {
        fn with<T>(&self, f: impl FnOnce(&mut Server) -> T) -> T {
            f(&mut self.0.lock().unwrap())
        }

        /// The log, without the setup commands of each connection.
        fn lock_commands(&self) -> Vec<String> {
            self.with(|s| {
                s.log
                    .iter()
                    .filter(|c| !matches!(c.as_str(), "CLIENT ID" | "INFO" | "SCRIPT LOAD"))
                    .filter(|c| !c.starts_with("COMMAND INFO"))
                    .cloned()
                    .collect()
            })
        }
    }

    fn describe(c: &Command<'_>) -> String {
        match c {
            Command::Ping => "PING".into(),
            Command::SetNx { key, .. } => format!("SET {key}"),
            Command::Script { call, source, .. } => format!(
                "{} {:?} {}",
                if *source { "EVAL" } else { "EVALSHA" },
                call.kind,
                call.keys.join(",")
            ),
            Command::ReleaseMany {
                releases, source, ..
            } => format!(
                "{} RELEASE_MANY {}",
                if *source { "EVAL" } else { "EVALSHA" },
                releases.len()
            ),
            Command::WriteMany { calls, source, .. } => format!(
                "{} WRITE_MANY {}",
                if *source { "EVAL" } else { "EVALSHA" },
                calls.len()
            ),
            Command::ScriptLoad { .. } => "SCRIPT LOAD".into(),
            Command::ClientId => "CLIENT ID".into(),
            Command::InfoServer => "INFO".into(),
            Command::ClientKill { id } => format!("CLIENT KILL {id}"),
            Command::Native(n) => n.to_string(),
            Command::Wait {
                replicas,
                timeout_ms,
            } => format!("WAIT {replicas} {timeout_ms}"),
        }
    }

    #[async_trait::async_trait]
    impl Link for Fake {
        async fn connect(&mut self) -> Result<(), NodeError> {
            self.with(|s| {
                if s.down {
                    return Err(NodeError::Connection("refused".into()));
                }
                s.connects += 1;
                Ok(())
            })
        }

        async fn send(
            &mut self,
            commands: &[&Command<'_>],
        ) -> Result<Vec<Result<Reply, NodeError>>, Broken> {
            let setup = commands.iter().all(|c| {
                matches!(
                    c,
                    Command::ClientId
                        | Command::InfoServer
                        | Command::ScriptLoad { .. }
                        | Command::ClientKill { .. }
                ) || matches!(c, Command::Native(n) if n.name == "COMMAND")
            });
            let stall = self.with(|s| s.stall.filter(|_| !setup));
            if let Some(stall) = stall {
                tokio::time::sleep(stall).await;
            }
            self.with(|s| {
                s.log.extend(commands.iter().map(|c| describe(c)));
                if !setup && std::mem::take(&mut s.break_next) {
                    return Err(Broken {
                        error: NodeError::Connection("reset".into()),
                        reconnect: true,
                    });
                }
                Ok(commands
                    .iter()
                    .map(|c| match c {
                        Command::ClientId if s.no_client_id => {
                            Err(NodeError::Server("ERR unknown command".into()))
                        }
                        Command::ClientId => Ok(Reply::Int(s.connects)),
                        Command::Wait { .. } => Ok(Reply::Int(s.replicas)),
                        Command::Native(n) if n.is_release() => {
                            Ok(Reply::Int(s.deletes.unwrap_or(1)))
                        }
                        Command::Native(n) if n.name == "COMMAND" => {
                            let delifeq = Reply::Array(vec![Reply::Text("delifeq".into())]);
                            Ok(Reply::Array(if s.valkey {
                                vec![delifeq, Reply::Nil]
                            } else {
                                vec![Reply::Nil, Reply::Nil]
                            }))
                        }
                        Command::InfoServer => Ok(Reply::Text("# Server\r\nrun_id:abc\r\n".into())),
                        Command::Script { source: false, .. }
                        | Command::ReleaseMany { source: false, .. }
                            if s.flushed =>
                        {
                            Err(NodeError::Server("NOSCRIPT No matching script".into()))
                        }
                        Command::ReleaseMany { releases, .. } => Ok(Reply::Array(
                            releases.iter().map(|_| Reply::Int(1)).collect(),
                        )),
                        _ => Ok(Reply::Int(1)),
                    })
                    .collect())
            })
        }

        fn disconnect(&mut self) {}
    }

    fn session(fake: &Fake, response_timeout: Option<Duration>) -> Session<Fake> {
        Session::new(
            fake.clone(),
            LoadedScripts::new(&Scripts::default()),
            "fake".into(),
            response_timeout,
            Backlog::default(),
        )
    }

    fn call(kind: Kind, key: &str) -> Call {
        let number = (kind != Kind::Release).then_some(1000);
        Call::new(kind, &[key.to_owned()], Some("tok"), number)
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_given_up_on_a_timeout_is_fenced_before_anything_else() {
        let fake = Fake::default();
        let mut s = session(&fake, Some(Duration::from_millis(50)));
        s.warm_up().await;
        fake.with(|s| s.stall = Some(Duration::from_secs(1)));
        let r = s
            .execute(&[call(Kind::Extend, "a"), call(Kind::Release, "b")])
            .await;
        assert!(
            r.iter().all(|r| matches!(r, Err(NodeError::Connection(_)))),
            "{r:?}"
        );
        assert!(s.owes(), "the release is owed");
        fake.with(|s| s.stall = None);
        let r = s.execute(&[call(Kind::Acquire, "c")]).await;
        assert_eq!(r, [Ok(Reply::Int(1))]);
        assert!(!s.owes());
        assert_eq!(
            fake.lock_commands(),
            ["CLIENT KILL 1", "EVAL Release b", "SET c",]
        );
        assert_eq!(fake.with(|s| s.connects), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_that_cannot_be_fenced_is_waited_for() {
        let fake = Fake::default();
        fake.with(|s| s.no_client_id = true);
        let mut s = session(&fake, Some(Duration::from_millis(50)));
        s.warm_up().await;
        fake.with(|s| s.stall = Some(Duration::from_secs(1)));
        let r = s.execute(&[call(Kind::Acquire, "a")]).await;
        assert_eq!(r, [Ok(Reply::Int(1))]);
        assert_eq!(fake.with(|s| s.connects), 1);
    }

    #[tokio::test]
    async fn a_broken_connection_owes_its_releases_and_pays_them_first() {
        let fake = Fake::default();
        let mut s = session(&fake, None);
        s.warm_up().await;
        fake.with(|s| {
            s.break_next = true;
            s.down = true;
        });
        let r = s
            .execute(&[call(Kind::Acquire, "a"), call(Kind::Release, "b")])
            .await;
        assert!(r.iter().all(Result::is_err), "{r:?}");
        assert!(s.owes());
        // Nothing can be sent while the server is down; it stays owed.
        let r = s.execute(&[call(Kind::Extend, "c")]).await;
        assert!(matches!(&r[0], Err(e) if !e.was_sent()), "{r:?}");
        assert!(s.owes());
        fake.with(|s| s.down = false);
        assert!(s.execute(&[]).await.is_empty());
        assert!(!s.owes());
        assert_eq!(
            fake.lock_commands(),
            [
                "SET a",
                "EVALSHA Release b",
                "CLIENT KILL 1",
                "EVAL Release b"
            ]
        );
    }

    #[tokio::test]
    async fn owed_releases_are_paid_natively_where_the_server_can() {
        let fake = Fake::default();
        fake.with(|s| s.valkey = true);
        let mut s = session(&fake, None);
        s.warm_up().await;
        fake.with(|s| {
            s.break_next = true;
            s.down = true;
        });
        let r = s
            .execute(&[call(Kind::Acquire, "a"), call(Kind::Release, "b")])
            .await;
        assert!(r.iter().all(Result::is_err), "{r:?}");
        fake.with(|s| s.down = false);
        let r = s.execute(&[call(Kind::Extend, "a")]).await;
        assert_eq!(r, [Ok(Reply::Int(1))]);
        assert!(!s.owes());
        assert_eq!(
            fake.lock_commands(),
            [
                "SET a",
                // Its reply never came: nothing is announced for it.
                "DELIFEQ b tok",
                "CLIENT KILL 1",
                "DELIFEQ b tok",
                // Announced once the delete said it deleted, ahead of the
                // next batch.
                "PUBLISH redlock:release:b tok",
                "SET a tok IFEQ tok PX 1000",
            ]
        );
        assert!(!s.owes());
        // Told not to, the same session keeps to the scripts.
        let fake = Fake::default();
        fake.with(|s| s.valkey = true);
        let mut s = session(&fake, None).with_native(false);
        s.execute(&[call(Kind::Release, "b")]).await;
        assert_eq!(fake.lock_commands(), ["EVALSHA Release b"]);
    }

    #[tokio::test]
    async fn a_native_release_is_announced_only_when_it_deleted() {
        let fake = Fake::default();
        fake.with(|s| {
            s.valkey = true;
            s.deletes = Some(0);
        });
        let mut s = session(&fake, None);
        let r = s.execute(&[call(Kind::Release, "gone")]).await;
        assert_eq!(r, [Ok(Reply::Int(0))]);
        assert!(!s.owes(), "nothing to announce");
        fake.with(|s| s.deletes = Some(1));
        let r = s.execute(&[call(Kind::Release, "held")]).await;
        assert_eq!(r, [Ok(Reply::Int(1))]);
        // The queue runs an empty batch for what is owed.
        assert!(s.owes());
        assert!(s.execute(&[]).await.is_empty());
        assert!(!s.owes());
        assert_eq!(
            fake.lock_commands(),
            [
                "DELIFEQ gone tok",
                "DELIFEQ held tok",
                "PUBLISH redlock:release:held tok"
            ]
        );
    }

    #[tokio::test]
    async fn a_replica_wait_follows_the_writes_it_covers_even_when_they_are_sent_again() {
        let fake = Fake::default();
        fake.with(|s| {
            s.flushed = true;
            s.replicas = 1;
        });
        let wait = redlock_core::Durability::replicas(1, Duration::from_millis(50)).expect("valid");
        let mut s = session(&fake, None).with_durability(wait);
        let r = s
            .execute(&[call(Kind::Extend, "a"), call(Kind::Release, "b")])
            .await;
        assert_eq!(r, [Ok(Reply::Int(1)), Ok(Reply::Int(1))]);
        assert_eq!(
            fake.lock_commands(),
            [
                "EVALSHA Extend a",
                "EVALSHA Release b",
                "WAIT 1 50",
                "EVAL Extend a",
                "EVAL Release b",
                "WAIT 1 50"
            ]
        );
        // Too few replicas: the write that took effect is a failed vote.
        fake.with(|s| s.replicas = 0);
        let r = s.execute(&[call(Kind::Extend, "a")]).await;
        assert_eq!(
            r,
            [Err(NodeError::NotReplicated {
                required: 1,
                reached: 0
            })]
        );
    }

    #[tokio::test]
    async fn noscript_is_answered_by_sending_the_source() {
        let fake = Fake::default();
        fake.with(|s| s.flushed = true);
        let mut s = session(&fake, None);
        let r = s
            .execute(&[
                call(Kind::Extend, "a"),
                call(Kind::Release, "b"),
                call(Kind::Release, "c"),
            ])
            .await;
        assert_eq!(r, [Ok(Reply::Int(1)), Ok(Reply::Int(1)), Ok(Reply::Int(1))]);
        assert_eq!(
            fake.lock_commands(),
            [
                "EVALSHA Extend a",
                "EVALSHA RELEASE_MANY 2",
                "EVAL Extend a",
                "EVAL RELEASE_MANY 2"
            ]
        );
    }

    #[test]
    fn run_id_is_read_from_info() {
        assert_eq!(
            run_id("# Server\r\nredis_version:7.2\r\nrun_id:0f3a\r\n").as_deref(),
            Some("0f3a")
        );
        assert_eq!(run_id("# Server\r\n"), None);
    }
}
