//! `redlock run`: acquire, run the command while extending, release.

use std::io::{IsTerminal, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use redlock_core::{Lease, Lock, LockError, LockOptions, Redlock};
use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;
use tokio::process::{Child, Command};

use crate::supervisor;
use tokio::signal::unix::{signal, SignalKind};

use crate::{exit, RunArgs};

/// Pause between attempts while waiting.
const RETRY_DELAY: Duration = Duration::from_millis(100);

/// The shortest TTL `run` accepts. The lock is extended when a third of the
/// TTL is left and given up when a twentieth is left (see
/// `redlock_core::LockOptions`); at 500 ms that leaves about 140 ms for an
/// extension round whose per-node timeout is 50 ms: two rounds and some
/// slack for a busy machine. Below it, the lock is lost under ordinary
/// scheduling delays.
pub const MIN_TTL: Duration = Duration::from_millis(500);

pub async fn run(redlock: &Redlock, args: RunArgs) -> u8 {
    if args.ttl < MIN_TTL {
        eprintln!(
            "redlock: --ttl {} is too short to extend the lock before it runs out: use at least {}",
            humantime::format_duration(args.ttl),
            humantime::format_duration(MIN_TTL)
        );
        return exit::USAGE;
    }
    let lock = match acquire(redlock, &args).await {
        Ok(lock) => lock,
        Err(code) => return code,
    };
    let fence = lock.fence();
    let options = LockOptions::new(args.resource.as_str(), args.ttl).cancel_on_loss(false);
    let result = lock
        .hold(&options, |lease| supervise(lease, &args, fence))
        .await;
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("redlock: {e}");
            exit::LOCK_LOST
        }
    }
}

/// Why `run` is waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Waiting {
    /// Another owner holds the lock.
    Busy,
    /// No quorum of nodes could be reached.
    Unavailable,
}

impl Waiting {
    fn of(err: &LockError) -> Waiting {
        if err.is_conflict() {
            Waiting::Busy
        } else {
            Waiting::Unavailable
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Waiting::Busy => "held by another owner",
            Waiting::Unavailable => "nodes unavailable",
        }
    }
}

/// The message for a configuration error, with what to fix.
pub fn config_message(err: &LockError) -> String {
    format!(
        "{err}\nredlock: fix the credentials in the node URLs (redis://user:password@host:port) \
         or the ACL rules on the servers (the user needs EVAL, EVALSHA, SCRIPT, SET, \
         PING, PUBLISH and SUBSCRIBE on the lock keys and the redlock:release:* channels); waiting cannot fix this"
    )
}

/// Tries until the lock is taken or the wait is over. Waits as long as
/// another owner holds the lock (or `--wait`), but at most
/// `--unavailable-timeout` while no quorum of nodes can be reached. On a
/// terminal a progress line is redrawn in place; otherwise one line is
/// written when waiting starts and when its reason changes.
async fn acquire(redlock: &Redlock, args: &RunArgs) -> Result<Lock, u8> {
    let started = Instant::now();
    let wait = if args.no_wait {
        Some(Duration::ZERO)
    } else {
        args.wait
    };
    let tty = std::io::stderr().is_terminal();
    let mut shown = false;
    let mut reason: Option<Waiting> = None;
    let mut unavailable_since: Option<Instant> = None;
    let options = LockOptions::new(args.resource.as_str(), args.ttl)
        .once()
        .fenced(args.fenced);
    loop {
        let attempt = redlock.acquire(&options).await;
        let err = match attempt {
            Ok(lock) => {
                if shown {
                    eprint!("\r\x1b[2K");
                }
                return Ok(lock);
            }
            Err(LockError::InvalidArgument(e)) => {
                eprintln!("redlock: {e}");
                return Err(exit::USAGE);
            }
            Err(e) => e,
        };
        if err.is_config() {
            if shown {
                eprintln!();
            }
            eprintln!("redlock: {}", config_message(&err));
            return Err(exit::CONFIG);
        }
        let now_waiting = Waiting::of(&err);
        match now_waiting {
            Waiting::Busy => unavailable_since = None,
            Waiting::Unavailable => {
                unavailable_since.get_or_insert_with(Instant::now);
            }
        }
        let waited = started.elapsed();
        let wait_over = wait.is_some_and(|w| waited + RETRY_DELAY > w);
        let unavailable_over = unavailable_since
            .is_some_and(|since| since.elapsed() + RETRY_DELAY > args.unavailable_timeout);
        if wait_over || unavailable_over {
            if shown {
                eprintln!();
            }
            return Err(match now_waiting {
                Waiting::Busy => {
                    eprintln!("redlock: '{}' is held by another owner", args.resource);
                    exit::BUSY
                }
                Waiting::Unavailable => {
                    eprintln!("redlock: {err}");
                    if unavailable_over && !wait_over {
                        eprintln!(
                            "redlock: gave up: no quorum of nodes for {} (--unavailable-timeout)",
                            humantime::format_duration(args.unavailable_timeout)
                        );
                    }
                    exit::UNAVAILABLE
                }
            });
        }
        if tty {
            eprint!(
                "\r\x1b[2Kredlock: waiting for '{}' for {:.1}s ({})",
                args.resource,
                waited.as_secs_f64(),
                now_waiting.describe()
            );
            let _ = std::io::stderr().flush();
            shown = true;
        } else if reason != Some(now_waiting) {
            match now_waiting {
                Waiting::Busy => eprintln!(
                    "redlock: waiting for '{}': {}",
                    args.resource,
                    now_waiting.describe()
                ),
                Waiting::Unavailable => eprintln!(
                    "redlock: waiting for '{}': {} (giving up after {}): {err}",
                    args.resource,
                    now_waiting.describe(),
                    humantime::format_duration(args.unavailable_timeout)
                ),
            }
        }
        reason = Some(now_waiting);
        tokio::time::sleep(RETRY_DELAY).await;
    }
}

