//! Configuration mistakes: nodes that refuse the credentials, the same
//! server listed twice, oversized resource names; and recognising one's own
//! lock in a status.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use redlock_core::{
    async_trait, Acquire, Extend, Holder, InvalidArgument, KeyState, LockError, Node, NodeError,
    NodeOutcome, Options, Redlock, Verdict, MAX_KEY_BYTES,
};
use redlock_testkit::sim::SimNode;

/// A node whose server refuses the password on every request.
#[derive(Debug, Default)]
struct Refusing {
    id: String,
    calls: AtomicUsize,
}

impl Refusing {
    fn new(id: &str) -> Arc<Refusing> {
        Arc::new(Refusing {
            id: id.to_owned(),
            calls: AtomicUsize::new(0),
        })
    }

    fn refuse(&self) -> NodeError {
        self.calls.fetch_add(1, Ordering::SeqCst);
        NodeError::Auth("WRONGPASS invalid username-password pair".into())
    }
}

#[async_trait]
impl Node for Refusing {
    fn id(&self) -> &str {
        &self.id
    }
    async fn acquire(&self, _: &[String], _: &str, _: Duration) -> Result<Acquire, NodeError> {
        Err(self.refuse())
    }
    async fn release(&self, _: &[String], _: &str) -> Result<u64, NodeError> {
        Err(self.refuse())
    }
    async fn extend(&self, _: &[String], _: &str, _: Duration) -> Result<Extend, NodeError> {
        Err(self.refuse())
    }
    async fn inspect(&self, _: &[String]) -> Result<Vec<KeyState>, NodeError> {
        Err(self.refuse())
    }
}

fn forever() -> Options {
    Options::new()
        .retry_count(-1)
        .retry_delay(ms(100))
        .retry_jitter(Duration::ZERO)
        .node_timeout(ms(50))
}

fn redlock_over(refusing: &[Arc<Refusing>], sims: &[SimNode], options: Options) -> Redlock {
    let mut nodes: Vec<Arc<dyn Node>> = refusing
        .iter()
        .map(|r| r.clone() as Arc<dyn Node>)
        .collect();
    nodes.extend(sims.iter().map(SimNode::as_dyn));
    match Redlock::from_nodes(nodes, options) {
        Ok(r) => r,
        Err(e) => panic!("rejected: {e}"),
    }
}

#[test]
fn an_auth_error_took_no_effect_and_is_configuration() {
    let e = NodeError::Auth("NOPERM".into());
    // Refused before it ran: nothing to release.
    assert!(!e.was_sent());
    assert!(e.is_config());
    assert!(!NodeError::Connection("refused".into()).is_config());
}

#[tokio::test(start_paused = true)]
async fn refused_credentials_on_too_many_nodes_fail_at_once_as_configuration() {
    let refusing = [Refusing::new("r-0"), Refusing::new("r-1")];
    let sims = SimNode::many(1);
    let redlock = redlock_over(&refusing, &sims, forever());
    let started = tokio::time::Instant::now();
    let err = match redlock.lock("r", ms(1000)).await {
        Ok(_) => panic!("acquired with two of three nodes refusing"),
        Err(e) => e,
    };
    assert!(err.is_config(), "{err:?}");
    assert!(matches!(err, LockError::Config(_)));
    let f = err.failure().expect("summary");
    assert_eq!(f.attempts, 1, "a configuration error was retried");
    assert!(started.elapsed() < ms(100), "{:?}", started.elapsed());
    assert!(f
        .nodes
        .iter()
        .any(|n| matches!(&n.outcome, NodeOutcome::Error(NodeError::Auth(_)))));
    settle(&sims).await;
    assert_eq!(total_keys(&sims), 0, "the failed attempt left a key");
}

#[tokio::test(start_paused = true)]
async fn a_refusing_minority_does_not_stop_the_lock() {
    let refusing = [Refusing::new("r-0")];
    let sims = SimNode::many(2);
    let redlock = redlock_over(&refusing, &sims, forever());
    let lock = match redlock.lock("r", ms(1000)).await {
        Ok(l) => l,
        Err(e) => panic!("a quorum of healthy nodes is enough: {e}"),
    };
    assert!(refusing[0].calls.load(Ordering::SeqCst) >= 1);
    lock.unlock().await.expect("unlock");
}

#[tokio::test(start_paused = true)]
async fn an_outage_beside_a_refusing_node_stays_an_outage() {
    // One node refuses, one is down, one is up: the down node may come back,
    // so this is no quorum (retried), not a configuration error.
    let refusing = [Refusing::new("r-0")];
    let sims = SimNode::many(2);
    sims[0].set_down(true);
    let redlock = redlock_over(&refusing, &sims, exact());
    let err = match redlock.lock("r", ms(1000)).await {
        Ok(_) => panic!("acquired without a quorum"),
        Err(e) => e,
    };
    assert!(matches!(err, LockError::NoQuorum(_)), "{err:?}");
}

