//! Timing without a runtime dependency: the [`Runtime`] trait.
//!
//! The algorithm needs a monotonic clock, a sleep and (for releases that must
//! outlive a dropped future) a way to spawn. `TokioRuntime` provides them on
//! tokio (feature `tokio`); [`ManualClock`] is a clock that only moves when a
//! test says so.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// A boxed, sendable future, as returned by [`Runtime::sleep`].
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Clock, sleep and spawn, supplied by the application's async runtime.
pub trait Runtime: Send + Sync + fmt::Debug + 'static {
    /// A monotonic now. All validity times are on this clock.
    fn now(&self) -> Instant;

    /// A future that completes after `duration` on this clock.
    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()>;

    /// Runs `future` in the background, detached. Returns `false` when the
    /// runtime cannot spawn here (then the caller falls back to the TTL).
    fn spawn(&self, future: BoxFuture<'static, ()>) -> bool {
        drop(future);
        false
    }
}

/// [`Runtime`] on tokio. Honours tokio's paused test clock.
#[cfg(feature = "tokio")]
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioRuntime;

#[cfg(feature = "tokio")]
impl Runtime for TokioRuntime {
    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep(duration))
    }

    fn spawn(&self, future: BoxFuture<'static, ()>) -> bool {
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(future);
                true
            }
            Err(_) => false,
        }
    }
}

/// A clock that moves only when [`ManualClock::advance`] is called. Sleeps
/// complete when the clock passes their deadline. Cannot spawn.
///
/// ```
/// use std::time::Duration;
/// use redlock_core::{ManualClock, Runtime};
///
/// let clock = ManualClock::new();
/// let t0 = clock.now();
/// clock.advance(Duration::from_millis(5));
/// assert_eq!(clock.now() - t0, Duration::from_millis(5));
/// ```
#[derive(Clone, Default)]
pub struct ManualClock {
    inner: Arc<Mutex<ClockState>>,
}

struct ClockState {
    origin: Instant,
    offset: Duration,
    sleepers: Vec<(Duration, Waker)>,
}

impl Default for ClockState {
    fn default() -> Self {
        ClockState {
            origin: Instant::now(),
            offset: Duration::ZERO,
            sleepers: Vec::new(),
        }
    }
}

impl fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("ManualClock")
            .field("offset", &state.offset)
            .field("sleepers", &state.sleepers.len())
            .finish()
    }
}

impl ManualClock {
    /// A clock at offset zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves the clock forward and wakes every sleep that is now due.
    pub fn advance(&self, by: Duration) {
        let due = {
            let mut state = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
            state.offset += by;
            let now = state.offset;
            let (due, pending) = std::mem::take(&mut state.sleepers)
                .into_iter()
                .partition(|(deadline, _)| *deadline <= now);
            state.sleepers = pending;
            due
        };
        for (_, waker) in due {
            waker.wake();
        }
    }

    /// How far the clock has moved since it was made.
    pub fn elapsed(&self) -> Duration {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .offset
    }
}

impl Runtime for ManualClock {
    fn now(&self) -> Instant {
        let state = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        state.origin + state.offset
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        let deadline = self.elapsed().saturating_add(duration);
        Box::pin(ManualSleep {
            clock: self.clone(),
            deadline,
        })
    }
}

struct ManualSleep {
    clock: ManualClock,
    deadline: Duration,
}

impl Future for ManualSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = self
            .clock
            .inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if state.offset >= self.deadline {
            Poll::Ready(())
        } else {
            state.sleepers.push((self.deadline, cx.waker().clone()));
            Poll::Pending
        }
    }
}
