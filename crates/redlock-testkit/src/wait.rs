//! Waiting for a condition with a deadline, in async and blocking tests.
//!
//! A test that waits for something another task or process does (a key
//! gone, a subscription made, a process exited) checks the condition, and
//! checks again every [`POLL`] until it holds or the deadline passes; it
//! never sleeps for a fixed time hoping the event happened, and never waits
//! without a bound.
//!
//! ```
//! use std::sync::atomic::{AtomicBool, Ordering};
//! use std::sync::Arc;
//! use std::time::Duration;
//! use redlock_testkit::wait::{eventually, until};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let done = Arc::new(AtomicBool::new(false));
//! let flag = done.clone();
//! tokio::spawn(async move { flag.store(true, Ordering::SeqCst) });
//! until("the task ran", Duration::from_secs(5), || async { done.load(Ordering::SeqCst) }).await;
//! assert!(eventually(Duration::from_millis(1), || async { true }).await);
//! # }
//! ```

use std::future::Future;
use std::time::{Duration, Instant};

/// How often a condition is checked again.
pub const POLL: Duration = Duration::from_millis(10);

/// Checks `cond` until it holds or `timeout` passes (checking once more at
/// the deadline); returns whether it held.
pub async fn eventually<F, Fut>(timeout: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let end = Instant::now() + timeout;
    loop {
        if cond().await {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Like [`eventually`], but fails the test when `cond` does not hold within
/// `timeout`, saying what did not happen.
///
/// # Panics
///
/// When the deadline passes: `"<what> did not happen within <timeout>"`.
pub async fn until<F, Fut>(what: &str, timeout: Duration, cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    assert!(
        eventually(timeout, cond).await,
        "{what} did not happen within {timeout:?}"
    );
}

/// [`eventually`] for code that is not async: checks `cond` every [`POLL`]
/// on the calling thread.
pub fn eventually_blocking(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn gives_up_at_the_deadline() {
        let checks = AtomicUsize::new(0);
        let start = Instant::now();
        let held = eventually(Duration::from_millis(50), || async {
            checks.fetch_add(1, Ordering::SeqCst);
            false
        })
        .await;
        assert!(!held);
        assert!(start.elapsed() >= Duration::from_millis(50));
        assert!(
            checks.load(Ordering::SeqCst) >= 2,
            "checked at the deadline too"
        );
    }

    #[tokio::test]
    async fn returns_once_the_condition_holds() {
        let checks = AtomicUsize::new(0);
        let held = eventually(Duration::from_secs(60), || async {
            checks.fetch_add(1, Ordering::SeqCst) == 2
        })
        .await;
        assert!(held);
        assert_eq!(checks.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    #[should_panic(expected = "the impossible did not happen within")]
    async fn until_fails_with_what_did_not_happen() {
        until("the impossible", Duration::from_millis(20), || async {
            false
        })
        .await;
    }

    #[test]
    fn blocking_variant() {
        let mut n = 0;
        assert!(eventually_blocking(Duration::from_secs(60), || {
            n += 1;
            n == 3
        }));
        assert!(!eventually_blocking(Duration::from_millis(30), || false));
    }
}
