//! # Five independent nodes, contending workers, one node paused
//!
//! The Redlock setting: five independent Redis masters, a lock is held when
//! three of them hold its token. Four workers contend for ONE resource for a
//! few seconds; a third of the way in, one node is paused (SIGSTOP: it stops
//! answering without closing its connections) and two thirds of the way in
//! it is resumed. Locking goes on while it is paused, since every request is
//! bounded by a per-node timeout and an attempt is decided as soon as a
//! quorum answered. At the end it prints the acquisitions per worker and per
//! phase, checks that no two workers ever held the lock at once, and that no
//! key is left on any node.
//!
//! Run it (starts five local `redis-server` processes on free ports, stops
//! them at the end):
//!
//! ```text
//! cargo run -p redlock-examples --example five_nodes
//! ```
//!
//! Or against servers you started (for example with `docker compose up`):
//!
//! ```text
//! REDLOCK_NODES=redis://127.0.0.1:6381,redis://127.0.0.1:6382,redis://127.0.0.1:6383,redis://127.0.0.1:6384,redis://127.0.0.1:6385 \
//!     cargo run -p redlock-examples --example five_nodes
//! ```
//!
//! External nodes cannot be sent SIGSTOP from here; the first one is paused
//! with `CLIENT PAUSE` instead, which looks the same to a client.
//! `FIVE_NODES_RUN_MS` sets the run time (default 4000 ms).

use std::error::Error;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redlock_examples::{count_keys, millis_from_env, urls_from_env};
use redlock_redis_rs::{Options, RedisNode, Redlock};
use redlock_testkit::RedisServer;

const WORKERS: usize = 4;
const RESOURCE: &str = "nightly-export";
const PHASES: [&str; 3] = ["before the pause", "one node paused", "after resume"];

/// What each worker counts.
#[derive(Default)]
struct Tally {
    /// Acquisitions per phase.
    acquired: [AtomicUsize; 3],
}

#[tokio::main]
async fn main() -> ExitCode {
    redlock_examples::exit(run().await)
}

