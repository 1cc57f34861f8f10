//! The kit's wire plan in fred's terms: each [`Command`] as a fred command
//! ([`Wire::send`], the one translation), each reply as a kit [`Reply`],
//! and the [`Executor`] that carries a node's batches through one fred
//! client.
//!
//! Every command costs fred the same bookkeeping whatever it carries (its
//! router task, channels, a response channel, frame encoding), and fred
//! flushes the socket after every script and custom command. So a batch's
//! acquires and extends go out as one merged script call
//! ([`Command::WriteMany`], [`Planner::with_merged_writes`]) and its
//! releases as another ([`Command::ReleaseMany`]): a batch of acquires and
//! releases costs two fred commands, not one per call. A lone one-key
//! acquire still goes out as fred's own `SET … NX PX`. On a Redis Cluster
//! every call is one command of its own (keys of different calls may live
//! in different slots).

use std::time::Duration;

use fred::bytes::BytesMut;
use fred::clients::Client;
use fred::error::Error as FredError;
use fred::interfaces::{ClientLike, KeysInterface, LuaInterface};
use fred::types::config::{Options, Server};
use fred::types::{ClientState, ClusterHash, CustomCommand, Expiration, SetOptions, Value};
use futures_util::future::{join_all, BoxFuture};
use redlock_core::slot::hash_slot;
use redlock_core::NodeError;
use redlock_kit::cluster::{resend_refused, Refused};
use redlock_kit::native::{self, Capabilities};
use redlock_kit::plan::{Arg, Command, Entry, Planner};
use redlock_kit::reply::Reply;
use redlock_kit::slots::Resends;
use redlock_kit::{Call, Executor, Kind};
use tokio::sync::broadcast::{self, error::TryRecvError};

use crate::error::{node_error, Secrets};

/// One fred client as a node's executor.
pub(crate) struct Wire {
    pub(crate) client: Client,
    /// Lock commands: one write attempt, no fred timeout, fail fast.
    pub(crate) options: Options,
    /// Releases: one more attempt, so that fred writes a release again
    /// after a reconnect (deleting our own token is harmless to repeat, it
    /// still follows everything sent before it).
    pub(crate) release_options: Options,
    pub(crate) planner: Planner,
    pub(crate) secrets: Secrets,
    /// Calls of a Redis Cluster are single-slot (split above the queue) and
    /// sent one command each; releases are not merged.
    pub(crate) clustered: bool,
    /// When a refused acquire may be sent again.
    pub(crate) resends: Resends,
    pub(crate) id: String,
    /// Whether the scripts were loaded (once, on the first connection; a
    /// script missing later is sent in full on `NOSCRIPT`).
    pub(crate) loaded: bool,
    /// fred may still hold requests of a batch given up when its
    /// connection was lost; it writes them first once it reconnects.
    pub(crate) held: bool,
    /// Native releases that deleted their key and are still to be
    /// announced (key, token): sent with the next batch, or in an empty
    /// batch of their own right after this one. Best effort.
    pub(crate) announce: Vec<(String, String)>,
    /// The server is still to be asked which native commands it has (see
    /// [`redlock_kit::native`]): once, before the first batch that finds
    /// the client connected.
    pub(crate) detect_native: bool,
    /// fred's notice of each connection it makes, while native commands
    /// are allowed: a new connection may reach another server (a failover,
    /// a restart with another version), which is asked again.
    pub(crate) reconnects: Option<broadcast::Receiver<Server>>,
}

/// How often a batch still waiting for fred checks whether the client
/// lost its connection.
const DOWN_CHECK: Duration = Duration::from_millis(20);

/// How long the question that detects native commands may wait for its
/// answer (the queue waits meanwhile); a silent server means scripts only.
const DETECT_TIMEOUT: Duration = redlock_kit::session::DEFAULT_CONNECTION_TIMEOUT;

/// What fred answers for one command.
type Sent = Result<Value, FredError>;

impl Wire {
    /// Loads every script once the client is connected (on every primary
    /// of a cluster); a failure only costs the full script on first use.
    async fn load(&mut self) {
        if self.loaded || self.client.state() != ClientState::Connected {
            return;
        }
        self.loaded = true;
        self.detect().await;
        for script in self.planner.scripts().all() {
            let loaded = if self.clustered {
                let source = script.source.clone();
                let load = self.client.script_load_cluster::<(), _>(source);
                load.await.map_err(|e| node_error(&e, &self.secrets))
            } else {
                let load = Command::ScriptLoad { script };
                self.run(&load, 0).await.map(drop)
            };
            if let Err(e) = loaded {
                tracing::warn!(node = %self.id, error = %e, "could not preload a redlock script; it is sent in full on first use");
            }
        }
    }

