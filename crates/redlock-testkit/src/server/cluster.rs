//! A Redis Cluster on free loopback ports: [`RedisCluster`].

use std::process::{Command, Stdio};

use super::{
    cli_binary, parse_info, wait_until, RedisServer, Result, ServerError, ServerOptions,
    SETTLE_TIMEOUT,
};

/// A Redis Cluster of `masters` masters with `replicas` replicas each, all
/// on free loopback ports, joined with `redis-cli --cluster create`.
#[derive(Debug)]
pub struct RedisCluster {
    masters: usize,
    servers: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts the servers, creates the cluster and waits until every node
    /// reports `cluster_state:ok`.
    pub fn start(masters: usize, replicas: usize) -> Result<Self> {
        Self::start_on(None, masters, replicas)
    }

    /// Like [`start`](Self::start), with every node running `binary` (say,
    /// a Redis 6.2 found by [`find_server`](super::binaries::find_server))
    /// instead of the default server.
    pub fn start_binary(
        binary: impl AsRef<std::path::Path>,
        masters: usize,
        replicas: usize,
    ) -> Result<Self> {
        Self::start_on(Some(binary.as_ref()), masters, replicas)
    }

    fn start_on(binary: Option<&std::path::Path>, masters: usize, replicas: usize) -> Result<Self> {
        if masters < 3 {
            return Err(ServerError::Settle(
                "a Redis Cluster needs at least 3 masters".into(),
            ));
        }
        let total = masters * (1 + replicas);
        let mut servers = Vec::with_capacity(total);
        for _ in 0..total {
            let options = ServerOptions {
                args: [
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "2000",
                ]
                .iter()
                .map(|s| s.to_string())
                .collect(),
                password: None,
            };
            servers.push(match binary {
                Some(b) => RedisServer::start_binary(b, options)?,
                None => RedisServer::start_with(options)?,
            });
        }
        let mut cmd = Command::new(cli_binary());
        cmd.arg("--cluster").arg("create");
        for s in &servers {
            cmd.arg(s.addr());
        }
        cmd.args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"]);
        let out = cmd
            .stdin(Stdio::null())
            .output()
            .map_err(ServerError::missing(&cli_binary()))?;
        if !out.status.success() {
            return Err(ServerError::Settle(format!(
                "redis-cli --cluster create failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        let cluster = RedisCluster { masters, servers };
        cluster.wait_ok()?;
        Ok(cluster)
    }

    fn wait_ok(&self) -> Result<()> {
        let ok = wait_until(SETTLE_TIMEOUT, || {
            self.servers.iter().all(|s| {
                s.text(&["CLUSTER", "INFO"])
                    .map(|info| {
                        let f = parse_info(&info);
                        let get = |k: &str| {
                            f.iter()
                                .find(|(a, _)| a == k)
                                .map(|(_, v)| v.clone())
                                .unwrap_or_default()
                        };
                        get("cluster_state") == "ok"
                            && get("cluster_slots_ok") == "16384"
                            && get("cluster_known_nodes") == self.servers.len().to_string()
                    })
                    .unwrap_or(false)
            })
        });
        if ok {
            Ok(())
        } else {
            Err(ServerError::Settle(format!(
                "cluster did not reach cluster_state:ok within {SETTLE_TIMEOUT:?}"
            )))
        }
    }

    /// Every server, masters first as created (roles may change on failover).
    pub fn servers(&self) -> &[RedisServer] {
        &self.servers
    }

    /// The number of masters asked for.
    pub fn masters(&self) -> usize {
        self.masters
    }

    /// URLs of every node (any of them works as a seed for a cluster client).
    pub fn urls(&self) -> Vec<String> {
        self.servers.iter().map(|s| s.url()).collect()
    }

    /// The servers that currently are masters.
    pub fn master_servers(&self) -> Vec<&RedisServer> {
        self.servers
            .iter()
            .filter(|s| s.info_field("replication", "role").as_deref() == Some("master"))
            .collect()
    }
}
