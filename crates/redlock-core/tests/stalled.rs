//! A node that stops draining: its backlog stays bounded because requests
//! it was never sent cost no release; releases wait long enough for a
//! loaded node; a released lock has no validity left. Simulated nodes on
//! tokio's paused clock.

mod common;

use std::time::Duration;

use common::*;
use redlock_core::{NodeError, Operation};

/// The backlog limit of the stalled node in these tests.
const LIMIT: usize = 4;

#[tokio::test(start_paused = true)]
async fn a_stalled_node_queues_at_most_its_backlog() {
    let (redlock, nodes) = setup(3, exact());
    nodes[2].set_backlog_limit(Some(LIMIT));
    nodes[2].set_hung(true);
    let mut most = 0;
    for i in 0..200 {
        let lock = match redlock.lock(format!("r{}", i % 7), ms(10_000)).await {
            Ok(l) => l,
            Err(e) => panic!("lock {i} with one of three stalled: {e}"),
        };
        if let Err(e) = lock.unlock().await {
            panic!("unlock {i} with one of three stalled: {e}");
        }
        most = most.max(nodes[2].queue_len());
    }
    // The acquires it admitted, and the release of each: nothing else.
    assert!(
        most <= 2 * LIMIT,
        "the stalled node queued {most} requests (limit {LIMIT})"
    );
    // Acquires beyond the limit were refused without being sent, and no
    // release was ever sent for them (none refused either: releases are
    // always admitted).
    let refused = nodes[2].refused();
    assert!(refused.len() > 150, "only {} refused", refused.len());
    assert!(refused
        .iter()
        .all(|c| c.operation == Operation::Acquire && matches!(c.error, NodeError::Backlog(_))));
    nodes[2].set_hung(false);
    settle(&nodes).await;
    assert_eq!(total_keys(&nodes), 0, "keys left after the node drained");
    every_acquire_released(&nodes);
}

#[tokio::test(start_paused = true)]
async fn a_failed_attempt_sends_no_release_where_its_acquire_was_not_sent() {
    let (redlock, nodes) = setup(3, exact());
    for node in &nodes[1..] {
        node.set_backlog_limit(Some(0));
    }
    assert!(redlock.lock("r", ms(10_000)).await.is_err());
    settle(&nodes).await;
    for node in &nodes[1..] {
        assert!(
            node.log().is_empty(),
            "{} was sent {:?}",
            node.name(),
            node.log()
        );
    }
    let kinds: Vec<Operation> = nodes[0].log().iter().map(|o| o.operation).collect();
    assert_eq!(kinds, [Operation::Acquire, Operation::Release]);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_lock_releases_only_where_it_was_sent() {
    let (redlock, nodes) = setup(3, exact());
    nodes[2].set_backlog_limit(Some(0));
    let lock = redlock.lock("r", ms(10_000)).await.expect("two of three");
    drop(lock);
    settle(&nodes).await;
    assert!(nodes[2].log().is_empty(), "{:?}", nodes[2].log());
    assert_eq!(total_keys(&nodes), 0);
}

#[tokio::test(start_paused = true)]
async fn releases_wait_for_a_loaded_node_beyond_the_acquire_timeout() {
    // Default options: the per-node timeout is a tenth of the TTL (10 ms),
    // far less than a loaded node may need to answer a release.
    let (redlock, nodes) = setup(3, redlock_core::Options::new().retry_count(0));
    let lock = redlock.lock("r", ms(100)).await.expect("lock");
    for node in &nodes[1..] {
        node.set_delay(ms(300));
    }
    tokio::time::sleep(ms(200)).await; // the TTL has passed
    lock.unlock()
        .await
        .expect("the release waits for the loaded nodes");
}

#[tokio::test(start_paused = true)]
async fn a_released_lock_has_no_validity_left() {
    let (redlock, _nodes) = setup(3, exact());
    let lock = redlock.lock("r", ms(10_000)).await.expect("lock");
    assert!(lock.remaining() > Duration::from_secs(9));
    let held = redlock.lock("r2", ms(10_000)).await.expect("lock");
    redlock.unlock(&held).await.expect("unlock");
    assert_eq!(held.remaining(), Duration::ZERO);
    assert!(held.is_expired());
    lock.unlock().await.expect("unlock");
}
