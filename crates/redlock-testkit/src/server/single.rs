//! One server process: [`RedisServer`].

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{
    free_port, raw_command, scratch_dir, server_binary, wait_until, Reply, Result, ServerError,
    PORT_ATTEMPTS, START_TIMEOUT,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    Server,
    Sentinel,
}

#[derive(Debug)]
pub(super) struct Process {
    pub(super) child: Option<Child>,
    pub(super) paused: bool,
}

/// One `redis-server` process on a free loopback port, without persistence.
/// Killed when dropped, also when the test panics.
pub struct RedisServer {
    pub(super) binary: PathBuf,
    pub(super) port: u16,
    pub(super) dir: PathBuf,
    pub(super) extra: Vec<String>,
    pub(super) mode: Mode,
    pub(super) process: Mutex<Process>,
    pub(super) password: Option<String>,
}

impl fmt::Debug for RedisServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisServer")
            .field("port", &self.port)
            .field("mode", &self.mode)
            .field("dir", &self.dir)
            .finish()
    }
}

/// Options for [`RedisServer::start_with`].
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    /// Extra command-line arguments, e.g. `["--cluster-enabled", "yes"]`.
    pub args: Vec<String>,
    /// `requirepass` for the default user.
    pub password: Option<String>,
}

impl ServerOptions {
    /// A replica of the master on `master_port` (`--replicaof 127.0.0.1
    /// <port>`), without a password.
    pub fn replica_of(master_port: u16) -> Self {
        ServerOptions {
            args: vec![
                "--replicaof".into(),
                "127.0.0.1".into(),
                master_port.to_string(),
            ],
            password: None,
        }
    }
}

impl RedisServer {
    /// Starts a plain server on a free loopback port and waits until it
    /// answers PING.
    pub fn start() -> Result<Self> {
        Self::start_with(ServerOptions::default())
    }

    /// Starts a server with extra arguments.
    pub fn start_with(options: ServerOptions) -> Result<Self> {
        let mut extra = options.args;
        if let Some(p) = &options.password {
            extra.push("--requirepass".into());
            extra.push(p.clone());
        }
        Self::spawn_new(server_binary(), extra, Mode::Server, options.password)
    }

    pub(super) fn spawn_new(
        binary: PathBuf,
        extra: Vec<String>,
        mode: Mode,
        password: Option<String>,
    ) -> Result<Self> {
        let dir = scratch_dir(match mode {
            Mode::Server => "server",
            Mode::Sentinel => "sentinel",
        })?;
        Self::spawn_on_free_port(dir, |dir, port| {
            Ok(RedisServer {
                binary: binary.clone(),
                port,
                dir: dir.to_owned(),
                extra: extra.clone(),
                mode,
                process: Mutex::new(Process {
                    child: None,
                    paused: false,
                }),
                password: password.clone(),
            })
        })
    }

