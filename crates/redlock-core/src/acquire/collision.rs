//! Collision backoff against clients in other processes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::future;
use rand::Rng;

use crate::local::Ticket;
use crate::options::RetryPolicy;
use crate::runtime::Runtime;

/// Binary exponential backoff against other clients, as on a shared
/// Ethernet segment. Every client waiting for a resource hears the same
/// release announcement at the same instant; if they all attempted at
/// once, they would split the nodes between them and nobody would get a
/// quorum (and their cleanup releases are announced too, so it would
/// repeat). So a client that lost a race (woken by an announcement and
/// still failed, or a split vote) doubles a window, starting from two
/// attempt durations (at least 0.5 ms), capped by the retry delay plus
/// jitter or eight attempt durations, whichever is longer (a window shorter
/// than a few attempts cannot spread contenders whose attempts take that
/// long), and waits a random time within it before attempting after the
/// next announcement or split. A client that has not collided waits
/// nothing extra; the window lasts for one `lock` call.
pub(super) struct Backoff<'a> {
    window: Duration,
    cap: Duration,
    /// Where the window is kept between lock calls of this `Redlock`.
    shared: &'a AtomicU64,
}

impl<'a> Backoff<'a> {
    /// Starts from half the window the previous lock call ended with, so a
    /// client that keeps contending does not collide afresh on every call,
    /// and one that stopped contending forgets it within a few calls.
    pub fn new(policy: &RetryPolicy, shared: &'a AtomicU64) -> Self {
        let cap = policy.delay.saturating_add(policy.jitter);
        let last = Duration::from_micros(shared.load(Ordering::Relaxed) / 2);
        Backoff {
            window: last.min(cap),
            cap,
            shared,
        }
    }

    /// A race was lost; `attempt` is how long the losing attempt took.
    pub fn collided(&mut self, attempt: Duration) {
        let attempt = attempt.max(Duration::from_micros(250));
        let base = attempt.saturating_mul(2);
        // A window shorter than a few attempts cannot spread contenders
        // whose attempts take that long, whatever the retry delay.
        let cap = self.cap.max(attempt.saturating_mul(8));
        self.window = self.window.saturating_mul(2).max(base).min(cap);
    }

    fn draw(&self) -> Duration {
        let us = u64::try_from(self.window.as_micros()).unwrap_or(u64::MAX);
        if us == 0 {
            return Duration::ZERO;
        }
        Duration::from_micros(rand::rng().random_range(0..=us))
    }

    /// A random pause drawn from the window, cut short by a release in this
    /// process (the ticket's go signal), and never past the deadline.
    pub async fn pause(&self, runtime: &dyn Runtime, deadline: Option<Instant>, ticket: &Ticket) {
        let mut delay = self.draw();
        if let Some(deadline) = deadline {
            delay = delay.min(deadline.saturating_duration_since(runtime.now()));
        }
        if delay.is_zero() {
            return;
        }
        future::select(runtime.sleep(delay), ticket.go()).await;
    }
}

impl Drop for Backoff<'_> {
    fn drop(&mut self) {
        let us = u64::try_from(self.window.as_micros()).unwrap_or(u64::MAX);
        self.shared.store(us, Ordering::Relaxed);
    }
}
