//! Releasing and extending: every failure path releases on all nodes, a
//! dropped call or lock releases in the background, extend keeps or moves the
//! validity exactly, on simulated nodes and tokio's paused clock.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use redlock_core::{
    InvalidArgument, LockError, ManualClock, NodeError, NodeOutcome, Operation, Options, Redlock,
    Runtime,
};
use redlock_testkit::sim::SimNode;
use tokio::time::Instant;

const OTHER: &str = "someone-else";

fn locked(result: Result<redlock_core::Lock, LockError>) -> redlock_core::Lock {
    match result {
        Ok(l) => l,
        Err(e) => panic!("lock failed: {e}"),
    }
}

fn releases(node: &SimNode) -> usize {
    ops(node, Operation::Release).len()
}

// ----- release on every failure path ---------------------------------------

#[tokio::test(start_paused = true)]
async fn conflict_releases_what_the_free_nodes_took() {
    let (redlock, nodes) = setup(5, exact().retry_count(2));
    for node in &nodes[..3] {
        node.put_key("r", OTHER, None);
    }
    assert!(matches!(
        redlock.lock("r", ms(1_000)).await,
        Err(LockError::Conflict(_))
    ));
    settle(&nodes).await;
    assert_eq!(total_keys(&nodes), 3);
    assert_eq!(keys_with_token(&nodes, OTHER), 3);
    every_acquire_released(&nodes);
    // Each attempt released on every node that took the key (the free
    // ones) before the next attempt started; the nodes that answered
    // "held" took nothing and got no release.
    for node in &nodes[..3] {
        let kinds: Vec<Operation> = node.log().iter().map(|o| o.operation).collect();
        assert_eq!(kinds, [Operation::Acquire; 3], "{}", node.name());
    }
    for node in &nodes[3..] {
        let kinds: Vec<Operation> = node.log().iter().map(|o| o.operation).collect();
        assert_eq!(
            kinds,
            [
                Operation::Acquire,
                Operation::Release,
                Operation::Acquire,
                Operation::Release,
                Operation::Acquire,
                Operation::Release
            ],
            "{}",
            node.name()
        );
    }
}

#[tokio::test(start_paused = true)]
async fn node_errors_release_on_the_nodes_that_answered() {
    let (redlock, nodes) = setup(5, exact());
    nodes[0].set_down(true);
    nodes[1].fail_after(0);
    nodes[2].set_down(true);
    match redlock.lock("r", ms(1_000)).await {
        Err(LockError::NoQuorum(f)) => {
            assert_eq!(f.count(|o| *o == NodeOutcome::Acquired), 2);
        }
        other => panic!("{other:?}"),
    }
    settle(&nodes).await;
    assert_eq!(total_keys(&nodes), 0);
    every_acquire_released(&nodes);
    assert_eq!(releases(&nodes[3]), 1);
    assert_eq!(releases(&nodes[4]), 1);
}

#[tokio::test(start_paused = true)]
async fn timed_out_acquires_that_land_late_are_released_after_them() {
    // Three nodes answer after the node timeout: their acquires still land,
    // and the release sent after the timeout must not overtake them.
    let (redlock, nodes) = setup(5, exact().retry_count(2));
    for node in &nodes[..3] {
        node.set_delay(ms(80));
    }
    let t0 = Instant::now();
    match redlock.lock("r", ms(10_000)).await {
        Err(LockError::NoQuorum(f)) => {
            assert_eq!(f.count(|o| *o == NodeOutcome::TimedOut), 3);
            assert_eq!(f.attempts, 3);
        }
        other => panic!("{other:?}"),
    }
    settle(&nodes).await;
    assert!(Instant::now() - t0 < ms(10_000), "not the TTL doing it");
    assert_eq!(total_keys(&nodes), 0);
    every_acquire_released(&nodes);
    for node in &nodes[..3] {
        // Inspects are the background probe of a node that timed out.
        let log: Vec<_> = node
            .log()
            .into_iter()
            .filter(|o| o.operation != Operation::Inspect)
            .collect();
        assert_eq!(log.len(), 6);
        assert!(log.iter().all(|o| o.abandoned), "nobody waited for these");
        assert_eq!(log[0].outcome, NodeOutcome::Acquired);
        assert_eq!(log[1].outcome, NodeOutcome::Released(1));
    }
}

