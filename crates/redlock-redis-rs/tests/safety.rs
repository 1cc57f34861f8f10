//! The safety checker (`redlock_testkit::checker`) over `RedisNode`: short
//! variants of every run in RELIABILITY.md. Each starts five fresh
//! redis-servers and stops them. Timings are printed, never asserted; the
//! full-length runs are `cargo run --release -p redlock-redis-rs --example
//! checker -- <scenario> <acquisitions>`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use redlock_core::{LockOptions, Node, Options, Redlock};
use redlock_redis_rs::RedisNode;
use redlock_testkit::checker::{self, Report};
use redlock_testkit::conformance::unique_prefix;
use redlock_testkit::wait::until;
use redlock_testkit::RedisServer;

async fn node(url: String) -> Result<Arc<dyn Node>, String> {
    RedisNode::connect(&url)
        .await
        .map(|n| Arc::new(n) as Arc<dyn Node>)
        .map_err(|e| e.to_string())
}

async fn run(name: &str, acquisitions: u64) -> Report {
    checker::completed_scenario(name, acquisitions, node).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_fault() {
    checker::no_fault_is_clean(node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minority_paused_in_a_loop() {
    run("pause-minority", 150).await.assert_safe();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minority_killed_and_restarted_after_the_ttl() {
    run("kill-minority", 150).await.assert_safe();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_jitter_and_resets_on_every_node() {
    run("proxy-chaos", 40).await.assert_safe();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_paused_past_its_ttl_learns_of_the_loss_before_writing() {
    let report = run("client-pause", 100).await;
    report.assert_safe();
    assert!(report.client_pauses >= 1, "{report}");
    // Every paused holder woke after its validity: its lease said so and it
    // did not write.
    assert!(
        report.lost_lock_detections >= report.client_pauses,
        "{report}"
    );
}

/// The unsafe cases: overlaps may happen; fencing must reject every stale
/// write so no update is lost.
fn assert_fenced(report: &Report) {
    assert_eq!(report.stale_writes_accepted, 0, "{report}");
    assert_eq!(report.lost_updates, 0, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn majority_restarted_without_persistence_is_caught_by_fencing() {
    assert_fenced(&run("restart-majority", 40).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_node_expiring_early_is_caught_by_fencing() {
    let report = run("expire-one", 100).await;
    assert_fenced(&report);
    assert!(report.holds_counted >= 100, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_majority_expiring_early_keeps_the_register_safe_through_fencing() {
    // Whether this run overlaps depends on timing; the overlap itself is
    // made certain by the next test.
    assert_fenced(&run("expire-majority", 100).await);
}

async fn client(servers: &[RedisServer], prefix: &str) -> Redlock {
    let mut nodes = Vec::new();
    for s in servers {
        nodes.push(RedisNode::connect(&s.url()).await.expect("connects"));
    }
    Redlock::new(nodes, Options::new().key_prefix(prefix)).expect("valid options")
}

/// The unsafe case at a chosen moment: one client holds the lock on all
/// five nodes; its key then vanishes early on three of them (a `DEL`, what a
/// clock jump forward does); a second client gets a quorum while the first
/// one's validity still runs. The two holds overlap, and only the fencing
/// tokens tell them apart: the later holder's is greater.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_majority_expiring_early_lets_a_second_holder_in_ordered_by_fencing() {
    let servers: Vec<RedisServer> = (0..5)
        .map(|_| RedisServer::start().expect("redis-server"))
        .collect();
    let prefix = unique_prefix("overlap");
    let (first_client, second_client) = (
        client(&servers, &prefix).await,
        client(&servers, &prefix).await,
    );
    let ttl = Duration::from_secs(30);
    let first = first_client
        .acquire(&LockOptions::new("job", ttl).fenced(true))
        .await
        .expect("free at first");
    let err = second_client.try_lock("job", ttl).await.unwrap_err();
    assert!(err.is_conflict(), "held on every node: {err}");

    let key = format!("{prefix}job");
    for s in &servers[..3] {
        assert_eq!(s.text(&["DEL", &key]).expect("DEL"), "1");
    }
    let second = second_client
        .acquire(&LockOptions::new("job", ttl).fenced(true))
        .await
        .expect("a majority lost the key: free again");
    let now = Instant::now();
    assert!(
        first.valid_until() > now && second.valid_until() > now,
        "the two holds overlap"
    );
    assert!(
        second.fence() > first.fence(),
        "fencing orders the holders: {:?} then {:?}",
        first.fence(),
        second.fence()
    );
    second.unlock().await.expect("released");
    // The first holder's key is left on the two other nodes only.
    first.unlock().await.expect("released what was left");
    // The unlock returns on a quorum of answers; the last may be on its way.
    until(
        "the key gone from every node",
        Duration::from_secs(10),
        || async {
            servers
                .iter()
                .all(|s| s.text(&["EXISTS", &key]).is_ok_and(|n| n == "0"))
        },
    )
    .await;
}