    /// `command` as fred's command, routed to `slot` on a cluster and
    /// handed to fred when the returned future is first polled (no await
    /// comes before that), which fixes its place in the connection's order.
    /// A one-key acquire is fred's own `SET … NX PX`; every other command
    /// its words as the kit lays them out ([`Command::each_arg`]).
    fn send(&self, command: &Command<'_>, slot: u16) -> BoxFuture<'static, Sent> {
        let options = if command.releases() {
            &self.release_options
        } else {
            &self.options
        };
        let client = self.client.with_options(options);
        if let Command::SetNx { key, token, ttl_ms } = command {
            let (key, token) = (key.to_string(), token.to_string());
            let ttl = Expiration::PX(i64::try_from(*ttl_ms).unwrap_or(i64::MAX));
            return Box::pin(async move {
                client
                    .set::<Value, _, _>(key, token, Some(ttl), Some(SetOptions::NX), false)
                    .await
            });
        }
        let (count, bytes) = command.size_hint();
        let mut args = Args::new(count, bytes);
        command.each_arg(|arg| match arg {
            Arg::Text(text) => args.push(text),
            Arg::Int(n) => args.push_number(n),
        });
        let name = CustomCommand::new_static(command.name(), ClusterHash::Custom(slot), false);
        let args = args.into_values();
        Box::pin(async move { client.custom::<Value, Value>(name, args).await })
    }

    /// Sends `command`, again where the server refused it unrun
    /// ([`resend_refused`]: by source after `NOSCRIPT`, after a cluster
    /// redirection, an acquire only while no release followed it).
    async fn run(&self, command: &Command<'_>, slot: u16) -> Result<Reply, NodeError> {
        let secrets = &self.secrets;
        resend_refused(command.clone(), &self.resends, |command| {
            let sent = self.send(command, slot);
            async move {
                sent.await.map(decode).map_err(|e| Refused {
                    error: node_error(&e, secrets),
                    // A server's error reply starts with its code.
                    code: e.details().split_whitespace().next().map(str::to_owned),
                    text: secrets.redact(e.details()),
                })
            }
        })
        .await
    }
}

#[redlock_core::async_trait]
impl Executor for Wire {
    /// Loads the scripts if the client is connected already; otherwise the
    /// first batch after it connected does (calls are never held back for
    /// a connection: they fail fast meanwhile).
    async fn warm_up(&mut self) {
        self.load().await;
    }

    /// Announcements of native releases are still to be sent.
    fn owes(&self) -> bool {
        !self.announce.is_empty()
    }

    /// Every command of the batch is handed to fred at once, in order; the
    /// answers come back in that order on the one connection.
    async fn execute(&mut self, calls: &[Call]) -> Vec<Result<Reply, NodeError>> {
        self.load().await;
        if self.held && self.client.state() == ClientState::Connected {
            // fred wrote what it held first when it reconnected.
            self.held = false;
        }
        if self.reconnected() {
            // Scripts, which every server has, until the server this
            // connection reaches has answered.
            self.planner = self.planner.clone().with_capabilities(Capabilities::NONE);
            self.detect_native = true;
        }
        if self.detect_native && self.client.state() == ClientState::Connected {
            self.detect().await;
        }
        // A batch's acquires and extends go out as one script call: what
        // fred costs per command (its router, channels, a response channel
        // and frame encoding) is most of what a batch costs here.
        let planner = self.planner.clone().with_merged_writes(true);
        // Announcements of native releases answered earlier go first (a
        // cluster node plans no native release, so slot 0 is never used
        // for them). Best effort: lost if this batch fails.
        let pending = std::mem::take(&mut self.announce);
        let announced = Entry::announcements(&pending);
        let planned = if self.clustered {
            let single = |(i, call)| Entry {
                command: planner.single(call),
                answers: redlock_kit::plan::Answers::One(i),
            };
            calls.iter().enumerate().map(single).collect()
        } else {
            planner.plan(calls)
        };
        let entries: Vec<Entry<'_>> = announced.chain(planned).collect();
        // A trailing WAIT is sent once the rest was answered: a command
        // refused unrun (NOSCRIPT) is sent again inside `run`, and the WAIT
        // must follow that too.
        let (waits, entries): (Vec<Entry<'_>>, Vec<Entry<'_>>) = entries
            .into_iter()
            .partition(|e| matches!(e.command, Command::Wait { .. }));
        let slot = |e: &Entry<'_>| {
            let first = e
                .answers
                .calls()
                .first()
                .and_then(|&i| calls[i].keys.first());
            first.map_or(0, |k| hash_slot(k.as_bytes()))
        };
        // A command fred took just before it noticed its connection was
        // lost waits in fred until it reconnects. Once the client says it is
        // down, the batch is answered as failed (fred still holds those
        // commands, in order, ahead of anything sent later), so the node
        // fails fast instead of holding its queue behind them. Not a batch
        // with a release: fred writes a release again once it reconnects
        // (see `release_options`), and it must be answered.
        let may_give_up = calls.iter().all(|c| c.kind != Kind::Release);
        let mut all = join_all(entries.iter().map(|e| self.run(&e.command, slot(e))));
        let replies = loop {
            tokio::select! {
                replies = &mut all => break replies,
                () = tokio::time::sleep(DOWN_CHECK) => {
                    if may_give_up && self.client.state() != ClientState::Connected {
                        break Vec::new();
                    }
                }
            }
        };
        drop(all);
        if replies.is_empty() && !entries.is_empty() {
            self.held = true;
            let lost = format!(
                "{}: connection lost; the request may still be sent once fred reconnects",
                self.id
            );
            return vec![Err(NodeError::Connection(lost)); calls.len()];
        }
        let mut results = vec![Err(NodeError::Protocol("no reply".into())); calls.len()];
        let mut instead = Vec::new();
        for (entry, reply) in entries.iter().zip(replies) {
            // While fred may still hold an earlier request, a request it
            // refused unsent is not called unsent: the release the core
            // then sends must follow the held one.
            let reply = match reply {
                Err(NodeError::NotConnected(e)) if self.held => Err(NodeError::Connection(e)),
                other => other,
            };
            match entry.script_instead(&reply, &planner, calls) {
                Some(script) => instead.push(script),
                None => entry.settle(reply, calls, &mut results, &mut self.announce),
            }
        }
        if !instead.is_empty() {
            // The server refused a native command unrun: the script instead
            // (it follows everything answered before it), and scripts only
            // until a new connection is asked again.
            self.planner = self.planner.clone().with_capabilities(Capabilities::NONE);
        }
        for entry in &instead {
            let reply = self.run(&entry.command, 0).await;
            entry.settle(reply, calls, &mut results, &mut self.announce);
        }
        for wait in &waits {
            let reply = self.run(&wait.command, 0).await;
            wait.distribute(reply, &mut results);
        }
        results
    }
}

