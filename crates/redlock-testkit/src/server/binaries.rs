//! Server binaries besides the [default one](super::server_binary), for
//! tests that need a particular server (say, Valkey 9 for a command only it
//! has) whatever `REDLOCK_SERVER_BIN` names.
//!
//! Candidates, in order: the default server binary, the servers unpacked
//! into the servers cache (`$REDLOCK_SERVERS_CACHE`, else
//! `$XDG_CACHE_HOME/redlock-servers`, else `~/.cache/redlock-servers`;
//! `.ci/run` fills it with Redis 6.2 and Valkey 9.1), and `redis-server` on
//! the `PATH`.
//!
//! ```no_run
//! use redlock_testkit::server::binaries::find_server;
//! use redlock_testkit::server::{RedisServer, ServerOptions};
//!
//! let Some((binary, version)) = find_server(|v| v.is_valkey() && v.at_least(9, 0)) else {
//!     eprintln!("skipped: no Valkey 9 binary found");
//!     return Ok(());
//! };
//! let server = RedisServer::start_binary(&binary, ServerOptions::default())?;
//! println!("{version} on {}", server.addr());
//! # Ok::<(), redlock_testkit::server::ServerError>(())
//! ```

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::single::Mode;
use super::{server_binary, RedisServer, Result, ServerError, ServerOptions, ServerVersion};

/// The environment variable naming the servers cache directory.
pub const SERVERS_CACHE_ENV: &str = "REDLOCK_SERVERS_CACHE";

/// The directory the CI script unpacks extra servers into.
pub fn servers_cache() -> Option<PathBuf> {
    let var = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    var(SERVERS_CACHE_ENV)
        .or_else(|| var("XDG_CACHE_HOME").map(|d| d.join("redlock-servers")))
        .or_else(|| var("HOME").map(|d| d.join(".cache").join("redlock-servers")))
}

/// The version of any server binary, from `<binary> --version`.
pub fn version_of(binary: &Path) -> Result<ServerVersion> {
    let out = Command::new(binary)
        .arg("--version")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map_err(ServerError::missing(binary))?;
    let text = String::from_utf8_lossy(&out.stdout);
    ServerVersion::parse(&text).ok_or_else(|| ServerError::MissingBinary {
        binary: binary.display().to_string(),
        detail: format!("unrecognised `--version` output {:?}", text.trim()),
    })
}

/// Every server binary found (see the [module docs](self)), each once, with
/// its version; binaries that do not run are left out.
pub fn known_servers() -> Vec<(PathBuf, ServerVersion)> {
    let mut candidates = vec![server_binary()];
    if let Some(cache) = servers_cache() {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(&cache)
            .map(|it| it.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        dirs.sort();
        for dir in dirs {
            for name in ["valkey-server", "redis-server"] {
                let path = dir.join(name);
                if path.is_file() {
                    candidates.push(path);
                }
            }
        }
    }
    candidates.push(PathBuf::from("redis-server"));
    let mut found: Vec<(PathBuf, ServerVersion)> = Vec::new();
    for binary in candidates {
        let canonical = std::fs::canonicalize(&binary).unwrap_or_else(|_| binary.clone());
        if found
            .iter()
            .any(|(b, _)| std::fs::canonicalize(b).unwrap_or_else(|_| b.clone()) == canonical)
        {
            continue;
        }
        if let Ok(version) = version_of(&binary) {
            found.push((binary, version));
        }
    }
    found
}

/// The first [known server](known_servers) whose version satisfies
/// `wanted`, or `None` (the caller prints why it skips).
pub fn find_server(wanted: impl Fn(&ServerVersion) -> bool) -> Option<(PathBuf, ServerVersion)> {
    known_servers().into_iter().find(|(_, v)| wanted(v))
}

impl RedisServer {
    /// Like [`start_with`](Self::start_with), with a given server binary
    /// instead of the [default one](super::server_binary).
    pub fn start_binary(binary: impl AsRef<Path>, options: ServerOptions) -> Result<Self> {
        let mut extra = options.args;
        if let Some(p) = &options.password {
            extra.push("--requirepass".into());
            extra.push(p.clone());
        }
        Self::spawn_new(
            binary.as_ref().to_path_buf(),
            extra,
            Mode::Server,
            options.password,
        )
    }
}
