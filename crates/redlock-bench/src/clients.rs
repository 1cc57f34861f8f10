//! The lock clients under test behind one small interface.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::{FuturesUnordered, StreamExt};
use rand::rngs::OsRng;
use rand::TryRngCore;
use redis::aio::MultiplexedConnection;
use redlock_core::{Options, Redlock, Retries, RetryPolicy};

/// Which client a run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `redlock-redis-rs`.
    RedisRs,
    /// `redlock-fred`.
    Fred,
    /// The `redis` crate with no lock library.
    Raw,
    /// The `fred` crate with no lock library.
    RawFred,
    /// The `rslock` crate.
    Rslock,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::RedisRs => "redlock-redis-rs",
            Kind::Fred => "redlock-fred",
            Kind::Raw => "raw redis-rs",
            Kind::RawFred => "raw fred",
            Kind::Rslock => "rslock 0.10",
        }
    }

    /// The name `--clients` takes (also what a `stalled` child is given).
    pub fn id(self) -> &'static str {
        match self {
            Kind::RedisRs => "redis-rs",
            Kind::Fred => "fred",
            Kind::Raw => "raw",
            Kind::RawFred => "raw-fred",
            Kind::Rslock => "rslock",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        match s {
            "redis-rs" | "redlock-redis-rs" => Some(Kind::RedisRs),
            "fred" | "redlock-fred" => Some(Kind::Fred),
            "raw" => Some(Kind::Raw),
            "raw-fred" => Some(Kind::RawFred),
            "rslock" => Some(Kind::Rslock),
            _ => None,
        }
    }
}

/// How a client waits for a contended lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waiting {
    /// Not contended: default retry settings (a conflict never happens).
    Default,
    /// Retry forever, sleeping uniform 0..20 ms (10 ± 10 ms) between tries.
    Poll,
    /// Like `Poll`, plus wake-on-release where the client supports it.
    Wake,
    /// Like `Wake`, with one client (its own connections) per task, as
    /// separate processes would have: no in-process queue between them.
    Separate,
    /// Like `Separate` without wake-on-release: separate clients that only
    /// poll (what `Separate` is measured against).
    SeparatePoll,
    /// Exactly one attempt per lock call, no retries (node-redlock's
    /// `retryCount: 0`): what the `stalled` workload uses.
    Once,
}

impl Waiting {
    /// Retries forever (the contended workloads).
    fn retries_forever(self) -> bool {
        matches!(
            self,
            Waiting::Poll | Waiting::Wake | Waiting::Separate | Waiting::SeparatePoll
        )
    }
}

/// A lock as each client represents it.
pub enum Held {
    Ours(redlock_core::Lock),
    Raw { key: String, token: String },
    Rslock(rslock::Lock),
}

/// Lock and unlock, nothing else.
#[async_trait::async_trait]
pub trait Locker: Send + Sync {
    async fn lock(&self, key: &str, ttl: Duration) -> Result<Held, String>;
    async fn unlock(&self, held: Held) -> Result<(), String>;
    async fn close(&self) {}
    /// The largest outstanding-request count over the nodes, when the
    /// client keeps one (`Node::outstanding`).
    fn outstanding(&self) -> Option<usize> {
        None
    }
}

/// 0..=20 ms between tries: 10 ± 10 ms.
fn polling() -> RetryPolicy {
    RetryPolicy::default()
        .retries(Retries::Forever)
        .delay(Duration::ZERO)
        .jitter(Duration::from_millis(20))
        .deadline(None)
}

/// What our adapters' nodes wait for after an acquire or extend
/// (`--wait-replicas`); unset: the master's reply.
pub static DURABILITY: std::sync::OnceLock<redlock_core::Durability> = std::sync::OnceLock::new();

/// Whether the nodes are one Redis Cluster (`--cluster`): a single Redlock
/// node over all of them.
pub static CLUSTER: std::sync::OnceLock<bool> = std::sync::OnceLock::new();

