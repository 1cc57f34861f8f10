//! [`Builder`]: how lock commands are sent, and how a node is made
//! from a URL, a client or a pool.

use std::fmt;
use std::time::Duration;

use fred::clients::{Client, Pool};
use fred::interfaces::{ClientLike, EventInterface};
use fred::types::config::{Config, Options, ReconnectPolicy};
use fred::types::{Builder as ClientBuilder, ClientState, ConnectHandle};
use redlock_core::backlog::{self, Backlog};
use redlock_core::{Durability, Scripts};

use crate::error::{node_error, Error, Secrets};
use crate::node::Settings;
use crate::FredNode;

/// Default bound on how long the node waits for the answer to one request
/// (the core's own per-node timeout is usually much shorter and decides
/// first), and on how long [`quit`](redlock_core::Node::quit) waits for the
/// answers still owed: 10 s, as in `redlock-redis-rs`.
pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);
/// The former name of [`DEFAULT_RESPONSE_TIMEOUT`].
#[doc(hidden)]
pub const DEFAULT_COMMAND_TIMEOUT: Duration = DEFAULT_RESPONSE_TIMEOUT;
/// Default time to open a connection: 1 s, as in `redlock-redis-rs`.
pub const DEFAULT_CONNECTION_TIMEOUT: Duration = Duration::from_secs(1);

/// The reconnect policy [`Builder::connect`] uses unless told
/// otherwise: retry forever, exponential backoff from 10 ms to 2 s, with
/// up to 10 ms of jitter. A connection reset is repaired within about
/// 10–20 ms (requests to the node wait for it meanwhile), and a restarted
/// node is found again within about two seconds.
pub fn default_reconnect_policy() -> ReconnectPolicy {
    let mut policy = ReconnectPolicy::new_exponential(0, 10, 2_000, 2);
    policy.set_jitter(10);
    policy
}

/// Configures a [`FredNode`], then makes it from a URL
/// ([`connect`](Self::connect)), a client ([`from_client`](Self::from_client)) or a
/// pool ([`from_pool`](Self::from_pool)).
///
/// Lock commands are always sent with one write attempt (fred never resends
/// them behind the core's back); the builder sets their timeout, whether
/// they fail at once while the connection is down, and how many may be
/// outstanding at once ([`max_outstanding`](Self::max_outstanding)).
///
/// fred's settings for clients made from a URL ([`open`](Self::open),
/// [`connect`](Self::connect)): `max_command_attempts = 1`; fred's
/// `connection_timeout` and `internal_command_timeout` are
/// [`connection_timeout`](Self::connection_timeout); `TCP_NODELAY`; the
/// [`reconnect_policy`](Self::reconnect_policy), also for the first
/// connection (the client's `fail_fast` is off, so a server that is down
/// at start is connected later); per lock command: one attempt, fail fast,
/// and no fred timeout (see [`response_timeout`](Self::response_timeout));
/// releases one more attempt and no fail fast, so fred writes them again
/// after a reconnect. fred's buffers and backpressure keep their defaults:
/// the node's queue and backlog bound what is handed to fred.
///
/// ```no_run
/// use std::time::Duration;
/// use redlock_core::Scripts;
/// use redlock_fred::FredNode;
///
/// # async fn run() -> Result<(), redlock_fred::Error> {
/// let node = FredNode::builder()
///     .response_timeout(Duration::from_secs(1))
///     .pool_size(4)
///     .max_outstanding(4096)
///     .scripts(Scripts::default())
///     .connect("redis://127.0.0.1:6379")
///     .await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
#[must_use = "a builder does nothing until a node is made from it"]
pub struct Builder {
    scripts: Scripts,
    response_timeout: Duration,
    fail_fast: bool,
    reconnect: ReconnectPolicy,
    connection_timeout: Duration,
    pool_size: usize,
    wake_on_release: bool,
    max_outstanding: usize,
    native_commands: bool,
    durability: Durability,
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("response_timeout", &self.response_timeout)
            .field("fail_fast", &self.fail_fast)
            .field("reconnect", &self.reconnect)
            .field("connection_timeout", &self.connection_timeout)
            .field("pool_size", &self.pool_size)
            .field("wake_on_release", &self.wake_on_release)
            .field("max_outstanding", &self.max_outstanding)
            .field("native_commands", &self.native_commands)
            .field("durability", &self.durability)
            .finish_non_exhaustive()
    }
}

