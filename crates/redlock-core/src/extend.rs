//! Extending a held lock: the same fan-out as an acquire, with the extend
//! script, which only touches keys that still hold our token.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tracing::Instrument;

use crate::error::{LockError, NodeOutcome, Operation};
use crate::lock::Lock;
use crate::node::Extend;
use crate::round::{self, Round, Vote};
use crate::telemetry;

/// Extends `lock` so it expires `ttl` from now; see
/// [`Redlock::extend`](crate::Redlock::extend).
pub(crate) async fn extend(lock: &mut Lock, ttl: Duration) -> Result<(), LockError> {
    if lock.released.load(Ordering::Acquire) {
        return Err(LockError::Released);
    }
    let shared = lock.shared.clone();
    shared.check_ttl(ttl)?;
    let span = tracing::debug_span!(
        "redlock.extend",
        resources = ?lock.target.names,
        ttl_ms = ttl.as_millis() as u64,
        outcome = tracing::field::Empty,
    );
    let start = shared.runtime.now();
    if start >= lock.valid_until {
        span.record("outcome", "validity already over");
        let round = Round::undecided(shared.nodes.len(), true);
        return Err(LockError::Lost(round.failure(
            &shared,
            Operation::Extend,
            &lock.target,
            1,
        )));
    }
    let valid_until = start + (ttl - shared.drift(ttl));
    let keys: &[String] = &lock.target.keys;
    let token: &str = &lock.token;
    let round = round::run(
        &shared,
        Operation::Extend,
        &lock.target.names,
        keys.first().map(String::as_str),
        shared.node_timeout(ttl),
        Some(valid_until),
        |_, node| {
            Box::pin(async move {
                node.extend(keys, token, ttl).await.map(|e| match e {
                    Extend::Extended => (Vote::Yes, NodeOutcome::Extended),
                    Extend::NotHeld => (Vote::No, NodeOutcome::NotHeld),
                })
            })
        },
    )
    .instrument(span.clone())
    .await;
    let n = shared.nodes.len();
    let q = shared.quorum;
    if round.yes >= q && shared.runtime.now() < valid_until {
        lock.valid_until = valid_until;
        lock.ttl = ttl;
        span.record("outcome", "extended");
        return Ok(());
    }
    // The requests are sent: any node that processed (or will process)
    // this extension keeps the keys only until `start + ttl`.
    if valid_until < lock.valid_until {
        lock.valid_until = valid_until;
    }
    let failure = round.failure(&shared, Operation::Extend, &lock.target, 1);
    let err = if round.no > n - q {
        LockError::Lost(failure)
    } else if round.fail > n - q || round.yes < q && !round.out_of_time {
        LockError::NoQuorum(failure)
    } else {
        LockError::ValidityExpired(failure)
    };
    span.record("outcome", tracing::field::display(&err));
    telemetry::extend_failed(&err);
    Err(err)
}
