//! How far a lock write must travel before a node counts it as a vote:
//! [`Durability`].
//!
//! A node that is a replicated deployment (a Sentinel-managed master, a
//! Redis Cluster shard, a standalone master with replicas) acknowledges a
//! `SET NX PX` as soon as the master has it. Replication is asynchronous:
//! if the master fails before its replicas received the write, the replica
//! promoted in its place has never seen the key, and a second client can
//! take the lock while the first still holds it.
//!
//! [`Durability::replicas`] makes such a node follow every acquire and
//! extend with `WAIT count timeout` on the same connection. A write that
//! does not reach `count` replicas within `timeout` is a failed vote
//! ([`NodeError::NotReplicated`](crate::NodeError::NotReplicated)); the
//! core then releases what the acquire took, as for any failed vote. The
//! cost is one more command per pipeline and the replication round trip
//! on every acquire and extend.
//!
//! `WAIT` narrows the window; it does not close it. A replica that
//! acknowledged can still lose the write (no persistence, restarted before
//! promotion), and Sentinel or Cluster may promote a replica that did not
//! acknowledge (one that lagged, when another acknowledged). `WAIT` is not
//! strong consistency.

use std::time::Duration;

/// What a node waits for after an acquire or extend before it answers.
///
/// ```
/// use std::time::Duration;
/// use redlock_core::Durability;
///
/// let d = Durability::replicas(1, Duration::from_millis(50))?;
/// assert_eq!(d.replica_wait(), Some((1, Duration::from_millis(50))));
/// assert!(Durability::replicas(0, Duration::from_millis(50)).is_err());
/// # Ok::<(), redlock_core::DurabilityError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Durability {
    /// The master's acknowledgement is enough (the default; what Redlock
    /// over independent masters assumes).
    #[default]
    Master,
    /// After each acquire and extend, `WAIT count timeout`: the vote
    /// counts only when at least `count` replicas acknowledged the write
    /// within `timeout`. Made with [`Durability::replicas`], which checks
    /// the values.
    #[non_exhaustive]
    Replicas {
        /// Replicas that must acknowledge (at least 1).
        count: u32,
        /// How long the server waits for them (above zero; rounded up to
        /// whole milliseconds).
        timeout: Duration,
    },
}

/// Why a [`Durability`] was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DurabilityError {
    /// A replica count of zero: `WAIT 0` returns at once and proves
    /// nothing.
    #[error("replica count is 0: WAIT for 0 replicas proves nothing; give 1 or more, or use Durability::Master")]
    NoReplicas,
    /// A zero timeout: `WAIT n 0` blocks until the replicas answer, however
    /// long.
    #[error("replica wait timeout is zero: WAIT with 0 blocks forever; give a timeout small next to the ttl, such as 50ms")]
    ZeroTimeout,
    /// The replica wait would use up the lock's validity: a lock with this
    /// TTL could expire before the wait ended.
    #[error("replica wait timeout {timeout:?} is not below the validity {validity:?} of the ttl {ttl:?}: use a longer ttl or a shorter wait, small next to the ttl")]
    TimeoutNotBelowTtl {
        /// The replica wait timeout.
        timeout: Duration,
        /// The lock's TTL.
        ttl: Duration,
        /// The TTL less the clock-drift allowance.
        validity: Duration,
    },
}

impl Durability {
    /// Wait for `count` replicas, at most `timeout`, after every acquire
    /// and extend. A `count` of zero and a zero `timeout` are refused.
    pub fn replicas(count: u32, timeout: Duration) -> Result<Self, DurabilityError> {
        if count == 0 {
            return Err(DurabilityError::NoReplicas);
        }
        if timeout.is_zero() {
            return Err(DurabilityError::ZeroTimeout);
        }
        Ok(Durability::Replicas { count, timeout })
    }

    /// The replicas to wait for and the timeout, or `None` for
    /// [`Durability::Master`].
    pub fn replica_wait(&self) -> Option<(u32, Duration)> {
        match *self {
            Durability::Master => None,
            Durability::Replicas { count, timeout } => Some((count, timeout)),
        }
    }

    /// Checks the wait against a lock's TTL and drift allowance: the wait
    /// must end before the validity (`ttl - drift`) does.
    pub fn check_ttl(&self, ttl: Duration, drift: Duration) -> Result<(), DurabilityError> {
        let Some((_, timeout)) = self.replica_wait() else {
            return Ok(());
        };
        let validity = ttl.saturating_sub(drift);
        if timeout >= validity {
            return Err(DurabilityError::TimeoutNotBelowTtl {
                timeout,
                ttl,
                validity,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_checked() {
        let ms = Duration::from_millis;
        assert_eq!(
            Durability::replicas(0, ms(10)),
            Err(DurabilityError::NoReplicas)
        );
        assert_eq!(
            Durability::replicas(1, Duration::ZERO),
            Err(DurabilityError::ZeroTimeout)
        );
        let d = Durability::replicas(2, ms(10)).expect("valid");
        assert_eq!(d.replica_wait(), Some((2, ms(10))));
        assert_eq!(Durability::default().replica_wait(), None);
        assert!(d.check_ttl(ms(100), ms(3)).is_ok());
        let err = d
            .check_ttl(ms(12), ms(2))
            .expect_err("wait uses up the validity");
        assert_eq!(
            err,
            DurabilityError::TimeoutNotBelowTtl {
                timeout: ms(10),
                ttl: ms(12),
                validity: ms(10)
            }
        );
        assert!(err.to_string().contains("shorter wait"), "{err}");
        assert!(Durability::Master.check_ttl(ms(1), ms(2)).is_ok());
    }
}
