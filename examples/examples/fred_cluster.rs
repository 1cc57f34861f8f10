//! # A Redis Cluster as ONE Redlock node, through the fred client
//!
//! The `cluster` example with `redlock-fred`'s [`FredNode`] instead of
//! `redlock-redis-rs`: a lock over several resources whose keys live in
//! different hash slots, split by slot and made all or nothing by the
//! adapter (never a `CROSSSLOT` error).
//!
//! Run it (starts a 3-master cluster on free local ports and stops it at
//! the end; `redis-server` and `redis-cli` must be installed):
//!
//! ```text
//! cargo run -p redlock-examples --example fred_cluster
//! ```
//!
//! Or against a cluster you have (any node works as a seed):
//!
//! ```text
//! REDLOCK_CLUSTER=redis://127.0.0.1:7000,redis://127.0.0.1:7001 cargo run -p redlock-examples --example fred_cluster
//! ```

use std::error::Error;
use std::process::ExitCode;
use std::time::Duration;

use redlock_core::slot::hash_slot;
use redlock_core::{Node, Options, Redlock};
use redlock_examples::urls_from_env;
use redlock_fred::FredNode;
use redlock_testkit::RedisCluster;

const PREFIX: &str = "redlock-example:fred-cluster:";

#[tokio::main]
async fn main() -> ExitCode {
    redlock_examples::exit(run().await)
}

async fn run() -> Result<(), Box<dyn Error>> {
    let (seeds, _cluster) = match urls_from_env("REDLOCK_CLUSTER") {
        Some(seeds) => (seeds, None),
        None => {
            println!("starting a Redis Cluster with 3 masters ...");
            let cluster = RedisCluster::start(3, 0)?;
            (cluster.urls(), Some(cluster))
        }
    };

    // fred names a cluster with one URL: the first seed, then `node=` for
    // each further one.
    let url = cluster_url(&seeds)?;
    let node = FredNode::connect(&url).await?;
    println!(
        "connected to {} (clustered: {})",
        node.id(),
        node.is_clustered()
    );
    let redlock = Redlock::new([node], Options::new().key_prefix(PREFIX).retry_count(0))?;

    let orders: Vec<String> = (1..=6).map(|i| format!("order:{i}")).collect();
    for o in &orders {
        let key = format!("{PREFIX}{o}");
        println!("  {key} -> slot {}", hash_slot(key.as_bytes()));
    }

    let mut lock = redlock.lock(&orders[..], Duration::from_secs(10)).await?;
    println!("locked all {} orders at once", lock.resources().len());
    match redlock.try_lock("order:2", Duration::from_secs(10)).await {
        Err(e) if e.is_conflict() => println!("order:2 alone: refused, it is held"),
        Err(e) => return Err(e.into()),
        Ok(_) => return Err("order:2 was locked twice".into()),
    }
    lock.extend(Duration::from_secs(20)).await?;
    println!("extended all of them at once");
    lock.unlock().await?;
    println!("unlocked all of them");

    // All or nothing.
    let other = redlock.lock("order:6", Duration::from_secs(10)).await?;
    match redlock.try_lock(&orders[..], Duration::from_secs(10)).await {
        Err(e) if e.is_conflict() => println!("all six while order:6 is held: refused"),
        Err(e) => return Err(e.into()),
        Ok(_) => return Err("locked all six while order:6 was held".into()),
    }
    let free = redlock
        .try_lock(&orders[..5], Duration::from_secs(10))
        .await?;
    println!("the other five are still free: nothing was left behind");
    free.unlock().await?;
    other.unlock().await?;

    redlock.quit().await?;
    println!("fred_cluster finished");
    Ok(())
}

/// `redis-cluster://h1:p1?node=h2:p2&node=h3:p3` from `redis://h:p` seeds.
fn cluster_url(seeds: &[String]) -> Result<String, Box<dyn Error>> {
    let hosts: Vec<&str> = seeds
        .iter()
        .map(|s| {
            s.strip_prefix("redis://")
                .ok_or_else(|| format!("expected a redis:// seed URL, got {s:?}"))
        })
        .collect::<Result<_, _>>()?;
    let (first, rest) = hosts.split_first().ok_or("no seed URL")?;
    let nodes: Vec<String> = rest.iter().map(|h| format!("node={h}")).collect();
    Ok(if nodes.is_empty() {
        format!("redis-cluster://{first}")
    } else {
        format!("redis-cluster://{first}?{}", nodes.join("&"))
    })
}