impl Wire {
    /// Whether fred made a connection since this was last asked.
    fn reconnected(&mut self) -> bool {
        let Some(notices) = self.reconnects.as_mut() else {
            return false;
        };
        let mut any = false;
        loop {
            match notices.try_recv() {
                Ok(_) | Err(TryRecvError::Lagged(_)) => any = true,
                Err(TryRecvError::Empty | TryRecvError::Closed) => return any,
            }
        }
    }

    /// Asks the server which native commands it has and plans with them
    /// from now on; a refusal (an ACL that denies `COMMAND`, say) or no
    /// answer within the connection timeout means scripts only. Asked once
    /// per connection fred makes, again when the connection was not up.
    async fn detect(&mut self) {
        if !self.detect_native {
            return;
        }
        let ask = Command::Native(native::detect());
        let answer = tokio::time::timeout(DETECT_TIMEOUT, self.run(&ask, 0)).await;
        let capabilities = match answer {
            Ok(Ok(reply)) => Capabilities::from_command_info(&reply),
            Ok(Err(NodeError::NotConnected(_))) => return,
            Ok(Err(e)) => {
                tracing::debug!(node = %self.id, error = %e, "native commands not detected; scripts only");
                Capabilities::NONE
            }
            Err(_) => {
                tracing::debug!(node = %self.id, "no answer to the native commands question; scripts only");
                Capabilities::NONE
            }
        };
        self.detect_native = false;
        if capabilities.any() {
            tracing::debug!(node = %self.id, ?capabilities, "one-key releases and extends use the server's native commands");
        }
        self.planner = self.planner.clone().with_capabilities(capabilities);
    }
}

/// A command's arguments written into one buffer and handed to fred as
/// slices of it: a few allocations per command instead of a few per
/// argument (fred clones each argument's bytes as it encodes the frame; a
/// slice of a shared buffer clones without allocating).
struct Args {
    buf: BytesMut,
    ends: Vec<usize>,
}

impl Args {
    fn new(count: usize, bytes: usize) -> Self {
        Args {
            buf: BytesMut::with_capacity(bytes),
            ends: Vec::with_capacity(count),
        }
    }

    fn push(&mut self, arg: &str) {
        self.buf.extend_from_slice(arg.as_bytes());
        self.ends.push(self.buf.len());
    }

    fn push_number(&mut self, n: impl std::fmt::Display) {
        use std::fmt::Write;
        // Writing into a growable buffer does not fail.
        let _ = write!(self.buf, "{n}");
        self.ends.push(self.buf.len());
    }

    fn into_values(self) -> Vec<Value> {
        let buf = self.buf.freeze();
        let mut start = 0;
        self.ends
            .into_iter()
            .map(|end| {
                let arg = Value::Bytes(buf.slice(start..end));
                start = end;
                arg
            })
            .collect()
    }
}

/// `v` as a [`Reply`]: Lua `false` is nil, `OK` and tokens are text.
pub(crate) fn decode(v: Value) -> Reply {
    match v {
        Value::Null | Value::Boolean(false) => Reply::Nil,
        Value::Integer(i) => Reply::Int(i),
        Value::Boolean(true) => Reply::Int(1),
        Value::String(s) => Reply::Text(s.to_string()),
        Value::Bytes(b) => Reply::Text(String::from_utf8_lossy(&b).into_owned()),
        Value::Array(items) => Reply::Array(items.into_iter().map(decode).collect()),
        other => Reply::Other(format!("{other:?}")),
    }
}
