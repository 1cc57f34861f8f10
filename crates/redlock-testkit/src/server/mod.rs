//! Real `redis-server` processes for tests: a single server ([`single`]),
//! a cluster ([`cluster`]) and a sentinel deployment ([`sentinel`]), each on
//! free loopback ports, stopped on drop, or servers started elsewhere
//! ([`external`]).
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
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub mod binaries;
pub mod cluster;
pub mod external;
mod reply;
pub mod sentinel;
pub mod single;

pub use cluster::RedisCluster;
pub use external::{test_nodes, TestNodes};
pub use reply::{raw_command, Reply};
pub use sentinel::Sentinel;
pub use single::{RedisServer, ServerOptions};

pub(crate) use crate::wait::eventually_blocking as wait_until;
pub(crate) use single::parse_info;

/// How long a server may take to answer PING after it was spawned.
pub(crate) const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a cluster or sentinel deployment may take to settle.
pub(crate) const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How many ports are tried before giving up.
pub(crate) const PORT_ATTEMPTS: usize = 8;

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

impl ServerError {
    /// Maps the error of running `program` (spawn, output) to
    /// [`ServerError::MissingBinary`].
    pub(crate) fn missing(program: &Path) -> impl FnOnce(std::io::Error) -> ServerError + '_ {
        move |e| ServerError::MissingBinary {
            binary: program.display().to_string(),
            detail: e.to_string(),
        }
    }
}

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
pub(crate) fn free_port() -> Result<u16> {
    for _ in 0..64 {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        if port < 55_000 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return Ok(port);
        }
    }
    Err(ServerError::Settle("no free loopback port found".into()))
}

#[cfg(test)]
mod tests {
    use super::single::Mode;
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

    /// A one-shot server on a free port that answers the first request
    /// with `bytes`, then closes.
    fn answering(bytes: &'static [u8]) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            use std::io::{Read, Write};
            if let Ok((mut s, _)) = listener.accept() {
                let mut buf = [0u8; 512];
                let _ = s.read(&mut buf);
                let _ = s.write_all(bytes);
            }
        });
        port
    }

    #[test]
    fn replies_are_decoded() {
        let port = answering(b"*3\r\n$3\r\nabc\r\n:5\r\n-ERR wrong\r\n");
        let r = raw_command(port, None, &["X"], Duration::from_secs(5)).unwrap();
        assert_eq!(
            r,
            Reply::Array(Some(vec![
                Reply::Bulk(Some("abc".into())),
                Reply::Int(5),
                Reply::Error("ERR wrong".into())
            ]))
        );
        let truncated = answering(b"$3\r\nab");
        let err = raw_command(truncated, None, &["X"], Duration::from_secs(5)).unwrap_err();
        assert_ne!(err.kind(), std::io::ErrorKind::InvalidData, "{err}");
    }

    #[test]
    fn a_reply_starting_with_crlf_is_an_error_not_a_panic() {
        let port = answering(b"\r\n+OK\r\n");
        let err = raw_command(port, None, &["PING"], Duration::from_secs(5)).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData, "{err}");
        assert!(err.to_string().contains("unparsable reply"), "{err}");
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
