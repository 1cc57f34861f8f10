//! Errors that tell the cause apart, each with a bounded summary of the last
//! attempt.

use std::fmt;
use std::time::Duration;

use crate::node::NodeError;

/// A request that was not accepted as given; the message says what to fix.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidArgument {
    /// No node was given to [`Redlock::new`](crate::Redlock::new).
    #[error("no nodes: give at least one Redis node (an odd number such as 3 or 5 is best)")]
    NoNodes,
    /// The same server is listed twice (after normalising host, port and
    /// database): its vote would count twice, and no owner could ever hold
    /// a quorum of distinct servers.
    #[error("node {second} is the same server as node {first}: list every Redis server once (a different database number or user on one server does not make an independent node)")]
    DuplicateNode {
        /// The id of the first entry.
        first: String,
        /// The id of the later entry naming the same server.
        second: String,
    },
    /// A resource name, with the key prefix, is longer than
    /// [`MAX_KEY_BYTES`](crate::MAX_KEY_BYTES).
    #[error("resource name at position {index} is {len} bytes with its key prefix, above the maximum of {max} bytes: use a shorter name, for example a hash of it")]
    ResourceTooLong {
        /// Position of the resource in the list.
        index: usize,
        /// Its length in bytes, key prefix included.
        len: usize,
        /// The largest length accepted.
        max: usize,
    },
    /// The resource list is empty.
    #[error("no resources: name at least one resource to lock")]
    NoResources,
    /// A resource name is empty.
    #[error("empty resource name at position {0}: every resource needs a non-empty name")]
    EmptyResource(usize),
    /// The TTL is zero.
    #[error("ttl is zero: give the lock a time to live such as 10s")]
    ZeroTtl,
    /// The TTL does not exceed the clock-drift allowance, so no validity is left.
    #[error("ttl {ttl:?} is not above the clock-drift allowance {drift:?}: use a longer ttl")]
    TtlTooSmall {
        /// The TTL asked for.
        ttl: Duration,
        /// The drift allowance for that TTL.
        drift: Duration,
    },
    /// The TTL is above what Redis accepts for `PX` / `PEXPIRE`.
    #[error("ttl {ttl:?} is above the maximum {max:?} that Redis accepts")]
    TtlTooLarge {
        /// The TTL asked for.
        ttl: Duration,
        /// The largest TTL accepted.
        max: Duration,
    },
    /// The drift factor is outside `[0, 1)` or not a number.
    #[error("drift factor {0} is outside [0, 1): the default 0.01 suits most setups")]
    DriftFactor(f64),
    /// A negative retry count other than -1.
    #[error("retry count {0} is invalid: use -1 for forever, 0 for one try, or a positive count")]
    RetryCount(i64),
    /// Unlimited retries with neither delay nor jitter would spin.
    #[error("unlimited retries need a retry delay or jitter above zero, or a deadline")]
    BusyRetry,
    /// A scoped lock's extension threshold is not below its TTL: it would
    /// extend without pause.
    #[error("extend_when_remaining {threshold:?} is not below the ttl {ttl:?}: extend when a part of the ttl is left, such as a third")]
    ExtendThreshold {
        /// The threshold asked for.
        threshold: Duration,
        /// The lock's TTL.
        ttl: Duration,
    },
    /// A zero per-node timeout.
    #[error("node timeout is zero: use a timeout small next to the ttl, such as 50ms")]
    ZeroNodeTimeout,
    /// No runtime was given and the `tokio` feature is off.
    #[error("no runtime: enable the `tokio` feature of redlock-core or set Options::runtime")]
    NoRuntime,
    /// The token given does not belong to this lock (empty or malformed).
    #[error("invalid token: {0}")]
    Token(&'static str),
    /// A node's backlog limit (see [`Backlog`](crate::backlog::Backlog)) is
    /// zero or absurdly large.
    #[error("backlog limit {limit} is invalid: give between 1 and {max} outstanding requests per node (default 1024)")]
    Backlog {
        /// The limit asked for.
        limit: usize,
        /// The largest limit accepted.
        max: usize,
    },
    /// A node's [`Durability`](crate::Durability) is invalid, or its
    /// replica wait does not fit the lock's TTL.
    #[error("durability: {0}")]
    Durability(#[from] crate::durability::DurabilityError),
}

/// Which operation a [`Failure`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Operation {
    /// Taking a lock.
    Acquire,
    /// Extending a lock.
    Extend,
    /// Releasing a lock.
    Release,
    /// Reading keys.
    Inspect,
    /// Reading or raising fencing counters.
    Fence,
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Operation::Acquire => "acquire",
            Operation::Extend => "extend",
            Operation::Release => "release",
            Operation::Inspect => "inspect",
            Operation::Fence => "fence",
        })
    }
}

