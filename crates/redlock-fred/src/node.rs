//! [`FredNode`]: the [`Node`] implementation over fred clients, each
//! client behind a [`redlock_kit::Queue`] that sends what waits as one
//! batch ([`crate::wire`]).

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fred::clients::{Client, Pool};
use fred::interfaces::ClientLike;
use fred::types::config::{Config, Options, ServerConfig};
use fred::types::ConnectHandle;
use futures_util::future::join_all;
use redlock_core::backlog::Backlog;
use redlock_core::node::ttl_millis;
use redlock_core::slot::hash_slot;
use redlock_core::{async_trait, Acquire, Durability, Extend, KeyState, Node, NodeError};
use redlock_kit::slots::{self, Resends, SlotSender};
use redlock_kit::watch::ReleaseHub;
use redlock_kit::{FinishOnDrop, LoadedScripts, Planner, Queue, Subscriptions};

use crate::builder::Builder;
use crate::error::{Error, Secrets};
use crate::watch::Recipe;
use crate::wire::Wire;

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
    /// the handles the node's own background work keeps.
    _owner: Option<Arc<Owner>>,
}

/// What a node is built from (see [`Builder`]).
pub(crate) struct Settings {
    pub(crate) options: Options,
    pub(crate) response_timeout: Duration,
    pub(crate) scripts: redlock_core::Scripts,
    pub(crate) secrets: Secrets,
    pub(crate) wake_on_release: bool,
    /// Whether native commands may replace the built-in scripts.
    pub(crate) native_commands: bool,
    pub(crate) backlog: Backlog,
    /// What an acquire or extend waits for (see [`Builder::durability`](crate::Builder::durability)).
    pub(crate) durability: Durability,
    /// The connection task of each client when the node owns it (made by
    /// [`Builder::open`]), `None` for an application's client.
    pub(crate) tasks: Vec<Option<ConnectHandle>>,
}

struct Inner {
    id: String,
    clustered: bool,
    clients: Vec<Client>,
    /// One per client, in the same order.
    queues: Vec<Queue>,
    options: Options,
    /// How long a caller waits for one request, and `quit` for the answers
    /// still owed.
    response_timeout: Duration,
    /// The requests admitted and not answered yet, bounded; shared by the
    /// queues.
    backlog: Backlog,
    /// The connection tasks of the clients the node owns; taken by the
    /// first `quit`.
    tasks: Mutex<Vec<Option<ConnectHandle>>>,
    secrets: Secrets,
    closed: AtomicBool,
    /// Wake-on-release for a single server; `None` otherwise or when turned
    /// off.
    watch: Option<ReleaseHub>,
    durability: Durability,
}

