//! Helpers shared by the deterministic core tests: simulated nodes on tokio's
//! paused clock.

#![allow(dead_code)]

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use redlock_core::{NodeOutcome, Operation, Options, Redlock};
use redlock_testkit::sim::{drain_all, LoggedOp, SimNode};

/// Milliseconds.
pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Options with no retries, zero jitter and an explicit node timeout, so that
/// every duration in a test is exact.
pub fn exact() -> Options {
    Options::new()
        .retry_count(0)
        .retry_delay(ms(100))
        .retry_jitter(Duration::ZERO)
        .node_timeout(ms(50))
}

/// `n` simulated nodes and a Redlock over them.
pub fn setup(n: usize, options: Options) -> (Redlock, Vec<SimNode>) {
    let nodes = SimNode::many(n);
    let redlock = match Redlock::new(nodes.clone(), options) {
        Ok(r) => r,
        Err(e) => panic!("valid options rejected: {e}"),
    };
    (redlock, nodes)
}

/// Lets spawned background work (releases of dropped locks) run, then waits
/// until every node processed everything sent to it.
pub async fn settle(nodes: &[SimNode]) {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    drain_all(nodes).await;
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    drain_all(nodes).await;
}

/// Live keys over all nodes.
pub fn total_keys(nodes: &[SimNode]) -> usize {
    nodes.iter().map(|n| n.keys().len()).sum()
}

/// How many live keys on all nodes hold `token`.
pub fn keys_with_token(nodes: &[SimNode], token: &str) -> usize {
    nodes
        .iter()
        .map(|n| n.keys().values().filter(|k| k.token == token).count())
        .sum()
}

/// The operations of one kind a node processed.
pub fn ops(node: &SimNode, operation: Operation) -> Vec<LoggedOp> {
    node.log()
        .into_iter()
        .filter(|o| o.operation == operation)
        .collect()
}

/// Asserts that on every node, every acquire that was not answered "held"
/// (and so may have taken keys) is followed later
/// in that node's order by a release with the same token.
pub fn every_acquire_released(nodes: &[SimNode]) {
    for node in nodes {
        let log = node.log();
        for (i, op) in log.iter().enumerate() {
            // An acquire answered "held" took nothing and needs no release.
            if op.operation == Operation::Acquire && op.outcome != NodeOutcome::Held {
                let released = log[i + 1..]
                    .iter()
                    .any(|later| later.operation == Operation::Release && later.token == op.token);
                assert!(
                    released,
                    "{}: acquire #{} ({:?}) has no release after it: {log:#?}",
                    node.name(),
                    op.seq,
                    op.outcome
                );
            }
        }
    }
}

/// A collected `on_node_error` event: node, operation, and whether it was an
/// error (`true`) or a timeout (`false`).
pub type Event = (String, Operation, bool);

/// Options with a hook that records every node error event.
pub fn with_hook(options: Options) -> (Options, Arc<Mutex<Vec<Event>>>) {
    let events: Arc<Mutex<Vec<Event>>> = Arc::default();
    let sink = events.clone();
    let options = options.on_node_error(move |e| {
        sink.lock().unwrap_or_else(PoisonError::into_inner).push((
            e.node.to_owned(),
            e.operation,
            e.error.is_some(),
        ));
    });
    (options, events)
}

/// The events recorded so far.
pub fn events(events: &Arc<Mutex<Vec<Event>>>) -> Vec<Event> {
    events
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
}

/// Counts outcomes matching `pred` in a list of node outcomes.
pub fn count(outcomes: &[NodeOutcome], pred: impl Fn(&NodeOutcome) -> bool) -> usize {
    outcomes.iter().filter(|o| pred(o)).count()
}
