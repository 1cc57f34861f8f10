//! A node that stops answering, on real `redis-server` processes: the
//! shared checks of `redlock_testkit::stall` over `FredNode`s made from a
//! URL (the nodes own their clients).

use std::sync::Arc;
use std::time::Duration;

use redlock_core::{Acquire, Node, NodeError};
use redlock_fred::{Error, FredNode};
use redlock_testkit::conformance::{BoxError, Target};
use redlock_testkit::wait::until;
use redlock_testkit::{stall, RedisServer};

async fn node(target: Target, limit: usize) -> Result<Arc<dyn Node>, BoxError> {
    let Target::Single(url) = target else {
        return Err("single servers only".into());
    };
    let node = FredNode::builder()
        .max_outstanding(limit)
        .connect(&url)
        .await?;
    Ok(Arc::new(node))
}

redlock_testkit::stall_tests!(node);

/// Zero and absurd limits are refused when the node is built.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backlog_limit_is_checked() {
    for limit in [0, redlock_core::backlog::MAX_LIMIT + 1] {
        let err = FredNode::builder()
            .max_outstanding(limit)
            .connect("redis://127.0.0.1:1")
            .await
            .expect_err("an invalid limit");
        assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    }
}

/// Beyond the limit, an acquire to a stopped server fails at once with a
/// not-sent error; once the server continues, the admitted requests are
/// answered and the count goes back to zero.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_backlog_refuses_without_sending() {
    let server = RedisServer::start().expect("redis-server");
    let node = FredNode::builder()
        .max_outstanding(4)
        .response_timeout(Duration::from_millis(100))
        .connect(&server.url())
        .await
        .expect("connects");
    assert_eq!(node.max_outstanding(), 4);
    server.pause().expect("SIGSTOP");
    let ttl = Duration::from_secs(10);
    for i in 0..4 {
        let k = vec![format!("full:{i}")];
        let r = node.acquire(&k, "t", ttl).await;
        assert!(
            matches!(r, Err(NodeError::Connection(_))),
            "a stopped server answered {r:?}"
        );
    }
    assert_eq!(
        node.outstanding(),
        Some(4),
        "timed-out requests still count"
    );
    let r = node.acquire(&["full:x".to_owned()], "t", ttl).await;
    match r {
        Err(e @ NodeError::Backlog(_)) => assert!(!e.was_sent()),
        other => panic!("a full backlog answered {other:?}"),
    }
    // Releases always get in; one whose acquire still waits in the node's
    // queue, unsent, withdraws it instead: only the first acquire was
    // sent, so its release is all that is added.
    for i in 0..4 {
        let _ = node.release(&[format!("full:{i}")], "t").await;
    }
    assert_eq!(node.outstanding(), Some(2));
    server.resume().expect("SIGCONT");
    until(
        "every admitted request is answered",
        Duration::from_secs(20),
        || async { node.outstanding() == Some(0) },
    )
    .await;
    assert_eq!(
        node.acquire(&["full:y".to_owned()], "t", ttl)
            .await
            .expect("answers"),
        Acquire::Acquired
    );
    assert_eq!(
        node.release(&["full:y".to_owned()], "t")
            .await
            .expect("answers"),
        1
    );
    assert_eq!(
        stall::dbsize(&server),
        Some(0),
        "the releases followed the acquires"
    );
    node.quit().await.expect("quit");
}
