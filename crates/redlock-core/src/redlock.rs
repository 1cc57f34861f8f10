//! [`Redlock`]: the lock manager over a set of nodes. A thin facade: every
//! call checks its input and hands over to the operation modules
//! (`acquire`, `release`, `extend`, `fence`, `lease`, `status`, `admin`).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::{self, Either};

use crate::acquire::acquire;
use crate::admin::{self, Released};
use crate::error::{InvalidArgument, LockError};
use crate::extend::extend;
use crate::fence::fence;
use crate::lease::{hold, Lease, ScopeOptions};
use crate::lock::Lock;
use crate::node::{Node, NodeError};
use crate::options::{Options, RetryPolicy};
use crate::resources::IntoResources;
use crate::shared::Shared;
use crate::status::{status_of, ResourceStatus};

/// A Redlock over N independent nodes. Cheap to clone; clones share nodes.
///
/// See the [crate docs](crate) for the model and an example.
#[derive(Debug, Clone)]
pub struct Redlock {
    shared: Arc<Shared>,
}

impl Redlock {
    /// A Redlock over `nodes`: one per independent Redis master, or one for a
    /// whole cluster or sentinel deployment.
    ///
    /// Fails on an empty node list, on the same server listed twice
    /// ([`InvalidArgument::DuplicateNode`]: host compared case-insensitively,
    /// port 6379 when none is given, database number and user ignored,
    /// judged from [`Node::id`]) or on invalid options; warns through
    /// `tracing` when the number of nodes is even (an even count tolerates no
    /// more failures than the odd count below it).
    pub fn new<N, I>(nodes: I, options: Options) -> Result<Self, InvalidArgument>
    where
        N: Node + 'static,
        I: IntoIterator<Item = N>,
    {
        let nodes = nodes
            .into_iter()
            .map(|n| Arc::new(n) as Arc<dyn Node>)
            .collect();
        Self::from_nodes(nodes, options)
    }

    /// Like [`Redlock::new`], for nodes of different types or nodes already
    /// shared.
    pub fn from_nodes(
        nodes: Vec<Arc<dyn Node>>,
        options: Options,
    ) -> Result<Self, InvalidArgument> {
        Ok(Redlock {
            shared: Arc::new(Shared::new(nodes, options)?),
        })
    }

    /// The nodes, in the order given.
    pub fn nodes(&self) -> &[Arc<dyn Node>] {
        &self.shared.nodes
    }

    /// How many nodes must agree: `N / 2 + 1`.
    pub fn quorum(&self) -> usize {
        self.shared.quorum
    }

    /// The options this Redlock was built with.
    pub fn options(&self) -> &Options {
        &self.shared.options
    }

    /// The clock-drift allowance for `ttl`: `floor(ttl_ms * drift_factor) + 2 ms`.
    pub fn drift(&self, ttl: Duration) -> Duration {
        self.shared.drift(ttl)
    }

    /// Locks one resource or several at once (all or nothing), retrying by the
    /// configured policy.
    pub async fn lock(
        &self,
        resources: impl IntoResources,
        ttl: Duration,
    ) -> Result<Lock, LockError> {
        let policy = self.shared.options.retry;
        self.lock_with(resources, ttl, &policy).await
    }

    /// One attempt only: node-redlock's "is it locked?" answered with
    /// `retryCount = 0`. A [`LockError::Conflict`] means unavailable.
    pub async fn try_lock(
        &self,
        resources: impl IntoResources,
        ttl: Duration,
    ) -> Result<Lock, LockError> {
        self.lock_with(resources, ttl, &RetryPolicy::once()).await
    }

    /// Locks with a retry policy for this call only.
    pub async fn lock_with(
        &self,
        resources: impl IntoResources,
        ttl: Duration,
        policy: &RetryPolicy,
    ) -> Result<Lock, LockError> {
        let target = self.shared.target(resources.into_resources())?;
        self.shared.check_ttl(ttl)?;
        policy.validate()?;
        acquire(&self.shared, target, ttl, policy).await
    }

