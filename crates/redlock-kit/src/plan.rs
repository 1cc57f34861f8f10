//! The wire plan: how a batch of [`Call`]s goes on the wire, in terms of
//! no particular client.
//!
//! [`Planner::plan`] turns a batch into [`Entry`]s, one per command to send, each an
//! abstract [`Command`] plus the calls its reply answers. A command knows
//! its own words ([`Command::name`], [`Command::each_arg`]); an adapter
//! builds its client's command from them (one loop), sends the commands as
//! one pipeline in order, decodes each reply into a [`Reply`] and hands it
//! back with [`Entry::settle`]. The planner knows the batch's meaning; the
//! adapter knows only its client.
//!
//! A new way of sending something (a server's native compare-and-delete,
//! a trailing `WAIT`) is one more [`Command`] variant, chosen here from the
//! connection's [`Capabilities`], with its words written here; the
//! adapters need no change.

use std::collections::HashSet;
use std::sync::Arc;

use redlock_core::{Acquire, Durability, Extend, NodeError};

use crate::call::{Call, Kind, LoadedScripts, Script};
use crate::native;
use crate::reply::Reply;

/// What a connection's server can do beyond what every supported server
/// does (its native compare-and-delete and compare-and-set, see
/// [`native`]); an input of the [`Planner`], so that detecting it per
/// connection changes nothing else. None by default.
pub use crate::native::Capabilities;

/// One command on the wire, in no particular client's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command<'a> {
    /// `PING`.
    Ping,
    /// `SET key token NX PX ttl_ms`: a one-key acquire with the built-in
    /// acquire script; the same atomic effect, and a reply (`OK` / nil)
    /// that [`reply::acquire`](crate::reply::acquire) reads as the script's.
    SetNx {
        /// The key.
        key: &'a str,
        /// The lock's token.
        token: &'a str,
        /// The TTL in ms.
        ttl_ms: u64,
    },
    /// One call's script: `EVALSHA sha numkeys keys… args…` (the args are
    /// [`Call::args`]), or `EVAL source numkeys keys… args…` when `source`.
    Script {
        /// The script.
        script: &'a Script,
        /// The call: its keys and args.
        call: &'a Call,
        /// Send the source (`EVAL`) rather than the digest (`EVALSHA`).
        source: bool,
    },
    /// Several releases as one [`RELEASE_MANY`](crate::call::RELEASE_MANY)
    /// call: `EVALSHA sha numkeys keys-of-each-release…` then, per release,
    /// its number of keys and its token (`EVAL source …` when `source`).
    /// Replies one entry per release.
    ReleaseMany {
        /// The `RELEASE_MANY` script.
        script: &'a Script,
        /// The releases, in order.
        releases: Vec<&'a Call>,
        /// Send the source (`EVAL`) rather than the digest (`EVALSHA`).
        source: bool,
    },
    /// Several acquires and extends, in their order, as one
    /// [`WRITE_MANY`](crate::call::WRITE_MANY) call: `EVALSHA sha numkeys
    /// keys-of-each-call…` then, per call, `a` (acquire) or `e` (extend),
    /// its number of keys, its token and its TTL in ms (`EVAL source …`
    /// when `source`). Replies one entry per call. Planned only with
    /// [`Planner::with_merged_writes`].
    WriteMany {
        /// The `WRITE_MANY` script.
        script: &'a Script,
        /// The acquires and extends, in order.
        calls: Vec<&'a Call>,
        /// Send the source (`EVAL`) rather than the digest (`EVALSHA`).
        source: bool,
    },
    /// `SCRIPT LOAD source`.
    ScriptLoad {
        /// The script to load.
        script: &'a Script,
    },
    /// `CLIENT ID`: the connection's id on its server (for a fence).
    ClientId,
    /// `INFO server`: the server's `run_id` (for a fence).
    InfoServer,
    /// `CLIENT KILL ID id`: ends a connection given up on (a fence).
    ClientKill {
        /// The connection's `CLIENT ID`.
        id: i64,
    },
    /// A command of the server's own, as its name and text arguments: a
    /// native compare-and-delete or compare-and-set, the `PUBLISH` that
    /// announces a native release, or the question that detects them
    /// ([`native::detect`]). See [`native`].
    Native(native::Command<'a>),
    /// `WAIT replicas timeout_ms`: waits until `replicas` replicas
    /// acknowledged every write sent before it on this connection, or
    /// `timeout_ms` passed; replies how many did. Ends a batch with
    /// acquires or extends when the planner's [`Durability`] asks for
    /// replicas.
    Wait {
        /// Replicas required.
        replicas: u32,
        /// The server-side timeout in ms (above zero: `WAIT` with 0
        /// blocks until the replicas answer).
        timeout_ms: u64,
    },
}

impl Command<'_> {
    /// The same command sending the script's source instead of its digest
    /// (after `NOSCRIPT`); other commands are returned as they are.
    pub fn by_source(mut self) -> Self {
        if let Command::Script { source, .. }
        | Command::ReleaseMany { source, .. }
        | Command::WriteMany { source, .. } = &mut self
        {
            *source = true;
        }
        self
    }

    /// Whether this command may acquire: a one-key `SET NX PX`, the
    /// acquire script, or a [`WriteMany`](Self::WriteMany) with an acquire
    /// among its calls. Such a command refused unrun is sent again only
    /// under [`Resends`](crate::slots::Resends)' rule.
    pub fn acquires(&self) -> bool {
        match self {
            Command::SetNx { .. } => true,
            Command::Script { call, .. } => call.kind == Kind::Acquire,
            Command::WriteMany { calls, .. } => calls.iter().any(|c| c.kind == Kind::Acquire),
            _ => false,
        }
    }

    /// The `ARGV` of a [`WriteMany`](Self::WriteMany) after its keys, one
    /// tuple per call: `a` (acquire) or `e` (extend), its number of keys,
    /// its token and its TTL in ms, to be sent in that order (none for any
    /// other command). The keys are those of each call, in order.
    pub fn write_many_fields(&self) -> impl Iterator<Item = (&'static str, usize, &str, u64)> {
        let calls: &[&Call] = match self {
            Command::WriteMany { calls, .. } => calls,
            _ => &[],
        };
        calls.iter().map(|c| {
            (
                if c.kind == Kind::Acquire { "a" } else { "e" },
                c.keys.len(),
                c.token.as_deref().unwrap_or_default(),
                c.number.unwrap_or_default(),
            )
        })
    }
}