/// One Redlock node for the whole cluster at `urls` (our adapters only).
async fn build_cluster(
    kind: Kind,
    urls: &[String],
    wake: bool,
    options: Options,
) -> Result<Arc<dyn Locker>, String> {
    let node: Arc<dyn redlock_core::Node> = match kind {
        Kind::RedisRs => Arc::new(
            redlock_redis_rs::RedisNode::builder()
                .wake_on_release(wake)
                .connect_cluster(urls)
                .await
                .map_err(|e| e.to_string())?,
        ),
        Kind::Fred => {
            let hosts: Vec<&str> = urls
                .iter()
                .map(|u| u.trim_start_matches("redis://"))
                .collect();
            let (first, rest) = hosts.split_first().ok_or("no cluster URLs")?;
            let others: String = rest.iter().map(|h| format!("&node={h}")).collect();
            let url = format!("redis-cluster://{first}?{}", others.trim_start_matches('&'));
            Arc::new(
                redlock_fred::FredNode::builder()
                    .wake_on_release(wake)
                    .connect(&url)
                    .await
                    .map_err(|e| e.to_string())?,
            )
        }
        other => return Err(format!("{} has no Redis Cluster mode here", other.name())),
    };
    let redlock = Redlock::from_nodes(vec![node], options).map_err(|e| e.to_string())?;
    Ok(Arc::new(Ours(redlock)))
}

pub async fn build(
    kind: Kind,
    urls: &[String],
    waiting: Waiting,
) -> Result<Arc<dyn Locker>, String> {
    let options = match waiting {
        Waiting::Default => Options::new(),
        Waiting::Once => Options::new().retry_policy(RetryPolicy::once()),
        Waiting::Poll | Waiting::Wake | Waiting::Separate | Waiting::SeparatePoll => {
            Options::new().retry_policy(polling())
        }
    };
    let wake = !matches!(waiting, Waiting::Poll | Waiting::SeparatePoll);
    if CLUSTER.get().copied().unwrap_or(false) {
        return build_cluster(kind, urls, wake, options).await;
    }
    match kind {
        Kind::RedisRs => {
            let mut nodes = Vec::new();
            for u in urls {
                let node = redlock_redis_rs::RedisNode::builder()
                    .wake_on_release(wake)
                    // REDLOCK_BENCH_NATIVE=0: scripts only, for comparison.
                    .native_commands(
                        std::env::var("REDLOCK_BENCH_NATIVE").map_or(true, |v| v != "0"),
                    )
                    .durability(DURABILITY.get().copied().unwrap_or_default())
                    .connect(u)
                    .await
                    .map_err(|e| e.to_string())?;
                nodes.push(node);
            }
            let redlock = Redlock::new(nodes, options).map_err(|e| e.to_string())?;
            Ok(Arc::new(Ours(redlock)))
        }
        Kind::Fred => {
            let mut nodes = Vec::new();
            for u in urls {
                let node = redlock_fred::FredNode::builder()
                    .wake_on_release(wake)
                    .connect(u)
                    .await
                    .map_err(|e| e.to_string())?;
                nodes.push(node);
            }
            let redlock = Redlock::new(nodes, options).map_err(|e| e.to_string())?;
            Ok(Arc::new(Ours(redlock)))
        }
        Kind::Raw => Ok(Arc::new(
            Raw::connect(urls, waiting.retries_forever()).await?,
        )),
        Kind::RawFred => Ok(Arc::new(
            Raw::connect_fred(urls, waiting.retries_forever()).await?,
        )),
        Kind::Rslock => {
            let mut manager = rslock::LockManager::new(urls.to_vec());
            let contended = waiting.retries_forever();
            if contended {
                // Random 0..20 ms between tries, forever (with acquire_no_guard).
                manager.set_retry(u32::MAX, Duration::from_millis(20));
            } else if waiting == Waiting::Once {
                // One attempt: no retry, so the delay is never used.
                manager.set_retry(0, Duration::from_millis(200));
            }
            Ok(Arc::new(Rs { manager, contended }))
        }
    }
}

struct Ours(Redlock);

#[async_trait::async_trait]
impl Locker for Ours {
    async fn lock(&self, key: &str, ttl: Duration) -> Result<Held, String> {
        self.0
            .lock(key, ttl)
            .await
            .map(Held::Ours)
            .map_err(|e| e.to_string())
    }

    async fn unlock(&self, held: Held) -> Result<(), String> {
        match held {
            Held::Ours(lock) => lock.unlock().await.map_err(|e| e.to_string()),
            _ => Err("foreign lock".into()),
        }
    }

    async fn close(&self) {
        let _ = self.0.quit().await;
    }

    fn outstanding(&self) -> Option<usize> {
        self.0.nodes().iter().filter_map(|n| n.outstanding()).max()
    }
}

struct Rs {
    manager: rslock::LockManager,
    contended: bool,
}

#[async_trait::async_trait]
impl Locker for Rs {
    async fn lock(&self, key: &str, ttl: Duration) -> Result<Held, String> {
        let r = if self.contended {
            self.manager.acquire_no_guard(key, ttl).await
        } else {
            self.manager.lock(key, ttl).await
        };
        r.map(Held::Rslock).map_err(|e| format!("{e:?}"))
    }

