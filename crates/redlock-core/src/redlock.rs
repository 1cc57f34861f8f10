//! [`Redlock`]: the lock manager over a set of nodes.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::{self, Either};
use rand::Rng;
use tracing::Instrument;

use crate::address;
use crate::error::{Failure, InvalidArgument, LockError, NodeOutcome, Operation};
use crate::local::{LocalQueues, Ticket};
use crate::lock::Lock;
use crate::node::{Acquire, Extend, Node, NodeError};
use crate::options::{default_node_timeout, drift, Options, RetryPolicy, MAX_TTL};
use crate::resources::{IntoResources, MAX_KEY_BYTES};
use crate::round::{self, Round, Vote};
use crate::runtime::{BoxFuture, Runtime};
use crate::telemetry;
use crate::token::new_token;

/// What a queued call does once its wait ends.
enum Queued {
    /// Attempt now.
    Attempt,
    /// The call ahead got the lock: wait for its release as the head.
    AfterRelease,
    /// The deadline passed while queued.
    Deadline,
}

/// What ended a wait between attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Woke {
    /// The retry delay passed.
    Delay,
    /// The nodes announced a release (another client's, possibly).
    Announced,
    /// A lock of this process on the same keys was released, or the turn
    /// was handed on.
    Local,
}

/// Binary exponential backoff against other clients, as on a shared
/// Ethernet segment. Every client waiting for a resource hears the same
/// release announcement at the same instant; if they all attempted at
/// once, they would split the nodes between them and nobody would get a
/// quorum (and their cleanup releases are announced too, so it would
/// repeat). So a client that lost a race (woken by an announcement and
/// still failed, or a split vote) doubles a window, starting from two
/// attempt durations (at least 0.5 ms), capped by the retry delay plus
/// jitter or eight attempt durations, whichever is longer (a window shorter
/// than a few attempts cannot spread contenders whose attempts take that
/// long), and waits a random time within it before attempting after the
/// next announcement or split. A client that has not collided waits
/// nothing extra; the window lasts for one `lock` call.
struct Backoff<'a> {
    window: Duration,
    cap: Duration,
    /// Where the window is kept between lock calls of this `Redlock`.
    shared: &'a AtomicU64,
}

impl<'a> Backoff<'a> {
    /// Starts from half the window the previous lock call ended with, so a
    /// client that keeps contending does not collide afresh on every call,
    /// and one that stopped contending forgets it within a few calls.
    fn new(policy: &RetryPolicy, shared: &'a AtomicU64) -> Self {
        let cap = policy.delay.saturating_add(policy.jitter);
        let last = Duration::from_micros(shared.load(Ordering::Relaxed) / 2);
        Backoff {
            window: last.min(cap),
            cap,
            shared,
        }
    }

    fn collided(&mut self, attempt: Duration) {
        let attempt = attempt.max(Duration::from_micros(250));
        let base = attempt.saturating_mul(2);
        // A window shorter than a few attempts cannot spread contenders
        // whose attempts take that long, whatever the retry delay.
        let cap = self.cap.max(attempt.saturating_mul(8));
        self.window = self.window.saturating_mul(2).max(base).min(cap);
    }

    fn draw(&self) -> Duration {
        let us = u64::try_from(self.window.as_micros()).unwrap_or(u64::MAX);
        if us == 0 {
            return Duration::ZERO;
        }
        Duration::from_micros(rand::rng().random_range(0..=us))
    }
}

impl Drop for Backoff<'_> {
    fn drop(&mut self) {
        let us = u64::try_from(self.window.as_micros()).unwrap_or(u64::MAX);
        self.shared.store(us, Ordering::Relaxed);
    }
}

/// State shared by a [`Redlock`] and the locks it hands out.
#[derive(Debug)]
pub(crate) struct Shared {
    pub nodes: Vec<Arc<dyn Node>>,
    pub quorum: usize,
    pub options: Options,
    pub runtime: Arc<dyn Runtime>,
    /// Per node, in the order of `nodes`: whether rounds wait for it.
    pub health: Box<[round::Health]>,
    /// Lock calls of this process waiting for the same keys.
    pub local: LocalQueues,
    /// The last collision backoff window (µs) a lock call ended with; the
    /// next call starts from half of it (see `Backoff`).
    pub backoff_us: AtomicU64,
}