/// One argument of a [`Command`] on the wire: text, or a number sent in
/// decimal. [`Command::each_arg`] yields them; an adapter hands each to its
/// client as the client wants it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arg<'a> {
    /// Text: a key, a token, a script or its digest, an option.
    Text(&'a str),
    /// A number: a TTL in ms, a count of keys, a connection id.
    Int(i64),
}

impl Arg<'_> {
    /// About how many bytes the argument takes (for preallocating).
    pub fn len_hint(&self) -> usize {
        match self {
            Arg::Text(s) => s.len(),
            Arg::Int(_) => 20,
        }
    }
}

/// `n` as an [`Arg::Int`] (saturating: no TTL or count comes near).
fn int(n: impl TryInto<i64>) -> Arg<'static> {
    Arg::Int(n.try_into().unwrap_or(i64::MAX))
}

impl<'a> Command<'a> {
    /// The command's name: `EVALSHA` (or `EVAL` when sending the source),
    /// `SET`, `PING`, `SCRIPT`, `CLIENT`, `INFO`, `WAIT`, or a native
    /// command's own.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Ping => "PING",
            Command::SetNx { .. } => "SET",
            Command::Script { source, .. }
            | Command::ReleaseMany { source, .. }
            | Command::WriteMany { source, .. } => {
                if *source {
                    "EVAL"
                } else {
                    "EVALSHA"
                }
            }
            Command::ScriptLoad { .. } => "SCRIPT",
            Command::ClientId | Command::ClientKill { .. } => "CLIENT",
            Command::InfoServer => "INFO",
            Command::Native(native) => native.name,
            Command::Wait { .. } => "WAIT",
        }
    }

    /// Calls `each` with every argument after the [`name`](Self::name), in
    /// wire order: the one translation of a command into words, so that an
    /// adapter's is a loop over these (see the variants for the layouts).
    pub fn each_arg<'s>(&'s self, mut each: impl FnMut(Arg<'s>)) {
        let text = Arg::Text;
        let script = |script: &'s Script, source: bool| {
            Arg::Text(if source { &script.source } else { &script.sha })
        };
        match self {
            Command::Ping => {}
            Command::SetNx { key, token, ttl_ms } => {
                [text(key), text(token), text("NX"), text("PX"), int(*ttl_ms)]
                    .into_iter()
                    .for_each(each);
            }
            Command::Script {
                script: s,
                call,
                source,
            } => {
                each(script(s, *source));
                each(int(call.keys.len()));
                call.keys.iter().for_each(|k| each(text(k)));
                if let Some(token) = &call.token {
                    each(text(token));
                }
                if let Some(n) = call.number {
                    each(int(n));
                }
            }
            Command::ReleaseMany {
                script: s,
                releases,
                source,
            } => {
                each(script(s, *source));
                each(int(releases.iter().map(|c| c.keys.len()).sum::<usize>()));
                let keys = releases.iter().flat_map(|c| &c.keys);
                keys.for_each(|k| each(text(k)));
                for c in releases {
                    each(int(c.keys.len()));
                    each(text(c.token.as_deref().unwrap_or_default()));
                }
            }
            Command::WriteMany {
                script: s,
                calls,
                source,
            } => {
                each(script(s, *source));
                each(int(calls.iter().map(|c| c.keys.len()).sum::<usize>()));
                calls
                    .iter()
                    .flat_map(|c| &c.keys)
                    .for_each(|k| each(text(k)));
                for (kind, count, token, ttl_ms) in self.write_many_fields() {
                    [text(kind), int(count), text(token), int(ttl_ms)]
                        .into_iter()
                        .for_each(&mut each);
                }
            }
            Command::ScriptLoad { script } => {
                each(text("LOAD"));
                each(text(&script.source));
            }
            Command::ClientId => each(text("ID")),
            Command::InfoServer => each(text("server")),
            Command::ClientKill { id } => {
                [text("KILL"), text("ID"), Arg::Int(*id)]
                    .into_iter()
                    .for_each(each);
            }
            Command::Native(native) => native.args.iter().for_each(|a| each(text(a))),
            Command::Wait {
                replicas,
                timeout_ms,
            } => {
                each(int(*replicas));
                each(int(*timeout_ms));
            }
        }
    }

    /// How many arguments [`each_arg`](Self::each_arg) yields and about
    /// how many bytes they take, name included (for preallocating).
    pub fn size_hint(&self) -> (usize, usize) {
        let (mut count, mut bytes) = (0, self.name().len());
        self.each_arg(|a| {
            count += 1;
            bytes += a.len_hint();
        });
        (count, bytes)
    }

    /// Whether this command releases: the release script (alone or
    /// merged) or a native delete. A release counts against resending an
    /// acquire ([`Resends`](crate::slots::Resends)), and an adapter whose
    /// client can write a command again after a reconnect lets it do so
    /// for a release (deleting our own token is harmless to repeat).
    pub fn releases(&self) -> bool {
        match self {
            Command::ReleaseMany { .. } => true,
            Command::Script { call, .. } => call.kind == Kind::Release,
            Command::Native(native) => native.is_release(),
            _ => false,
        }
    }
}

/// Which calls of the batch a command's reply answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answers {
    /// None (a command of the connection's own).
    Nothing,
    /// The call at this index.
    One(usize),
    /// These calls, one entry of an array reply each.
    Each(Vec<usize>),
    /// The acquires and extends a [`Command::Wait`] covers: its reply
    /// answers none of them, but when fewer replicas than required
    /// acknowledged, each of them that took effect fails with
    /// [`NodeError::NotReplicated`] (see [`Entry::distribute`]).
    Replicated(Vec<usize>),
}

impl Answers {
    /// The indices of the calls answered, in order (none for
    /// [`Replicated`](Self::Replicated): a `WAIT` only amends answers).
    pub fn calls(&self) -> &[usize] {
        match self {
            Answers::Nothing | Answers::Replicated(_) => &[],
            Answers::One(i) => std::slice::from_ref(i),
            Answers::Each(calls) => calls,
        }
    }
}

/// One command of a plan and the calls its reply answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry<'a> {
    /// What to send.
    pub command: Command<'a>,
    /// Which calls its reply answers.
    pub answers: Answers,
}

