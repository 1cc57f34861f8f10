//! Wake-on-release against real servers: a waiter whose retry delay is an
//! hour gets the lock as soon as the holder releases; after the pub/sub
//! connections are killed, waiters fall back to their delay and the
//! subscription comes back.

use std::time::Duration;

use redlock_core::{LockOptions, Options, Redlock, Retries, RetryPolicy};
use redlock_redis_rs::RedisNode;
use redlock_testkit::server::Reply;
use redlock_testkit::wait::{eventually, until};
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

/// Subscribers of `channel` on `server`.
fn numsub(server: &RedisServer, channel: &str) -> i64 {
    match server.command(&["PUBSUB", "NUMSUB", channel]) {
        Ok(Reply::Array(Some(items))) => match items.get(1) {
            Some(Reply::Int(n)) => *n,
            _ => -1,
        },
        _ => -1,
    }
}

/// Waits until every server has exactly `n` subscribers on `channel`;
/// fails the test after ten seconds.
async fn until_subscribed(servers: &[RedisServer], channel: &str, n: i64) {
    until(
        &format!("{n} subscriber(s) of {channel} on every server"),
        Duration::from_secs(10),
        || async { servers.iter().all(|s| numsub(s, channel) == n) },
    )
    .await;
}

/// Retry delay of an hour, bounded by a deadline that fails the test (not
/// hangs it) if no wake-up comes.
fn hour_delay() -> RetryPolicy {
    RetryPolicy::default()
        .retries(Retries::Forever)
        .delay(Duration::from_secs(3600))
        .jitter(Duration::ZERO)
        .deadline(Some(Duration::from_secs(60)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiter_wakes_on_release_and_unsubscribes_after() {
    let servers = servers(3);
    let redlock = redlock(&servers).await;
    let channel = "redlock:release:wake-job";
    let held = redlock.lock("wake-job", TTL).await.expect("free");
    let waiter = {
        // Another client, as another process would be: only the nodes'
        // announcements can wake it (calls of one client hand over directly).
        let redlock = crate::redlock(&servers).await;
        tokio::spawn(async move {
            redlock
                .acquire(&LockOptions::new("wake-job", TTL).retry(hour_delay()))
                .await
        })
    };
    until_subscribed(&servers, channel, 1).await;
    held.unlock().await.expect("unlocked");
    let lock = waiter
        .await
        .expect("task")
        .expect("woken by the release, long before the hour");
    assert_eq!(lock.attempts(), 2);
    lock.unlock().await.expect("unlocked");
    // Nobody waits any more: the channel is given up.
    until_subscribed(&servers, channel, 0).await;
    // The unlock returned on a quorum of answers; the last release may
    // still be on its way (the TTL is far longer than this wait).
    let empty = || async {
        servers
            .iter()
            .all(|s| s.text(&["DBSIZE"]).is_ok_and(|n| n == "0"))
    };
    assert!(
        eventually(Duration::from_secs(10), empty).await,
        "keys left"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_subscriptions_fall_back_to_the_delay_and_come_back() {
    let servers = servers(3);
    let redlock = redlock(&servers).await;
    let channel = "redlock:release:kill-job";
    let polling = RetryPolicy::default()
        .retries(Retries::Forever)
        .delay(Duration::from_millis(200))
        .jitter(Duration::ZERO)
        .deadline(Some(Duration::from_secs(60)));

    let held = redlock.lock("kill-job", TTL).await.expect("free");
    let waiter = {
        // Another client, as another process would be: only the nodes'
        // announcements can wake it (calls of one client hand over directly).
        let redlock = crate::redlock(&servers).await;
        tokio::spawn(async move {
            redlock
                .acquire(&LockOptions::new("kill-job", TTL).retry(polling))
                .await
        })
    };
    until_subscribed(&servers, channel, 1).await;
    for s in &servers {
        s.command(&["CLIENT", "KILL", "TYPE", "pubsub"])
            .expect("client kill");
    }
    held.unlock().await.expect("unlocked");
    let lock = waiter.await.expect("task").expect("polling still works");
    lock.unlock().await.expect("unlocked");

    // A new waiter makes the hub reconnect and subscribe again; then a
    // release wakes it as before.
    let held = redlock.lock("kill-job", TTL).await.expect("free");
    let waiter = {
        // Another client, as another process would be: only the nodes'
        // announcements can wake it (calls of one client hand over directly).
        let redlock = crate::redlock(&servers).await;
        tokio::spawn(async move {
            redlock
                .acquire(&LockOptions::new("kill-job", TTL).retry(hour_delay()))
                .await
        })
    };
    until_subscribed(&servers, channel, 1).await;
    held.unlock().await.expect("unlocked");
    let lock = waiter.await.expect("task").expect("woken after reconnect");
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
    let held = redlock.lock("poll-job", TTL).await.expect("free");
    let policy = RetryPolicy::default().retries(Retries::Limited(0));
    let err = redlock
        .acquire(&LockOptions::new("poll-job", TTL).retry(policy))
        .await
        .expect_err("held");
    assert!(err.is_conflict());
    assert!(servers
        .iter()
        .all(|s| numsub(s, "redlock:release:poll-job") == 0));
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
