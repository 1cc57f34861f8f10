//! [`Builder`]: how lock commands are sent, and how a node is made
//! from a URL, a client or a pool.

use std::time::Duration;

use fred::clients::{Client, Pool};
use fred::interfaces::{ClientLike, EventInterface};
use fred::types::config::{Config, Options, ReconnectPolicy};
use fred::types::{Builder as ClientBuilder, ClientState};
use redlock_kit::session::check_timeouts;
use redlock_kit::settings::Settings;
use redlock_kit::url::invalid_url;

use crate::error::{node_error, Error, Secrets};
use crate::FredNode;

/// The former name of [`DEFAULT_RESPONSE_TIMEOUT`](crate::DEFAULT_RESPONSE_TIMEOUT).
#[doc(hidden)]
pub const DEFAULT_COMMAND_TIMEOUT: Duration = redlock_kit::session::DEFAULT_RESPONSE_TIMEOUT;

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
/// them behind the core's back). The settings every adapter has (`scripts`,
/// `response_timeout`, `connection_timeout`, `max_batch`,
/// `max_outstanding`, `wake_on_release`, `native_commands`, `durability`)
/// have the same names and defaults as in `redlock-redis-rs`; fred's own
/// are [`fail_fast`](Self::fail_fast),
/// [`reconnect_policy`](Self::reconnect_policy) and
/// [`pool_size`](Self::pool_size).
///
/// Here [`response_timeout`](Self::response_timeout) bounds how long a
/// caller waits for one request (and [`quit`](redlock_core::Node::quit)
/// for the answers still owed; 10 s when it is `None`): a request whose
/// caller stopped waiting is not withdrawn, it keeps its place in the
/// node's order and in the backlog until fred answers it, and a silent
/// connection is never replaced. fred's own per-command timeout is not
/// used (fred skips writing a command whose timeout fired, and forgets one
/// it wrote). Only nodes on a single server wake waiters on release. With
/// a replica wait ([`durability`](Self::durability)), the `WAIT` follows a
/// batch once its answers are in, on the same connection.
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
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until a node is made from it"]
pub struct Builder {
    pub(crate) settings: Settings,
    fail_fast: bool,
    reconnect: ReconnectPolicy,
    pool_size: usize,
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
    /// The defaults: those of [`Settings`] (built-in scripts, response
    /// timeout 10 s, connection timeout 1 s, at most
    /// [`backlog::DEFAULT_LIMIT`](redlock_core::backlog::DEFAULT_LIMIT)
    /// outstanding requests), fail fast, [`default_reconnect_policy`], one
    /// client.
    pub fn new() -> Self {
        Builder {
            settings: Settings::default(),
            fail_fast: true,
            reconnect: default_reconnect_policy(),
            pool_size: 1,
        }
    }

    redlock_kit::builder_methods!(settings);

