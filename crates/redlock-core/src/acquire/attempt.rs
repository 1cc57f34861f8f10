//! One acquire attempt: the fan-out, the validity check, and the release
//! of whatever a failed attempt took.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{Failure, LockError, NodeOutcome, Operation};
use crate::node::Acquire;
use crate::release::{release_some, ReleaseGuard};
use crate::round::{self, Round, Vote};
use crate::shared::{Shared, Target};

/// A successful attempt.
pub(super) struct Taken {
    /// When the attempt started.
    pub start: Instant,
    /// `start + ttl - drift`.
    pub valid_until: Instant,
    /// The nodes the acquire was certainly never sent to (see [`unsent`]).
    pub unsent: Option<Arc<[bool]>>,
}

/// One attempt. On failure everything taken is released on all nodes
/// before returning; if the caller's future is dropped instead, the
/// release is spawned on the runtime.
pub(super) async fn run(
    shared: &Arc<Shared>,
    target: &Target,
    token: &Arc<str>,
    ttl: Duration,
) -> Result<Taken, Round> {
    let start = shared.runtime.now();
    // `check_ttl` guarantees ttl > drift and no overflow.
    let valid_until = start + (ttl - shared.drift(ttl));
    let mut guard = ReleaseGuard {
        shared: shared.clone(),
        keys: target.keys.clone(),
        token: token.clone(),
        armed: true,
    };
    let keys: &[String] = &target.keys;
    let token_str: &str = token;
    let round = round::run(
        shared,
        Operation::Acquire,
        &target.names,
        keys.first().map(String::as_str),
        shared.node_timeout(ttl),
        Some(valid_until),
        |_, node| {
            Box::pin(async move {
                node.acquire(keys, token_str, ttl).await.map(|a| match a {
                    Acquire::Acquired => (Vote::Yes, NodeOutcome::Acquired),
                    Acquire::Held => (Vote::No, NodeOutcome::Held),
                })
            })
        },
    )
    .await;
    if round.yes >= shared.quorum && shared.runtime.now() < valid_until {
        guard.armed = false;
        return Ok(Taken {
            start,
            valid_until,
            unsent: unsent(&round),
        });
    }
    // A node that answered "held" took none of the keys (acquire is
    // all-or-nothing per node), and one the acquire was never sent to
    // (a full backlog, no connection) took nothing either: only the
    // others need a release. Sending those nodes a release anyway would
    // queue work on exactly the nodes that do not drain.
    let took_nothing: Vec<bool> = round
        .outcomes
        .iter()
        .map(|o| *o == NodeOutcome::Held || not_sent(o))
        .collect();
    release_some(
        shared,
        &target.names,
        &target.keys,
        token,
        ttl,
        &took_nothing,
    )
    .await;
    guard.armed = false;
    Err(round)
}

/// Whether the nodes that refused the credentials or permissions leave too
/// few nodes for a quorum: then no retry can succeed.
pub(super) fn refused_by_configuration(round: &Round, n: usize, q: usize) -> bool {
    let refused = round
        .outcomes
        .iter()
        .filter(|o| matches!(o, NodeOutcome::Error(e) if e.is_config()))
        .count();
    refused > 0 && n - refused < q
}

/// The error of a lock call whose last attempt failed with `round`.
pub(super) fn classify(round: &Round, n: usize, q: usize, failure: Box<Failure>) -> LockError {
    if refused_by_configuration(round, n, q) {
        LockError::Config(failure)
    } else if round.yes >= q {
        LockError::ValidityExpired(failure)
    } else if round.fail > n - q {
        LockError::NoQuorum(failure)
    } else if round.no > 0 {
        LockError::Conflict(failure)
    } else if round.out_of_time {
        LockError::ValidityExpired(failure)
    } else {
        LockError::NoQuorum(failure)
    }
}

/// Whether a node's outcome says the request certainly never reached it.
fn not_sent(outcome: &NodeOutcome) -> bool {
    matches!(outcome, NodeOutcome::Error(e) if !e.was_sent())
}

/// The nodes of a successful acquire that were never sent the request,
/// or `None` when it reached (or may have reached) every node.
fn unsent(round: &Round) -> Option<Arc<[bool]>> {
    round
        .outcomes
        .iter()
        .any(not_sent)
        .then(|| round.outcomes.iter().map(not_sent).collect())
}
