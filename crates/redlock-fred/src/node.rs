//! [`FredNode`]: the kit's [`QueueNode`] over fred clients, one
//! [`redlock_kit::Queue`] per client that sends what waits as one batch
//! ([`crate::wire`]); a cluster's keys split by slot above the queues.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use fred::clients::{Client, Pool};
use fred::interfaces::{ClientLike, EventInterface};
use fred::types::config::{Config, Options, ServerConfig};
use fred::types::ConnectHandle;
use futures_util::future::join_all;
use redlock_core::backlog::Backlog;
use redlock_core::NodeError;
use redlock_kit::node::{OnQuit, QueueNode};
use redlock_kit::slots::Resends;
use redlock_kit::watch::ReleaseHub;
use redlock_kit::{LoadedScripts, Planner, Queue, Subscriptions};

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
/// [`quit`](redlock_core::Node::quit) refuses new requests, waits up to the response
/// timeout (10 s when it is `None`) for the queued ones and the answers
/// still owed (releases in flight), then sends `QUIT` on every connection.
/// When the answers do not come in time (a stopped server), a node made by
/// [`connect`](Self::connect) stops its clients' connection tasks, which
/// closes their sockets at once; an application's client keeps its
/// connection then, and the error says so. The closing runs in a task of
/// its own, so it completes even if the caller stops waiting.
///
/// When the last clone is dropped without [`quit`](redlock_core::Node::quit), a node made
/// by [`connect`](Self::connect) closes its connections in the background
/// the same way.
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
    /// Closes the node when the application's last handle goes.
    _owner: Arc<Owner>,
}

struct Inner {
    /// The queues (one per client), the slot split, the release watch.
    node: QueueNode,
    clustered: bool,
    clients: Vec<Client>,
    options: Options,
    /// How long `quit` waits for the answers still owed.
    close_bound: Duration,
    max_outstanding: usize,
    /// The connection tasks of the clients the node owns; taken by the
    /// first `quit`.
    tasks: Mutex<Vec<Option<ConnectHandle>>>,
    secrets: Secrets,
    closed: AtomicBool,
}

impl fmt::Debug for FredNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FredNode")
            .field("id", &redlock_core::Node::id(&self.inner.node))
            .field("clustered", &self.inner.clustered)
            .field("clients", &self.inner.clients.len())
            .field("max_outstanding", &self.inner.max_outstanding)
            .field("closed", &self.inner.closed.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

redlock_kit::node_via!(FredNode, |node| &node.inner.node);

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

    /// A builder to set the response timeout, fail-fast behaviour, custom
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
        self.inner.max_outstanding
    }

    /// The pub/sub status of wake-on-release: which release channels the
    /// server confirmed, how many connections were opened and lost. `None`
    /// when the node does not watch ([`Builder::wake_on_release`] off).
    pub fn release_subscriptions(&self) -> Option<Subscriptions> {
        self.inner.node.subscriptions()
    }

    pub(crate) fn new(
        clients: Vec<Client>,
        builder: &Builder,
        mut secrets: Secrets,
        mut tasks: Vec<Option<ConnectHandle>>,
        backlog: Backlog,
    ) -> Result<Self, Error> {
        let settings = &builder.settings;
        let wake_on_release = settings.wake_on_release;
        let durability = settings.durability;
        let first = clients.first().ok_or(Error::EmptyPool)?;
        tasks.resize_with(clients.len(), || None);
        let config = first.client_config();
        secrets.add_opt(config.password.as_deref());
        let id = node_id(&config);
        let clustered = config.server.is_clustered();
        if clustered {
            settings.check_cluster()?;
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
        let options = builder.command_options();
        // `fail_fast` would take precedence over the second attempt.
        let release_options = Options {
            max_attempts: Some(2),
            fail_fast: false,
            ..options.clone()
        };
        let loaded = LoadedScripts::new(&settings.scripts);
        // Releases announced with SPUBLISH on the key's shard.
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
                detect_native: settings.native_commands && !clustered,
                reconnects: (settings.native_commands && !clustered).then(|| client.reconnect_rx()),
            };
            queues.push(Queue::spawn(wire, settings.max_batch, backlog.clone())?);
        }
        let mut queues = queues.into_iter();
        let queue = queues.next().ok_or(Error::EmptyPool)?;
        let node = QueueNode::new(id, queue, watch)
            .with_queues(queues)
            .split_by_slot(clustered)
            .with_response_timeout(settings.response_timeout)
            .with_durability(durability);
        let inner = Arc::new_cyclic(|weak: &Weak<Inner>| Inner {
            node: node.with_quit(on_quit(weak.clone())),
            clustered,
            clients,
            options,
            close_bound: settings
                .response_timeout
                .unwrap_or(redlock_kit::session::DEFAULT_RESPONSE_TIMEOUT),
            max_outstanding: settings.max_outstanding,
            tasks: Mutex::new(tasks),
            secrets,
            closed: AtomicBool::new(false),
        });
        if !inner.clients[0].has_reconnect_policy() {
            tracing::warn!(node = %redlock_core::Node::id(&inner.node), "fred client has no reconnect policy: after a restart this node stays unreachable");
        }
        Ok(FredNode {
            _owner: Arc::new(Owner {
                inner: inner.clone(),
            }),
            inner,
        })
    }

    /// A read of no keys through every queue: answered once each client
    /// is connected and its scripts are loaded. Where the user's ACL
    /// refuses the script (no `@scripting`), a `PING` instead: such a user
    /// still locks one resource with the server's native commands.
    pub(crate) async fn ping(&self) -> Result<(), NodeError> {
        let node = &self.inner.node;
        for queue in node.queues() {
            match node.bounded(queue.inspect(&[])).await {
                Ok(_) => {}
                Err(NodeError::Auth(m)) if m.contains("NOPERM") => {
                    node.bounded(queue.ping()).await?;
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
        self.inner.node.close();
        for task in lock_tasks(&self.inner).drain(..).flatten() {
            task.abort();
        }
    }
}

/// What `quit` runs (see [`FredNode`]): the closing in a task of its own.
fn on_quit(inner: Weak<Inner>) -> OnQuit {
    Box::new(move || {
        let inner = inner.clone();
        Box::pin(async move {
            let Some(inner) = inner.upgrade() else {
                return Ok(());
            };
            if inner.closed.swap(true, Ordering::AcqRel) {
                return Ok(());
            }
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => runtime.spawn(close(inner)).await.unwrap_or_else(|e| {
                    Err(NodeError::Connection(format!(
                        "closing the node failed: {e}"
                    )))
                }),
                Err(_) => close(inner).await,
            }
        })
    })
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
        inner.node.close();
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
                        tracing::debug!(node = %redlock_core::Node::id(&inner.node), error = %e, "closed a dropped node");
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
    inner.node.close();
    let bound = inner.close_bound;
    let drained = join_all(inner.node.queues().iter().map(Queue::drain));
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
        Some(e) => Err(NodeError::Connection(format!(
            "{}: {e}",
            redlock_core::Node::id(&inner.node)
        ))),
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
    let owned = task.is_some();
    if let (false, Some(task)) = (matches!(outcome, Ok(Ok(()))), task) {
        task.abort();
        let _ = task.await;
    }
    match outcome {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("QUIT failed: {e}")),
        Err(_) if owned => Err(format!(
            "requests still unanswered after {bound:?}; the connection was closed without their answers"
        )),
        Err(_) => Err(format!(
            "requests still unanswered after {bound:?}; the application's client keeps its connection until they are"
        )),
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
    let s = if config.uses_tls() { "s" } else { "" };
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