    /// The former name of [`response_timeout`](Self::response_timeout).
    #[doc(hidden)]
    pub fn command_timeout(self, timeout: impl Into<Option<Duration>>) -> Self {
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

    /// How many clients [`connect`](Self::connect) opens (a fred pool) when
    /// above one. Requests for the same keys always use the same client.
    pub fn pool_size(mut self, size: usize) -> Self {
        self.pool_size = size.max(1);
        self
    }

    /// The per-command options of lock commands: one write attempt, no
    /// timeout inside fred (a timed-out command would stay in fred's
    /// buffers after its caller was told it failed; see
    /// [`response_timeout`](Self::response_timeout)), and the fail-fast flag.
    pub(crate) fn command_options(&self) -> Options {
        Options {
            max_attempts: Some(1),
            timeout: Some(Duration::ZERO),
            fail_fast: self.fail_fast,
            ..Options::default()
        }
    }

    /// A node for the deployment `url` names (see [`FredNode::connect`] for
    /// the schemes), without waiting for it: the connections are opened,
    /// and the scripts loaded, in the background, so a server that is down
    /// now is not an error here. Until a client is connected its requests
    /// fail at once, unsent ([`NodeError::NotConnected`](redlock_core::NodeError)),
    /// and the reconnect policy keeps trying. Must be called within a tokio
    /// runtime ([`Error::NoRuntime`] otherwise).
    pub fn open(self, url: &str) -> Result<FredNode, Error> {
        check_timeouts(
            self.settings.response_timeout,
            self.settings.connection_timeout,
        )
        .map_err(Error::InvalidConfig)?;
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(Error::NoRuntime);
        }
        let mut config = Config::from_url(url)
            .map_err(|e| Error::InvalidUrl(invalid_url(url, &e.to_string())))?;
        let mut secrets = Secrets::default();
        secrets.add_from_url(url);
        secrets.add_opt(config.password.as_deref());
        // The first connection is retried by the reconnect policy like any
        // later one; lock commands still fail fast (see `command_options`).
        config.fail_fast = false;
        let id = crate::node::node_id(&config);
        let backlog = self.settings.backlog(&id)?;
        let connection_timeout = self.settings.connection_timeout.unwrap_or_default();
        let mut builder = ClientBuilder::from_config(config);
        builder.set_policy(self.reconnect.clone());
        builder.with_connection_config(|c| {
            // Zero is no bound in fred.
            c.connection_timeout = connection_timeout;
            c.internal_command_timeout = connection_timeout;
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
        FredNode::new(clients, &self, secrets, tasks, backlog)
    }

    /// Like [`open`](Self::open), then waits up to the connection timeout
    /// until every client is connected; fails when one cannot connect (a
    /// server down, refused credentials).
    pub async fn connect(self, url: &str) -> Result<FredNode, Error> {
        let timeout = self.settings.connection_timeout;
        let node = self.open(url)?;
        let connected = async {
            for client in node.clients() {
                let mut errors = client.error_rx();
                let failed = tokio::select! {
                    connected = client.wait_for_connect() => connected.err(),
                    error = errors.recv() => error.ok().map(|(e, _)| e),
                    () = sleep_for(timeout) => Some(fred::error::Error::new(
                        fred::error::ErrorKind::Timeout,
                        format!("not connected within {timeout:?}"),
                    )),
                };
                if let Some(e) = failed {
                    return Err(node_error(&e, node.secrets()));
                }
            }
            node.ping().await
        };
        if let Err(cause) = connected.await {
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
        self.wrap_clients(vec![client]).await
    }

    /// Wraps a pool the application built, initialising it like
    /// [`from_client`](Self::from_client) (and, like it, leaving it connected when
    /// the node is dropped).
    pub async fn from_pool(self, pool: Pool) -> Result<FredNode, Error> {
        self.wrap_clients(pool.clients().to_vec()).await
    }

    async fn wrap_clients(self, clients: Vec<Client>) -> Result<FredNode, Error> {
        let first = clients.first().ok_or(Error::EmptyPool)?;
        let backlog = self
            .settings
            .backlog(&crate::node::node_id(&first.client_config()))?;
        for client in &clients {
            self.ensure_connected(client).await?;
        }
        FredNode::new(clients, &self, Secrets::default(), Vec::new(), backlog)
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
        secrets.add_opt(config.password.as_deref());
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
        let connected = async {
            tokio::select! {
                connected = client.wait_for_connect() => Some(connected),
                () = sleep_for(self.settings.connection_timeout) => None,
            }
        };
        match connected.await {
            Some(Ok(())) => {}
            Some(Err(e)) => tracing::warn!(
                node = %id,
                error = %node_error(&e, &secrets),
                "fred client is not connected yet; the node works once it is"
            ),
            None => tracing::warn!(
                node = %id,
                "fred client did not connect within the connection timeout; the node works once it is"
            ),
        }
        Ok(())
    }
}

/// Sleeps for `timeout`; forever when there is none.
async fn sleep_for(timeout: Option<Duration>) {
    match timeout {
        Some(timeout) => tokio::time::sleep(timeout).await,
        None => std::future::pending().await,
    }
}
