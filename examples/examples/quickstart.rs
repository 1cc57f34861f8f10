//! # Quickstart: one Redis, one lock
//!
//! Shows the whole life of a lock on a single Redis server: lock, a second
//! owner refused, extend, unlock, then a scoped lock with `using` (held while
//! a future runs, extended automatically, released afterwards).
//!
//! With a single node the quorum is 1; use three or five independent servers
//! for fault tolerance (see the `five_nodes` example).
//!
//! Run it against a Redis you have (default `redis://127.0.0.1:6379`):
//!
//! ```text
//! REDIS_URL=redis://127.0.0.1:6379 cargo run -p redlock-examples --example quickstart
//! ```
//!
//! It only touches keys under `redlock-example:quickstart:` and removes them.
//! It ends within a few seconds, also when the server cannot be reached.

use std::error::Error;
use std::process::ExitCode;
use std::time::Duration;

use redlock_redis_rs::Options;

#[tokio::main]
async fn main() -> ExitCode {
    redlock_examples::exit(run().await)
}

async fn run() -> Result<(), Box<dyn Error>> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());

    // URLs in, a Redlock out.
    let redlock = redlock_redis_rs::redlock_with(
        &[url.as_str()],
        Options::new()
            .key_prefix("redlock-example:quickstart:")
            .retry_count(3),
    )?;
    println!(
        "redlock over {} node(s), quorum {}",
        redlock.nodes().len(),
        redlock.quorum()
    );

    // Lock by hand.
    let mut lock = redlock.lock("report", Duration::from_secs(5)).await?;
    let token: String = lock.token().chars().take(8).collect();
    println!(
        "locked {:?} (token {token}...), valid for {:?}",
        lock.resources(),
        lock.remaining()
    );

    // Someone else (here: the same process) cannot take it meanwhile.
    match redlock.try_lock("report", Duration::from_secs(5)).await {
        Err(e) if e.is_conflict() => println!("second owner refused: held by another owner"),
        Err(e) => return Err(e.into()),
        Ok(_) => return Err("a second owner got the lock".into()),
    }

    lock.extend(Duration::from_secs(10)).await?;
    println!("extended, now valid for {:?}", lock.remaining());

    lock.unlock().await?;
    println!("unlocked");

    // Scoped: the closure runs while the lock is held, and the lock is
    // released when it returns.
    let rows = redlock
        .using("report", Duration::from_secs(2), |lease| async move {
            println!(
                "using: running with the lock held ({:?} left)",
                lease.remaining()
            );
            42
        })
        .await?;
    println!("using: done, the closure returned {rows}, lock released");

    redlock.quit().await?;
    println!("quickstart finished");
    Ok(())
}
