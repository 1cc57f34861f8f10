//! A whole Redis Cluster as one Redlock node (feature `cluster`).
//!
//! The keys of one call are split by hash slot with [`redlock_kit::slots`];
//! each group is one single-slot script call, so `CROSSSLOT` never reaches
//! the user. An acquire that conflicts on one slot releases what the other
//! slots took.

use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::Value;
use redlock_core::{Acquire, Extend, KeyState, NodeError};
use redlock_kit::plan::Command;
use redlock_kit::reply::{self, Reply};
use redlock_kit::slots::{self, is_redirect, Resends, SlotSender, MAX_REDIRECTS};
use redlock_kit::{Call, Executor, Kind, LoadedScripts};

use crate::address::{redact_url, Secrets};
use crate::error::{is_noscript, node_error};
use crate::node::{Builder, RedisNode};
use crate::wire;
use crate::Error;

struct ClusterExecutor {
    client: redis::cluster::ClusterClient,
    conn: Option<ClusterConnection>,
    scripts: LoadedScripts,
    redact: Secrets,
    id: String,
}

impl Builder {
    /// One node for a whole Redis Cluster, from the URLs of some of its
    /// nodes (seeds). Connects in the background. Requires the `cluster`
    /// feature. A replica wait ([`Builder::durability`]) is refused here
    /// ([`Error::InvalidConfig`]): a cluster node does not wait for
    /// replicas yet.
    pub fn open_cluster<S: AsRef<str>>(self, seeds: &[S]) -> Result<RedisNode, Error> {
        if self.durability_setting() != redlock_core::Durability::Master {
            return Err(Error::InvalidConfig(
                "durability with replica wait is not supported on a cluster node: \
                 use Durability::Master"
                    .into(),
            ));
        }
        let urls: Vec<&str> = seeds.iter().map(|s| s.as_ref()).collect();
        let first = urls
            .first()
            .ok_or_else(|| Error::InvalidConfig("no cluster seed URLs".into()))?;
        let mut redact = Secrets::default();
        for u in &urls {
            if let Ok(info) = redis::IntoConnectionInfo::into_connection_info(*u) {
                redact.add_opt(info.redis_settings().password());
            }
        }
        let (response, connection) = self.timeouts();
        // No retries inside the client: a lock command is sent once.
        let mut b = ClusterClientBuilder::new(urls.clone()).retries(0);
        if let Some(t) = response {
            b = b.response_timeout(t);
        }
        if let Some(t) = connection {
            b = b.connection_timeout(t);
        }
        let client = b
            .build()
            .map_err(|e| Error::InvalidConfig(redact.redact(&e.to_string())))?;
        let id = format!("cluster:{}", redact_url(first));
        let executor = ClusterExecutor {
            client,
            conn: None,
            scripts: self.loaded_scripts(),
            redact,
            id: id.clone(),
        };
        let backlog = self.backlog(&id)?;
        self.spawn(executor, id, backlog)
    }

    /// Like [`open_cluster`](Self::open_cluster), then waits until the
    /// cluster answers.
    pub async fn connect_cluster<S: AsRef<str>>(self, seeds: &[S]) -> Result<RedisNode, Error> {
        let node = self.open_cluster(seeds)?;
        node.ping().await?;
        Ok(node)
    }
}

impl RedisNode {
    /// One node for a whole Redis Cluster, once it answered. See
    /// [`Builder::open_cluster`].
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), redlock_redis_rs::Error> {
    /// use redlock_redis_rs::RedisNode;
    /// let cluster = RedisNode::connect_cluster(&["redis://127.0.0.1:7000"]).await?;
    /// # let _ = cluster; Ok(()) }
    /// ```
    pub async fn connect_cluster<S: AsRef<str>>(seeds: &[S]) -> Result<RedisNode, Error> {
        Builder::default().connect_cluster(seeds).await
    }
}

impl ClusterExecutor {
    async fn connection(&mut self) -> Result<ClusterConnection, NodeError> {
        if let Some(c) = &self.conn {
            return Ok(c.clone());
        }
        let c = self
            .client
            .get_async_connection()
            .await
            .map_err(|e| node_error(&e, &self.redact))?;
        self.conn = Some(c.clone());
        Ok(c)
    }
}

/// One cluster connection as a per-slot sender for [`redlock_kit::slots`]
/// (the connection routes each call by its keys).
struct Slots<'a> {
    conn: &'a ClusterConnection,
    scripts: &'a LoadedScripts,
    redact: &'a Secrets,
    resends: Resends,
}

impl Slots<'_> {
    /// Runs one single-slot call: EVALSHA, EVAL on NOSCRIPT, and the same
    /// again on a redirection (not run: MOVED, ASK, TRYAGAIN, CLUSTERDOWN);
    /// an acquire only while no release went out since
    /// ([`Resends`]).
    async fn eval(&self, call: Call) -> Result<Reply, NodeError> {
        let mut conn = self.conn.clone();
        if call.kind == Kind::Release {
            self.resends.releasing();
        }
        let sent = self.resends.sending();
        let (mut eval, mut redirects) = (false, 0);
        loop {
            let cmd = wire::command(&Command::Script {
                script: self.scripts.get(call.kind),
                call: &call,
                source: eval,
            });
            let e = match cmd.query_async::<Value>(&mut conn).await {
                Ok(v) => return Ok(wire::decode(v, self.redact)),
                Err(e) => e,
            };
            let noscript = !eval && is_noscript(&e);
            let redirect = redirects < MAX_REDIRECTS && is_redirect(&e.to_string());
            let blocked = call.kind == Kind::Acquire && !self.resends.may_resend_acquire(sent);
            if blocked || !(noscript || redirect) {
                return Err(node_error(&e, self.redact));
            }
            if noscript {
                eval = true;
            } else {
                redirects += 1;
            }
        }
    }

    fn call(kind: Kind, keys: Vec<String>, token: Option<&str>, number: Option<u64>) -> Call {
        Call {
            kind,
            keys,
            token: token.map(str::to_owned),
            number,
        }
    }
}

