//! Real `redis-server` processes for tests: a single server, a cluster and a
//! sentinel deployment, each on free loopback ports, stopped on drop.
//!
//! The server binary comes from the `REDLOCK_SERVER_BIN` environment
//! variable (any Redis or Valkey `*-server`), else `redis-server` on the
//! `PATH`; sentinels run `REDLOCK_SENTINEL_BIN` when set, else the server
//! binary with `--sentinel`. `redis-cli` (used to create clusters) comes from
//! `REDLOCK_CLI_BIN`, a `redis-cli` or `valkey-cli` next to the server
//! binary, or the `PATH`. [`server_version`] tells which server that is, so
//! a test can skip, with a printed reason, what an older server lacks.
//! Nothing is persisted: a restarted server comes back empty.
//!
//! ```no_run
//! use redlock_testkit::server::RedisServer;
//!
//! let server = RedisServer::start()?;
//! println!("test against {}", server.url());
//! server.pause()?;   // SIGSTOP: the server stops answering
//! server.resume()?;  // SIGCONT
//! # Ok::<(), redlock_testkit::server::ServerError>(())
//! ```

use std::fmt;
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a server may take to answer PING after it was spawned.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a cluster or sentinel deployment may take to settle.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How many ports are tried before giving up.
const PORT_ATTEMPTS: usize = 8;

/// Why a test server could not be started or driven.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The `redis-server` (or `redis-cli`) binary was not found.
    #[error(
        "`{binary}` not found ({detail}); install it (Debian/Ubuntu: `sudo apt-get install \
         redis-server`, macOS: `brew install redis`) or set REDLOCK_SERVER_BIN to its path, or set \
         REDLOCK_TEST_NODES=redis://host:port,... to use servers started elsewhere"
    )]
    MissingBinary {
        /// The binary looked for.
        binary: String,
        /// What went wrong.
        detail: String,
    },
    /// The server did not come up.
    #[error("redis-server on port {port} did not start: {detail}")]
    Start {
        /// The port it was given.
        port: u16,
        /// What went wrong, with the tail of its log.
        detail: String,
    },
    /// A deployment (cluster, sentinel) did not reach the expected state.
    #[error("{0}")]
    Settle(String),
    /// An I/O error while driving a process.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

/// The result type of this module.
pub type Result<T, E = ServerError> = std::result::Result<T, E>;

static NEXT_DIR: AtomicU64 = AtomicU64::new(0);

pub(crate) fn scratch_dir(tag: &str) -> Result<PathBuf> {
    let n = NEXT_DIR.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!(
        "redlock-testkit-{}-{}-{tag}-{n}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// The environment variable naming the server binary.
pub const SERVER_BIN_ENV: &str = "REDLOCK_SERVER_BIN";
/// The environment variable naming the sentinel binary.
pub const SENTINEL_BIN_ENV: &str = "REDLOCK_SENTINEL_BIN";
/// The environment variable naming the `redis-cli` binary.
pub const CLI_BIN_ENV: &str = "REDLOCK_CLI_BIN";

fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// The server binary the helpers start: `$REDLOCK_SERVER_BIN`, else
/// `$REDIS_SERVER` (older name), else `redis-server` on the `PATH`.
pub fn server_binary() -> PathBuf {
    env_path(SERVER_BIN_ENV)
        .or_else(|| env_path("REDIS_SERVER"))
        .unwrap_or_else(|| PathBuf::from("redis-server"))
}

/// The binary sentinels run: `$REDLOCK_SENTINEL_BIN` (e.g. `redis-sentinel`
/// or `valkey-sentinel`), else the [server binary](server_binary) with
/// `--sentinel`.
pub fn sentinel_binary() -> PathBuf {
    env_path(SENTINEL_BIN_ENV).unwrap_or_else(server_binary)
}

/// The `redis-cli` used to create clusters: `$REDLOCK_CLI_BIN` (or
/// `$REDIS_CLI`), else a `redis-cli` or `valkey-cli` next to the server
/// binary, else `redis-cli` on the `PATH` (it drives Valkey clusters too).
pub fn cli_binary() -> PathBuf {
    if let Some(p) = env_path(CLI_BIN_ENV).or_else(|| env_path("REDIS_CLI")) {
        return p;
    }
    let server = server_binary();
    if server.components().count() > 1 {
        for name in ["redis-cli", "valkey-cli"] {
            let sibling = server.with_file_name(name);
            if sibling.exists() {
                return sibling;
            }
        }
    }
    PathBuf::from("redis-cli")
}

/// Which server the helpers start, from `<server binary> --version`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerVersion {
    /// `"Redis"` or `"Valkey"` (the first word of the version line).
    pub product: String,
    /// Major version, e.g. 7 in 7.0.15.
    pub major: u32,
    /// Minor version.
    pub minor: u32,
    /// Patch version.
    pub patch: u32,
}

impl ServerVersion {
    /// Parses a `--version` line such as
    /// `Redis server v=7.0.15 sha=00000000:0 malloc=jemalloc-5.3.0 bits=64`.
    pub fn parse(line: &str) -> Option<Self> {
        let product = line.split_whitespace().next()?.to_string();
        let v = line.split_whitespace().find_map(|w| w.strip_prefix("v="))?;
        let mut parts = v.split('.').map(|p| p.parse::<u32>());
        let major = parts.next()?.ok()?;
        let minor = parts.next().unwrap_or(Ok(0)).ok()?;
        let patch = parts.next().unwrap_or(Ok(0)).ok()?;
        Some(ServerVersion {
            product,
            major,
            minor,
            patch,
        })
    }

    /// Whether this is Valkey.
    pub fn is_valkey(&self) -> bool {
        self.product.eq_ignore_ascii_case("valkey")
    }

    /// Whether the version is at least `major.minor`.
    pub fn at_least(&self, major: u32, minor: u32) -> bool {
        (self.major, self.minor) >= (major, minor)
    }
}

impl fmt::Display for ServerVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}.{}.{}",
            self.product, self.major, self.minor, self.patch
        )
    }
}

