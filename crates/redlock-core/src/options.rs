//! Configuration: [`Options`] for a [`Redlock`](crate::Redlock), the
//! [`LockOptions`] of one lock call and the [`RetryPolicy`] it retries by.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;

use crate::error::{InvalidArgument, Operation};
use crate::node::NodeError;
use crate::resources::IntoResources;
use crate::runtime::Runtime;

/// How many times a lock call tries again after its first attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retries {
    /// At most this many retries; `Limited(0)` is exactly one attempt.
    Limited(u32),
    /// Retry until the lock is taken or the policy's deadline passes.
    Forever,
}

impl Retries {
    /// node-redlock's `retryCount`: `-1` is forever, `0` one try, `n` is `n`
    /// retries after the first attempt.
    pub fn from_count(count: i64) -> Result<Self, InvalidArgument> {
        match count {
            -1 => Ok(Retries::Forever),
            n if n >= 0 => Ok(Retries::Limited(u32::try_from(n).unwrap_or(u32::MAX))),
            n => Err(InvalidArgument::RetryCount(n)),
        }
    }
}

/// When and how often a lock call tries again.
///
/// ```
/// use std::time::Duration;
/// use redlock_core::{Retries, RetryPolicy};
///
/// let wait_a_minute = RetryPolicy::default()
///     .retries(Retries::Forever)
///     .deadline(Duration::from_secs(60));
/// assert_eq!(wait_a_minute.deadline, Some(Duration::from_secs(60)));
/// assert_eq!(RetryPolicy::once().retries, Retries::Limited(0));
/// ```
///
/// The fields are public to read; a policy is built from
/// [`RetryPolicy::default`] or [`RetryPolicy::once`] and the setters below,
/// so that fields added later do not break callers:
///
/// ```compile_fail
/// use std::time::Duration;
/// use redlock_core::{Retries, RetryPolicy};
///
/// // A struct literal does not compile outside the crate.
/// let _ = RetryPolicy {
///     retries: Retries::Forever,
///     delay: Duration::ZERO,
///     jitter: Duration::ZERO,
///     deadline: None,
/// };
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
#[must_use]
pub struct RetryPolicy {
    /// How many retries after the first attempt (default 10).
    pub retries: Retries,
    /// Base delay between attempts (default 200 ms).
    pub delay: Duration,
    /// Up to this much is added at random to each delay (default 200 ms).
    pub jitter: Duration,
    /// No new attempt starts after this much time since the call began.
    pub deadline: Option<Duration>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            retries: Retries::Limited(10),
            delay: Duration::from_millis(200),
            jitter: Duration::from_millis(200),
            deadline: None,
        }
    }
}

impl RetryPolicy {
    /// Exactly one attempt: "is it free right now?".
    pub fn once() -> Self {
        RetryPolicy {
            retries: Retries::Limited(0),
            ..RetryPolicy::default()
        }
    }

    /// Sets how many retries follow the first attempt.
    pub fn retries(mut self, retries: Retries) -> Self {
        self.retries = retries;
        self
    }

    /// Sets the base delay between attempts.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Sets the most that is added at random to each delay.
    pub fn jitter(mut self, jitter: Duration) -> Self {
        self.jitter = jitter;
        self
    }

    /// Sets (or, with `None`, clears) the time after which no new attempt
    /// starts, counted from the start of the call.
    pub fn deadline(mut self, deadline: impl Into<Option<Duration>>) -> Self {
        self.deadline = deadline.into();
        self
    }

    /// Whether another attempt may follow attempt number `attempts` (1-based).
    pub(crate) fn may_retry(&self, attempts: u32) -> bool {
        match self.retries {
            Retries::Forever => true,
            Retries::Limited(n) => attempts <= n,
        }
    }

    /// The pause before the next attempt: `delay + uniform(0..=jitter)`.
    pub(crate) fn next_delay(&self) -> Duration {
        if self.jitter.is_zero() {
            return self.delay;
        }
        let jitter_us = u64::try_from(self.jitter.as_micros()).unwrap_or(u64::MAX);
        let extra = rand::rng().random_range(0..=jitter_us);
        self.delay.saturating_add(Duration::from_micros(extra))
    }

