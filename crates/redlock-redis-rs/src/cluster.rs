//! A whole Redis Cluster as one Redlock node (feature `cluster`).
//!
//! The keys of one call are split by hash slot ([`redlock_kit::cluster`]);
//! each group is one single-slot script call, so `CROSSSLOT` never reaches
//! the user. An acquire that conflicts on one slot releases what the other
//! slots took.

use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::Value;
use redlock_core::NodeError;
use redlock_kit::cluster::{self, Refused, Router};
use redlock_kit::plan::Command;
use redlock_kit::reply::Reply;
use redlock_kit::watch::ReleaseHub;
use redlock_kit::{Call, Executor, LoadedScripts};

use crate::address::{redact_url, seed_urls, Secrets};
use crate::error::node_error;
use crate::node::{Builder, RedisNode};
use crate::watch::ClusterOpener;
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
        self.settings.check_cluster()?;
        let (urls, redact) = seed_urls(seeds, "no cluster seed URLs")?;
        let first = urls.first().copied().unwrap_or_default();
        let (response, connection) = (
            self.settings.response_timeout,
            self.settings.connection_timeout,
        );
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
        let hub = if self.settings.wake_on_release {
            let opener = ClusterOpener {
                seeds: urls.iter().map(|u| (*u).to_owned()).collect(),
                connection_timeout: connection,
            };
            ReleaseHub::spawn_sharded(opener, redact.clone(), id.clone())
        } else {
            None
        };
        let executor = ClusterExecutor {
            client,
            conn: None,
            // Releases announced with SPUBLISH on the key's shard.
            scripts: LoadedScripts::new(&self.settings.scripts).sharded(),
            redact,
            id: id.clone(),
        };
        let backlog = self.backlog(&id)?;
        self.spawn(executor, id, backlog, hub)
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

/// One cluster connection as the kit's [`Router`] (the connection routes
/// each command by its keys).
struct Routed<'a> {
    conn: &'a ClusterConnection,
    redact: &'a Secrets,
}

#[async_trait::async_trait]
impl Router for Routed<'_> {
    async fn send(&self, command: &Command<'_>) -> Result<Reply, Refused> {
        let mut conn = self.conn.clone();
        match wire::command(command).query_async::<Value>(&mut conn).await {
            Ok(v) => Ok(wire::decode(v, self.redact)),
            Err(e) => Err(Refused {
                error: node_error(&e, self.redact),
                code: e.code().map(str::to_owned),
                text: self.redact.redact(&e.to_string()),
            }),
        }
    }
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
        let router = Routed {
            conn: &conn,
            redact: &self.redact,
        };
        cluster::execute(&router, &self.scripts, calls).await
    }
}
