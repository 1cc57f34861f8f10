//! The fault switches of a [`SimNode`], flipped through any clone while
//! requests are in flight.

use std::time::Duration;

use super::state::*;
use super::*;

impl SimNode {
    /// While `true`, every new call fails at once with
    /// [`NodeError::Connection`] and is not queued. Requests queued before
    /// still take effect (they were already on the wire).
    pub fn set_down(&self, down: bool) {
        self.inner.current().down = down;
    }

    /// Requests sent from now on are processed `delay` after they were sent
    /// (and never before the request ahead of them).
    pub fn set_delay(&self, delay: Duration) {
        self.inner.current().delay = delay;
    }

    /// While `true`, requests are queued but not processed. Un-hanging
    /// processes everything overdue at once, in order, at that instant.
    pub fn set_hung(&self, hung: bool) {
        let now = self.inner.runtime.now();
        {
            let mut st = self.inner.lock();
            if hung {
                st.process(now);
                st.hung = true;
            } else if st.hung {
                st.hung = false;
                for q in st.queue.iter_mut() {
                    q.due = q.due.max(now);
                }
                if let Some(last) = st.last_due.as_mut() {
                    *last = (*last).max(now);
                }
                st.process(now);
            }
        }
        self.inner.notify.notify_waiters();
    }

    /// The next `calls` calls work; every later call fails at once with
    /// [`NodeError::Connection`] until [`clear_fail_after`](Self::clear_fail_after)
    /// or [`heal`](Self::heal).
    pub fn fail_after(&self, calls: u64) {
        self.inner.current().fail_after = Some(calls);
    }

    /// Bounds the requests queued and not processed yet, as the adapters'
    /// backlogs do: at `limit`, new calls other than releases are refused
    /// at once with [`NodeError::Backlog`] (not sent). `None` (the
    /// default) queues without bound.
    pub fn set_backlog_limit(&self, limit: Option<usize>) {
        self.inner.current().backlog = limit;
    }

    /// Undoes [`fail_after`](Self::fail_after).
    pub fn clear_fail_after(&self) {
        self.inner.current().fail_after = None;
    }

    /// Clears every fault: up, no delay, not hung, no failure countdown, not
    /// closed. Keys and the queue are kept.
    pub fn heal(&self) {
        {
            let mut st = self.inner.current();
            st.down = false;
            st.delay = Duration::ZERO;
            st.fail_after = None;
            st.closed = false;
        }
        self.set_hung(false);
    }

    /// Whether and how releases are announced to
    /// [`Node::watch_release`](redlock_core::Node::watch_release) watchers; see [`Announce`].
    pub fn set_announce(&self, announce: Announce) {
        let mut st = self.inner.current();
        st.announce = announce;
        if announce != Announce::On {
            // Pending watches stay pending forever, like lost messages.
            st.watchers.clear();
        }
    }

    /// Deletes `key` now, as if it had expired. Returns whether it was live.
    pub fn expire_now(&self, key: &str) -> bool {
        let now = self.inner.runtime.now();
        let mut st = self.inner.current();
        let live = st.live(key, now).is_some();
        st.store.remove(key);
        live
    }

    /// Lowers the remaining TTL of `key` to at most `ttl` from now. Returns
    /// whether the key was live.
    pub fn shorten_ttl(&self, key: &str, ttl: Duration) -> bool {
        let now = self.inner.runtime.now();
        let mut st = self.inner.current();
        if st.live(key, now).is_none() {
            return false;
        }
        if let Some(e) = st.store.get_mut(key) {
            let new = now.checked_add(ttl);
            e.expires_at = match (e.expires_at, new) {
                (Some(old), Some(new)) => Some(old.min(new)),
                (None, new) => new,
                (old, None) => old,
            };
        }
        true
    }

    /// Deletes every key now (a restart without persistence, or a big clock
    /// jump). Returns how many were live.
    pub fn expire_all(&self) -> usize {
        let now = self.inner.runtime.now();
        let mut st = self.inner.current();
        let live = st.store.values().filter(|e| e.live_at(now)).count();
        st.store.clear();
        live
    }

    /// Writes `key = token` with `ttl` now, replacing whatever was there (a
    /// different owner, or a test setting the stage). `None` never expires.
    pub fn put_key(&self, key: impl Into<String>, token: impl Into<String>, ttl: Option<Duration>) {
        let now = self.inner.runtime.now();
        let mut st = self.inner.current();
        st.store.insert(
            key.into(),
            Entry {
                token: token.into(),
                expires_at: ttl.and_then(|t| now.checked_add(t)),
            },
        );
    }

    // ----- introspection --------------------------------------------------
}