#[tokio::test(start_paused = true)]
async fn hung_nodes_get_their_release_after_their_acquire() {
    let (redlock, nodes) = setup(5, exact());
    for node in &nodes[..3] {
        node.set_hung(true);
    }
    assert!(matches!(
        redlock.lock("r", ms(10_000)).await,
        Err(LockError::NoQuorum(_))
    ));
    assert_eq!(nodes[0].queue_len(), 2, "acquire and release both queued");
    for node in &nodes[..3] {
        node.set_hung(false);
    }
    settle(&nodes).await;
    assert_eq!(total_keys(&nodes), 0);
    every_acquire_released(&nodes);
}

#[tokio::test(start_paused = true)]
async fn dropping_the_lock_call_mid_attempt_releases_in_the_background() {
    let (redlock, nodes) = setup(5, exact().node_timeout(ms(100)));
    for node in &nodes {
        node.set_delay(ms(50));
    }
    let t0 = Instant::now();
    let cut = tokio::time::timeout(ms(10), redlock.lock("r", ms(10_000))).await;
    assert!(cut.is_err(), "the call was cut off: {cut:?}");
    assert_eq!(nodes[0].queue_len(), 1, "the acquire is in flight");
    settle(&nodes).await;
    assert!(Instant::now() - t0 < ms(1_000));
    assert_eq!(total_keys(&nodes), 0);
    every_acquire_released(&nodes);
    for node in &nodes {
        assert_eq!(node.log()[0].outcome, NodeOutcome::Acquired);
        assert_eq!(node.log()[1].outcome, NodeOutcome::Released(1));
    }
}

#[tokio::test(start_paused = true)]
async fn dropping_the_lock_call_during_its_release_still_releases() {
    let (redlock, nodes) = setup(3, exact());
    nodes[0].put_key("r", OTHER, None);
    nodes[1].set_delay(ms(30));
    nodes[2].set_down(true);
    // The acquire round fails at once (held + down), the release round
    // waits for node 1 until 30 ms (its acquire, then its release); the
    // call is dropped in between.
    let cut = tokio::time::timeout(ms(15), redlock.lock("r", ms(10_000))).await;
    assert!(cut.is_err());
    assert_eq!(nodes[1].queue_len(), 2, "acquire and release both queued");
    nodes[2].heal();
    settle(&nodes).await;
    assert_eq!(total_keys(&nodes), 1);
    assert_eq!(keys_with_token(&nodes, OTHER), 1);
    every_acquire_released(&nodes);
}

#[tokio::test(start_paused = true)]
async fn dropping_the_lock_call_between_attempts_leaves_nothing() {
    let (redlock, nodes) = setup(3, exact().retry_count(5));
    nodes[0].put_key("r", OTHER, None);
    nodes[1].put_key("r", OTHER, None);
    let cut = tokio::time::timeout(ms(150), redlock.lock("r", ms(10_000))).await;
    assert!(cut.is_err());
    settle(&nodes).await;
    assert_eq!(ops(&nodes[2], Operation::Acquire).len(), 2);
    assert_eq!(total_keys(&nodes), 2);
    every_acquire_released(&nodes);
}

#[tokio::test(start_paused = true)]
async fn lock_dropped_without_unlock_is_released_in_the_background() {
    let (redlock, nodes) = setup(5, exact());
    let t0 = Instant::now();
    {
        let lock = locked(redlock.lock(["a", "b"], ms(60_000)).await);
        assert_eq!(total_keys(&nodes), 10);
        drop(lock);
    }
    settle(&nodes).await;
    assert!(Instant::now() - t0 < ms(1_000), "not the TTL doing it");
    assert_eq!(total_keys(&nodes), 0);
    for node in &nodes {
        assert_eq!(
            ops(node, Operation::Release)[0].outcome,
            NodeOutcome::Released(2)
        );
    }
}

