//! [`FredNode`]: the [`Node`] implementation over fred clients.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fred::clients::{Client, Pool};
use fred::interfaces::ClientLike;
use fred::types::config::{Config, Options, ServerConfig};
use fred::types::{ClusterHash, ConnectHandle, CustomCommand, Value};
use futures_util::future::join_all;
use redlock_core::backlog::{Backlog, Permit};
use redlock_core::node::ttl_millis;
use redlock_core::{async_trait, Acquire, Extend, KeyState, Node, NodeError};
use redlock_kit::reply::{self, Reply};
use redlock_kit::slots::{self, is_redirect, Resends, SlotSender, MAX_REDIRECTS};
use redlock_kit::watch::ReleaseHub;
use redlock_kit::{FinishOnDrop, Subscriptions};

use crate::builder::Builder;
use crate::error::{is_noscript, node_error, Error, Secrets};
use crate::scripts::{self, LoadedScripts, Op};
use crate::watch::Recipe;

/// One Redlock node over a fred client or pool: an independent Redis server,
/// or one whole Redis Cluster or Sentinel deployment.
///
/// Cheap to clone; clones share the clients. See the [crate docs](crate) for
/// the model and the guarantees.
///
/// When the last clone is dropped without [`quit`](Node::quit), a node made
/// by [`connect`](Self::connect) closes its connections in the background
/// the same way (answers still owed are awaited up to the command timeout).
/// Clients the application gave ([`from_client`](Self::from_client),
/// [`from_pool`](Self::from_pool)) stay connected then: they are the
/// application's to close.
///
/// ```no_run
/// use std::time::Duration;
/// use redlock_core::{Options, Redlock};
/// use redlock_fred::FredNode;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let node = FredNode::connect("redis://127.0.0.1:6379").await?;
/// let redlock = Redlock::new([node], Options::default())?;
/// let lock = redlock.lock("nightly-export", Duration::from_secs(10)).await?;
/// // ... do the work while `!lock.is_expired()` ...
/// lock.unlock().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct FredNode {
    inner: Arc<Inner>,
    /// Closes the node when the application's last handle goes; `None` in
    /// the handles the node's own background work keeps (see
    /// [`FredNode::detached`]).
    _owner: Option<Arc<Owner>>,
}

/// How often the background script preload checks whether a node that is
/// not connected yet was closed.
const PRELOAD_CHECK: Duration = Duration::from_secs(1);

/// What a node is built from (see [`Builder`]).
pub(crate) struct Settings {
    pub(crate) options: Options,
    pub(crate) response_timeout: Duration,
    pub(crate) scripts: redlock_core::Scripts,
    pub(crate) secrets: Secrets,
    pub(crate) wake_on_release: bool,
    pub(crate) backlog: Backlog,
    /// The connection task of each client when the node owns it (made by
    /// [`Builder::connect`]), `None` for an application's client.
    pub(crate) tasks: Vec<Option<ConnectHandle>>,
}

struct Inner {
    id: String,
    kind: Kind,
    clients: Vec<Client>,
    options: Options,
    /// How long a caller waits for one request, and `quit` for the answers
    /// still owed.
    response_timeout: Duration,
    /// The requests sent and not answered yet, bounded.
    backlog: Backlog,
    /// The connection tasks of the clients the node owns (see
    /// [`Settings::tasks`]); taken by the first `quit`.
    tasks: Mutex<Vec<Option<ConnectHandle>>>,
    /// `options` with one more attempt: a release whose connection broke is
    /// written again after fred reconnected (see [`FredNode::run`]).
    release_options: Options,
    scripts: LoadedScripts,
    secrets: Secrets,
    /// When a refused acquire may be sent again; see [`FredNode::run`].
    resends: Resends,
    closed: AtomicBool,
    /// Wake-on-release for a single server; `None` otherwise or when turned
    /// off.
    watch: Option<ReleaseHub>,
}

/// What the clients are connected to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Centralized,
    Cluster,
    Sentinel,
}

