//! # A whole Redis Cluster as ONE Redlock node
//!
//! A Redis Cluster replicates each slot to its own replicas; to Redlock it
//! is one deployment, so it is ONE node (quorum 1). This example locks
//! several resources at once whose keys live in different hash slots (and
//! so on different masters): the adapter splits the request by slot and
//! makes it all or nothing, so a `CROSSSLOT` error never reaches you, and a
//! lock that fails on one slot leaves nothing behind on the others.
//!
//! Run it (starts a 3-master cluster on free local ports and stops it at
//! the end; `redis-server` and `redis-cli` must be installed):
//!
//! ```text
//! cargo run -p redlock-examples --example cluster
//! ```
//!
//! Or against a cluster you have (any node works as a seed):
//!
//! ```text
//! REDLOCK_CLUSTER=redis://127.0.0.1:7000,redis://127.0.0.1:7001 cargo run -p redlock-examples --example cluster
//! ```
//!
//! For independent fault tolerance, give several clusters (one node each)
//! to one `Redlock`. See `fred_cluster` for the same with `redlock-fred`.

use std::error::Error;
use std::process::ExitCode;
use std::time::Duration;

use redlock_core::slot::hash_slot;
use redlock_examples::urls_from_env;
use redlock_redis_rs::{Options, RedisNode, Redlock};
use redlock_testkit::RedisCluster;

const PREFIX: &str = "redlock-example:cluster:";

#[tokio::main]
async fn main() -> ExitCode {
    redlock_examples::exit(run().await)
}

async fn run() -> Result<(), Box<dyn Error>> {
    // The seeds: from REDLOCK_CLUSTER, or a local cluster started here.
    let (seeds, _cluster) = match urls_from_env("REDLOCK_CLUSTER") {
        Some(seeds) => (seeds, None),
        None => {
            println!("starting a Redis Cluster with 3 masters ...");
            let cluster = RedisCluster::start(3, 0)?;
            (cluster.urls(), Some(cluster))
        }
    };
    println!("cluster seeds: {}", seeds.join(" "));

    let node = RedisNode::connect_cluster(&seeds).await?;
    let redlock = Redlock::new([node], Options::new().key_prefix(PREFIX).retry_count(0))?;
    println!(
        "one Redlock node for the whole cluster, quorum {}",
        redlock.quorum()
    );

    // Six accounts; their keys fall into different slots.
    let accounts: Vec<String> = (1..=6).map(|i| format!("account:{i}")).collect();
    for a in &accounts {
        let key = format!("{PREFIX}{a}");
        println!("  {key} -> slot {}", hash_slot(key.as_bytes()));
    }

    // One lock over all of them, across slots and masters.
    let mut lock = redlock.lock(&accounts[..], Duration::from_secs(10)).await?;
    println!("locked all {} accounts at once", lock.resources().len());

    // Any one of them is now taken.
    match redlock.try_lock("account:3", Duration::from_secs(10)).await {
        Err(e) if e.is_conflict() => println!("account:3 alone: refused, it is held"),
        Err(e) => return Err(e.into()),
        Ok(_) => return Err("account:3 was locked twice".into()),
    }
    lock.extend(Duration::from_secs(20)).await?;
    println!("extended all of them at once");
    lock.unlock().await?;
    println!("unlocked all of them");

    // All or nothing: someone holds account:5, so locking all six fails,
    // and what the attempt took on the other slots is given back.
    let other = redlock.lock("account:5", Duration::from_secs(10)).await?;
    match redlock
        .try_lock(&accounts[..], Duration::from_secs(10))
        .await
    {
        Err(e) if e.is_conflict() => println!("all six while account:5 is held: refused"),
        Err(e) => return Err(e.into()),
        Ok(_) => return Err("locked all six while account:5 was held".into()),
    }
    let rest: Vec<&String> = accounts.iter().filter(|a| *a != "account:5").collect();
    let free = redlock.try_lock(rest, Duration::from_secs(10)).await?;
    println!("the other five are still free: nothing was left behind");
    free.unlock().await?;
    other.unlock().await?;

    redlock.quit().await?;
    println!("cluster finished");
    Ok(())
}
