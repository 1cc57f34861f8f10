//! The seam between the algorithm and a Redis client: the [`Node`] trait.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;

use crate::durability::Durability;
use crate::runtime::BoxFuture;

/// What one node answered to an acquire request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acquire {
    /// Every key of the request now holds our token with the requested TTL.
    Acquired,
    /// At least one key is held by someone else; the node took none of them.
    Held,
}

/// What one node answered to an extend request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extend {
    /// Every key still held our token and now has the new TTL.
    Extended,
    /// At least one key is gone or holds another token; the node changed nothing.
    NotHeld,
}

/// The state of one key on one node, as returned by [`Node::inspect`].
/// Built with [`KeyState::new`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyState {
    /// The key that was asked about (prefix included).
    pub key: String,
    /// The token stored under the key, or `None` when the key does not exist.
    pub holder: Option<String>,
    /// Remaining time to live, or `None` when the key does not exist or has
    /// no expiry.
    pub ttl: Option<Duration>,
}

/// An error from one node. It never contains a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The node could not be reached or the connection broke.
    #[error("connection to node failed: {0}")]
    Connection(String),
    /// The server answered with an error reply.
    #[error("server replied with an error: {0}")]
    Server(String),
    /// The server answered something the scripts never return.
    #[error("unexpected reply from server: {0}")]
    Protocol(String),
    /// The operation is not supported by this node implementation.
    #[error("operation not supported by this node: {0}")]
    Unsupported(&'static str),
    /// The node has been closed with [`Node::quit`].
    #[error("node is closed")]
    Closed,
    /// The request was **not sent**: this many requests to the node are
    /// still unanswered, which is its [`Backlog`](crate::backlog::Backlog)
    /// limit. The node has stopped draining (paused, or its link is
    /// black-holed); it counts as a "no" until it answers again.
    #[error("backlog full: node not answering ({0} requests outstanding); request not sent")]
    Backlog(usize),
    /// The request was **not sent**: no connection to the node could be
    /// made.
    #[error("not connected, request not sent: {0}")]
    NotConnected(String),
    /// The server refused the client's credentials or permissions
    /// (`WRONGPASS`, `NOAUTH`, `NOPERM`): a configuration error that no
    /// retry can fix. The text names what the server said, never a
    /// password. The request counts as sent.
    #[error("authentication or permission refused by the server (check the user, password and ACL rules): {0}")]
    Auth(String),
    /// The write ran on the master, but fewer replicas than the node's
    /// [`Durability`] requires acknowledged it within the wait timeout
    /// (`WAIT`). The vote counts as failed; the request counts as sent, so
    /// the core releases what an acquire took.
    #[error("write reached {reached} of {required} required replicas within the wait timeout: counted as a failed vote")]
    NotReplicated {
        /// Replicas the node's durability requires.
        required: u32,
        /// Replicas that acknowledged in time.
        reached: u64,
    },
}

impl KeyState {
    /// The state of `key`: its `holder` token (`None`: the key does not
    /// exist) and remaining `ttl` (`None`: no key, or no expiry).
    ///
    /// ```
    /// use std::time::Duration;
    /// use redlock_core::KeyState;
    ///
    /// let held = KeyState::new("job", Some("token".into()), Some(Duration::from_secs(3)));
    /// assert_eq!(held.holder.as_deref(), Some("token"));
    /// let free = KeyState::new("job", None, None);
    /// assert_eq!(free.key, "job");
    /// ```
    pub fn new(key: impl Into<String>, holder: Option<String>, ttl: Option<Duration>) -> Self {
        KeyState {
            key: key.into(),
            holder,
            ttl,
        }
    }
}

impl NodeError {
    /// Whether this is a configuration error of the node (credentials or
    /// permissions) rather than an outage: [`Auth`](Self::Auth).
    pub fn is_config(&self) -> bool {
        matches!(self, NodeError::Auth(_))
    }

    /// Whether the request may have taken effect on the server. `false`
    /// only when it certainly did not: it was never sent
    /// ([`Backlog`](Self::Backlog), [`NotConnected`](Self::NotConnected),
    /// [`Closed`](Self::Closed), [`Unsupported`](Self::Unsupported)), or
    /// the server refused it before running it ([`Auth`](Self::Auth):
    /// credentials or permissions). An acquire that took no effect took
    /// nothing, so the core sends that node no release for it.
    pub fn was_sent(&self) -> bool {
        !matches!(
            self,
            NodeError::Backlog(_)
                | NodeError::NotConnected(_)
                | NodeError::Closed
                | NodeError::Unsupported(_)
                | NodeError::Auth(_)
        )
    }
}

