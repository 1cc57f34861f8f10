//! [`RedisNode`]: one Redlock node over the `redis` crate.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, MultiplexedConnection};
use redis::{AsyncConnectionConfig, Client, IntoConnectionInfo};
use redlock_core::backlog::{self, Backlog};
use redlock_core::{Acquire, Durability, Extend, KeyState, Node, NodeError, Scripts};
use redlock_kit::watch::ReleaseHub;
use redlock_kit::{Executor, LoadedScripts, Queue, Subscriptions};

use crate::address::{display_id, redact_url, Secrets};
use crate::single::{
    Connector, SingleExecutor, DEFAULT_CONNECTION_TIMEOUT, DEFAULT_RESPONSE_TIMEOUT,
};
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
    inner: Arc<Inner>,
}

struct Inner {
    id: String,
    queue: Queue,
    watch: Option<ReleaseHub>,
    durability: Durability,
}

impl fmt::Debug for RedisNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisNode")
            .field("id", &self.inner.id)
            .finish_non_exhaustive()
    }
}

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
    scripts: Scripts,
    response_timeout: Option<Duration>,
    connection_timeout: Option<Duration>,
    max_batch: usize,
    max_outstanding: usize,
    wake_on_release: bool,
    durability: Durability,
}

impl Default for Builder {
    fn default() -> Self {
        // Every constructor starts here, before any TLS connection is made.
        #[cfg(feature = "tls")]
        crate::tls::install_crypto_provider();
        Builder {
            scripts: Scripts::default(),
            response_timeout: Some(DEFAULT_RESPONSE_TIMEOUT),
            connection_timeout: Some(DEFAULT_CONNECTION_TIMEOUT),
            max_batch: 256,
            max_outstanding: backlog::DEFAULT_LIMIT,
            wake_on_release: true,
            durability: Durability::Master,
        }
    }
}

impl Builder {
    /// Substitute Lua scripts (node-redlock's `lockScript`, `unlockScript`,
    /// `extendScript`); they must keep the calling convention of
    /// [`redlock_core::scripts`].
    pub fn scripts(mut self, scripts: Scripts) -> Self {
        self.scripts = scripts;
        self
    }

