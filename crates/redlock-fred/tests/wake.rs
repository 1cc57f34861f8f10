//! Wake-on-release against real servers: a waiter with a long retry delay
//! gets the lock soon after the holder releases; watches withdraw their
//! subscription when dropped; the pub/sub connection goes away with the
//! node; a broken or refused subscription falls back to the retry delay.

use std::time::{Duration, Instant};

use redlock_core::{Lock, Node, Options, Redlock, RetryPolicy};
use redlock_fred::FredNode;
use redlock_testkit::server::ServerOptions;
use redlock_testkit::suites::wake::{
    self, a_conflict_subscribes_nowhere, killed_subscriptions_fall_back_to_polling, spawn_acquire,
    woken_by_the_release,
};
use redlock_testkit::wait::until;
use redlock_testkit::RedisServer;

const TTL: Duration = Duration::from_secs(30);
/// How long a condition on the servers may take to come true before the
/// test fails (never a measure of speed, only a bound against hanging).
const PATIENCE: Duration = Duration::from_secs(20);

fn servers(n: usize) -> Vec<RedisServer> {
    (0..n)
        .map(|_| RedisServer::start().expect("redis-server starts"))
        .collect()
}

async fn nodes(servers: &[RedisServer]) -> Vec<FredNode> {
    let mut nodes = Vec::new();
    for s in servers {
        nodes.push(FredNode::connect(&s.url()).await.expect("connects"));
    }
    nodes
}

async fn redlock(servers: &[RedisServer]) -> Redlock {
    Redlock::new(nodes(servers).await, Options::new()).expect("valid")
}

/// Connections on `server` whose last command was a (UN)SUBSCRIBE or the
/// PING that confirms one: the nodes' pub/sub connections (the lock
/// connections' last commands are scripts).
fn pubsub_connections(server: &RedisServer) -> usize {
    server
        .text(&["CLIENT", "LIST"])
        .map(|list| {
            list.lines()
                .filter(|l| {
                    [" cmd=subscribe ", " cmd=unsubscribe ", " cmd=ping "]
                        .iter()
                        .any(|cmd| l.contains(cmd))
                })
                .count()
        })
        .unwrap_or(usize::MAX)
}

/// Waits until every server has exactly `n` subscribers on `channel`.
async fn until_subscribed(servers: &[RedisServer], channel: &str, n: i64) {
    wake::until_subscribed(servers, channel, n, PATIENCE).await;
}

/// Waits forever, `delay` between attempts, bounded by a deadline that
/// fails the test (not hangs it).
fn retry_every(delay: Duration) -> RetryPolicy {
    wake::retry_every(delay, Duration::from_secs(60))
}