async fn run() -> Result<(), Box<dyn Error>> {
    let run_for = millis_from_env("FIVE_NODES_RUN_MS", Duration::from_secs(4))?;
    let prefix = format!("redlock-example:five-nodes:{}:", std::process::id());

    // Five nodes: from REDLOCK_NODES, or started here (stopped on drop).
    let (urls, servers) = match urls_from_env("REDLOCK_NODES") {
        Some(urls) => {
            println!("using {} nodes from REDLOCK_NODES", urls.len());
            (urls, Vec::new())
        }
        None => {
            let servers = (0..5)
                .map(|_| RedisServer::start())
                .collect::<Result<Vec<_>, _>>()?;
            let urls: Vec<String> = servers.iter().map(|s| s.url()).collect();
            println!("started 5 redis-server processes: {}", urls.join(" "));
            (urls, servers)
        }
    };

    // One RedisNode per independent server. The per-node timeout bounds how
    // long a paused node can delay anything.
    let nodes = urls
        .iter()
        .map(|u| RedisNode::open(u))
        .collect::<Result<Vec<_>, _>>()?;
    let redlock = Redlock::new(
        nodes,
        Options::new()
            .key_prefix(prefix.clone())
            .node_timeout(Duration::from_millis(50))
            .retry_count(-1)
            .retry_delay(Duration::from_millis(2))
            .retry_jitter(Duration::from_millis(3)),
    )?;
    println!(
        "{} nodes, quorum {}; {WORKERS} workers contend for {RESOURCE:?} for {run_for:?}",
        redlock.nodes().len(),
        redlock.quorum()
    );

    let phase = Arc::new(AtomicU8::new(0));
    let holders = Arc::new(AtomicUsize::new(0));
    let overlaps = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(AtomicUsize::new(0));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let tallies: Vec<Arc<Tally>> = (0..WORKERS).map(|_| Arc::default()).collect();

    let mut workers = Vec::new();
    for tally in &tallies {
        let (redlock, tally, phase) = (redlock.clone(), tally.clone(), phase.clone());
        let (holders, overlaps, errors) = (holders.clone(), overlaps.clone(), errors.clone());
        let mut stop = stop_rx.clone();
        workers.push(tokio::spawn(async move {
            loop {
                let lock = tokio::select! {
                    r = redlock.lock(RESOURCE, Duration::from_secs(5)) => r,
                    _ = stop.wait_for(|s| *s) => break,
                };
                let lock = match lock {
                    Ok(lock) => lock,
                    Err(e) => {
                        if errors.fetch_add(1, Ordering::SeqCst) == 0 {
                            eprintln!("lock failed: {e}");
                        }
                        continue;
                    }
                };
                // The critical section: nobody else may be in here.
                if holders.fetch_add(1, Ordering::SeqCst) != 0 {
                    overlaps.fetch_add(1, Ordering::SeqCst);
                }
                tally.acquired[usize::from(phase.load(Ordering::SeqCst))]
                    .fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(1)).await;
                holders.fetch_sub(1, Ordering::SeqCst);
                if let Err(e) = lock.unlock().await {
                    if errors.fetch_add(1, Ordering::SeqCst) == 0 {
                        eprintln!("unlock failed: {e}");
                    }
                }
            }
        }));
    }

    // The timeline: run, pause node 0, run, resume it, run.
    let third = run_for / 3;
    tokio::time::sleep(third).await;
    let paused_at = Instant::now();
    pause(&servers, &urls[0], third).await?;
    println!("paused node 0 ({}) at {:?}", urls[0], third);
    phase.store(1, Ordering::SeqCst);
    tokio::time::sleep(third).await;
    phase.store(2, Ordering::SeqCst);
    resume(&servers, &urls[0]).await?;
    println!("resumed node 0 after {:?}", paused_at.elapsed());
    tokio::time::sleep(third).await;
    stop_tx.send_replace(true);
    for w in workers {
        w.await?;
    }

    // What happened.
    for (i, t) in tallies.iter().enumerate() {
        let per_phase: Vec<usize> = t
            .acquired
            .iter()
            .map(|a| a.load(Ordering::SeqCst))
            .collect();
        println!(
            "worker {i}: {} acquisitions ({} {}, {} {}, {} {})",
            per_phase.iter().sum::<usize>(),
            per_phase[0],
            PHASES[0],
            per_phase[1],
            PHASES[1],
            per_phase[2],
            PHASES[2]
        );
    }
    let total = |p: usize| -> usize {
        tallies
            .iter()
            .map(|t| t.acquired[p].load(Ordering::SeqCst))
            .sum()
    };
    for (p, name) in PHASES.iter().enumerate() {
        println!("{name}: {} acquisitions", total(p));
    }
    let overlaps = overlaps.load(Ordering::SeqCst);
    println!("errors: {}", errors.load(Ordering::SeqCst));
    println!("overlapping holders: {overlaps}");
    if overlaps > 0 {
        return Err("two workers held the lock at once".into());
    }
    if total(1) == 0 {
        return Err("no lock was acquired while one node was paused".into());
    }

    // Nothing left behind: every release reached every node (the paused node
    // runs its queued requests in order once resumed, release after
    // acquire). The TTL is 5 s, so an expired key cannot pass for a
    // released one within this 2 s window.
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let mut left = 0;
        for url in &urls {
            left += count_keys(url, &prefix).await?;
        }
        if left == 0 {
            println!("no keys left on any node");
            break;
        }
        if Instant::now() >= deadline {
            return Err(format!("{left} keys left on the nodes").into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    redlock.quit().await?;
    drop(servers);
    println!("five_nodes finished");
    Ok(())
}

/// SIGSTOP for a server started here; `CLIENT PAUSE` (bounded by `at_most`)
/// for one started elsewhere.
async fn pause(
    servers: &[RedisServer],
    url: &str,
    at_most: Duration,
) -> Result<(), Box<dyn Error>> {
    match servers.first() {
        Some(server) => server.pause()?,
        None => {
            let mut con = redis::Client::open(url)?
                .get_multiplexed_async_connection()
                .await?;
            // Longer than the pause, in case resume is never sent.
            let ms = (at_most * 3).as_millis().to_string();
            redis::cmd("CLIENT")
                .arg(&["PAUSE", ms.as_str(), "ALL"])
                .exec_async(&mut con)
                .await?;
        }
    }
    Ok(())
}

async fn resume(servers: &[RedisServer], url: &str) -> Result<(), Box<dyn Error>> {
    match servers.first() {
        Some(server) => server.resume()?,
        None => {
            let mut con = redis::Client::open(url)?
                .get_multiplexed_async_connection()
                .await?;
            redis::cmd("CLIENT")
                .arg("UNPAUSE")
                .exec_async(&mut con)
                .await?;
        }
    }
    Ok(())
}