impl fmt::Debug for FredNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FredNode")
            .field("id", &self.inner.id)
            .field("kind", &self.inner.kind)
            .field("clients", &self.inner.clients.len())
            .field("response_timeout", &self.inner.response_timeout)
            .field("fail_fast", &self.inner.options.fail_fast)
            .field("backlog", &self.inner.backlog)
            .field("closed", &self.inner.closed.load(Ordering::Relaxed))
            .field("wake_on_release", &self.inner.watch.is_some())
            .finish()
    }
}

impl FredNode {
    /// Connects to the deployment a URL names, with the defaults of
    /// [`Builder`]: `redis://` (or `rediss://` with a TLS feature)
    /// for one server, `redis-cluster://host:port?node=host:port` for a
    /// cluster, `redis-sentinel://host:port?sentinelServiceName=name` for a
    /// master behind sentinels.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), redlock_fred::Error> {
    /// let node = redlock_fred::FredNode::connect("redis://:secret@10.0.0.1:6379/0").await?;
    /// assert_eq!(node.id(), "redis://10.0.0.1:6379/0");
    /// # Ok(())
    /// # }
    /// # use redlock_core::Node;
    /// ```
    pub async fn connect(url: &str) -> Result<Self, Error> {
        Builder::new().connect(url).await
    }

    /// A node for the deployment a URL names, with the defaults of
    /// [`Builder`], without waiting for the server (see [`Builder::open`]).
    /// Must be called within a tokio runtime.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), redlock_fred::Error> {
    /// let node = redlock_fred::FredNode::open("redis://10.0.0.1:6379")?;
    /// # let _ = node; Ok(())
    /// # }
    /// ```
    pub fn open(url: &str) -> Result<Self, Error> {
        Builder::new().open(url)
    }