    /// How long the node waits for a reply before it gives the connection
    /// up and replaces it (default 10 s; `None` waits for the server
    /// however long it takes). The core bounds every request by its own,
    /// much shorter per-node timeout; this one only decides when a silent
    /// server's connection is abandoned. The new connection first kills
    /// the old one on the server (`CLIENT KILL ID`), so nothing still
    /// buffered on the old socket can run after a later release; where
    /// that is impossible (a connection passed in, or a server that refuses
    /// `CLIENT ID` / `INFO`), the node waits for the server instead. Zero
    /// is refused when the node is built ([`Error::InvalidConfig`]).
    pub fn response_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.response_timeout = timeout.into();
        self
    }

    /// How long establishing a connection may take (default 1 s; `None`:
    /// no bound). Zero is refused when the node is built
    /// ([`Error::InvalidConfig`]).
    pub fn connection_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.connection_timeout = timeout.into();
        self
    }

    /// The most calls sent in one pipeline (default 256).
    pub fn max_batch(mut self, max: usize) -> Self {
        self.max_batch = max.max(1);
        self
    }

    /// The most requests this node may owe (sent or queued, not answered)
    /// before new acquires, extends and reads fail at once without being
    /// sent, with [`NodeError::Backlog`] (default
    /// [`backlog::DEFAULT_LIMIT`], 1024). This is what keeps memory flat
    /// while a server is stopped, however long. Zero, or more than
    /// [`backlog::MAX_LIMIT`], is refused when the node is built
    /// ([`Error::InvalidArgument`]). See [`RedisNode::outstanding`].
    pub fn max_outstanding(mut self, limit: usize) -> Self {
        self.max_outstanding = limit;
        self
    }

    /// Whether waiters are woken by release announcements (default `true`):
    /// the node keeps one extra pub/sub connection, subscribed only to the
    /// release channels of resources someone is waiting for. Only nodes
    /// that own a [`Client`] ([`open`](Self::open), [`connect`](Self::connect),
    /// [`from_client`](Self::from_client)) announce; others poll with the
    /// retry delay. See [`Node::watch_release`].
    pub fn wake_on_release(mut self, enabled: bool) -> Self {
        self.wake_on_release = enabled;
        self
    }

    /// What an acquire or extend waits for before the node answers
    /// (default [`Durability::Master`]: the master's reply). For a node
    /// that is a replicated deployment (a Sentinel-managed master, a
    /// master with replicas), [`Durability::replicas`] ends every pipeline
    /// holding an acquire or extend with one `WAIT count timeout` on the
    /// same connection, which covers every write before it; when fewer
    /// replicas acknowledged in time, the requests of that pipeline that
    /// took effect fail with [`NodeError::NotReplicated`] (a failed vote;
    /// the core releases what an acquire took).
    ///
    /// Cost: one more command per pipeline with writes, and the wait for
    /// the replicas' acknowledgement (a replication round trip) on every
    /// acquire and extend. A lock's TTL must leave room for the wait
    /// (checked on every lock call). Not available on a cluster node
    /// ([`Error::InvalidConfig`]).
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use redlock_core::Durability;
    /// use redlock_redis_rs::RedisNode;
    ///
    /// let node = RedisNode::builder()
    ///     .durability(Durability::replicas(1, Duration::from_millis(50))?)
    ///     .connect("redis://127.0.0.1:6379")
    ///     .await?;
    /// # let _ = node; Ok(()) }
    /// ```
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// The former name of [`from_client`](Self::from_client).
    #[doc(hidden)]
    pub fn open_client(self, client: Client) -> Result<RedisNode, Error> {
        self.from_client(client)
    }

    /// The `redis` crate's connection settings: no response timeout of its
    /// own (a request it times out before writing it would be skipped, and
    /// a skipped release leaves a key behind); the node bounds each batch
    /// itself (see [`response_timeout`](Self::response_timeout)).
    fn config(&self) -> AsyncConnectionConfig {
        AsyncConnectionConfig::new()
            .set_response_timeout(None)
            .set_connection_timeout(self.connection_timeout)
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
        let hub = if self.wake_on_release {
            ReleaseHub::spawn(Opener(client.clone()), redact.clone(), id.clone())
        } else {
            None
        };
        let connector = Connector::Client {
            client,
            config: self.config(),
        };
        let mut node = self.spawn_single(connector, id, redact)?;
        if let Some(inner) = Arc::get_mut(&mut node.inner) {
            inner.watch = hub;
        }
        Ok(node)
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
        self.spawn_single(
            Connector::Fixed(connection),
            redact_url(name),
            Secrets::default(),
        )
    }

    /// A node over a [`ConnectionManager`], which reconnects by itself.
    /// `name` is used as the node's [`id`](Node::id) (a password in it is
    /// removed).
    pub fn from_manager(self, manager: ConnectionManager, name: &str) -> Result<RedisNode, Error> {
        self.spawn_single(
            Connector::Manager(manager),
            redact_url(name),
            Secrets::default(),
        )
    }

    fn spawn_single(
        self,
        connector: Connector,
        id: String,
        redact: Secrets,
    ) -> Result<RedisNode, Error> {
        let backlog = self.backlog(&id)?;
        let executor = SingleExecutor::new(
            connector,
            LoadedScripts::new(&self.scripts),
            redact,
            id.clone(),
            self.response_timeout,
            backlog.clone(),
        )
        .with_durability(self.durability);
        self.spawn(executor, id, backlog)
    }

    /// The node's backlog, as configured.
    /// The node's backlog, once the settings are known to work: a zero
    /// timeout is refused rather than silently replaced.
    pub(crate) fn backlog(&self, id: &str) -> Result<Backlog, Error> {
        for (name, value) in [
            ("response_timeout", self.response_timeout),
            ("connection_timeout", self.connection_timeout),
        ] {
            if value.is_some_and(|t| t.is_zero()) {
                return Err(Error::InvalidConfig(format!(
                    "{name} is zero: give a positive duration, or None to wait without a bound"
                )));
            }
        }
        Ok(Backlog::new(self.max_outstanding)?.with_gauge(id))
    }

    #[cfg(any(feature = "cluster", feature = "sentinel"))]
    pub(crate) fn durability_setting(&self) -> Durability {
        self.durability
    }

    #[cfg(feature = "sentinel")]
    pub(crate) fn response_timeout_setting(&self) -> Option<Duration> {
        self.response_timeout
    }

    pub(crate) fn spawn<E: Executor>(
        self,
        executor: E,
        id: String,
        backlog: Backlog,
    ) -> Result<RedisNode, Error> {
        let queue =
            Queue::spawn(executor, self.max_batch, backlog).map_err(|_| Error::NoRuntime)?;
        Ok(RedisNode {
            inner: Arc::new(Inner {
                id,
                queue,
                watch: None,
                durability: self.durability,
            }),
        })
    }

    #[cfg(any(feature = "cluster", feature = "sentinel"))]
    pub(crate) fn loaded_scripts(&self) -> LoadedScripts {
        LoadedScripts::new(&self.scripts)
    }

    #[cfg(feature = "cluster")]
    pub(crate) fn timeouts(&self) -> (Option<Duration>, Option<Duration>) {
        (self.response_timeout, self.connection_timeout)
    }

    #[cfg(feature = "sentinel")]
    pub(crate) fn sentinel_config(&self) -> AsyncConnectionConfig {
        self.config()
    }
}