/// A Redlock over N independent nodes. Cheap to clone; clones share nodes.
///
/// See the [crate docs](crate) for the model and an example.
#[derive(Debug, Clone)]
pub struct Redlock {
    pub(crate) shared: Arc<Shared>,
}

/// The validated keys and names of one lock call.
pub(crate) struct Target {
    pub names: Arc<[String]>,
    pub keys: Arc<[String]>,
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
        if nodes.is_empty() {
            return Err(InvalidArgument::NoNodes);
        }
        let servers: Vec<String> = nodes.iter().map(|n| address::server_of(n.id())).collect();
        for (i, server) in servers.iter().enumerate() {
            if let Some(j) = servers[..i].iter().position(|s| s == server) {
                return Err(InvalidArgument::DuplicateNode {
                    first: nodes[j].id().to_owned(),
                    second: nodes[i].id().to_owned(),
                });
            }
        }
        if let Some(e) = options.retry_count_error.clone() {
            return Err(e);
        }
        if !(0.0..1.0).contains(&options.drift_factor) {
            return Err(InvalidArgument::DriftFactor(options.drift_factor));
        }
        options.retry.validate()?;
        if options.node_timeout == Some(Duration::ZERO) {
            return Err(InvalidArgument::ZeroNodeTimeout);
        }
        let runtime = match options.runtime.clone() {
            Some(rt) => rt,
            None => default_runtime()?,
        };
        if nodes.len().is_multiple_of(2) {
            tracing::warn!(
                nodes = nodes.len(),
                "an even number of Redlock nodes tolerates no more failures than one node fewer; \
                 prefer an odd number"
            );
        }
        let quorum = nodes.len() / 2 + 1;
        let health = nodes.iter().map(|_| round::Health::default()).collect();
        Ok(Redlock {
            shared: Arc::new(Shared {
                health,
                local: LocalQueues::default(),
                backoff_us: AtomicU64::new(0),
                nodes,
                quorum,
                options,
                runtime,
            }),
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
        drift(ttl, self.shared.options.drift_factor)
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
        let target = self.target(resources.into_resources())?;
        self.check_ttl(ttl)?;
        policy.validate()?;
        let span = tracing::debug_span!(
            "redlock.lock",
            resources = ?target.names,
            ttl_ms = ttl.as_millis() as u64,
            attempts = tracing::field::Empty,
            outcome = tracing::field::Empty,
        );
        let result = self
            .acquire_loop(target, ttl, policy)
            .instrument(span.clone())
            .await;
        match &result {
            Ok(lock) => {
                span.record("attempts", lock.attempts());
                span.record("outcome", "acquired");
            }
            Err(e) => {
                span.record("attempts", e.failure().map_or(0, |f| f.attempts));
                span.record("outcome", tracing::field::display(e));
            }
        }
        result
    }

    async fn acquire_loop(
        &self,
        target: Target,
        ttl: Duration,
        policy: &RetryPolicy,
    ) -> Result<Lock, LockError> {
        let rt = &self.shared.runtime;
        let began = rt.now();
        let deadline = policy.deadline.and_then(|d| began.checked_add(d));
        let mut attempts: u32 = 0;
        // Wake-on-release: armed after the first conflict, then re-armed
        // before every later attempt, so that a release between a failed
        // attempt and the wait after it is not missed.
        let mut watch: Option<BoxFuture<'static, ()>> = None;
        // The in-process queue (see `local`): calls that may retry take
        // turns with the other calls of this process on the same keys.
        let mut ticket: Option<Ticket> = None;
        let mut failure: Option<Box<Failure>> = None;
        // Collision backoff against other clients (see `Backoff`).
        let mut backoff = Backoff::new(policy, &self.shared.backoff_us);
        let mut woken_by_announcement = false;
        if policy.may_retry(1) && self.shared.local.has_waiters(&target.keys) {
            ticket = Some(Ticket::join(&self.shared, &target.keys));
        }
        loop {
            if let Some(t) = ticket.as_ref().filter(|t| !t.is_head()) {
                // Only the head watches: a watch held here would take
                // wake-ups meant for it.
                watch = None;
                match self.queue_wait(t, policy, deadline, &mut attempts).await {
                    Queued::Attempt => {}
                    Queued::AfterRelease => {
                        watch = self.watch_release(&target.keys);
                        let f = failure
                            .take()
                            .unwrap_or_else(|| self.queued_failure(&target, attempts));
                        let (_, woke) = self.pause(policy, deadline, &mut watch, t, f).await?;
                        woken_by_announcement = woke == Woke::Announced;
                        watch = watch.and_then(|_| self.watch_release(&target.keys));
                    }
                    Queued::Deadline => {
                        let f = failure
                            .take()
                            .unwrap_or_else(|| self.queued_failure(&target, attempts));
                        let err = LockError::DeadlineExceeded(f);
                        telemetry::lock_failed(&err);
                        return Err(err);
                    }
                }
            }
            if woken_by_announcement {
                if let Some(t) = ticket.as_ref() {
                    self.backoff_pause(&backoff, deadline, t).await;
                }
            }
            attempts = attempts.saturating_add(1);
            let token: Arc<str> = Arc::from(new_token());
            let attempt_began = rt.now();
            match self.attempt(&target, &token, ttl).await {
                Ok((start, valid_until, unsent)) => {
                    if let Some(t) = ticket.take() {
                        t.acquired();
                    }
                    tracing::debug!(attempt = attempts, "acquired");
                    telemetry::acquired(rt.now().saturating_duration_since(began), attempts);
                    let mut lock = Lock::new(
                        self.shared.clone(),
                        target,
                        token,
                        ttl,
                        start,
                        valid_until,
                        attempts,
                    );
                    lock.unsent = unsent;
                    return Ok(lock);
                }
                Err(round) => {
                    if round.no > 0 {
                        telemetry::conflict();
                    }
                    let f = self.failure(Operation::Acquire, &target, attempts, &round);
                    tracing::debug!(attempt = attempts, "attempt failed: {f}");
                    let refused = refused_by_configuration(
                        &round,
                        self.shared.nodes.len(),
                        self.shared.quorum,
                    );
                    if refused || !policy.may_retry(attempts) {
                        let err = classify_acquire(
                            &round,
                            self.shared.nodes.len(),
                            self.shared.quorum,
                            f,
                        );
                        telemetry::lock_failed(&err);
                        return Err(err);
                    }
                    let t = ticket.get_or_insert_with(|| Ticket::join(&self.shared, &target.keys));
                    if !t.is_head() {
                        failure = Some(f);
                        continue;
                    }
                    if t.take_go() {
                        // Released in this process during the attempt.
                        failure = Some(f);
                        continue;
                    }
                    // Lost a race: woken by a release and beaten to it, or
                    // the nodes split between contenders and none of them
                    // can have a quorum.
                    let split = round.yes > 0 && round.no > 0 && round.no < self.shared.quorum;
                    if woken_by_announcement || split {
                        backoff.collided(rt.now().saturating_duration_since(attempt_began));
                    }
                    woken_by_announcement = false;
                    if watch.is_none() && round.no > 0 {
                        watch = self.watch_release(&target.keys);
                    }
                    if split {
                        // Everyone in the split has just released, and those
                        // releases are announced: waking on them would send
                        // every contender back at the same instant.
                        self.backoff_pause(&backoff, deadline, t).await;
                        t.take_go();
                        failure = Some(f);
                    } else {
                        let (f, woke) = self.pause(policy, deadline, &mut watch, t, f).await?;
                        failure = Some(f);
                        woken_by_announcement = woke == Woke::Announced;
                    }
                    if watch.is_some() {
                        // Arm the next attempt's watch before letting this
                        // one go, so the subscription stays in place.
                        let next = self.watch_release(&target.keys);
                        watch = next;
                    }
                }
            }
        }
    }

    /// The head's wait between attempts: the retry delay, cut short by a
    /// release announced by the nodes (`watch`) or made in this process
    /// (the ticket's go signal). Fails when the deadline comes first.
    async fn pause(
        &self,
        policy: &RetryPolicy,
        deadline: Option<Instant>,
        watch: &mut Option<BoxFuture<'static, ()>>,
        ticket: &Ticket,
        failure: Box<Failure>,
    ) -> Result<(Box<Failure>, Woke), LockError> {
        let rt = &self.shared.runtime;
        let (delay, last_wait) = self.next_wait(policy, deadline);
        if last_wait && watch.is_none() {
            // Only a release in this process could still come; the deadline
            // ends the call now, as it did before the queue existed.
            let err = LockError::DeadlineExceeded(failure);
            telemetry::lock_failed(&err);
            return Err(err);
        }
        let go = ticket.go();
        let wake: BoxFuture<'_, Woke> = match watch.as_mut() {
            Some(w) => Box::pin(async move {
                match future::select(go, w).await {
                    Either::Left(_) => Woke::Local,
                    Either::Right(_) => Woke::Announced,
                }
            }),
            None => Box::pin(async move {
                go.await;
                Woke::Local
            }),
        };
        let woke = match future::select(rt.sleep(delay), wake).await {
            Either::Left(_) => Woke::Delay,
            Either::Right((woke, _)) => woke,
        };
        let woke = if ticket.take_go() { Woke::Local } else { woke };
        if woke != Woke::Delay {
            tracing::debug!("woken by a release");
            telemetry::woken_by_release();
        } else if last_wait {
            let err = LockError::DeadlineExceeded(failure);
            telemetry::lock_failed(&err);
            return Err(err);
        }
        Ok((failure, woke))
    }