    /// Wraps a client the application built (centralized, clustered or
    /// sentinel), with the defaults of [`Builder`]. The client is
    /// initialised here when it has not been connected yet.
    ///
    /// Give it a [`ReconnectPolicy`](fred::types::config::ReconnectPolicy):
    /// without one, a node that restarts stays unreachable.
    ///
    /// ```no_run
    /// use fred::prelude::*;
    ///
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let config = Config::from_url("redis-cluster://127.0.0.1:7000")?;
    /// let client = Builder::from_config(config)
    ///     .set_policy(ReconnectPolicy::new_exponential(0, 100, 2_000, 2))
    ///     .build()?;
    /// let node = redlock_fred::FredNode::from_client(client).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn from_client(client: Client) -> Result<Self, Error> {
        Builder::new().from_client(client).await
    }

    /// Wraps a pool of clients to the same deployment. Requests for the same
    /// keys always go through the same client of the pool, so that their
    /// order on the wire is kept.
    ///
    /// ```no_run
    /// use fred::prelude::*;
    ///
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let config = Config::from_url("redis://127.0.0.1:6379")?;
    /// let pool = Builder::from_config(config)
    ///     .set_policy(redlock_fred::default_reconnect_policy())
    ///     .build_pool(4)?;
    /// let node = redlock_fred::FredNode::from_pool(pool).await?;
    /// # let _ = node; Ok(())
    /// # }
    /// ```
    pub async fn from_pool(pool: Pool) -> Result<Self, Error> {
        Builder::new().from_pool(pool).await
    }

    /// A builder to set the command timeout, fail-fast behaviour, custom
    /// scripts and, for [`Builder::connect`], the reconnect policy.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), redlock_fred::Error> {
    /// let node = redlock_fred::FredNode::builder()
    ///     .max_outstanding(4096)
    ///     .wake_on_release(false)
    ///     .connect("redis://127.0.0.1:6379")
    ///     .await?;
    /// # let _ = node; Ok(())
    /// # }
    /// ```
    pub fn builder() -> Builder {
        Builder::new()
    }

    /// The first (for a plain client, the only) fred client.
    pub fn client(&self) -> &Client {
        // `new` never builds a node without clients.
        &self.inner.clients[0]
    }

    /// Every fred client of this node (more than one for a pool).
    pub fn clients(&self) -> &[Client] {
        &self.inner.clients
    }

    /// Whether the node is a Redis Cluster (keys are then split by slot).
    pub fn is_clustered(&self) -> bool {
        self.inner.kind == Kind::Cluster
    }

    /// The per-command options every lock command is sent with: one write
    /// attempt, no timeout inside fred (the node applies
    /// [`Builder::response_timeout`] itself, without withdrawing the
    /// request) and the fail-fast flag.
    pub fn command_options(&self) -> &Options {
        &self.inner.options
    }

    /// Loads the node's scripts into the server's script cache again (on
    /// every primary of a cluster). Done at connect time; only needed by
    /// hand after a `SCRIPT FLUSH`, and not even then: a missing script is
    /// sent in full once and cached again.
    pub async fn load_scripts(&self) -> Result<(), NodeError> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(NodeError::Closed);
        }
        let clustered = self.is_clustered();
        for script in self.inner.scripts.all() {
            scripts::load(self.client(), clustered, script)
                .await
                .map_err(|e| node_error(&e, &self.inner.secrets))?;
        }
        Ok(())
    }

    /// The most requests this node may owe at once (see
    /// [`Builder::max_outstanding`]).
    pub fn max_outstanding(&self) -> usize {
        self.inner.backlog.limit()
    }

    pub(crate) fn new(clients: Vec<Client>, settings: Settings) -> Self {
        let Settings {
            options,
            response_timeout,
            scripts,
            mut secrets,
            wake_on_release,
            backlog,
            mut tasks,
        } = settings;
        // Builders never give an empty list (`Error::EmptyPool`).
        let first = &clients[0];
        tasks.resize_with(clients.len(), || None);
        let config = first.client_config();
        add_config_secrets(&mut secrets, &config);
        let kind = if config.server.is_clustered() {
            Kind::Cluster
        } else if config.server.is_sentinel() {
            Kind::Sentinel
        } else {
            Kind::Centralized
        };
        let id = node_id(&config);
        let watch = if wake_on_release && kind == Kind::Centralized {
            ReleaseHub::spawn(Recipe::from_client(first), secrets.clone(), id.clone())
        } else {
            None
        };
        let backlog = backlog.with_gauge(&id);
        let inner = Arc::new(Inner {
            id,
            kind,
            clients,
            response_timeout,
            backlog,
            tasks: Mutex::new(tasks),
            // `fail_fast` would take precedence over the second attempt.
            release_options: Options {
                max_attempts: Some(options.max_attempts.unwrap_or(1).saturating_add(1)),
                fail_fast: false,
                ..options.clone()
            },
            options,
            scripts: LoadedScripts::new(&scripts),
            secrets,
            resends: Resends::default(),
            closed: AtomicBool::new(false),
            watch,
        });
        let node = FredNode {
            _owner: Some(Arc::new(Owner {
                inner: inner.clone(),
            })),
            inner,
        };
        if !node.client().has_reconnect_policy() {
            tracing::warn!(
                node = %node.inner.id,
                "fred client has no reconnect policy: after a restart this node stays unreachable"
            );
        }
        // Preloaded once connected, in the background: a node is usable
        // (and made) without waiting for its server.
        let client = node.client().clone();
        let weak = Arc::downgrade(&node.inner);
        tokio::spawn(async move {
            // Checks now and then whether the node is gone, so that a node
            // that never connects leaves no task behind.
            while tokio::time::timeout(PRELOAD_CHECK, client.wait_for_connect())
                .await
                .is_err()
            {
                if weak
                    .upgrade()
                    .is_none_or(|i| i.closed.load(Ordering::Acquire))
                {
                    return;
                }
            }
            let Some(inner) = weak.upgrade() else { return };
            let node = FredNode {
                inner,
                _owner: None,
            };
            if let Err(e) = node.load_scripts().await {
                tracing::warn!(
                    node = %node.inner.id,
                    error = %e,
                    "could not preload the redlock scripts; they will be sent in full on first use"
                );
            }
        });
        node
    }

    /// The secrets to remove from error texts.
    pub(crate) fn secrets(&self) -> &Secrets {
        &self.inner.secrets
    }

    /// Stops the connection tasks the node owns at once (a node that could
    /// not connect).
    pub(crate) fn abort(self) {
        self.inner.closed.store(true, Ordering::Release);
        if let Some(hub) = &self.inner.watch {
            hub.close();
        }
        for task in lock_tasks(&self.inner).drain(..).flatten() {
            task.abort();
        }
    }

    /// The client that carries requests for `slot`: always the same one for
    /// the same keys, so requests for them stay in order.
    fn client_for(&self, slot: u16) -> &Client {
        let clients = &self.inner.clients;
        &clients[usize::from(slot) % clients.len()]
    }

    /// A handle for the node's own background work: it shares the clients
    /// but does not keep the node open (only the application's handles do).
    fn detached(&self) -> FredNode {
        FredNode {
            inner: self.inner.clone(),
            _owner: None,
        }
    }

    /// Admits a request that takes something (acquire, extend, reads), or
    /// refuses it with [`NodeError::Backlog`] when the node already owes its
    /// limit. Nothing is sent then, so no release is owed.
    fn admit(&self) -> Result<Permit, NodeError> {
        let backlog = &self.inner.backlog;
        backlog.try_admit().ok_or_else(|| backlog.full_error())
    }

    /// Sends one request under `permit` and waits for its answer up to the
    /// command timeout.
    ///
    /// The request is handed to fred on the first poll (no await comes
    /// before it), which fixes its place in this client's order. If the
    /// caller stops waiting (dropped, as the core does once a quorum
    /// answered, or timed out here), the rest goes on in a task of its own
    /// ([`FinishOnDrop`]) that keeps the permit until fred answers: the
    /// server replied, or the connection carrying the request was closed.
    /// So the backlog counts what fred really holds, and a request is never
    /// silently withdrawn (fred skips writing a command whose own timeout
    /// fired; none is set, see [`Builder::response_timeout`]).
    async fn send(
        &self,
        permit: Permit,
        slot: u16,
        op: Op,
        keys: Vec<String>,
        args: Vec<String>,
    ) -> Result<Reply, NodeError> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(NodeError::Closed);
        }
        let node = self.detached();
        let request = FinishOnDrop::new(async move {
            let answer = node.run(slot, op, &keys, &args).await;
            drop(permit);
            answer.map(crate::reply::from_fred)
        });
        let timeout = self.inner.response_timeout;
        match tokio::time::timeout(timeout, request).await {
            Ok(answer) => answer,
            Err(_) => Err(NodeError::Connection(format!(
                "no answer within {timeout:?}; the request keeps its place in the node's order"
            ))),
        }
    }

    /// Runs the script of `op` with EVALSHA, falling back to EVAL on
    /// `NOSCRIPT`; a one-key acquire with the built-in script is a plain
    /// `SET NX PX` instead ([`redlock_kit::reply::plain_set`]).
    ///
    /// Ordering: fred hands the command to its router over a channel when
    /// the returned future is first polled (no await comes before that), so
    /// the request is committed to this client's order even if the future is
    /// dropped right after. A resend (the full script after `NOSCRIPT`, the
    /// same request after a cluster redirection) is a second request,
    /// though; for an acquire it is only sent when no release went out on
    /// this node in between ([`Resends`]), so an acquire can never land
    /// after a release that was meant to follow it.
    async fn run(
        &self,
        slot: u16,
        op: Op,
        keys: &[String],
        args: &[String],
    ) -> Result<Value, NodeError> {
        let inner = &self.inner;
        let script = inner.scripts.get(op);
        let plain = match (op, args) {
            (Op::Acquire, [token, ttl]) => ttl
                .parse()
                .ok()
                .and_then(|ttl| redlock_kit::reply::plain_set(&script.source, keys, token, ttl)),
            _ => None,
        };
        // `custom` rather than `evalsha`: fred's `WithOptions` applies the
        // per-command options (one attempt, no fred timeout, fail fast) to
        // `ClientLike` commands, while `LuaInterface` calls on it would go to
        // the plain client and silently drop them.
        // A release is the one request fred may write again after a broken
        // connection (also when the core no longer waits for it): deleting
        // our own token is harmless to repeat, it still follows everything
        // sent before it, and without it the key would outlive a reset by
        // up to its TTL, blocking every contender.
        let options = if op == Op::Release {
            &inner.release_options
        } else {
            &inner.options
        };
        let client = self.client_for(slot).with_options(options);
        let sent = inner.resends.sending();
        let mut eval = false;
        let mut redirects = 0;
        loop {
            let (command, argv) = match &plain {
                Some((set, ttl)) => {
                    let mut argv: Vec<Value> = set[1..].iter().map(|a| Value::from(*a)).collect();
                    argv.push(Value::from(ttl.as_str()));
                    (
                        CustomCommand::new_static("SET", ClusterHash::Custom(slot), false),
                        argv,
                    )
                }
                None if eval => (
                    script_command("EVAL", slot),
                    script_args(&script.source, keys, args),
                ),
                None => (
                    script_command("EVALSHA", slot),
                    script_args(&script.sha, keys, args),
                ),
            };
            let e = match client.custom::<Value, Value>(command, argv).await {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            let noscript = !eval && plain.is_none() && is_noscript(&e);
            let redirect = redirects < MAX_REDIRECTS && is_redirect(e.details());
            if !noscript && !redirect {
                return Err(node_error(&e, &inner.secrets));
            }
            if op == Op::Acquire && !inner.resends.may_resend_acquire(sent) {
                if noscript {
                    // Cache the script again for the next attempt, but do not
                    // send this acquire a second time.
                    let _ = scripts::load(self.client_for(slot), self.is_clustered(), script).await;
                }
                return Err(NodeError::Server(format!(
                    "{}; the acquire was not sent again because a release followed it",
                    inner.secrets.redact(e.details())
                )));
            }
            if noscript {
                tracing::debug!(node = %inner.id, script = script.name, "NOSCRIPT: sending the script in full");
                eval = true;
            } else {
                tracing::debug!(node = %inner.id, error = %inner.secrets.redact(e.details()), "redirected: sending again");
                redirects += 1;
            }
        }
    }

    /// The pub/sub status of wake-on-release: which release channels the
    /// server confirmed, how many connections were opened and lost. `None`
    /// when the node does not watch (a cluster, a sentinel, or
    /// [`Builder::wake_on_release`] off).
    ///
    /// ```no_run
    /// use redlock_core::Node;
    ///
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let node = redlock_fred::FredNode::connect("redis://127.0.0.1:6379").await?;
    /// let keys = vec!["job".to_owned()];
    /// let woken = node.watch_release(&keys);
    /// if let Some(mut subscriptions) = node.release_subscriptions() {
    ///     let channel = redlock_core::scripts::release_channel("job");
    ///     subscriptions.until(|s| s.subscribed.contains(&channel)).await;
    ///     // From here on a release of "job" on this server wakes `woken`.
    /// }
    /// # drop(woken); Ok(())
    /// # }
    /// ```
    pub fn release_subscriptions(&self) -> Option<Subscriptions> {
        self.inner.watch.as_ref().map(ReleaseHub::subscriptions)
    }
}

