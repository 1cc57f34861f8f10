//! A whole Redis Cluster as one Redlock node (feature `cluster`).
//!
//! The keys of one call are grouped by hash slot with
//! [`redlock_core::slot::group_by_slot`]; each group is one single-slot
//! script call, so `CROSSSLOT` never reaches the user. An acquire that
//! conflicts on one slot releases what the other slots took.

use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{RedisError, Value};
use redlock_core::slot::group_by_slot;
use redlock_core::NodeError;

use crate::address::{redact_url, Redactor};
use crate::error::{is_noscript, node_error};
use crate::node::{Builder, RedisNode};
use crate::queue::Executor;
use crate::scripts::{Call, Kind, LoadedScripts};
use crate::Error;

/// How often a call refused with MOVED / TRYAGAIN / CLUSTERDOWN (so not
/// executed) is sent again after the client refreshed its slot map.
const REDIRECTS: usize = 3;

struct ClusterExecutor {
    client: redis::cluster::ClusterClient,
    conn: Option<ClusterConnection>,
    scripts: LoadedScripts,
    redact: Redactor,
    id: String,
}

impl Builder {
    /// One node for a whole Redis Cluster, from the URLs of some of its
    /// nodes (seeds). Connects in the background. Requires the `cluster`
    /// feature.
    pub fn open_cluster<S: AsRef<str>>(self, seeds: &[S]) -> Result<RedisNode, Error> {
        let urls: Vec<&str> = seeds.iter().map(|s| s.as_ref()).collect();
        let first = urls
            .first()
            .ok_or_else(|| Error::InvalidConfig("no cluster seed URLs".into()))?;
        let mut redact = Redactor::default();
        for u in &urls {
            if let Ok(info) = redis::IntoConnectionInfo::into_connection_info(*u) {
                redact.add(info.redis_settings().password());
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
            .map_err(|e| Error::InvalidConfig(redact.scrub(&e.to_string())))?;
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

/// Runs one single-slot call: EVALSHA, EVAL on NOSCRIPT, again on a
/// refusal that means "not executed, ask elsewhere".
async fn eval_once(
    mut conn: ClusterConnection,
    scripts: &LoadedScripts,
    call: &Call,
) -> Result<Value, RedisError> {
    let mut eval = false;
    let mut attempts = 0;
    loop {
        let cmd = if eval {
            call.eval(scripts)
        } else {
            call.evalsha(scripts)
        };
        match cmd.query_async::<Value>(&mut conn).await {
            Ok(v) => return Ok(v),
            Err(e) if !eval && is_noscript(&e) => eval = true,
            Err(e)
                if attempts < REDIRECTS
                    && matches!(
                        e.code(),
                        Some("MOVED") | Some("TRYAGAIN") | Some("CLUSTERDOWN")
                    ) =>
            {
                attempts += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

async fn run_call(
    conn: ClusterConnection,
    scripts: &LoadedScripts,
    redact: &Redactor,
    call: &Call,
) -> Result<Value, NodeError> {
    let err = |e: RedisError| node_error(&e, redact);
    let groups = group_by_slot(&call.keys);
    if groups.len() <= 1 {
        return eval_once(conn, scripts, call).await.map_err(err);
    }
    let subs: Vec<Call> = groups
        .into_iter()
        .map(|(_, keys)| call.with_keys(keys))
        .collect();
    if call.kind == Kind::Extend {
        // All or nothing across slots: first check that every key still
        // holds the token, and change nothing when one does not. (A key that
        // expires between the check and the extend is reported as NotHeld.)
        let token = call.token.clone().unwrap_or_default();
        let checks = futures_util::future::join_all(subs.iter().map(|c| {
            let check = Call {
                kind: Kind::Inspect,
                keys: c.keys.clone(),
                token: None,
                number: None,
            };
            let conn = conn.clone();
            async move { eval_once(conn, scripts, &check).await }
        }))
        .await;
        for r in checks {
            let v = r.map_err(err)?;
            let Value::Array(items) = &v else {
                return Ok(v);
            };
            let ours = items.iter().all(|item| match item {
                Value::Array(pair) => {
                    matches!(pair.get(1), Some(Value::BulkString(b)) if b == token.as_bytes())
                }
                _ => false,
            });
            if !ours {
                return Ok(Value::Int(0));
            }
        }
    }
    let results =
        futures_util::future::join_all(subs.iter().map(|c| eval_once(conn.clone(), scripts, c)))
            .await;
    match call.kind {
        Kind::Acquire => {
            let all = results.iter().all(|r| matches!(r, Ok(Value::Int(1))));
            if all {
                return Ok(Value::Int(1));
            }
            // Compensate: give back what some slots took (and, to be safe
            // after an error, what they may have taken).
            let token = call.token.clone().unwrap_or_default();
            let undo: Vec<Call> = subs
                .iter()
                .zip(&results)
                .filter(|(_, r)| !matches!(r, Ok(Value::Int(0))))
                .map(|(c, _)| Call {
                    kind: Kind::Release,
                    keys: c.keys.clone(),
                    token: Some(token.clone()),
                    number: None,
                })
                .collect();
            let _ = futures_util::future::join_all(
                undo.iter().map(|c| eval_once(conn.clone(), scripts, c)),
            )
            .await;
            for r in results {
                r.map_err(err)?;
            }
            Ok(Value::Int(0))
        }
        Kind::Release => {
            let mut n = 0;
            for r in results {
                match r.map_err(err)? {
                    Value::Int(i) => n += i,
                    other => return Ok(other),
                }
            }
            Ok(Value::Int(n))
        }
        Kind::Extend => {
            let mut all = true;
            for r in results {
                all &= matches!(r.map_err(err)?, Value::Int(1));
            }
            Ok(Value::Int(i64::from(all)))
        }
        Kind::Inspect => {
            let mut by_key: Vec<(String, Value)> = Vec::new();
            for (c, r) in subs.iter().zip(results) {
                match r.map_err(err)? {
                    Value::Array(items) => {
                        by_key.extend(c.keys.iter().cloned().zip(items));
                    }
                    other => return Ok(other),
                }
            }
            let mut ordered = Vec::with_capacity(call.keys.len());
            for k in &call.keys {
                let pos = by_key.iter().position(|(key, _)| key == k);
                match pos {
                    Some(p) => ordered.push(by_key.swap_remove(p).1),
                    None => return Err(NodeError::Protocol("inspect reply misses a key".into())),
                }
            }
            Ok(Value::Array(ordered))
        }
        Kind::Fence => {
            let mut max = 0i64;
            for r in results {
                let v = r.map_err(err)?;
                let n = match &v {
                    Value::Int(i) => *i,
                    Value::BulkString(b) => std::str::from_utf8(b)
                        .ok()
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(0),
                    _ => return Ok(v),
                };
                max = max.max(n);
            }
            Ok(Value::Int(max))
        }
        Kind::Ping => Ok(Value::SimpleString("PONG".into())),
    }
}

#[async_trait::async_trait]
impl Executor for ClusterExecutor {
    async fn warm_up(&mut self) {
        if let Err(e) = self.connection().await {
            tracing::debug!(node = %self.id, "initial cluster connection failed: {e}");
        }
    }

    async fn execute(&mut self, calls: &[Call]) -> Vec<Result<Value, NodeError>> {
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
            let wave = futures_util::future::join_all(
                calls[start..end]
                    .iter()
                    .map(|c| run_call(conn.clone(), &self.scripts, &self.redact, c)),
            )
            .await;
            results.extend(wave);
            start = end;
        }
        results
    }
}
