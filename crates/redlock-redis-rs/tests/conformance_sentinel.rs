//! The conformance suite behind Sentinel, and following the master across a
//! failover.

mod common;

use std::time::Duration;

use redlock_core::{Acquire, Node};
use redlock_redis_rs::RedisNode;
use redlock_testkit::conformance::{self, eventually};
use redlock_testkit::Sentinel;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_behind_sentinel_and_failover() {
    let deployment = Sentinel::start().expect("sentinel deployment");
    conformance::run_on_target(&common::factory, &deployment.target()).await;

    let node = RedisNode::connect_sentinel(&deployment.sentinel_urls(), Sentinel::MASTER_NAME)
        .await
        .unwrap();
    let before = deployment.current_master().port();
    let new_port = deployment.failover().expect("failover");
    assert_ne!(before, new_port);
    // The node finds the new master: within a bounded time, an acquire
    // succeeds and the key is on the new master.
    let key = vec![conformance::unique_prefix("failover") + "k"];
    let node2 = node.clone();
    let k2 = key.clone();
    assert!(
        eventually(Duration::from_secs(15), || {
            let node = node2.clone();
            let k = k2.clone();
            async move {
                matches!(
                    node.acquire(&k, "tok", Duration::from_secs(30)).await,
                    Ok(Acquire::Acquired)
                )
            }
        })
        .await,
        "the node did not follow the master after failover"
    );
    let on_master = deployment.current_master().text(&["GET", &key[0]]).unwrap();
    assert_eq!(on_master, "tok");
    assert_eq!(deployment.current_master().port(), new_port);
    assert_eq!(node.release(&key, "tok").await.unwrap(), 1);
}
