//! What the wake-on-release checks ([`wake_sentinel`](super::wake_sentinel),
//! [`wake_cluster`](super::wake_cluster), and the adapters' own wake tests)
//! build: a node with the status of its release subscriptions, retry
//! policies that only a wake-up can beat, a waiter in a task of its own,
//! and waiting for the servers' subscriber counts.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use redlock_core::scripts::release_channel;
use redlock_core::{Lock, LockError, LockOptions, Node, Redlock, Retries, RetryPolicy};
use redlock_kit::watch::Status;
use redlock_kit::Subscriptions;
use tokio::task::JoinHandle;

use crate::conformance::{BoxError, Target};
use crate::server::RedisServer;
use crate::wait::until;

/// A node under test and the status of its wake-on-release subscriptions
/// (the adapter's `release_subscriptions()`).
pub struct WatchedNode {
    /// The node.
    pub node: Arc<dyn Node>,
    /// Which release channels the server confirmed, connections opened and
    /// lost; `None` when the node does not watch releases.
    pub subscriptions: Option<Subscriptions>,
}

/// Builds the adapter's node for a target, with its subscriptions' status.
///
/// Implemented for every `Fn(Target) -> Future<Output = Result<WatchedNode,
/// BoxError>>`.
#[async_trait::async_trait]
pub trait WatchedNodeFactory: Send + Sync {
    /// A node connected to `target`.
    async fn node(&self, target: &Target) -> Result<WatchedNode, BoxError>;
}

#[async_trait::async_trait]
impl<F, Fut> WatchedNodeFactory for F
where
    F: Fn(Target) -> Fut + Send + Sync,
    Fut: Future<Output = Result<WatchedNode, BoxError>> + Send,
{
    async fn node(&self, target: &Target) -> Result<WatchedNode, BoxError> {
        self(target.clone()).await
    }
}

/// The factory's node for `target`; panics with the factory's error.
pub(crate) async fn watched_node(f: &dyn WatchedNodeFactory, target: Target) -> WatchedNode {
    match f.node(&target).await {
        Ok(n) => n,
        Err(e) => panic!("node factory failed for {target:?}: {e}"),
    }
}

/// Retries forever with `delay` between attempts and no jitter, bounded by
/// `deadline`, which fails the test (not hangs it) if the lock never comes.
pub fn retry_every(delay: Duration, deadline: Duration) -> RetryPolicy {
    RetryPolicy::default()
        .retries(Retries::Forever)
        .delay(delay)
        .jitter(Duration::ZERO)
        .deadline(Some(deadline))
}

/// A retry delay of an hour ([`retry_every`]): a waiter with it gets a
/// held lock within the test only when a release announcement wakes it.
pub fn hour_delay(deadline: Duration) -> RetryPolicy {
    retry_every(Duration::from_secs(3600), deadline)
}

/// Starts `redlock.acquire` of `key` for `ttl` with `retry` in a task of
/// its own, as a waiter would.
pub fn spawn_acquire(
    redlock: &Redlock,
    key: &str,
    ttl: Duration,
    retry: RetryPolicy,
) -> JoinHandle<Result<Lock, LockError>> {
    let redlock = redlock.clone();
    let options = LockOptions::new(key, ttl).retry(retry);
    tokio::spawn(async move { redlock.acquire(&options).await })
}

/// Waits until every server has exactly `n` subscribers of `channel`
/// ([`RedisServer::numsub`]); fails the test after `within`.
pub async fn until_subscribed(servers: &[RedisServer], channel: &str, n: i64, within: Duration) {
    until(
        &format!("{n} subscriber(s) of {channel} on every server"),
        within,
        || async { servers.iter().all(|s| s.numsub(channel) == n) },
    )
    .await;
}

/// Holds `key` with `holder`, has `waiter` (another client, as another
/// process would be: only the nodes' announcements can wake it) wait for
/// it with `retry` in a task of its own, and releases once it waits (one
/// subscriber of the key's release channel on every server). Returns the
/// waiter's lock and how long after the release it got it. Each wait fails
/// the test after `patience`.
pub async fn woken_by_the_release(
    servers: &[RedisServer],
    holder: &Redlock,
    waiter: Redlock,
    key: &str,
    retry: RetryPolicy,
    patience: Duration,
) -> (Lock, Duration) {
    let held = holder.lock(key, WAKE_TTL).await.expect("free");
    let task = spawn_acquire(&waiter, key, WAKE_TTL, retry);
    drop(waiter);
    // Subscribed means the waiter's first attempt failed and it now waits.
    until_subscribed(servers, &release_channel(key), 1, patience).await;
    let released = Instant::now();
    held.unlock().await.expect("unlocked");
    let lock = tokio::time::timeout(patience, task)
        .await
        .expect("woken by the release")
        .expect("task")
        .expect("acquired");
    (lock, released.elapsed())
}

