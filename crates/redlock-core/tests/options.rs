//! The one options value of every lock call: what it carries, how it is
//! checked, and that every failure path releases what it took.

mod common;

use common::*;
use redlock_core::{InvalidArgument, LockError, LockOptions, Operation, RetryPolicy};

#[tokio::test(start_paused = true)]
async fn acquire_takes_resources_ttl_and_retry_from_the_options() {
    let (redlock, nodes) = setup(3, exact().retry_count(5));
    let held = redlock
        .acquire(&LockOptions::new(["a", "b"], ms(1_000)))
        .await
        .expect("free");
    assert_eq!(held.resources(), ["a", "b"]);
    assert_eq!(held.ttl(), ms(1_000));
    // One attempt instead of the Redlock's six.
    match redlock
        .acquire(&LockOptions::new("b", ms(1_000)).once())
        .await
    {
        Err(LockError::Conflict(f)) => assert_eq!(f.attempts, 1),
        other => panic!("expected a conflict after one attempt: {other:?}"),
    }
    let policy = RetryPolicy::once().jitter(ms(0));
    let options = LockOptions::new("b", ms(1_000)).retry(policy);
    assert_eq!(options.retry_policy(), Some(&policy));
    assert!(redlock.acquire(&options).await.unwrap_err().is_conflict());
    held.unlock().await.expect("released");
    settle(&nodes).await;
    assert_eq!(total_keys(&nodes), 0);
}

#[tokio::test(start_paused = true)]
async fn an_extension_threshold_not_below_the_ttl_is_refused_before_sending() {
    let (redlock, nodes) = setup(3, exact());
    let options = LockOptions::new("job", ms(300)).extend_when_remaining(ms(300));
    let result = redlock.scoped(&options, |_| async {}).await;
    match result {
        Err(LockError::InvalidArgument(InvalidArgument::ExtendThreshold { threshold, ttl })) => {
            assert_eq!((threshold, ttl), (ms(300), ms(300)));
        }
        other => panic!("expected ExtendThreshold: {other:?}"),
    }
    let message = redlock
        .acquire(&options)
        .await
        .expect_err("refused")
        .to_string();
    assert!(message.contains("extend_when_remaining"), "{message}");
    for node in &nodes {
        assert!(node.log().is_empty(), "{:?}", node.log());
    }
}

#[tokio::test(start_paused = true)]
async fn hold_with_refused_options_releases_the_lock() {
    let (redlock, nodes) = setup(3, exact());
    let lock = redlock.lock("job", ms(300)).await.expect("free");
    let token = lock.token().to_owned();
    let options = LockOptions::new("job", ms(100)).extend_when_remaining(ms(500));
    let ran = lock.hold(&options, |_| async { true }).await;
    assert!(
        matches!(
            ran,
            Err(LockError::InvalidArgument(
                InvalidArgument::ExtendThreshold { .. }
            ))
        ),
        "{ran:?}"
    );
    assert_eq!(keys_with_token(&nodes, &token), 0);
    assert!(redlock.try_lock("job", ms(300)).await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn hold_keeps_a_held_lock_for_the_work_and_releases_it() {
    let (redlock, nodes) = setup(3, exact());
    let options = LockOptions::new("job", ms(300)).once();
    let lock = redlock.acquire(&options).await.expect("free");
    let token = lock.token().to_owned();
    let output = lock
        .hold(&options, |lease| {
            let nodes = nodes.clone();
            async move {
                tokio::time::sleep(ms(1_000)).await;
                assert!(lease.is_held());
                keys_with_token(&nodes, lease.token())
            }
        })
        .await
        .expect("held throughout");
    assert_eq!(output, 3);
    assert_eq!(keys_with_token(&nodes, &token), 0);
}

#[tokio::test(start_paused = true)]
async fn a_fenced_lock_on_nodes_without_counters_fails_and_releases() {
    // The simulated node keeps no fencing counters.
    let (redlock, nodes) = setup(3, exact());
    let options = LockOptions::new("job", ms(1_000)).fenced(true);
    assert!(options.is_fenced());
    match redlock.acquire(&options).await {
        Err(LockError::NoQuorum(f)) => assert_eq!(f.operation, Operation::Fence),
        other => panic!("expected no quorum for the fence: {other:?}"),
    }
    settle(&nodes).await;
    assert_eq!(total_keys(&nodes), 0);
    every_acquire_released(&nodes);
}