#[tokio::test(start_paused = true)]
async fn leave_to_ttl_keeps_the_keys_until_they_expire() {
    let (redlock, nodes) = setup(3, exact());
    let lock = locked(redlock.lock("a", ms(1_000)).await);
    lock.leave_to_ttl();
    settle(&nodes).await;
    assert_eq!(total_keys(&nodes), 3);
    assert_eq!(releases(&nodes[0]), 0);
    tokio::time::advance(ms(1_000)).await;
    assert_eq!(total_keys(&nodes), 0);
}

#[tokio::test]
async fn without_a_spawning_runtime_a_dropped_lock_is_left_to_its_ttl() {
    // ManualClock cannot spawn: the keys stay until the clock passes the TTL.
    let clock = ManualClock::new();
    let rt: Arc<dyn Runtime> = Arc::new(clock.clone());
    let nodes = SimNode::many_with_runtime(3, rt);
    let redlock = match Redlock::new(nodes.clone(), exact().runtime(clock.clone())) {
        Ok(r) => r,
        Err(e) => panic!("{e}"),
    };
    let start = clock.now();
    let lock = locked(redlock.lock("a", ms(1_000)).await);
    assert_eq!(lock.valid_until(), start + ms(1_000) - ms(12));
    clock.advance(ms(500));
    assert_eq!(lock.remaining(), ms(488));
    drop(lock);
    assert_eq!(total_keys(&nodes), 3);
    assert_eq!(releases(&nodes[0]), 0);
    clock.advance(ms(499));
    assert_eq!(total_keys(&nodes), 3);
    clock.advance(ms(1));
    assert_eq!(total_keys(&nodes), 0);
}

// ----- unlock ---------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn unlocking_an_expired_lock_is_ok() {
    let (redlock, nodes) = setup(5, exact());
    let lock = locked(redlock.lock("r", ms(100)).await);
    tokio::time::advance(ms(200)).await;
    assert_eq!(total_keys(&nodes), 0);
    assert!(lock.is_expired());
    assert!(redlock.unlock(&lock).await.is_ok());
    for node in &nodes {
        assert_eq!(
            ops(node, Operation::Release)[0].outcome,
            NodeOutcome::Released(0)
        );
    }
    // Released once: a second unlock or an extend says so.
    assert!(matches!(
        redlock.unlock(&lock).await,
        Err(LockError::Released)
    ));
    let mut lock = lock;
    assert!(matches!(
        lock.extend(ms(100)).await,
        Err(LockError::Released)
    ));
    drop(lock);
    settle(&nodes).await;
    assert_eq!(releases(&nodes[0]), 1, "no release on drop after unlock");
}

#[tokio::test(start_paused = true)]
async fn unlock_releases_only_our_token() {
    let (redlock, nodes) = setup(3, exact());
    let lock = locked(redlock.lock("r", ms(1_000)).await);
    nodes[0].put_key("r", OTHER, None);
    assert!(lock.unlock().await.is_ok());
    settle(&nodes).await;
    assert_eq!(nodes[0].token_of("r").as_deref(), Some(OTHER));
    assert_eq!(total_keys(&nodes), 1);
}

#[tokio::test(start_paused = true)]
async fn unlock_without_quorum_fails_and_drop_retries_in_the_background() {
    let (redlock, nodes) = setup(5, exact());
    let lock = locked(redlock.lock("r", ms(60_000)).await);
    for node in &nodes[..3] {
        node.set_down(true);
    }
    match lock.unlock().await {
        Err(LockError::NoQuorum(f)) => {
            assert_eq!(f.operation, Operation::Release);
            assert_eq!(f.count(|o| *o == NodeOutcome::Released(1)), 2);
        }
        other => panic!("{other:?}"),
    }
    // The failed lock value was dropped: a background release is spawned.
    // Heal before it gets to run (the current-thread runtime has not yielded).
    for node in &nodes {
        node.heal();
    }
    settle(&nodes).await;
    assert_eq!(total_keys(&nodes), 0);
}

#[tokio::test(start_paused = true)]
async fn quit_closes_every_node() {
    let (redlock, nodes) = setup(3, exact());
    assert!(redlock.quit().await.is_ok());
    assert!(nodes.iter().all(SimNode::is_closed));
    match redlock.lock("r", ms(1_000)).await {
        Err(LockError::NoQuorum(f)) => {
            assert_eq!(f.count(|o| *o == NodeOutcome::Error(NodeError::Closed)), 3);
        }
        other => panic!("{other:?}"),
    }
}

