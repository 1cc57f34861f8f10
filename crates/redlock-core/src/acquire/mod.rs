//! Acquiring: the retry loop of one lock call, as a small state machine.
//!
//! ```text
//!             ┌──────────── not the head ────────────┐
//!             ▼                                      │
//! start ─▶ Queued ─▶ Attempt ─▶ acquired ─▶ Lock     │
//!             ▲         │                            │
//!             │         └─▶ failed, may retry ─▶ Retry
//!             └───────────── after the wait ─────────┘
//! ```
//!
//! Four mechanisms, each a piece of its own:
//!
//! - [`budget`]: attempts made, the retry policy, the deadline;
//! - [`turn`]: the in-process queue ([`local`](crate::local)): calls of this
//!   process that wait for the same keys take turns, only the head attempts;
//! - [`watch`]: the head's wait, cut short by a release announced by the
//!   nodes or made in this process;
//! - [`collision`]: exponential backoff after a race lost to other clients.
//!
//! One attempt is [`attempt`]: the fan-out, the validity check and the
//! release of whatever a failed attempt took.

mod attempt;
mod budget;
mod collision;
mod turn;
mod watch;

use std::sync::Arc;
use std::time::Duration;

use tracing::Instrument;

use self::budget::Budget;
use self::collision::Backoff;
use self::turn::Turn;
use self::watch::{Watch, Woke};
use crate::error::{Failure, LockError, Operation};
use crate::local::Ticket;
use crate::lock::Lock;
use crate::options::RetryPolicy;
use crate::round::Round;
use crate::shared::{Shared, Target};
use crate::telemetry;
use crate::token::new_token;

/// Locks `target` (already validated, like `ttl` and `policy`), retrying by
/// `policy`.
pub(crate) async fn acquire(
    shared: &Arc<Shared>,
    target: Target,
    ttl: Duration,
    policy: &RetryPolicy,
) -> Result<Lock, LockError> {
    let span = tracing::debug_span!(
        "redlock.lock",
        resources = ?target.names,
        ttl_ms = ttl.as_millis() as u64,
        attempts = tracing::field::Empty,
        outcome = tracing::field::Empty,
    );
    let result = Machine::new(shared, target, ttl, policy)
        .run()
        .instrument(span.clone())
        .await;
    match &result {
        Ok(lock) => {
            span.record("attempts", lock.attempts());
            span.record("outcome", "acquired");
        }
        Err(e) => {
            span.record("attempts", e.failure().map_or(0, |f| f.attempts));
            span.record("outcome", tracing::field::display(e));
        }
    }
    result
}

/// Where a lock call is.
enum Step {
    /// Possibly behind other calls of this process: wait for the turn.
    Queued,
    /// Make an attempt.
    Attempt,
    /// The attempt failed and another may follow: wait before it.
    Retry {
        round: Round,
        failure: Box<Failure>,
        took: Duration,
    },
    /// Done.
    Acquired(Lock),
}

struct Machine<'a> {
    shared: &'a Arc<Shared>,
    target: Target,
    ttl: Duration,
    budget: Budget<'a>,
    ticket: Option<Ticket>,
    watch: Watch,
    backoff: Backoff<'a>,
    /// The summary of the last failed attempt, for a later deadline error.
    failure: Option<Box<Failure>>,
    /// The last wait was ended by a release the nodes announced: the next
    /// attempt races every other client woken by it.
    woken_by_announcement: bool,
}

impl<'a> Machine<'a> {
    fn new(shared: &'a Arc<Shared>, target: Target, ttl: Duration, policy: &RetryPolicy) -> Self {
        Machine {
            budget: Budget::new(policy, &*shared.runtime),
            ticket: None,
            watch: Watch::new(shared, &target.keys),
            backoff: Backoff::new(policy, &shared.backoff_us),
            failure: None,
            woken_by_announcement: false,
            shared,
            target,
            ttl,
        }
    }

    async fn run(mut self) -> Result<Lock, LockError> {
        // A call that may retry joins the queue at once when others of
        // this process wait already (no barging).
        if self.budget.may_wait_queued() && self.shared.local.has_waiters(&self.target.keys) {
            self.ticket = Some(Ticket::join(&self.shared.local, &self.target.keys));
        }
        let mut step = Step::Queued;
        loop {
            step = match step {
                Step::Queued => self.queued().await?,
                Step::Attempt => self.attempt().await?,
                Step::Retry {
                    round,
                    failure,
                    took,
                } => self.retry(&round, failure, took).await?,
                Step::Acquired(lock) => return Ok(lock),
            };
        }
    }

    /// Waits for this call's turn when it is queued behind others.
    async fn queued(&mut self) -> Result<Step, LockError> {
        let Some(ticket) = self.ticket.as_ref().filter(|t| !t.is_head()) else {
            return Ok(Step::Attempt);
        };
        self.watch.clear();
        match turn::wait(ticket, &mut self.budget, &*self.shared.runtime).await {
            Turn::Attempt => {}
            Turn::AfterRelease => {
                self.watch.arm();
                let failure = self.failure.take().unwrap_or_else(|| self.no_attempt());
                let (_, woke) = pause(&self.budget, &mut self.watch, ticket, failure).await?;
                self.woken_by_announcement = woke == Woke::Announced;
                self.watch.rearm();
            }
            Turn::Deadline => {
                let failure = self.failure.take().unwrap_or_else(|| self.no_attempt());
                return Err(failed(LockError::DeadlineExceeded(failure)));
            }
        }
        Ok(Step::Attempt)
    }

