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
//! The supervisor ignores SIGINT, SIGTERM and SIGHUP (with handlers, which
//! the command does not inherit): `redlock` sends those to the whole group,
//! and the supervisor must live until the command has exited so that it can
//! report the command's exit status as its own.

use std::ffi::OsString;
use std::process::Command;
use std::sync::atomic::{AtomicI32, Ordering};

/// The first argument that makes `redlock` act as the supervisor.
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

/// Runs `args` (the command and its arguments) and returns its exit code:
/// its own, 128+N when killed by signal N, 127 when not found, 126 when it
/// cannot be executed.
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
    let Some((program, rest)) = args.split_first() else {
        eprintln!("redlock: no command given to the supervisor");
        return crate::exit::USAGE;
    };
    let mut child = match Command::new(program).args(rest).spawn() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("redlock: cannot run {program:?}: {e}");
            return match e.kind() {
                std::io::ErrorKind::NotFound => crate::exit::NOT_FOUND,
                _ => crate::exit::CANNOT_EXECUTE,
            };
        }
    };
    match child.wait() {
        Ok(status) => crate::run::code_of(status),
        Err(e) => {
            eprintln!("redlock: lost track of the command: {e}");
            crate::exit::FAILED
        }
    }
}
