//! Releasing: the release round, the handover to the next call of this
//! process waiting for the same keys, and the release in the background
//! when a lock or an attempt is dropped.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future;

use crate::error::{LockError, NodeOutcome, Operation};
use crate::round::{self, Round, Vote};
use crate::shared::{Shared, Target};

/// Sends the release to every node and waits until a quorum answered, a
/// quorum became impossible, or every node answered or timed out.
pub(crate) async fn release_all(
    shared: &Arc<Shared>,
    names: &[String],
    keys: &[String],
    token: &str,
    ttl: Duration,
) -> Round {
    release_some(shared, names, keys, token, ttl, &[]).await
}

/// Releases a held lock ([`release_held`]); fails with
/// [`LockError::NoQuorum`] when fewer than a quorum of nodes answered.
pub(crate) async fn release_lock(
    shared: &Arc<Shared>,
    target: &Target,
    token: &str,
    ttl: Duration,
    skip: &[bool],
) -> Result<(), LockError> {
    let round = release_held(shared, &target.names, &target.keys, token, ttl, skip).await;
    if round.yes >= shared.quorum {
        Ok(())
    } else {
        Err(LockError::NoQuorum(round.failure(
            shared,
            Operation::Release,
            target,
            1,
        )))
    }
}

/// [`release_all`] for a lock that was held: as soon as the release requests
/// are sent (every node's future polled once, which fixes their place in
/// each node's order), the next call of this process waiting for the same
/// keys is told to attempt, so its acquire follows the release on every
/// node instead of waiting for the answers.
pub(crate) async fn release_held(
    shared: &Arc<Shared>,
    names: &[String],
    keys: &[String],
    token: &str,
    ttl: Duration,
    skip: &[bool],
) -> Round {
    let mut release = std::pin::pin!(release_some(shared, names, keys, token, ttl, skip));
    let mut sent = false;
    future::poll_fn(|cx| {
        let poll = release.as_mut().poll(cx);
        if !sent {
            sent = true;
            shared.local.released(keys);
        }
        poll
    })
    .await
}

/// Like [`release_all`], except that nodes `i` with `skip[i]` true are
/// sent nothing (they count as having released nothing).
pub(crate) async fn release_some(
    shared: &Arc<Shared>,
    names: &[String],
    keys: &[String],
    token: &str,
    ttl: Duration,
    skip: &[bool],
) -> Round {
    round::run(
        shared,
        Operation::Release,
        names,
        keys.first().map(String::as_str),
        shared.release_timeout(ttl),
        None,
        |i, node| {
            let send = !skip.get(i).copied().unwrap_or(false);
            Box::pin(async move {
                if !send {
                    return Ok((Vote::Yes, NodeOutcome::Released(0)));
                }
                node.release(keys, token)
                    .await
                    .map(|n| (Vote::Yes, NodeOutcome::Released(n)))
            })
        },
    )
    .await
}

/// Spawns a release when dropped armed: the attempt's future was cancelled
/// between sending acquires and finishing its own release.
pub(crate) struct ReleaseGuard {
    pub shared: Arc<Shared>,
    pub keys: Arc<[String]>,
    pub token: Arc<str>,
    pub armed: bool,
}

impl Drop for ReleaseGuard {
    fn drop(&mut self) {
        if self.armed {
            spawn_release(
                &self.shared,
                self.keys.clone(),
                self.token.clone(),
                Duration::from_secs(1),
                None,
            );
        }
    }
}

/// Spawns a release on the runtime, detached. Without a runtime that can
/// spawn, the keys are left to their TTL (logged).
pub(crate) fn spawn_release(
    shared: &Arc<Shared>,
    keys: Arc<[String]>,
    token: Arc<str>,
    ttl: Duration,
    skip: Option<Arc<[bool]>>,
) {
    let owned = shared.clone();
    let keys_for_log = keys.clone();
    let spawned = shared.runtime.spawn(Box::pin(async move {
        let skip = skip.as_deref().unwrap_or(&[]);
        release_held(&owned, &keys, &keys, &token, ttl, skip).await;
    }));
    if spawned {
        tracing::debug!(keys = ?keys_for_log, "release spawned in the background");
    } else {
        tracing::warn!(keys = ?keys_for_log, "no runtime to release on; keys expire with their TTL");
    }
}