// ----- extend ---------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn extend_moves_the_validity_from_the_extension_start() {
    let (redlock, nodes) = setup(5, exact());
    for node in &nodes {
        node.set_delay(ms(2));
    }
    let t0 = Instant::now().into_std();
    let mut lock = locked(redlock.lock("r", ms(1_000)).await);
    assert_eq!(lock.valid_until(), t0 + ms(1_000) - ms(12));
    tokio::time::advance(ms(300)).await;
    let t1 = Instant::now().into_std();
    assert!(lock.extend(ms(2_000)).await.is_ok());
    assert_eq!(lock.valid_until(), t1 + ms(2_000) - ms(22));
    assert_eq!(lock.ttl(), ms(2_000));
    assert_eq!(lock.acquired_at(), t0, "acquired_at is the acquisition");
    assert_eq!(lock.remaining(), ms(2_000) - ms(22) - ms(2));
    for node in &nodes {
        assert_eq!(node.keys()["r"].ttl, Some(ms(2_000)));
    }
    // Through the Redlock too, and shorter than before.
    assert!(redlock.extend(&mut lock, ms(500)).await.is_ok());
    assert_eq!(
        lock.valid_until(),
        t1 + ms(2) + ms(500) - ms(7),
        "extension started when the previous one returned"
    );
    assert!(lock.unlock().await.is_ok());
    settle(&nodes).await;
    assert_eq!(total_keys(&nodes), 0);
}