    /// Locks like [`Redlock::lock`] and also takes a fencing token
    /// ([`Lock::fence`]); see the [`fence`](crate::fence) module for the
    /// guarantee.
    pub async fn lock_fenced(
        &self,
        resources: impl IntoResources,
        ttl: Duration,
    ) -> Result<Lock, LockError> {
        let policy = self.shared.options.retry;
        self.lock_fenced_with(resources, ttl, &policy).await
    }

    /// [`Redlock::lock_fenced`] with a retry policy for this call.
    pub async fn lock_fenced_with(
        &self,
        resources: impl IntoResources,
        ttl: Duration,
        policy: &RetryPolicy,
    ) -> Result<Lock, LockError> {
        fence(self.lock_with(resources, ttl, policy).await?).await
    }

    /// Runs `work` while holding a lock on `resources`: acquires (with the
    /// configured retries), extends automatically while the future runs,
    /// releases afterwards and returns the future's output.
    ///
    /// If the lock is lost (extensions fail and the validity is about to end,
    /// or someone else holds the keys), the [`Lease`] fires
    /// [`lost`](Lease::lost) and, by default, the future is dropped and the
    /// call returns [`LockError::Lost`]. A failed release at the end does not
    /// hide the output: it is reported through the node-error hook and
    /// `tracing`, and the keys expire with their TTL.
    pub async fn using<R, F, Fut, T>(
        &self,
        resources: R,
        ttl: Duration,
        work: F,
    ) -> Result<T, LockError>
    where
        R: IntoResources,
        F: FnOnce(Lease) -> Fut,
        Fut: Future<Output = T>,
    {
        self.using_with(resources, ttl, &ScopeOptions::default(), work)
            .await
    }

    /// [`Redlock::using`] with [`ScopeOptions`].
    pub async fn using_with<R, F, Fut, T>(
        &self,
        resources: R,
        ttl: Duration,
        options: &ScopeOptions,
        work: F,
    ) -> Result<T, LockError>
    where
        R: IntoResources,
        F: FnOnce(Lease) -> Fut,
        Fut: Future<Output = T>,
    {
        let policy = options.retry.unwrap_or(self.shared.options.retry);
        let lock = if options.fenced {
            self.lock_fenced_with(resources, ttl, &policy).await?
        } else {
            self.lock_with(resources, ttl, &policy).await?
        };
        hold(lock, options, work).await
    }

    /// Like [`Redlock::using_with`] for a lock already held: keeps it extended
    /// while `work` runs, then releases it.
    pub async fn scope<F, Fut, T>(
        &self,
        lock: Lock,
        options: &ScopeOptions,
        work: F,
    ) -> Result<T, LockError>
    where
        F: FnOnce(Lease) -> Fut,
        Fut: Future<Output = T>,
    {
        hold(lock, options, work).await
    }

    /// Releases the lock on every node. Releasing a lock that already expired
    /// is not an error. Fails only when no quorum of nodes answered (the keys
    /// then expire with their TTL).
    pub async fn unlock(&self, lock: &Lock) -> Result<(), LockError> {
        lock.release().await
    }

    /// Extends the lock so it expires `ttl` from now. Needs a quorum and a new
    /// validity in the future. On failure the lock keeps its old validity and
    /// is NOT released: the caller decides. Never recreates a vanished key.
    ///
    /// One exception keeps the validity honest: a failed extension to a
    /// *shorter* time may still have shortened the keys on the nodes that
    /// processed it, so the validity becomes the earlier of the old one and
    /// the one this extension would have given.
    pub async fn extend(&self, lock: &mut Lock, ttl: Duration) -> Result<(), LockError> {
        extend(lock, ttl).await
    }

