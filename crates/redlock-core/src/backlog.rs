//! A bound on the work one node may owe: the requests sent to it (or queued
//! for it) that it has not answered yet.
//!
//! A node that stops draining (a paused process, a black-holed link) would
//! otherwise collect every request made while it is silent, and memory would
//! grow for as long as the stall lasts. With a [`Backlog`], an adapter admits
//! a request only while fewer than [`limit`](Backlog::limit) are
//! outstanding; beyond it, requests that *take* something (acquire, extend,
//! reads) fail at once **without being sent**, with
//! [`NodeError::Backlog`](crate::NodeError::Backlog). Nothing was sent, so
//! nothing needs a release: the core skips that node when it releases (see
//! [`NodeError::was_sent`](crate::NodeError::was_sent)). Releases are always
//! admitted, since a release may be what deletes a key already on the
//! server; there are never more of them than requests admitted before.
//!
//! A [`Permit`] is held for as long as the request is outstanding — until
//! the server answered or the connection carrying it was given up — not
//! merely while its caller waits: the core drops a slow node's future as
//! soon as a quorum answered, but the request still occupies the node.
//!
//! ```
//! use redlock_core::backlog::Backlog;
//!
//! let backlog = Backlog::new(2).expect("a positive limit");
//! let a = backlog.try_admit().expect("room for one");
//! let b = backlog.try_admit().expect("room for two");
//! assert!(backlog.try_admit().is_none()); // full: not sent, a "no" vote
//! let release = backlog.admit(); // releases always get in
//! assert_eq!(backlog.outstanding(), 3);
//! drop((a, b, release)); // answered
//! assert_eq!(backlog.outstanding(), 0);
//! ```

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::error::InvalidArgument;

/// The default [`Backlog::limit`]: requests one node may owe before new
/// acquires fail without being sent. Far above what a healthy node ever
/// owes (a few round trips' worth of requests), small enough that a stalled
/// node costs well under a megabyte.
pub const DEFAULT_LIMIT: usize = 1024;

/// The largest limit accepted: beyond it a stalled node could hold
/// gigabytes before the bound applies.
pub const MAX_LIMIT: usize = 1 << 20;

/// The outstanding requests of one node, bounded. Cheap to clone; clones
/// share the count.
#[derive(Clone)]
pub struct Backlog {
    inner: Arc<Inner>,
}

struct Inner {
    outstanding: AtomicUsize,
    limit: usize,
    /// `redlock_node_outstanding{node}` (feature `metrics`).
    #[cfg(feature = "metrics")]
    gauge: Option<metrics::Gauge>,
}

impl Inner {
    fn new(limit: usize) -> Self {
        Inner {
            outstanding: AtomicUsize::new(0),
            limit,
            #[cfg(feature = "metrics")]
            gauge: None,
        }
    }

    fn add(&self) {
        #[cfg(feature = "metrics")]
        if let Some(g) = &self.gauge {
            g.increment(1.0);
        }
    }

    fn sub(&self) {
        #[cfg(feature = "metrics")]
        if let Some(g) = &self.gauge {
            g.decrement(1.0);
        }
    }
}

impl fmt::Debug for Backlog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Backlog")
            .field("outstanding", &self.outstanding())
            .field("limit", &self.inner.limit)
            .finish()
    }
}

impl Default for Backlog {
    fn default() -> Self {
        Backlog {
            inner: Arc::new(Inner::new(DEFAULT_LIMIT)),
        }
    }
}

impl Backlog {
    /// A backlog that admits up to `limit` outstanding requests (besides
    /// releases). Zero, or more than [`MAX_LIMIT`], is an
    /// [`InvalidArgument::Backlog`].
    pub fn new(limit: usize) -> Result<Self, InvalidArgument> {
        if limit == 0 || limit > MAX_LIMIT {
            return Err(InvalidArgument::Backlog {
                limit,
                max: MAX_LIMIT,
            });
        }
        Ok(Backlog {
            inner: Arc::new(Inner::new(limit)),
        })
    }

    /// Reports the count as the gauge `redlock_node_outstanding{node}`
    /// (feature `metrics`; without it this does nothing). Call it when the
    /// node is built, after the metrics recorder is installed, and before
    /// the backlog is cloned.
    pub fn with_gauge(self, node: &str) -> Self {
        #[cfg(feature = "metrics")]
        {
            let mut this = self;
            if let Some(inner) = Arc::get_mut(&mut this.inner) {
                inner.gauge = Some(metrics::gauge!(
                    "redlock_node_outstanding",
                    "node" => node.to_owned()
                ));
            }
            this
        }
        #[cfg(not(feature = "metrics"))]
        {
            let _ = node;
            self
        }
    }

    /// The bound.
    pub fn limit(&self) -> usize {
        self.inner.limit
    }

    /// Requests admitted and not answered yet (releases included).
    pub fn outstanding(&self) -> usize {
        self.inner.outstanding.load(Ordering::Acquire)
    }

    /// Whether no more requests are admitted (releases aside).
    pub fn is_full(&self) -> bool {
        self.outstanding() >= self.inner.limit
    }

    /// Admits a request that takes something (acquire, extend, a read), or
    /// `None` when [`limit`](Self::limit) requests are outstanding: then
    /// send nothing and answer [`NodeError::Backlog`](crate::NodeError::Backlog).
    pub fn try_admit(&self) -> Option<Permit> {
        let counter = &self.inner.outstanding;
        let mut now = counter.load(Ordering::Relaxed);
        loop {
            if now >= self.inner.limit {
                return None;
            }
            match counter.compare_exchange_weak(now, now + 1, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => {
                    self.inner.add();
                    return Some(Permit {
                        backlog: self.clone(),
                    });
                }
                Err(seen) => now = seen,
            }
        }
    }

    /// Admits a release whatever the count: it may be what deletes a key
    /// already on the server.
    pub fn admit(&self) -> Permit {
        self.inner.outstanding.fetch_add(1, Ordering::AcqRel);
        self.inner.add();
        Permit {
            backlog: self.clone(),
        }
    }

    /// The error for a request refused by a full backlog.
    pub fn full_error(&self) -> crate::NodeError {
        crate::NodeError::Backlog(self.outstanding())
    }
}

/// One outstanding request; dropping it (answered, or given up with its
/// connection) makes room for another.
pub struct Permit {
    backlog: Backlog,
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit").finish_non_exhaustive()
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.backlog
            .inner
            .outstanding
            .fetch_sub(1, Ordering::AcqRel);
        self.backlog.inner.sub();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_and_huge_limits_are_refused() {
        assert!(Backlog::new(0).is_err());
        assert!(Backlog::new(MAX_LIMIT + 1).is_err());
        assert_eq!(
            Backlog::new(MAX_LIMIT).map(|b| b.limit()).ok(),
            Some(MAX_LIMIT)
        );
    }

    #[test]
    fn releases_get_in_when_full_and_count() {
        let b = Backlog::new(1).expect("limit 1");
        let p = b.try_admit().expect("first");
        assert!(b.is_full());
        assert!(b.try_admit().is_none());
        let r = b.admit();
        assert_eq!(b.outstanding(), 2);
        drop(p);
        assert!(b.try_admit().is_none(), "the release still counts");
        drop(r);
        assert!(b.try_admit().is_some());
    }
}