    /// A random pause drawn from `backoff`, cut short by a release in this
    /// process, and never past the deadline.
    async fn backoff_pause(
        &self,
        backoff: &Backoff<'_>,
        deadline: Option<Instant>,
        ticket: &Ticket,
    ) {
        let rt = &self.shared.runtime;
        let mut delay = backoff.draw();
        if let Some(deadline) = deadline {
            delay = delay.min(deadline.saturating_duration_since(rt.now()));
        }
        if delay.is_zero() {
            return;
        }
        future::select(rt.sleep(delay), ticket.go()).await;
    }

    /// The next retry delay, cut to what is left before the deadline; `true`
    /// when it was cut (this is the last wait).
    fn next_wait(&self, policy: &RetryPolicy, deadline: Option<Instant>) -> (Duration, bool) {
        let delay = policy.next_delay();
        match deadline {
            Some(d) => {
                let left = d.saturating_duration_since(self.shared.runtime.now());
                if delay >= left {
                    (left, true)
                } else {
                    (delay, false)
                }
            }
            None => (delay, false),
        }
    }

    /// A queued call's wait for its turn. Every retry delay that passes
    /// counts as an attempt (the head is trying for everyone); when only
    /// the last allowed attempt is left, the call makes it itself.
    async fn queue_wait(
        &self,
        ticket: &Ticket,
        policy: &RetryPolicy,
        deadline: Option<Instant>,
        attempts: &mut u32,
    ) -> Queued {
        let rt = &self.shared.runtime;
        loop {
            if ticket.is_head() {
                return if ticket.take_go() {
                    Queued::Attempt
                } else {
                    Queued::AfterRelease
                };
            }
            if !policy.may_retry(attempts.saturating_add(1)) {
                return Queued::Attempt;
            }
            let (delay, last_wait) = self.next_wait(policy, deadline);
            let turned = matches!(
                future::select(rt.sleep(delay), ticket.turn()).await,
                Either::Right(_)
            );
            if turned {
                continue;
            }
            if last_wait {
                return Queued::Deadline;
            }
            *attempts = attempts.saturating_add(1);
        }
    }