/// What a node answers.
type Answer<T> = Result<T, NodeError>;

/// One request per slot (see [`redlock_kit::slots`]).
#[redlock_core::async_trait]
impl SlotSender for FredNode {
    fn clustered(&self) -> bool {
        self.is_clustered()
    }

    async fn acquire(
        &self,
        slot: u16,
        keys: Vec<String>,
        token: &str,
        ttl_ms: u64,
    ) -> Result<Acquire, NodeError> {
        let args = vec![token.to_owned(), ttl_ms.to_string()];
        let v = self
            .send(self.admit()?, slot, Op::Acquire, keys, args)
            .await?;
        reply::acquire(&v)
    }

    /// Releases are always admitted: one may be what deletes a key already
    /// on the server, and there are never more of them than acquires
    /// admitted before.
    async fn release(&self, slot: u16, keys: Vec<String>, token: &str) -> Result<u64, NodeError> {
        self.inner.resends.releasing();
        let permit = self.inner.backlog.admit();
        let v = self
            .send(permit, slot, Op::Release, keys, vec![token.to_owned()])
            .await?;
        reply::release(&v)
    }

    async fn extend(
        &self,
        slot: u16,
        keys: Vec<String>,
        token: &str,
        ttl_ms: u64,
    ) -> Result<Extend, NodeError> {
        let args = vec![token.to_owned(), ttl_ms.to_string()];
        let v = self
            .send(self.admit()?, slot, Op::Extend, keys, args)
            .await?;
        reply::extend(&v)
    }

