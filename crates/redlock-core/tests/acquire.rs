//! Acquiring: quorum, early decision, validity and drift, retries, error
//! kinds, multi-resource locks and argument checks, on simulated nodes and
//! tokio's paused clock.

mod common;

use std::time::Duration;

use common::*;
use redlock_core::{
    InvalidArgument, LockError, LockOptions, NodeOutcome, Operation, Options, Redlock, Retries,
    RetryPolicy, MAX_TTL,
};
use redlock_testkit::sim::SimNode;
use tokio::time::Instant;

const OTHER: &str = "someone-else";

fn failure(e: &LockError) -> &redlock_core::Failure {
    match e.failure() {
        Some(f) => f,
        None => panic!("error without summary: {e:?}"),
    }
}

// ----- quorum ---------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn quorum_is_a_strict_majority_for_1_to_7_nodes() {
    for n in 1..=7usize {
        let q = n / 2 + 1;
        let (redlock, nodes) = setup(n, exact());
        assert_eq!(redlock.quorum(), q, "n = {n}");

        // Exactly a quorum up: acquired, on exactly those nodes.
        for node in &nodes[q..] {
            node.set_down(true);
        }
        let lock = match redlock.lock("r", ms(1000)).await {
            Ok(l) => l,
            Err(e) => panic!("n = {n}, {q} up: {e}"),
        };
        for (i, node) in nodes.iter().enumerate() {
            let expect = usize::from(i < q);
            assert_eq!(node.keys().len(), expect, "n = {n}, node {i}");
        }
        for node in &nodes {
            node.heal();
        }
        assert!(lock.unlock().await.is_ok());
        settle(&nodes).await;
        assert_eq!(total_keys(&nodes), 0, "n = {n}");

        // One fewer than a quorum up: infrastructure failure.
        for node in &nodes[q - 1..] {
            node.set_down(true);
        }
        match redlock.lock("r", ms(1000)).await {
            Err(LockError::NoQuorum(f)) => {
                assert_eq!(f.quorum, q);
                assert_eq!(f.count(|o| matches!(o, NodeOutcome::Acquired)), q - 1);
            }
            other => panic!("n = {n}, {} up: {other:?}", q - 1),
        }
        for node in &nodes {
            node.heal();
        }
        settle(&nodes).await;
        assert_eq!(total_keys(&nodes), 0, "n = {n}");

        // One fewer than a quorum free, the rest held: conflict.
        for node in &nodes[q - 1..] {
            node.put_key("r", OTHER, None);
        }
        match redlock.lock("r", ms(1000)).await {
            Err(LockError::Conflict(f)) => {
                assert_eq!(f.count(|o| matches!(o, NodeOutcome::Held)), n - q + 1);
            }
            other => panic!("n = {n}, {} held: {other:?}", n - q + 1),
        }
        settle(&nodes).await;
        assert_eq!(
            total_keys(&nodes),
            n - q + 1,
            "n = {n}: only the other's keys"
        );
        assert_eq!(keys_with_token(&nodes, OTHER), n - q + 1);
    }
}

// ----- early decision -------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn hung_minority_does_not_delay_success() {
    let (redlock, nodes) = setup(5, exact().node_timeout(ms(500)));
    for node in &nodes[..3] {
        node.set_delay(ms(5));
    }
    nodes[3].set_hung(true);
    nodes[4].set_hung(true);
    let t0 = Instant::now();
    let lock = match redlock.lock("r", ms(10_000)).await {
        Ok(l) => l,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(
        Instant::now() - t0,
        ms(5),
        "decided when the third node answered"
    );
    assert!(lock.unlock().await.is_ok());
    assert_eq!(Instant::now() - t0, ms(10));

    // The hung nodes got the acquire and, after it, the release.
    nodes[3].set_hung(false);
    nodes[4].set_hung(false);
    settle(&nodes).await;
    assert_eq!(total_keys(&nodes), 0);
    every_acquire_released(&nodes);
    for node in &nodes[3..] {
        let log = node.log();
        assert_eq!(log.len(), 2, "{log:?}");
        assert_eq!(log[0].operation, Operation::Acquire);
        assert_eq!(log[1].operation, Operation::Release);
    }
}