/// The version of the [server binary](server_binary), asked once per
/// process (`--version`).
pub fn server_version() -> Result<ServerVersion> {
    static VERSION: std::sync::OnceLock<std::result::Result<ServerVersion, String>> =
        std::sync::OnceLock::new();
    let found = VERSION.get_or_init(|| {
        let binary = server_binary();
        let out = Command::new(&binary)
            .arg("--version")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("{}: {e}", binary.display()))?;
        let text = String::from_utf8_lossy(&out.stdout);
        ServerVersion::parse(&text).ok_or_else(|| {
            format!(
                "{}: unrecognised `--version` output {:?}",
                binary.display(),
                text.trim()
            )
        })
    });
    match found {
        Ok(v) => Ok(v.clone()),
        Err(detail) => Err(ServerError::MissingBinary {
            binary: server_binary().display().to_string(),
            detail: detail.clone(),
        }),
    }
}

/// Whether the server under test has a feature, by version: `true` when
/// `has(version)` holds; otherwise prints why the calling test skips
/// `what` and returns `false` (never a silent skip). An unknown version
/// counts as having it, so the test runs and shows what fails.
///
/// ```no_run
/// use redlock_testkit::server::server_supports;
///
/// if !server_supports("CLUSTER ADDSLOTSRANGE", |v| v.is_valkey() || v.at_least(7, 0)) {
///     return;
/// }
/// ```
pub fn server_supports(what: &str, has: impl FnOnce(&ServerVersion) -> bool) -> bool {
    match server_version() {
        Ok(v) if has(&v) => true,
        Ok(v) => {
            eprintln!("skipped: {what} is not available on {v}");
            false
        }
        Err(_) => true,
    }
}

/// A free loopback port (bound, read and released; the caller retries if
/// another process takes it in between). Ports above 55000 are avoided so
/// that the cluster bus port (`port + 10000`) stays valid.
fn free_port() -> Result<u16> {
    for _ in 0..64 {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        if port < 55_000 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return Ok(port);
        }
    }
    Err(ServerError::Settle("no free loopback port found".into()))
}

/// A decoded RESP2 reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK` and friends.
    Status(String),
    /// `-ERR ...`.
    Error(String),
    /// `:1`.
    Int(i64),
    /// `$..`; `None` for nil.
    Bulk(Option<String>),
    /// `*..`; `None` for nil.
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// The reply as text: status, bulk string or integer; errors keep their
    /// leading `-`; nil is empty; arrays are their elements joined by `\n`.
    pub fn text(&self) -> String {
        match self {
            Reply::Status(s) => s.clone(),
            Reply::Error(e) => format!("-{e}"),
            Reply::Int(i) => i.to_string(),
            Reply::Bulk(b) => b.clone().unwrap_or_default(),
            Reply::Array(a) => a
                .iter()
                .flatten()
                .map(|r| r.text())
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }

    /// The elements of an array reply (empty otherwise).
    pub fn items(&self) -> Vec<Reply> {
        match self {
            Reply::Array(Some(v)) => v.clone(),
            _ => Vec::new(),
        }
    }
}

