//! Metrics through the [`metrics`](https://docs.rs/metrics) facade (feature
//! `metrics`). Without the feature every function here is an empty inline
//! function, so the calls cost nothing.
//!
//! | name | kind | labels | what |
//! |---|---|---|---|
//! | `redlock_acquire_wait_seconds` | histogram | — | from the lock call to the lock, successful calls |
//! | `redlock_acquire_attempts` | histogram | — | attempts a successful lock call took |
//! | `redlock_acquire_failures_total` | counter | `reason` | lock calls that gave up (`conflict`, `no_quorum`, `validity_expired`, `deadline`, `other`) |
//! | `redlock_conflicts_total` | counter | — | attempts that found the resource held by someone else |
//! | `redlock_release_wakeups_total` | counter | — | waits cut short by a release announcement |
//! | `redlock_node_errors_total` | counter | `node`, `operation` | per-node errors and timeouts |
//! | `redlock_extend_failures_total` | counter | `reason` | extensions that failed (`lost`, `no_quorum`, `validity_expired`) |
//! | `redlock_node_outstanding` | gauge | `node` | requests a node owes (admitted, not answered): see [`Backlog`](crate::backlog::Backlog); stays at or below its limit while a node is stalled |

use std::time::Duration;

use crate::error::{LockError, Operation};

#[cfg(feature = "metrics")]
fn reason(e: &LockError) -> &'static str {
    match e {
        LockError::Conflict(_) => "conflict",
        LockError::NoQuorum(_) => "no_quorum",
        LockError::Config(_) => "config",
        LockError::ValidityExpired(_) => "validity_expired",
        LockError::Lost(_) => "lost",
        LockError::DeadlineExceeded(_) => "deadline",
        _ => "other",
    }
}

#[cfg(feature = "metrics")]
mod on {
    use super::*;

    pub(crate) fn acquired(wait: Duration, attempts: u32) {
        metrics::histogram!("redlock_acquire_wait_seconds").record(wait.as_secs_f64());
        metrics::histogram!("redlock_acquire_attempts").record(f64::from(attempts));
    }

    pub(crate) fn lock_failed(e: &LockError) {
        metrics::counter!("redlock_acquire_failures_total", "reason" => reason(e)).increment(1);
    }

    pub(crate) fn conflict() {
        metrics::counter!("redlock_conflicts_total").increment(1);
    }

    pub(crate) fn woken_by_release() {
        metrics::counter!("redlock_release_wakeups_total").increment(1);
    }

    pub(crate) fn node_error(node: &str, operation: Operation) {
        metrics::counter!(
            "redlock_node_errors_total",
            "node" => node.to_owned(),
            "operation" => operation.to_string()
        )
        .increment(1);
    }

    pub(crate) fn extend_failed(e: &LockError) {
        metrics::counter!("redlock_extend_failures_total", "reason" => reason(e)).increment(1);
    }
}

#[cfg(not(feature = "metrics"))]
mod on {
    use super::*;

    #[inline(always)]
    pub(crate) fn acquired(_: Duration, _: u32) {}
    #[inline(always)]
    pub(crate) fn lock_failed(_: &LockError) {}
    #[inline(always)]
    pub(crate) fn conflict() {}
    #[inline(always)]
    pub(crate) fn woken_by_release() {}
    #[inline(always)]
    pub(crate) fn node_error(_: &str, _: Operation) {}
    #[inline(always)]
    pub(crate) fn extend_failed(_: &LockError) {}
}

pub(crate) use on::*;
