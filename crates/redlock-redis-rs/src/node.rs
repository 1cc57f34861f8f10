//! [`RedisNode`]: one Redlock node over the `redis` crate.

use std::fmt;
use std::sync::Arc;

use redis::aio::{ConnectionManager, MultiplexedConnection};
use redis::{AsyncConnectionConfig, Client, IntoConnectionInfo};
use redlock_core::backlog::Backlog;
use redlock_core::Node;
use redlock_kit::node::QueueNode;
use redlock_kit::session::Session;
use redlock_kit::settings::Settings;
use redlock_kit::watch::ReleaseHub;
use redlock_kit::{Executor, LoadedScripts, Queue, Subscriptions};

use crate::address::{display_id, redact_url, Secrets};
use crate::single::{Connector, RedisLink};
use crate::watch::Opener;
use crate::Error;

/// One Redlock node: an independent Redis server, a whole Redis Cluster
/// (feature `cluster`) or the master of a Sentinel deployment (feature
/// `sentinel`).
///
/// Every call goes through this node's ordered queue (see the
/// [crate docs](crate#the-model)): it is sent once, in the order calls were
/// made, pipelined with whatever else is waiting. Cheap to clone; clones
/// share the queue and the connection.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use redlock_core::{Node, Acquire};
/// use redlock_redis_rs::RedisNode;
///
/// let node = RedisNode::connect("redis://127.0.0.1:6379").await?;
/// let keys = ["report".to_string()];
/// let answer = node.acquire(&keys, "my-token", Duration::from_secs(10)).await?;
/// assert_eq!(answer, Acquire::Acquired);
/// node.release(&keys, "my-token").await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisNode {
    inner: Arc<QueueNode>,
}

impl fmt::Debug for RedisNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisNode")
            .field("id", &self.inner.id())
            .finish_non_exhaustive()
    }
}

redlock_kit::node_via!(RedisNode, |node| &*node.inner);

/// Settings for building a [`RedisNode`]; start with [`RedisNode::builder`].
///
/// ```no_run
/// # async fn demo() -> Result<(), redlock_redis_rs::Error> {
/// use std::time::Duration;
/// use redlock_redis_rs::RedisNode;
///
/// let node = RedisNode::builder()
///     .response_timeout(Duration::from_secs(2))
///     .connect("redis://:secret@127.0.0.1:6379/1")
///     .await?;
/// assert_eq!(redlock_core::Node::id(&node), "redis://127.0.0.1:6379/1");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until a node is made from it"]
pub struct Builder {
    pub(crate) settings: Settings,
}

// Not derived: with `tls` it installs the crypto provider.
#[allow(clippy::derivable_impls)]
impl Default for Builder {
    fn default() -> Self {
        // Every constructor starts here, before any TLS connection is made.
        #[cfg(feature = "tls")]
        crate::tls::install_crypto_provider();
        Builder {
            settings: Settings::default(),
        }
    }
}

/// `scripts`, `response_timeout` (default 10 s), `connection_timeout`
/// (default 1 s), `max_batch`, `max_outstanding`, `wake_on_release`,
/// `native_commands` (see [`redlock_kit::native`]), `durability` (see
/// [`redlock_core::Durability`]; refused on a cluster node): the settings every Redlock adapter has, with the same defaults. Only nodes
/// made from a URL or a [`Client`] wake waiters on release. A zero timeout
/// is [`Error::InvalidConfig`], a backlog limit out of range
/// [`Error::InvalidArgument`]. See [`RedisNode::outstanding`].
impl Builder {
    redlock_kit::builder_methods!(settings);

    /// The former name of [`from_client`](Self::from_client).
    #[doc(hidden)]
    pub fn open_client(self, client: Client) -> Result<RedisNode, Error> {
        self.from_client(client)
    }