/// Parses one reply from `buf`; `None` when incomplete.
fn parse_reply(buf: &[u8]) -> Option<(Reply, usize)> {
    let line_end = buf.windows(2).position(|w| w == b"\r\n")?;
    let line = String::from_utf8_lossy(&buf[1..line_end]).into_owned();
    let rest = line_end + 2;
    match buf.first()? {
        b'+' => Some((Reply::Status(line), rest)),
        b'-' => Some((Reply::Error(line), rest)),
        b':' => Some((Reply::Int(line.parse().ok()?), rest)),
        b'$' => {
            let len: i64 = line.parse().ok()?;
            if len < 0 {
                return Some((Reply::Bulk(None), rest));
            }
            let len = len as usize;
            if buf.len() < rest + len + 2 {
                return None;
            }
            let s = String::from_utf8_lossy(&buf[rest..rest + len]).into_owned();
            Some((Reply::Bulk(Some(s)), rest + len + 2))
        }
        b'*' => {
            let n: i64 = line.parse().ok()?;
            if n < 0 {
                return Some((Reply::Array(None), rest));
            }
            let mut at = rest;
            let mut items = Vec::with_capacity(n as usize);
            for _ in 0..n {
                let (r, used) = parse_reply(&buf[at..])?;
                items.push(r);
                at += used;
            }
            Some((Reply::Array(Some(items)), at))
        }
        _ => Some((Reply::Error(format!("unparsable reply: {line}")), rest)),
    }
}

fn encode(args: &[&str]) -> Vec<u8> {
    let mut req = format!("*{}\r\n", args.len());
    for a in args {
        req.push_str(&format!("${}\r\n{}\r\n", a.len(), a));
    }
    req.into_bytes()
}

/// Sends one command over a fresh connection (after `AUTH` when a password
/// is given) and returns the decoded reply. Bounded by `timeout`.
pub fn raw_command(
    port: u16,
    password: Option<&str>,
    args: &[&str],
    timeout: Duration,
) -> std::io::Result<Reply> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut req = Vec::new();
    let mut skip = 0;
    if let Some(p) = password {
        req.extend(encode(&["AUTH", p]));
        skip = 1;
    }
    req.extend(encode(args));
    stream.write_all(&req)?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let mut at = 0;
        let mut replies = Vec::new();
        while let Some((r, used)) = parse_reply(&buf[at..]) {
            replies.push(r);
            at += used;
        }
        if replies.len() > skip {
            return Ok(replies.swap_remove(skip));
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed before a reply",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

pub(crate) use crate::wait::eventually_blocking as wait_until;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Server,
    Sentinel,
}

#[derive(Debug)]
struct Process {
    child: Option<Child>,
    paused: bool,
}

/// One `redis-server` process on a free loopback port, without persistence.
/// Killed when dropped, also when the test panics.
pub struct RedisServer {
    binary: PathBuf,
    port: u16,
    dir: PathBuf,
    extra: Vec<String>,
    mode: Mode,
    process: Mutex<Process>,
    password: Option<String>,
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

    fn spawn_new(
        binary: PathBuf,
        extra: Vec<String>,
        mode: Mode,
        password: Option<String>,
    ) -> Result<Self> {
        let dir = scratch_dir(match mode {
            Mode::Server => "server",
            Mode::Sentinel => "sentinel",
        })?;
        let mut last = None;
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port()?;
            let server = RedisServer {
                binary: binary.clone(),
                port,
                dir: dir.clone(),
                extra: extra.clone(),
                mode,
                process: Mutex::new(Process {
                    child: None,
                    paused: false,
                }),
                password: password.clone(),
            };
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
        Err(last.unwrap_or_else(|| ServerError::Settle("could not start redis-server".into())))
    }

