//! Wake-on-release against real servers: a waiter whose retry delay is an
//! hour gets the lock as soon as the holder releases; after the pub/sub
//! connections are killed, waiters fall back to their delay and the
//! subscription comes back.

use std::time::Duration;

use redlock_core::{LockOptions, Options, Redlock, Retries, RetryPolicy};
use redlock_redis_rs::RedisNode;
use redlock_testkit::suites::wake::{
    a_conflict_subscribes_nowhere, hour_delay, killed_subscriptions_fall_back_to_polling,
    until_subscribed, woken_by_the_release,
};
use redlock_testkit::wait::eventually;
use redlock_testkit::RedisServer;

const TTL: Duration = Duration::from_secs(30);

fn servers(n: usize) -> Vec<RedisServer> {
    (0..n)
        .map(|_| RedisServer::start().expect("redis-server starts"))
        .collect()
}

async fn redlock(servers: &[RedisServer]) -> Redlock {
    let mut nodes = Vec::new();
    for s in servers {
        nodes.push(RedisNode::connect(&s.url()).await.expect("connects"));
    }
    Redlock::new(nodes, Options::new()).expect("valid")
}

/// How long a condition on the servers may take to come true before the
/// test fails (never a measure of speed, only a bound against hanging).
const PATIENCE: Duration = Duration::from_secs(10);
/// The waiters' deadline: a missing wake-up fails the test, not hangs it.
const DEADLINE: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiter_wakes_on_release_and_unsubscribes_after() {
    let servers = servers(3);
    let redlock = redlock(&servers).await;
    let channel = "redlock:release:wake-job";
    let other = crate::redlock(&servers).await;
    let (lock, _) = woken_by_the_release(
        &servers,
        &redlock,
        other,
        "wake-job",
        hour_delay(DEADLINE),
        PATIENCE,
    )
    .await;
    assert_eq!(lock.attempts(), 2);
    lock.unlock().await.expect("unlocked");
    // Nobody waits any more: the channel is given up.
    until_subscribed(&servers, channel, 0, PATIENCE).await;
    // The unlock returned on a quorum of answers; the last release may
    // still be on its way (the TTL is far longer than this wait).
    let empty = || async {
        servers
            .iter()
            .all(|s| s.text(&["DBSIZE"]).is_ok_and(|n| n == "0"))
    };
    assert!(eventually(PATIENCE, empty).await, "keys left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_subscriptions_fall_back_to_the_delay_and_come_back() {
    let servers = servers(3);
    let redlock = redlock(&servers).await;
    let other = crate::redlock(&servers).await;
    killed_subscriptions_fall_back_to_polling(&servers, &redlock, other, "kill-job", PATIENCE)
        .await;

    // A new waiter makes the hub reconnect and subscribe again; then a
    // release wakes it as before.
    let other = crate::redlock(&servers).await;
    let (lock, _) = woken_by_the_release(
        &servers,
        &redlock,
        other,
        "kill-job",
        hour_delay(DEADLINE),
        PATIENCE,
    )
    .await;
    lock.unlock().await.expect("unlocked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_without_wake_on_release_poll() {
    let servers = servers(3);
    let mut nodes = Vec::new();
    for s in &servers {
        nodes.push(
            RedisNode::builder()
                .wake_on_release(false)
                .connect(&s.url())
                .await
                .expect("connects"),
        );
    }
    let redlock = Redlock::new(nodes, Options::new()).expect("valid");
    let held = a_conflict_subscribes_nowhere(&servers, &redlock, "poll-job").await;
    held.unlock().await.expect("unlocked");
}

/// Separate clients (as separate processes) hammering one key with no hold
/// time: every release wakes all the others at once. Without the collision
/// backoff they split the nodes between them, release, are woken again by
/// those releases, and so on: hundreds of failed attempts per acquisition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn separate_clients_woken_together_do_not_keep_splitting_the_votes() {
    const CLIENTS: usize = 8;
    const EACH: u32 = 25;
    let servers = servers(5);
    let policy = RetryPolicy::default()
        .retries(Retries::Forever)
        .delay(Duration::ZERO)
        .jitter(Duration::from_millis(20))
        .deadline(Some(Duration::from_secs(60)));
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let redlock = redlock(&servers).await;
        tasks.push(tokio::spawn(async move {
            let mut attempts = 0u32;
            for _ in 0..EACH {
                let lock = redlock
                    .acquire(&LockOptions::new("herd-job", TTL).retry(policy))
                    .await
                    .expect("locks within the deadline");
                attempts += lock.attempts();
                lock.unlock().await.expect("unlocked");
            }
            attempts
        }));
    }
    let mut total = 0u32;
    for t in tasks {
        total += t.await.expect("task");
    }
    let per_lock = f64::from(total) / f64::from(EACH * CLIENTS as u32);
    println!("attempts per acquisition: {per_lock:.1}");
    assert!(
        per_lock < 12.0,
        "{per_lock:.1} attempts per acquisition: the clients keep colliding"
    );
}
