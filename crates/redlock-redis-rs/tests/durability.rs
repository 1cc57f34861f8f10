//! `Builder::durability`: the shared checks of
//! `redlock_testkit::suites::durability` over `RedisNode`s (a master and a
//! replica started per check), and the checker's failover run with the
//! replica wait on a Sentinel deployment.

use std::sync::Arc;
use std::time::Duration;

use redlock_core::{Durability, Node};
use redlock_redis_rs::RedisNode;
use redlock_testkit::conformance::BoxError;

async fn node(url: String, durability: Durability) -> Result<Arc<dyn Node>, BoxError> {
    let node = RedisNode::builder()
        .durability(durability)
        .connect(&url)
        .await?;
    Ok(Arc::new(node))
}

redlock_testkit::durability_tests!(node);

/// The failover run of the checker with the replica behind at every kill:
/// with the replica wait, no acquire the replica missed is ever a held
/// lock, so no two holds overlap. (Without it, every such failover gave
/// an overlap; see RELIABILITY.md.)
#[cfg(feature = "sentinel")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failovers_with_a_lagging_replica_give_no_overlap_with_the_replica_wait() {
    use redlock_testkit::checker::{failover, Config, Failovers};
    use redlock_testkit::Sentinel;

    let wait = Durability::replicas(1, Duration::from_millis(50)).expect("valid");
    let config = Config::new("failover-wait")
        .contenders(3)
        .ttl(Duration::from_secs(8))
        .hold(Duration::from_secs(5));
    let run = failover(config, Failovers::new(2), |urls| async move {
        RedisNode::builder()
            .durability(wait)
            .connect_sentinel(&urls, Sentinel::MASTER_NAME, None)
            .await
            .map(|n| Arc::new(n) as Arc<dyn Node>)
            .map_err(|e| e.to_string())
    })
    .await
    .expect("failover run");
    println!("{run}");
    assert!(run.failovers >= 1, "{run}");
    // The master took new writes while the replica was behind.
    assert!(run.new_token_before_kill >= run.failovers, "{run}");
    assert!(run.report.acquisitions >= 1, "{run}");
    assert_eq!(run.report.overlaps, 0, "{run}");
    assert_eq!(run.report.lost_updates, 0, "{run}");
}
