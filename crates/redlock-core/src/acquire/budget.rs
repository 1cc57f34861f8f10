//! The retry budget of one lock call: attempts made, the retry policy, and
//! the deadline.

use std::time::{Duration, Instant};

use crate::options::RetryPolicy;
use crate::runtime::Runtime;

/// What a lock call may still spend. A retry delay spent queued behind
/// another call of this process counts as an attempt (the head tries for
/// everyone), so `retry_count` and the deadline bound a call as they do
/// without the queue.
pub(super) struct Budget<'a> {
    policy: RetryPolicy,
    runtime: &'a dyn Runtime,
    began: Instant,
    deadline: Option<Instant>,
    attempts: u32,
}

impl<'a> Budget<'a> {
    /// Starts the call's clock now.
    pub fn new(policy: &RetryPolicy, runtime: &'a dyn Runtime) -> Self {
        let began = runtime.now();
        Budget {
            policy: *policy,
            runtime,
            began,
            deadline: policy.deadline.and_then(|d| began.checked_add(d)),
            attempts: 0,
        }
    }

    /// The runtime the call runs on.
    pub fn runtime(&self) -> &'a dyn Runtime {
        self.runtime
    }

    /// When the call began.
    pub fn began(&self) -> Instant {
        self.began
    }

    /// When no new attempt may start any more.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Attempts counted so far.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Counts an attempt about to be made; returns its number (1-based).
    pub fn start_attempt(&mut self) -> u32 {
        self.attempts = self.attempts.saturating_add(1);
        self.attempts
    }

    /// Counts a retry delay spent waiting in the queue.
    pub fn spend_queued_delay(&mut self) {
        self.attempts = self.attempts.saturating_add(1);
    }

    /// Whether another attempt may follow the ones counted.
    pub fn may_retry(&self) -> bool {
        self.policy.may_retry(self.attempts)
    }

    /// Whether the attempt after the next one would still be allowed: a
    /// queued call that may not wait another delay makes its last attempt
    /// itself.
    pub fn may_wait_queued(&self) -> bool {
        self.policy.may_retry(self.attempts.saturating_add(1))
    }

    /// The next retry delay, cut to what is left before the deadline; `true`
    /// when it was cut (this is the last wait).
    pub fn next_wait(&self) -> (Duration, bool) {
        let delay = self.policy.next_delay();
        match self.deadline {
            Some(d) => {
                let left = d.saturating_duration_since(self.runtime.now());
                if delay >= left {
                    (left, true)
                } else {
                    (delay, false)
                }
            }
            None => (delay, false),
        }
    }
}