    /// The failure summary of a call that made no attempt of its own yet.
    fn queued_failure(&self, target: &Target, attempts: u32) -> Box<Failure> {
        let round = Round {
            outcomes: vec![NodeOutcome::Undecided; self.shared.nodes.len()],
            yes: 0,
            no: 0,
            fail: 0,
            out_of_time: false,
        };
        self.failure(Operation::Acquire, target, attempts, &round)
    }

    /// One watch over every node that announces releases, or `None`. It
    /// fires once a quorum of them (or all, if fewer announce) announced a
    /// release: a holder's release reaches every node it held, and waking
    /// on the first node alone would let the later nodes' announcements of
    /// the same release fire the next watch too (one useless attempt per
    /// waiter).
    fn watch_release(&self, keys: &[String]) -> Option<BoxFuture<'static, ()>> {
        let mut watches: Vec<BoxFuture<'static, ()>> = self
            .shared
            .nodes
            .iter()
            .filter_map(|n| n.watch_release(keys))
            .collect();
        if watches.is_empty() {
            return None;
        }
        let needed = self.shared.quorum.min(watches.len());
        Some(Box::pin(async move {
            let mut announced = 0;
            while announced < needed {
                let (_, _, rest) = future::select_all(watches).await;
                watches = rest;
                announced += 1;
            }
        }))
    }

    /// One attempt. On failure everything taken is released on all nodes
    /// before returning; if the caller's future is dropped instead, the
    /// release is spawned on the runtime. On success, also the nodes the
    /// acquire was certainly not sent to (see [`unsent`]).
    async fn attempt(
        &self,
        target: &Target,
        token: &Arc<str>,
        ttl: Duration,
    ) -> Result<(Instant, Instant, Option<Arc<[bool]>>), Round> {
        let shared = &self.shared;
        let start = shared.runtime.now();
        let allowance = drift(ttl, shared.options.drift_factor);
        // `check_ttl` guarantees ttl > drift and no overflow.
        let valid_until = start + (ttl - allowance);
        let mut guard = ReleaseGuard {
            shared: shared.clone(),
            keys: target.keys.clone(),
            token: token.clone(),
            armed: true,
        };
        let keys: &[String] = &target.keys;
        let token_str: &str = token;
        let round = self
            .round(
                Operation::Acquire,
                target,
                ttl,
                Some(valid_until),
                |_, node| {
                    Box::pin(async move {
                        node.acquire(keys, token_str, ttl).await.map(|a| match a {
                            Acquire::Acquired => (Vote::Yes, NodeOutcome::Acquired),
                            Acquire::Held => (Vote::No, NodeOutcome::Held),
                        })
                    })
                },
            )
            .await;
        if round.yes >= shared.quorum && shared.runtime.now() < valid_until {
            guard.armed = false;
            return Ok((start, valid_until, unsent(&round)));
        }
        // A node that answered "held" took none of the keys (acquire is
        // all-or-nothing per node), and one the acquire was never sent to
        // (a full backlog, no connection) took nothing either: only the
        // others need a release. Sending those nodes a release anyway would
        // queue work on exactly the nodes that do not drain.
        let took_nothing: Vec<bool> = round
            .outcomes
            .iter()
            .map(|o| *o == NodeOutcome::Held || not_sent(o))
            .collect();
        release_some(
            shared,
            &target.names,
            &target.keys,
            token,
            ttl,
            &took_nothing,
        )
        .await;
        guard.armed = false;
        Err(round)
    }

    /// Releases the lock on every node. Releasing a lock that already expired
    /// is not an error. Fails only when no quorum of nodes answered (the keys
    /// then expire with their TTL).
    pub async fn unlock(&self, lock: &Lock) -> Result<(), LockError> {
        if lock.released.load(Ordering::Acquire) {
            return Err(LockError::Released);
        }
        let span = tracing::debug_span!("redlock.release", resources = ?lock.target.names);
        let round = release_held(
            &self.shared,
            &lock.target.names,
            &lock.target.keys,
            &lock.token,
            lock.ttl,
            lock.unsent.as_deref().unwrap_or(&[]),
        )
        .instrument(span)
        .await;
        if round.yes >= self.shared.quorum {
            lock.released.store(true, Ordering::Release);
            Ok(())
        } else {
            Err(LockError::NoQuorum(self.failure(
                Operation::Release,
                &lock.target,
                1,
                &round,
            )))
        }
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
        if lock.released.load(Ordering::Acquire) {
            return Err(LockError::Released);
        }
        self.check_ttl(ttl)?;
        let shared = &self.shared;
        let span = tracing::debug_span!(
            "redlock.extend",
            resources = ?lock.target.names,
            ttl_ms = ttl.as_millis() as u64,
            outcome = tracing::field::Empty,
        );
        let _entered = span.clone();
        let start = shared.runtime.now();
        if start >= lock.valid_until {
            span.record("outcome", "validity already over");
            let round = Round {
                outcomes: vec![NodeOutcome::Undecided; shared.nodes.len()],
                yes: 0,
                no: 0,
                fail: 0,
                out_of_time: true,
            };
            return Err(LockError::Lost(self.failure(
                Operation::Extend,
                &lock.target,
                1,
                &round,
            )));
        }
        let valid_until = start + (ttl - drift(ttl, shared.options.drift_factor));
        let keys: &[String] = &lock.target.keys;
        let token: &str = &lock.token;
        let round = self
            .round(
                Operation::Extend,
                &lock.target,
                ttl,
                Some(valid_until),
                |_, node| {
                    Box::pin(async move {
                        node.extend(keys, token, ttl).await.map(|e| match e {
                            Extend::Extended => (Vote::Yes, NodeOutcome::Extended),
                            Extend::NotHeld => (Vote::No, NodeOutcome::NotHeld),
                        })
                    })
                },
            )
            .instrument(span.clone())
            .await;
        let n = shared.nodes.len();
        let q = shared.quorum;
        if round.yes >= q && shared.runtime.now() < valid_until {
            lock.valid_until = valid_until;
            lock.ttl = ttl;
            span.record("outcome", "extended");
            return Ok(());
        }
        // The requests are sent: any node that processed (or will process)
        // this extension keeps the keys only until `start + ttl`.
        if valid_until < lock.valid_until {
            lock.valid_until = valid_until;
        }
        let failure = self.failure(Operation::Extend, &lock.target, 1, &round);
        let err = if round.no > n - q {
            LockError::Lost(failure)
        } else if round.fail > n - q || round.yes < q && !round.out_of_time {
            LockError::NoQuorum(failure)
        } else {
            LockError::ValidityExpired(failure)
        };
        span.record("outcome", tracing::field::display(&err));
        telemetry::extend_failed(&err);
        Err(err)
    }

    /// Closes every node's connections (node-redlock's `quit`), letting
    /// requests already sent (releases in flight) finish first, each node
    /// within the per-node timeout. Returns the first error after all nodes
    /// were asked.
    pub async fn quit(&self) -> Result<(), NodeError> {
        let shared = &self.shared;
        let timeout = release_timeout(&shared.options, Duration::from_secs(10));
        let results = futures_util::future::join_all(shared.nodes.iter().map(|n| async move {
            let sleep = shared.runtime.sleep(timeout);
            match futures_util::future::select(n.quit(), sleep).await {
                futures_util::future::Either::Left((r, _)) => r,
                futures_util::future::Either::Right(_) => Err(NodeError::Connection(format!(
                    "{} did not finish its queued requests within {timeout:?}",
                    n.id()
                ))),
            }
        }))
        .await;
        results.into_iter().collect()
    }

    pub(crate) async fn round<'a, F>(
        &'a self,
        operation: Operation,
        target: &'a Target,
        ttl: Duration,
        until: Option<Instant>,
        call: F,
    ) -> Round
    where
        F: Fn(
            usize,
            &'a dyn Node,
        ) -> crate::runtime::BoxFuture<'a, Result<(Vote, NodeOutcome), NodeError>>,
    {
        let shared = &self.shared;
        round::run(
            shared,
            operation,
            &target.names,
            target.keys.first().map(String::as_str),
            node_timeout(&shared.options, ttl),
            until,
            call,
        )
        .await
    }

    pub(crate) fn failure(
        &self,
        operation: Operation,
        target: &Target,
        attempts: u32,
        round: &Round,
    ) -> Box<Failure> {
        Box::new(Failure {
            operation,
            resources: target.names.to_vec(),
            attempts,
            quorum: self.shared.quorum,
            nodes: round.reports(&self.shared.nodes),
        })
    }

    pub(crate) fn target(&self, names: Vec<String>) -> Result<Target, InvalidArgument> {
        if names.is_empty() {
            return Err(InvalidArgument::NoResources);
        }
        let mut unique: Vec<String> = Vec::with_capacity(names.len());
        for (i, name) in names.into_iter().enumerate() {
            if name.is_empty() {
                return Err(InvalidArgument::EmptyResource(i));
            }
            let len = self
                .shared
                .options
                .key_prefix
                .len()
                .saturating_add(name.len());
            if len > MAX_KEY_BYTES {
                return Err(InvalidArgument::ResourceTooLong {
                    index: i,
                    len,
                    max: MAX_KEY_BYTES,
                });
            }
            if !unique.contains(&name) {
                unique.push(name);
            }
        }
        let prefix = &self.shared.options.key_prefix;
        let keys: Arc<[String]> = if prefix.is_empty() {
            unique.clone().into()
        } else {
            unique.iter().map(|n| format!("{prefix}{n}")).collect()
        };
        Ok(Target {
            names: unique.into(),
            keys,
        })
    }

    pub(crate) fn check_ttl(&self, ttl: Duration) -> Result<(), InvalidArgument> {
        if ttl.is_zero() {
            return Err(InvalidArgument::ZeroTtl);
        }
        if ttl > MAX_TTL {
            return Err(InvalidArgument::TtlTooLarge { ttl, max: MAX_TTL });
        }
        let allowance = self.drift(ttl);
        if ttl <= allowance {
            return Err(InvalidArgument::TtlTooSmall {
                ttl,
                drift: allowance,
            });
        }
        if self.shared.runtime.now().checked_add(ttl).is_none() {
            return Err(InvalidArgument::TtlTooLarge { ttl, max: MAX_TTL });
        }
        Ok(())
    }
}