    async fn inspect(&self, slot: u16, keys: Vec<String>) -> Result<Vec<KeyState>, NodeError> {
        let v = self
            .send(self.admit()?, slot, Op::Inspect, keys.clone(), Vec::new())
            .await?;
        reply::inspect(&keys, v)
    }

    async fn fence(&self, slot: u16, keys: Vec<String>, floor: u64) -> Result<u64, NodeError> {
        let args = vec![floor.to_string()];
        let v = self
            .send(self.admit()?, slot, Op::Fence, keys, args)
            .await?;
        reply::fence(&v)
    }
}

#[async_trait]
impl Node for FredNode {
    fn id(&self) -> &str {
        &self.inner.id
    }

    /// All or nothing. On a cluster, keys in different slots are sent as one
    /// request per slot (all sent at once); if any slot conflicts or fails,
    /// every slot that may have taken its keys is released again before the
    /// answer is returned ([`redlock_kit::slots::acquire`]).
    async fn acquire(&self, keys: &[String], token: &str, ttl: Duration) -> Answer<Acquire> {
        slots::acquire(self, keys, token, ttl_millis(ttl)).await
    }

    /// Sent on the first poll like every request; if the caller drops the
    /// future before the answer, the rest (waiting for the reply, and the
    /// full-text resend after NOSCRIPT, as after a server restart) goes on
    /// in a task of its own. Otherwise a release refused with NOSCRIPT after
    /// its caller moved on would never be sent again, and the key it was
    /// meant to delete would stay until its TTL.
    async fn release(&self, keys: &[String], token: &str) -> Result<u64, NodeError> {
        let node = self.detached();
        let (keys, token) = (keys.to_vec(), token.to_owned());
        FinishOnDrop::new(async move { slots::release(&node, &keys, &token).await }).await
    }