    /// Tries up to `PORT_ATTEMPTS` free ports: `make` prepares the server
    /// for one (in `dir`, shared by the tries), which is then started.
    /// `dir` is removed when every try failed.
    pub(super) fn spawn_on_free_port(
        dir: PathBuf,
        mut make: impl FnMut(&Path, u16) -> Result<RedisServer>,
    ) -> Result<Self> {
        let mut last = None;
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port()?;
            let server = make(&dir, port)?;
            match server.spawn() {
                Ok(()) => return Ok(server),
                Err(e @ ServerError::MissingBinary { .. }) => return Err(e),
                Err(e) => {
                    // Dropping `server` kills the process but must keep `dir`
                    // for the next try; it is removed only on success's drop.
                    server.kill_process();
                    std::mem::forget(server);
                    last = Some(e);
                }
            }
        }
        let _ = fs::remove_dir_all(&dir);
        Err(last.unwrap_or_else(|| ServerError::Settle("could not start a server".into())))
    }

    pub(super) fn spawn(&self) -> Result<()> {
        let log = self.dir.join(format!("redis-{}.log", self.port));
        let log_file = fs::File::create(&log)?;
        let log_err = log_file.try_clone()?;
        let mut cmd = Command::new(&self.binary);
        if self.mode == Mode::Sentinel {
            cmd.arg(self.dir.join("sentinel.conf")).arg("--sentinel");
        }
        cmd.args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--daemonize", "no"])
            .args(["--logfile", ""])
            .arg("--dir")
            .arg(&self.dir);
        cmd.args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log_file))
            .stderr(Stdio::from(log_err));
        let child = cmd.spawn().map_err(ServerError::missing(&self.binary))?;
        {
            let mut p = self.lock();
            p.child = Some(child);
            p.paused = false;
        }
        let ready = wait_until(START_TIMEOUT, || {
            if self.exited() {
                return true;
            }
            self.ping_ok()
        });
        if !ready || self.exited() {
            let tail = fs::read_to_string(&log).unwrap_or_default();
            let tail: String = tail
                .lines()
                .rev()
                .take(5)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join(" | ");
            return Err(ServerError::Start {
                port: self.port,
                detail: if ready {
                    format!("process exited: {tail}")
                } else {
                    format!("no PONG within {START_TIMEOUT:?}: {tail}")
                },
            });
        }
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Process> {
        self.process.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn exited(&self) -> bool {
        let mut p = self.lock();
        match p.child.as_mut() {
            Some(c) => !matches!(c.try_wait(), Ok(None)),
            None => true,
        }
    }

    fn ping_ok(&self) -> bool {
        raw_command(
            self.port,
            self.password.as_deref(),
            &["PING"],
            Duration::from_millis(500),
        )
        .map(|r| r == Reply::Status("PONG".into()))
        .unwrap_or(false)
    }

    /// The port the server listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>` (with the password when one was set).
    pub fn url(&self) -> String {
        match &self.password {
            Some(p) => format!("redis://:{p}@127.0.0.1:{}", self.port),
            None => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The scratch directory of this server (config, log).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.lock().child.as_ref().map(|c| c.id())
    }

    fn signal(&self, sig: libc::c_int) -> Result<()> {
        let pid = self.pid().ok_or_else(|| {
            ServerError::Settle(format!("server on {} is not running", self.port))
        })?;
        let pid = libc::pid_t::try_from(pid)
            .map_err(|_| ServerError::Settle(format!("pid {pid} out of range")))?;
        // SAFETY: sending a signal to our own child process.
        let rc = unsafe { libc::kill(pid, sig) };
        if rc != 0 {
            return Err(ServerError::Io(std::io::Error::last_os_error()));
        }
        Ok(())
    }

    /// Stops the process with SIGSTOP: connections stay open, nothing is
    /// answered until [`resume`](Self::resume).
    pub fn pause(&self) -> Result<()> {
        self.signal(libc::SIGSTOP)?;
        self.lock().paused = true;
        Ok(())
    }

    /// Continues a paused process (SIGCONT).
    pub fn resume(&self) -> Result<()> {
        self.signal(libc::SIGCONT)?;
        self.lock().paused = false;
        Ok(())
    }

    /// Whether the server is paused.
    pub fn is_paused(&self) -> bool {
        self.lock().paused
    }

    /// Whether the process is running (possibly paused).
    pub fn is_running(&self) -> bool {
        !self.exited()
    }

    pub(super) fn kill_process(&self) {
        let mut p = self.lock();
        if let Some(mut child) = p.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        p.paused = false;
    }

    /// Kills the process (SIGKILL) and waits for it to exit. Its data is
    /// gone; [`restart`](Self::restart) brings up an empty server on the same
    /// port.
    pub fn kill(&self) {
        self.kill_process();
    }

    /// Kills the process if it runs, then starts it again on the same port
    /// and waits until it answers.
    pub fn restart(&self) -> Result<()> {
        self.kill_process();
        // The port may linger briefly; retry the spawn within the timeout.
        let end = Instant::now() + START_TIMEOUT;
        loop {
            match self.spawn() {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() >= end => return Err(e),
                Err(ServerError::MissingBinary { binary, detail }) => {
                    return Err(ServerError::MissingBinary { binary, detail })
                }
                Err(_) => {
                    self.kill_process();
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
    }

    /// Kills the process and starts `binary` in its place, on the same port
    /// with the same arguments: another server version behind the same
    /// address (a failover to an older replica, a rollback). Waits until it
    /// answers.
    pub fn restart_as(&mut self, binary: impl Into<PathBuf>) -> Result<()> {
        self.kill_process();
        self.binary = binary.into();
        self.restart()
    }

    /// Runs one command over a fresh connection (authenticated when the
    /// server has a password) and returns the decoded reply.
    pub fn command(&self, args: &[&str]) -> Result<Reply> {
        Ok(raw_command(
            self.port,
            self.password.as_deref(),
            args,
            Duration::from_secs(5),
        )?)
    }

    /// Like [`command`](Self::command), the reply as text (see [`Reply::text`]).
    pub fn text(&self, args: &[&str]) -> Result<String> {
        Ok(self.command(args)?.text())
    }

    /// `INFO <section>` as `field -> value` pairs.
    pub fn info(&self, section: &str) -> Result<Vec<(String, String)>> {
        let text = self.text(&["INFO", section])?;
        Ok(parse_info(&text))
    }

    /// One field of `INFO <section>`.
    pub fn info_field(&self, section: &str, field: &str) -> Option<String> {
        self.info(section)
            .ok()?
            .into_iter()
            .find(|(k, _)| k == field)
            .map(|(_, v)| v)
    }

    /// Calls of `command` (lower case, e.g. `"evalsha"`) so far, from `INFO
    /// commandstats` (those from scripts included; 0 when it never ran or
    /// the server did not answer). `CONFIG RESETSTAT` sets it back to 0.
    pub fn command_calls(&self, command: &str) -> u64 {
        self.info_field("commandstats", &format!("cmdstat_{command}"))
            .and_then(|v| {
                v.split(',')
                    .find_map(|kv| kv.strip_prefix("calls="))
                    .and_then(|n| n.parse().ok())
            })
            .unwrap_or(0)
    }

    /// Subscribers of `channel` (`PUBSUB NUMSUB`); -1 when the server did
    /// not answer.
    pub fn numsub(&self, channel: &str) -> i64 {
        self.pubsub_count("NUMSUB", channel)
    }

    /// Sharded subscribers of `channel` (`PUBSUB SHARDNUMSUB`, Redis 7 and
    /// Valkey); -1 when the server did not answer or has no sharded pub/sub.
    pub fn shard_numsub(&self, channel: &str) -> i64 {
        self.pubsub_count("SHARDNUMSUB", channel)
    }

    fn pubsub_count(&self, subcommand: &str, channel: &str) -> i64 {
        match self.command(&["PUBSUB", subcommand, channel]) {
            Ok(Reply::Array(Some(items))) => match items.get(1) {
                Some(Reply::Int(n)) => *n,
                _ => -1,
            },
            _ => -1,
        }
    }
}

pub(crate) fn parse_info(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            Some((k.trim().to_string(), v.trim().to_string()))
        })
        .collect()
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill_process();
        let _ = fs::remove_dir_all(&self.dir);
    }
}