    /// Who holds `resources`, per node and by quorum. Tokens of other owners
    /// are redacted, and every holder counts as another owner, a lock of
    /// this same `Redlock` included: use [`Lock::status`] or
    /// [`Redlock::status_with_token`] to see a lock of ours as such.
    pub async fn status(
        &self,
        resources: impl IntoResources,
    ) -> Result<Vec<ResourceStatus>, LockError> {
        let target = self.shared.target(resources.into_resources())?;
        Ok(status_of(&self.shared, &target, None).await)
    }

    /// Like [`Redlock::status`], recognising `token` as ours: keys holding
    /// it show as [`Holder::Us`](crate::Holder::Us) and a quorum of them as
    /// [`Verdict::HeldByUs`](crate::Verdict::HeldByUs). For a holder that
    /// kept only the token (for example a job started by `redlock run`,
    /// which gets it as `REDLOCK_TOKEN`); a holder with its [`Lock`] can use
    /// [`Lock::status`].
    ///
    /// ```
    /// # async fn demo(redlock: redlock_core::Redlock, token: String) -> Result<(), redlock_core::LockError> {
    /// use redlock_core::Verdict;
    /// let status = redlock.status_with_token("nightly-export", &token).await?;
    /// let mine = matches!(status[0].verdict, Verdict::HeldByUs { .. });
    /// # let _ = mine;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn status_with_token(
        &self,
        resources: impl IntoResources,
        token: &str,
    ) -> Result<Vec<ResourceStatus>, LockError> {
        if token.is_empty() {
            return Err(InvalidArgument::Token("empty token").into());
        }
        let target = self.shared.target(resources.into_resources())?;
        Ok(status_of(&self.shared, &target, Some(token)).await)
    }

    /// Releases `resources` where they hold `token`. A wrong or expired token
    /// deletes nothing (`keys_deleted == 0`); it is not an error. Fails when
    /// fewer than a quorum of nodes answered.
    pub async fn release_token(
        &self,
        resources: impl IntoResources,
        token: &str,
    ) -> Result<Released, LockError> {
        if token.is_empty() {
            return Err(InvalidArgument::Token(
                "empty token: pass the token the lock was taken with",
            )
            .into());
        }
        let target = self.shared.target(resources.into_resources())?;
        admin::release_token(&self.shared, &target, token).await
    }

    /// Deletes `resources` whoever holds them: reads each node's holders and
    /// releases every key with the token found there. For operators; the
    /// holder, if alive, loses its lock without being told.
    pub async fn force_release(
        &self,
        resources: impl IntoResources,
    ) -> Result<Released, LockError> {
        let target = self.shared.target(resources.into_resources())?;
        admin::force_release(&self.shared, &target).await
    }

    /// Closes every node's connections (node-redlock's `quit`), letting
    /// requests already sent (releases in flight) finish first, each node
    /// within the per-node timeout. Returns the first error after all nodes
    /// were asked.
    pub async fn quit(&self) -> Result<(), NodeError> {
        let shared = &self.shared;
        let timeout = shared.release_timeout(Duration::from_secs(10));
        let results = future::join_all(shared.nodes.iter().map(|n| async move {
            let sleep = shared.runtime.sleep(timeout);
            match future::select(n.quit(), sleep).await {
                Either::Left((r, _)) => r,
                Either::Right(_) => Err(NodeError::Connection(format!(
                    "{} did not finish its queued requests within {timeout:?}",
                    n.id()
                ))),
            }
        }))
        .await;
        results.into_iter().collect()
    }
}

impl Lock {
    /// The [`Redlock`] this lock belongs to.
    pub fn redlock(&self) -> Redlock {
        Redlock {
            shared: self.shared.clone(),
        }
    }

    /// Extends the lock to expire `ttl` from now. See [`Redlock::extend`].
    pub async fn extend(&mut self, ttl: Duration) -> Result<(), LockError> {
        extend(self, ttl).await
    }

    /// The status of this lock's resources, with our token recognised.
    pub async fn status(&self) -> Vec<ResourceStatus> {
        status_of(&self.shared, &self.target, Some(self.token())).await
    }
}
