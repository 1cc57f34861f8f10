//! A whole Redis Cluster as one node's [`Executor`](crate::Executor)
//! work, over any client whose cluster connection routes a command by its
//! keys ([`Router`]).
//!
//! [`execute`] carries out a batch: calls on disjoint keys run at once (a
//! *wave*), a call touching a key of the current wave starts the next one,
//! so its order with the earlier call is kept. Each call is split by slot
//! with [`slots`] (and compensated), each single-slot piece
//! sent as the call's script: `EVALSHA`, `EVAL` after `NOSCRIPT`, and
//! again after a redirection (`MOVED`, `ASK`, `TRYAGAIN`, `CLUSTERDOWN`:
//! not run), an acquire only while [`Resends`] allows it.

use std::collections::HashSet;

use futures_util::future::join_all;
use redlock_core::{Acquire, Extend, KeyState, NodeError};

use crate::call::{Call, Kind, LoadedScripts};
use crate::plan::Command;
use crate::reply::{self, Reply};
use crate::slots::{self, is_redirect, Resends, SlotSender, MAX_REDIRECTS};

/// A cluster's error reply to one command (or a failure): what the node
/// reports, and the server's code and text, read for `NOSCRIPT` and
/// redirections.
#[derive(Debug, Clone, PartialEq)]
pub struct Refused {
    /// The error as the node reports it (without secrets).
    pub error: NodeError,
    /// The server's error code (`NOSCRIPT`, `MOVED`), if the client tells.
    pub code: Option<String>,
    /// The error's text (`MOVED 3999 …`), without secrets.
    pub text: String,
}

impl Refused {
    /// Whether the script was not cached: not run.
    fn noscript(&self) -> bool {
        self.code.as_deref() == Some("NOSCRIPT") || self.text.contains("NOSCRIPT")
    }

    /// Whether the cluster asks to send it elsewhere or later: not run.
    fn redirect(&self) -> bool {
        self.code.as_deref().is_some_and(is_redirect) || is_redirect(&self.text)
    }
}

/// A cluster connection that sends one command to the node owning its
/// keys (the client's routing), once.
#[async_trait::async_trait]
pub trait Router: Sync {
    /// Sends `command` once and returns its reply (decoded, with
    /// [`Reply::Error`] for an error inside an array), or the error reply
    /// or failure.
    async fn send(&self, command: &Command<'_>) -> Result<Reply, Refused>;
}

/// Sends `command` with `send`, and sends it again where the server
/// refused it without running it: by source after `NOSCRIPT` (which caches
/// the script again), and as it is after a cluster redirection (`MOVED`,
/// `ASK`, `TRYAGAIN`, `CLUSTERDOWN`; up to [`MAX_REDIRECTS`] times, the
/// client routing it anew). A release counts itself in `resends`; an
/// acquire is sent again only while no release went out on the node since
/// it was first sent ([`Resends`]): it must never land after a release
/// meant to follow it. Any other refusal is the answer.
///
/// The one loop for every client: the [`Router`]s of [`execute`], and an
/// adapter whose client reports each command's refusal on its own.
pub async fn resend_refused<'c, S, F>(
    command: Command<'c>,
    resends: &Resends,
    mut send: S,
) -> Result<Reply, NodeError>
where
    S: FnMut(&Command<'c>) -> F,
    F: std::future::Future<Output = Result<Reply, Refused>>,
{
    if command.releases() {
        resends.releasing();
    }
    let acquire = command.acquires();
    let sent = resends.sending();
    let (mut command, mut redirects) = (command, 0);
    loop {
        let refused = match send(&command).await {
            Ok(reply) => return Ok(reply),
            Err(refused) => refused,
        };
        let by_source = command.clone().by_source();
        let noscript = refused.noscript() && by_source != command;
        let redirect = redirects < MAX_REDIRECTS && refused.redirect();
        if !noscript && !redirect {
            return Err(refused.error);
        }
        if acquire && !resends.may_resend_acquire(sent) {
            return Err(NodeError::Server(format!(
                "{}; the acquire was not sent again because a release followed it",
                refused.text
            )));
        }
        tracing::debug!(error = %refused.text, "refused unrun: sending again");
        if noscript {
            command = by_source;
        } else {
            redirects += 1;
        }
    }
}

/// One call's single-slot pieces as script calls through a [`Router`].
struct Pieces<'a, R: ?Sized> {
    router: &'a R,
    scripts: &'a LoadedScripts,
    resends: Resends,
}

