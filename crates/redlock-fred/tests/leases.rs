//! Scoped locks, release on drop, status and fencing on five real servers
//! through FredNode (the bodies live in `redlock_testkit::leases`).

use std::sync::Arc;

use redlock_core::Node;
use redlock_fred::FredNode;
use redlock_testkit::leases;
use redlock_testkit::RedisServer;

async fn five() -> (Vec<RedisServer>, Vec<Arc<dyn Node>>) {
    let mut servers = Vec::new();
    let mut nodes: Vec<Arc<dyn Node>> = Vec::new();
    for _ in 0..5 {
        let server = RedisServer::start().expect("redis-server");
        let node = FredNode::connect(&server.url()).await.expect("connect");
        nodes.push(Arc::new(node));
        servers.push(server);
    }
    (servers, nodes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn majority_paused_during_using() {
    let (servers, nodes) = five().await;
    leases::majority_paused_during_using(&servers, nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minority_paused_during_using() {
    let (servers, nodes) = five().await;
    leases::minority_paused_during_using(&servers, nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_lock_is_released() {
    let (servers, nodes) = five().await;
    leases::dropped_lock_is_released(&servers, nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fencing_tokens_increase() {
    let (servers, nodes) = five().await;
    leases::fencing_tokens_increase(&servers, nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_holder_is_fenced_off() {
    let (servers, nodes) = five().await;
    leases::stale_holder_is_fenced_off(&servers, nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_verdicts() {
    let (servers, nodes) = five().await;
    leases::status_verdicts(&servers, nodes).await;
}