impl Entry<'_> {
    /// Hands this entry's reply to its calls' slots in `results` (indexed
    /// like the batch): the reply itself to a single call; to several
    /// calls, one entry of the array each ([`Reply::Error`] entries as
    /// [`NodeError::Server`]); a reply of the wrong shape fails them all
    /// with [`NodeError::Protocol`]. A `WAIT`'s reply
    /// ([`Answers::Replicated`]) is handed out last, over the answers
    /// already in `results`: below the required count, every acquire that
    /// took its keys and every extend that extended them becomes
    /// [`NodeError::NotReplicated`] (an error reply, or any other reply,
    /// fails them too). Out-of-range indices are ignored.
    pub fn distribute(
        &self,
        reply: Result<Reply, NodeError>,
        results: &mut [Result<Reply, NodeError>],
    ) {
        let mut set = |i: usize, r: Result<Reply, NodeError>| {
            if let Some(slot) = results.get_mut(i) {
                *slot = r;
            }
        };
        match &self.answers {
            Answers::Nothing => {}
            Answers::Replicated(writes) => {
                let required = match self.command {
                    Command::Wait { replicas, .. } => replicas,
                    _ => 0,
                };
                let error = match reply {
                    Ok(Reply::Int(n)) if n >= i64::from(required) => return,
                    Ok(Reply::Int(n)) => NodeError::NotReplicated {
                        required,
                        reached: u64::try_from(n).unwrap_or(0),
                    },
                    Ok(Reply::Error(e)) => NodeError::Server(e),
                    Ok(other) => {
                        let mut text = format!("{other:?}");
                        crate::reply::truncate(&mut text, 200);
                        NodeError::Protocol(format!(
                            "expected a replica count from WAIT, got {text}"
                        ))
                    }
                    Err(e) => e,
                };
                for &i in writes {
                    if let Some(slot) = results.get_mut(i) {
                        if took_effect(slot) {
                            *slot = Err(error.clone());
                        }
                    }
                }
            }
            Answers::One(i) => set(*i, reply),
            Answers::Each(calls) => match reply {
                Ok(Reply::Array(items)) if items.len() == calls.len() => {
                    for (&i, item) in calls.iter().zip(items) {
                        set(i, item.into_result());
                    }
                }
                Ok(other) => {
                    let mut text = format!("{other:?}");
                    crate::reply::truncate(&mut text, 200);
                    let e = NodeError::Protocol(format!(
                        "expected {} replies in an array, got {text}",
                        calls.len()
                    ));
                    for &i in calls {
                        set(i, Err(e.clone()));
                    }
                }
                Err(e) => {
                    for &i in calls {
                        set(i, Err(e.clone()));
                    }
                }
            },
        }
    }
}

impl<'a> Entry<'a> {
    /// The announcements still owed (key, token; see
    /// [`announcement`](Self::announcement)) as entries answering no call:
    /// what goes at the head of the next batch.
    pub fn announcements(owed: &'a [(String, String)]) -> impl Iterator<Item = Entry<'a>> {
        owed.iter().map(|(key, token)| Entry {
            command: Command::Native(native::announce(key, token)),
            answers: Answers::Nothing,
        })
    }

    /// The built-in script, by source, to send in place of this entry's
    /// native release or extend when `reply` says the server refused the
    /// command without running it ([`native::refused_unrun`]: an ACL
    /// without the command, or a server that does not have it, say after a
    /// failover to an older one); `None` for any other entry or reply.
    /// Sent once the rest of the batch was answered, so it keeps its place
    /// after everything sent before it.
    pub fn script_instead(
        &self,
        reply: &Result<Reply, NodeError>,
        planner: &'a Planner,
        calls: &'a [Call],
    ) -> Option<Entry<'a>> {
        let (Command::Native(_), Err(e)) = (&self.command, reply) else {
            return None;
        };
        let &[i] = self.answers.calls() else {
            return None;
        };
        if !native::refused_unrun(&e.to_string()) {
            return None;
        }
        let call = &calls[i];
        Some(Entry {
            command: Command::Script {
                script: planner.scripts().get(call.kind),
                call,
                source: true,
            },
            answers: self.answers.clone(),
        })
    }

    /// Hands `reply` to the calls it answers
    /// ([`distribute`](Self::distribute)) and adds the announcement it
    /// then owes, if any ([`announcement`](Self::announcement)), to `owed`.
    pub fn settle(
        &self,
        reply: Result<Reply, NodeError>,
        calls: &[Call],
        results: &mut [Result<Reply, NodeError>],
        owed: &mut Vec<(String, String)>,
    ) {
        self.distribute(reply, results);
        owed.extend(self.announcement(calls, results));
    }
}

impl Entry<'_> {
    /// The announcement owed for this entry once `results` holds its
    /// answers: `PUBLISH` on the key's release channel when it is a native
    /// release (see [`Planner::native_release`]) whose reply says it
    /// deleted the key; `None` otherwise. Sent after the delete was
    /// answered, so that, as with the built-in script, only a release that
    /// deleted something wakes waiters.
    /// Returned as the key and the token, for
    /// [`native::announce`].
    pub fn announcement(
        &self,
        calls: &[Call],
        results: &[Result<Reply, NodeError>],
    ) -> Option<(String, String)> {
        let Command::Native(command) = &self.command else {
            return None;
        };
        let &[i] = self.answers.calls() else {
            return None;
        };
        let deleted = matches!(results.get(i), Some(Ok(Reply::Int(n))) if *n > 0);
        let call = calls.get(i)?;
        if !command.is_release() || !deleted {
            return None;
        }
        Some((call.keys.first()?.clone(), call.token.clone()?))
    }
}

/// Whether an acquire's or extend's answer says it took effect: the keys
/// were taken, or their TTL set.
fn took_effect(answer: &Result<Reply, NodeError>) -> bool {
    let Ok(reply) = answer else {
        return false;
    };
    crate::reply::acquire(reply) == Ok(Acquire::Acquired)
        || crate::reply::extend(reply) == Ok(Extend::Extended)
}

/// Plans batches for one connection: its scripts (with their digests),
/// what its server can do, and what a write waits for. Cheap to clone.
///
/// ```
/// use redlock_kit::plan::{Command, Planner};
/// use redlock_kit::{Call, Kind, LoadedScripts};
///
/// let planner = Planner::new(LoadedScripts::new(&Default::default()));
/// let keys = ["job".to_owned()];
/// let calls = [
///     Call::new(Kind::Acquire, &keys, Some("tok"), Some(3000)),
///     Call::ping(),
/// ];
/// let entries = planner.plan(&calls);
/// assert_eq!(
///     entries[0].command,
///     Command::SetNx { key: "job", token: "tok", ttl_ms: 3000 }
/// );
/// assert_eq!(entries[1].command, Command::Ping);
/// assert_eq!(entries[1].answers.calls(), [1]);
/// ```
#[derive(Debug, Clone)]
pub struct Planner {
    scripts: Arc<LoadedScripts>,
    capabilities: Capabilities,
    durability: Durability,
    merged_writes: bool,
}