/// A node that only has an id.
#[derive(Debug)]
struct Named(&'static str);

#[async_trait]
impl Node for Named {
    fn id(&self) -> &str {
        self.0
    }
    async fn acquire(&self, _: &[String], _: &str, _: Duration) -> Result<Acquire, NodeError> {
        Ok(Acquire::Acquired)
    }
    async fn release(&self, _: &[String], _: &str) -> Result<u64, NodeError> {
        Ok(0)
    }
    async fn extend(&self, _: &[String], _: &str, _: Duration) -> Result<Extend, NodeError> {
        Ok(Extend::Extended)
    }
    async fn inspect(&self, _: &[String]) -> Result<Vec<KeyState>, NodeError> {
        Ok(Vec::new())
    }
}

#[tokio::test]
async fn the_same_server_twice_is_an_invalid_argument() {
    for ids in [
        ["redis://a", "redis://a", "redis://b"],
        ["redis://a", "redis://b", "redis://a:6379"],
        ["redis://A:6379/0", "redis://b", "redis://a"],
        ["redis://a/1", "redis://a/2", "redis://b"],
        ["redis://[::1]", "redis://[::1]:6379", "redis://b"],
    ] {
        let err = Redlock::new(ids.map(Named), Options::new()).expect_err("duplicate accepted");
        assert!(
            matches!(err, InvalidArgument::DuplicateNode { .. }),
            "{ids:?}: {err:?}"
        );
        assert!(err.to_string().contains("same server"), "{err}");
    }
    for ids in [
        ["redis://a", "redis://a:6380", "redis://b"],
        ["redis://a", "cluster:redis://a", "sentinel:m@redis://a"],
        ["sim-0", "sim-1", "sim-2"],
    ] {
        if let Err(e) = Redlock::new(ids.map(Named), Options::new()) {
            panic!("{ids:?} are distinct nodes: {e}");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn resource_names_above_64_kib_are_refused() {
    let (redlock, nodes) = setup(3, exact());
    let at_limit = "x".repeat(MAX_KEY_BYTES);
    let lock = redlock
        .lock(at_limit.as_str(), ms(1000))
        .await
        .expect("a name at the limit is accepted");
    lock.unlock().await.expect("unlock");
    let above = "x".repeat(MAX_KEY_BYTES + 1);
    for err in [
        redlock.lock(above.as_str(), ms(1000)).await.err(),
        redlock.status(above.as_str()).await.err(),
    ] {
        match err {
            Some(LockError::InvalidArgument(InvalidArgument::ResourceTooLong {
                index: 0,
                len,
                max,
            })) => {
                assert_eq!((len, max), (MAX_KEY_BYTES + 1, 64 * 1024));
            }
            other => panic!("expected ResourceTooLong, got {other:?}"),
        }
    }
    // The key prefix counts.
    let prefixed = Redlock::new(SimNode::many(1), exact().key_prefix("lock:")).expect("redlock");
    assert!(matches!(
        prefixed.lock(at_limit.as_str(), ms(1000)).await,
        Err(LockError::InvalidArgument(
            InvalidArgument::ResourceTooLong { .. }
        ))
    ));
    settle(&nodes).await;
    assert_eq!(total_keys(&nodes), 0, "nothing was sent for a refused name");
}

#[tokio::test(start_paused = true)]
async fn status_tells_our_lock_from_another_owners() {
    let (redlock, _nodes) = setup(3, exact());
    let lock = redlock.lock("mine", ms(10_000)).await.expect("lock");
    // Without a token every holder is another owner, ourselves included.
    let plain = redlock.status("mine").await.expect("status");
    assert!(matches!(plain[0].verdict, Verdict::HeldByOther { .. }));
    let with_token = redlock
        .status_with_token("mine", lock.token())
        .await
        .expect("status");
    assert!(
        matches!(with_token[0].verdict, Verdict::HeldByUs { .. }),
        "{:?}",
        with_token[0].verdict
    );
    assert!(with_token[0]
        .nodes
        .iter()
        .all(|v| matches!(&v.holder, Ok(Some(Holder::Us(t))) if t == lock.token())));
    let by_lock = lock.status().await;
    assert!(matches!(by_lock[0].verdict, Verdict::HeldByUs { .. }));
    // Another token is not ours.
    let other = redlock
        .status_with_token("mine", "not-the-token")
        .await
        .expect("status");
    assert!(matches!(other[0].verdict, Verdict::HeldByOther { .. }));
    assert!(matches!(
        redlock.status_with_token("mine", "").await,
        Err(LockError::InvalidArgument(InvalidArgument::Token(_)))
    ));
    lock.unlock().await.expect("unlock");
}
