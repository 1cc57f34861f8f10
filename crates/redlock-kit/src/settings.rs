//! The settings every adapter's node builder has, with the same names,
//! defaults and checks ([`Settings`]), and its builder methods written
//! once ([`builder_methods!`](crate::builder_methods)).

use std::time::Duration;

use redlock_core::backlog::{self, Backlog};
use redlock_core::{Durability, InvalidArgument, Scripts};

use crate::session::{check_timeouts, DEFAULT_CONNECTION_TIMEOUT, DEFAULT_RESPONSE_TIMEOUT};

/// Default for [`Settings::max_batch`]: the most calls in one pipeline.
pub const DEFAULT_MAX_BATCH: usize = 256;

/// A node's settings; see [`builder_methods!`](crate::builder_methods)
/// for what each means.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The Lua scripts.
    pub scripts: Scripts,
    /// When a silent connection is given up ([`DEFAULT_RESPONSE_TIMEOUT`]).
    pub response_timeout: Option<Duration>,
    /// The bound on making a connection ([`DEFAULT_CONNECTION_TIMEOUT`]).
    pub connection_timeout: Option<Duration>,
    /// The most calls in one pipeline ([`DEFAULT_MAX_BATCH`]).
    pub max_batch: usize,
    /// The backlog's limit ([`backlog::DEFAULT_LIMIT`]).
    pub max_outstanding: usize,
    /// Whether waiters are woken by release announcements (`true`).
    pub wake_on_release: bool,
    /// Whether one-key releases and extends may use the server's native
    /// commands (`true`; see [`native`](crate::native)).
    pub native_commands: bool,
    /// What acquires and extends wait for ([`Durability::Master`]).
    pub durability: Durability,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            scripts: Scripts::default(),
            response_timeout: Some(DEFAULT_RESPONSE_TIMEOUT),
            connection_timeout: Some(DEFAULT_CONNECTION_TIMEOUT),
            max_batch: DEFAULT_MAX_BATCH,
            max_outstanding: backlog::DEFAULT_LIMIT,
            wake_on_release: true,
            native_commands: true,
            durability: Durability::Master,
        }
    }
}

/// Why [`Settings`] cannot make a node.
#[derive(Debug, Clone)]
pub enum Invalid {
    /// A zero timeout: the text names the setting and what to give instead
    /// (an adapter's configuration error).
    Config(String),
    /// The backlog's limit is out of range.
    Argument(InvalidArgument),
}

impl Settings {
    /// Refuses what a Redis Cluster node cannot do: a replica wait
    /// ([`Durability::replicas`]) is a configuration error there.
    ///
    /// ```
    /// use redlock_kit::settings::Settings;
    ///
    /// assert!(Settings::default().check_cluster().is_ok());
    /// ```
    pub fn check_cluster(&self) -> Result<(), Invalid> {
        if self.durability == Durability::Master {
            return Ok(());
        }
        Err(Invalid::Config(
            "durability with replica wait is not supported on a cluster node: \
             use Durability::Master"
                .into(),
        ))
    }

    /// The node's backlog (counted under `id` with the `metrics`
    /// feature), once the settings are known to work: a zero timeout is
    /// refused rather than silently replaced.
    ///
    /// ```
    /// use std::time::Duration;
    /// use redlock_kit::settings::{Invalid, Settings};
    ///
    /// assert!(Settings::default().backlog("node").is_ok());
    /// let zero = Settings { response_timeout: Some(Duration::ZERO), ..Settings::default() };
    /// assert!(matches!(zero.backlog("node"), Err(Invalid::Config(_))));
    /// let none = Settings { max_outstanding: 0, ..Settings::default() };
    /// assert!(matches!(none.backlog("node"), Err(Invalid::Argument(_))));
    /// ```
    pub fn backlog(&self, id: &str) -> Result<Backlog, Invalid> {
        check_timeouts(self.response_timeout, self.connection_timeout).map_err(Invalid::Config)?;
        let backlog = Backlog::new(self.max_outstanding).map_err(Invalid::Argument)?;
        Ok(backlog.with_gauge(id))
    }
}