    async fn unlock(&self, held: Held) -> Result<(), String> {
        match held {
            Held::Rslock(lock) => {
                self.manager.unlock(&lock).await;
                Ok(())
            }
            _ => Err("foreign lock".into()),
        }
    }
}

/// The `redis` crate's pipeline buffer per connection: 1024 here (its default
/// is 50, with which this baseline left keys behind under 64-way load).
/// Overridable with `RAW_BUFFER=n` to study its effect.
static RAW_BUFFER_ENV: std::sync::OnceLock<usize> = std::sync::OnceLock::new();

const UNLOCK: &str = r#"if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"#;

/// One node's connection as the baselines use it: two commands, each built
/// at once and returned as a future that owns what it needs (so that it can
/// be left running after the decision).
trait RawConn: Clone + Send + Sync + 'static {
    /// `SET key token NX PX ttl`; whether it was set.
    fn set_nx(
        &self,
        key: &str,
        token: &str,
        ttl_ms: u64,
    ) -> impl Future<Output = bool> + Send + 'static;
    /// `EVALSHA` of the compare-and-delete script; whether it answered.
    fn unlock(
        &self,
        sha: &str,
        key: &str,
        token: &str,
    ) -> impl Future<Output = bool> + Send + 'static;
}

impl RawConn for MultiplexedConnection {
    fn set_nx(
        &self,
        key: &str,
        token: &str,
        ttl_ms: u64,
    ) -> impl Future<Output = bool> + Send + 'static {
        let mut c = self.clone();
        let mut cmd = redis::cmd("SET");
        cmd.arg(key).arg(token).arg("NX").arg("PX").arg(ttl_ms);
        async move { matches!(cmd.query_async::<Option<String>>(&mut c).await, Ok(Some(_))) }
    }

    fn unlock(
        &self,
        sha: &str,
        key: &str,
        token: &str,
    ) -> impl Future<Output = bool> + Send + 'static {
        let mut c = self.clone();
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(sha).arg(1).arg(key).arg(token);
        async move { cmd.query_async::<i64>(&mut c).await.is_ok() }
    }
}

impl RawConn for fred::clients::Client {
    fn set_nx(
        &self,
        key: &str,
        token: &str,
        ttl_ms: u64,
    ) -> impl Future<Output = bool> + Send + 'static {
        use fred::interfaces::ClientLike;
        use fred::types::{ClusterHash, CustomCommand, Value};
        let c = self.clone();
        let args: Vec<Value> = vec![
            key.into(),
            token.into(),
            "NX".into(),
            "PX".into(),
            Value::from(ttl_ms as i64),
        ];
        async move {
            matches!(
                c.custom::<Value, Value>(
                    CustomCommand::new_static("SET", ClusterHash::FirstKey, false),
                    args
                )
                .await,
                Ok(v) if !v.is_null()
            )
        }
    }

    fn unlock(
        &self,
        sha: &str,
        key: &str,
        token: &str,
    ) -> impl Future<Output = bool> + Send + 'static {
        use fred::interfaces::ClientLike;
        use fred::types::{ClusterHash, CustomCommand, Value};
        let c = self.clone();
        let args: Vec<Value> = vec![sha.into(), 1i64.into(), key.into(), token.into()];
        async move {
            c.custom::<Value, Value>(
                CustomCommand::new_static("EVALSHA", ClusterHash::Random, false),
                args,
            )
            .await
            .is_ok()
        }
    }
}

/// The baselines: `SET NX PX` to every node at once, decided as soon as a
/// quorum said yes or can no longer say yes; `EVALSHA` unlock the same way.
/// One connection per node (multiplexed for `redis`, fred's client) keeps
/// each node's SET before its DEL.
struct Raw<C> {
    conns: Vec<C>,
    sha: String,
    quorum: usize,
    retry: bool,
}

impl<C> Raw<C> {
    fn new(conns: Vec<C>, retry: bool) -> Self {
        Raw {
            quorum: conns.len() / 2 + 1,
            conns,
            sha: redis::Script::new(UNLOCK).get_hash().to_string(),
            retry,
        }
    }
}

