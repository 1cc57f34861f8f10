//! The job's direct child: a small process that ties the job to the life of
//! `redlock`.
//!
//! `redlock run` does not start the command directly. It starts itself again
//! as this supervisor, as the leader of a new process group, and the
//! supervisor starts the command in that group. Everything the command forks
//! stays in the group unless it moves itself out (`setsid`, `setpgid`).
//!
//! Why a supervisor: on Linux, `PR_SET_PDEATHSIG` reaches only the direct
//! child of a process that dies. If the command were the direct child, a
//! SIGKILLed `redlock` would take the command with it but leave the
//! command's own children running. The supervisor gets a catchable signal
//! (SIGUSR2) when `redlock` dies and answers it with SIGKILL to its whole
//! process group, grandchildren included.
//!
//! The supervisor must outlive every process of the group, or a `redlock`
//! killed while it stops processes the command left behind would leave them
//! running. So it is a child subreaper: the command's orphans become its
//! children. When the command exits, it writes the command's exit code (one
//! byte) to the status pipe `redlock` gave it, then reaps until no child of
//! its group is left, and only then exits (with the same code).
//!
//! The supervisor ignores SIGINT, SIGTERM and SIGHUP (with handlers, which
//! the command does not inherit): `redlock` sends those to the whole group,
//! and the supervisor must stay until the rest of the group is gone. The
//! stop sequence's SIGKILL ends it with the rest.

use std::ffi::OsString;
use std::io::Write;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, ExitStatus};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

/// The first argument that makes `redlock` act as the supervisor. The
/// second is the number of the status pipe's write end, then the command.
pub const ARG: &str = "__redlock-supervise";

/// The signal the supervisor receives when `redlock` dies (Linux).
pub const PARENT_DEATH_SIGNAL: libc::c_int = libc::SIGUSR2;

/// The process id of `redlock`, read when the supervisor starts.
static PARENT: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_parent_death(_: libc::c_int) {
    // SAFETY: getppid and kill are async-signal-safe. A parent id that
    // changed means `redlock` is gone: stop the whole group, this process
    // included.
    unsafe {
        if libc::getppid() != PARENT.load(Ordering::Relaxed) {
            libc::kill(0, libc::SIGKILL);
        }
    }
}

extern "C" fn ignore(_: libc::c_int) {}

fn install(signal: libc::c_int, handler: extern "C" fn(libc::c_int)) -> bool {
    // SAFETY: a zeroed sigaction with an empty mask and a plain handler is a
    // valid argument; the handlers only call async-signal-safe functions.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = handler as usize;
        action.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(signal, &action, std::ptr::null_mut()) == 0
    }
}

/// Takes the status pipe's write end named by `arg` and marks it
/// close-on-exec, so that the command does not inherit it: `redlock` sees
/// the end of the pipe when the supervisor is gone.
fn status_pipe(arg: &OsString) -> Option<std::fs::File> {
    let fd: RawFd = arg.to_str()?.parse().ok().filter(|fd| *fd > 2)?;
    // SAFETY: fcntl on any number is memory-safe; it fails with EBADF when
    // the descriptor is not open.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } != 0 {
        return None;
    }
    // SAFETY: the descriptor is open (fcntl succeeded) and nothing else in
    // this process uses it: `redlock` passed it to this process only for
    // this purpose.
    Some(std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// Orphans of the command (in the group or not) become children of the
/// supervisor, which outlives the group's processes (Linux).
fn become_subreaper() -> bool {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl with PR_SET_CHILD_SUBREAPER only changes a flag of this
    // process.
    unsafe {
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    }
    #[cfg(not(target_os = "linux"))]
    true
}

/// Waits for a child: `pid` as in waitpid(2), blocking unless `flags` has
/// WNOHANG. The child reaped and how it ended; `None` when there is no such
/// child (or none has exited yet, with WNOHANG).
fn reap(pid: libc::pid_t, flags: libc::c_int) -> Option<(libc::pid_t, ExitStatus)> {
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: waitpid writes the status to a valid local.
        let reaped = unsafe { libc::waitpid(pid, &mut status, flags) };
        if reaped > 0 {
            return Some((reaped, ExitStatus::from_raw(status)));
        }
        if reaped < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
            continue;
        }
        return None;
    }
}