impl<R: Router + ?Sized> Pieces<'_, R> {
    /// Runs one single-slot call as its script ([`resend_refused`]).
    async fn eval(&self, call: Call) -> Result<Reply, NodeError> {
        let command = Command::Script {
            script: self.scripts.get(call.kind),
            call: &call,
            source: false,
        };
        let router = self.router;
        resend_refused(command, &self.resends, |c| {
            let c = c.clone();
            async move { router.send(&c).await }
        })
        .await
    }
}

fn piece(kind: Kind, keys: Vec<String>, token: Option<&str>, number: Option<u64>) -> Call {
    Call {
        kind,
        keys,
        token: token.map(str::to_owned),
        number,
    }
}

#[async_trait::async_trait]
impl<R: Router + ?Sized> SlotSender for Pieces<'_, R> {
    async fn acquire(
        &self,
        _: u16,
        keys: Vec<String>,
        token: &str,
        ttl_ms: u64,
    ) -> Result<Acquire, NodeError> {
        let call = piece(Kind::Acquire, keys, Some(token), Some(ttl_ms));
        reply::acquire(&self.eval(call).await?)
    }

    async fn release(&self, _: u16, keys: Vec<String>, token: &str) -> Result<u64, NodeError> {
        let call = piece(Kind::Release, keys, Some(token), None);
        reply::release(&self.eval(call).await?)
    }

    async fn extend(
        &self,
        _: u16,
        keys: Vec<String>,
        token: &str,
        ttl_ms: u64,
    ) -> Result<Extend, NodeError> {
        let call = piece(Kind::Extend, keys, Some(token), Some(ttl_ms));
        reply::extend(&self.eval(call).await?)
    }

    async fn inspect(&self, _: u16, keys: Vec<String>) -> Result<Vec<KeyState>, NodeError> {
        let call = piece(Kind::Inspect, keys.clone(), None, None);
        reply::inspect(&keys, self.eval(call).await?)
    }

    async fn fence(&self, _: u16, keys: Vec<String>, floor: u64) -> Result<u64, NodeError> {
        let call = piece(Kind::Fence, keys, None, Some(floor));
        reply::fence(&self.eval(call).await?)
    }
}

/// Runs one call split by slot, answered as the single server's script
/// would answer (the node decodes it again).
async fn run_call<R: Router + ?Sized>(
    pieces: &Pieces<'_, R>,
    call: &Call,
) -> Result<Reply, NodeError> {
    let keys = &call.keys;
    let token = call.token.as_deref().unwrap_or_default();
    let number = call.number.unwrap_or_default();
    let flag = |yes: bool| Reply::Int(i64::from(yes));
    let count = |n: u64| Reply::Int(i64::try_from(n).unwrap_or(i64::MAX));
    Ok(match call.kind {
        Kind::Acquire => {
            flag(slots::acquire(pieces, keys, token, number).await? == Acquire::Acquired)
        }
        Kind::Release => count(slots::release(pieces, keys, token).await?),
        Kind::Extend => flag(slots::extend(pieces, keys, token, number).await? == Extend::Extended),
        Kind::Fence => count(slots::fence(pieces, keys, number).await?),
        Kind::Inspect => Reply::Array(
            slots::inspect(pieces, keys)
                .await?
                .into_iter()
                .map(|state| {
                    let pttl = match (&state.holder, state.ttl) {
                        (None, _) => -2,
                        (Some(_), None) => -1,
                        (Some(_), Some(ttl)) => i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX),
                    };
                    let holder = state.holder.map_or(Reply::Nil, Reply::Text);
                    Reply::Array(vec![Reply::Int(pttl), holder])
                })
                .collect(),
        ),
        Kind::Ping => pieces
            .router
            .send(&Command::Ping)
            .await
            .map_err(|r| r.error)?,
    })
}