impl Raw<MultiplexedConnection> {
    async fn connect(urls: &[String], retry: bool) -> Result<Self, String> {
        let mut conns = Vec::new();
        for u in urls {
            let client = redis::Client::open(u.as_str()).map_err(|e| e.to_string())?;
            let config = redis::AsyncConnectionConfig::new().set_pipeline_buffer_size(
                *RAW_BUFFER_ENV.get_or_init(|| {
                    std::env::var("RAW_BUFFER")
                        .ok()
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(1024)
                }),
            );
            let mut c = client
                .get_multiplexed_async_connection_with_config(&config)
                .await
                .map_err(|e| e.to_string())?;
            let _: String = redis::cmd("SCRIPT")
                .arg("LOAD")
                .arg(UNLOCK)
                .query_async(&mut c)
                .await
                .map_err(|e| e.to_string())?;
            conns.push(c);
        }
        Ok(Raw::new(conns, retry))
    }
}

impl Raw<fred::clients::Client> {
    async fn connect_fred(urls: &[String], retry: bool) -> Result<Self, String> {
        use fred::interfaces::ClientLike;
        use fred::types::{ClusterHash, CustomCommand, Value};
        let mut conns = Vec::new();
        for u in urls {
            let config = fred::types::config::Config::from_url(u).map_err(|e| e.to_string())?;
            let client = fred::types::Builder::from_config(config)
                .build()
                .map_err(|e| e.to_string())?;
            client.init().await.map_err(|e| e.to_string())?;
            let load: Vec<Value> = vec!["LOAD".into(), UNLOCK.into()];
            client
                .custom::<Value, Value>(
                    CustomCommand::new_static("SCRIPT", ClusterHash::Random, false),
                    load,
                )
                .await
                .map_err(|e| e.to_string())?;
            conns.push(client);
        }
        Ok(Raw::new(conns, retry))
    }
}

impl<C: RawConn> Raw<C> {
    async fn attempt(&self, key: &str, ttl: Duration) -> Result<String, String> {
        let mut bytes = [0u8; 20];
        OsRng
            .try_fill_bytes(&mut bytes)
            .map_err(|e| e.to_string())?;
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let ttl_ms = ttl.as_millis() as u64;
        let node_timeout = (ttl / 10).clamp(Duration::from_millis(2), Duration::from_secs(1));
        let start = Instant::now();
        let mut pending: FuturesUnordered<_> = self
            .conns
            .iter()
            .map(|c| {
                let set = c.set_nx(key, &token, ttl_ms);
                async move { matches!(tokio::time::timeout(node_timeout, set).await, Ok(true)) }
            })
            .collect();
        let n = self.conns.len();
        let (mut yes, mut no) = (0, 0);
        while let Some(ok) = pending.next().await {
            if ok {
                yes += 1;
            } else {
                no += 1;
            }
            if yes >= self.quorum || no > n - self.quorum {
                break;
            }
        }
        // `redis` skips requests whose caller went away; keep the slower
        // nodes' requests alive so each SET stays ahead of its DEL.
        if !pending.is_empty() {
            tokio::spawn(async move { while pending.next().await.is_some() {} });
        }
        let drift = Duration::from_millis(ttl_ms / 100 + 2);
        if yes >= self.quorum && start.elapsed() < ttl - drift {
            return Ok(token);
        }
        self.release(key, &token).await;
        Err("not acquired".into())
    }

    async fn release(&self, key: &str, token: &str) -> usize {
        let mut pending: FuturesUnordered<_> = self
            .conns
            .iter()
            .map(|c| {
                let unlock = c.unlock(&self.sha, key, token);
                async move {
                    tokio::time::timeout(Duration::from_secs(1), unlock)
                        .await
                        .unwrap_or(false)
                }
            })
            .collect();
        let mut answered = 0;
        while let Some(ok) = pending.next().await {
            if ok {
                answered += 1;
                if answered >= self.quorum {
                    break;
                }
            }
        }
        if !pending.is_empty() {
            tokio::spawn(async move { while pending.next().await.is_some() {} });
        }
        answered
    }
}

#[async_trait::async_trait]
impl<C: RawConn> Locker for Raw<C> {
    async fn lock(&self, key: &str, ttl: Duration) -> Result<Held, String> {
        loop {
            match self.attempt(key, ttl).await {
                Ok(token) => {
                    return Ok(Held::Raw {
                        key: key.to_owned(),
                        token,
                    })
                }
                Err(e) if !self.retry => return Err(e),
                Err(_) => {
                    let ms = rand::random_range(0..=20_000u64);
                    tokio::time::sleep(Duration::from_micros(ms)).await;
                }
            }
        }
    }

    async fn unlock(&self, held: Held) -> Result<(), String> {
        match held {
            Held::Raw { key, token } => {
                if self.release(&key, &token).await >= self.quorum {
                    Ok(())
                } else {
                    Err("no quorum for unlock".into())
                }
            }
            _ => Err("foreign lock".into()),
        }
    }
}