    fn spawn(&self) -> Result<()> {
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
        let child = cmd.spawn().map_err(|e| ServerError::MissingBinary {
            binary: self.binary.display().to_string(),
            detail: e.to_string(),
        })?;
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

    fn kill_process(&self) {
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
        if masters < 3 {
            return Err(ServerError::Settle(
                "a Redis Cluster needs at least 3 masters".into(),
            ));
        }
        let total = masters * (1 + replicas);
        let mut servers = Vec::with_capacity(total);
        for _ in 0..total {
            servers.push(RedisServer::start_with(ServerOptions {
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
            })?);
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
            .map_err(|e| ServerError::MissingBinary {
                binary: cli_binary().display().to_string(),
                detail: e.to_string(),
            })?;
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

    /// Starts master, replica and three sentinels, and waits until the
    /// replica is in sync and every sentinel knows the replica and the other
    /// sentinels.
    pub fn start() -> Result<Self> {
        let master = RedisServer::start()?;
        let replica = RedisServer::start_with(ServerOptions {
            args: vec![
                "--replicaof".into(),
                "127.0.0.1".into(),
                master.port().to_string(),
            ],
            password: None,
        })?;
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
        let dir = scratch_dir("sentinel")?;
        let mut last = None;
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port()?;
            let conf = format!(
                "port {port}\nbind 127.0.0.1\ndaemonize no\n\
                 sentinel monitor {name} 127.0.0.1 {master_port} 2\n\
                 sentinel down-after-milliseconds {name} 1000\n\
                 sentinel failover-timeout {name} 5000\n\
                 sentinel parallel-syncs {name} 1\n",
                name = Self::MASTER_NAME
            );
            fs::write(dir.join("sentinel.conf"), conf)?;
            let server = RedisServer {
                binary: sentinel_binary(),
                port,
                dir: dir.clone(),
                extra: Vec::new(),
                mode: Mode::Sentinel,
                process: Mutex::new(Process {
                    child: None,
                    paused: false,
                }),
                password: None,
            };
            match server.spawn() {
                Ok(()) => return Ok(server),
                Err(e @ ServerError::MissingBinary { .. }) => return Err(e),
                Err(e) => {
                    server.kill_process();
                    std::mem::forget(server);
                    last = Some(e);
                }
            }
        }
        let _ = fs::remove_dir_all(&dir);
        Err(last.unwrap_or_else(|| ServerError::Settle("could not start sentinel".into())))
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
            Err(ServerError::Settle(format!(
                "sentinel deployment did not settle on master port {master_port} within \
                 {SETTLE_TIMEOUT:?}"
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

/// Nodes for a suite: servers started here, or the URLs of
/// `REDLOCK_TEST_NODES` when set.
#[derive(Debug)]
pub struct TestNodes {
    urls: Vec<String>,
    servers: Vec<RedisServer>,
}

impl TestNodes {
    /// The URLs, one per node.
    pub fn urls(&self) -> &[String] {
        &self.urls
    }

    /// The servers started here (empty when `REDLOCK_TEST_NODES` was used).
    pub fn servers(&self) -> &[RedisServer] {
        &self.servers
    }

    /// Whether these are servers started elsewhere.
    pub fn external(&self) -> bool {
        self.servers.is_empty()
    }
}

/// `n` nodes for a test: when `REDLOCK_TEST_NODES=redis://a,redis://b,...` is
/// set, its first `n` URLs (an error when it lists fewer); otherwise `n`
/// fresh servers started here.
pub fn test_nodes(n: usize) -> Result<TestNodes> {
    if let Ok(list) = std::env::var("REDLOCK_TEST_NODES") {
        let urls: Vec<String> = list
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        if !urls.is_empty() {
            if urls.len() < n {
                return Err(ServerError::Settle(format!(
                    "REDLOCK_TEST_NODES lists {} nodes, the test needs {n}",
                    urls.len()
                )));
            }
            return Ok(TestNodes {
                urls: urls.into_iter().take(n).collect(),
                servers: Vec::new(),
            });
        }
    }
    let mut servers = Vec::with_capacity(n);
    for _ in 0..n {
        servers.push(RedisServer::start()?);
    }
    Ok(TestNodes {
        urls: servers.iter().map(|s| s.url()).collect(),
        servers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_pause_resume_kill_restart() {
        let s = RedisServer::start().expect("redis-server");
        assert_eq!(s.text(&["PING"]).unwrap(), "PONG");
        assert_eq!(s.text(&["SET", "k", "v"]).unwrap(), "OK");
        s.pause().unwrap();
        assert!(s.is_paused());
        assert!(raw_command(s.port(), None, &["PING"], Duration::from_millis(200)).is_err());
        s.resume().unwrap();
        assert_eq!(s.text(&["PING"]).unwrap(), "PONG");
        assert_eq!(s.text(&["GET", "k"]).unwrap(), "v");
        s.kill();
        assert!(!s.is_running());
        assert!(s.command(&["PING"]).is_err());
        let port = s.port();
        s.restart().unwrap();
        assert_eq!(s.port(), port);
        assert_eq!(
            s.command(&["GET", "k"]).unwrap(),
            Reply::Bulk(None),
            "no persistence"
        );
        let pid = s.pid().unwrap();
        drop(s);
        assert!(wait_until(Duration::from_secs(5), || {
            // SAFETY: probing (signal 0) a pid; no signal is delivered.
            unsafe { libc::kill(pid as libc::pid_t, 0) != 0 }
        }));
    }

    #[test]
    fn password_server() {
        let s = RedisServer::start_with(ServerOptions {
            password: Some("s3cret".into()),
            ..ServerOptions::default()
        })
        .unwrap();
        assert_eq!(s.text(&["PING"]).unwrap(), "PONG");
        let bare = raw_command(s.port(), None, &["GET", "x"], Duration::from_secs(1)).unwrap();
        assert!(matches!(bare, Reply::Error(e) if e.starts_with("NOAUTH")));
        assert!(s.url().contains(":s3cret@"));
    }

    #[test]
    fn missing_binary_says_how_to_install() {
        let err = RedisServer::spawn_new(
            PathBuf::from("/nonexistent/redis-server"),
            Vec::new(),
            Mode::Server,
            None,
        )
        .unwrap_err();
        assert!(matches!(err, ServerError::MissingBinary { .. }));
        assert!(err.to_string().contains("apt-get install redis-server"));
    }

    #[test]
    fn version_lines_of_redis_and_valkey() {
        let r = ServerVersion::parse(
            "Redis server v=7.0.15 sha=00000000:0 malloc=jemalloc-5.3.0 bits=64 build=ae4d",
        )
        .unwrap();
        assert_eq!((r.major, r.minor, r.patch), (7, 0, 15));
        assert!(!r.is_valkey());
        assert!(r.at_least(6, 2) && r.at_least(7, 0) && !r.at_least(7, 2));
        let v = ServerVersion::parse("Valkey server v=9.1.2 sha=00000000:1 malloc=libc").unwrap();
        assert!(v.is_valkey());
        assert_eq!(v.to_string(), "Valkey 9.1.2");
        assert_eq!(ServerVersion::parse("no version here"), None);
        assert_eq!(ServerVersion::parse("Redis server v=x.1"), None);
    }

    #[test]
    fn the_running_server_reports_its_version() {
        let v = server_version().unwrap();
        let s = RedisServer::start().unwrap();
        let reported = s
            .info_field("server", "valkey_version")
            .or_else(|| s.info_field("server", "redis_version"))
            .unwrap();
        assert_eq!(reported, format!("{}.{}.{}", v.major, v.minor, v.patch));
    }

    #[test]
    fn reply_parser() {
        let (r, n) = parse_reply(b"*2\r\n$3\r\nabc\r\n:5\r\n").unwrap();
        assert_eq!(n, 17);
        assert_eq!(
            r,
            Reply::Array(Some(vec![Reply::Bulk(Some("abc".into())), Reply::Int(5)]))
        );
        assert!(parse_reply(b"$3\r\nab").is_none());
    }

    #[test]
    fn cluster_of_three_masters_and_three_replicas() {
        let c = RedisCluster::start(3, 1).unwrap();
        assert_eq!(c.servers().len(), 6);
        assert_eq!(c.master_servers().len(), 3);
        let info = c.servers()[0].text(&["CLUSTER", "INFO"]).unwrap();
        assert!(info.contains("cluster_state:ok"));
    }

    #[test]
    fn sentinel_fails_over() {
        let s = Sentinel::start().unwrap();
        let before = s.current_master().port();
        let after = s.failover().unwrap();
        assert_ne!(before, after);
        assert_eq!(s.current_master().port(), after);
        assert_eq!(
            s.current_master()
                .info_field("replication", "role")
                .as_deref(),
            Some("master")
        );
    }
}