    /// All or nothing. On a cluster with keys in several slots, every slot
    /// is first checked (read only) for our token; when one key is gone or
    /// taken nothing is changed ([`redlock_kit::slots::extend`]).
    async fn extend(&self, keys: &[String], token: &str, ttl: Duration) -> Answer<Extend> {
        slots::extend(self, keys, token, ttl_millis(ttl)).await
    }

    async fn inspect(&self, keys: &[String]) -> Result<Vec<KeyState>, NodeError> {
        slots::inspect(self, keys).await
    }

    /// On a cluster with counters in several slots, each slot is read and
    /// raised on its own; the answer is the largest value any slot had.
    async fn fence(&self, keys: &[String], floor: u64) -> Result<u64, NodeError> {
        slots::fence(self, keys, floor).await
    }

    /// Single servers only: a future that completes once the node
    /// announces a release of any of `keys` on their release channels. The
    /// node keeps one extra pub/sub connection for this, subscribed only to
    /// channels someone watches (see [`Builder::wake_on_release`]).
    /// Redis Cluster and Sentinel nodes return `None`: their waiters poll
    /// with the retry delay.
    fn watch_release(&self, keys: &[String]) -> Option<redlock_core::BoxFuture<'static, ()>> {
        if self.inner.closed.load(Ordering::Acquire) {
            return None;
        }
        self.inner.watch.as_ref()?.watch(keys)
    }

    /// Requests admitted and not answered yet (see
    /// [`Builder::max_outstanding`]); requests whose caller stopped
    /// waiting count until fred answers them or closes their connection.
    fn outstanding(&self) -> Option<usize> {
        Some(self.inner.backlog.outstanding())
    }

    /// Refuses new requests, waits up to the command timeout for the
    /// answers still owed (releases in flight), then sends `QUIT` on every
    /// connection. When the answers do not come in time (a stopped server),
    /// a node made by [`FredNode::connect`] stops its clients' connection
    /// tasks, which closes their sockets at once; an application's client
    /// keeps its connection then, and the error says so. The closing runs
    /// in a task of its own, so it completes even if the caller stops
    /// waiting (as `Redlock::quit` does after its own bound).
    async fn quit(&self) -> Result<(), NodeError> {
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let inner = self.inner.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => match runtime.spawn(close(inner)).await {
                Ok(result) => result,
                Err(e) => Err(NodeError::Connection(format!(
                    "closing the node failed: {e}"
                ))),
            },
            Err(_) => close(inner).await,
        }
    }
}