#[tokio::test(start_paused = true)]
async fn failed_extend_keeps_the_old_validity_and_does_not_release() {
    let (redlock, nodes) = setup(5, exact());
    let mut lock = locked(redlock.lock("r", ms(1_000)).await);
    let before = lock.valid_until();
    tokio::time::advance(ms(100)).await;
    for node in &nodes[..3] {
        node.set_down(true);
    }
    match lock.extend(ms(5_000)).await {
        Err(LockError::NoQuorum(f)) => {
            assert_eq!(f.operation, Operation::Extend);
            assert_eq!(f.count(|o| *o == NodeOutcome::Extended), 2);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(lock.valid_until(), before);
    assert_eq!(lock.ttl(), ms(1_000));
    assert!(!lock.is_expired());
    settle(&nodes).await;
    assert_eq!(keys_with_token(&nodes, lock.token()), 5, "not released");
    assert!(nodes.iter().all(|n| releases(n) == 0));

    for node in &nodes {
        node.heal();
    }
    assert!(lock.unlock().await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn failed_shorter_extend_lowers_the_validity_to_what_the_keys_promise() {
    let (redlock, nodes) = setup(5, exact().node_timeout(ms(500)));
    let mut lock = locked(redlock.lock("r", ms(1_000)).await);
    let before = lock.valid_until();
    tokio::time::advance(ms(100)).await;
    let t1 = Instant::now().into_std();
    // Slow nodes: the extension to 100 ms runs out of validity (97 ms), but
    // its requests still land at 300 ms and cut the keys to expire at 400 ms.
    for node in &nodes {
        node.set_delay(ms(200));
    }
    match redlock.extend(&mut lock, ms(100)).await {
        Err(LockError::ValidityExpired(f)) => assert_eq!(f.operation, Operation::Extend),
        other => panic!("{other:?}"),
    }
    assert_eq!(lock.valid_until(), t1 + ms(97), "not the old {before:?}");
    settle(&nodes).await;
    assert!(nodes.iter().all(|n| releases(n) == 0), "not released");
    let now = Instant::now().into_std();
    for node in &nodes {
        let ttl = node.keys()["r"].ttl.unwrap_or(Duration::MAX);
        assert!(
            now + ttl >= lock.valid_until(),
            "{}: key expires before the lock's validity",
            node.name()
        );
    }
    // A failed longer extension keeps the old validity exactly.
    let kept = lock.valid_until();
    tokio::time::advance(ms(10)).await;
    for node in &nodes[..3] {
        node.set_down(true);
    }
    assert!(lock.extend(ms(10_000)).await.is_err());
    assert_eq!(lock.valid_until(), kept);
}

#[tokio::test(start_paused = true)]
async fn extend_after_expiry_is_lost_and_sends_nothing() {
    let (redlock, nodes) = setup(3, exact());
    let mut lock = locked(redlock.lock("r", ms(100)).await);
    let before = lock.valid_until();
    tokio::time::advance(ms(98)).await;
    assert!(lock.is_expired());
    match lock.extend(ms(1_000)).await {
        Err(LockError::Lost(f)) => assert_eq!(f.operation, Operation::Extend),
        other => panic!("{other:?}"),
    }
    assert_eq!(lock.valid_until(), before);
    assert!(nodes.iter().all(|n| ops(n, Operation::Extend).is_empty()));
}

#[tokio::test(start_paused = true)]
async fn extend_of_keys_taken_by_another_token_is_lost() {
    let (redlock, nodes) = setup(5, exact());
    let mut lock = locked(redlock.lock("r", ms(1_000)).await);
    let before = lock.valid_until();
    for node in &nodes[..3] {
        node.put_key("r", OTHER, Some(ms(700)));
    }
    match lock.extend(ms(5_000)).await {
        Err(LockError::Lost(f)) => {
            assert_eq!(f.count(|o| *o == NodeOutcome::NotHeld), 3);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(lock.valid_until(), before);
    for node in &nodes[..3] {
        let k = &node.keys()["r"];
        assert_eq!(k.token, OTHER);
        assert_eq!(k.ttl, Some(ms(700)), "the other's key is untouched");
    }
}

#[tokio::test(start_paused = true)]
async fn extend_never_recreates_a_vanished_key() {
    let (redlock, nodes) = setup(5, exact());
    let mut lock = locked(redlock.lock(["a", "b"], ms(1_000)).await);
    // A minority lost one key each: the quorum still extends.
    assert!(nodes[0].expire_now("a"));
    assert!(nodes[1].expire_now("b"));
    assert!(lock.extend(ms(2_000)).await.is_ok());
    assert_eq!(nodes[0].keys().len(), 1, "a not recreated, b untouched");
    assert_eq!(nodes[0].keys()["b"].ttl, Some(ms(1_000)));
    assert_eq!(nodes[1].keys().len(), 1);
    for node in &nodes[2..] {
        assert_eq!(node.keys().len(), 2);
        assert_eq!(node.keys()["a"].ttl, Some(ms(2_000)));
    }
    // A majority lost them: lost, and still nothing recreated.
    assert_eq!(nodes[2].expire_all(), 2);
    assert!(nodes[3].shorten_ttl("a", Duration::ZERO));
    match lock.extend(ms(3_000)).await {
        Err(LockError::Lost(_)) => {}
        other => panic!("{other:?}"),
    }
    assert!(nodes[2].keys().is_empty());
    assert!(!nodes[3].keys().contains_key("a"));
    assert_eq!(
        nodes[4].keys()["a"].ttl,
        Some(ms(3_000)),
        "still ours there"
    );
}

#[tokio::test(start_paused = true)]
async fn extend_checks_its_ttl() {
    let (redlock, nodes) = setup(3, exact());
    let mut lock = locked(redlock.lock("r", ms(1_000)).await);
    let e = lock.extend(Duration::ZERO).await.err();
    assert!(
        matches!(
            e,
            Some(LockError::InvalidArgument(InvalidArgument::ZeroTtl))
        ),
        "{e:?}"
    );
    let e = lock.extend(ms(1)).await.err();
    assert!(
        matches!(
            e,
            Some(LockError::InvalidArgument(
                InvalidArgument::TtlTooSmall { .. }
            ))
        ),
        "{e:?}"
    );
    assert!(nodes.iter().all(|n| ops(n, Operation::Extend).is_empty()));
}

#[tokio::test(start_paused = true)]
async fn extend_reports_node_errors_to_the_hook() {
    let (options, seen) = with_hook(exact());
    let (redlock, nodes) = setup(3, options);
    let mut lock = locked(redlock.lock("r", ms(1_000)).await);
    nodes[1].set_down(true);
    assert!(lock.extend(ms(1_000)).await.is_ok());
    assert_eq!(
        events(&seen),
        vec![("sim-1".to_string(), Operation::Extend, true)]
    );
    let _ = Options::new();
}
