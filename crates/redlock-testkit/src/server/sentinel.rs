//! A master, a replica and three sentinels: [`Sentinel`].

use std::fs;
use std::sync::Mutex;

use super::single::{Mode, Process};
use super::{
    scratch_dir, sentinel_binary, wait_until, RedisServer, Result, ServerError, ServerOptions,
    SETTLE_TIMEOUT,
};
use crate::conformance::Target;

/// A master, one replica and three sentinels monitoring the master under the
/// name [`Sentinel::MASTER_NAME`].
#[derive(Debug)]
pub struct Sentinel {
    master: RedisServer,
    replica: RedisServer,
    sentinels: Vec<RedisServer>,
}

impl Sentinel {
    /// The name the sentinels monitor the master under.
    pub const MASTER_NAME: &'static str = "mymaster";

    /// The conformance target of this deployment: its sentinels and
    /// [`Sentinel::MASTER_NAME`].
    pub fn target(&self) -> Target {
        Target::Sentinel {
            sentinels: self.sentinel_urls(),
            master: Self::MASTER_NAME.to_owned(),
        }
    }

    /// Starts master, replica and three sentinels, and waits until the
    /// replica is in sync and every sentinel knows the replica and the other
    /// sentinels.
    pub fn start() -> Result<Self> {
        let master = RedisServer::start()?;
        let replica = RedisServer::start_with(ServerOptions::replica_of(master.port()))?;
        let mut sentinels = Vec::with_capacity(3);
        for _ in 0..3 {
            sentinels.push(Self::start_sentinel(master.port())?);
        }
        let deployment = Sentinel {
            master,
            replica,
            sentinels,
        };
        deployment.wait_settled(deployment.master.port())?;
        Ok(deployment)
    }

    fn start_sentinel(master_port: u16) -> Result<RedisServer> {
        RedisServer::spawn_on_free_port(scratch_dir("sentinel")?, |dir, port| {
            let conf = format!(
                "port {port}\nbind 127.0.0.1\ndaemonize no\n\
                 sentinel monitor {name} 127.0.0.1 {master_port} 2\n\
                 sentinel down-after-milliseconds {name} 1000\n\
                 sentinel failover-timeout {name} 5000\n\
                 sentinel parallel-syncs {name} 1\n",
                name = Self::MASTER_NAME
            );
            fs::write(dir.join("sentinel.conf"), conf)?;
            Ok(RedisServer {
                binary: sentinel_binary(),
                port,
                dir: dir.to_owned(),
                extra: Vec::new(),
                mode: Mode::Sentinel,
                process: Mutex::new(Process {
                    child: None,
                    paused: false,
                }),
                password: None,
            })
        })
    }

    fn master_port_seen_by(&self, sentinel: &RedisServer) -> Option<u16> {
        let reply = sentinel
            .command(&["SENTINEL", "get-master-addr-by-name", Self::MASTER_NAME])
            .ok()?;
        reply.items().get(1)?.text().parse().ok()
    }

    fn wait_settled(&self, master_port: u16) -> Result<()> {
        let (master, replica) = if master_port == self.master.port() {
            (&self.master, &self.replica)
        } else {
            (&self.replica, &self.master)
        };
        let ok = wait_until(SETTLE_TIMEOUT, || {
            master.info_field("replication", "role").as_deref() == Some("master")
                && replica
                    .info_field("replication", "master_link_status")
                    .as_deref()
                    == Some("up")
                && replica.info_field("replication", "master_port").as_deref()
                    == Some(master.port().to_string().as_str())
                && self.sentinels.iter().all(|s| {
                    self.master_port_seen_by(s) == Some(master_port)
                        && s.command(&["SENTINEL", "master", Self::MASTER_NAME])
                            .map(|r| {
                                let items: Vec<String> =
                                    r.items().iter().map(|x| x.text()).collect();
                                let field = |name: &str| {
                                    items
                                        .iter()
                                        .position(|x| x == name)
                                        .and_then(|i| items.get(i + 1))
                                        .cloned()
                                        .unwrap_or_default()
                                };
                                field("num-slaves") == "1"
                                    && field("num-other-sentinels") == "2"
                                    && field("flags") == "master"
                            })
                            .unwrap_or(false)
                })
        });
        if ok {
            Ok(())
        } else {
            let seen: Vec<String> = self
                .sentinels
                .iter()
                .map(|s| {
                    s.command(&["SENTINEL", "master", Self::MASTER_NAME])
                        .map(|r| {
                            let items: Vec<String> = r.items().iter().map(|x| x.text()).collect();
                            items
                                .chunks(2)
                                .filter(|kv| {
                                    ["port", "flags", "num-slaves", "num-other-sentinels"]
                                        .contains(&kv[0].as_str())
                                })
                                .map(|kv| kv.join("="))
                                .collect::<Vec<_>>()
                                .join(" ")
                        })
                        .unwrap_or_else(|e| e.to_string())
                })
                .collect();
            Err(ServerError::Settle(format!(
                "sentinel deployment did not settle on master port {master_port} within \
                 {SETTLE_TIMEOUT:?}: master role {:?}, replica link {:?} to port {:?}; \
                 sentinels see {seen:?}",
                master.info_field("replication", "role"),
                replica.info_field("replication", "master_link_status"),
                replica.info_field("replication", "master_port"),
            )))
        }
    }