    /// One attempt, after the collision pause when a release announcement
    /// woke this call.
    async fn attempt(&mut self) -> Result<Step, LockError> {
        let shared = self.shared;
        let rt = &*shared.runtime;
        if self.woken_by_announcement {
            if let Some(ticket) = self.ticket.as_ref() {
                self.backoff.pause(rt, self.budget.deadline(), ticket).await;
            }
        }
        let attempts = self.budget.start_attempt();
        let token: Arc<str> = Arc::from(new_token());
        let began = rt.now();
        match attempt::run(shared, &self.target, &token, self.ttl).await {
            Ok(taken) => {
                if let Some(ticket) = self.ticket.take() {
                    ticket.acquired();
                }
                tracing::debug!(attempt = attempts, "acquired");
                telemetry::acquired(
                    rt.now().saturating_duration_since(self.budget.began()),
                    attempts,
                );
                let mut lock = Lock::new(
                    shared.clone(),
                    self.target.clone(),
                    token,
                    self.ttl,
                    taken.start,
                    taken.valid_until,
                    attempts,
                );
                lock.unsent = taken.unsent;
                Ok(Step::Acquired(lock))
            }
            Err(round) => {
                if round.no > 0 {
                    telemetry::conflict();
                }
                let failure = round.failure(shared, Operation::Acquire, &self.target, attempts);
                tracing::debug!(attempt = attempts, "attempt failed: {failure}");
                let (n, q) = (shared.nodes.len(), shared.quorum);
                if attempt::refused_by_configuration(&round, n, q) || !self.budget.may_retry() {
                    return Err(failed(attempt::classify(&round, n, q, failure)));
                }
                let took = rt.now().saturating_duration_since(began);
                Ok(Step::Retry {
                    round,
                    failure,
                    took,
                })
            }
        }
    }

    /// The wait after a failed attempt that may be retried.
    async fn retry(
        &mut self,
        round: &Round,
        failure: Box<Failure>,
        took: Duration,
    ) -> Result<Step, LockError> {
        let shared = self.shared;
        let ticket = self
            .ticket
            .get_or_insert_with(|| Ticket::join(&shared.local, &self.target.keys));
        if !ticket.is_head() || ticket.take_go() {
            // Queued behind others, or released in this process during the
            // attempt.
            self.failure = Some(failure);
            return Ok(Step::Queued);
        }
        // Lost a race: woken by a release and beaten to it, or the nodes
        // split between contenders and none of them can have a quorum.
        let split = round.yes > 0 && round.no > 0 && round.no < shared.quorum;
        if self.woken_by_announcement || split {
            self.backoff.collided(took);
        }
        self.woken_by_announcement = false;
        if !self.watch.is_armed() && round.no > 0 {
            self.watch.arm();
        }
        if split {
            // Everyone in the split has just released, and those releases
            // are announced: waking on them would send every contender back
            // at the same instant.
            self.backoff
                .pause(&*shared.runtime, self.budget.deadline(), ticket)
                .await;
            ticket.take_go();
            self.failure = Some(failure);
        } else {
            let (failure, woke) = pause(&self.budget, &mut self.watch, ticket, failure).await?;
            self.failure = Some(failure);
            self.woken_by_announcement = woke == Woke::Announced;
        }
        // Arm the next attempt's watch before letting this one go, so the
        // subscription stays in place.
        self.watch.rearm();
        Ok(Step::Queued)
    }

    /// The failure summary of a call that made no attempt of its own yet.
    fn no_attempt(&self) -> Box<Failure> {
        Round::undecided(self.shared.nodes.len(), false).failure(
            self.shared,
            Operation::Acquire,
            &self.target,
            self.budget.attempts(),
        )
    }
}

/// The head's wait between attempts: the retry delay, cut short by a
/// release (see [`watch`]). Fails when the deadline comes first.
async fn pause(
    budget: &Budget<'_>,
    watch: &mut Watch,
    ticket: &Ticket,
    failure: Box<Failure>,
) -> Result<(Box<Failure>, Woke), LockError> {
    let (delay, last_wait) = budget.next_wait();
    if last_wait && !watch.is_armed() {
        // Only a release in this process could still come; the deadline
        // ends the call now, as it did before the queue existed.
        return Err(failed(LockError::DeadlineExceeded(failure)));
    }
    let woke = watch.wait(budget.runtime(), delay, ticket).await;
    if woke == Woke::Delay && last_wait {
        return Err(failed(LockError::DeadlineExceeded(failure)));
    }
    Ok((failure, woke))
}

/// Counts a failed lock call.
fn failed(err: LockError) -> LockError {
    telemetry::lock_failed(&err);
    err
}