/// Closes the node when the application's last handle is dropped without
/// `quit` (see [`FredNode`]).
struct Owner {
    inner: Arc<Inner>,
}

impl Drop for Owner {
    fn drop(&mut self) {
        let inner = &self.inner;
        if inner.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        if let Some(hub) = &inner.watch {
            hub.close();
        }
        let owned = lock_tasks(inner).iter().any(Option::is_some);
        if !owned {
            // The application's clients: theirs to close.
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let inner = inner.clone();
                runtime.spawn(async move {
                    if let Err(e) = close(inner.clone()).await {
                        tracing::debug!(node = %inner.id, error = %e, "closed a dropped node");
                    }
                });
            }
            Err(_) => {
                // No runtime to wait on: stop the connection tasks, which
                // closes their sockets.
                for task in lock_tasks(inner).iter().flatten() {
                    task.abort();
                }
            }
        }
    }
}

fn lock_tasks(inner: &Inner) -> std::sync::MutexGuard<'_, Vec<Option<ConnectHandle>>> {
    inner
        .tasks
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Closes every client of the node: see [`Node::quit`] on [`FredNode`].
async fn close(inner: Arc<Inner>) -> Result<(), NodeError> {
    if let Some(hub) = &inner.watch {
        hub.close();
    }
    let tasks = std::mem::take(&mut *lock_tasks(&inner));
    let mut tasks = tasks.into_iter();
    let bound = inner.response_timeout;
    let results = join_all(
        inner
            .clients
            .iter()
            .map(|client| close_client(client, tasks.next().flatten(), bound)),
    )
    .await;
    let mut first = None;
    for r in results {
        if let Err(e) = r {
            first = first.or(Some(inner.secrets.redact(&e)));
        }
    }
    match first {
        Some(e) => Err(NodeError::Connection(format!("{}: {e}", inner.id))),
        None => Ok(()),
    }
}

