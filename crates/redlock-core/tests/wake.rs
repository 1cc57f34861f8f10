//! Wake-on-release on simulated nodes and tokio's paused clock: a waiter
//! retries as soon as a release is announced, and never later than its
//! retry delay when announcements are lost.

mod common;

use std::time::Duration;

use common::{ms, settle, setup, total_keys};
use redlock_core::{Lock, LockError, LockOptions, Options, Redlock, Retries, RetryPolicy};
use redlock_testkit::sim::{Announce, SimNode};
use tokio::task::JoinHandle;

const TTL: Duration = Duration::from_secs(30);
const DELAY: Duration = Duration::from_secs(1);

fn waiting() -> Options {
    Options::new()
        .retries(Retries::Forever)
        .retry_delay(DELAY)
        .retry_jitter(Duration::ZERO)
        .node_timeout(ms(50))
}

fn announce(nodes: &[SimNode], mode: Announce) {
    for n in nodes {
        n.set_announce(mode);
    }
}

/// Another client (process) over the same nodes, locking "job" in a task
/// of its own: only the nodes' announcements can wake it. It retries as
/// [`waiting`] says, or by `policy`.
fn other_client(
    nodes: &[SimNode],
    policy: Option<RetryPolicy>,
) -> JoinHandle<Result<Lock, LockError>> {
    let redlock = Redlock::new(nodes.to_vec(), waiting()).expect("valid");
    tokio::spawn(async move {
        match policy {
            None => redlock.lock("job", TTL).await,
            Some(policy) => {
                redlock
                    .acquire(&LockOptions::new("job", TTL).retry(policy))
                    .await
            }
        }
    })
}

fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

/// Runs: holder locks at t=0, a waiter starts at t=0, the holder unlocks at
/// t=`hold`. Returns (waiter's acquisition instant - t0, its attempts).
async fn contend(mode: Announce, hold: Duration) -> (Duration, u32, Vec<SimNode>) {
    let (redlock, nodes) = setup(5, waiting());
    announce(&nodes, mode);
    let t0 = now();
    let held = redlock.lock("job", TTL).await.expect("free at first");
    let waiter = other_client(&nodes, None);
    tokio::time::sleep(hold).await;
    held.unlock().await.expect("unlocked");
    let lock = waiter.await.expect("waiter task").expect("waiter locks");
    let took = lock.acquired_at() - t0;
    let attempts = lock.attempts();
    lock.unlock().await.expect("unlocked");
    settle(&nodes).await;
    (took, attempts, nodes)
}

#[tokio::test(start_paused = true)]
async fn waiter_wakes_on_release_well_before_the_delay() {
    let (took, attempts, nodes) = contend(Announce::On, ms(100)).await;
    // Released at 100 ms; the next attempt starts at that very instant.
    assert_eq!(took, ms(100));
    assert_eq!(attempts, 2);
    assert_eq!(total_keys(&nodes), 0);
    assert!(nodes.iter().all(|n| n.watchers() == 0), "watches withdrawn");
}

#[tokio::test(start_paused = true)]
async fn lost_announcements_fall_back_to_the_retry_delay() {
    let (took, attempts, nodes) = contend(Announce::Lost, ms(100)).await;
    assert_eq!(took, DELAY, "retried after exactly one delay");
    assert_eq!(attempts, 2);
    assert_eq!(total_keys(&nodes), 0);
}

#[tokio::test(start_paused = true)]
async fn without_announcements_waiting_polls_as_before() {
    let (took, attempts, _) = contend(Announce::Off, ms(2500)).await;
    assert_eq!(took, 3 * DELAY);
    assert_eq!(attempts, 4);
}

/// Holder releases at 300 ms with the nodes announcing as given; returns
/// when the waiter got the lock.
async fn mixed(modes: [Announce; 5]) -> Duration {
    let (redlock, nodes) = setup(5, waiting());
    for (n, m) in nodes.iter().zip(modes) {
        n.set_announce(m);
    }
    let t0 = now();
    let held = redlock.lock("job", TTL).await.expect("free");
    let waiter = other_client(&nodes, None);
    tokio::time::sleep(ms(300)).await;
    held.unlock().await.expect("unlocked");
    let lock = waiter.await.expect("task").expect("locks");
    let took = lock.acquired_at() - t0;
    lock.unlock().await.expect("unlocked");
    took
}

