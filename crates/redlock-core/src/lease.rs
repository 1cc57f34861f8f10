//! Scoped locks: hold a lock while a future runs, extend it automatically,
//! and push its loss to the future instead of making it poll.

use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures_util::future::{self, Either};

use crate::error::{Failure, InvalidArgument, LockError, NodeOutcome, NodeReport, Operation};
use crate::extend::extend;
use crate::lock::Lock;
use crate::options::{LockOptions, RetryPolicy};
use crate::runtime::Runtime;
use crate::signal::{Signal, Wait};

/// The holder's view of a scoped lock, handed to the future. Cheap to clone.
#[derive(Clone)]
pub struct Lease {
    inner: Arc<LeaseInner>,
}

struct LeaseInner {
    runtime: Arc<dyn Runtime>,
    resources: Vec<String>,
    token: String,
    fence: Option<u64>,
    valid_until: Mutex<Instant>,
    lost: Signal,
}

impl fmt::Debug for Lease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease")
            .field("resources", &self.inner.resources)
            .field("remaining", &self.remaining())
            .field("lost", &self.inner.lost.is_fired())
            .finish()
    }
}

/// Completes when the lease is lost; see [`Lease::lost`].
#[derive(Debug)]
#[must_use = "futures do nothing unless awaited"]
pub struct Lost(Wait);

impl Future for Lost {
    type Output = ();

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        std::pin::Pin::new(&mut self.0).poll(cx)
    }
}

impl Lease {
    fn new(lock: &Lock, runtime: Arc<dyn Runtime>) -> Self {
        Lease {
            inner: Arc::new(LeaseInner {
                runtime,
                resources: lock.resources().to_vec(),
                token: lock.token().to_owned(),
                fence: lock.fence(),
                valid_until: Mutex::new(lock.valid_until()),
                lost: Signal::default(),
            }),
        }
    }

    /// Completes when the lock is lost: an extension failed for good and the
    /// validity is about to run out, or another owner holds the keys. It fires
    /// before [`valid_until`](Lease::valid_until), never after.
    pub fn lost(&self) -> Lost {
        Lost(self.inner.lost.wait())
    }

    /// Whether the lock is still ours: not lost and within its validity.
    pub fn is_held(&self) -> bool {
        !self.inner.lost.is_fired() && self.inner.runtime.now() < self.valid_until()
    }