    pub(crate) fn validate(&self) -> Result<(), InvalidArgument> {
        if self.retries == Retries::Forever
            && self.delay.is_zero()
            && self.jitter.is_zero()
            && self.deadline.is_none()
        {
            return Err(InvalidArgument::BusyRetry);
        }
        Ok(())
    }
}

/// A per-node failure that [`Options::on_node_error`] hears about
/// (node-redlock's `clientError` event).
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct NodeErrorEvent<'a> {
    /// The node's id (address without password).
    pub node: &'a str,
    /// The operation it failed.
    pub operation: Operation,
    /// The resources concerned (without prefix).
    pub resources: &'a [String],
    /// The error, or `None` when the node timed out.
    pub error: Option<&'a NodeError>,
}

impl fmt::Display for NodeErrorEvent<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.error {
            Some(e) => write!(f, "{} on {} failed: {e}", self.operation, self.node),
            None => write!(f, "{} on {} timed out", self.operation, self.node),
        }
    }
}

/// The hook type behind [`Options::on_node_error`].
pub type NodeErrorHook = Arc<dyn Fn(&NodeErrorEvent<'_>) + Send + Sync>;

/// Settings of a [`Redlock`](crate::Redlock), built fluently.
///
/// Defaults follow node-redlock: drift factor 0.01, 10 retries, 200 ms delay,
/// 200 ms jitter.
///
/// ```
/// use std::time::Duration;
/// use redlock_core::Options;
///
/// let options = Options::new()
///     .retry_count(-1)
///     .retry_delay(Duration::from_millis(50))
///     .retry_jitter(Duration::from_millis(50))
///     .key_prefix("locks:")
///     .on_node_error(|event| eprintln!("{event}"));
/// # let _ = options;
/// ```
#[derive(Clone)]
#[must_use = "options do nothing until given to Redlock::new"]
pub struct Options {
    pub(crate) drift_factor: f64,
    pub(crate) retry: RetryPolicy,
    pub(crate) retry_count_error: Option<InvalidArgument>,
    pub(crate) node_timeout: Option<Duration>,
    pub(crate) key_prefix: String,
    pub(crate) on_node_error: Option<NodeErrorHook>,
    pub(crate) runtime: Option<Arc<dyn Runtime>>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            drift_factor: 0.01,
            retry: RetryPolicy::default(),
            retry_count_error: None,
            node_timeout: None,
            key_prefix: String::new(),
            on_node_error: None,
            runtime: None,
        }
    }
}

impl fmt::Debug for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Options")
            .field("drift_factor", &self.drift_factor)
            .field("retry", &self.retry)
            .field("node_timeout", &self.node_timeout)
            .field("key_prefix", &self.key_prefix)
            .field("on_node_error", &self.on_node_error.is_some())
            .field("runtime", &self.runtime)
            .finish()
    }
}

impl Options {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Expected clock drift as a fraction of the TTL, in `[0, 1)` (0.01).
    pub fn drift_factor(mut self, factor: f64) -> Self {
        self.drift_factor = factor;
        self
    }

    /// node-redlock's `retryCount`: `-1` retries forever, `0` tries once.
    /// Other negative values are reported by [`Redlock::new`](crate::Redlock::new).
    pub fn retry_count(mut self, count: i64) -> Self {
        match Retries::from_count(count) {
            Ok(r) => {
                self.retry.retries = r;
                self.retry_count_error = None;
            }
            Err(e) => self.retry_count_error = Some(e),
        }
        self
    }

    /// Retries after the first attempt.
    pub fn retries(mut self, retries: Retries) -> Self {
        self.retry.retries = retries;
        self.retry_count_error = None;
        self
    }

    /// Base delay between attempts (200 ms).
    pub fn retry_delay(mut self, delay: Duration) -> Self {
        self.retry.delay = delay;
        self
    }

    /// Maximum random addition to each delay (200 ms).
    pub fn retry_jitter(mut self, jitter: Duration) -> Self {
        self.retry.jitter = jitter;
        self
    }

    /// Stop starting new attempts this long after a lock call began.
    pub fn retry_deadline(mut self, deadline: Duration) -> Self {
        self.retry.deadline = Some(deadline);
        self
    }

