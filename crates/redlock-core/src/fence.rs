//! Fencing tokens: a number that grows strictly from one holder of a resource
//! to the next, for storage that must reject a stale holder's writes.
//!
//! ## How
//!
//! After the lock is acquired, the counters of its resources are read from the
//! nodes until a quorum answered; the new token is the maximum read plus one,
//! and it is written back (raising every counter to it) until a quorum
//! confirmed. Only then is the lock returned.
//!
//! ## The guarantee and its limits
//!
//! Any two quorums share a node, so the next holder reads at least the value
//! the previous holder wrote: tokens of successive holders strictly increase
//! **as long as a majority of nodes keeps its counters**. Counters never
//! expire, but a node restarted without persistence forgets them; if a
//! majority does, tokens may repeat. Protect against that with persistence
//! (AOF) on the nodes. Fencing is what keeps the resource safe when Redlock
//! itself cannot: a process paused past its TTL, or clocks that jump. The
//! storage layer must remember the highest token it accepted and reject
//! anything lower.

use crate::error::{LockError, NodeOutcome, Operation};
use crate::lock::Lock;
use crate::round::{self, Round, Vote};

/// Takes a fencing token for `lock`, just acquired; on failure the lock is
/// released before the error is returned.
pub(crate) async fn fence(mut lock: Lock) -> Result<Lock, LockError> {
    match take(&lock).await {
        Ok(fence) => {
            lock.fence = Some(fence);
            Ok(lock)
        }
        Err(e) => {
            if let Err(release) = lock.release().await {
                tracing::warn!("release after failed fencing failed: {release}");
            }
            Err(e)
        }
    }
}

async fn take(lock: &Lock) -> Result<u64, LockError> {
    let shared = &lock.shared;
    let counters: Vec<String> = lock.keys().iter().map(|k| counter_key(k)).collect();
    let read = counter_round(lock, &counters, 0).await;
    let fail = |round: &Round| {
        LockError::NoQuorum(round.failure(shared, Operation::Fence, &lock.target, 1))
    };
    if read.yes < shared.quorum {
        return Err(fail(&read));
    }
    let highest = read
        .outcomes
        .iter()
        .filter_map(|o| match o {
            NodeOutcome::Counter(v) => Some(*v),
            _ => None,
        })
        .max()
        .unwrap_or(0);
    let next = highest.saturating_add(1);
    let write = counter_round(lock, &counters, next).await;
    if write.yes < shared.quorum || lock.is_expired() {
        return Err(fail(&write));
    }
    Ok(next)
}

/// Asks every node to read the counters and raise them to `floor` (0:
/// read only), until a quorum answered or the lock's validity ends.
async fn counter_round(lock: &Lock, counters: &[String], floor: u64) -> Round {
    let shared = &lock.shared;
    round::run(
        shared,
        Operation::Fence,
        lock.resources(),
        counters.first().map(String::as_str),
        shared.node_timeout(lock.ttl()),
        Some(lock.valid_until()),
        |_, node| {
            Box::pin(async move {
                node.fence(counters, floor)
                    .await
                    .map(|v| (Vote::Yes, NodeOutcome::Counter(v)))
            })
        },
    )
    .await
}

/// The counter key of a lock key.
pub fn counter_key(key: &str) -> String {
    format!("{key}:fence")
}
