//! Runnable programs for redlock-rs, one per use case. Run one with
//! `cargo run -p redlock-examples --example <name>`:
//!
//! - `quickstart`: one Redis at `REDIS_URL`; lock, extend, unlock, `using`.
//! - `five_nodes`: five independent nodes, contending workers, one node
//!   paused mid-run.
//! - `cluster`: a whole Redis Cluster as one node; a lock over keys in
//!   several hash slots.
//! - `sentinel`: a master behind Sentinel, locking across a failover.
//! - `fred_cluster`: the cluster example through `redlock-fred`.
//! - `fencing`: fencing tokens and a storage that rejects a stale holder.
//!
//! The examples that need several servers start them on free loopback ports
//! through `redlock-testkit` (`redis-server` must be installed) unless URLs
//! are given in the environment, and stop them when they end.
//!
//! This library holds the few helpers they share.

use std::time::Duration;

/// The comma-separated URLs in environment variable `var`, or `None` when it
/// is unset or empty.
pub fn urls_from_env(var: &str) -> Option<Vec<String>> {
    let list: Vec<String> = std::env::var(var)
        .ok()?
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    (!list.is_empty()).then_some(list)
}

/// A duration in milliseconds from environment variable `var`, or `default`
/// when unset. A value that is not a number is an error that names it.
pub fn millis_from_env(var: &str, default: Duration) -> Result<Duration, String> {
    match std::env::var(var) {
        Ok(v) => v
            .trim()
            .parse::<u64>()
            .map(Duration::from_millis)
            .map_err(|e| format!("{var}={v:?} is not a number of milliseconds: {e}")),
        Err(_) => Ok(default),
    }
}

/// How many keys starting with `prefix` the server at `url` holds (`KEYS`,
/// fine for a demo, not for a production server).
pub async fn count_keys(url: &str, prefix: &str) -> Result<usize, redis::RedisError> {
    let client = redis::Client::open(url)?;
    let mut con = client.get_multiplexed_async_connection().await?;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut con)
        .await?;
    Ok(keys.len())
}

/// The exit status of an example: success, or the error printed (with its
/// `Display`, not `Debug`) and failure.
pub fn exit(result: Result<(), Box<dyn std::error::Error>>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