    /// The whole retry policy at once.
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self.retry_count_error = None;
        self
    }

    /// A fixed per-node timeout. By default it is derived from the TTL:
    /// a tenth of it, between 2 ms and 1 s.
    pub fn node_timeout(mut self, timeout: Duration) -> Self {
        self.node_timeout = Some(timeout);
        self
    }

    /// A prefix put before every resource name to form the Redis key.
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    /// Called for every per-node error or timeout (node-redlock's
    /// `clientError`). Errors are also logged through `tracing`.
    pub fn on_node_error(
        mut self,
        hook: impl Fn(&NodeErrorEvent<'_>) + Send + Sync + 'static,
    ) -> Self {
        self.on_node_error = Some(Arc::new(hook));
        self
    }

    /// The runtime for clock, sleeps and background releases. Defaults to
    /// tokio when the `tokio` feature is on.
    pub fn runtime(mut self, runtime: impl Runtime) -> Self {
        self.runtime = Some(Arc::new(runtime));
        self
    }

    /// The retry policy lock calls use unless given one.
    pub fn retry(&self) -> &RetryPolicy {
        &self.retry
    }
}

/// What to lock and how: the one value every lock call takes
/// ([`Redlock::acquire`](crate::Redlock::acquire),
/// [`Redlock::scoped`](crate::Redlock::scoped), [`Lock::hold`](crate::Lock::hold)).
///
/// The resources and the TTL are required; everything else has a default:
/// the Redlock's retry policy, no fencing token, and for scoped locks an
/// extension when a third of the TTL is left, the future cancelled when the
/// lock is lost, no cap on extensions or hold time. The values are checked
/// when the call is made; a bad one is an
/// [`InvalidArgument`] that says what to fix, and nothing is sent.
///
/// ```
/// use std::time::Duration;
/// use redlock_core::{LockOptions, RetryPolicy};
///
/// let export = LockOptions::new("nightly-export", Duration::from_secs(30))
///     .retry(RetryPolicy::once())
///     .fenced(true)
///     .extend_when_remaining(Duration::from_secs(10))
///     .max_hold(Duration::from_secs(600))
///     .cancel_on_loss(false);
/// assert_eq!(export.resources(), ["nightly-export"]);
/// assert_eq!(export.ttl(), Duration::from_secs(30));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "options do nothing until given to a lock call"]
pub struct LockOptions {
    pub(crate) resources: Vec<String>,
    pub(crate) ttl: Duration,
    pub(crate) retry: Option<RetryPolicy>,
    pub(crate) fenced: bool,
    pub(crate) extend_when_remaining: Option<Duration>,
    pub(crate) keep_on_loss: bool,
    pub(crate) max_extensions: Option<u32>,
    pub(crate) max_hold: Option<Duration>,
}

impl LockOptions {
    /// Lock `resources` (one name or several, all or nothing) for `ttl`.
    pub fn new(resources: impl IntoResources, ttl: Duration) -> Self {
        LockOptions {
            resources: resources.into_resources(),
            ttl,
            retry: None,
            fenced: false,
            extend_when_remaining: None,
            keep_on_loss: false,
            max_extensions: None,
            max_hold: None,
        }
    }