/// `QUIT` on one client once its answers are in (fred writes `QUIT` only
/// after every in-flight command was answered), and the end of its
/// connection task when the node owns it; after `bound`, the task is
/// stopped instead.
async fn close_client(
    client: &Client,
    mut task: Option<ConnectHandle>,
    bound: Duration,
) -> Result<(), String> {
    let graceful = async {
        let quit = client.quit().await;
        if let Some(task) = task.as_mut() {
            let _ = task.await;
        }
        quit
    };
    let outcome = tokio::time::timeout(bound, graceful).await;
    match (outcome, task) {
        (Ok(Ok(())), _) => Ok(()),
        (Ok(Err(e)), task) => {
            if let Some(task) = task {
                task.abort();
                let _ = task.await;
            }
            Err(format!("QUIT failed: {e}"))
        }
        (Err(_), Some(task)) => {
            task.abort();
            let _ = task.await;
            Err(format!(
                "requests still unanswered after {bound:?}; the connection was closed without their answers"
            ))
        }
        (Err(_), None) => Err(format!(
            "requests still unanswered after {bound:?}; the application's client keeps its connection until they are"
        )),
    }
}

/// `EVALSHA` / `EVAL` routed to `slot` on a cluster.
fn script_command(name: &'static str, slot: u16) -> CustomCommand {
    CustomCommand::new_static(name, ClusterHash::Custom(slot), false)
}

/// `script numkeys key... arg...`
fn script_args(script: &str, keys: &[String], args: &[String]) -> Vec<Value> {
    let mut argv = Vec::with_capacity(2 + keys.len() + args.len());
    argv.push(Value::from(script));
    argv.push(Value::Integer(
        i64::try_from(keys.len()).unwrap_or(i64::MAX),
    ));
    argv.extend(keys.iter().map(|k| Value::from(k.as_str())));
    argv.extend(args.iter().map(|a| Value::from(a.as_str())));
    argv
}

fn add_config_secrets(secrets: &mut Secrets, config: &Config) {
    if let Some(p) = &config.password {
        secrets.add(p);
    }
}

fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The node's id: scheme, hosts and database or service, never credentials.
pub(crate) fn node_id(config: &Config) -> String {
    let tls = config_uses_tls(config);
    let s = if tls { "s" } else { "" };
    let join = |servers: &[fred::types::config::Server]| {
        let mut hosts: Vec<String> = servers
            .iter()
            .map(|sv| host_port(&sv.host, sv.port))
            .collect();
        // fred may keep hosts in any order; sort so the id is stable.
        hosts.sort();
        hosts.dedup();
        hosts.join(",")
    };
    let db = config.database.map(|d| format!("/{d}")).unwrap_or_default();
    match &config.server {
        ServerConfig::Centralized { server } => {
            format!("redis{s}://{}{db}", host_port(&server.host, server.port))
        }
        ServerConfig::Clustered { hosts, .. } => format!("redis{s}-cluster://{}", join(hosts)),
        ServerConfig::Sentinel {
            hosts,
            service_name,
            ..
        } => format!("redis{s}-sentinel://{}/{service_name}{db}", join(hosts)),
        #[allow(unreachable_patterns)]
        other => format!("redis{s}://{}{db}", join(&other.hosts())),
    }
}

#[cfg(any(
    feature = "tls",
    feature = "enable-rustls",
    feature = "enable-rustls-ring"
))]
fn config_uses_tls(config: &Config) -> bool {
    config.tls.is_some()
}

#[cfg(not(any(
    feature = "tls",
    feature = "enable-rustls",
    feature = "enable-rustls-ring"
)))]
fn config_uses_tls(_: &Config) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_no_password() {
        let config = Config::from_url("redis://user:hunter2@10.0.0.1:6380/3").expect("valid url");
        let id = node_id(&config);
        assert_eq!(id, "redis://10.0.0.1:6380/3");
        let config = Config::from_url("redis-cluster://:pw@127.0.0.1:7000?node=127.0.0.1:7001")
            .expect("valid url");
        assert_eq!(
            node_id(&config),
            "redis-cluster://127.0.0.1:7000,127.0.0.1:7001"
        );
        let config =
            Config::from_url("redis-sentinel://:pw@127.0.0.1:26379?sentinelServiceName=mymaster")
                .expect("valid url");
        assert_eq!(
            node_id(&config),
            "redis-sentinel://127.0.0.1:26379/mymaster"
        );
    }
}