impl Planner {
    /// A planner for `scripts`, with no [`Capabilities`] and
    /// [`Durability::Master`].
    pub fn new(scripts: LoadedScripts) -> Self {
        Planner {
            scripts: Arc::new(scripts),
            capabilities: Capabilities::default(),
            durability: Durability::Master,
            merged_writes: false,
        }
    }

    /// The same, gathering a batch's acquires and extends (with the
    /// built-in scripts) into one [`Command::WriteMany`] the way releases
    /// are gathered into one [`Command::ReleaseMany`] (see
    /// [`plan`](Self::plan)). Off by default: it pays where each command
    /// costs the client much more than a longer script costs the server.
    ///
    /// The executor must send a [`WriteMany`](Command::WriteMany) that
    /// [`acquires`](Command::acquires) again after `NOSCRIPT` only under
    /// [`Resends`](crate::slots::Resends)' rule, like a lone acquire script:
    /// a one-key acquire merged into it is no longer a `SET NX PX`, which
    /// never meets `NOSCRIPT`. Keys of one call of a Redis Cluster node
    /// share a slot, but keys of different calls need not: plan a cluster
    /// batch without this.
    pub fn with_merged_writes(mut self, merged: bool) -> Self {
        self.merged_writes = merged;
        self
    }

    /// Whether acquires and extends are gathered into one
    /// [`Command::WriteMany`].
    pub fn merged_writes(&self) -> bool {
        self.merged_writes
    }

    /// The same, ending every batch that holds an acquire or extend with a
    /// [`Command::Wait`] when `durability` asks for replicas.
    pub fn with_durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// What a write waits for, as the planner plans it.
    pub fn durability(&self) -> Durability {
        self.durability
    }

    /// The same, for a server that can do what `capabilities` says.
    pub fn with_capabilities(mut self, capabilities: Capabilities) -> Self {
        self.capabilities = capabilities;
        self
    }

    /// What the server can do, as the planner assumes it.
    pub fn capabilities(&self) -> Capabilities {
        self.capabilities
    }

    /// The scripts.
    pub fn scripts(&self) -> &LoadedScripts {
        &self.scripts
    }

    /// The command one call needs on its own: `PING`, the one-key
    /// `SET NX PX` acquire where the built-in script allows it, or the
    /// call's script.
    pub fn single<'a>(&'a self, call: &'a Call) -> Command<'a> {
        if let (Kind::Extend, Some(token), Some(ttl_ms)) = (call.kind, &call.token, call.number) {
            let script = &self.scripts.get(Kind::Extend).source;
            if let Some(cmd) = native::extend(self.capabilities, script, &call.keys, token, ttl_ms)
            {
                return Command::Native(cmd);
            }
        }
        match (call.kind, call.keys.as_slice(), &call.token, call.number) {
            (Kind::Ping, ..) => Command::Ping,
            (Kind::Acquire, [key], Some(token), Some(ttl_ms)) if self.scripts.plain_acquire() => {
                Command::SetNx { key, token, ttl_ms }
            }
            _ => Command::Script {
                script: self.scripts.get(call.kind),
                call,
                source: false,
            },
        }
    }

    /// A one-key release as the server's native compare-and-delete (see
    /// [`native`]), where the capabilities and the built-in release script
    /// allow. It announces nothing itself: once its reply says it deleted,
    /// the executor sends [`Entry::announcement`] (the built-in script, too,
    /// announces only what it deleted).
    pub fn native_release<'a>(&'a self, call: &'a Call) -> Option<Command<'a>> {
        if call.kind != Kind::Release {
            return None;
        }
        let token = call.token.as_deref()?;
        let script = &self.scripts.get(Kind::Release).source;
        native::release(self.capabilities, script, &call.keys, token).map(Command::Native)
    }

    /// How `calls` go on the wire, in order: one command per call
    /// ([`single`](Self::single)), except that releases (with the built-in
    /// release script) are gathered into one [`Command::ReleaseMany`], and,
    /// with [`with_merged_writes`](Self::with_merged_writes), acquires and
    /// extends (with the built-in scripts) into one [`Command::WriteMany`],
    /// where that keeps the batch's meaning. A gathered call may move later
    /// in the batch, past calls on other keys only, so every call still
    /// meets its keys in the state the original order gives; calls of one
    /// gathered command run in their order inside it. A gathered command is
    /// sent before the first later call that touches one of its keys, and
    /// otherwise at the end of the batch, releases before writes (so that a
    /// merged acquire refused with `NOSCRIPT` was sent after those
    /// releases and may still be sent again, see
    /// [`Resends`](crate::slots::Resends)). A group of one is sent as that
    /// call's own command. A one-key release or extend the server can do
    /// natively ([`native_release`](Self::native_release),
    /// [`single`](Self::single)) stays in its place. With a replica wait
    /// ([`with_durability`](Self::with_durability)), a batch holding
    /// acquires or extends ends with one [`Command::Wait`] that covers them
    /// all ([`Answers::Replicated`]).
    pub fn plan<'a>(&'a self, calls: &'a [Call]) -> Vec<Entry<'a>> {
        let mut entries = self.plan_calls(calls);
        if let Some((replicas, timeout)) = self.durability.replica_wait() {
            let writes: Vec<usize> = calls
                .iter()
                .enumerate()
                .filter(|(_, c)| matches!(c.kind, Kind::Acquire | Kind::Extend))
                .map(|(i, _)| i)
                .collect();
            if !writes.is_empty() {
                entries.push(Entry {
                    command: Command::Wait {
                        replicas,
                        timeout_ms: redlock_core::node::ttl_millis(timeout),
                    },
                    answers: Answers::Replicated(writes),
                });
            }
        }
        entries
    }