    /// The retry policy of this call (and of each extension of a scoped
    /// lock) instead of the Redlock's.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = Some(policy);
        self
    }

    /// Exactly one attempt: node-redlock's "is it locked?" (retry count 0).
    pub fn once(self) -> Self {
        self.retry(RetryPolicy::once())
    }

    /// Take a fencing token with the lock ([`Lock::fence`](crate::Lock::fence));
    /// see [`fence`](crate::fence) for the guarantee.
    pub fn fenced(mut self, fenced: bool) -> Self {
        self.fenced = fenced;
        self
    }

    /// Scoped locks: extend once the remaining validity drops below this
    /// (default: a third of the TTL). Must be below the TTL.
    pub fn extend_when_remaining(mut self, remaining: Duration) -> Self {
        self.extend_when_remaining = Some(remaining);
        self
    }

    /// Scoped locks: `true` (the default) drops the future at once when the
    /// lock is lost and returns [`LockError::Lost`](crate::LockError::Lost);
    /// `false` lets it run on and learn of the loss through
    /// [`Lease::lost`](crate::Lease::lost).
    pub fn cancel_on_loss(mut self, cancel: bool) -> Self {
        self.keep_on_loss = !cancel;
        self
    }

    /// Scoped locks: extend at most this many times; the lease then ends
    /// with its validity.
    pub fn max_extensions(mut self, n: u32) -> Self {
        self.max_extensions = Some(n);
        self
    }

    /// Scoped locks: start no extension after this long since acquisition;
    /// the lease then ends with its current validity.
    pub fn max_hold(mut self, hold: Duration) -> Self {
        self.max_hold = Some(hold);
        self
    }

    /// The resource names, as given.
    pub fn resources(&self) -> &[String] {
        &self.resources
    }

    /// The time to live of the lock.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The retry policy given for this call, if any.
    pub fn retry_policy(&self) -> Option<&RetryPolicy> {
        self.retry.as_ref()
    }

    /// Whether a fencing token is taken with the lock.
    pub fn is_fenced(&self) -> bool {
        self.fenced
    }

    /// Checks what a lock's TTL alone cannot: the retry policy and the
    /// extension threshold (the resources and the TTL are checked against
    /// the Redlock's key prefix and drift when the call is made).
    pub(crate) fn validate(&self) -> Result<(), InvalidArgument> {
        if let Some(policy) = &self.retry {
            policy.validate()?;
        }
        if let Some(threshold) = self.extend_when_remaining {
            if threshold >= self.ttl {
                return Err(InvalidArgument::ExtendThreshold {
                    threshold,
                    ttl: self.ttl,
                });
            }
        }
        Ok(())
    }
}

/// The largest TTL accepted: Redis adds it to the current Unix time in
/// milliseconds, which must stay below `i64::MAX`; half of that range leaves
/// room for any clock.
pub const MAX_TTL: Duration = Duration::from_millis((i64::MAX / 2) as u64);

/// The default per-node timeout for a TTL: a tenth of it, between 2 ms and 1 s.
pub fn default_node_timeout(ttl: Duration) -> Duration {
    (ttl / 10).clamp(Duration::from_millis(2), Duration::from_secs(1))
}

/// The clock-drift allowance for a TTL: `floor(ttl_ms * factor) + 2 ms`.
pub fn drift(ttl: Duration, factor: f64) -> Duration {
    let ms = ttl.as_millis() as f64 * factor;
    let floored = if ms.is_finite() && ms > 0.0 {
        ms.floor() as u64
    } else {
        0
    };
    Duration::from_millis(floored.saturating_add(2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drift_formula() {
        assert_eq!(
            drift(Duration::from_millis(1000), 0.01),
            Duration::from_millis(12)
        );
        assert_eq!(
            drift(Duration::from_millis(1099), 0.01),
            Duration::from_millis(12)
        );
        assert_eq!(
            drift(Duration::from_millis(10), 0.01),
            Duration::from_millis(2)
        );
        assert_eq!(
            drift(Duration::from_secs(30), 0.0),
            Duration::from_millis(2)
        );
    }

    #[test]
    fn retry_counts_map_like_node_redlock() {
        assert_eq!(Retries::from_count(-1), Ok(Retries::Forever));
        assert_eq!(Retries::from_count(0), Ok(Retries::Limited(0)));
        assert_eq!(Retries::from_count(3), Ok(Retries::Limited(3)));
        assert_eq!(
            Retries::from_count(-2),
            Err(InvalidArgument::RetryCount(-2))
        );
        let once = RetryPolicy::once();
        assert!(!once.may_retry(1));
        let three = RetryPolicy {
            retries: Retries::Limited(3),
            ..RetryPolicy::default()
        };
        assert!(three.may_retry(3));
        assert!(!three.may_retry(4));
    }

    #[test]
    fn zero_jitter_gives_the_plain_delay() {
        let p = RetryPolicy {
            jitter: Duration::ZERO,
            ..RetryPolicy::default()
        };
        assert_eq!(p.next_delay(), p.delay);
        let q = RetryPolicy::default();
        let d = q.next_delay();
        assert!(d >= q.delay && d <= q.delay + q.jitter);
    }
}