/// The former name of [`Builder`].
#[doc(hidden)]
pub type FredNodeBuilder = Builder;

impl Default for Builder {
    fn default() -> Self {
        Self::new()
    }
}

impl Builder {
    /// The defaults: built-in scripts, [`DEFAULT_RESPONSE_TIMEOUT`], fail
    /// fast, [`default_reconnect_policy`], [`DEFAULT_CONNECTION_TIMEOUT`],
    /// one client, at most [`backlog::DEFAULT_LIMIT`] outstanding requests.
    pub fn new() -> Self {
        Builder {
            scripts: Scripts::default(),
            response_timeout: DEFAULT_RESPONSE_TIMEOUT,
            fail_fast: true,
            reconnect: default_reconnect_policy(),
            connection_timeout: DEFAULT_CONNECTION_TIMEOUT,
            pool_size: 1,
            wake_on_release: true,
            max_outstanding: backlog::DEFAULT_LIMIT,
            native_commands: true,
            durability: Durability::Master,
        }
    }

    /// What an acquire or extend waits for before the node answers
    /// (default [`Durability::Master`]: the master's reply). For a node
    /// that is a replicated deployment (a Sentinel-managed master, a
    /// master with replicas), [`Durability::replicas`] follows every batch
    /// holding an acquire or extend with one `WAIT count timeout` on the
    /// same connection, sent once the batch was answered; when fewer
    /// replicas acknowledged in time, the requests of that batch that took
    /// effect fail with [`NodeError::NotReplicated`](redlock_core::NodeError::NotReplicated)
    /// (a failed vote; the core releases what an acquire took). Cost: one
    /// more round trip, and the replicas' acknowledgement, per batch with
    /// writes. Refused on a cluster ([`Error::InvalidConfig`]).
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use redlock_core::Durability;
    /// use redlock_fred::FredNode;
    ///
    /// let node = FredNode::builder()
    ///     .durability(Durability::replicas(1, Duration::from_millis(50))?)
    ///     .connect("redis://127.0.0.1:6379")
    ///     .await?;
    /// # let _ = node; Ok(()) }
    /// ```
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// Replaces the Lua scripts (node-redlock's `lockScript` and friends).
    /// They must keep the calling convention of [`redlock_core::scripts`].
    pub fn scripts(mut self, scripts: Scripts) -> Self {
        self.scripts = scripts;
        self
    }

    /// How long the node waits for the answer to one request (default
    /// [`DEFAULT_RESPONSE_TIMEOUT`], 10 s, as in `redlock-redis-rs`), so that
    /// a call never waits forever even when used without the core; also how
    /// long [`quit`](redlock_core::Node::quit) waits for the answers still
    /// owed before it closes the connections anyway. The core bounds every
    /// request by its own, much shorter per-node timeout. Zero makes
    /// building the node fail with [`Error::InvalidConfig`].
    ///
    /// A request whose caller stopped waiting is not withdrawn: once handed
    /// to fred it stays in the node's order (a release sent later must
    /// never overtake it) and keeps its place in the backlog
    /// ([`max_outstanding`](Self::max_outstanding)) until the server answers
    /// it or its connection is closed. fred's own per-command timeout is
    /// therefore not used (fred skips writing a command whose timeout
    /// fired, and forgets one it wrote).
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// The former name of [`response_timeout`](Self::response_timeout).
    #[doc(hidden)]
    pub fn command_timeout(self, timeout: Duration) -> Self {
        self.response_timeout(timeout)
    }

    /// Whether a lock command fails at once while its connection is down
    /// (the default), rather than waiting in fred's queue for a reconnect.
    /// Failing fast lets the core count the node as failed right away and
    /// keeps stale requests from piling up behind an outage.
    pub fn fail_fast(mut self, fail_fast: bool) -> Self {
        self.fail_fast = fail_fast;
        self
    }