    /// `call`'s own entry: its [`single`](Self::single) command, or a
    /// native release (announced once answered, see
    /// [`Entry::announcement`]).
    fn push_one<'a>(&'a self, call: &'a Call, i: usize, entries: &mut Vec<Entry<'a>>) {
        entries.push(Entry {
            command: self
                .native_release(call)
                .unwrap_or_else(|| self.single(call)),
            answers: Answers::One(i),
        });
    }

    /// Which group `call` may join: a release, or (when merging writes) an
    /// acquire or extend, each with its built-in script and not done
    /// natively by the server.
    fn group_of(&self, call: &Call) -> Option<Group> {
        match call.kind {
            Kind::Release => {
                let script = &self.scripts.get(Kind::Release).source;
                (self.scripts.release_many().is_some()
                    && !native::releases_natively(self.capabilities, script, &call.keys))
                .then_some(Group::Releases)
            }
            Kind::Acquire | Kind::Extend => {
                let native = match (call.kind, &call.token, call.number) {
                    (Kind::Extend, Some(token), Some(ttl_ms)) => {
                        let script = &self.scripts.get(Kind::Extend).source;
                        native::extend(self.capabilities, script, &call.keys, token, ttl_ms)
                            .is_some()
                    }
                    _ => false,
                };
                (self.merged_writes
                    && self.scripts.write_many().is_some()
                    && self.scripts.merges_write(call.kind)
                    && call.token.is_some()
                    && call.number.is_some()
                    && !native)
                    .then_some(Group::Writes)
            }
            _ => None,
        }
    }

    /// Sends a pending group: as its one call's own command, or gathered.
    fn flush<'a>(
        &'a self,
        calls: &'a [Call],
        group: &mut Pending<'a>,
        entries: &mut Vec<Entry<'a>>,
    ) {
        group.keys.clear();
        let members = std::mem::take(&mut group.members);
        let script = match group.kind {
            Group::Releases => self.scripts.release_many(),
            Group::Writes => self.scripts.write_many(),
        };
        match script {
            Some(script) if members.len() > 1 => {
                let gathered: Vec<&Call> = members.iter().map(|&i| &calls[i]).collect();
                let command = match group.kind {
                    Group::Releases => Command::ReleaseMany {
                        script,
                        releases: gathered,
                        source: false,
                    },
                    Group::Writes => Command::WriteMany {
                        script,
                        calls: gathered,
                        source: false,
                    },
                };
                entries.push(Entry {
                    command,
                    answers: Answers::Each(members),
                });
            }
            _ => {
                for &i in &members {
                    self.push_one(&calls[i], i, entries);
                }
            }
        }
    }

    fn plan_calls<'a>(&'a self, calls: &'a [Call]) -> Vec<Entry<'a>> {
        let mut entries = Vec::with_capacity(calls.len());
        if calls.len() < 2 {
            for (i, call) in calls.iter().enumerate() {
                self.push_one(call, i, &mut entries);
            }
            return entries;
        }
        // Pending groups: releases first, so that at the end (and when a
        // call touches both) releases are sent before writes. Their keys
        // never overlap: a call that touches a pending group's keys sends
        // that group first.
        let mut groups = [Pending::new(Group::Releases), Pending::new(Group::Writes)];
        for (i, call) in calls.iter().enumerate() {
            let joins = self.group_of(call);
            for group in groups.iter_mut() {
                if Some(group.kind) != joins && group.touches(&call.keys) {
                    self.flush(calls, group, &mut entries);
                }
            }
            match joins.and_then(|g| groups.iter_mut().find(|p| p.kind == g)) {
                Some(group) => {
                    group.members.push(i);
                    group.keys.extend(call.keys.iter().map(String::as_str));
                }
                None => self.push_one(call, i, &mut entries),
            }
        }
        for group in groups.iter_mut() {
            self.flush(calls, group, &mut entries);
        }
        entries
    }
}

/// The kinds of calls the planner gathers into one command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Group {
    /// Releases, into [`Command::ReleaseMany`].
    Releases,
    /// Acquires and extends, into [`Command::WriteMany`].
    Writes,
}

/// A group's calls not yet planned, and their keys.
struct Pending<'a> {
    kind: Group,
    members: Vec<usize>,
    keys: HashSet<&'a str>,
}

impl<'a> Pending<'a> {
    fn new(kind: Group) -> Self {
        Pending {
            kind,
            members: Vec::new(),
            keys: HashSet::new(),
        }
    }

