//! `redlock run`: acquire, run the command while extending, release.

use std::io::{IsTerminal, Write};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use redlock_core::{Lease, Lock, LockError, Redlock, RetryPolicy, ScopeOptions};
use tokio::process::{Child, Command};
use tokio::signal::unix::{signal, SignalKind};

use crate::{exit, RunArgs};

/// Pause between attempts while waiting.
const RETRY_DELAY: Duration = Duration::from_millis(100);

pub async fn run(redlock: &Redlock, args: RunArgs) -> u8 {
    let lock = match acquire(redlock, &args).await {
        Ok(lock) => lock,
        Err(code) => return code,
    };
    let fence = lock.fence();
    let options = ScopeOptions::new().cancel_on_loss(false);
    let result = redlock
        .scope(lock, &options, |lease| supervise(lease, &args, fence))
        .await;
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("redlock: {e}");
            exit::LOCK_LOST
        }
    }
}

/// Tries until the lock is taken or the wait is over, with a progress line on
/// a terminal.
async fn acquire(redlock: &Redlock, args: &RunArgs) -> Result<Lock, u8> {
    let started = Instant::now();
    let wait = if args.no_wait {
        Some(Duration::ZERO)
    } else {
        args.wait
    };
    let tty = std::io::stderr().is_terminal();
    let mut shown = false;
    let policy = RetryPolicy::once();
    loop {
        let attempt = if args.fenced {
            redlock
                .lock_fenced_with(args.resource.as_str(), args.ttl, &policy)
                .await
        } else {
            redlock
                .lock_with(args.resource.as_str(), args.ttl, &policy)
                .await
        };
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
        let waited = started.elapsed();
        if wait.is_some_and(|w| waited + RETRY_DELAY > w) {
            if shown {
                eprintln!();
            }
            return Err(if err.is_conflict() {
                eprintln!("redlock: '{}' is held by another owner", args.resource);
                exit::BUSY
            } else {
                eprintln!("redlock: {err}");
                exit::UNAVAILABLE
            });
        }
        if tty {
            let why = if err.is_conflict() {
                "held by another owner"
            } else {
                "nodes unavailable"
            };
            eprint!(
                "\r\x1b[2Kredlock: waiting for '{}' for {:.1}s ({why})",
                args.resource,
                waited.as_secs_f64()
            );
            let _ = std::io::stderr().flush();
            shown = true;
        }
        tokio::time::sleep(RETRY_DELAY).await;
    }
}

/// Runs the command; stops it when the lock is lost; passes signals on.
async fn supervise(lease: Lease, args: &RunArgs, fence: Option<u64>) -> u8 {
    let mut command = Command::new(&args.command[0]);
    command
        .args(&args.command[1..])
        .env("REDLOCK_RESOURCE", &args.resource)
        .env("REDLOCK_TOKEN", lease.token());
    if let Some(f) = fence {
        command.env("REDLOCK_FENCE", f.to_string());
    }
    let mut child = match command.spawn() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("redlock: cannot run {:?}: {e}", args.command[0]);
            return match e.kind() {
                std::io::ErrorKind::NotFound => exit::NOT_FOUND,
                _ => exit::CANNOT_EXECUTE,
            };
        }
    };
    let (Ok(mut int), Ok(mut term), Ok(mut hup)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        eprintln!("redlock: cannot install signal handlers; stopping the command");
        stop(&mut child, args.grace).await;
        return exit::FAILED;
    };
    loop {
        tokio::select! {
            status = child.wait() => {
                return match status {
                    Ok(s) => code_of(s),
                    Err(e) => {
                        eprintln!("redlock: lost track of the command: {e}");
                        exit::FAILED
                    }
                };
            }
            _ = lease.lost() => {
                eprintln!(
                    "redlock: the lock on '{}' was lost; stopping the command (SIGTERM, SIGKILL after {:?})",
                    args.resource, args.grace
                );
                stop(&mut child, args.grace).await;
                return exit::LOCK_LOST;
            }
            _ = int.recv() => forward(&child, Signal::SIGINT),
            _ = term.recv() => forward(&child, Signal::SIGTERM),
            _ = hup.recv() => forward(&child, Signal::SIGHUP),
        }
    }
}

fn forward(child: &Child, sig: Signal) {
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        let _ = kill(Pid::from_raw(pid), sig);
    }
}

/// SIGTERM, then SIGKILL after `grace`.
async fn stop(child: &mut Child, grace: Duration) {
    forward(child, Signal::SIGTERM);
    if tokio::time::timeout(grace, child.wait()).await.is_err() {
        let _ = child.kill().await;
    }
}

fn code_of(status: ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    if let Some(code) = status.code() {
        return u8::try_from(code).unwrap_or(exit::FAILED);
    }
    match status.signal() {
        Some(sig) => u8::try_from(128 + sig).unwrap_or(exit::FAILED),
        None => exit::FAILED,
    }
}