    /// The reconnect policy of clients made by [`connect`](Self::connect).
    /// Clients given to [`from_client`](Self::from_client) and [`from_pool`](Self::from_pool)
    /// keep their own.
    pub fn reconnect_policy(mut self, policy: ReconnectPolicy) -> Self {
        self.reconnect = policy;
        self
    }

    /// Time to open a connection (fred's `connection_timeout`, also used
    /// for the commands fred sends while connecting), how long
    /// [`connect`](Self::connect) waits for the first connection, and how
    /// long [`from_client`](Self::from_client) waits for a client that is
    /// still connecting (default [`DEFAULT_CONNECTION_TIMEOUT`], 1 s, as in
    /// `redlock-redis-rs`). Zero makes
    /// building the node fail with [`Error::InvalidConfig`].
    pub fn connection_timeout(mut self, timeout: Duration) -> Self {
        self.connection_timeout = timeout;
        self
    }

    /// How many clients [`connect`](Self::connect) opens (a fred pool) when
    /// above one. Requests for the same keys always use the same client.
    pub fn pool_size(mut self, size: usize) -> Self {
        self.pool_size = size.max(1);
        self
    }

    /// Whether waiters are woken by release announcements (default `true`):
    /// a node keeps one extra pub/sub connection, subscribed only to the
    /// release channels of resources someone is waiting for, so that a
    /// waiting `lock` retries as soon as the holder releases instead of
    /// after its retry delay. On a Redis Cluster the releases are announced
    /// and heard with sharded pub/sub on the key's shard (Redis 7.0+,
    /// Valkey; on older servers waiters poll with the retry delay); behind
    /// Sentinel the subscription follows the master across failovers. See
    /// [`Node::watch_release`](redlock_core::Node::watch_release).
    pub fn wake_on_release(mut self, enabled: bool) -> Self {
        self.wake_on_release = enabled;
        self
    }

    /// Whether a one-key release or extend may use the server's own
    /// compare-and-delete / compare-and-set instead of the built-in script
    /// (default `true`): `DELIFEQ` on Valkey 9, `DELEX … IFEQ` on Redis
    /// 8.4, `SET … IFEQ … PX` on both; see [`redlock_kit::native`]. Each
    /// client asks its server once, when it first connects (`COMMAND INFO
    /// DELIFEQ DELEX`), and keeps to the scripts where the answer names
    /// neither. With it, a user whose ACL denies `@scripting` can lock,
    /// extend and unlock one resource. A substitute script
    /// ([`scripts`](Self::scripts)) always runs as written, as do calls on
    /// several keys; Redis Cluster nodes always use the scripts.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), redlock_fred::Error> {
    /// let node = redlock_fred::FredNode::builder()
    ///     .native_commands(false) // every call a Lua script
    ///     .connect("redis://127.0.0.1:6379")
    ///     .await?;
    /// # let _ = node; Ok(()) }
    /// ```
    pub fn native_commands(mut self, enabled: bool) -> Self {
        self.native_commands = enabled;
        self
    }

    /// The most requests the node may owe at once: sent (or queued in
    /// fred) and not answered yet. A node that stops answering (a paused
    /// process, a black-holed link) keeps at most this many; beyond it,
    /// acquires, extends and reads fail at once **without being sent**,
    /// with [`NodeError::Backlog`](redlock_core::NodeError::Backlog) (a
    /// "no" vote that needs no release), so memory stays flat however long
    /// the node is stopped. Releases are always sent. The default is
    /// [`backlog::DEFAULT_LIMIT`]; zero or more than
    /// [`backlog::MAX_LIMIT`] makes building the node fail with
    /// [`Error::InvalidArgument`].
    pub fn max_outstanding(mut self, limit: usize) -> Self {
        self.max_outstanding = limit;
        self
    }

    /// The per-command options of lock commands: one write attempt, no
    /// timeout inside fred (a timed-out command would stay in fred's
    /// buffers after its caller was told it failed; see
    /// [`response_timeout`](Self::response_timeout)), and the fail-fast flag.
    fn command_options(&self) -> Options {
        Options {
            max_attempts: Some(1),
            timeout: Some(Duration::ZERO),
            fail_fast: self.fail_fast,
            ..Options::default()
        }
    }