/// Runs the command; stops it when the lock is lost; passes signals on.
/// Returns only once every process of the command's group has exited.
async fn supervise(lease: Lease, args: &RunArgs, fence: Option<u64>) -> u8 {
    let mut job = match Job::spawn(args, lease.token(), fence) {
        Ok(job) => job,
        Err(e) => {
            eprintln!("redlock: cannot start the command: {e}");
            return exit::CANNOT_EXECUTE;
        }
    };
    let (Ok(mut int), Ok(mut term), Ok(mut hup)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        eprintln!("redlock: cannot install signal handlers; stopping the command");
        job.stop(args.grace).await;
        return exit::FAILED;
    };
    let pgid = job.pgid;
    let code = loop {
        tokio::select! {
            code = job.command_exit() => break code,
            _ = lease.lost() => {
                eprintln!(
                    "redlock: the lock on '{}' was lost; stopping the command (SIGTERM, SIGKILL after {:?})",
                    args.resource, args.grace
                );
                job.stop(args.grace).await;
                return exit::LOCK_LOST;
            }
            _ = int.recv() => signal_group(pgid, libc::SIGINT),
            _ = term.recv() => signal_group(pgid, libc::SIGTERM),
            _ = hup.recv() => signal_group(pgid, libc::SIGHUP),
        }
    };
    let code = match code {
        Ok(code) => code,
        Err(e) => {
            eprintln!("redlock: lost track of the command: {e}");
            exit::FAILED
        }
    };
    // Processes that got the same signal as the command may still be on
    // their way out: give them a moment before calling them left behind.
    if !job.wait_group(Some(SETTLE)).await {
        eprintln!(
            "redlock: the command exited but processes it started are still running; \
             stopping them (SIGTERM, SIGKILL after {:?}) before releasing the lock",
            args.grace
        );
        job.stop(args.grace).await;
    }
    code
}

/// The command, started through the supervisor as the leader of its own
/// process group.
struct Job {
    /// The supervisor.
    child: Child,
    pgid: libc::pid_t,
    /// Whether the supervisor has been reaped.
    exited: bool,
    /// The read end of the status pipe: the supervisor writes the command's
    /// exit code to it when the command exits, and holds the only write end.
    status: pipe::Receiver,
}

impl Job {
    fn spawn(args: &RunArgs, token: &str, fence: Option<u64>) -> std::io::Result<Job> {
        become_subreaper();
        // Both ends are close-on-exec.
        let (status, writer) = std::io::pipe()?;
        let mut command = Command::new(own_executable()?);
        command
            .arg(supervisor::ARG)
            .arg(writer.as_raw_fd().to_string())
            .args(&args.command)
            .env("REDLOCK_RESOURCE", &args.resource)
            .env("REDLOCK_TOKEN", token)
            .process_group(0)
            .kill_on_drop(false);
        if let Some(f) = fence {
            command.env("REDLOCK_FENCE", f.to_string());
        }
        pass_to_child(&mut command, &writer);
        tie_to_parent(&mut command);
        let child = command.spawn()?;
        // The supervisor holds the only write end now: the pipe ends when
        // the supervisor is gone.
        drop(writer);
        let pgid = child
            .id()
            .and_then(|p| libc::pid_t::try_from(p).ok())
            .ok_or_else(|| std::io::Error::other("the command has no process id"))?;
        Ok(Job {
            child,
            pgid,
            exited: false,
            status: pipe::Receiver::from_owned_fd(OwnedFd::from(status))?,
        })
    }

