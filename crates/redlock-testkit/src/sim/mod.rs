//! An in-memory Redlock node with fault switches, for deterministic tests.
//!
//! [`SimNode`] implements [`redlock_core::Node`] on a map held in memory. Its
//! time comes from a [`Runtime`](redlock_core::Runtime): with [`TokioRuntime`](redlock_core::TokioRuntime) under
//! `#[tokio::test(start_paused = true)]` the whole test runs on tokio's paused
//! clock, so keys expire and delays pass at exact, repeatable instants and no
//! test sleeps for real.
//!
//! # The ordering model
//!
//! A `SimNode` keeps the ordering contract of [`Node`](redlock_core::Node):
//!
//! - a request enters the node's FIFO queue when its future is **first
//!   polled** (a future dropped before that was never sent);
//! - it is due `delay` after that (the delay in force when it was sent, see
//!   [`SimNode::set_delay`]), and never before the request queued ahead of it,
//!   so requests are processed strictly in the order they were sent;
//! - it takes effect at its due instant **even if the caller dropped the
//!   future** in the meantime: a dropped acquire still sets its keys, and the
//!   release sent after it still deletes them.
//!
//! Processing is evaluated lazily: whenever the node is touched (a call, a
//! fault switch, an introspection method), every request due by now is
//! applied in order, each at its own due instant. Observably this is the same
//! as a server working through its queue in the background.
//!
//! # Faults
//!
//! Every switch can be flipped while requests are in flight, through any
//! clone of the node (clones share one state, so a test keeps a clone as its
//! handle and gives another to the `Redlock`):
//!
//! - [`set_down`](SimNode::set_down): new calls fail at once with
//!   [`NodeError::Connection`];
//! - [`set_delay`](SimNode::set_delay): a slow node;
//! - [`set_hung`](SimNode::set_hung): requests queue but are not processed
//!   until the node is un-hung (a paused process);
//! - [`fail_after`](SimNode::fail_after): the next `n` calls work, later ones
//!   fail with [`NodeError::Connection`];
//! - [`expire_now`](SimNode::expire_now), [`shorten_ttl`](SimNode::shorten_ttl),
//!   [`expire_all`](SimNode::expire_all): keys expire early (what a clock jump
//!   on the server does);
//! - [`put_key`](SimNode::put_key): another owner writes a key;
//! - [`set_announce`](SimNode::set_announce): releases are announced to
//!   [`Node::watch_release`](redlock_core::Node::watch_release) watchers (off by default, like a node without
//!   pub/sub), or watches are taken but every announcement is lost.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use redlock_core::{Options, Redlock};
//! use redlock_testkit::sim::SimNode;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let nodes = SimNode::many(5);
//! let redlock = Redlock::new(nodes.clone(), Options::new()).expect("valid options");
//! nodes[4].set_hung(true);
//!
//! let lock = redlock.lock("job", Duration::from_secs(10)).await.expect("quorum of 4");
//! assert_eq!(nodes[0].keys().len(), 1);
//! lock.unlock().await.expect("released");
//!
//! nodes[4].set_hung(false);
//! for node in &nodes {
//!     node.drained().await;
//!     assert!(node.keys().is_empty());
//! }
//! # }
//! ```

use std::time::{Duration, Instant};

use redlock_core::{NodeError, NodeOutcome, Operation};

mod faults;
mod node;
mod state;

pub use node::SimNode;

/// Whether a [`SimNode`] announces releases to [`Node::watch_release`](redlock_core::Node::watch_release)
/// watchers (the release script's `PUBLISH`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Announce {
    /// The node cannot announce: `watch_release` returns `None` (default).
    #[default]
    Off,
    /// Every release that deleted a key wakes the watchers of that key.
    On,
    /// Watches are taken, but every announcement is lost: they never fire.
    Lost,
}

/// A key as stored on a [`SimNode`], from [`SimNode::keys`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimKey {
    /// The token stored under the key.
    pub token: String,
    /// Remaining time to live; `None` when the key never expires.
    pub ttl: Option<Duration>,
}

/// One operation a [`SimNode`] processed, from [`SimNode::log`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedOp {
    /// Position in this node's processing order, from 0.
    pub seq: u64,
    /// The instant (runtime clock) at which it took effect.
    pub at: Instant,
    /// Which operation it was.
    pub operation: Operation,
    /// The keys of the request.
    pub keys: Vec<String>,
    /// The token of the request (`None` for inspect).
    pub token: Option<String>,
    /// The TTL of the request (acquire and extend only).
    pub ttl: Option<Duration>,
    /// What the node answered.
    pub outcome: NodeOutcome,
    /// Whether the caller had already dropped the request's future.
    pub abandoned: bool,
}

/// A call a [`SimNode`] refused without queueing it (down, closed, or out of
/// [`fail_after`](SimNode::fail_after) calls), from [`SimNode::refused`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedCall {
    /// When the call was made (runtime clock).
    pub at: Instant,
    /// Which operation it was.
    pub operation: Operation,
    /// The keys of the request.
    pub keys: Vec<String>,
    /// The token of the request (`None` for inspect).
    pub token: Option<String>,
    /// The error the caller got.
    pub error: NodeError,
}