/// Carries out `calls` in order on a cluster (see the [module docs](self));
/// one result per call.
pub async fn execute<R: Router + ?Sized>(
    router: &R,
    scripts: &LoadedScripts,
    calls: &[Call],
) -> Vec<Result<Reply, NodeError>> {
    let mut results = Vec::with_capacity(calls.len());
    let mut start = 0;
    while start < calls.len() {
        let mut end = start;
        let mut seen: HashSet<&str> = HashSet::new();
        while end < calls.len() {
            let c = &calls[end];
            if c.keys.iter().any(|k| seen.contains(k.as_str())) {
                break;
            }
            seen.extend(c.keys.iter().map(|k| k.as_str()));
            end += 1;
        }
        let wave = join_all(calls[start..end].iter().map(|c| {
            // The waves keep a release from running beside an acquire of
            // the same keys, so only a call's own releases (its
            // compensation) count against resending its acquires.
            let pieces = Pieces {
                router,
                scripts,
                resends: Resends::default(),
            };
            async move { run_call(&pieces, c).await }
        }))
        .await;
        results.extend(wave);
        start = end;
    }
    results
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Mutex;

    use redlock_core::Scripts;

    use super::*;

    /// Answers every script with success; refuses the first one with
    /// `NOSCRIPT` or `MOVED` when told to.
    #[derive(Default)]
    struct Fake {
        log: Mutex<Vec<String>>,
        noscript_once: AtomicBool,
        moved_once: AtomicBool,
    }

    fn refused(code: &str, text: &str) -> Refused {
        Refused {
            error: NodeError::Server(text.into()),
            code: Some(code.into()),
            text: text.into(),
        }
    }

    #[async_trait::async_trait]
    impl Router for Fake {
        async fn send(&self, command: &Command<'_>) -> Result<Reply, Refused> {
            let Command::Script { call, source, .. } = command else {
                return Ok(Reply::Text("PONG".into()));
            };
            let verb = if *source { "EVAL" } else { "EVALSHA" };
            let line = format!("{verb} {:?} {}", call.kind, call.keys.join(","));
            self.log.lock().unwrap().push(line);
            if !source && self.noscript_once.swap(false, Ordering::SeqCst) {
                return Err(refused("NOSCRIPT", "NoScript: No matching script"));
            }
            if self.moved_once.swap(false, Ordering::SeqCst) {
                return Err(refused("MOVED", "MOVED 3999 127.0.0.1:7001"));
            }
            Ok(match call.kind {
                Kind::Inspect => Reply::Array(
                    call.keys
                        .iter()
                        .map(|_| Reply::Array(vec![Reply::Int(-2), Reply::Nil]))
                        .collect(),
                ),
                Kind::Release => Reply::Int(call.keys.len() as i64),
                _ => Reply::Int(1),
            })
        }
    }

    fn call(kind: Kind, keys: &[&str]) -> Call {
        let keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
        let number = (kind == Kind::Acquire).then_some(1000);
        Call::new(kind, &keys, Some("tok"), number)
    }

    fn log(fake: &Fake) -> Vec<String> {
        fake.log.lock().unwrap().clone()
    }

    #[tokio::test]
    async fn noscript_is_answered_with_the_source_and_order_is_kept() {
        let fake = Fake::default();
        fake.noscript_once.store(true, Ordering::SeqCst);
        let scripts = LoadedScripts::new(&Scripts::default());
        let calls = [call(Kind::Acquire, &["a"]), call(Kind::Release, &["a"])];
        let results = execute(&fake, &scripts, &calls).await;
        assert_eq!(results, [Ok(Reply::Int(1)), Ok(Reply::Int(1))]);
        assert_eq!(
            log(&fake),
            ["EVALSHA Acquire a", "EVAL Acquire a", "EVALSHA Release a"]
        );
    }

    #[tokio::test]
    async fn keys_of_several_slots_go_out_one_slot_at_a_time() {
        let fake = Fake::default();
        let scripts = LoadedScripts::new(&Scripts::default());
        let calls = [call(Kind::Inspect, &["{a}1", "{b}1", "{a}2"])];
        let results = execute(&fake, &scripts, &calls).await;
        let Ok(Reply::Array(states)) = &results[0] else {
            panic!("an array: {results:?}");
        };
        assert_eq!(states.len(), 3, "one state per key, in order");
        let mut sent = log(&fake);
        sent.sort();
        assert_eq!(sent, ["EVALSHA Inspect {a}1,{a}2", "EVALSHA Inspect {b}1"]);
    }

    #[tokio::test]
    async fn a_redirected_acquire_is_sent_again_while_no_release_went_out() {
        let fake = Fake::default();
        fake.moved_once.store(true, Ordering::SeqCst);
        let scripts = LoadedScripts::new(&Scripts::default());
        let results = execute(&fake, &scripts, &[call(Kind::Acquire, &["k"])]).await;
        assert_eq!(results, [Ok(Reply::Int(1))]);
        assert_eq!(log(&fake), ["EVALSHA Acquire k", "EVALSHA Acquire k"]);
        let ping = execute(&fake, &scripts, &[Call::ping()]).await;
        assert_eq!(ping, [Ok(Reply::Text("PONG".into()))]);
    }

    #[tokio::test]
    async fn resend_refused_resends_only_what_did_not_run_and_no_acquire_after_a_release() {
        let scripts = LoadedScripts::new(&Scripts::default());
        let script = |kind| scripts.get(kind);
        let resends = Resends::default();

        // An acquire redirected after a release went out on the node is
        // not sent again: it could land after that release.
        let acquire = call(Kind::Acquire, &["k"]);
        let mut sends = 0;
        let command = Command::Script {
            script: script(Kind::Acquire),
            call: &acquire,
            source: false,
        };
        let result = resend_refused(command, &resends, |_| {
            sends += 1;
            resends.releasing();
            async { Err(refused("MOVED", "MOVED 3999 127.0.0.1:7001")) }
        })
        .await;
        assert_eq!(sends, 1, "not sent again");
        match result {
            Err(NodeError::Server(text)) => {
                assert!(
                    text.contains("not sent again because a release followed it"),
                    "{text}"
                )
            }
            other => panic!("a server error: {other:?}"),
        }

        // A release missing from the script cache is sent again by source.
        let release = call(Kind::Release, &["k"]);
        let mut verbs = Vec::new();
        let command = Command::Script {
            script: script(Kind::Release),
            call: &release,
            source: false,
        };
        let result = resend_refused(command, &resends, |c| {
            verbs.push(c.name());
            let first = verbs.len() == 1;
            async move {
                match first {
                    true => Err(refused("NOSCRIPT", "NOSCRIPT No matching script")),
                    false => Ok(Reply::Int(1)),
                }
            }
        })
        .await;
        assert_eq!(result, Ok(Reply::Int(1)));
        assert_eq!(verbs, ["EVALSHA", "EVAL"]);

        // Any other refusal is the answer, sent once.
        let mut sends = 0;
        let command = Command::Script {
            script: script(Kind::Release),
            call: &release,
            source: false,
        };
        let result = resend_refused(command, &resends, |_| {
            sends += 1;
            async { Err(refused("ERR", "ERR something else")) }
        })
        .await;
        assert_eq!(sends, 1);
        assert_eq!(result, Err(NodeError::Server("ERR something else".into())));
    }
}