/// Whether the nodes that refused the credentials or permissions leave too
/// few nodes for a quorum: then no retry can succeed.
fn refused_by_configuration(round: &Round, n: usize, q: usize) -> bool {
    let refused = round
        .outcomes
        .iter()
        .filter(|o| matches!(o, NodeOutcome::Error(e) if e.is_config()))
        .count();
    refused > 0 && n - refused < q
}

fn classify_acquire(round: &Round, n: usize, q: usize, failure: Box<Failure>) -> LockError {
    if refused_by_configuration(round, n, q) {
        LockError::Config(failure)
    } else if round.yes >= q {
        LockError::ValidityExpired(failure)
    } else if round.fail > n - q {
        LockError::NoQuorum(failure)
    } else if round.no > 0 {
        LockError::Conflict(failure)
    } else if round.out_of_time {
        LockError::ValidityExpired(failure)
    } else {
        LockError::NoQuorum(failure)
    }
}

pub(crate) fn node_timeout(options: &Options, ttl: Duration) -> Duration {
    options
        .node_timeout
        .unwrap_or_else(|| default_node_timeout(ttl))
}

/// The least time a release (or `quit`) waits for a node. The per-node
/// timeout is cut for acquires, where every millisecond waited is validity
/// lost; a release loses nothing by waiting, and one given up too early on
/// a loaded node is reported as a failure although its request is still
/// carried out.
pub(crate) const RELEASE_TIMEOUT_FLOOR: Duration = Duration::from_secs(1);

