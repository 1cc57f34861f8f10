//! # A master behind Redis Sentinel, locking across a failover
//!
//! A Sentinel deployment (a master, its replicas, the sentinels watching
//! them) is ONE Redlock node. The node asks the sentinels where the master
//! is, and asks again when the connection breaks or the server it talks to
//! answers `READONLY` (it became a replica). This example locks, forces a
//! failover (the replica becomes master), and locks again.
//!
//! Run it (starts a master, a replica and three sentinels on free local
//! ports and stops them at the end):
//!
//! ```text
//! cargo run -p redlock-examples --example sentinel
//! ```
//!
//! Or against sentinels you have (no failover is forced on them):
//!
//! ```text
//! REDLOCK_SENTINELS=redis://127.0.0.1:26379,redis://127.0.0.1:26380 REDLOCK_SENTINEL_MASTER=mymaster \
//!     cargo run -p redlock-examples --example sentinel
//! ```

use std::error::Error;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use redlock_examples::urls_from_env;
use redlock_redis_rs::{Options, RedisNode, Redlock};
use redlock_testkit::Sentinel;

#[tokio::main]
async fn main() -> ExitCode {
    redlock_examples::exit(run().await)
}

async fn run() -> Result<(), Box<dyn Error>> {
    let (sentinels, master, local) = match urls_from_env("REDLOCK_SENTINELS") {
        Some(urls) => {
            let master =
                std::env::var("REDLOCK_SENTINEL_MASTER").unwrap_or_else(|_| "mymaster".into());
            (urls, master, None)
        }
        None => {
            println!("starting a master, a replica and three sentinels ...");
            let deployment = Sentinel::start()?;
            println!("master on port {}", deployment.current_master().port());
            (
                deployment.sentinel_urls(),
                Sentinel::MASTER_NAME.to_string(),
                Some(Arc::new(deployment)),
            )
        }
    };
    println!("sentinels: {}; master name {master:?}", sentinels.join(" "));

    let node = RedisNode::connect_sentinel(&sentinels, &master).await?;
    // Retries ride over the moment the master moves.
    let redlock = Redlock::new(
        [node],
        Options::new()
            .key_prefix("redlock-example:sentinel:")
            .retry_count(20)
            .retry_delay(Duration::from_millis(100)),
    )?;

    let lock = redlock.lock("invoice-run", Duration::from_secs(10)).await?;
    println!("locked before the failover (attempts: {})", lock.attempts());
    lock.unlock().await?;

    match &local {
        Some(deployment) => {
            let deployment = deployment.clone();
            // Blocking: waits until every sentinel agrees on the new master.
            let new_port = tokio::task::spawn_blocking(move || deployment.failover()).await??;
            println!("failover done: the master is now on port {new_port}");
        }
        None => println!("external deployment: no failover forced"),
    }

    let lock = redlock.lock("invoice-run", Duration::from_secs(10)).await?;
    println!("locked after the failover (attempts: {})", lock.attempts());
    lock.unlock().await?;
    println!("unlocked");

    redlock.quit().await?;
    drop(local);
    println!("sentinel finished");
    Ok(())
}