    /// The `redis` crate's connection settings: no response timeout of its
    /// own (a request it times out before writing it would be skipped, and
    /// a skipped release leaves a key behind); the node bounds each batch
    /// itself (see [`response_timeout`](Self::response_timeout)).
    pub(crate) fn config(&self) -> AsyncConnectionConfig {
        AsyncConnectionConfig::new()
            .set_response_timeout(None)
            .set_connection_timeout(self.settings.connection_timeout)
    }

    /// A node for the server at `url` (`redis://[user:password@]host:port[/db]`,
    /// `rediss://` with the `tls` feature, `redis+unix://`). Connects and
    /// loads the scripts in the background; an unreachable server is not an
    /// error here, only on use. Must be called within a tokio runtime.
    pub fn open(self, url: &str) -> Result<RedisNode, Error> {
        let info = url.into_connection_info().map_err(|e| invalid(url, &e))?;
        let client = Client::open(info).map_err(|e| invalid(url, &e))?;
        self.from_client(client)
    }

    /// Like [`open`](Self::open), then waits until the server answers PING.
    pub async fn connect(self, url: &str) -> Result<RedisNode, Error> {
        let node = self.open(url)?;
        node.ping().await?;
        Ok(node)
    }

    /// A node over a [`redis::Client`] the caller already has; it connects
    /// (and reconnects) through it.
    pub fn from_client(self, client: Client) -> Result<RedisNode, Error> {
        let info = client.get_connection_info().clone();
        let id = display_id(&info);
        let redact = crate::address::secrets_of(&info);
        let hub = if self.settings.wake_on_release {
            ReleaseHub::spawn(Opener(client.clone()), redact.clone(), id.clone())
        } else {
            None
        };
        let connector = Connector::Client {
            client,
            config: self.config(),
        };
        self.spawn_single(connector, id, redact, hub)
    }

    /// A node over a connection the caller already has. It is used as is
    /// and cannot be re-established after the server restarts; prefer a
    /// [`Client`] or a [`ConnectionManager`] for that. `name` is used as the
    /// node's [`id`](Node::id) (a password in it is removed).
    pub fn from_connection(
        self,
        connection: MultiplexedConnection,
        name: &str,
    ) -> Result<RedisNode, Error> {
        let id = redact_url(name);
        self.spawn_single(Connector::Fixed(connection), id, Secrets::default(), None)
    }

    /// A node over a [`ConnectionManager`], which reconnects by itself.
    /// `name` is used as the node's [`id`](Node::id) (a password in it is
    /// removed).
    pub fn from_manager(self, manager: ConnectionManager, name: &str) -> Result<RedisNode, Error> {
        let id = redact_url(name);
        self.spawn_single(Connector::Manager(manager), id, Secrets::default(), None)
    }

    pub(crate) fn spawn_single(
        self,
        connector: Connector,
        id: String,
        redact: Secrets,
        watch: Option<ReleaseHub>,
    ) -> Result<RedisNode, Error> {
        let backlog = self.backlog(&id)?;
        let session = Session::new(
            RedisLink::new(connector, redact),
            LoadedScripts::new(&self.settings.scripts),
            id.clone(),
            self.settings.response_timeout,
            backlog.clone(),
        )
        .with_native(self.settings.native_commands)
        .with_durability(self.settings.durability);
        self.spawn(session, id, backlog, watch)
    }

    /// The node's backlog, once the settings are known to work: a zero
    /// timeout is refused rather than silently replaced.
    pub(crate) fn backlog(&self, id: &str) -> Result<Backlog, Error> {
        Ok(self.settings.backlog(id)?)
    }

    pub(crate) fn spawn<E: Executor>(
        self,
        executor: E,
        id: String,
        backlog: Backlog,
        watch: Option<ReleaseHub>,
    ) -> Result<RedisNode, Error> {
        let queue = Queue::spawn(executor, self.settings.max_batch, backlog)?;
        Ok(RedisNode {
            inner: Arc::new(
                QueueNode::new(id, queue, watch).with_durability(self.settings.durability),
            ),
        })
    }
}

