//! The bottom layer: the state every operation works on ([`Shared`]) and
//! the checks of one call's input ([`Target`], TTL).
//!
//! Everything above takes an `&Arc<Shared>`; nothing here imports an
//! operation, so the arrows between modules run one way:
//!
//! ```text
//! redlock (facade) → lease, acquire, extend, fence, status, admin
//!                  → lock → release → round → shared → health, local, node, options
//! ```

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use crate::address;
use crate::error::InvalidArgument;
use crate::health::Health;
use crate::local::LocalQueues;
use crate::node::Node;
use crate::options::{default_node_timeout, drift, Options, MAX_TTL};
use crate::resources::MAX_KEY_BYTES;
use crate::runtime::Runtime;

/// State shared by a [`Redlock`](crate::Redlock) (and its clones) and the
/// locks it hands out.
#[derive(Debug)]
pub(crate) struct Shared {
    pub nodes: Vec<Arc<dyn Node>>,
    pub quorum: usize,
    pub options: Options,
    pub runtime: Arc<dyn Runtime>,
    /// Per node, in the order of `nodes`: whether rounds wait for it.
    pub health: Box<[Health]>,
    /// Lock calls of this process waiting for the same keys.
    pub local: Arc<LocalQueues>,
    /// The last collision backoff window (µs) a lock call ended with; the
    /// next call starts from half of it (see `acquire::collision`).
    pub backoff_us: AtomicU64,
}

/// The validated keys and names of one call.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub names: Arc<[String]>,
    pub keys: Arc<[String]>,
}

impl Shared {
    /// Checks the nodes and options; see [`Redlock::new`](crate::Redlock::new).
    pub fn new(nodes: Vec<Arc<dyn Node>>, options: Options) -> Result<Self, InvalidArgument> {
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
        let health = nodes.iter().map(|_| Health::default()).collect();
        Ok(Shared {
            health,
            local: Arc::default(),
            backoff_us: AtomicU64::new(0),
            nodes,
            quorum,
            options,
            runtime,
        })
    }

    /// The clock-drift allowance for `ttl`.
    pub fn drift(&self, ttl: Duration) -> Duration {
        drift(ttl, self.options.drift_factor)
    }

    /// The per-node timeout of a round for a lock with `ttl`.
    pub fn node_timeout(&self, ttl: Duration) -> Duration {
        self.options
            .node_timeout
            .unwrap_or_else(|| default_node_timeout(ttl))
    }

    /// How long a release round waits for each node: the per-node timeout,
    /// at least [`RELEASE_TIMEOUT_FLOOR`].
    pub fn release_timeout(&self, ttl: Duration) -> Duration {
        self.node_timeout(ttl).max(RELEASE_TIMEOUT_FLOOR)
    }

    /// Checks resource names and forms their keys (prefix, duplicates
    /// removed, order kept).
    pub fn target(&self, names: Vec<String>) -> Result<Target, InvalidArgument> {
        if names.is_empty() {
            return Err(InvalidArgument::NoResources);
        }
        let prefix = &self.options.key_prefix;
        let mut unique: Vec<String> = Vec::with_capacity(names.len());
        for (i, name) in names.into_iter().enumerate() {
            if name.is_empty() {
                return Err(InvalidArgument::EmptyResource(i));
            }
            let len = prefix.len().saturating_add(name.len());
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

    /// Checks a TTL: above zero and the drift allowance, within what Redis
    /// and the clock accept.
    pub fn check_ttl(&self, ttl: Duration) -> Result<(), InvalidArgument> {
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
        if self.runtime.now().checked_add(ttl).is_none() {
            return Err(InvalidArgument::TtlTooLarge { ttl, max: MAX_TTL });
        }
        for node in &self.nodes {
            node.durability().check_ttl(ttl, allowance)?;
        }
        Ok(())
    }
}

/// The least time a release (or `quit`) waits for a node. The per-node
/// timeout is cut for acquires, where every millisecond waited is validity
/// lost; a release loses nothing by waiting, and one given up too early on
/// a loaded node is reported as a failure although its request is still
/// carried out.
pub(crate) const RELEASE_TIMEOUT_FLOOR: Duration = Duration::from_secs(1);

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