/// Waits until every node in `nodes` has drained its queue (see
/// [`SimNode::drained`]).
pub async fn drain_all(nodes: &[SimNode]) {
    for node in nodes {
        node.drained().await;
    }
}

/// The number of live keys over all `nodes`, after each processed what is
/// due by now.
pub fn live_keys(nodes: &[SimNode]) -> usize {
    nodes.iter().map(|n| n.keys().len()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use redlock_core::{Acquire, Extend, Node};

    fn keys(k: &[&str]) -> Vec<String> {
        k.iter().map(|s| s.to_string()).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn keys_expire_by_the_runtime_clock() {
        let n = SimNode::new("sim-0");
        let k = keys(&["a"]);
        assert_eq!(
            n.acquire(&k, "t", Duration::from_millis(100)).await,
            Ok(Acquire::Acquired)
        );
        assert_eq!(
            n.acquire(&k, "u", Duration::from_millis(100)).await,
            Ok(Acquire::Held)
        );
        tokio::time::advance(Duration::from_millis(99)).await;
        assert_eq!(n.token_of("a").as_deref(), Some("t"));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(n.keys().is_empty());
        assert_eq!(
            n.extend(&k, "t", Duration::from_millis(100)).await,
            Ok(Extend::NotHeld),
            "extend never recreates"
        );
        assert!(n.keys().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn dropped_request_still_takes_effect_in_order() {
        let n = SimNode::new("sim-0");
        n.set_delay(Duration::from_millis(50));
        let k = keys(&["a"]);
        {
            let mut fut = n.acquire(&k, "t", Duration::from_secs(1));
            // Poll once so the request is sent, then drop it.
            assert!(futures_poll_once(&mut fut).await.is_none());
        }
        assert_eq!(n.queue_len(), 1);
        n.set_delay(Duration::ZERO);
        // Sent later with no delay, but must not overtake the acquire.
        assert_eq!(n.release(&k, "t").await, Ok(1));
        let log = n.log();
        assert_eq!(log.len(), 2);
        assert_eq!(log[0].operation, Operation::Acquire);
        assert!(log[0].abandoned);
        assert_eq!(log[1].operation, Operation::Release);
        assert!(n.keys().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn unpolled_request_is_never_sent() {
        let n = SimNode::new("sim-0");
        let k = keys(&["a"]);
        drop(n.acquire(&k, "t", Duration::from_secs(1)));
        assert_eq!(n.queue_len(), 0);
        assert!(n.keys().is_empty());
        assert!(n.log().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn hung_node_queues_until_unhung() {
        let n = SimNode::new("sim-0");
        n.set_hung(true);
        let k = keys(&["a"]);
        let other = n.clone();
        let task = tokio::spawn(async move {
            other
                .acquire(&["a".to_string()], "t", Duration::from_secs(1))
                .await
        });
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(n.queue_len(), 1);
        assert!(n.keys().is_empty());
        n.set_hung(false);
        assert_eq!(task.await.ok(), Some(Ok(Acquire::Acquired)));
        assert_eq!(n.token_of("a").as_deref(), Some("t"));
        n.drained().await;
        let _ = k;
    }

    #[tokio::test(start_paused = true)]
    async fn down_and_fail_after() {
        let n = SimNode::new("sim-0");
        let k = keys(&["a"]);
        n.set_down(true);
        assert!(matches!(
            n.release(&k, "t").await,
            Err(NodeError::Connection(_))
        ));
        n.set_down(false);
        n.fail_after(1);
        assert_eq!(n.release(&k, "t").await, Ok(0));
        assert!(matches!(
            n.release(&k, "t").await,
            Err(NodeError::Connection(_))
        ));
        n.heal();
        assert_eq!(n.release(&k, "t").await, Ok(0));
        assert_eq!(n.calls(), 3);
        let refused = n.refused();
        assert_eq!(refused.len(), 2);
        assert!(refused
            .iter()
            .all(|r| r.operation == Operation::Release && r.token.as_deref() == Some("t")));
    }

    #[tokio::test(start_paused = true)]
    async fn early_expiry_and_put_key() {
        let n = SimNode::new("sim-0");
        n.put_key("a", "x", Some(Duration::from_secs(10)));
        n.put_key("b", "y", None);
        assert!(n.shorten_ttl("a", Duration::from_secs(1)));
        assert_eq!(
            n.keys().get("a").and_then(|k| k.ttl),
            Some(Duration::from_secs(1))
        );
        assert!(n.expire_now("b"));
        assert!(!n.expire_now("b"));
        assert_eq!(n.expire_all(), 1);
        assert!(n.keys().is_empty());
    }

    /// Polls a future once; `Some` if it completed.
    async fn futures_poll_once<F: std::future::Future + Unpin>(f: &mut F) -> Option<F::Output> {
        use std::task::Poll;
        std::future::poll_fn(|cx| match std::pin::Pin::new(&mut *f).poll(cx) {
            Poll::Ready(v) => Poll::Ready(Some(v)),
            Poll::Pending => Poll::Ready(None),
        })
        .await
    }
}
