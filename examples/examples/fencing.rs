//! # Fencing tokens: a storage that rejects a stale lock holder
//!
//! A lock can expire while its holder is stalled (a long GC pause, a
//! swapped-out process, a slow network): the holder wakes up, still believes
//! it holds the lock, and writes. Timing alone cannot prevent that; a
//! fencing token can. A fenced lock gives every holder a number that grows
//! strictly from one holder to the next (read from a majority of the nodes,
//! max + 1 written back to a majority), and the storage refuses a write that
//! carries a smaller number than one it has already seen.
//!
//! Here client A takes a fenced lock with a short TTL, writes, and stalls;
//! its lock expires; client B takes the lock with a larger token and writes;
//! then A wakes up and writes with its old token, and the toy storage
//! rejects it.
//!
//! Run it (starts three local `redis-server` processes, stops them at the
//! end):
//!
//! ```text
//! cargo run -p redlock-examples --example fencing
//! ```
//!
//! Or against servers you have (`REDLOCK_NODES=redis://h1:6379,redis://h2:6379,...`).
//! The fencing counters (under `redlock-example:fencing:`) stay on the
//! servers by design: they must keep growing across holders.

use std::error::Error;
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Duration;

use redlock_core::LockOptions;
use redlock_examples::urls_from_env;
use redlock_redis_rs::{Options, RedisNode, Redlock};
use redlock_testkit::RedisServer;

/// A toy storage that remembers the largest fencing token it has seen and
/// refuses writes carrying a smaller one.
#[derive(Default)]
struct Storage {
    state: Mutex<(u64, String)>,
}

impl Storage {
    fn write(&self, fence: u64, value: &str) -> Result<(), String> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if fence < state.0 {
            return Err(format!(
                "rejected write {value:?}: token {fence} is older than {}",
                state.0
            ));
        }
        *state = (fence, value.to_string());
        Ok(())
    }

    fn value(&self) -> String {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .1
            .clone()
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    redlock_examples::exit(run().await)
}

async fn run() -> Result<(), Box<dyn Error>> {
    let (urls, _servers) = match urls_from_env("REDLOCK_NODES") {
        Some(urls) => (urls, Vec::new()),
        None => {
            let servers = (0..3)
                .map(|_| RedisServer::start())
                .collect::<Result<Vec<_>, _>>()?;
            (servers.iter().map(|s| s.url()).collect(), servers)
        }
    };
    println!("nodes: {}", urls.join(" "));
    let nodes = urls
        .iter()
        .map(|u| RedisNode::open(u))
        .collect::<Result<Vec<_>, _>>()?;
    let redlock = Redlock::new(
        nodes,
        Options::new()
            .key_prefix("redlock-example:fencing:")
            .retry_count(-1)
            .retry_delay(Duration::from_millis(20))
            .retry_deadline(Duration::from_secs(5)),
    )?;
    let storage = Storage::default();

    // Client A: a short lock, one write.
    let lock_a = redlock
        .acquire(&LockOptions::new("ledger", Duration::from_millis(300)).fenced(true))
        .await?;
    let fence_a = lock_a.fence().ok_or("no fencing token")?;
    println!("A holds the lock with token {fence_a}");
    storage.write(fence_a, "written by A")?;
    println!("A wrote");

    // A stalls and its lock expires. B waits for the lock (retrying until
    // A's keys expire) and gets a larger token.
    println!("A stalls ...");
    let lock_b = redlock
        .acquire(&LockOptions::new("ledger", Duration::from_secs(5)).fenced(true))
        .await?;
    let fence_b = lock_b.fence().ok_or("no fencing token")?;
    println!("A's lock expired; B holds the lock with token {fence_b}");
    storage.write(fence_b, "written by B")?;
    println!("B wrote");

    // A wakes up and writes as if it still held the lock.
    match storage.write(fence_a, "late write by A") {
        Err(why) => println!("A wakes up and writes: {why}"),
        Ok(()) => return Err("the storage accepted a stale write".into()),
    }
    println!("storage holds {:?}", storage.value());

    lock_b.unlock().await?;
    // A's release finds B's token gone too: nothing to do, no error.
    lock_a.unlock().await?;
    redlock.quit().await?;
    println!("fencing finished");
    Ok(())
}
