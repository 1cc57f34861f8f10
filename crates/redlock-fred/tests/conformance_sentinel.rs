//! The conformance suite behind Sentinel, then a failover in the middle of a
//! test, after which locking keeps working on the new master.

mod common;

use std::time::Duration;

use redlock_core::{Acquire, Node, Options, Redlock};
use redlock_fred::FredNode;
use redlock_testkit::conformance::{self, eventually};
use redlock_testkit::Sentinel;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_behind_sentinel_and_failover() {
    let deployment = Sentinel::start().expect("sentinel deployment");
    conformance::run_on_target(&common::factory, &deployment.target()).await;

    let url = common::sentinel_url(&deployment.sentinel_urls(), Sentinel::MASTER_NAME);
    let node = FredNode::connect(&url).await.expect("connect via sentinel");
    assert!(node.id().starts_with("redis-sentinel://"), "{}", node.id());
    let prefix = conformance::unique_prefix("sentinel-failover");
    let redlock =
        Redlock::new([node.clone()], Options::new().key_prefix(prefix.clone())).expect("redlock");

    // A lock held across the failover.
    let before = deployment.current_master().port();
    let lock = redlock
        .lock("held-across", Duration::from_secs(60))
        .await
        .expect("lock before failover");
    let new_port = tokio::task::block_in_place(|| deployment.failover()).expect("failover");
    assert_ne!(before, new_port);

    // The node follows the new master: within a bounded time a lock is
    // taken, and its key is on the new master.
    let key = vec![format!("{prefix}after")];
    let taken = eventually(Duration::from_secs(20), || {
        let node = node.clone();
        let key = key.clone();
        async move {
            matches!(
                node.acquire(&key, "tok", Duration::from_secs(30)).await,
                Ok(Acquire::Acquired)
            )
        }
    })
    .await;
    assert!(taken, "the node did not follow the master after failover");
    assert_eq!(deployment.current_master().port(), new_port);
    assert_eq!(
        deployment
            .current_master()
            .text(&["GET", &key[0]])
            .expect("GET"),
        "tok"
    );
    assert_eq!(node.release(&key, "tok").await.expect("release"), 1);

    // Releasing the lock from before the failover is not an error (its key
    // may or may not have been replicated), and new locks keep coming.
    lock.unlock().await.expect("unlock after failover");
    for i in 0..5 {
        let lock = redlock
            .lock(format!("r{i}"), Duration::from_secs(10))
            .await
            .expect("lock after failover");
        lock.unlock().await.expect("unlock");
    }
    let left = deployment
        .current_master()
        .text(&["KEYS", &format!("{prefix}*")])
        .expect("KEYS");
    assert_eq!(left, "", "keys left behind");
}
