//! [`Lock`]: a held lock, its token and validity.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::Instrument;

use crate::error::LockError;
use crate::release::{release_lock, spawn_release};
use crate::shared::{Shared, Target};

/// A lock held on a quorum of nodes until [`valid_until`](Lock::valid_until).
///
/// Release it with [`Lock::unlock`]. A lock dropped without release is
/// released in the background when the runtime can spawn (tokio can);
/// otherwise its keys expire with the TTL. Dropping never blocks.
#[must_use = "a lock is released as soon as it is dropped"]
pub struct Lock {
    pub(crate) shared: Arc<Shared>,
    pub(crate) target: Target,
    pub(crate) token: Arc<str>,
    pub(crate) ttl: Duration,
    pub(crate) acquired_at: Instant,
    pub(crate) valid_until: Instant,
    pub(crate) attempts: u32,
    pub(crate) released: AtomicBool,
    pub(crate) fence: Option<u64>,
    /// Nodes the acquire was never sent to (a full backlog, no
    /// connection): they hold nothing, so releases skip them. `None` when
    /// every node may hold the keys.
    pub(crate) unsent: Option<Arc<[bool]>>,
}

impl fmt::Debug for Lock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lock")
            .field("resources", &self.target.names)
            // The token is a release capability: never printed.
            .field("token", &"<redacted>")
            .field("ttl", &self.ttl)
            .field("remaining", &self.remaining())
            .field("attempts", &self.attempts)
            .field("fence", &self.fence)
            .field("released", &self.released.load(Ordering::Relaxed))
            .finish()
    }
}

impl Lock {
    pub(crate) fn new(
        shared: Arc<Shared>,
        target: Target,
        token: Arc<str>,
        ttl: Duration,
        acquired_at: Instant,
        valid_until: Instant,
        attempts: u32,
    ) -> Self {
        Lock {
            shared,
            target,
            token,
            ttl,
            acquired_at,
            valid_until,
            attempts,
            released: AtomicBool::new(false),
            fence: None,
            unsent: None,
        }
    }

    /// The resource names, without key prefix.
    pub fn resources(&self) -> &[String] {
        &self.target.names
    }

    /// The Redis keys (prefix included).
    pub fn keys(&self) -> &[String] {
        &self.target.keys
    }

    /// The random token stored under every key.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The TTL of the last acquire or extend.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// When the successful acquire attempt started, on the runtime's
    /// monotonic clock. Extensions do not change it.
    pub fn acquired_at(&self) -> Instant {
        self.acquired_at
    }

    /// The lock is safe to rely on strictly before this instant (runtime's
    /// monotonic clock): `start + ttl - drift`.
    pub fn valid_until(&self) -> Instant {
        self.valid_until
    }

    /// Time left before [`valid_until`](Lock::valid_until); zero once passed
    /// and once the lock was released.
    pub fn remaining(&self) -> Duration {
        if self.released.load(Ordering::Acquire) {
            return Duration::ZERO;
        }
        self.valid_until
            .saturating_duration_since(self.shared.runtime.now())
    }

    /// Whether the validity time has passed or the lock was released.
    pub fn is_expired(&self) -> bool {
        self.released.load(Ordering::Acquire) || self.shared.runtime.now() >= self.valid_until
    }

    /// The fencing token, for locks taken with
    /// [`LockOptions::fenced`](crate::LockOptions::fenced): strictly greater than any earlier holder's
    /// (see [`fence`](crate::fence) for the guarantee).
    ///
    /// ```
    /// # async fn demo(redlock: redlock_core::Redlock) -> Result<(), redlock_core::LockError> {
    /// use std::time::Duration;
    /// use redlock_core::LockOptions;
    ///
    /// let lock = redlock
    ///     .acquire(&LockOptions::new("ledger", Duration::from_secs(5)).fenced(true))
    ///     .await?;
    /// if let Some(fence) = lock.fence() {
    ///     // Send `fence` with every write; the storage rejects any number
    ///     // below the highest it has seen.
    /// #   let _ = fence;
    /// }
    /// lock.unlock().await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn fence(&self) -> Option<u64> {
        self.fence
    }

    /// Attempts it took to acquire. Retry delays spent queued behind other
    /// calls of this process for the same resources count as attempts.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Releases the lock on every node. See [`Redlock::unlock`](crate::Redlock::unlock).
    ///
    /// ```
    /// # async fn demo(redlock: redlock_core::Redlock) -> Result<(), redlock_core::LockError> {
    /// use std::time::Duration;
    ///
    /// let lock = redlock.lock("job", Duration::from_secs(10)).await?;
    /// // ... work ...
    /// lock.unlock().await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn unlock(self) -> Result<(), LockError> {
        self.release().await
    }

    /// Releases on every node; marks the lock released once a quorum
    /// answered.
    pub(crate) async fn release(&self) -> Result<(), LockError> {
        if self.released.load(Ordering::Acquire) {
            return Err(LockError::Released);
        }
        let span = tracing::debug_span!("redlock.release", resources = ?self.target.names);
        release_lock(
            &self.shared,
            &self.target,
            &self.token,
            self.ttl,
            self.unsent.as_deref().unwrap_or(&[]),
        )
        .instrument(span)
        .await?;
        self.released.store(true, Ordering::Release);
        Ok(())
    }

    /// Keeps the keys until their TTL runs out: the lock is not released on
    /// drop. For handing a lock over to a process that outlives this one.
    pub fn leave_to_ttl(self) {
        self.released.store(true, Ordering::Release);
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        if !self.released.load(Ordering::Acquire) {
            spawn_release(
                &self.shared,
                self.target.keys.clone(),
                self.token.clone(),
                self.ttl,
                self.unsent.clone(),
            );
        }
    }
}