#[tokio::test(start_paused = true)]
async fn conflicting_majority_fails_fast_without_waiting_for_hung_nodes() {
    let (redlock, nodes) = setup(5, exact().node_timeout(ms(500)));
    for node in &nodes[..3] {
        node.put_key("r", OTHER, None);
        node.set_delay(ms(3));
    }
    nodes[3].set_hung(true);
    nodes[4].set_hung(true);
    let t0 = Instant::now();
    let err = match redlock.lock("r", ms(10_000)).await {
        Err(e) => e,
        Ok(l) => panic!("acquired a held resource: {l:?}"),
    };
    // 3 ms for the held answers; no release goes to a node that answered
    // "held" (it took nothing), so the quorum of releases is immediate.
    assert_eq!(Instant::now() - t0, ms(3));
    assert!(err.is_conflict(), "{err:?}");
    let f = failure(&err);
    assert_eq!(f.count(|o| *o == NodeOutcome::Held), 3);
    assert_eq!(f.count(|o| *o == NodeOutcome::Undecided), 2);

    nodes[3].set_hung(false);
    nodes[4].set_hung(false);
    settle(&nodes).await;
    every_acquire_released(&nodes);
    assert_eq!(total_keys(&nodes), 3);
    assert_eq!(keys_with_token(&nodes, OTHER), 3);
}

#[tokio::test(start_paused = true)]
async fn all_nodes_are_asked_at_once() {
    let (redlock, nodes) = setup(5, exact().node_timeout(ms(500)));
    for node in &nodes {
        node.set_delay(ms(40));
    }
    let t0 = Instant::now();
    let lock = redlock.lock("r", ms(10_000)).await;
    assert!(lock.is_ok());
    // Sequential requests would take 3 * 40 ms.
    assert_eq!(Instant::now() - t0, ms(40));
    for node in &nodes {
        assert_eq!(ops(node, Operation::Acquire).len(), 1);
        assert_eq!(ops(node, Operation::Acquire)[0].at, t0.into_std() + ms(40));
    }
}

// ----- validity and drift ---------------------------------------------------

#[tokio::test(start_paused = true)]
async fn validity_is_start_plus_ttl_minus_drift_exactly() {
    // (ttl ms, drift factor, expected drift ms)
    let cases = [
        (10_000, 0.01, 102),
        (1_000, 0.01, 12),
        (1_099, 0.01, 12),
        (10, 0.01, 2),
        (30_000, 0.0, 2),
        (5_000, 0.5, 2_502),
    ];
    for (ttl, factor, drift) in cases {
        let (redlock, nodes) = setup(3, exact().drift_factor(factor).node_timeout(ms(2)));
        for node in &nodes {
            node.set_delay(ms(1));
        }
        assert_eq!(redlock.drift(ms(ttl)), ms(drift), "ttl {ttl}, f {factor}");
        let start = Instant::now().into_std();
        let lock = match redlock.lock("r", ms(ttl)).await {
            Ok(l) => l,
            Err(e) => panic!("ttl {ttl}: {e}"),
        };
        assert_eq!(
            lock.acquired_at(),
            start,
            "start is before the first request"
        );
        assert_eq!(lock.valid_until(), start + ms(ttl) - ms(drift), "ttl {ttl}");
        assert_eq!(lock.remaining(), ms(ttl) - ms(drift) - ms(1));
        assert_eq!(lock.ttl(), ms(ttl));
        // The nodes hold the full TTL, counted from when they processed it.
        for node in &nodes {
            assert_eq!(node.keys()["r"].ttl, Some(ms(ttl)));
            assert_eq!(node.keys()["r"].token, lock.token());
        }
        tokio::time::advance(ms(ttl - drift - 1)).await;
        assert!(lock.is_expired());
        assert_eq!(lock.remaining(), Duration::ZERO);
        assert!(lock.unlock().await.is_ok());
    }
}