#[async_trait::async_trait]
impl SlotSender for Slots<'_> {
    async fn acquire(
        &self,
        _: u16,
        keys: Vec<String>,
        token: &str,
        ttl_ms: u64,
    ) -> Result<Acquire, NodeError> {
        let v = self
            .eval(Self::call(Kind::Acquire, keys, Some(token), Some(ttl_ms)))
            .await?;
        reply::acquire(&v)
    }

    async fn release(&self, _: u16, keys: Vec<String>, token: &str) -> Result<u64, NodeError> {
        let v = self
            .eval(Self::call(Kind::Release, keys, Some(token), None))
            .await?;
        reply::release(&v)
    }

    async fn extend(
        &self,
        _: u16,
        keys: Vec<String>,
        token: &str,
        ttl_ms: u64,
    ) -> Result<Extend, NodeError> {
        let v = self
            .eval(Self::call(Kind::Extend, keys, Some(token), Some(ttl_ms)))
            .await?;
        reply::extend(&v)
    }

    async fn inspect(&self, _: u16, keys: Vec<String>) -> Result<Vec<KeyState>, NodeError> {
        let v = self
            .eval(Self::call(Kind::Inspect, keys.clone(), None, None))
            .await?;
        reply::inspect(&keys, v)
    }

    async fn fence(&self, _: u16, keys: Vec<String>, floor: u64) -> Result<u64, NodeError> {
        let v = self
            .eval(Self::call(Kind::Fence, keys, None, Some(floor)))
            .await?;
        reply::fence(&v)
    }
}

/// Runs one call split by slot ([`redlock_kit::slots`]), answered as the
/// single server's script would answer (the node decodes it again).
async fn run_call(slots: &Slots<'_>, call: &Call) -> Result<Reply, NodeError> {
    let keys = &call.keys;
    let token = call.token.as_deref().unwrap_or_default();
    let number = call.number.unwrap_or_default();
    let flag = |yes: bool| Reply::Int(i64::from(yes));
    let count = |n: u64| Reply::Int(i64::try_from(n).unwrap_or(i64::MAX));
    Ok(match call.kind {
        Kind::Acquire => {
            flag(slots::acquire(slots, keys, token, number).await? == Acquire::Acquired)
        }
        Kind::Release => count(slots::release(slots, keys, token).await?),
        Kind::Extend => flag(slots::extend(slots, keys, token, number).await? == Extend::Extended),
        Kind::Fence => count(slots::fence(slots, keys, number).await?),
        Kind::Inspect => Reply::Array(
            slots::inspect(slots, keys)
                .await?
                .into_iter()
                .map(|state| {
                    let pttl = match (&state.holder, state.ttl) {
                        (None, _) => -2,
                        (Some(_), None) => -1,
                        (Some(_), Some(ttl)) => i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX),
                    };
                    let holder = state.holder.map_or(Reply::Nil, Reply::Text);
                    Reply::Array(vec![Reply::Int(pttl), holder])
                })
                .collect(),
        ),
        Kind::Ping => {
            let mut conn = slots.conn.clone();
            let pong = redis::cmd("PING").query_async::<Value>(&mut conn).await;
            wire::decode(
                pong.map_err(|e| node_error(&e, slots.redact))?,
                slots.redact,
            )
        }
    })
}

#[async_trait::async_trait]
impl Executor for ClusterExecutor {
    async fn warm_up(&mut self) {
        if let Err(e) = self.connection().await {
            tracing::debug!(node = %self.id, "initial cluster connection failed: {e}");
        }
    }

    async fn execute(&mut self, calls: &[Call]) -> Vec<Result<Reply, NodeError>> {
        let conn = match self.connection().await {
            Ok(c) => c,
            Err(e) => return calls.iter().map(|_| Err(e.clone())).collect(),
        };
        // Calls of one wave touch disjoint keys and run concurrently; a call
        // that touches a key of the current wave starts the next wave, so
        // its order with the earlier call is kept.
        let mut results = Vec::with_capacity(calls.len());
        let mut start = 0;
        while start < calls.len() {
            let mut end = start;
            let mut seen: std::collections::HashSet<&str> = std::collections::HashSet::new();
            while end < calls.len() {
                let c = &calls[end];
                if c.keys.iter().any(|k| seen.contains(k.as_str())) {
                    break;
                }
                seen.extend(c.keys.iter().map(|k| k.as_str()));
                end += 1;
            }
            let wave = futures_util::future::join_all(calls[start..end].iter().map(|c| {
                // The waves keep a release from running beside an acquire of
                // the same keys, so only a call's own releases (its
                // compensation) count against resending its acquires.
                let slots = Slots {
                    conn: &conn,
                    scripts: &self.scripts,
                    redact: &self.redact,
                    resends: Resends::default(),
                };
                async move { run_call(&slots, c).await }
            }))
            .await;
            results.extend(wave);
            start = end;
        }
        results
    }
}