    /// Refuses settings that cannot work, before anything is connected.
    fn check(&self) -> Result<(), Error> {
        for (name, value) in [
            ("response_timeout", self.response_timeout),
            ("connection_timeout", self.connection_timeout),
        ] {
            if value.is_zero() {
                return Err(Error::InvalidConfig(format!(
                    "{name} is zero: give a positive duration (the default is {:?})",
                    if name == "response_timeout" {
                        DEFAULT_RESPONSE_TIMEOUT
                    } else {
                        DEFAULT_CONNECTION_TIMEOUT
                    }
                )));
            }
        }
        Backlog::new(self.max_outstanding)?;
        Ok(())
    }

    fn settings(
        &self,
        secrets: Secrets,
        tasks: Vec<Option<ConnectHandle>>,
    ) -> Result<Settings, Error> {
        Ok(Settings {
            options: self.command_options(),
            response_timeout: self.response_timeout,
            scripts: self.scripts.clone(),
            secrets,
            wake_on_release: self.wake_on_release,
            native_commands: self.native_commands,
            backlog: Backlog::new(self.max_outstanding)?,
            durability: self.durability,
            tasks,
        })
    }

    /// A node for the deployment `url` names (see [`FredNode::connect`] for
    /// the schemes), without waiting for it: the connections are opened,
    /// and the scripts loaded, in the background, so a server that is down
    /// now is not an error here. Until a client is connected its requests
    /// fail at once, unsent ([`NodeError::NotConnected`](redlock_core::NodeError)),
    /// and the reconnect policy keeps trying. Must be called within a tokio
    /// runtime ([`Error::NoRuntime`] otherwise).
    pub fn open(self, url: &str) -> Result<FredNode, Error> {
        self.check()?;
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(Error::NoRuntime);
        }
        let mut secrets = Secrets::default();
        secrets.add_from_url(url);
        let mut config =
            Config::from_url(url).map_err(|e| Error::InvalidUrl(secrets.redact(&e.to_string())))?;
        if let Some(p) = &config.password {
            secrets.add(p);
        }
        // The first connection is retried by the reconnect policy like any
        // later one; lock commands still fail fast (see `command_options`).
        config.fail_fast = false;
        let id = crate::node::node_id(&config);
        let mut builder = ClientBuilder::from_config(config);
        builder.set_policy(self.reconnect.clone());
        builder.with_connection_config(|c| {
            c.connection_timeout = self.connection_timeout;
            c.internal_command_timeout = self.connection_timeout;
            c.max_command_attempts = 1;
            // Lock requests are small and latency-bound: no Nagle delay.
            c.tcp.nodelay = Some(true);
        });
        let built = if self.pool_size > 1 {
            builder
                .build_pool(self.pool_size)
                .map(|pool| pool.clients().to_vec())
        } else {
            builder.build().map(|client| vec![client])
        };
        let clients = built.map_err(|e| Error::Connect {
            node: id,
            cause: node_error(&e, &secrets),
        })?;
        // The clients are the node's own: it keeps their connection tasks,
        // so that `quit` (and dropping the last handle) can close their
        // connections even when a server no longer answers.
        let tasks = clients.iter().map(|c| Some(c.connect())).collect();
        let settings = self.settings(secrets, tasks)?;
        FredNode::new(clients, settings)
    }

    /// Like [`open`](Self::open), then waits up to the connection timeout
    /// until every client is connected; fails when one cannot connect (a
    /// server down, refused credentials).
    pub async fn connect(self, url: &str) -> Result<FredNode, Error> {
        let timeout = self.connection_timeout;
        let node = self.open(url)?;
        for client in node.clients() {
            let mut errors = client.error_rx();
            let failed = tokio::select! {
                connected = client.wait_for_connect() => connected.err(),
                error = errors.recv() => error.ok().map(|(e, _)| e),
                () = tokio::time::sleep(timeout) => Some(fred::error::Error::new(
                    fred::error::ErrorKind::Timeout,
                    format!("not connected within {timeout:?}"),
                )),
            };
            if let Some(e) = failed {
                let cause = node_error(&e, node.secrets());
                let node_id = redlock_core::Node::id(&node).to_owned();
                node.abort();
                return Err(Error::Connect {
                    node: node_id,
                    cause,
                });
            }
        }
        if let Err(cause) = node.ping().await {
            let node_id = redlock_core::Node::id(&node).to_owned();
            node.abort();
            return Err(Error::Connect {
                node: node_id,
                cause,
            });
        }
        Ok(node)
    }

    /// Wraps a client the application built. It is initialised here when it
    /// was never connected; a client that is still connecting is waited for
    /// up to the connection timeout (after that, the node works as soon as
    /// the client is connected).
    ///
    /// The client stays the application's: [`quit`](redlock_core::Node::quit)
    /// sends it `QUIT` (after the answers still owed, within the command
    /// timeout), but dropping the node leaves it connected. Give it no
    /// `unresponsive` timeout (fred's default): a connection replaced while
    /// requests were still buffered on the old socket could let a release
    /// overtake the acquire before it.
    pub async fn from_client(self, client: Client) -> Result<FredNode, Error> {
        self.check()?;
        self.ensure_connected(&client).await?;
        let settings = self.settings(Secrets::default(), vec![None])?;
        FredNode::new(vec![client], settings)
    }

    /// Wraps a pool the application built, initialising it like
    /// [`from_client`](Self::from_client) (and, like it, leaving it connected when
    /// the node is dropped).
    pub async fn from_pool(self, pool: Pool) -> Result<FredNode, Error> {
        self.check()?;
        let clients = pool.clients().to_vec();
        if clients.is_empty() {
            return Err(Error::EmptyPool);
        }
        for client in &clients {
            self.ensure_connected(client).await?;
        }
        let tasks = clients.iter().map(|_| None).collect();
        let settings = self.settings(Secrets::default(), tasks)?;
        FredNode::new(clients, settings)
    }

    /// The former name of [`from_client`](Self::from_client).
    #[doc(hidden)]
    pub async fn client(self, client: Client) -> Result<FredNode, Error> {
        self.from_client(client).await
    }

    /// The former name of [`from_pool`](Self::from_pool).
    #[doc(hidden)]
    pub async fn pool(self, pool: Pool) -> Result<FredNode, Error> {
        self.from_pool(pool).await
    }

    async fn ensure_connected(&self, client: &Client) -> Result<(), Error> {
        let config = client.client_config();
        let mut secrets = Secrets::default();
        if let Some(p) = &config.password {
            secrets.add(p);
        }
        let id = crate::node::node_id(&config);
        if client
            .connection_config()
            .unresponsive
            .max_timeout
            .is_some()
        {
            tracing::warn!(
                node = %id,
                "fred client has an unresponsive timeout: replacing a connection that still \
                 buffers requests may let a release overtake the acquire before it"
            );
        }
        if client.state() == ClientState::Disconnected {
            client.init().await.map_err(|e| Error::Connect {
                node: id,
                cause: node_error(&e, &secrets),
            })?;
            return Ok(());
        }
        match tokio::time::timeout(self.connection_timeout, client.wait_for_connect()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(
                node = %id,
                error = %node_error(&e, &secrets),
                "fred client is not connected yet; the node works once it is"
            ),
            Err(_) => tracing::warn!(
                node = %id,
                "fred client did not connect within the connection timeout; the node works once it is"
            ),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_timeouts_are_refused_not_replaced() {
        let zero = Duration::ZERO;
        for (builder, name) in [
            (Builder::new().response_timeout(zero), "response_timeout"),
            (
                Builder::new().connection_timeout(zero),
                "connection_timeout",
            ),
        ] {
            let err = builder.check().expect_err("zero");
            assert!(
                matches!(&err, Error::InvalidConfig(m) if m.starts_with(name)),
                "{err}"
            );
        }
        assert!(Builder::new().max_outstanding(0).check().is_err());
        assert_eq!(Builder::new().check(), Ok(()));
    }
}