    /// The current end of validity (moves forward with every extension).
    pub fn valid_until(&self) -> Instant {
        *self
            .inner
            .valid_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Time left before the validity ends; zero once lost.
    pub fn remaining(&self) -> Duration {
        if self.inner.lost.is_fired() {
            return Duration::ZERO;
        }
        self.valid_until()
            .saturating_duration_since(self.inner.runtime.now())
    }

    /// The lock's token.
    pub fn token(&self) -> &str {
        &self.inner.token
    }

    /// The locked resources.
    pub fn resources(&self) -> &[String] {
        &self.inner.resources
    }

    /// The fencing token, when the scope was [fenced](crate::LockOptions::fenced).
    pub fn fence(&self) -> Option<u64> {
        self.inner.fence
    }

    fn set_valid_until(&self, t: Instant) {
        *self
            .inner
            .valid_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = t;
    }
}

/// The scoped settings of `options` checked against the held lock's TTL.
fn check(options: &LockOptions, ttl: Duration) -> Result<(), InvalidArgument> {
    if let Some(policy) = &options.retry {
        policy.validate()?;
    }
    match options.extend_when_remaining {
        Some(threshold) if threshold >= ttl => {
            Err(InvalidArgument::ExtendThreshold { threshold, ttl })
        }
        _ => Ok(()),
    }
}

/// How long before the end of validity a lease reports its loss.
fn loss_margin(ttl: Duration) -> Duration {
    (ttl / 20).clamp(Duration::from_millis(1), Duration::from_secs(1))
}

/// Keeps `lock` extended while `work` runs, then releases it; see
/// [`Redlock::using`](crate::Redlock::using).
pub(crate) async fn hold<F, Fut, T>(
    mut lock: Lock,
    options: &LockOptions,
    work: F,
) -> Result<T, LockError>
where
    F: FnOnce(Lease) -> Fut,
    Fut: Future<Output = T>,
{
    let shared = lock.shared.clone();
    if let Err(e) = check(options, lock.ttl()) {
        // Every failure path releases what it took.
        if let Err(release) = lock.release().await {
            tracing::warn!(resources = ?lock.resources(), "release after refused options failed: {release}");
        }
        return Err(e.into());
    }
    let policy = options.retry.unwrap_or(shared.options.retry);
    let lease = Lease::new(&lock, shared.runtime.clone());
    let outcome = {
        let work = work(lease.clone());
        let keeper = keep_alive(&mut lock, &lease, options, &policy);
        futures_util::pin_mut!(work);
        futures_util::pin_mut!(keeper);
        match future::select(work, keeper).await {
            Either::Left((output, _)) => Ok(output),
            Either::Right((loss, work)) => {
                if options.keep_on_loss {
                    Ok(work.await)
                } else {
                    Err(loss)
                }
            }
        }
    };
    if let Err(e) = lock.release().await {
        tracing::warn!(resources = ?lock.resources(), "release after scoped lock failed: {e}");
    }
    outcome
}

/// Extends `lock` before it runs out until it is lost or capped; fires the
/// lease's loss signal and returns why.
async fn keep_alive(
    lock: &mut Lock,
    lease: &Lease,
    options: &LockOptions,
    policy: &RetryPolicy,
) -> LockError {
    let rt = lock.shared.runtime.clone();
    let ttl = lock.ttl();
    let threshold = options.extend_when_remaining.unwrap_or(ttl / 3);
    let margin = loss_margin(ttl);
    let began = rt.now();
    let mut extensions: u32 = 0;
    loop {
        let valid_until = lock.valid_until();
        let lost_at = valid_until.checked_sub(margin).unwrap_or(valid_until);
        let extend_at = valid_until.checked_sub(threshold).unwrap_or(valid_until);
        sleep_until(&*rt, extend_at.min(lost_at)).await;
        let capped = options.max_extensions.is_some_and(|m| extensions >= m)
            || options.max_hold.is_some_and(|h| rt.now() >= began + h);
        if capped {
            sleep_until(&*rt, lost_at).await;
            lease.inner.lost.fire();
            return LockError::Lost(lease_failure(lock, NodeOutcome::Undecided));
        }
        loop {
            let now = rt.now();
            if now >= lost_at {
                lease.inner.lost.fire();
                return LockError::Lost(lease_failure(lock, NodeOutcome::TimedOut));
            }
            let result = {
                let attempt = extend(lock, ttl);
                let timer = rt.sleep(lost_at - now);
                futures_util::pin_mut!(attempt);
                match future::select(attempt, timer).await {
                    Either::Left((r, _)) => Some(r),
                    Either::Right(_) => None,
                }
            };
            match result {
                Some(Ok(())) => {
                    extensions += 1;
                    lease.set_valid_until(lock.valid_until());
                    break;
                }
                Some(Err(e @ LockError::Lost(_))) => {
                    tracing::warn!(resources = ?lock.resources(), "lock lost: {e}");
                    lease.inner.lost.fire();
                    return e;
                }
                Some(Err(e)) => {
                    tracing::debug!(resources = ?lock.resources(), "extension failed, retrying: {e}");
                    let pause = policy
                        .next_delay()
                        .min(lost_at.saturating_duration_since(rt.now()));
                    rt.sleep(pause).await;
                }
                None => {
                    lease.inner.lost.fire();
                    return LockError::Lost(lease_failure(lock, NodeOutcome::TimedOut));
                }
            }
        }
    }
}

fn lease_failure(lock: &Lock, outcome: NodeOutcome) -> Box<Failure> {
    let shared = &lock.shared;
    Box::new(Failure {
        operation: Operation::Extend,
        resources: lock.resources().to_vec(),
        attempts: 1,
        quorum: shared.quorum,
        nodes: shared
            .nodes
            .iter()
            .map(|n| NodeReport {
                node: n.id().to_owned(),
                outcome: outcome.clone(),
            })
            .collect(),
    })
}

async fn sleep_until(rt: &dyn Runtime, at: Instant) {
    let left = at.saturating_duration_since(rt.now());
    if !left.is_zero() {
        rt.sleep(left).await;
    }
}