#[tokio::test(start_paused = true)]
async fn a_quorum_of_announcements_wakes_a_minority_does_not() {
    use Announce::{Lost, Off, On};
    // A quorum announces; two lose theirs: woken at the release.
    assert_eq!(mixed([Lost, On, Lost, On, On]).await, ms(300));
    // Only two of five announce: not enough to know the resource is free
    // on a quorum, so the waiter keeps to its delay.
    assert_eq!(mixed([Lost, On, Lost, On, Lost]).await, DELAY);
    // Nodes that cannot announce at all do not count: one announcing node
    // is all there is to hear.
    assert_eq!(mixed([Off, Off, On, Off, Off]).await, ms(300));
}

#[tokio::test(start_paused = true)]
async fn a_release_during_the_attempt_is_not_missed() {
    // The watch for attempt 2 is armed before attempt 2 starts: a release
    // while that attempt is in flight (after the nodes said "held") wakes
    // the waiter at once instead of after the delay.
    let (redlock, nodes) = setup(5, waiting());
    announce(&nodes, Announce::On);
    let t0 = now();
    let held = redlock.lock("job", TTL).await.expect("free");
    for n in &nodes {
        n.set_delay(ms(20));
    }
    let waiter = other_client(&nodes, None);
    // Attempt 1: 0..20 ms (held everywhere, so nothing to release), then
    // it waits 1 s. Attempt 2 starts at 1020 ms and is answered at 1040 ms;
    // the holder's release is sent at 1025 ms, during attempt 2, and is
    // processed after it (order per node), at 1045 ms. The watch armed
    // before attempt 2 hears it: attempt 3 starts at 1045 ms.
    tokio::time::sleep(ms(1025)).await;
    held.unlock().await.expect("unlocked");
    let lock = waiter.await.expect("task").expect("locks");
    let took = lock.acquired_at() - t0;
    assert_eq!(took, ms(1045), "woken, not polled");
    assert_eq!(lock.attempts(), 3);
    lock.unlock().await.expect("unlocked");
    settle(&nodes).await;
    assert_eq!(total_keys(&nodes), 0);
}

#[tokio::test(start_paused = true)]
async fn a_watch_lets_the_last_wait_run_to_the_deadline() {
    let (redlock, nodes) = setup(5, waiting());
    announce(&nodes, Announce::On);
    let t0 = now();
    let held = redlock.lock("job", TTL).await.expect("free");
    let policy = RetryPolicy::default()
        .retries(Retries::Forever)
        .delay(Duration::from_secs(3600))
        .jitter(Duration::ZERO)
        .deadline(Some(Duration::from_secs(10)));
    let waiter = other_client(&nodes, Some(policy));
    tokio::time::sleep(ms(700)).await;
    held.unlock().await.expect("unlocked");
    let lock = waiter
        .await
        .expect("task")
        .expect("woken before the deadline");
    assert_eq!(lock.acquired_at() - t0, ms(700));

    // Nobody releases: the call ends at the deadline, not after an hour.
    let t1 = now();
    let waiter = other_client(&nodes, Some(policy));
    let err = waiter.await.expect("task").expect_err("deadline");
    assert!(matches!(err, LockError::DeadlineExceeded(_)), "{err}");
    assert_eq!(now() - t1, Duration::from_secs(10));
    lock.unlock().await.expect("unlocked");
}