/// Holds `key` with `redlock`, has another client (as another process
/// would be: only the nodes' announcements can wake it, calls of one
/// client hand over directly) wait for it with `delay` between attempts,
/// and releases once it waits (subscribed on every server): the waiter gets
/// the lock well before its delay, woken by the release. Returns its lock.
async fn woken_before_the_delay(
    servers: &[RedisServer],
    redlock: &Redlock,
    key: &str,
    delay: Duration,
) -> Lock {
    let waiter = crate::redlock(servers).await;
    let (lock, waited) =
        woken_by_the_release(servers, redlock, waiter, key, retry_every(delay), PATIENCE).await;
    assert!(
        waited < delay / 2,
        "the waiter took {waited:?}, as if it had slept its {delay:?} delay"
    );
    lock
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiter_gets_the_lock_soon_after_the_holder_unlocks() {
    let servers = servers(3);
    let redlock = redlock(&servers).await;
    let channel = "redlock:release:wake-job";
    let lock = woken_before_the_delay(&servers, &redlock, "wake-job", Duration::from_secs(5)).await;
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
    until("no key is left", PATIENCE, empty).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_watch_withdraws_the_subscription() {
    let servers = servers(1);
    let server = &servers[0];
    let node = FredNode::connect(&server.url()).await.expect("connects");
    let keys = vec!["drop-job".to_string()];
    let other = vec!["other-job".to_string()];
    let channel = "redlock:release:drop-job";

    let first = node.watch_release(&keys).expect("single servers announce");
    let second = node.watch_release(&keys).expect("single servers announce");
    let unrelated = node.watch_release(&other).expect("single servers announce");
    until_subscribed(&servers, channel, 1).await;
    until_subscribed(&servers, "redlock:release:other-job", 1).await;

    drop(first);
    // The second watch keeps the channel; give a wrong unsubscribe the
    // chance to show, by waiting for a change that comes after it.
    drop(unrelated);
    until_subscribed(&servers, "redlock:release:other-job", 0).await;
    assert_eq!(server.numsub(channel), 1, "another watch still needs it");

    drop(second);
    until_subscribed(&servers, channel, 0).await;
    // The connection stays for the next watch.
    assert_eq!(pubsub_connections(server), 1);

    // A watch completes when the node announces a release of its key.
    let watch = node.watch_release(&keys).expect("single servers announce");
    until_subscribed(&servers, channel, 1).await;
    let ttl = Duration::from_secs(10);
    assert_eq!(
        node.acquire(&keys, "t1", ttl).await,
        Ok(redlock_core::Acquire::Acquired)
    );
    assert_eq!(node.release(&keys, "t1").await, Ok(1));
    tokio::time::timeout(PATIENCE, watch)
        .await
        .expect("the release woke the watch");
    until_subscribed(&servers, channel, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pubsub_connection_goes_away_with_the_node() {
    let servers = servers(2);
    let keys = vec!["gone-job".to_string()];
    let channel = "redlock:release:gone-job";

    // Dropped: the task ends and closes its connection.
    let dropped = FredNode::connect(&servers[0].url())
        .await
        .expect("connects");
    let clone = dropped.clone();
    let watch = dropped.watch_release(&keys).expect("armed");
    until_subscribed(&servers[..1], channel, 1).await;
    drop(dropped);
    drop(watch);
    assert_eq!(pubsub_connections(&servers[0]), 1, "a clone still has it");
    drop(clone);
    let first = &servers[0];
    until(
        "the dropped node's pub/sub connection is closed",
        PATIENCE,
        || async { pubsub_connections(first) == 0 },
    )
    .await;

    // Quit: returns promptly, even with a watch pending, and closes it too.
    let node = FredNode::connect(&servers[1].url())
        .await
        .expect("connects");
    let pending = node.watch_release(&keys).expect("armed");
    until_subscribed(&servers[1..], channel, 1).await;
    tokio::time::timeout(Duration::from_secs(5), node.quit())
        .await
        .expect("quit does not hang")
        .expect("quit");
    assert!(
        node.watch_release(&keys).is_none(),
        "closed nodes do not watch"
    );
    let second = &servers[1];
    until(
        "the quit node's pub/sub connection is closed",
        PATIENCE,
        || async { pubsub_connections(second) == 0 && second.numsub(channel) == 0 },
    )
    .await;
    drop(pending);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_subscriptions_fall_back_to_the_delay_and_come_back() {
    let servers = servers(3);
    let redlock = redlock(&servers).await;
    let other = crate::redlock(&servers).await;
    killed_subscriptions_fall_back_to_polling(&servers, &redlock, other, "kill-job", PATIENCE)
        .await;

    // A new waiter makes the nodes reconnect and subscribe again; then a
    // release wakes it as before.
    let lock = woken_before_the_delay(&servers, &redlock, "kill-job", Duration::from_secs(5)).await;
    lock.unlock().await.expect("unlocked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_subscription_falls_back_to_the_delay() {
    // Servers that refuse SUBSCRIBE: no wake-up can ever come.
    let servers: Vec<RedisServer> = (0..3)
        .map(|_| {
            RedisServer::start_with(ServerOptions {
                args: vec![
                    "--rename-command".into(),
                    "SUBSCRIBE".into(),
                    "SUBSCRIBE-DISABLED-FOR-THIS-TEST".into(),
                ],
                ..ServerOptions::default()
            })
            .expect("redis-server starts")
        })
        .collect();
    let redlock = redlock(&servers).await;
    let delay = Duration::from_millis(500);
    let held = redlock.lock("refused-job", TTL).await.expect("free");
    let started = Instant::now();
    // Another client, as another process would be: only the nodes'
    // announcements can wake it (calls of one client hand over directly).
    let waiter = spawn_acquire(
        &crate::redlock(&servers).await,
        "refused-job",
        TTL,
        retry_every(delay),
    );
    // Let the waiter fail its first attempt and try to subscribe.
    until("the waiter is waiting", PATIENCE, || async {
        servers.iter().all(|s| {
            s.info_field("stats", "total_error_replies")
                .is_some_and(|n| n != "0")
        })
    })
    .await;
    held.unlock().await.expect("unlocked");
    let lock = waiter.await.expect("task").expect("polling still works");
    assert!(lock.attempts() >= 2);
    assert!(
        started.elapsed() >= delay,
        "nothing could wake the waiter before its delay"
    );
    assert!(servers
        .iter()
        .all(|s| s.numsub("redlock:release:refused-job") == 0));
    lock.unlock().await.expect("unlocked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_without_wake_on_release_poll() {
    let servers = servers(3);
    let mut nodes = Vec::new();
    for s in &servers {
        let node = FredNode::builder()
            .wake_on_release(false)
            .connect(&s.url())
            .await
            .expect("connects");
        assert!(node.watch_release(&["poll-job".to_string()]).is_none());
        nodes.push(node);
    }
    let redlock = Redlock::new(nodes, Options::new()).expect("valid");
    let held = a_conflict_subscribes_nowhere(&servers, &redlock, "poll-job").await;
    assert!(servers.iter().all(|s| pubsub_connections(s) == 0));
    held.unlock().await.expect("unlocked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_server_stalls_the_subscription_only_until_it_is_back() {
    let servers = servers(1);
    let server = &servers[0];
    let node = FredNode::connect(&server.url()).await.expect("connects");
    let before = vec!["before-pause".to_string()];
    let during = vec!["during-pause".to_string()];

    let mut subscriptions = node.release_subscriptions().expect("single servers watch");
    let old = node.watch_release(&before).expect("armed");
    until_subscribed(&servers, "redlock:release:before-pause", 1).await;
    let losses = subscriptions.now().losses;
    server.pause().expect("pause");
    // Changes the connection cannot carry while the server sleeps: the
    // UNSUBSCRIBE and SUBSCRIBE time out and the connection is given up.
    drop(old);
    let new = node.watch_release(&during).expect("armed");
    let status = tokio::time::timeout(PATIENCE, subscriptions.until(|s| s.losses > losses))
        .await
        .expect("the stalled subscription was given up");
    assert!(
        status.losses > losses && !status.ended,
        "the connection was given up while the server was paused: {status:?}"
    );
    server.resume().expect("resume");

    // Back: a new connection confirmed what is watched now (the given-up
    // connection may still run its buffered SUBSCRIBE before it closes, so
    // the server's count alone proves nothing), nothing else is subscribed,
    // and a release wakes the watch.
    let during_channel = "redlock:release:during-pause".to_owned();
    let connects = status.connects;
    let confirmed = tokio::time::timeout(
        PATIENCE,
        subscriptions.until(|s| s.connects > connects && s.subscribed.contains(&during_channel)),
    )
    .await
    .expect("subscribed again on a new connection");
    assert!(!confirmed.ended, "{confirmed:?}");
    until_subscribed(&servers, &during_channel, 1).await;
    until_subscribed(&servers, "redlock:release:before-pause", 0).await;
    let ttl = Duration::from_secs(10);
    assert_eq!(
        node.acquire(&during, "t1", ttl).await,
        Ok(redlock_core::Acquire::Acquired)
    );
    assert_eq!(node.release(&during, "t1").await, Ok(1));
    tokio::time::timeout(PATIENCE, new)
        .await
        .expect("the release woke the watch");
    tokio::time::timeout(Duration::from_secs(5), node.quit())
        .await
        .expect("quit does not hang")
        .expect("quit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pubsub_connection_authenticates_and_keeps_the_password_secret() {
    let password = "wake-s3cret-pw";
    let servers: Vec<RedisServer> = (0..3)
        .map(|_| {
            RedisServer::start_with(ServerOptions {
                password: Some(password.into()),
                ..ServerOptions::default()
            })
            .expect("redis-server starts")
        })
        .collect();
    let nodes = nodes(&servers).await;
    for n in &nodes {
        let shown = format!("{n:?} {}", n.id());
        assert!(!shown.contains(password), "{shown}");
    }
    let redlock = Redlock::new(nodes, Options::new()).expect("valid");
    let lock =
        woken_before_the_delay(&servers, &redlock, "secret-job", Duration::from_secs(5)).await;
    lock.unlock().await.expect("unlocked");
}