    /// `redis://` URLs of the three sentinels.
    pub fn sentinel_urls(&self) -> Vec<String> {
        self.sentinels.iter().map(|s| s.url()).collect()
    }

    /// The sentinel processes.
    pub fn sentinels(&self) -> &[RedisServer] {
        &self.sentinels
    }

    /// The server currently master according to the sentinels.
    pub fn current_master(&self) -> &RedisServer {
        let port = self
            .sentinels
            .iter()
            .find_map(|s| self.master_port_seen_by(s));
        if port == Some(self.replica.port()) {
            &self.replica
        } else {
            &self.master
        }
    }

    /// The data server that is not [`current_master`](Self::current_master):
    /// the replica, as long as both run.
    pub fn current_replica(&self) -> &RedisServer {
        if self.current_master().port() == self.master.port() {
            &self.replica
        } else {
            &self.master
        }
    }

    /// An unplanned failover: kills the current master (SIGKILL, its data
    /// gone), runs `after_kill` (resume a replica paused beforehand, say),
    /// waits until the sentinels promoted the replica, restarts the old
    /// master empty as the new one's replica and waits until it is in sync
    /// and every sentinel knows it.
    /// Returns the new master's port.
    pub fn kill_master(&self, after_kill: impl FnOnce(&RedisServer)) -> Result<u16> {
        let old = self.current_master();
        let new = self.current_replica();
        old.kill();
        after_kill(new);
        let promoted = wait_until(SETTLE_TIMEOUT, || {
            new.info_field("replication", "role").as_deref() == Some("master")
                && self
                    .sentinels
                    .iter()
                    .all(|s| self.master_port_seen_by(s) == Some(new.port()))
        });
        if !promoted {
            return Err(ServerError::Settle(format!(
                "replica on port {} was not promoted within {SETTLE_TIMEOUT:?}",
                new.port()
            )));
        }
        old.restart()?;
        // What the sentinels would tell the restarted server after a few
        // seconds of it claiming to be a master, said at once.
        let port = new.port().to_string();
        let reply = old.text(&["REPLICAOF", "127.0.0.1", &port])?;
        if reply.starts_with('-') {
            return Err(ServerError::Settle(format!("REPLICAOF: {reply}")));
        }
        self.wait_settled(new.port())?;
        Ok(new.port())
    }

    /// The data servers: the one started as master and the one started as
    /// replica (roles swap on failover).
    pub fn data_servers(&self) -> [&RedisServer; 2] {
        [&self.master, &self.replica]
    }

    /// Forces a failover (`SENTINEL FAILOVER`) and waits until every sentinel
    /// names the former replica as master and it replicates back in sync.
    /// Returns the new master's port.
    pub fn failover(&self) -> Result<u16> {
        let old = self.current_master().port();
        let new = if old == self.master.port() {
            self.replica.port()
        } else {
            self.master.port()
        };
        let reply = self.sentinels[0].text(&["SENTINEL", "FAILOVER", Self::MASTER_NAME])?;
        if reply.starts_with('-') {
            return Err(ServerError::Settle(format!("SENTINEL FAILOVER: {reply}")));
        }
        self.wait_settled(new)?;
        Ok(new)
    }
}
