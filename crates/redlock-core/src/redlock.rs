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
use crate::lease::{hold, Lease};
use crate::lock::Lock;
use crate::node::{Node, NodeError};
use crate::options::{LockOptions, Options};
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
    ///
    /// The nodes come from an adapter crate (`redlock-redis-rs`,
    /// `redlock-fred`); this works with any of them:
    ///
    /// ```
    /// use std::time::Duration;
    /// use redlock_core::{InvalidArgument, Node, Options, Redlock};
    ///
    /// fn five_nodes<N: Node + 'static>(nodes: Vec<N>) -> Result<Redlock, InvalidArgument> {
    ///     Redlock::new(
    ///         nodes,
    ///         Options::new()
    ///             .retry_count(3)
    ///             .retry_delay(Duration::from_millis(100))
    ///             .key_prefix("locks:"),
    ///     )
    /// }
    /// ```
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

    /// Locks by `options`: the general entry point behind [`Redlock::lock`]
    /// and [`Redlock::try_lock`]. Retries by the options' retry policy (or
    /// the Redlock's), and takes a fencing token when the options ask for
    /// one. A failed attempt releases what it took before the next one; a
    /// call that gives up leaves nothing behind.
    ///
    /// Calls of this process that wait for the same resources take turns,
    /// first come, first served; waiting wakes when a release is announced.
    ///
    /// ```
    /// # async fn demo(redlock: redlock_core::Redlock) -> Result<(), redlock_core::LockError> {
    /// use std::time::Duration;
    /// use redlock_core::{LockOptions, RetryPolicy};
    ///
    /// let options = LockOptions::new(["account:1", "account:2"], Duration::from_secs(10))
    ///     .retry(RetryPolicy::default().deadline(Duration::from_secs(5)))
    ///     .fenced(true);
    /// let lock = redlock.acquire(&options).await?;
    /// let fence = lock.fence(); // hand it to the storage layer with every write
    /// # let _ = fence;
    /// lock.unlock().await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn acquire(&self, options: &LockOptions) -> Result<Lock, LockError> {
        let shared = &self.shared;
        let target = shared.target(options.resources.clone())?;
        shared.check_ttl(options.ttl)?;
        options.validate()?;
        let policy = options.retry.unwrap_or(shared.options.retry);
        let lock = acquire(shared, target, options.ttl, &policy).await?;
        if options.fenced {
            fence(lock).await
        } else {
            Ok(lock)
        }
    }

    /// Locks one resource or several at once (all or nothing), retrying by the
    /// configured policy: node-redlock's `lock`. Same as
    /// [`Redlock::acquire`] with [`LockOptions::new`]`(resources, ttl)`.
    ///
    /// ```
    /// # async fn demo(redlock: redlock_core::Redlock) -> Result<(), redlock_core::LockError> {
    /// use std::time::Duration;
    ///
    /// let lock = redlock.lock("nightly-export", Duration::from_secs(30)).await?;
    /// // ... work while `lock.remaining()` is above zero ...
    /// lock.unlock().await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn lock(
        &self,
        resources: impl IntoResources,
        ttl: Duration,
    ) -> Result<Lock, LockError> {
        self.acquire(&LockOptions::new(resources, ttl)).await
    }

    /// One attempt only: node-redlock's "is it locked?" answered with
    /// `retryCount = 0`. A [`LockError::Conflict`] means unavailable. Same as
    /// [`Redlock::acquire`] with [`LockOptions::once`].
    ///
    /// ```
    /// # async fn demo(redlock: redlock_core::Redlock) -> Result<(), redlock_core::LockError> {
    /// use std::time::Duration;
    ///
    /// match redlock.try_lock("nightly-export", Duration::from_secs(30)).await {
    ///     Ok(lock) => lock.unlock().await?,
    ///     Err(e) if e.is_conflict() => println!("someone else runs the export"),
    ///     Err(e) => return Err(e),
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn try_lock(
        &self,
        resources: impl IntoResources,
        ttl: Duration,
    ) -> Result<Lock, LockError> {
        self.acquire(&LockOptions::new(resources, ttl).once()).await
    }

    /// Runs `work` while holding a lock taken by `options`: acquires,
    /// extends automatically while the future runs, releases afterwards and
    /// returns the future's output. The general form of
    /// [`Redlock::using`]; [`Lock::hold`] does the same for a lock already
    /// held.
    ///
    /// If the lock is lost (extensions fail and the validity is about to end,
    /// or someone else holds the keys), the [`Lease`] fires
    /// [`lost`](Lease::lost) and, unless the options say
    /// [`cancel_on_loss(false)`](LockOptions::cancel_on_loss), the future is
    /// dropped and the call returns [`LockError::Lost`]. A failed release at
    /// the end does not hide the output: it is reported through `tracing`,
    /// and the keys expire with their TTL.
    ///
    /// ```
    /// # async fn demo(redlock: redlock_core::Redlock) -> Result<(), redlock_core::LockError> {
    /// use std::time::Duration;
    /// use redlock_core::LockOptions;
    ///
    /// let options = LockOptions::new("nightly-export", Duration::from_secs(30))
    ///     .max_hold(Duration::from_secs(3600))
    ///     .cancel_on_loss(false);
    /// let rows = redlock
    ///     .scoped(&options, |lease| async move {
    ///         // ... work, checking `lease.is_held()` before each write ...
    ///         if lease.is_held() { 42 } else { 0 }
    ///     })
    ///     .await?;
    /// # let _ = rows;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn scoped<F, Fut, T>(&self, options: &LockOptions, work: F) -> Result<T, LockError>
    where
        F: FnOnce(Lease) -> Fut,
        Fut: Future<Output = T>,
    {
        let lock = self.acquire(options).await?;
        hold(lock, options, work).await
    }

    /// Runs `work` while holding a lock on `resources` for `ttl` at a time,
    /// with the configured retries: [`Redlock::scoped`] with
    /// [`LockOptions::new`]`(resources, ttl)`.
    ///
    /// ```
    /// # async fn demo(redlock: redlock_core::Redlock) -> Result<(), redlock_core::LockError> {
    /// use std::time::Duration;
    ///
    /// let report = redlock
    ///     .using("nightly-export", Duration::from_secs(30), |lease| async move {
    ///         // `lease.lost()` completes if the lock is lost; by default the
    ///         // future is then dropped and `using` returns `LockError::Lost`.
    ///         lease.remaining()
    ///     })
    ///     .await?;
    /// # let _ = report;
    /// # Ok(())
    /// # }
    /// ```
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
        self.scoped(&LockOptions::new(resources, ttl), work).await
    }

    /// Releases the lock on every node. Releasing a lock that already expired
    /// is not an error. Fails only when no quorum of nodes answered (the keys
    /// then expire with their TTL).
    ///
    /// ```
    /// # async fn demo(redlock: redlock_core::Redlock) -> Result<(), redlock_core::LockError> {
    /// use std::time::Duration;
    ///
    /// let lock = redlock.lock("job", Duration::from_secs(10)).await?;
    /// redlock.unlock(&lock).await?; // or `lock.unlock().await?`
    /// # Ok(())
    /// # }
    /// ```
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
    ///
    /// ```
    /// # async fn demo(redlock: redlock_core::Redlock) -> Result<(), redlock_core::LockError> {
    /// use std::time::Duration;
    ///
    /// let mut lock = redlock.lock("job", Duration::from_secs(10)).await?;
    /// // ... the work takes longer than planned:
    /// match redlock.extend(&mut lock, Duration::from_secs(10)).await {
    ///     Ok(()) => { /* ten more seconds from now */ }
    ///     Err(e) => eprintln!("not extended, still valid for {:?}: {e}", lock.remaining()),
    /// }
    /// lock.unlock().await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn extend(&self, lock: &mut Lock, ttl: Duration) -> Result<(), LockError> {
        extend(lock, ttl).await
    }

    /// Who holds `resources`, per node and by quorum. Tokens of other owners
    /// are redacted, and every holder counts as another owner, a lock of
    /// this same `Redlock` included: use [`Lock::status`] or
    /// [`Redlock::status_with_token`] to see a lock of ours as such.
    ///
    /// ```
    /// # async fn demo(redlock: redlock_core::Redlock) -> Result<(), redlock_core::LockError> {
    /// use redlock_core::Verdict;
    ///
    /// for resource in redlock.status(["export", "import"]).await? {
    ///     match resource.verdict {
    ///         Verdict::Free => println!("{} is free", resource.resource),
    ///         other => println!("{}: {other}", resource.resource),
    ///     }
    /// }
    /// # Ok(())
    /// # }
    /// ```
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
    ///
    /// ```
    /// # async fn demo(redlock: redlock_core::Redlock) {
    /// if let Err(e) = redlock.quit().await {
    ///     eprintln!("closing the nodes: {e}");
    /// }
    /// # }
    /// ```
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
    ///
    /// ```
    /// # async fn demo(mut lock: redlock_core::Lock) -> Result<(), redlock_core::LockError> {
    /// use std::time::Duration;
    ///
    /// if lock.remaining() < Duration::from_secs(2) {
    ///     lock.extend(Duration::from_secs(10)).await?;
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn extend(&mut self, ttl: Duration) -> Result<(), LockError> {
        extend(self, ttl).await
    }

    /// Keeps this lock extended while `work` runs, then releases it:
    /// [`Redlock::scoped`] for a lock already held. Of `options`, the scoped
    /// settings ([`extend_when_remaining`](LockOptions::extend_when_remaining),
    /// [`cancel_on_loss`](LockOptions::cancel_on_loss), the caps, the retry
    /// policy of each extension) apply; the resources, TTL and fencing are
    /// the lock's own, so the options the lock was acquired with fit.
    ///
    /// ```
    /// # async fn demo(redlock: redlock_core::Redlock) -> Result<(), redlock_core::LockError> {
    /// use std::time::Duration;
    /// use redlock_core::LockOptions;
    ///
    /// let options = LockOptions::new("deploy", Duration::from_secs(10)).once();
    /// let lock = redlock.acquire(&options).await?; // decide on busy before starting
    /// let done = lock
    ///     .hold(&options, |lease| async move { lease.token().len() })
    ///     .await?;
    /// # let _ = done;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn hold<F, Fut, T>(self, options: &LockOptions, work: F) -> Result<T, LockError>
    where
        F: FnOnce(Lease) -> Fut,
        Fut: Future<Output = T>,
    {
        hold(self, options, work).await
    }

    /// The status of this lock's resources, with our token recognised.
    pub async fn status(&self) -> Vec<ResourceStatus> {
        status_of(&self.shared, &self.target, Some(self.token())).await
    }
}
