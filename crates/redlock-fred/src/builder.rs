//! [`FredNodeBuilder`]: how lock commands are sent, and how a node is made
//! from a URL, a client or a pool.

use std::fmt;
use std::time::Duration;

use fred::clients::{Client, Pool};
use fred::interfaces::ClientLike;
use fred::types::config::{Config, Options, ReconnectPolicy};
use fred::types::{Builder, ClientState};
use redlock_core::Scripts;

use crate::error::{node_error, ConnectError, Secrets};
use crate::FredNode;

/// Default bound on one lock command inside fred (the core's own per-node
/// timeout is usually much shorter and decides first).
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(2);
/// Default time to open a connection (and to wait for a given client).
pub const DEFAULT_CONNECTION_TIMEOUT: Duration = Duration::from_secs(2);

/// The reconnect policy [`FredNodeBuilder::connect`] uses unless told
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
/// ([`connect`](Self::connect)), a client ([`client`](Self::client)) or a
/// pool ([`pool`](Self::pool)).
///
/// Lock commands are always sent with one write attempt (fred never resends
/// them behind the core's back); the builder sets their timeout and whether
/// they fail at once while the connection is down.
///
/// ```no_run
/// use std::time::Duration;
/// use redlock_core::Scripts;
/// use redlock_fred::FredNode;
///
/// # async fn run() -> Result<(), redlock_fred::ConnectError> {
/// let node = FredNode::builder()
///     .command_timeout(Duration::from_secs(1))
///     .pool_size(4)
///     .scripts(Scripts::default())
///     .connect("redis://127.0.0.1:6379")
///     .await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct FredNodeBuilder {
    scripts: Scripts,
    command_timeout: Duration,
    fail_fast: bool,
    reconnect: ReconnectPolicy,
    connection_timeout: Duration,
    pool_size: usize,
    wake_on_release: bool,
}

impl fmt::Debug for FredNodeBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FredNodeBuilder")
            .field("command_timeout", &self.command_timeout)
            .field("fail_fast", &self.fail_fast)
            .field("reconnect", &self.reconnect)
            .field("connection_timeout", &self.connection_timeout)
            .field("pool_size", &self.pool_size)
            .field("wake_on_release", &self.wake_on_release)
            .finish_non_exhaustive()
    }
}

impl Default for FredNodeBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl FredNodeBuilder {
    /// The defaults: built-in scripts, [`DEFAULT_COMMAND_TIMEOUT`], fail
    /// fast, [`default_reconnect_policy`], [`DEFAULT_CONNECTION_TIMEOUT`],
    /// one client.
    pub fn new() -> Self {
        FredNodeBuilder {
            scripts: Scripts::default(),
            command_timeout: DEFAULT_COMMAND_TIMEOUT,
            fail_fast: true,
            reconnect: default_reconnect_policy(),
            connection_timeout: DEFAULT_CONNECTION_TIMEOUT,
            pool_size: 1,
            wake_on_release: true,
        }
    }

    /// Replaces the Lua scripts (node-redlock's `lockScript` and friends).
    /// They must keep the calling convention of [`redlock_core::scripts`].
    pub fn scripts(mut self, scripts: Scripts) -> Self {
        self.scripts = scripts;
        self
    }

