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

use std::time::Duration;

use crate::error::{LockError, NodeOutcome, Operation};
use crate::lock::Lock;
use crate::options::RetryPolicy;
use crate::redlock::{node_timeout, Redlock};
use crate::resources::IntoResources;
use crate::round::{self, Round, Vote};

impl Redlock {
    /// Locks like [`Redlock::lock`] and also takes a fencing token
    /// ([`Lock::fence`]); see the [`fence`](crate::fence) module for the
    /// guarantee.
    pub async fn lock_fenced(
        &self,
        resources: impl IntoResources,
        ttl: Duration,
    ) -> Result<Lock, LockError> {
        let policy = self.shared.options.retry;
        self.lock_fenced_with(resources, ttl, &policy).await
    }

    /// [`Redlock::lock_fenced`] with a retry policy for this call.
    pub async fn lock_fenced_with(
        &self,
        resources: impl IntoResources,
        ttl: Duration,
        policy: &RetryPolicy,
    ) -> Result<Lock, LockError> {
        let mut lock = self.lock_with(resources, ttl, policy).await?;
        match self.take_fence(&lock).await {
            Ok(fence) => {
                lock.fence = Some(fence);
                Ok(lock)
            }
            Err(e) => {
                if let Err(release) = self.unlock(&lock).await {
                    tracing::warn!("release after failed fencing failed: {release}");
                }
                Err(e)
            }
        }
    }

    async fn take_fence(&self, lock: &Lock) -> Result<u64, LockError> {
        let counters: Vec<String> = lock.keys().iter().map(|k| counter_key(k)).collect();
        let read = self.counter_round(lock, &counters, 0).await;
        let fail = |round: &Round| {
            LockError::NoQuorum(self.failure(Operation::Fence, &lock.target, 1, round))
        };
        if read.yes < self.shared.quorum {
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
        let write = self.counter_round(lock, &counters, next).await;
        if write.yes < self.shared.quorum || lock.is_expired() {
            return Err(fail(&write));
        }
        Ok(next)
    }

    /// Asks every node to read the counters and raise them to `floor` (0:
    /// read only), until a quorum answered or the lock's validity ends.
    async fn counter_round(&self, lock: &Lock, counters: &[String], floor: u64) -> Round {
        let shared = &self.shared;
        round::run(
            shared,
            Operation::Fence,
            lock.resources(),
            counters.first().map(String::as_str),
            node_timeout(&shared.options, lock.ttl()),
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
}

/// The counter key of a lock key.
pub fn counter_key(key: &str) -> String {
    format!("{key}:fence")
}