/// The builder methods of [`Settings`], for an adapter's builder type with
/// a `Settings` field: `scripts`, `response_timeout`, `connection_timeout`,
/// `max_batch`, `max_outstanding`, `wake_on_release`. Invoke it inside the
/// builder's `impl` block, naming the field.
///
/// ```
/// use redlock_kit::settings::Settings;
///
/// #[derive(Debug, Clone, Default)]
/// pub struct Builder {
///     settings: Settings,
/// }
///
/// impl Builder {
///     redlock_kit::builder_methods!(settings);
/// }
///
/// let b = Builder::default().max_batch(0).wake_on_release(false);
/// assert_eq!(b.settings.max_batch, 1);
/// assert!(!b.settings.wake_on_release);
/// ```
#[macro_export]
macro_rules! builder_methods {
    ($field:ident) => {
        /// Substitute Lua scripts (node-redlock's `lockScript`,
        /// `unlockScript`, `extendScript`); they must keep the calling
        /// convention of `redlock_core::scripts`.
        pub fn scripts(mut self, scripts: $crate::__core::Scripts) -> Self {
            self.$field.scripts = scripts;
            self
        }

        /// How long the node waits for a reply before it gives the
        /// connection up and replaces it (default 10 s; `None` waits for
        /// the server however long it takes). The core bounds every request
        /// by its own, much shorter per-node timeout; this one only decides
        /// when a silent server's connection is abandoned. The new
        /// connection first kills the old one on the server
        /// (`CLIENT KILL ID`), so nothing still buffered on the old socket
        /// can run after a later release; where that is impossible (a
        /// connection passed in, or a server that refuses `CLIENT ID` /
        /// `INFO`), the node waits for the server instead. Zero is refused
        /// when the node is built (an invalid configuration).
        pub fn response_timeout(
            mut self,
            timeout: impl Into<Option<::std::time::Duration>>,
        ) -> Self {
            self.$field.response_timeout = timeout.into();
            self
        }

        /// How long establishing a connection may take (default 1 s;
        /// `None`: no bound). Zero is refused when the node is built (an
        /// invalid configuration).
        pub fn connection_timeout(
            mut self,
            timeout: impl Into<Option<::std::time::Duration>>,
        ) -> Self {
            self.$field.connection_timeout = timeout.into();
            self
        }

        /// The most calls sent in one pipeline (default 256; at least 1).
        pub fn max_batch(mut self, max: usize) -> Self {
            self.$field.max_batch = max.max(1);
            self
        }

        /// The most requests this node may owe (sent or queued, not
        /// answered) before new acquires, extends and reads fail at once
        /// without being sent, with `NodeError::Backlog` (default 1024,
        /// `redlock_core::backlog::DEFAULT_LIMIT`). This is what keeps
        /// memory flat while a server is stopped, however long. Zero, or
        /// more than `redlock_core::backlog::MAX_LIMIT`, is refused when the
        /// node is built (an invalid argument).
        pub fn max_outstanding(mut self, limit: usize) -> Self {
            self.$field.max_outstanding = limit;
            self
        }

        /// Whether waiters are woken by release announcements (default
        /// `true`): the node keeps one extra pub/sub connection, subscribed
        /// only to the release channels of resources someone is waiting
        /// for. Nodes without one (which depends on how the node was
        /// made: see the node's `release_subscriptions`) poll with the
        /// retry delay. See `redlock_core::Node::watch_release`.
        pub fn wake_on_release(mut self, enabled: bool) -> Self {
            self.$field.wake_on_release = enabled;
            self
        }

        /// Whether a one-key release or extend may use the server's own
        /// compare-and-delete / compare-and-set instead of the built-in
        /// script (default `true`): `DELIFEQ` on Valkey 9, `DELEX … IFEQ`
        /// on Redis 8.4, `SET … IFEQ … PX` on both; see
        /// `redlock_kit::native`. Each connection asks its server once
        /// (`COMMAND INFO DELIFEQ DELEX`) and keeps to the scripts where
        /// the answer names neither. With it, a user whose ACL denies
        /// `@scripting` can lock, extend and unlock one resource. A
        /// substitute script (`scripts`) always runs as written, as do
        /// calls on several keys; Redis Cluster nodes always use the
        /// scripts.
        pub fn native_commands(mut self, enabled: bool) -> Self {
            self.$field.native_commands = enabled;
            self
        }

        /// What an acquire or extend waits for before the node answers
        /// (default `Durability::Master`: the master's reply). For a node
        /// that is a replicated deployment (a Sentinel-managed master, a
        /// master with replicas), `Durability::replicas` ends every
        /// pipeline holding an acquire or extend with one
        /// `WAIT count timeout` on the same connection, which covers every
        /// write before it; when fewer replicas acknowledged in time, the
        /// requests of that pipeline that took effect fail with
        /// `NodeError::NotReplicated` (a failed vote; the core releases
        /// what an acquire took). Cost: one more command per pipeline with
        /// writes, and the wait for the replicas' acknowledgement on every
        /// acquire and extend. A lock's TTL must leave room for the wait
        /// (checked on every lock call). Refused on a cluster node (a
        /// configuration error).
        pub fn durability(mut self, durability: $crate::__core::Durability) -> Self {
            self.$field.durability = durability;
            self
        }
    };
}
