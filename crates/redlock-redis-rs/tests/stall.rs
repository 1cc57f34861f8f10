//! A node that stops answering, on real `redis-server` processes: the
//! shared checks of `redlock_testkit::stall` over `RedisNode`s opened from
//! a URL.

use std::sync::Arc;
use std::time::Duration;

use redlock_core::{Acquire, Node, NodeError};
use redlock_redis_rs::{Error, RedisNode};
use redlock_testkit::conformance::{BoxError, Target};
use redlock_testkit::wait::until;
use redlock_testkit::RedisServer;

async fn node(target: Target, limit: usize) -> Result<Arc<dyn Node>, BoxError> {
    let Target::Single(url) = target else {
        return Err("single servers only".into());
    };
    let node = RedisNode::builder()
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
        let err = RedisNode::builder()
            .max_outstanding(limit)
            .open("redis://127.0.0.1:1")
            .expect_err("an invalid limit");
        assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    }
}

/// Beyond the limit, an acquire to a stopped server fails at once with a
/// backlog error and is not sent: after the server resumes, only the
/// admitted acquires ran.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_backlog_refuses_without_sending() {
    let server = RedisServer::start().expect("redis-server");
    let node = RedisNode::builder()
        .max_outstanding(2)
        .connect(&server.url())
        .await
        .expect("connect");
    server.pause().expect("pause");
    let ttl = Duration::from_secs(60);
    let mut admitted = Vec::new();
    for i in 0..2 {
        let keys = vec![format!("full:{i}")];
        let pending =
            tokio::time::timeout(Duration::from_millis(20), node.acquire(&keys, "t", ttl));
        admitted.push(pending.await.is_err());
    }
    assert_eq!(admitted, [true, true], "a paused server cannot answer");
    assert_eq!(node.outstanding(), 2);
    let refused = tokio::time::timeout(
        Duration::from_secs(1),
        node.acquire(&["full:refused".to_string()], "t", ttl),
    )
    .await
    .expect("refused at once");
    assert!(matches!(refused, Err(NodeError::Backlog(2))), "{refused:?}");
    server.resume().expect("resume");
    until(
        "the admitted requests are answered after the resume",
        Duration::from_secs(10),
        || async { node.outstanding() == 0 },
    )
    .await;
    let answered = tokio::time::timeout(
        Duration::from_secs(10),
        node.acquire(&["full:after".to_string()], "t", ttl),
    )
    .await
    .expect("answered after the resume");
    assert_eq!(answered, Ok(Acquire::Acquired));
    assert_eq!(
        server.text(&["EXISTS", "full:refused"]).ok().as_deref(),
        Some("0")
    );
    assert_eq!(
        server.text(&["EXISTS", "full:0"]).ok().as_deref(),
        Some("1")
    );
}