#[tokio::test(start_paused = true)]
async fn quorum_just_before_valid_until_succeeds() {
    // ttl 100 ms: drift 3 ms, validity 97 ms.
    let (redlock, nodes) = setup(3, exact().node_timeout(ms(200)));
    for node in &nodes {
        node.set_delay(ms(96));
    }
    let lock = match redlock.lock("r", ms(100)).await {
        Ok(l) => l,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(lock.remaining(), ms(1));
}

#[tokio::test(start_paused = true)]
async fn quorum_reached_at_valid_until_fails_and_leaves_nothing() {
    // ttl 100 ms: drift 3 ms, validity 97 ms; the quorum answers at 97 ms.
    let (redlock, nodes) = setup(3, exact().node_timeout(ms(200)));
    for node in &nodes {
        node.set_delay(ms(97));
    }
    let t0 = Instant::now();
    match redlock.lock("r", ms(100)).await {
        Err(LockError::ValidityExpired(f)) => {
            assert_eq!(f.count(|o| *o == NodeOutcome::Acquired), 3);
            assert_eq!(f.attempts, 1);
        }
        other => panic!("{other:?}"),
    }
    settle(&nodes).await;
    // Keys were set at 97 ms with a 100 ms TTL: gone now only if released.
    assert!(Instant::now() - t0 < ms(197), "{:?}", Instant::now() - t0);
    assert_eq!(total_keys(&nodes), 0);
    every_acquire_released(&nodes);
}

#[tokio::test(start_paused = true)]
async fn quorum_never_reached_before_valid_until_is_validity_expired() {
    // Nodes slower than the validity, node timeout longer than the TTL: the
    // round is cut at valid_until.
    let (redlock, nodes) = setup(3, exact().node_timeout(ms(1_000)));
    for node in &nodes {
        node.set_delay(ms(150));
    }
    let t0 = Instant::now();
    match redlock.lock("r", ms(100)).await {
        Err(LockError::ValidityExpired(f)) => {
            assert_eq!(f.count(|o| *o == NodeOutcome::Undecided), 3);
        }
        other => panic!("{other:?}"),
    }
    // Cut at 97 ms, then the release quorum (sent at 97, queued behind the
    // acquires) answers at 247 ms.
    assert_eq!(Instant::now() - t0, ms(247));
    settle(&nodes).await;
    assert_eq!(total_keys(&nodes), 0);
    every_acquire_released(&nodes);
}

// ----- retries --------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn retry_count_n_makes_n_plus_one_attempts_with_zero_jitter() {
    for n in [0u32, 1, 3] {
        let (redlock, nodes) = setup(3, exact().retry_count(i64::from(n)));
        for node in &nodes {
            node.put_key("r", OTHER, None);
        }
        let t0 = Instant::now();
        match redlock.lock("r", ms(1_000)).await {
            Err(LockError::Conflict(f)) => assert_eq!(f.attempts, n + 1),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            Instant::now() - t0,
            ms(100) * n,
            "exactly the retry delay between attempts"
        );
        for node in &nodes {
            assert_eq!(ops(node, Operation::Acquire).len(), n as usize + 1);
            // A node that answered "held" took nothing: no release is sent.
            assert_eq!(ops(node, Operation::Release).len(), 0);
        }
    }
}

#[tokio::test(start_paused = true)]
async fn try_lock_is_one_attempt_whatever_the_options() {
    let (redlock, nodes) = setup(3, exact().retry_count(10));
    nodes[0].put_key("r", OTHER, None);
    nodes[1].put_key("r", OTHER, None);
    let t0 = Instant::now();
    match redlock.try_lock("r", ms(1_000)).await {
        Err(LockError::Conflict(f)) => assert_eq!(f.attempts, 1),
        other => panic!("{other:?}"),
    }
    assert_eq!(Instant::now(), t0);
    assert_eq!(ops(&nodes[2], Operation::Acquire).len(), 1);
}

#[tokio::test(start_paused = true)]
async fn retries_until_the_holder_goes_away() {
    let (redlock, nodes) = setup(3, exact().retry_count(10));
    for node in &nodes {
        node.put_key("r", OTHER, Some(ms(250)));
    }
    let t0 = Instant::now();
    let lock = match redlock.lock("r", ms(1_000)).await {
        Ok(l) => l,
        Err(e) => panic!("{e}"),
    };
    // Attempts at 0, 100, 200 fail; the one at 300 succeeds.
    assert_eq!(lock.attempts(), 4);
    assert_eq!(Instant::now() - t0, ms(300));
    assert_eq!(lock.acquired_at(), t0.into_std() + ms(300));
}