#[tokio::test(start_paused = true)]
async fn many_waiters_all_get_the_lock_in_turn_without_polling() {
    let (redlock, nodes) = setup(5, waiting());
    announce(&nodes, Announce::On);
    let t0 = now();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let redlock = redlock.clone();
        tasks.push(tokio::spawn(async move {
            let lock = redlock.lock("job", TTL).await.expect("locks");
            tokio::time::sleep(ms(10)).await;
            lock.unlock().await.expect("unlocked");
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    // Eight holders of 10 ms each, handed over on release: far below one
    // retry delay in total.
    assert!(now() - t0 < DELAY, "{:?}", now() - t0);
    settle(&nodes).await;
    assert_eq!(total_keys(&nodes), 0);
}

// ----- calls of one process take turns ----------------------------------------

#[tokio::test(start_paused = true)]
async fn in_process_waiters_take_turns_in_order_without_announcements() {
    // No announcements at all: the hand-over inside the process does not
    // need them.
    let (redlock, nodes) = setup(5, waiting());
    announce(&nodes, Announce::Off);
    let t0 = now();
    let held = redlock.lock("job", TTL).await.expect("free");
    let order = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for i in 0..4u64 {
        let redlock = redlock.clone();
        let order = order.clone();
        tasks.push(tokio::spawn(async move {
            let lock = redlock.lock("job", TTL).await.expect("locks");
            order
                .lock()
                .expect("order")
                .push((i, lock.acquired_at() - t0));
            tokio::time::sleep(ms(10)).await;
            lock.unlock().await.expect("unlocked");
        }));
        // Let it make its first attempt and join the queue.
        tokio::time::sleep(ms(1)).await;
    }
    tokio::time::sleep(ms(96)).await;
    held.unlock().await.expect("unlocked");
    // The releasing task asks again at once: it goes to the back.
    let again = redlock.lock("job", TTL).await.expect("locks again");
    assert_eq!(again.acquired_at() - t0, ms(140));
    for t in tasks {
        t.await.expect("task");
    }
    let order = order.lock().expect("order").clone();
    assert_eq!(
        order,
        vec![(0, ms(100)), (1, ms(110)), (2, ms(120)), (3, ms(130))],
        "first come, first served, each at the instant of the release before"
    );
    again.unlock().await.expect("unlocked");
    settle(&nodes).await;
    assert_eq!(total_keys(&nodes), 0);
}

#[tokio::test(start_paused = true)]
async fn a_queued_call_keeps_its_retry_budget() {
    let options = waiting()
        .retry_count(2)
        .retry_delay(ms(100))
        .retry_jitter(Duration::ZERO);
    let (redlock, nodes) = setup(5, options);
    announce(&nodes, Announce::Off);
    let _held = redlock.try_lock("job", TTL).await.expect("free");
    let t0 = now();
    let first = {
        let redlock = redlock.clone();
        tokio::spawn(async move { redlock.lock("job", TTL).await })
    };
    tokio::time::sleep(ms(1)).await;
    let second = {
        let redlock = redlock.clone();
        tokio::spawn(async move { redlock.lock("job", TTL).await })
    };
    for (task, ends) in [(first, ms(200)), (second, ms(300))] {
        match task.await.expect("task") {
            Err(LockError::Conflict(f)) => assert_eq!(f.attempts, 3),
            other => panic!("{other:?}"),
        }
        assert_eq!(now() - t0, ends);
    }
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_head_hands_its_turn_on() {
    let (redlock, nodes) = setup(5, waiting());
    announce(&nodes, Announce::Off);
    let t0 = now();
    let held = redlock.lock("job", TTL).await.expect("free");
    let head = {
        let redlock = redlock.clone();
        tokio::spawn(async move { redlock.lock("job", TTL).await })
    };
    tokio::time::sleep(ms(1)).await;
    let next = {
        let redlock = redlock.clone();
        tokio::spawn(async move { redlock.lock("job", TTL).await })
    };
    tokio::time::sleep(ms(1)).await;
    head.abort();
    assert!(head.await.is_err(), "cancelled");
    tokio::time::sleep(ms(48)).await;
    held.unlock().await.expect("unlocked");
    let lock = next.await.expect("task").expect("locks");
    assert_eq!(
        lock.acquired_at() - t0,
        ms(50),
        "at the release, not a delay later"
    );
    lock.unlock().await.expect("unlocked");
    settle(&nodes).await;
    assert_eq!(total_keys(&nodes), 0);
}