fn invalid(url: &str, e: &redis::RedisError) -> Error {
    Error::InvalidConfig(redlock_kit::url::invalid_url(url, &e.to_string()))
}

impl RedisNode {
    /// Settings for a node.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), redlock_redis_rs::Error> {
    /// let node = redlock_redis_rs::RedisNode::builder()
    ///     .max_outstanding(4096)
    ///     .wake_on_release(false)
    ///     .connect("redis://127.0.0.1:6379")
    ///     .await?;
    /// # let _ = node; Ok(()) }
    /// ```
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// A node for `url` with default settings, connecting in the background.
    /// See [`Builder::open`].
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// use redlock_redis_rs::{Options, Redlock, RedisNode};
    ///
    /// let nodes = ["redis://10.0.0.1:6379", "redis://10.0.0.2:6379", "redis://10.0.0.3:6379"]
    ///     .into_iter()
    ///     .map(RedisNode::open)
    ///     .collect::<Result<Vec<_>, _>>()?;
    /// let redlock = Redlock::new(nodes, Options::default())?;
    /// # let _ = redlock; Ok(()) }
    /// ```
    pub fn open(url: &str) -> Result<RedisNode, Error> {
        Builder::default().open(url)
    }

    /// A node for `url`, once the server answered. See [`Builder::connect`].
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), redlock_redis_rs::Error> {
    /// let node = redlock_redis_rs::RedisNode::connect("redis://:secret@127.0.0.1:6379/0").await?;
    /// assert_eq!(redlock_core::Node::id(&node), "redis://127.0.0.1:6379");
    /// # Ok(()) }
    /// ```
    pub async fn connect(url: &str) -> Result<RedisNode, Error> {
        Builder::default().connect(url).await
    }

    /// A node over a [`Client`]. See [`Builder::from_client`].
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let client = redis::Client::open("redis://127.0.0.1:6379")?;
    /// let node = redlock_redis_rs::RedisNode::from_client(client)?;
    /// # let _ = node; Ok(()) }
    /// ```
    pub fn from_client(client: Client) -> Result<RedisNode, Error> {
        Builder::default().from_client(client)
    }

    /// Requests this node owes: admitted and not answered yet (queued, in
    /// flight, or releases still to be sent again after a connection
    /// failed). Stays at or below [`Builder::max_outstanding`] (plus the
    /// releases of what was admitted) however long the server is stopped.
    pub fn outstanding(&self) -> usize {
        self.inner.queue().outstanding()
    }

    /// The pub/sub status of wake-on-release: which release channels the
    /// server confirmed, how many connections were opened and lost. `None`
    /// when the node does not watch (a connection passed in, or
    /// [`Builder::wake_on_release`] off). A cluster node's channels are the
    /// sharded ones
    /// ([`sharded_release_channel`](redlock_core::scripts::sharded_release_channel)).
    ///
    /// ```no_run
    /// use redlock_core::Node;
    ///
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let node = redlock_redis_rs::RedisNode::connect("redis://127.0.0.1:6379").await?;
    /// let keys = vec!["job".to_owned()];
    /// let woken = node.watch_release(&keys);
    /// if let Some(mut subscriptions) = node.release_subscriptions() {
    ///     let channel = redlock_core::scripts::release_channel("job");
    ///     subscriptions.until(|s| s.subscribed.contains(&channel)).await;
    ///     // From here on a release of "job" on this server wakes `woken`.
    /// }
    /// # drop(woken); Ok(()) }
    /// ```
    pub fn release_subscriptions(&self) -> Option<Subscriptions> {
        self.inner.subscriptions()
    }

    /// Sends PING through the node's queue.
    pub async fn ping(&self) -> Result<(), Error> {
        self.inner
            .queue()
            .ping()
            .await
            .map_err(|cause| Error::Connect {
                node: self.inner.id().to_owned(),
                cause,
            })
    }
}