/// How long a release round waits for each node: the per-node timeout, at
/// least [`RELEASE_TIMEOUT_FLOOR`].
pub(crate) fn release_timeout(options: &Options, ttl: Duration) -> Duration {
    node_timeout(options, ttl).max(RELEASE_TIMEOUT_FLOOR)
}

/// Whether a node's outcome says the request certainly never reached it.
fn not_sent(outcome: &NodeOutcome) -> bool {
    matches!(outcome, NodeOutcome::Error(e) if !e.was_sent())
}

/// The nodes of a successful acquire that were never sent the request,
/// or `None` when it reached (or may have reached) every node.
fn unsent(round: &Round) -> Option<Arc<[bool]>> {
    round
        .outcomes
        .iter()
        .any(not_sent)
        .then(|| round.outcomes.iter().map(not_sent).collect())
}

/// Sends the release to every node and waits until a quorum answered, a
/// quorum became impossible, or every node answered or timed out.
pub(crate) async fn release_all(
    shared: &Arc<Shared>,
    names: &[String],
    keys: &[String],
    token: &str,
    ttl: Duration,
) -> Round {
    release_some(shared, names, keys, token, ttl, &[]).await
}

/// [`release_all`] for a lock that was held: as soon as the release requests
/// are sent (every node's future polled once, which fixes their place in
/// each node's order), the next call of this process waiting for the same
/// keys is told to attempt, so its acquire follows the release on every
/// node instead of waiting for the answers.
pub(crate) async fn release_held(
    shared: &Arc<Shared>,
    names: &[String],
    keys: &[String],
    token: &str,
    ttl: Duration,
    skip: &[bool],
) -> Round {
    let mut release = std::pin::pin!(release_some(shared, names, keys, token, ttl, skip));
    let mut sent = false;
    future::poll_fn(|cx| {
        let poll = release.as_mut().poll(cx);
        if !sent {
            sent = true;
            shared.local.released(keys);
        }
        poll
    })
    .await
}