    /// Waits until the command has exited; its exit code, as the supervisor
    /// reports it. Should the supervisor end without reporting one (it
    /// could not start the command, or was killed), its own exit status
    /// counts. The supervisor may still be running afterwards, for
    /// processes the command left behind. Cancel-safe.
    async fn command_exit(&mut self) -> std::io::Result<u8> {
        let mut code = [0u8; 1];
        if self.status.read(&mut code).await? == 1 {
            return Ok(code[0]);
        }
        let status = self.child.wait().await?;
        self.exited = true;
        Ok(code_of(status))
    }

    /// Whether any process of the group is left. Reaps what has exited:
    /// the supervisor, and (as a subreaper) the command's orphans.
    fn group_alive(&mut self) -> bool {
        if !self.exited {
            match self.child.try_wait() {
                Ok(Some(_)) | Err(_) => self.exited = true,
                Ok(None) => return true,
            }
        }
        loop {
            // SAFETY: waitpid with a null status pointer and WNOHANG.
            let reaped = unsafe { libc::waitpid(-self.pgid, std::ptr::null_mut(), libc::WNOHANG) };
            if reaped <= 0 {
                break;
            }
        }
        // SAFETY: signal 0 only checks that the group exists.
        let r = unsafe { libc::kill(-self.pgid, 0) };
        r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
    }

    /// Waits until the group is gone or `limit` has passed; true when gone.
    async fn wait_group(&mut self, limit: Option<Duration>) -> bool {
        let deadline = limit.map(|l| Instant::now() + l);
        loop {
            if !self.group_alive() {
                return true;
            }
            let pause = match deadline {
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return false;
                    }
                    left.min(GROUP_POLL)
                }
                None => GROUP_POLL,
            };
            tokio::time::sleep(pause).await;
        }
    }

    /// SIGTERM to the group, then SIGKILL after `grace`; returns once the
    /// whole group has exited.
    async fn stop(&mut self, grace: Duration) {
        signal_group(self.pgid, libc::SIGTERM);
        if !self.wait_group(Some(grace)).await {
            signal_group(self.pgid, libc::SIGKILL);
            self.wait_group(None).await;
        }
    }
}

/// How long processes of the group may take to exit on their own once the
/// command has exited, before they count as left behind.
const SETTLE: Duration = Duration::from_millis(200);

/// How often a stopping group is checked.
const GROUP_POLL: Duration = Duration::from_millis(10);

fn signal_group(pgid: libc::pid_t, sig: libc::c_int) {
    // SAFETY: kill has no memory-safety preconditions; a negative pid names
    // the process group.
    unsafe {
        libc::kill(-pgid, sig);
    }
}

/// The running `redlock` binary, to start as the supervisor.
fn own_executable() -> std::io::Result<std::path::PathBuf> {
    if cfg!(target_os = "linux") {
        // Works even when the binary was replaced or deleted since it started.
        Ok("/proc/self/exe".into())
    } else {
        std::env::current_exe()
    }
}

/// Orphans of the group that outlive the supervisor (it is killed last, or
/// they left the group) become children of `redlock`, which reaps them and
/// knows when the group is gone.
fn become_subreaper() {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl with PR_SET_CHILD_SUBREAPER only changes a flag of this
    // process.
    unsafe {
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    }
}

/// The supervisor inherits `fd` (under the same number): close-on-exec is
/// cleared in the child only, so no other process started meanwhile gets it.
fn pass_to_child(command: &mut Command, fd: &impl AsRawFd) {
    let fd = fd.as_raw_fd();
    // SAFETY: the closure runs between fork and exec and only calls the
    // async-signal-safe fcntl; `fd` stays open in the parent until after
    // spawn returns.
    unsafe {
        command.pre_exec(move || {
            if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// On Linux, the supervisor gets [`supervisor::PARENT_DEATH_SIGNAL`] when
/// `redlock` dies, even by SIGKILL, and then kills the whole group.
fn tie_to_parent(command: &mut Command) {
    #[cfg(target_os = "linux")]
    {
        let parent = std::process::id();
        // SAFETY: the closure runs between fork and exec and only calls the
        // async-signal-safe prctl and getppid.
        unsafe {
            command.pre_exec(move || {
                let sig = libc::c_ulong::try_from(supervisor::PARENT_DEATH_SIGNAL).unwrap_or(0);
                if libc::prctl(libc::PR_SET_PDEATHSIG, sig, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // `redlock` died before the line above: do not start at all.
                if u32::try_from(libc::getppid()).ok() != Some(parent) {
                    return Err(std::io::Error::other("redlock exited"));
                }
                Ok(())
            });
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = command;
}

pub(crate) fn code_of(status: ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    if let Some(code) = status.code() {
        return u8::try_from(code).unwrap_or(exit::FAILED);
    }
    match status.signal() {
        Some(sig) => u8::try_from(128 + sig).unwrap_or(exit::FAILED),
        None => exit::FAILED,
    }
}