    fn touches(&self, keys: &[String]) -> bool {
        !self.members.is_empty() && keys.iter().any(|k| self.keys.contains(k.as_str()))
    }
}

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

    /// The plan as (kind of command, answered calls).
    fn shape(entries: &[Entry<'_>]) -> Vec<(&'static str, Vec<usize>)> {
        entries
            .iter()
            .map(|e| {
                let what = match &e.command {
                    Command::Ping => "ping",
                    Command::SetNx { .. } => "set",
                    Command::Script { .. } => "script",
                    Command::ReleaseMany { .. } => "many",
                    Command::WriteMany { .. } => "writes",
                    Command::Native(n) if n.name == "PUBLISH" => "announce",
                    Command::Native(n) if n.name == "SET" => "set-ifeq",
                    Command::Native(_) => "delete",
                    _ => "other",
                };
                (what, e.answers.calls().to_vec())
            })
            .collect()
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
            shape(&Planner::new(scripts).plan(&calls)),
            vec![
                ("script", vec![1]),
                ("ping", vec![3]),
                ("many", vec![0, 2, 4])
            ]
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
            shape(&Planner::new(scripts).plan(&calls)),
            vec![
                ("many", vec![0, 1]),
                ("script", vec![2]),
                ("script", vec![3]),
                ("script", vec![4]),
                ("script", vec![5]),
            ]
        );
    }

    #[test]
    fn one_key_releases_and_extends_go_native_where_the_server_has_them() {
        let scripts = LoadedScripts::new(&Scripts::default());
        let calls = [
            call(Kind::Release, &["a", "b"]),
            call(Kind::Release, &["c"]),
            call(Kind::Release, &["d", "e"]),
            call(Kind::Release, &["a"]),
            Call::new(Kind::Extend, &["x".to_owned()], Some("tok"), Some(900)),
            Call::new(Kind::Extend, &keys(&["x", "y"]), Some("tok"), Some(900)),
        ];
        let valkey = Planner::new(scripts.clone()).with_capabilities(Capabilities::VALKEY);
        assert_eq!(
            shape(&valkey.plan(&calls)),
            vec![
                ("delete", vec![1]),
                // The multi-key releases are gathered until a call on one
                // of their keys.
                ("many", vec![0, 2]),
                ("delete", vec![3]),
                ("set-ifeq", vec![4]),
                ("script", vec![5]),
            ]
        );
        let Command::Native(delete) = &valkey.plan(&calls[1..2])[0].command else {
            panic!("a native release");
        };
        assert_eq!(delete.to_string(), "DELIFEQ c tok");
        let Command::Native(set) = valkey.single(&calls[4]) else {
            panic!("a native extend");
        };
        assert_eq!(set.to_string(), "SET x tok IFEQ tok PX 900");
        // No capabilities, or a substitute script: scripts.
        let none = Planner::new(scripts);
        assert_eq!(shape(&none.plan(&calls[1..2])), vec![("script", vec![0])]);
        assert!(matches!(none.single(&calls[4]), Command::Script { .. }));
        let custom = Planner::new(LoadedScripts::new(
            &Scripts::default()
                .with_release("return 0")
                .with_extend("return 1"),
        ))
        .with_capabilities(Capabilities::VALKEY);
        assert_eq!(shape(&custom.plan(&calls[1..2])), vec![("script", vec![0])]);
        assert!(matches!(custom.single(&calls[4]), Command::Script { .. }));
    }

    fn keys(k: &[&str]) -> Vec<String> {
        k.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_substitute_release_script_is_sent_as_it_is() {
        let scripts = LoadedScripts::new(&Scripts::default().with_release("return 0"));
        let calls = [call(Kind::Release, &["a"]), call(Kind::Release, &["b"])];
        assert_eq!(
            shape(&Planner::new(scripts).plan(&calls)),
            vec![("script", vec![0]), ("script", vec![1])]
        );
    }

    #[test]
    fn a_one_key_acquire_is_a_plain_set_with_the_built_in_script() {
        let builtin = Planner::new(LoadedScripts::new(&Scripts::default()));
        let custom = Planner::new(LoadedScripts::new(
            &Scripts::default().with_acquire("return 1"),
        ));
        let one = Call::new(Kind::Acquire, &["k".to_owned()], Some("t"), Some(500));
        assert_eq!(
            builtin.single(&one),
            Command::SetNx {
                key: "k",
                token: "t",
                ttl_ms: 500
            }
        );
        assert!(matches!(custom.single(&one), Command::Script { .. }));
        let two = Call::new(Kind::Acquire, &["k".into(), "l".into()], Some("t"), Some(5));
        assert!(matches!(builtin.single(&two), Command::Script { .. }));
        let resent = builtin.single(&two).by_source();
        assert!(matches!(resent, Command::Script { source: true, .. }));
    }

    #[test]
    fn replies_reach_their_calls() {
        let scripts = LoadedScripts::new(&Scripts::default());
        let calls = [
            call(Kind::Release, &["a"]),
            call(Kind::Ping, &[]),
            call(Kind::Release, &["b"]),
        ];
        let planner = Planner::new(scripts);
        let entries = planner.plan(&calls);
        let mut results: Vec<Result<Reply, NodeError>> =
            calls.iter().map(|_| Err(NodeError::Closed)).collect();
        entries[0].distribute(Ok(Reply::Text("PONG".into())), &mut results);
        entries[1].distribute(
            Ok(Reply::Array(vec![
                Reply::Int(1),
                Reply::Error("OOM".into()),
            ])),
            &mut results,
        );
        assert_eq!(results[0], Ok(Reply::Int(1)));
        assert_eq!(results[1], Ok(Reply::Text("PONG".into())));
        assert_eq!(results[2], Err(NodeError::Server("OOM".into())));
        entries[1].distribute(Ok(Reply::Int(3)), &mut results);
        assert!(matches!(results[0], Err(NodeError::Protocol(_))));
        assert!(matches!(results[2], Err(NodeError::Protocol(_))));
    }

    fn waiting() -> Planner {
        let wait = Durability::replicas(1, std::time::Duration::from_millis(50)).expect("valid");
        Planner::new(LoadedScripts::new(&Scripts::default())).with_durability(wait)
    }

    #[test]
    fn a_replica_wait_ends_a_batch_with_writes_and_only_such_a_batch() {
        let planner = waiting();
        let calls = [
            call(Kind::Acquire, &["x", "y"]),
            call(Kind::Release, &["a"]),
            call(Kind::Extend, &["b"]),
            call(Kind::Inspect, &["c"]),
        ];
        let entries = planner.plan(&calls);
        let last = entries.last().expect("entries");
        assert_eq!(
            last.command,
            Command::Wait {
                replicas: 1,
                timeout_ms: 50
            }
        );
        assert_eq!(last.answers, Answers::Replicated(vec![0, 2]));
        assert!(last.answers.calls().is_empty(), "a WAIT answers no call");
        let reads = [call(Kind::Release, &["a"]), call(Kind::Inspect, &["c"])];
        assert!(planner
            .plan(&reads)
            .iter()
            .all(|e| !matches!(e.command, Command::Wait { .. })));
        let plain = Planner::new(LoadedScripts::new(&Scripts::default()));
        assert!(plain
            .plan(&calls)
            .iter()
            .all(|e| !matches!(e.command, Command::Wait { .. })));
    }

    #[test]
    fn too_few_replicas_fail_the_writes_that_took_effect() {
        let planner = waiting();
        let calls = [
            call(Kind::Acquire, &["x"]),
            call(Kind::Acquire, &["held"]),
            call(Kind::Extend, &["y"]),
            call(Kind::Release, &["z"]),
        ];
        let entries = planner.plan(&calls);
        let wait = entries.last().expect("the WAIT");
        let answered = || -> Vec<Result<Reply, NodeError>> {
            vec![
                Ok(Reply::Text("OK".into())),
                Ok(Reply::Nil),
                Ok(Reply::Int(1)),
                Ok(Reply::Int(1)),
            ]
        };
        let mut enough = answered();
        wait.distribute(Ok(Reply::Int(1)), &mut enough);
        assert_eq!(enough, answered(), "enough replicas change nothing");

        let mut short = answered();
        wait.distribute(Ok(Reply::Int(0)), &mut short);
        let not = Err(NodeError::NotReplicated {
            required: 1,
            reached: 0,
        });
        assert_eq!(short[0], not, "the acquire that took its key");
        assert_eq!(short[1], Ok(Reply::Nil), "a held key was not taken");
        assert_eq!(short[2], not, "the extend that extended");
        assert_eq!(short[3], Ok(Reply::Int(1)), "a release is not covered");

        let mut refused = answered();
        wait.distribute(
            Ok(Reply::Error("ERR WAIT cannot be used".into())),
            &mut refused,
        );
        assert!(matches!(refused[0], Err(NodeError::Server(_))));
        let mut broken = answered();
        wait.distribute(Err(NodeError::Connection("reset".into())), &mut broken);
        assert_eq!(broken[2], Err(NodeError::Connection("reset".into())));
        assert_eq!(broken[1], Ok(Reply::Nil));
    }

    fn write(kind: Kind, keys: &[&str]) -> Call {
        Call {
            kind,
            keys: keys.iter().map(|k| k.to_string()).collect(),
            token: Some("tok".into()),
            number: Some(900),
        }
    }

    fn merging() -> Planner {
        Planner::new(LoadedScripts::new(&Scripts::default())).with_merged_writes(true)
    }

    #[test]
    fn merged_writes_are_off_unless_asked_for() {
        let calls = [write(Kind::Acquire, &["a"]), write(Kind::Acquire, &["b"])];
        let plain = Planner::new(LoadedScripts::new(&Scripts::default()));
        assert!(!plain.merged_writes());
        assert_eq!(
            shape(&plain.plan(&calls)),
            vec![("set", vec![0]), ("set", vec![1])]
        );
        assert!(merging().merged_writes());
        assert_eq!(shape(&merging().plan(&calls)), vec![("writes", vec![0, 1])]);
    }

    #[test]
    fn a_batch_of_acquires_and_releases_is_two_commands() {
        let calls = [
            write(Kind::Acquire, &["a"]),
            call(Kind::Release, &["b"]),
            write(Kind::Acquire, &["c", "d"]),
            write(Kind::Extend, &["e"]),
            call(Kind::Release, &["f"]),
            write(Kind::Acquire, &["g"]),
        ];
        let planner = merging();
        let entries = planner.plan(&calls);
        // Releases first, then the writes, each in their order.
        assert_eq!(
            shape(&entries),
            vec![("many", vec![1, 4]), ("writes", vec![0, 2, 3, 5])]
        );
        let command = &entries[1].command;
        let Command::WriteMany {
            calls: members,
            source: false,
            ..
        } = command
        else {
            panic!("a merged write");
        };
        let keys: Vec<&str> = members
            .iter()
            .flat_map(|c| c.keys.iter().map(String::as_str))
            .collect();
        assert_eq!(keys, ["a", "c", "d", "e", "g"]);
        assert_eq!(
            command.write_many_fields().collect::<Vec<_>>(),
            [
                ("a", 1, "tok", 900),
                ("a", 2, "tok", 900),
                ("e", 1, "tok", 900),
                ("a", 1, "tok", 900)
            ]
        );
        assert!(command.acquires());
        assert!(matches!(
            command.clone().by_source(),
            Command::WriteMany { source: true, .. }
        ));
        let extends = [write(Kind::Extend, &["a"]), write(Kind::Extend, &["b"])];
        assert!(!planner.plan(&extends)[0].command.acquires());
        assert_eq!(Command::Ping.write_many_fields().count(), 0);
    }

    #[test]
    fn a_merged_call_never_moves_past_a_call_on_its_keys() {
        let calls = [
            write(Kind::Acquire, &["a"]),
            write(Kind::Acquire, &["b"]),
            // Releases what the first acquire took: the writes go first.
            call(Kind::Release, &["a"]),
            write(Kind::Acquire, &["c"]),
            // Takes what the release above frees: the release goes first.
            write(Kind::Acquire, &["a"]),
            call(Kind::Inspect, &["c"]),
            call(Kind::Ping, &[]),
            write(Kind::Extend, &["x"]),
            write(Kind::Extend, &["x"]),
        ];
        assert_eq!(
            shape(&merging().plan(&calls)),
            vec![
                ("writes", vec![0, 1]),
                ("script", vec![2]),
                // The acquire of `c` waits in the group until the inspect
                // of `c`; the acquire of `a` goes with it.
                ("writes", vec![3, 4]),
                ("script", vec![5]),
                ("ping", vec![6]),
                // Two calls on one key run in their order inside the script.
                ("writes", vec![7, 8]),
            ]
        );
    }

    /// Replays `calls` in the order the plan sends them (a gathered
    /// command's calls in its order) and checks that every two calls on a
    /// common key keep their order.
    fn keeps_order(planner: &Planner, calls: &[Call]) {
        let sent: Vec<usize> = planner
            .plan(calls)
            .iter()
            .flat_map(|e| e.answers.calls().to_vec())
            .collect();
        let mut seen = sent.clone();
        seen.sort_unstable();
        assert_eq!(seen, (0..calls.len()).collect::<Vec<_>>(), "each call once");
        for (x, &i) in sent.iter().enumerate() {
            for &j in &sent[x + 1..] {
                let shared = calls[i].keys.iter().any(|k| calls[j].keys.contains(k));
                assert!(
                    !shared || i < j,
                    "call {j} overtook call {i} on a common key: {sent:?}"
                );
            }
        }
    }

    #[test]
    fn mixed_batches_keep_the_order_of_calls_on_a_key() {
        let kinds = [
            Kind::Acquire,
            Kind::Release,
            Kind::Extend,
            Kind::Inspect,
            Kind::Ping,
        ];
        let names = ["a", "b", "c", "d"];
        let planners = [
            merging(),
            merging().with_capabilities(Capabilities::VALKEY),
            Planner::new(LoadedScripts::new(&Scripts::default())),
        ];
        // A small deterministic generator: every batch of 8 calls drawn
        // from these kinds and keys.
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        for _ in 0..2000 {
            let calls: Vec<Call> = (0..8)
                .map(|_| {
                    let kind = kinds[next(kinds.len())];
                    let keys: Vec<&str> = match kind {
                        Kind::Ping => Vec::new(),
                        _ if next(3) == 0 => vec![names[next(4)], names[next(4)]],
                        _ => vec![names[next(4)]],
                    };
                    write(kind, &keys)
                })
                .collect();
            for planner in &planners {
                keeps_order(planner, &calls);
            }
        }
    }

    #[test]
    fn substitute_scripts_and_native_extends_are_not_merged() {
        let calls = [
            write(Kind::Acquire, &["a"]),
            write(Kind::Acquire, &["b"]),
            write(Kind::Extend, &["c"]),
            write(Kind::Extend, &["d", "e"]),
        ];
        let acquire = Planner::new(LoadedScripts::new(
            &Scripts::default().with_acquire("return 1"),
        ))
        .with_merged_writes(true);
        assert_eq!(
            shape(&acquire.plan(&calls)),
            vec![
                ("script", vec![0]),
                ("script", vec![1]),
                ("writes", vec![2, 3])
            ]
        );
        let neither = Planner::new(LoadedScripts::new(
            &Scripts::default()
                .with_acquire("return 1")
                .with_extend("return 1"),
        ))
        .with_merged_writes(true);
        assert!(shape(&neither.plan(&calls))
            .iter()
            .all(|(w, _)| *w == "script"));
        // On Valkey 9 a one-key extend is a native SET IFEQ, in its place.
        let valkey = merging().with_capabilities(Capabilities::VALKEY);
        assert_eq!(
            shape(&valkey.plan(&calls)),
            vec![("set-ifeq", vec![2]), ("writes", vec![0, 1, 3])]
        );
    }

    #[test]
    fn merged_replies_reach_their_calls_and_the_wait_covers_them() {
        let wait = Durability::replicas(1, std::time::Duration::from_millis(50)).expect("valid");
        let planner = merging().with_durability(wait);
        let calls = [
            write(Kind::Acquire, &["a"]),
            write(Kind::Acquire, &["b"]),
            write(Kind::Extend, &["c"]),
            call(Kind::Release, &["d"]),
        ];
        let entries = planner.plan(&calls);
        assert_eq!(
            shape(&entries),
            vec![
                ("script", vec![3]),
                ("writes", vec![0, 1, 2]),
                ("other", vec![])
            ]
        );
        assert_eq!(entries[2].answers, Answers::Replicated(vec![0, 1, 2]));
        let mut results: Vec<Result<Reply, NodeError>> =
            calls.iter().map(|_| Err(NodeError::Closed)).collect();
        entries[0].distribute(Ok(Reply::Int(1)), &mut results);
        entries[1].distribute(
            Ok(Reply::Array(vec![
                Reply::Int(1),
                Reply::Int(0),
                Reply::Error("OOM".into()),
            ])),
            &mut results,
        );
        assert_eq!(
            crate::reply::acquire(&results[0].clone().expect("ok")),
            Ok(Acquire::Acquired)
        );
        assert_eq!(
            crate::reply::acquire(&results[1].clone().expect("ok")),
            Ok(Acquire::Held)
        );
        assert_eq!(results[2], Err(NodeError::Server("OOM".into())));
        assert_eq!(results[3], Ok(Reply::Int(1)));
        entries[2].distribute(Ok(Reply::Int(0)), &mut results);
        assert!(matches!(results[0], Err(NodeError::NotReplicated { .. })));
        assert_eq!(results[1], Ok(Reply::Int(0)), "a held key was not taken");
    }

    /// A command as the words a client sends: its name, then its args.
    fn words(command: &Command<'_>) -> Vec<String> {
        let mut words = vec![command.name().to_owned()];
        command.each_arg(|a| {
            words.push(match a {
                Arg::Text(t) => t.to_owned(),
                Arg::Int(n) => n.to_string(),
            })
        });
        let (count, bytes) = command.size_hint();
        assert_eq!(count + 1, words.len(), "size_hint counts every arg");
        assert!(
            bytes >= words.iter().map(String::len).sum::<usize>(),
            "size_hint covers the bytes"
        );
        words
    }

    #[test]
    fn every_command_has_one_translation_into_words() {
        let scripts = LoadedScripts::new(&Scripts::default());
        let acquire = Call::new(
            Kind::Acquire,
            &["{a}1".into(), "{a}2".into()],
            Some("tok"),
            Some(500),
        );
        let fence = Call::new(Kind::Fence, &["f".into()], None, Some(7));
        let release = Call::new(Kind::Release, &["r".into()], Some("t2"), None);
        let extend = Call::new(Kind::Extend, &["e".into()], Some("t3"), Some(900));
        let script = scripts.get(Kind::Acquire);
        let (sha, src) = (script.sha.as_str(), script.source.as_str());
        let announce = native::announce("k", "tok");
        let cases: Vec<(Command<'_>, Vec<&str>)> = vec![
            (Command::Ping, vec!["PING"]),
            (
                Command::SetNx {
                    key: "k",
                    token: "tok",
                    ttl_ms: 1500,
                },
                vec!["SET", "k", "tok", "NX", "PX", "1500"],
            ),
            (
                Command::Script {
                    script,
                    call: &acquire,
                    source: false,
                },
                vec!["EVALSHA", sha, "2", "{a}1", "{a}2", "tok", "500"],
            ),
            (
                Command::Script {
                    script,
                    call: &acquire,
                    source: true,
                },
                vec!["EVAL", src, "2", "{a}1", "{a}2", "tok", "500"],
            ),
            (
                Command::Script {
                    script: scripts.get(Kind::Fence),
                    call: &fence,
                    source: false,
                },
                vec!["EVALSHA", &scripts.get(Kind::Fence).sha, "1", "f", "7"],
            ),
            (Command::ClientId, vec!["CLIENT", "ID"]),
            (Command::InfoServer, vec!["INFO", "server"]),
            (
                Command::ClientKill { id: 42 },
                vec!["CLIENT", "KILL", "ID", "42"],
            ),
            (
                Command::Wait {
                    replicas: 2,
                    timeout_ms: 50,
                },
                vec!["WAIT", "2", "50"],
            ),
            (Command::ScriptLoad { script }, vec!["SCRIPT", "LOAD", src]),
            (
                Command::Native(native::announce("k", "tok")),
                announce.words().collect(),
            ),
        ];
        for (command, expected) in &cases {
            assert_eq!(&words(command), expected, "{command:?}");
        }
        if let Some(many) = scripts.release_many() {
            let merged = Command::ReleaseMany {
                script: many,
                releases: vec![&acquire, &release],
                source: false,
            };
            let expected = [
                "EVALSHA", &many.sha, "3", "{a}1", "{a}2", "r", "2", "tok", "1", "t2",
            ];
            assert_eq!(words(&merged), expected);
            assert!(merged.releases());
        }
        if let Some(writes) = scripts.write_many() {
            let merged = Command::WriteMany {
                script: writes,
                calls: vec![&acquire, &extend],
                source: true,
            };
            let expected = [
                "EVAL",
                &writes.source,
                "3",
                "{a}1",
                "{a}2",
                "e",
                "a",
                "2",
                "tok",
                "500",
                "e",
                "1",
                "t3",
                "900",
            ];
            assert_eq!(words(&merged), expected);
            assert!(!merged.releases());
        }
        let release_script = Command::Script {
            script: scripts.get(Kind::Release),
            call: &release,
            source: false,
        };
        assert!(release_script.releases());
        assert!(!Command::Ping.releases());
    }
}
