//! `redlock`: run a command under a distributed lock held on a quorum of
//! independent Redis nodes (Redlock), inspect a lock, or release one.
//!
//! See `redlock --help` and the crate README for examples and exit codes.

mod exit;
mod nodes;
mod release;
mod run;
mod status;
mod supervisor;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use redlock_core::{Options, Redlock};

const EXAMPLES: &str = "\
Examples:
  # Run a job under the lock 'nightly-export' (waits while someone else holds it)
  redlock run --resource nightly-export -- ./export.sh --full

  # Cron style: skip this run if the previous one still holds the lock (exit 75)
  redlock run --resource backup --no-wait -- ./backup.sh

  # Five independent nodes, wait at most a minute, pass a fencing token to the job
  REDLOCK_NODES=redis://r1:6379,redis://r2:6379,redis://r3:6379,redis://r4:6379,redis://r5:6379 \\
    redlock run --resource reindex --wait 60s --fenced -- sh -c 'reindex --fence \"$REDLOCK_FENCE\"'

  # Who holds it, and for how long?
  redlock status nightly-export
  redlock status nightly-export --json

  # Release a lock whose token you know, or (operators) anybody's
  redlock release nightly-export --token 3f9a...
  redlock release nightly-export --force --yes

Exit codes: `run` exits with the command's own code when it ran (128+N when
killed by signal N); 75 resource busy (--no-wait, or --wait ran out); 69 no quorum
of nodes reachable (after --unavailable-timeout); 70 lock lost while the command
ran (it was stopped); 78 configuration error (a node refused the password or
permissions, or a node URL is malformed); 126 command not executable; 127 command
not found; 2 bad arguments (also the same node listed twice, a ttl too short).
`status` exits 0, or 69 when no quorum answered; `release` exits 0 when it deleted
the lock, 1 when nothing was held with that token; both exit 78 on a
configuration error.

The command runs in its own process group, with everything it starts: signals
and the stop sequence reach the whole group, processes it leaves behind are
stopped when it exits, the lock is released only after the whole group has
exited, and on Linux a killed redlock (even by SIGKILL) takes the group with it.";

/// Run commands under a distributed lock on Redis (Redlock).
#[derive(Debug, Parser)]
#[command(name = "redlock", version, after_long_help = EXAMPLES)]
struct Cli {
    /// Redis nodes, comma-separated: one per independent master (odd count
    /// best), or one cluster/sentinel URL. Passwords are never printed.
    /// [default: redis://127.0.0.1:6379]
    #[arg(long, env = "REDLOCK_NODES", global = true, hide_env_values = true)]
    nodes: Option<String>,

    /// Prefix put before the resource name to form the Redis key.
    #[arg(long, default_value = "", global = true)]
    prefix: String,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Acquire the lock, run CMD while extending it, release when CMD exits.
    ///
    /// CMD gets REDLOCK_RESOURCE, REDLOCK_TOKEN and, with --fenced,
    /// REDLOCK_FENCE in its environment. CMD runs in its own process group:
    /// SIGINT, SIGTERM and SIGHUP sent to redlock are passed on to the whole
    /// group. If the lock is lost, the group gets SIGTERM, then SIGKILL after
    /// --grace, and redlock exits with 70. Processes CMD leaves behind get
    /// the same when it exits. The lock is released once the whole group
    /// has exited.
    Run(RunArgs),
    /// Show who holds a resource on each node, and the quorum verdict.
    Status(StatusArgs),
    /// Release a lock by its token (or anybody's, with --force --yes).
    Release(ReleaseArgs),
}

/// Arguments of `redlock run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The resource to lock.
    #[arg(long, short)]
    pub resource: String,
    /// Lock time to live, at least 500ms; the lock is extended while CMD
    /// runs.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub ttl: Duration,
    /// Wait at most this long for the lock (default: wait as long as
    /// another owner holds it).
    #[arg(long, value_parser = parse_duration, conflicts_with = "no_wait")]
    pub wait: Option<Duration>,
    /// Give up (exit 69) once no quorum of nodes could be reached for this
    /// long while waiting; waiting for another owner has no limit unless
    /// --wait is given.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub unavailable_timeout: Duration,
    /// Try once; exit 75 at once if someone else holds the lock.
    #[arg(long)]
    pub no_wait: bool,
    /// Take a fencing token and pass it as REDLOCK_FENCE.
    #[arg(long)]
    pub fenced: bool,
    /// Time between SIGTERM and SIGKILL when the lock is lost.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub grace: Duration,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// Arguments of `redlock status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The resource to inspect.
    pub resource: String,
    /// Show the lock taken with this token (REDLOCK_TOKEN of the holder) as
    /// ours: "held by us" instead of "held by another owner".
    #[arg(long)]
    pub token: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `redlock release`.
#[derive(Debug, Args)]
pub struct ReleaseArgs {
    /// The resource to release.
    pub resource: String,
    /// The token the lock was taken with (REDLOCK_TOKEN of the holder).
    #[arg(long, required_unless_present = "force", conflicts_with = "force")]
    pub token: Option<String>,
    /// Delete the lock whoever holds it. Needs --yes.
    #[arg(long)]
    pub force: bool,
    /// Confirms --force.
    #[arg(long, requires = "force")]
    pub yes: bool,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s)
        .map_err(|e| format!("{e} (use a duration such as 500ms, 30s, 2m)"))?;
    if d.is_zero() {
        return Err("must be above zero".into());
    }
    Ok(d)
}

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == supervisor::ARG) {
        return ExitCode::from(supervisor::main(&args[2..]));
    }
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("REDLOCK_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error")),
        )
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("redlock: cannot start the async runtime: {e}");
            return ExitCode::from(exit::FAILED);
        }
    };
    ExitCode::from(runtime.block_on(dispatch(cli)))
}

async fn dispatch(cli: Cli) -> u8 {
    let urls = match &cli.nodes {
        Some(list) => nodes::split(list),
        None => vec![nodes::DEFAULT_NODE.to_owned()],
    };
    if urls.is_empty() {
        eprintln!("redlock: --nodes is empty; give at least one redis:// URL");
        return exit::USAGE;
    }
    let connected = match nodes::open(&urls) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("redlock: {e}");
            return exit::CONFIG;
        }
    };
    let options = Options::new().key_prefix(cli.prefix.clone());
    let redlock = match Redlock::from_nodes(connected, options) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("redlock: {e}");
            return exit::USAGE;
        }
    };
    let code = match cli.command {
        Command::Run(args) => run::run(&redlock, args).await,
        Command::Status(args) => status::status(&redlock, args).await,
        Command::Release(args) => release::release(&redlock, args).await,
    };
    let _ = redlock.quit().await;
    code
}