/// With the release subscriptions of `waiter`'s nodes killed on every
/// server (`CLIENT KILL TYPE pubsub`) while it waits for `key`, polling
/// every 200 ms, the waiter still gets the lock by polling once `holder`
/// releases. `waiter` is another client (as another process would be:
/// only the nodes' announcements can wake it), given up with its task.
/// Each wait fails the test after `patience`.
pub async fn killed_subscriptions_fall_back_to_polling(
    servers: &[RedisServer],
    holder: &Redlock,
    waiter: Redlock,
    key: &str,
    patience: Duration,
) {
    let ttl = WAKE_TTL;
    let held = holder.lock(key, ttl).await.expect("free");
    let polling = retry_every(Duration::from_millis(200), Duration::from_secs(60));
    let task = spawn_acquire(&waiter, key, ttl, polling);
    drop(waiter);
    until_subscribed(servers, &release_channel(key), 1, patience).await;
    for s in servers {
        s.command(&["CLIENT", "KILL", "TYPE", "pubsub"])
            .expect("client kill");
    }
    held.unlock().await.expect("unlocked");
    let lock = task.await.expect("task").expect("polling still works");
    lock.unlock().await.expect("unlocked");
}

/// Over nodes that do not watch releases: `redlock`'s attempt on `key`,
/// held by itself, fails at once as a conflict, and no server has a
/// subscriber of the key's release channel. Returns the held lock, for the
/// caller's own checks.
pub async fn a_conflict_subscribes_nowhere(
    servers: &[RedisServer],
    redlock: &Redlock,
    key: &str,
) -> Lock {
    let held = redlock.lock(key, WAKE_TTL).await.expect("free");
    let once = RetryPolicy::default().retries(Retries::Limited(0));
    let err = redlock
        .acquire(&LockOptions::new(key, WAKE_TTL).retry(once))
        .await
        .expect_err("held");
    assert!(err.is_conflict());
    let channel = release_channel(key);
    assert!(servers.iter().all(|s| s.numsub(&channel) == 0));
    held
}

/// The TTL of the locks in [`WakeOnce::run`].
const WAKE_TTL: Duration = Duration::from_secs(30);

/// One wake-up through a node's subscriptions, with these settings: see
/// [`WakeOnce::run`].
pub(crate) struct WakeOnce<'a> {
    /// Holds the key.
    pub holder: &'a Redlock,
    /// Another client, over the node whose subscriptions are watched.
    pub waiter: &'a Redlock,
    /// The waiter's node's subscriptions.
    pub subscriptions: &'a mut Subscriptions,
    /// How long each wait may take before the test fails.
    pub patience: Duration,
    /// The waiter's deadline.
    pub deadline: Duration,
}

impl<'a> WakeOnce<'a> {
    /// The settings, in the order of the fields.
    pub(crate) fn new(
        holder: &'a Redlock,
        waiter: &'a Redlock,
        subscriptions: &'a mut Subscriptions,
        patience: Duration,
        deadline: Duration,
    ) -> Self {
        WakeOnce {
            holder,
            waiter,
            subscriptions,
            patience,
            deadline,
        }
    }

    /// Holds `key` with the holder, has the waiter wait for it with an
    /// hour's delay in a task of its own, waits until the subscriptions
    /// confirmed `channel`, hands that status to `on_confirmed` (the checks
    /// on the servers), releases, and checks that the waiter got the lock on
    /// that wake-up.
    pub(crate) async fn run(
        &mut self,
        key: &str,
        channel: &str,
        on_confirmed: impl FnOnce(&Status),
    ) {
        let held = self.holder.lock(key, WAKE_TTL).await.expect("free");
        let task = spawn_acquire(self.waiter, key, WAKE_TTL, hour_delay(self.deadline));
        let status = tokio::time::timeout(
            self.patience,
            self.subscriptions.until(|s| s.subscribed.contains(channel)),
        )
        .await
        .unwrap_or_else(|_| panic!("{channel}: the subscription is confirmed"));
        on_confirmed(&status);
        held.unlock().await.expect("unlocked");
        let lock = tokio::time::timeout(self.patience, task)
            .await
            .expect("woken by the release, long before the hour")
            .expect("task")
            .expect("acquired");
        assert_eq!(lock.attempts(), 2, "{key}: one wait, then the lock");
        lock.unlock().await.expect("unlocked");
    }
}
