//! A release whose connection breaks under it is written once more after
//! fred reconnects (releases are safe to repeat); acquires never are.

use std::sync::Arc;
use std::time::{Duration, Instant};

use redlock_core::{Acquire, Node};
use redlock_fred::FredNode;
use redlock_testkit::fault_proxy::{Direction, FaultProxy, Mode};
use redlock_testkit::RedisServer;

async fn until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

/// Resets every connection, waits until the proxy did it, then passes
/// traffic again.
async fn reset_then_heal(proxy: &FaultProxy) {
    let before = proxy.stats().resets;
    proxy.reset();
    assert!(until(Duration::from_secs(5), || proxy.stats().resets > before).await);
    proxy.heal();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_cut_off_by_a_reset_is_sent_again() {
    let server = RedisServer::start().expect("redis-server");
    let proxy = FaultProxy::start(server.port()).await.expect("proxy");
    let node = Arc::new(FredNode::connect(&proxy.url()).await.expect("connect"));
    let keys = vec!["fred-resend:k".to_owned()];
    let ttl = Duration::from_secs(60);
    assert_eq!(node.acquire(&keys, "tok", ttl).await, Ok(Acquire::Acquired));

    // The release runs on the server, but its reply never comes back...
    proxy.set_mode(Direction::ToClient, Mode::Hold);
    let releasing = {
        let node = node.clone();
        let keys = keys.clone();
        tokio::spawn(async move { node.release(&keys, "tok").await })
    };
    assert!(
        until(Duration::from_secs(5), || server
            .text(&["EXISTS", "fred-resend:k"])
            .is_ok_and(|t| t == "0"))
        .await
    );
    // ...because the connection is reset. The node reconnects and sends the
    // release again: it answers (0 deleted, the first one did it) instead of
    // a connection error.
    reset_then_heal(&proxy).await;
    let answer = tokio::time::timeout(Duration::from_secs(10), releasing)
        .await
        .expect("release answered")
        .expect("task");
    assert_eq!(answer, Ok(0));

    // An acquire cut off the same way is not repeated: it reports the error.
    proxy.set_mode(Direction::ToClient, Mode::Hold);
    let acquiring = {
        let node = node.clone();
        let keys = keys.clone();
        tokio::spawn(async move { node.acquire(&keys, "tok2", ttl).await })
    };
    assert!(
        until(Duration::from_secs(5), || server
            .text(&["EXISTS", "fred-resend:k"])
            .is_ok_and(|t| t == "1"))
        .await
    );
    reset_then_heal(&proxy).await;
    let answer = tokio::time::timeout(Duration::from_secs(10), acquiring)
        .await
        .expect("acquire answered")
        .expect("task");
    assert!(answer.is_err(), "an acquire was repeated: {answer:?}");
}