    /// Bounds every lock command inside fred, so that a call never waits
    /// forever even when used without the core. A zero duration is replaced
    /// by the default.
    pub fn command_timeout(mut self, timeout: Duration) -> Self {
        self.command_timeout = if timeout.is_zero() {
            DEFAULT_COMMAND_TIMEOUT
        } else {
            timeout
        };
        self
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
    /// Clients given to [`client`](Self::client) and [`pool`](Self::pool)
    /// keep their own.
    pub fn reconnect_policy(mut self, policy: ReconnectPolicy) -> Self {
        self.reconnect = policy;
        self
    }

    /// Time to open a connection for [`connect`](Self::connect), and how
    /// long [`client`](Self::client) waits for a client that is still
    /// connecting. A zero duration is replaced by the default.
    pub fn connection_timeout(mut self, timeout: Duration) -> Self {
        self.connection_timeout = if timeout.is_zero() {
            DEFAULT_CONNECTION_TIMEOUT
        } else {
            timeout
        };
        self
    }

    /// How many clients [`connect`](Self::connect) opens (a fred pool) when
    /// above one. Requests for the same keys always use the same client.
    pub fn pool_size(mut self, size: usize) -> Self {
        self.pool_size = size.max(1);
        self
    }

    /// Whether waiters are woken by release announcements (default `true`):
    /// a node on a single server keeps one extra pub/sub connection,
    /// subscribed only to the release channels of resources someone is
    /// waiting for, so that a waiting `lock` retries as soon as the holder
    /// releases instead of after its retry delay. Redis Cluster and Sentinel
    /// nodes do not announce; their waiters poll with the retry delay. See
    /// [`Node::watch_release`](redlock_core::Node::watch_release).
    pub fn wake_on_release(mut self, enabled: bool) -> Self {
        self.wake_on_release = enabled;
        self
    }

    /// The per-command options of lock commands.
    fn command_options(&self) -> Options {
        Options {
            max_attempts: Some(1),
            timeout: Some(self.command_timeout),
            fail_fast: self.fail_fast,
            ..Options::default()
        }
    }

    /// Connects to the deployment `url` names (see [`FredNode::connect`] for
    /// the schemes) and preloads the scripts. Fails when the first
    /// connection cannot be made; later outages are reconnected by the
    /// reconnect policy.
    pub async fn connect(self, url: &str) -> Result<FredNode, ConnectError> {
        let mut secrets = Secrets::new();
        secrets.add_from_url(url);
        let config = Config::from_url(url)
            .map_err(|e| ConnectError::InvalidUrl(secrets.redact(&e.to_string())))?;
        if let Some(p) = &config.password {
            secrets.add(p);
        }
        let id = crate::node::node_id(&config);
        let connect_error = |e: fred::error::Error, secrets: &Secrets| ConnectError::Connect {
            node: id.clone(),
            source: node_error(&e, secrets),
        };
        let mut builder = Builder::from_config(config);
        builder.set_policy(self.reconnect.clone());
        let connection_timeout = self.connection_timeout;
        builder.with_connection_config(|c| {
            c.connection_timeout = connection_timeout;
            c.internal_command_timeout = connection_timeout;
            c.max_command_attempts = 1;
            // Lock requests are small and latency-bound: no Nagle delay.
            c.tcp.nodelay = Some(true);
        });
        let clients = if self.pool_size > 1 {
            let pool = builder
                .build_pool(self.pool_size)
                .map_err(|e| connect_error(e, &secrets))?;
            pool.init().await.map_err(|e| connect_error(e, &secrets))?;
            pool.clients().to_vec()
        } else {
            let client = builder.build().map_err(|e| connect_error(e, &secrets))?;
            client
                .init()
                .await
                .map_err(|e| connect_error(e, &secrets))?;
            vec![client]
        };
        FredNode::new(
            clients,
            self.command_options(),
            &self.scripts,
            secrets,
            self.wake_on_release,
        )
        .await
    }

    /// Wraps a client the application built. It is initialised here when it
    /// was never connected; a client that is still connecting is waited for
    /// up to the connection timeout (after that, the node works as soon as
    /// the client is connected).
    pub async fn client(self, client: Client) -> Result<FredNode, ConnectError> {
        self.ensure_connected(&client).await?;
        FredNode::new(
            vec![client],
            self.command_options(),
            &self.scripts,
            Secrets::new(),
            self.wake_on_release,
        )
        .await
    }

    /// Wraps a pool the application built, initialising it like
    /// [`client`](Self::client).
    pub async fn pool(self, pool: Pool) -> Result<FredNode, ConnectError> {
        let clients = pool.clients().to_vec();
        if clients.is_empty() {
            return Err(ConnectError::EmptyPool);
        }
        for client in &clients {
            self.ensure_connected(client).await?;
        }
        FredNode::new(
            clients,
            self.command_options(),
            &self.scripts,
            Secrets::new(),
            self.wake_on_release,
        )
        .await
    }

    async fn ensure_connected(&self, client: &Client) -> Result<(), ConnectError> {
        let config = client.client_config();
        let mut secrets = Secrets::new();
        if let Some(p) = &config.password {
            secrets.add(p);
        }
        let id = crate::node::node_id(&config);
        if client.state() == ClientState::Disconnected {
            client.init().await.map_err(|e| ConnectError::Connect {
                node: id,
                source: node_error(&e, &secrets),
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