/// What one node did in an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NodeOutcome {
    /// The node set every key to our token.
    Acquired,
    /// Someone else holds a key on this node.
    Held,
    /// The node extended every key.
    Extended,
    /// A key on this node is gone or not ours.
    NotHeld,
    /// The node deleted this many keys.
    Released(u64),
    /// The node answered an inspect request.
    Inspected,
    /// The node's fencing counter (largest before any write).
    Counter(u64),
    /// The node failed.
    Error(NodeError),
    /// The node did not answer within the per-node timeout.
    TimedOut,
    /// The node had not answered an earlier request within the per-node
    /// timeout and had not answered since, so the round was decided without
    /// waiting for it. (The request was still sent; the node is used again
    /// as soon as it answers anything.)
    Unresponsive,
    /// The attempt was decided before this node answered.
    Undecided,
}

impl fmt::Display for NodeOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeOutcome::Acquired => f.write_str("acquired"),
            NodeOutcome::Held => f.write_str("held by another"),
            NodeOutcome::Extended => f.write_str("extended"),
            NodeOutcome::NotHeld => f.write_str("not held"),
            NodeOutcome::Released(n) => write!(f, "released {n}"),
            NodeOutcome::Inspected => f.write_str("inspected"),
            NodeOutcome::Counter(n) => write!(f, "counter {n}"),
            NodeOutcome::Error(e) => write!(f, "error: {e}"),
            NodeOutcome::TimedOut => f.write_str("timed out"),
            NodeOutcome::Unresponsive => f.write_str("unresponsive (not waited for)"),
            NodeOutcome::Undecided => f.write_str("undecided"),
        }
    }
}

/// One node's line in a [`Failure`] summary.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NodeReport {
    /// The node's [`id`](crate::Node::id).
    pub node: String,
    /// What it did.
    pub outcome: NodeOutcome,
}

/// The bounded summary carried by every failure: the operation, the
/// resources, how many attempts were made and what each node did in the last
/// one. Its size depends on the number of nodes, never on the number of
/// retries.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Failure {
    /// The operation that failed.
    pub operation: Operation,
    /// The resources asked for (without key prefix).
    pub resources: Vec<String>,
    /// Attempts made, the last included.
    pub attempts: u32,
    /// Quorum needed.
    pub quorum: usize,
    /// Per node, what happened in the last attempt.
    pub nodes: Vec<NodeReport>,
}

impl Failure {
    /// How many nodes ended the last attempt with `pred` true.
    pub fn count(&self, pred: impl Fn(&NodeOutcome) -> bool) -> usize {
        self.nodes.iter().filter(|r| pred(&r.outcome)).count()
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} of {:?} after {} attempt{} (quorum {} of {}): ",
            self.operation,
            self.resources,
            self.attempts,
            if self.attempts == 1 { "" } else { "s" },
            self.quorum,
            self.nodes.len()
        )?;
        for (i, r) in self.nodes.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{} {}", r.node, r.outcome)?;
        }
        Ok(())
    }
}

/// Why a lock operation failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum LockError {
    /// Another owner holds the resource on enough nodes that no quorum was
    /// possible. Retrying later may succeed.
    #[error("resource is held by another owner: {0}")]
    Conflict(Box<Failure>),
    /// Too many nodes failed or timed out to reach a quorum: an
    /// infrastructure problem, not contention.
    #[error("could not reach a quorum of nodes: {0}")]
    NoQuorum(Box<Failure>),
    /// So many nodes refused the credentials or permissions
    /// ([`NodeError::Auth`]) that no quorum is possible: a configuration
    /// error. It is never retried; fix the user, password or ACL rules.
    #[error("nodes refused the credentials or permissions, so no quorum is possible (fix the configuration; not retried): {0}")]
    Config(Box<Failure>),
    /// A quorum was reached but the validity time ran out first (slow nodes
    /// or a TTL too short for the network).
    #[error("validity time used up before a quorum answered: {0}")]
    ValidityExpired(Box<Failure>),
    /// The lock is no longer ours on a quorum of nodes (extend found the keys
    /// gone or taken), or its validity had already passed.
    #[error("lock is no longer held: {0}")]
    Lost(Box<Failure>),
    /// The overall deadline of the retry policy passed.
    #[error("deadline exceeded: {0}")]
    DeadlineExceeded(Box<Failure>),
    /// The arguments were invalid.
    #[error(transparent)]
    InvalidArgument(#[from] InvalidArgument),
    /// The lock was already released.
    #[error("lock was already released")]
    Released,
}

impl LockError {
    /// The summary of the last attempt, when the error has one.
    pub fn failure(&self) -> Option<&Failure> {
        match self {
            LockError::Conflict(f)
            | LockError::NoQuorum(f)
            | LockError::Config(f)
            | LockError::ValidityExpired(f)
            | LockError::Lost(f)
            | LockError::DeadlineExceeded(f) => Some(f),
            LockError::InvalidArgument(_) | LockError::Released => None,
        }
    }

    /// True when a quorum was impossible because nodes refused the
    /// credentials or permissions ([`LockError::Config`]).
    pub fn is_config(&self) -> bool {
        matches!(self, LockError::Config(_))
    }

    /// True when the resource was held by someone else (a retry may help).
    pub fn is_conflict(&self) -> bool {
        matches!(self, LockError::Conflict(_))
    }
}