/// Runs the command (`args[1..]`; `args[0]` is the status pipe) and returns
/// its exit code: its own, 128+N when killed by signal N, 127 when not
/// found, 126 when it cannot be executed. Writes the code to the status pipe
/// as soon as the command exits; returns once no child of the group is left.
pub fn main(args: &[OsString]) -> u8 {
    // SAFETY: getppid has no preconditions.
    PARENT.store(unsafe { libc::getppid() }, Ordering::Relaxed);
    let installed = install(PARENT_DEATH_SIGNAL, on_parent_death)
        && install(libc::SIGINT, ignore)
        && install(libc::SIGTERM, ignore)
        && install(libc::SIGHUP, ignore);
    if !installed {
        eprintln!("redlock: cannot install the supervisor's signal handlers");
        return crate::exit::FAILED;
    }
    let Some((pipe, command)) = args.split_first() else {
        eprintln!("redlock: no status pipe given to the supervisor");
        return crate::exit::USAGE;
    };
    let Some(mut pipe) = status_pipe(pipe) else {
        eprintln!("redlock: the supervisor's status pipe is not usable");
        return crate::exit::USAGE;
    };
    let Some((program, rest)) = command.split_first() else {
        eprintln!("redlock: no command given to the supervisor");
        return crate::exit::USAGE;
    };
    if !become_subreaper() {
        eprintln!(
            "redlock: the supervisor cannot adopt the command's orphans: {}",
            std::io::Error::last_os_error()
        );
        return crate::exit::FAILED;
    }
    let code = match Command::new(program).args(rest).spawn() {
        Ok(child) => wait_command(child.id()),
        Err(e) => {
            eprintln!("redlock: cannot run {program:?}: {e}");
            match e.kind() {
                std::io::ErrorKind::NotFound => crate::exit::NOT_FOUND,
                _ => crate::exit::CANNOT_EXECUTE,
            }
        }
    };
    // `redlock` may be gone (then this process is being killed) or may
    // have stopped reading: nothing to do about a failed write.
    let _ = pipe.write_all(&[code]);
    drop(pipe);
    wait_group();
    code
}

/// How often the supervisor checks whether children of its group are left.
const GROUP_POLL: Duration = Duration::from_millis(10);

/// Reaps children until none of them is in this process's group: everything
/// the command left behind has become a child of this process. Children that
/// left the group (`setsid`) are not waited for; when this process exits
/// they pass to `redlock`. Polls, because a child that leaves the group
/// wakes no blocked waitpid(2).
fn wait_group() {
    loop {
        while reap(-1, libc::WNOHANG).is_some() {}
        let mut status: libc::c_int = 0;
        // SAFETY: waitpid writes the status to a valid local. With WNOHANG
        // it returns 0 while children of the group are running, -1 (ECHILD)
        // when none is left.
        let left = unsafe { libc::waitpid(0, &mut status, libc::WNOHANG) };
        if left < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return;
        }
        if left == 0 {
            std::thread::sleep(GROUP_POLL);
        }
    }
}

/// Reaps children until the command (`pid`) has exited, orphans it left
/// behind included; the command's exit code.
fn wait_command(pid: u32) -> u8 {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        eprintln!("redlock: lost track of the command: pid {pid} out of range");
        return crate::exit::FAILED;
    };
    loop {
        match reap(-1, 0) {
            Some((reaped, status)) if reaped == pid => return crate::run::code_of(status),
            Some(_) => {}
            None => {
                eprintln!(
                    "redlock: lost track of the command: {}",
                    std::io::Error::last_os_error()
                );
                return crate::exit::FAILED;
            }
        }
    }
}
