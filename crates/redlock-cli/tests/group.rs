//! The whole job is the lock holder: `redlock run` stops every process the
//! command started (its process group), and releases only after they have
//! all exited.

use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use redlock_testkit::server::RedisServer;
use redlock_testkit::wait::eventually_blocking as eventually;

/// A job whose shell forks a grandchild (`sleep 30`) and waits for it.
struct Job {
    dir: PathBuf,
    redlock: Child,
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("redlock-cli-group-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// Whether `pid` is a running process. A zombie (exited, not yet reaped by
/// whoever adopted it) counts as gone.
fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks for existence.
    if unsafe { libc::kill(pid, 0) } != 0 {
        return false;
    }
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name in parentheses.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_none_or(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => false,
    }
}

fn holders(servers: &[RedisServer], key: &str) -> usize {
    servers
        .iter()
        .filter(|s| s.text(&["EXISTS", key]).is_ok_and(|t| t == "1"))
        .count()
}

impl Job {
    /// Starts `redlock run` with `script`, in which `$D` is a scratch
    /// directory; waits until the script touched `$D/ready`.
    fn start(servers: &[RedisServer], name: &str, extra: &[&str], script: &str) -> Job {
        let dir = scratch(name);
        let nodes = servers
            .iter()
            .map(|s| s.url())
            .collect::<Vec<_>>()
            .join(",");
        let redlock = Command::new(env!("CARGO_BIN_EXE_redlock"))
            .env_remove("REDLOCK_NODES")
            .env("D", &dir)
            .args(["--nodes", &nodes, "run", "--resource", name])
            .args(extra)
            .args(["--", "sh", "-c", script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn redlock");
        let job = Job { dir, redlock };
        let ready = job.dir.join("ready");
        assert!(
            eventually(Duration::from_secs(10), || ready.exists()),
            "the command did not start"
        );
        job
    }

    /// The pid the script wrote to `$D/{name}`.
    fn pid(&self, name: &str) -> i32 {
        fs::read_to_string(self.dir.join(name))
            .expect("pid file")
            .trim()
            .parse()
            .expect("pid")
    }

    fn signal(&self, sig: libc::c_int) {
        let pid = i32::try_from(self.redlock.id()).expect("pid");
        // SAFETY: sends a signal to the redlock process this test started.
        assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
    }

    /// Waits for `redlock` to exit, with a deadline.
    fn exit(&mut self, limit: Duration) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(st) = self.redlock.try_wait().expect("try_wait") {
                return st;
            }
            if start.elapsed() > limit {
                let _ = self.redlock.kill();
                panic!("redlock did not exit within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        let _ = self.redlock.kill();
        let _ = self.redlock.wait();
        for f in ["sh", "grandchild"] {
            if let Ok(pid) = fs::read_to_string(self.dir.join(f)) {
                if let Ok(pid) = pid.trim().parse::<i32>() {
                    // SAFETY: cleanup of a process this test started.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// The shell forks a grandchild, records both pids, and waits.
const FORKS_AND_WAITS: &str =
    "sleep 30 & echo $! > \"$D/grandchild\"; echo $$ > \"$D/sh\"; touch \"$D/ready\"; wait";

fn servers(n: usize) -> Vec<RedisServer> {
    (0..n)
        .map(|_| RedisServer::start().expect("redis-server"))
        .collect()
}

/// After `redlock` exited: the shell and the grandchild are gone already
/// (the lock was released only after them) and the lock is free.
fn assert_group_gone_and_released(job: &Job, s: &[RedisServer], key: &str) {
    let (sh, grandchild) = (job.pid("sh"), job.pid("grandchild"));
    assert!(!alive(sh), "the command's shell outlived redlock");
    assert!(!alive(grandchild), "the grandchild outlived redlock");
    assert_eq!(holders(s, key), 0, "lock not released");
}

#[test]
fn sigterm_stops_the_whole_group_before_release() {
    let s = servers(3);
    let mut job = Job::start(&s, "g-term", &[], FORKS_AND_WAITS);
    assert!(alive(job.pid("grandchild")));
    assert!(holders(&s, "g-term") >= 2);
    job.signal(libc::SIGTERM);
    let st = job.exit(Duration::from_secs(15));
    assert_eq!(st.code(), Some(128 + libc::SIGTERM));
    assert_group_gone_and_released(&job, &s, "g-term");
}

#[test]
fn sigint_stops_the_whole_group_before_release() {
    // A background job of a non-interactive shell ignores SIGINT: the
    // grandchild survives the forwarded SIGINT, and redlock stops it once
    // the shell has exited.
    let s = servers(3);
    let mut job = Job::start(&s, "g-int", &["--grace", "5s"], FORKS_AND_WAITS);
    job.signal(libc::SIGINT);
    let st = job.exit(Duration::from_secs(15));
    assert_eq!(st.code(), Some(128 + libc::SIGINT));
    assert_group_gone_and_released(&job, &s, "g-int");
}

#[test]
fn a_lost_lock_stops_the_whole_group() {
    let s = servers(3);
    let mut job = Job::start(
        &s,
        "g-lost",
        &["--ttl", "1s", "--grace", "500ms"],
        FORKS_AND_WAITS,
    );
    // A majority stops answering: extensions fail, the lock is lost.
    s[0].pause().expect("pause");
    s[1].pause().expect("pause");
    let st = job.exit(Duration::from_secs(15));
    s[0].resume().expect("resume");
    s[1].resume().expect("resume");
    assert_eq!(st.code(), Some(70));
    let (sh, grandchild) = (job.pid("sh"), job.pid("grandchild"));
    assert!(!alive(sh), "the command's shell outlived redlock");
    assert!(!alive(grandchild), "the grandchild outlived redlock");
}

#[test]
fn a_grandchild_that_ignores_sigterm_is_killed_after_the_grace() {
    let s = servers(3);
    let script = "sh -c 'trap \"\" TERM; echo $$ > \"$D/grandchild\"; while true; do sleep 0.05; done' & \
                  echo $$ > \"$D/sh\"; while [ ! -s \"$D/grandchild\" ]; do sleep 0.01; done; touch \"$D/ready\"; wait";
    let mut job = Job::start(&s, "g-stubborn", &["--grace", "300ms"], script);
    job.signal(libc::SIGTERM);
    let st = job.exit(Duration::from_secs(15));
    assert_eq!(st.code(), Some(128 + libc::SIGTERM));
    assert_group_gone_and_released(&job, &s, "g-stubborn");
}

#[test]
fn processes_left_behind_by_the_command_are_stopped_before_release() {
    let s = servers(3);
    let script = "sleep 30 & echo $! > \"$D/grandchild\"; echo $$ > \"$D/sh\"; \
                  touch \"$D/ready\"; while [ ! -e \"$D/go\" ]; do sleep 0.01; done; exit 4";
    let mut job = Job::start(&s, "g-left", &["--grace", "5s"], script);
    fs::write(job.dir.join("go"), "").expect("go");
    let st = job.exit(Duration::from_secs(15));
    assert_eq!(st.code(), Some(4), "the command's own exit code");
    assert_group_gone_and_released(&job, &s, "g-left");
}

#[test]
fn sigkill_of_redlock_takes_the_whole_group_with_it() {
    let s = servers(3);
    let mut job = Job::start(&s, "g-kill", &[], FORKS_AND_WAITS);
    let (sh, grandchild) = (job.pid("sh"), job.pid("grandchild"));
    assert!(alive(sh) && alive(grandchild));
    job.signal(libc::SIGKILL);
    let st = job.exit(Duration::from_secs(5));
    assert_eq!(st.code(), None, "redlock was killed");
    assert!(
        eventually(Duration::from_secs(10), || !alive(sh) && !alive(grandchild)),
        "the job outlived a SIGKILLed redlock (sh alive: {}, grandchild alive: {})",
        alive(sh),
        alive(grandchild)
    );
}

/// Runs `redlock run --no-wait` on `name` with `script` once; its exit status.
fn run_no_wait(servers: &[RedisServer], name: &str, script: &str) -> ExitStatus {
    let nodes = servers
        .iter()
        .map(|s| s.url())
        .collect::<Vec<_>>()
        .join(",");
    let mut redlock = Command::new(env!("CARGO_BIN_EXE_redlock"))
        .env_remove("REDLOCK_NODES")
        .args(["--nodes", &nodes, "run", "--resource", name, "--no-wait"])
        .args(["--", "sh", "-c", script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn redlock");
    let start = Instant::now();
    loop {
        if let Some(st) = redlock.try_wait().expect("try_wait") {
            return st;
        }
        if start.elapsed() > Duration::from_secs(15) {
            let _ = redlock.kill();
            let _ = redlock.wait();
            panic!("redlock run --no-wait did not exit");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn sigkill_of_redlock_during_the_grace_takes_the_leftovers_with_it() {
    let s = servers(3);
    // The command exits at once and leaves behind a process that survives
    // SIGTERM (it records that it got it) and runs for ever.
    let script = r#"sh -c 'trap "touch \"$D/termed\"" TERM; echo $$ > "$D/grandchild"; while true; do sleep 0.05; done' &
        while [ ! -s "$D/grandchild" ]; do sleep 0.01; done; echo $$ > "$D/sh"; touch "$D/ready"; exit 0"#;
    let mut job = Job::start(
        &s,
        "g-kill-grace",
        &["--ttl", "1s", "--grace", "30s"],
        script,
    );
    let leftover = job.pid("grandchild");
    // The leftover got SIGTERM: redlock is in the grace period.
    let termed = job.dir.join("termed");
    assert!(
        eventually(Duration::from_secs(10), || termed.exists()),
        "the leftover never got SIGTERM"
    );
    assert!(alive(leftover));
    job.signal(libc::SIGKILL);
    let st = job.exit(Duration::from_secs(5));
    assert_eq!(st.code(), None, "redlock was killed");
    // Once the lock has run out (--ttl 1s), another run takes it; its
    // command fails (exit 9) if the leftover is still running.
    let check = format!(
        "if grep -qs '^State:[[:space:]]*[^ZX[:space:]]' /proc/{leftover}/status; then exit 9; fi; exit 0"
    );
    let start = Instant::now();
    loop {
        let second = run_no_wait(&s, "g-kill-grace", &check);
        match second.code() {
            Some(0) => break,
            Some(75) if start.elapsed() < Duration::from_secs(15) => {
                std::thread::sleep(Duration::from_millis(100));
            }
            Some(9) => panic!(
                "a second redlock run took the lock while the leftover of a SIGKILLed redlock was running"
            ),
            other => panic!("second redlock run: unexpected exit {other:?}"),
        }
    }
    assert!(
        eventually(Duration::from_secs(10), || !alive(leftover)),
        "the leftover outlived a SIGKILLed redlock"
    );
}