/// One Redlock node: an independent Redis master, or one whole Redis Cluster
/// or Sentinel deployment, seen through a client.
///
/// The trait speaks in lock terms rather than Redis commands, so any client
/// can be plugged in. The algorithm (quorum, validity, retries, timeouts)
/// lives in [`Redlock`](crate::Redlock); a `Node` only carries out single
/// requests.
///
/// # Contract for implementors
///
/// The conformance suite in `redlock-testkit` checks these points; every
/// adapter runs it.
///
/// 1. **Atomic.** Each call is one atomic script on the server (see
///    [`Scripts`](crate::Scripts)), sent with EVALSHA and falling back to
///    EVAL (or reloading) on `NOSCRIPT`. `acquire` and `extend` are
///    all-or-nothing over the keys of one call.
/// 2. **Ordered, also when dropped.** The core races every request against a
///    per-node timeout and decides as soon as a quorum is known, so it drops
///    futures that are still in flight and then sends a release to the same
///    node. Once a returned future has been polled once, its request must be
///    committed to this node's order: dropping the future must neither cancel
///    a request already handed to the connection nor let a later request
///    (the release) reach the server before it. A multiplexed connection, or
///    a queue that is fed when the call is made and drained in order, gives
///    this. A bounded queue that a dropped future leaves early does not.
/// 3. **No hidden retries.** A lock command is sent at most once. A retried
///    `SET` that lands after the release would leave a stale key behind.
/// 4. **No unbounded blocking.** Timeouts are the core's job, but a call must
///    not hold resources forever either: a node that does not answer must not
///    block requests to other nodes.
/// 5. **Cluster keys.** On Redis Cluster, keys of one call that live in
///    different hash slots are split by slot; a conflict on one slot releases
///    what the others took. A `CROSSSLOT` error never surfaces.
/// 6. **No secrets.** [`Node::id`], `Debug` and every [`NodeError`] are free
///    of passwords.
#[async_trait]
pub trait Node: Send + Sync + fmt::Debug {
    /// A name for logs and error summaries: the address, never a password.
    fn id(&self) -> &str;

    /// Sets every key to `token` with `ttl`, if and only if none of the keys
    /// exists.
    async fn acquire(
        &self,
        keys: &[String],
        token: &str,
        ttl: Duration,
    ) -> Result<Acquire, NodeError>;

    /// Deletes every key that still holds `token`; returns how many it
    /// deleted. Zero is not an error: the keys may have expired.
    async fn release(&self, keys: &[String], token: &str) -> Result<u64, NodeError>;

    /// Sets the TTL of every key to `ttl`, if and only if every key still
    /// holds `token`. Never creates a key.
    async fn extend(
        &self,
        keys: &[String],
        token: &str,
        ttl: Duration,
    ) -> Result<Extend, NodeError>;

    /// Reads the holder token and remaining TTL of every key, in order.
    async fn inspect(&self, keys: &[String]) -> Result<Vec<KeyState>, NodeError>;

    /// Fencing counters: for every key (a counter key, not a lock key), reads
    /// the counter (missing = 0); when `floor` is above the largest value
    /// read, sets every counter to `floor`. Returns the largest value before
    /// the write. Counters never expire. Runs [`Scripts::fence`](crate::Scripts::fence).
    ///
    /// The default reports [`NodeError::Unsupported`]; then fenced locks are
    /// unavailable on this node.
    async fn fence(&self, keys: &[String], floor: u64) -> Result<u64, NodeError> {
        let _ = (keys, floor);
        Err(NodeError::Unsupported("fence"))
    }

    /// Wake-on-release: registers interest in releases of any of `keys`
    /// (prefixed keys, as passed to [`release`](Node::release)) and returns
    /// a future that completes once this node announced such a release
    /// after this call. The built-in release script announces on
    /// [`release_channel`](crate::scripts::release_channel) (Redis pub/sub).
    ///
    /// A waiting [`Redlock::lock`](crate::Redlock::lock) arms a watch before
    /// each retry attempt and waits for whichever comes first: its retry
    /// delay or any node's watch. So a watch is best effort by design:
    ///
    /// - it may **never complete** (a lost message, a broken subscription,
    ///   a node that cannot subscribe): the waiter then retries after its
    ///   delay, exactly as without a watch;
    /// - it may **complete spuriously** (a release that happened just
    ///   before the watch was registered, or one by a contender that held
    ///   only a minority): the waiter just tries once more.
    ///
    /// Registration must not block: return at once and subscribe in the
    /// background. Dropping the future withdraws the interest; implementors
    /// should unsubscribe once no watch is left for a key.
    ///
    /// The default returns `None`: this node does not announce releases and
    /// waiters poll with their retry delay.
    fn watch_release(&self, keys: &[String]) -> Option<BoxFuture<'static, ()>> {
        let _ = keys;
        None
    }

    /// Requests admitted to this node and not answered yet, when the node
    /// keeps count (see [`Backlog`](crate::backlog::Backlog)); `None`
    /// otherwise. Under a stalled node it stays at or below the backlog
    /// limit (plus releases of what was admitted before).
    fn outstanding(&self) -> Option<usize> {
        None
    }

    /// What this node waits for after an acquire or extend before it
    /// answers (see [`Durability`]). The core checks a lock's TTL against
    /// it: the replica wait must end before the lock's validity does. The
    /// default is [`Durability::Master`].
    fn durability(&self) -> Durability {
        Durability::Master
    }

    /// Sends what is still owed (releases in flight), then closes the
    /// node's connections. Later calls fail with [`NodeError::Closed`]. The
    /// default does nothing.
    async fn quit(&self) -> Result<(), NodeError> {
        Ok(())
    }
}

/// Converts a TTL to whole milliseconds for Redis' `PX`, rounding up so that a
/// sub-millisecond TTL never becomes zero.
pub fn ttl_millis(ttl: Duration) -> u64 {
    let ms = ttl.as_millis();
    let ms = if Duration::from_millis(ms as u64) < ttl {
        ms + 1
    } else {
        ms
    };
    u64::try_from(ms).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_millis_rounds_up() {
        assert_eq!(ttl_millis(Duration::from_millis(10)), 10);
        assert_eq!(ttl_millis(Duration::from_micros(10_001)), 11);
        assert_eq!(ttl_millis(Duration::from_nanos(1)), 1);
    }
}