impl fmt::Debug for FredNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FredNode")
            .field("id", &self.inner.id)
            .field("clustered", &self.inner.clustered)
            .field("clients", &self.inner.clients.len())
            .field("response_timeout", &self.inner.response_timeout)
            .field("backlog", &self.inner.backlog)
            .field("closed", &self.inner.closed.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// What a node answers.
type Answer<T> = Result<T, NodeError>;

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
        self.inner.clustered
    }

    /// A handle for the node's own background work: it shares the clients
    /// but does not keep the node open (only the application's handles do).
    fn detached(&self) -> FredNode {
        FredNode {
            inner: self.inner.clone(),
            _owner: None,
        }
    }

    /// The per-command options every lock command is sent with: one write
    /// attempt, no timeout inside fred (the node applies
    /// [`Builder::response_timeout`] itself, without withdrawing the
    /// request) and the fail-fast flag.
    pub fn command_options(&self) -> &Options {
        &self.inner.options
    }

    /// The most requests this node may owe at once (see
    /// [`Builder::max_outstanding`]).
    pub fn max_outstanding(&self) -> usize {
        self.inner.backlog.limit()
    }

    /// The pub/sub status of wake-on-release: which release channels the
    /// server confirmed, how many connections were opened and lost. `None`
    /// when the node does not watch ([`Builder::wake_on_release`] off).
    pub fn release_subscriptions(&self) -> Option<Subscriptions> {
        self.inner.watch.as_ref().map(ReleaseHub::subscriptions)
    }

    pub(crate) fn new(clients: Vec<Client>, settings: Settings) -> Result<Self, Error> {
        let Settings {
            options,
            response_timeout,
            scripts,
            mut secrets,
            wake_on_release,
            native_commands,
            backlog,
            durability,
            mut tasks,
        } = settings;
        let first = clients.first().ok_or(Error::EmptyPool)?;
        tasks.resize_with(clients.len(), || None);
        let config = first.client_config();
        if let Some(p) = &config.password {
            secrets.add(p);
        }
        let id = node_id(&config);
        let clustered = config.server.is_clustered();
        if clustered && durability != Durability::Master {
            return Err(Error::InvalidConfig(
                "durability with replica wait is not supported on a cluster node: \
                 use Durability::Master"
                    .into(),
            ));
        }
        // A cluster announces on the key's shard; a sentinel's watch opens
        // each connection to the master the sentinels name then.
        let watch = wake_on_release
            .then(|| {
                let recipe = Recipe::from_client(first);
                let (secrets, id) = (secrets.clone(), id.clone());
                match clustered {
                    true => ReleaseHub::spawn_sharded(recipe, secrets, id),
                    false => ReleaseHub::spawn(recipe, secrets, id),
                }
            })
            .flatten();
        let backlog = backlog.with_gauge(&id);
        // `fail_fast` would take precedence over the second attempt.
        let release_options = Options {
            max_attempts: Some(2),
            fail_fast: false,
            ..options.clone()
        };
        let loaded = LoadedScripts::new(&scripts);
        let loaded = if clustered { loaded.sharded() } else { loaded };
        let planner = Planner::new(loaded).with_durability(durability);
        let mut queues = Vec::with_capacity(clients.len());
        for client in &clients {
            let wire = Wire {
                client: client.clone(),
                options: options.clone(),
                release_options: release_options.clone(),
                planner: planner.clone(),
                secrets: secrets.clone(),
                clustered,
                resends: Resends::default(),
                id: id.clone(),
                loaded: false,
                held: false,
                announce: Vec::new(),
                // A cluster's calls are single-slot script calls, sent as
                // they are.
                detect_native: native_commands && !clustered,
            };
            queues.push(
                Queue::spawn(wire, MAX_BATCH, backlog.clone()).map_err(|_| Error::NoRuntime)?,
            );
        }
        let inner = Arc::new(Inner {
            id,
            clustered,
            clients,
            queues,
            options,
            response_timeout,
            backlog,
            tasks: Mutex::new(tasks),
            secrets,
            closed: AtomicBool::new(false),
            watch,
            durability,
        });
        if !inner.clients[0].has_reconnect_policy() {
            tracing::warn!(node = %inner.id, "fred client has no reconnect policy: after a restart this node stays unreachable");
        }
        Ok(FredNode {
            _owner: Some(Arc::new(Owner {
                inner: inner.clone(),
            })),
            inner,
        })
    }

    /// A read of no keys through every queue: answered once each client
    /// is connected and its scripts are loaded. Where the user's ACL
    /// refuses the script (no `@scripting`), a `PING` instead: such a user
    /// still locks one resource with the server's native commands.
    pub(crate) async fn ping(&self) -> Result<(), NodeError> {
        for queue in &self.inner.queues {
            match self.bounded(queue.inspect(&[])).await {
                Ok(_) => {}
                Err(NodeError::Auth(m)) if m.contains("NOPERM") => {
                    self.bounded(queue.ping()).await?;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// The secrets to remove from error texts.
    pub(crate) fn secrets(&self) -> &Secrets {
        &self.inner.secrets
    }

    /// Stops the connection tasks the node owns at once (a node that could
    /// not connect).
    pub(crate) fn abort(self) {
        self.inner.closed.store(true, Ordering::Release);
        close_queues(&self.inner);
        for task in lock_tasks(&self.inner).drain(..).flatten() {
            task.abort();
        }
    }

    /// The queue of the client that carries requests for `keys`: always
    /// the same one for the same keys, so requests for them stay in order.
    fn queue(&self, keys: &[String]) -> Result<&Queue, NodeError> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(NodeError::Closed);
        }
        let queues = &self.inner.queues;
        let slot = keys.first().map_or(0, |k| hash_slot(k.as_bytes()));
        Ok(&queues[usize::from(slot) % queues.len()])
    }

    /// Waits for `answer` up to the response timeout; a request whose
    /// caller stops waiting keeps its place in the node's order.
    async fn bounded<T>(
        &self,
        answer: impl Future<Output = Result<T, NodeError>>,
    ) -> Result<T, NodeError> {
        let timeout = self.inner.response_timeout;
        tokio::time::timeout(timeout, answer)
            .await
            .unwrap_or_else(|_| {
                Err(NodeError::Connection(format!(
                    "no answer within {timeout:?}; the request keeps its place in the node's order"
                )))
            })
    }
}

/// The most calls sent as one batch.
const MAX_BATCH: usize = 256;

/// One request per slot (see [`redlock_kit::slots`]), each through the
/// queue of its keys.
#[async_trait]
impl SlotSender for FredNode {
    fn clustered(&self) -> bool {
        self.inner.clustered
    }

    async fn acquire(
        &self,
        _: u16,
        keys: Vec<String>,
        token: &str,
        ttl_ms: u64,
    ) -> Answer<Acquire> {
        let ttl = Duration::from_millis(ttl_ms);
        self.bounded(self.queue(&keys)?.acquire(&keys, token, ttl))
            .await
    }

    async fn release(&self, _: u16, keys: Vec<String>, token: &str) -> Answer<u64> {
        self.bounded(self.queue(&keys)?.release(&keys, token)).await
    }

    async fn extend(&self, _: u16, keys: Vec<String>, token: &str, ttl_ms: u64) -> Answer<Extend> {
        let ttl = Duration::from_millis(ttl_ms);
        self.bounded(self.queue(&keys)?.extend(&keys, token, ttl))
            .await
    }

    async fn inspect(&self, _: u16, keys: Vec<String>) -> Answer<Vec<KeyState>> {
        self.bounded(self.queue(&keys)?.inspect(&keys)).await
    }

    async fn fence(&self, _: u16, keys: Vec<String>, floor: u64) -> Answer<u64> {
        self.bounded(self.queue(&keys)?.fence(&keys, floor)).await
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

    /// Committed to the node's order on the first poll; on a cluster with
    /// keys in several slots, the rest goes on in a task of its own if the
    /// caller drops the future.
    async fn release(&self, keys: &[String], token: &str) -> Answer<u64> {
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

    async fn inspect(&self, keys: &[String]) -> Answer<Vec<KeyState>> {
        slots::inspect(self, keys).await
    }

    /// On a cluster with counters in several slots, each slot is read and
    /// raised on its own; the answer is the largest value any slot had.
    async fn fence(&self, keys: &[String], floor: u64) -> Answer<u64> {
        slots::fence(self, keys, floor).await
    }

    /// A future that completes once the node announces a release of any
    /// of `keys` (see [`Builder::wake_on_release`]); on a Redis Cluster a
    /// sharded announcement on the key's shard.
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

    /// As set with [`Builder::durability`](crate::Builder::durability).
    fn durability(&self) -> Durability {
        self.inner.durability
    }

    /// Refuses new requests, waits up to the response timeout for the
    /// queued ones and the answers still owed (releases in flight), then
    /// sends `QUIT` on every connection. When the answers do not come in
    /// time (a stopped server), a node made by [`FredNode::connect`] stops
    /// its clients' connection tasks, which closes their sockets at once;
    /// an application's client keeps its connection then, and the error
    /// says so. The closing runs in a task of its own, so it completes
    /// even if the caller stops waiting.
    async fn quit(&self) -> Result<(), NodeError> {
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let inner = self.inner.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => runtime.spawn(close(inner)).await.unwrap_or_else(|e| {
                Err(NodeError::Connection(format!(
                    "closing the node failed: {e}"
                )))
            }),
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
        close_queues(inner);
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
    close_queues(&inner);
    let bound = inner.response_timeout;
    let drained = join_all(inner.queues.iter().map(Queue::drain));
    let _ = tokio::time::timeout(bound, drained).await;
    let tasks = std::mem::take(&mut *lock_tasks(&inner));
    let mut tasks = tasks.into_iter();
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

/// Stops the queues taking requests (what they hold is still sent) and
/// the release watch.
fn close_queues(inner: &Inner) {
    for queue in &inner.queues {
        queue.close();
    }
    if let Some(hub) = &inner.watch {
        hub.close();
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