fn invalid(url: &str, e: &redis::RedisError) -> Error {
    let mut r = Secrets::default();
    // The password as written in the URL (percent-encoded or not).
    r.add_from_url(url);
    Error::InvalidConfig(format!(
        "{}: {}; expected {} ({})",
        redact_url(url),
        crate::address::url_problem(url),
        crate::address::EXPECTED_FORM,
        r.redact(&e.to_string())
    ))
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
        self.inner.queue.outstanding()
    }

    /// The pub/sub status of wake-on-release: which release channels the
    /// server confirmed, how many connections were opened and lost. `None`
    /// when the node does not watch (a cluster, a sentinel, a connection
    /// passed in, or [`Builder::wake_on_release`] off).
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
        self.inner.watch.as_ref().map(ReleaseHub::subscriptions)
    }

    /// Sends PING through the node's queue.
    pub async fn ping(&self) -> Result<(), Error> {
        self.inner
            .queue
            .ping()
            .await
            .map_err(|cause| Error::Connect {
                node: self.inner.id.clone(),
                cause,
            })
    }
}

#[async_trait::async_trait]
impl Node for RedisNode {
    async fn acquire(
        &self,
        keys: &[String],
        token: &str,
        ttl: Duration,
    ) -> Result<Acquire, NodeError> {
        self.inner.queue.acquire(keys, token, ttl).await
    }

    async fn release(&self, keys: &[String], token: &str) -> Result<u64, NodeError> {
        self.inner.queue.release(keys, token).await
    }

    async fn extend(
        &self,
        keys: &[String],
        token: &str,
        ttl: Duration,
    ) -> Result<Extend, NodeError> {
        self.inner.queue.extend(keys, token, ttl).await
    }

    async fn inspect(&self, keys: &[String]) -> Result<Vec<KeyState>, NodeError> {
        self.inner.queue.inspect(keys).await
    }

    async fn fence(&self, keys: &[String], floor: u64) -> Result<u64, NodeError> {
        self.inner.queue.fence(keys, floor).await
    }

    /// A watch on the node's shared pub/sub connection (standalone nodes
    /// with wake-on-release on; `None` otherwise).
    fn watch_release(&self, keys: &[String]) -> Option<redlock_core::BoxFuture<'static, ()>> {
        self.inner.watch.as_ref()?.watch(keys)
    }

    fn outstanding(&self) -> Option<usize> {
        Some(RedisNode::outstanding(self))
    }

    /// As set with [`Builder::durability`].
    fn durability(&self) -> Durability {
        self.inner.durability
    }

    /// Stops taking requests, waits until everything already queued (a
    /// release still in flight, say) has been sent and answered, and
    /// closes the node's connections. Dropping the last clone of the node
    /// does the same in the background.
    async fn quit(&self) -> Result<(), NodeError> {
        if let Some(hub) = &self.inner.watch {
            hub.close();
        }
        self.inner.queue.drain().await;
        Ok(())
    }

    /// The address without the password.
    fn id(&self) -> &str {
        &self.inner.id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn zero_timeouts_are_refused_not_replaced() {
        let zero = Duration::ZERO;
        for builder in [
            RedisNode::builder().response_timeout(zero),
            RedisNode::builder().connection_timeout(zero),
        ] {
            let err = builder.open("redis://127.0.0.1:6379").expect_err("zero");
            assert!(
                matches!(&err, Error::InvalidConfig(m) if m.contains("is zero")),
                "{err}"
            );
        }
        let node = RedisNode::builder()
            .response_timeout(None)
            .connection_timeout(Duration::from_millis(5))
            .open("redis://127.0.0.1:6379");
        assert!(node.is_ok(), "None and positive durations work");
    }
}
