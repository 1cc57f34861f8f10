//! Five throw-away `redis-server` processes on free loopback ports, with
//! pause (SIGSTOP) and resume (SIGCONT). Kept here rather than borrowed
//! from the testkit so that the benchmark builds on its own.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One server, killed and its directory removed on drop.
pub struct Server {
    child: Child,
    port: u16,
    dir: PathBuf,
}

/// The server binary: `$REDLOCK_SERVER_BIN`, else `$REDIS_SERVER`, else
/// `redis-server` on the `PATH`.
pub fn binary() -> String {
    std::env::var("REDLOCK_SERVER_BIN")
        .or_else(|_| std::env::var("REDIS_SERVER"))
        .unwrap_or_else(|_| "redis-server".into())
}

impl Server {
    /// Starts `redis-server` (or `$REDLOCK_SERVER_BIN`) without persistence and
    /// waits until it accepts connections.
    pub fn start() -> Result<Server, String> {
        Self::start_with(&[])
    }

    /// Like [`start`](Self::start), with extra server arguments.
    pub fn start_with(extra: &[&str]) -> Result<Server, String> {
        let binary = binary();
        let mut last = String::new();
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map_err(|e| e.to_string())?
                .port();
            let dir =
                std::env::temp_dir().join(format!("redlock-bench-{}-{port}", std::process::id()));
            std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
            let mut command = Command::new(&binary);
            command
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
                .args(extra)
                .arg("--dir")
                .arg(&dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            die_with_parent(&mut command);
            let child = command.spawn().map_err(|e| format!("{binary}: {e}"))?;
            let mut server = Server { child, port, dir };
            let until = Instant::now() + Duration::from_secs(5);
            while Instant::now() < until {
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Ok(server);
                }
                if let Ok(Some(status)) = server.child.try_wait() {
                    last = format!("redis-server exited: {status}");
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            if last.is_empty() {
                last = "redis-server did not come up".into();
            }
        }
        Err(last)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn signal(&self, sig: libc::c_int) -> Result<(), String> {
        let pid = libc::pid_t::try_from(self.child.id()).map_err(|e| e.to_string())?;
        // SAFETY: sending a signal to our own child process.
        if unsafe { libc::kill(pid, sig) } == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error().to_string())
        }
    }

    /// CPU time (user + system) the server process used so far.
    pub fn cpu(&self) -> Duration {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())) else {
            return Duration::ZERO;
        };
        // Fields after the command name (which is in parentheses).
        let Some(rest) = stat.rsplit_once(')').map(|x| x.1) else {
            return Duration::ZERO;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        // utime and stime are fields 14 and 15 of the whole line, 12 and 13 here.
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        Duration::from_micros((ticks(11) + ticks(12)) * 1_000_000 / hz)
    }

    pub fn pause(&self) -> Result<(), String> {
        self.signal(libc::SIGSTOP)
    }

    pub fn resume(&self) -> Result<(), String> {
        self.signal(libc::SIGCONT)
    }
}

/// A Redis Cluster of `masters` masters without replicas, joined with
/// `redis-cli --cluster create`; returns once every node reports
/// `cluster_state:ok`.
pub fn cluster(masters: usize) -> Result<Vec<Server>, String> {
    let servers: Vec<Server> = (0..masters)
        .map(|_| {
            Server::start_with(&[
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
            ])
        })
        .collect::<Result<_, _>>()?;
    let cli = std::env::var("REDLOCK_CLI_BIN").unwrap_or_else(|_| "redis-cli".into());
    let mut create = Command::new(&cli);
    create.args(["--cluster", "create"]);
    for s in &servers {
        create.arg(format!("127.0.0.1:{}", s.port));
    }
    let out = create
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{cli}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cli} --cluster create: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let ok = |s: &Server| -> bool {
        let Ok(client) = redis::Client::open(s.url()) else {
            return false;
        };
        let Ok(mut conn) = client.get_connection() else {
            return false;
        };
        redis::cmd("CLUSTER")
            .arg("INFO")
            .query::<String>(&mut conn)
            .is_ok_and(|info| info.contains("cluster_state:ok"))
    };
    let until = Instant::now() + Duration::from_secs(30);
    while Instant::now() < until {
        if servers.iter().all(ok) {
            return Ok(servers);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err("the cluster did not reach cluster_state:ok within 30 s".into())
}

/// Has the child killed (SIGKILL, which also ends a stopped process) when
/// this program dies without running its destructors (killed, aborted,
/// Ctrl-C), so that no server is left behind, stopped or not. Linux only;
/// the signal is tied to the spawning thread, which here is the main thread.
pub fn die_with_parent(command: &mut Command) {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        let parent = std::process::id();
        // SAFETY: prctl and getppid are async-signal-safe and touch no
        // memory of ours.
        unsafe {
            command.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The parent died before the prctl: do not start at all.
                if u32::try_from(libc::getppid()).ok() != Some(parent) {
                    return Err(std::io::Error::other("parent exited"));
                }
                Ok(())
            });
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = command;
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.signal(libc::SIGCONT);
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