#[tokio::test(start_paused = true)]
async fn unlimited_retries_stop_at_the_deadline() {
    let options = exact()
        .retry_count(-1)
        .retry_delay(ms(100))
        .retry_deadline(ms(1_000));
    let (redlock, nodes) = setup(5, options);
    for node in &nodes {
        node.put_key("r", OTHER, None);
    }
    let t0 = Instant::now();
    match redlock.lock("r", ms(1_000)).await {
        Err(LockError::DeadlineExceeded(f)) => {
            // Attempts at 0, 100, ..., 900; the next would start at 1000.
            assert_eq!(f.attempts, 10);
            assert_eq!(f.nodes.len(), 5, "one entry per node, not per attempt");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(Instant::now() - t0, ms(900));
    assert_eq!(ops(&nodes[0], Operation::Acquire).len(), 10);
}

#[tokio::test(start_paused = true)]
async fn unlimited_retries_with_jitter_only_are_accepted() {
    let policy = RetryPolicy::default()
        .retries(Retries::Forever)
        .delay(Duration::ZERO)
        .jitter(ms(10))
        .deadline(Some(ms(200)));
    let (redlock, nodes) = setup(3, exact());
    for node in &nodes {
        node.put_key("r", OTHER, None);
    }
    let t0 = Instant::now();
    match redlock
        .acquire(&LockOptions::new("r", ms(1_000)).retry(policy))
        .await
    {
        Err(LockError::DeadlineExceeded(f)) => assert!(f.attempts >= 20, "{}", f.attempts),
        other => panic!("{other:?}"),
    }
    assert!(Instant::now() - t0 <= ms(200));
}

#[tokio::test(start_paused = true)]
async fn jitter_stays_within_its_bound() {
    let (redlock, nodes) = setup(
        3,
        exact()
            .retry_count(5)
            .retry_delay(ms(100))
            .retry_jitter(ms(50)),
    );
    for node in &nodes {
        node.put_key("r", OTHER, None);
    }
    let t0 = Instant::now();
    assert!(redlock.lock("r", ms(1_000)).await.is_err());
    let spent = Instant::now() - t0;
    assert!(spent >= ms(500) && spent <= ms(750), "{spent:?}");
    let starts: Vec<_> = ops(&nodes[0], Operation::Acquire)
        .iter()
        .map(|o| o.at)
        .collect();
    assert_eq!(starts.len(), 6);
    for w in starts.windows(2) {
        let gap = w[1] - w[0];
        assert!(gap >= ms(100) && gap <= ms(150), "{gap:?}");
    }
}

// ----- error kinds and summaries -------------------------------------------

#[tokio::test(start_paused = true)]
async fn error_kinds_tell_contention_infrastructure_and_time_apart() {
    // Contention.
    let (redlock, nodes) = setup(3, exact());
    nodes[0].put_key("r", OTHER, None);
    nodes[1].put_key("r", OTHER, None);
    let e = redlock.lock("r", ms(1_000)).await.err();
    assert!(matches!(e, Some(LockError::Conflict(_))), "{e:?}");

    // Infrastructure: errors.
    let (redlock, nodes) = setup(3, exact());
    nodes[0].set_down(true);
    nodes[1].fail_after(0);
    let e = redlock.lock("r", ms(1_000)).await.err();
    match &e {
        Some(LockError::NoQuorum(f)) => {
            assert_eq!(
                f.count(|o| matches!(
                    o,
                    NodeOutcome::Error(redlock_core::NodeError::Connection(_))
                )),
                2
            );
            assert!(!e.as_ref().is_some_and(|e| e.is_conflict()));
        }
        other => panic!("{other:?}"),
    }

    // Infrastructure: timeouts.
    let (redlock, nodes) = setup(3, exact());
    nodes[0].set_hung(true);
    nodes[1].set_delay(ms(60));
    let t0 = Instant::now();
    match redlock.lock("r", ms(1_000)).await {
        Err(LockError::NoQuorum(f)) => {
            assert_eq!(f.count(|o| *o == NodeOutcome::TimedOut), 2);
        }
        other => panic!("{other:?}"),
    }
    assert!(Instant::now() - t0 >= ms(50));

    // Time: the validity ran out.
    let (redlock, nodes) = setup(3, exact().node_timeout(ms(500)));
    for node in &nodes {
        node.set_delay(ms(200));
    }
    let e = redlock.lock("r", ms(100)).await.err();
    assert!(matches!(e, Some(LockError::ValidityExpired(_))), "{e:?}");
}

#[tokio::test(start_paused = true)]
async fn failure_summary_has_one_entry_per_node_in_order() {
    let (redlock, nodes) = setup(5, exact().retry_count(7));
    nodes[0].put_key("r", OTHER, None);
    nodes[1].put_key("r", OTHER, None);
    nodes[2].set_down(true);
    let e = match redlock.lock("r", ms(1_000)).await {
        Err(e) => e,
        Ok(l) => panic!("{l:?}"),
    };
    let f = failure(&e);
    assert_eq!(f.attempts, 8);
    assert_eq!(f.operation, Operation::Acquire);
    assert_eq!(f.resources, vec!["r".to_string()]);
    assert_eq!(f.quorum, 3);
    let ids: Vec<&str> = f.nodes.iter().map(|r| r.node.as_str()).collect();
    assert_eq!(ids, ["sim-0", "sim-1", "sim-2", "sim-3", "sim-4"]);
    assert_eq!(f.nodes[0].outcome, NodeOutcome::Held);
    assert_eq!(f.nodes[1].outcome, NodeOutcome::Held);
    assert!(matches!(f.nodes[2].outcome, NodeOutcome::Error(_)));
    assert_eq!(f.nodes[3].outcome, NodeOutcome::Acquired);
    assert_eq!(f.nodes[4].outcome, NodeOutcome::Acquired);
    assert!(e.to_string().contains("8 attempts"), "{e}");
}

// ----- node error hook -------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn node_error_hook_names_the_failing_node() {
    let (options, seen) = with_hook(exact());
    let (redlock, nodes) = setup(5, options);
    nodes[2].set_down(true);
    let lock = match redlock.lock("r", ms(1_000)).await {
        Ok(l) => l,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(
        events(&seen),
        vec![("sim-2".to_string(), Operation::Acquire, true)]
    );
    assert!(lock.unlock().await.is_ok());
    assert_eq!(
        events(&seen),
        vec![
            ("sim-2".to_string(), Operation::Acquire, true),
            ("sim-2".to_string(), Operation::Release, true),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn node_error_hook_hears_timeouts() {
    let (options, seen) = with_hook(exact().node_timeout(ms(20)));
    let (redlock, nodes) = setup(3, options);
    nodes[1].set_delay(ms(100));
    nodes[2].set_down(true);
    match redlock.lock("r", ms(1_000)).await {
        Err(LockError::NoQuorum(f)) => {
            assert_eq!(f.nodes[1].outcome, NodeOutcome::TimedOut);
        }
        other => panic!("{other:?}"),
    }
    let acquire_events: Vec<_> = events(&seen)
        .into_iter()
        .filter(|e| e.1 == Operation::Acquire)
        .collect();
    assert_eq!(
        acquire_events,
        vec![
            ("sim-2".to_string(), Operation::Acquire, true),
            ("sim-1".to_string(), Operation::Acquire, false),
        ]
    );
}

// ----- multi-resource -------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn multi_resource_is_all_or_nothing_per_node() {
    let (redlock, nodes) = setup(5, exact().key_prefix("lk:"));
    nodes[0].put_key("lk:b", OTHER, None);
    nodes[1].put_key("lk:b", OTHER, None);
    let lock = match redlock.lock(["a", "b", "c"], ms(1_000)).await {
        Ok(l) => l,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(lock.resources(), ["a", "b", "c"]);
    assert_eq!(lock.keys(), ["lk:a", "lk:b", "lk:c"]);
    for node in &nodes[..2] {
        let keys = node.keys();
        assert_eq!(
            keys.len(),
            1,
            "{}: took none of ours: {keys:?}",
            node.name()
        );
        assert_eq!(keys["lk:b"].token, OTHER);
    }
    for node in &nodes[2..] {
        let keys = node.keys();
        assert_eq!(keys.len(), 3);
        assert!(keys.values().all(|k| k.token == lock.token()));
    }
    assert!(lock.unlock().await.is_ok());
    settle(&nodes).await;
    assert_eq!(total_keys(&nodes), 2);
}

#[tokio::test(start_paused = true)]
async fn multi_resource_conflict_on_a_majority_takes_nothing() {
    let (redlock, nodes) = setup(5, exact());
    for node in &nodes[..3] {
        node.put_key("c", OTHER, None);
    }
    let e = redlock.lock(vec!["a", "b", "c"], ms(1_000)).await.err();
    assert!(matches!(e, Some(LockError::Conflict(_))), "{e:?}");
    settle(&nodes).await;
    assert_eq!(total_keys(&nodes), 3);
    assert_eq!(keys_with_token(&nodes, OTHER), 3);
}

#[tokio::test(start_paused = true)]
async fn duplicate_resources_are_locked_once() {
    let (redlock, nodes) = setup(3, exact());
    let lock = match redlock.lock(["a", "a", "b"], ms(1_000)).await {
        Ok(l) => l,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(lock.resources(), ["a", "b"]);
    assert_eq!(nodes[0].keys().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn two_contenders_at_once_one_wins() {
    let (redlock, nodes) = setup(5, exact());
    for (i, node) in nodes.iter().enumerate() {
        node.set_delay(ms(1 + i as u64));
    }
    let (a, b) = tokio::join!(redlock.lock("r", ms(1_000)), redlock.lock("r", ms(1_000)));
    let winners = usize::from(a.is_ok()) + usize::from(b.is_ok());
    assert_eq!(winners, 1, "{a:?} {b:?}");
    let loser = match (&a, &b) {
        (Err(e), _) | (_, Err(e)) => e,
        _ => unreachable!(),
    };
    assert!(loser.is_conflict(), "{loser:?}");
    let winner = match (a, b) {
        (Ok(l), _) | (_, Ok(l)) => l,
        _ => unreachable!(),
    };
    settle(&nodes).await;
    assert_eq!(keys_with_token(&nodes, winner.token()), 5);
    assert!(winner.unlock().await.is_ok());
    settle(&nodes).await;
    assert_eq!(total_keys(&nodes), 0);
}

#[tokio::test(start_paused = true)]
async fn tokens_are_fresh_per_lock_and_attempt() {
    let (redlock, nodes) = setup(3, exact().retry_count(2));
    for node in &nodes {
        node.put_key("held", OTHER, None);
    }
    assert!(redlock.lock("held", ms(1_000)).await.is_err());
    let tokens: std::collections::HashSet<_> = ops(&nodes[0], Operation::Acquire)
        .into_iter()
        .filter_map(|o| o.token)
        .collect();
    assert_eq!(tokens.len(), 3, "a new token per attempt");
    let a = redlock.lock("x", ms(1_000)).await;
    let b = redlock.lock("y", ms(1_000)).await;
    match (a, b) {
        (Ok(a), Ok(b)) => {
            assert_ne!(a.token(), b.token());
            assert!(a.token().len() >= 32);
        }
        other => panic!("{other:?}"),
    }
}

// ----- bad input ------------------------------------------------------------

fn invalid(result: Result<redlock_core::Lock, LockError>) -> InvalidArgument {
    match result {
        Err(LockError::InvalidArgument(e)) => e,
        other => panic!("expected an invalid argument, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn every_bad_lock_argument_has_its_error_and_sends_nothing() {
    let (redlock, nodes) = setup(3, exact());
    assert_eq!(
        invalid(redlock.lock(Vec::<String>::new(), ms(1_000)).await),
        InvalidArgument::NoResources
    );
    assert_eq!(
        invalid(redlock.lock(["a", ""], ms(1_000)).await),
        InvalidArgument::EmptyResource(1)
    );
    assert_eq!(
        invalid(redlock.lock("", ms(1_000)).await),
        InvalidArgument::EmptyResource(0)
    );
    assert_eq!(
        invalid(redlock.lock("a", Duration::ZERO).await),
        InvalidArgument::ZeroTtl
    );
    // ttl 2 ms: drift floor(0.02) + 2 = 2 ms, nothing left.
    assert_eq!(
        invalid(redlock.lock("a", ms(2)).await),
        InvalidArgument::TtlTooSmall {
            ttl: ms(2),
            drift: ms(2)
        }
    );
    let ok = redlock.try_lock("a", ms(3)).await;
    assert!(ok.is_ok(), "3 ms leaves 1 ms: {ok:?}");
    let too_long = MAX_TTL + ms(1);
    assert_eq!(
        invalid(redlock.lock("b", too_long).await),
        InvalidArgument::TtlTooLarge {
            ttl: too_long,
            max: MAX_TTL
        }
    );
    let busy = RetryPolicy::default()
        .retries(Retries::Forever)
        .delay(Duration::ZERO)
        .jitter(Duration::ZERO)
        .deadline(None);
    assert_eq!(
        invalid(
            redlock
                .acquire(&LockOptions::new("b", ms(1_000)).retry(busy))
                .await
        ),
        InvalidArgument::BusyRetry
    );
    // Only the one valid try_lock reached the nodes.
    for node in &nodes {
        assert_eq!(node.log().len(), 1, "{:?}", node.log());
    }
}

#[test]
fn every_bad_option_has_its_error() {
    let rt = || Options::new().runtime(redlock_core::ManualClock::new());
    let nodes = || SimNode::many(3);
    let build = |o: Options| Redlock::new(nodes(), o).err();

    assert_eq!(
        Redlock::new(Vec::<SimNode>::new(), rt()).err(),
        Some(InvalidArgument::NoNodes)
    );
    for f in [1.0, 1.5, -0.01, f64::NAN, f64::INFINITY] {
        let e = build(rt().drift_factor(f));
        assert!(
            matches!(e, Some(InvalidArgument::DriftFactor(x)) if x.to_bits() == f.to_bits()),
            "{f}: {e:?}"
        );
    }
    assert!(build(rt().drift_factor(0.0)).is_none());
    assert!(build(rt().drift_factor(0.99)).is_none());
    assert_eq!(
        build(rt().retry_count(-2)),
        Some(InvalidArgument::RetryCount(-2))
    );
    assert_eq!(
        build(rt().retry_count(i64::MIN)),
        Some(InvalidArgument::RetryCount(i64::MIN))
    );
    assert_eq!(
        build(
            rt().retry_count(-1)
                .retry_delay(Duration::ZERO)
                .retry_jitter(Duration::ZERO)
        ),
        Some(InvalidArgument::BusyRetry)
    );
    // A deadline makes zero-delay forever acceptable.
    assert!(build(
        rt().retry_count(-1)
            .retry_delay(Duration::ZERO)
            .retry_jitter(Duration::ZERO)
            .retry_deadline(ms(100))
    )
    .is_none());
    assert_eq!(
        build(rt().node_timeout(Duration::ZERO)),
        Some(InvalidArgument::ZeroNodeTimeout)
    );
    assert!(build(rt().retry_count(-1)).is_none());
    assert!(build(rt().retry_count(0)).is_none());
}

#[tokio::test(start_paused = true)]
async fn even_node_counts_work_with_a_strict_majority() {
    let (redlock, nodes) = setup(4, exact());
    assert_eq!(redlock.quorum(), 3);
    nodes[0].set_down(true);
    assert!(redlock.lock("r", ms(1_000)).await.is_ok());
    nodes[1].set_down(true);
    assert!(matches!(
        redlock.lock("s", ms(1_000)).await,
        Err(LockError::NoQuorum(_))
    ));
}

// ----- unresponsive nodes -----------------------------------------------------

/// A stopped minority costs the per-node timeout once, not on every failed
/// attempt: later rounds still send to it but decide without waiting for it,
/// and a node that answers again is waited for again.
#[tokio::test(start_paused = true)]
async fn a_timed_out_node_is_not_waited_for_until_it_answers_again() {
    let (redlock, nodes) = setup(5, exact().node_timeout(ms(100)));
    nodes[0].set_down(true);
    nodes[3].set_hung(true);
    nodes[4].set_hung(true);

    // Two yes, one error, two silent: a quorum stays possible until the
    // silent nodes time out.
    let t0 = Instant::now();
    match redlock.try_lock("r", ms(1_000)).await {
        Err(LockError::NoQuorum(f)) => {
            assert_eq!(f.count(|o| *o == NodeOutcome::TimedOut), 2, "{f:?}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(Instant::now() - t0, ms(100));
    nodes[0].heal();
    nodes[0].put_key("r", OTHER, None);

    // Now they are known to be unresponsive: the same failure is decided at
    // once, and the partial keys are released at once.
    for _ in 0..3 {
        let t0 = Instant::now();
        match redlock.try_lock("r", ms(1_000)).await {
            Err(LockError::Conflict(f)) => {
                assert_eq!(f.count(|o| *o == NodeOutcome::Unresponsive), 2, "{f:?}");
                assert_eq!(f.count(|o| *o == NodeOutcome::Acquired), 2, "{f:?}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(Instant::now() - t0, Duration::ZERO);
        assert_eq!(nodes[1].keys().len(), 0);
        assert_eq!(nodes[2].keys().len(), 0);
    }

    // A success still needs a quorum of real answers.
    nodes[1].put_key("r", OTHER, None);
    assert!(redlock.try_lock("r", ms(1_000)).await.is_err());
    nodes[1].heal();
    let _ = nodes[1].expire_now("r");

    // The nodes come back slower than the others; the background probe
    // (queued behind everything they were sent) notices, and they are
    // waited for again: with node 0 still held by another, only nodes 1-4
    // together make a quorum that includes 3 and 4.
    nodes[0].put_key("r", OTHER, None);
    nodes[1].put_key("r", OTHER, None);
    nodes[3].set_delay(ms(5));
    nodes[4].set_delay(ms(5));
    nodes[3].set_hung(false);
    nodes[4].set_hung(false);
    let policy = RetryPolicy::default()
        .retries(Retries::Limited(20))
        .delay(ms(10))
        .jitter(Duration::ZERO)
        .deadline(None);
    // node 1 held too: a quorum needs 2, 3 and 4.
    let t1 = Instant::now();
    let lock = match redlock
        .acquire(&LockOptions::new("r", ms(1_000)).retry(policy))
        .await
    {
        Ok(l) => l,
        Err(e) => panic!("the returned nodes were not used again: {e}"),
    };
    // The probe answers after the nodes' 5 ms backlog; far below the 100 ms
    // a per-node timeout (or five retry delays) would cost.
    assert!(
        Instant::now() - t1 < ms(50),
        "took {:?}",
        Instant::now() - t1
    );
    assert_eq!(nodes[3].token_of("r").as_deref(), Some(lock.token()));
    assert_eq!(nodes[4].token_of("r").as_deref(), Some(lock.token()));
    assert!(lock.unlock().await.is_ok());
    settle(&nodes).await;
}

/// Without a runtime that can spawn the probe, nodes are never skipped: every
/// round waits for a silent node up to the per-node timeout, as it would
/// without this mechanism.
#[test]
fn without_a_spawning_runtime_every_round_waits_for_a_silent_node() {
    use redlock_core::{ManualClock, Runtime};
    use std::future::Future;
    use std::sync::Arc;
    let clock = ManualClock::new();
    let rt: Arc<dyn Runtime> = Arc::new(clock.clone());
    let nodes = SimNode::many_with_runtime(3, rt);
    nodes[2].set_hung(true);
    nodes[0].set_down(true);
    let redlock = match Redlock::new(nodes.clone(), exact().runtime(clock.clone())) {
        Ok(r) => r,
        Err(e) => panic!("{e}"),
    };
    for _ in 0..2 {
        let mut attempt = Box::pin(redlock.try_lock("r", ms(1_000)));
        let waker = futures_util::task::noop_waker();
        let mut cx = std::task::Context::from_waker(&waker);
        assert!(attempt.as_mut().poll(&mut cx).is_pending());
        clock.advance(ms(49));
        assert!(attempt.as_mut().poll(&mut cx).is_pending());
        // The acquire round times out at 50 ms; the release round then
        // waits for the silent node again, for a release's timeout (at
        // least 1 s, not the acquire's 50 ms).
        clock.advance(ms(1));
        assert!(attempt.as_mut().poll(&mut cx).is_pending());
        clock.advance(ms(999));
        assert!(attempt.as_mut().poll(&mut cx).is_pending());
        clock.advance(ms(1));
        match attempt.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(Err(LockError::NoQuorum(f))) => {
                assert_eq!(f.count(|o| *o == NodeOutcome::TimedOut), 1, "{f:?}");
            }
            other => panic!("{other:?}"),
        }
    }
}

/// Contended (a node already said "held by another") and undecided without
/// the silent nodes: they are waited for only eight times as long as the
/// round has taken (at least 5 ms), not the per-node timeout, because the
/// attempt holds its nodes against every other contender meanwhile.
#[tokio::test(start_paused = true)]
async fn a_contended_attempt_waits_for_silent_nodes_only_briefly() {
    for (answer_in, decided_at) in [(ms(0), ms(5)), (ms(2), ms(18))] {
        let (redlock, nodes) = setup(5, exact().node_timeout(ms(500)));
        nodes[0].put_key("r", OTHER, None);
        for node in &nodes[..3] {
            node.set_delay(answer_in);
        }
        nodes[3].set_hung(true);
        nodes[4].set_hung(true);
        let t0 = Instant::now();
        match redlock.try_lock("r", ms(10_000)).await {
            Err(LockError::Conflict(f)) => {
                assert_eq!(f.count(|o| *o == NodeOutcome::Unresponsive), 2, "{f:?}");
                assert_eq!(f.count(|o| *o == NodeOutcome::Acquired), 2, "{f:?}");
            }
            other => panic!("{other:?}"),
        }
        // The release quorum (three "released") adds the answer time again.
        assert_eq!(Instant::now() - t0, decided_at + answer_in);
        settle(&nodes[..3]).await;
        assert_eq!(total_keys(&nodes[..3]), 1, "only the other holder's key");
    }
}