/// Like [`release_all`], except that nodes `i` with `skip[i]` true are
/// sent nothing (they count as having released nothing).
async fn release_some(
    shared: &Arc<Shared>,
    names: &[String],
    keys: &[String],
    token: &str,
    ttl: Duration,
    skip: &[bool],
) -> Round {
    round::run(
        shared,
        Operation::Release,
        names,
        keys.first().map(String::as_str),
        release_timeout(&shared.options, ttl),
        None,
        |i, node| {
            let send = !skip.get(i).copied().unwrap_or(false);
            Box::pin(async move {
                if !send {
                    return Ok((Vote::Yes, NodeOutcome::Released(0)));
                }
                node.release(keys, token)
                    .await
                    .map(|n| (Vote::Yes, NodeOutcome::Released(n)))
            })
        },
    )
    .await
}

/// Spawns a release when dropped armed: the attempt's future was cancelled
/// between sending acquires and finishing its own release.
struct ReleaseGuard {
    shared: Arc<Shared>,
    keys: Arc<[String]>,
    token: Arc<str>,
    armed: bool,
}

impl Drop for ReleaseGuard {
    fn drop(&mut self) {
        if self.armed {
            spawn_release(
                &self.shared,
                self.keys.clone(),
                self.token.clone(),
                Duration::from_secs(1),
                None,
            );
        }
    }
}

/// Spawns a release on the runtime, detached. Without a runtime that can
/// spawn, the keys are left to their TTL (logged).
pub(crate) fn spawn_release(
    shared: &Arc<Shared>,
    keys: Arc<[String]>,
    token: Arc<str>,
    ttl: Duration,
    skip: Option<Arc<[bool]>>,
) {
    let owned = shared.clone();
    let keys_for_log = keys.clone();
    let spawned = shared.runtime.spawn(Box::pin(async move {
        let skip = skip.as_deref().unwrap_or(&[]);
        release_held(&owned, &keys, &keys, &token, ttl, skip).await;
    }));
    if spawned {
        tracing::debug!(keys = ?keys_for_log, "release spawned in the background");
    } else {
        tracing::warn!(keys = ?keys_for_log, "no runtime to release on; keys expire with their TTL");
    }
}

fn default_runtime() -> Result<Arc<dyn Runtime>, InvalidArgument> {
    #[cfg(feature = "tokio")]
    {
        Ok(Arc::new(crate::runtime::TokioRuntime))
    }
    #[cfg(not(feature = "tokio"))]
    {
        Err(InvalidArgument::NoRuntime)
    }
}
