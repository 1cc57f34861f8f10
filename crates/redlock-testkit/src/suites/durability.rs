//! `Builder::durability`: after an acquire or extend the node waits for
//! replicas (`WAIT`), and a write they did not acknowledge in time is a
//! failed vote whose keys are released. Each check starts a master and a
//! replica of it (stopped when the check ends, also when it panics) and
//! panics with a message on a violation.
//!
//! An adapter runs them all with [`durability_tests!`](crate::durability_tests),
//! given a [`DurableNodeFactory`].

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use redlock_core::{
    Acquire, Durability, DurabilityError, Extend, InvalidArgument, LockError, Node, NodeError,
    NodeOutcome, Options, Redlock,
};

use crate::conformance::BoxError;
use crate::server::single::ServerOptions;
use crate::wait::eventually_blocking;
use crate::RedisServer;

/// Builds the adapter's node for one server URL with the given
/// `Builder::durability` setting.
///
/// Implemented for every `Fn(String, Durability) -> Future<Output =
/// Result<Arc<dyn Node>, BoxError>>`.
#[async_trait::async_trait]
pub trait DurableNodeFactory: Send + Sync {
    /// A node connected to the server at `url`, waiting for replicas as
    /// `durability` says.
    async fn node(&self, url: &str, durability: Durability) -> Result<Arc<dyn Node>, BoxError>;
}

#[async_trait::async_trait]
impl<F, Fut> DurableNodeFactory for F
where
    F: Fn(String, Durability) -> Fut + Send + Sync,
    Fut: Future<Output = Result<Arc<dyn Node>, BoxError>> + Send,
{
    async fn node(&self, url: &str, durability: Durability) -> Result<Arc<dyn Node>, BoxError> {
        self(url.to_owned(), durability).await
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

async fn node(
    f: &dyn DurableNodeFactory,
    server: &RedisServer,
    durability: Durability,
) -> Arc<dyn Node> {
    match f.node(&server.url(), durability).await {
        Ok(n) => n,
        Err(e) => panic!("node factory failed for {durability:?}: {e}"),
    }
}

/// A master and one replica of it, in sync.
pub fn master_and_replica() -> (RedisServer, RedisServer) {
    let master = RedisServer::start().expect("master");
    let replica =
        RedisServer::start_with(ServerOptions::replica_of(master.port())).expect("replica");
    assert!(
        eventually_blocking(Duration::from_secs(20), || {
            replica
                .info_field("replication", "master_link_status")
                .as_deref()
                == Some("up")
                && master
                    .info_field("replication", "connected_slaves")
                    .as_deref()
                    == Some("1")
        }),
        "replica did not come in sync"
    );
    (master, replica)
}

fn token_on(server: &RedisServer, key: &str) -> String {
    server.text(&["GET", key]).expect("GET")
}

/// `Durability::replicas` refuses no replicas and a zero timeout with a
/// typed error that says what to give. No server needed.
pub fn invalid_durability_is_a_typed_error() {
    assert_eq!(
        Durability::replicas(0, ms(50)),
        Err(DurabilityError::NoReplicas)
    );
    assert_eq!(
        Durability::replicas(1, Duration::ZERO),
        Err(DurabilityError::ZeroTimeout)
    );
    let err = Durability::replicas(0, ms(50)).unwrap_err();
    assert!(err.to_string().contains("give 1 or more"), "{err}");
}

/// A TTL the replica wait would use up is refused before anything is sent.
pub async fn a_ttl_the_replica_wait_would_use_up_is_refused_before_sending(
    f: &dyn DurableNodeFactory,
) {
    let (master, _replica) = master_and_replica();
    let wait = Durability::replicas(1, ms(500)).expect("valid");
    let redlock =
        Redlock::from_nodes(vec![node(f, &master, wait).await], Options::new()).expect("redlock");
    match redlock.lock("short", ms(400)).await {
        Err(LockError::InvalidArgument(InvalidArgument::Durability(
            DurabilityError::TimeoutNotBelowTtl { timeout, .. },
        ))) => assert_eq!(timeout, ms(500)),
        other => panic!("expected the ttl to be refused: {other:?}"),
    }
    assert_eq!(token_on(&master, "short"), "", "nothing was sent");
}

/// With a replica in sync, the key (and an extension) is on the replica
/// when the call returns, also for a batch of concurrent acquires.
pub async fn with_a_replica_in_sync_the_key_is_on_the_replica_when_the_acquire_returns(
    f: &dyn DurableNodeFactory,
) {
    let (master, replica) = master_and_replica();
    let node = node(
        f,
        &master,
        Durability::replicas(1, ms(1_000)).expect("valid"),
    )
    .await;
    let keys = vec!["replicated".to_owned()];
    assert_eq!(
        node.acquire(&keys, "tok-1", Duration::from_secs(30)).await,
        Ok(Acquire::Acquired)
    );
    // WAIT returned: the replica applied the write before the reply.
    assert_eq!(token_on(&replica, "replicated"), "tok-1");
    assert_eq!(
        node.extend(&keys, "tok-1", Duration::from_secs(60)).await,
        Ok(Extend::Extended)
    );
    let ttl: u64 = replica
        .text(&["PTTL", "replicated"])
        .expect("PTTL")
        .parse()
        .expect("a number");
    assert!(ttl > 30_000, "the extension reached the replica: {ttl} ms");
    // A batch: concurrent acquires share one pipeline and one WAIT.
    let many: Vec<Vec<String>> = (0..20).map(|i| vec![format!("batch-{i}")]).collect();
    let answers = futures_util::future::join_all(
        many.iter()
            .map(|k| node.acquire(k, "tok-2", Duration::from_secs(30))),
    )
    .await;
    assert!(
        answers.iter().all(|a| *a == Ok(Acquire::Acquired)),
        "{answers:?}"
    );
    for k in &many {
        assert_eq!(token_on(&replica, &k[0]), "tok-2");
    }
}

/// With the replica stopped, an acquire (and an extend) fails as a vote
/// (`NodeError::NotReplicated`) and leaves no key; without the option the
/// same acquire succeeds on the master alone.
pub async fn with_the_replica_stopped_an_acquire_fails_as_a_vote_and_leaves_no_key(
    f: &dyn DurableNodeFactory,
) {
    let (master, replica) = master_and_replica();
    let durable = node(f, &master, Durability::replicas(1, ms(100)).expect("valid")).await;
    let plain = node(f, &master, Durability::Master).await;
    replica.pause().expect("SIGSTOP replica");

    // The node itself: the write ran on the master, the replica never
    // acknowledged it.
    let keys = vec!["lagging".to_owned()];
    assert_eq!(
        durable
            .acquire(&keys, "tok-1", Duration::from_secs(30))
            .await,
        Err(NodeError::NotReplicated {
            required: 1,
            reached: 0
        })
    );
    assert_eq!(durable.release(&keys, "tok-1").await, Ok(1));

    // Through the core: a failed vote, released before the call returns.
    let redlock = Redlock::from_nodes(
        vec![durable.clone()],
        Options::new().retry_count(0).node_timeout(ms(1_000)),
    )
    .expect("redlock");
    let err = redlock
        .lock("lagging", Duration::from_secs(30))
        .await
        .expect_err("no replica acknowledged");
    assert!(
        matches!(&err, LockError::NoQuorum(f) if f.nodes.iter().any(|n| matches!(
            n.outcome,
            NodeOutcome::Error(NodeError::NotReplicated { .. })
        ))),
        "{err}"
    );
    assert_eq!(
        token_on(&master, "lagging"),
        "",
        "no key left on the master"
    );

    // Without the option the same acquire succeeds on the master alone.
    let redlock = Redlock::from_nodes(vec![plain], Options::new().retry_count(0)).expect("redlock");
    let lock = redlock
        .lock("lagging", Duration::from_secs(30))
        .await
        .expect("the master alone grants it");
    assert_eq!(token_on(&master, "lagging"), lock.token());

    // An extend the replica does not acknowledge fails as a vote too.
    assert_eq!(
        durable
            .extend(
                &["lagging".to_owned()],
                lock.token(),
                Duration::from_secs(60)
            )
            .await,
        Err(NodeError::NotReplicated {
            required: 1,
            reached: 0
        })
    );
    replica.resume().expect("SIGCONT replica");
    lock.unlock().await.expect("released");
}

/// Emits the checks of [`suites::durability`](crate::suites::durability) as
/// tests, with their names: `$factory` is a [`DurableNodeFactory`], e.g. an
/// `async fn(String, Durability) -> Result<Arc<dyn Node>, BoxError>` that
/// builds the adapter's node with `Builder::durability`.
#[macro_export]
macro_rules! durability_tests {
    ($factory:path) => {
        #[test]
        fn invalid_durability_is_a_typed_error() {
            $crate::suites::durability::invalid_durability_is_a_typed_error();
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_ttl_the_replica_wait_would_use_up_is_refused_before_sending() {
            $crate::suites::durability::a_ttl_the_replica_wait_would_use_up_is_refused_before_sending(
                &$factory,
            )
            .await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn with_a_replica_in_sync_the_key_is_on_the_replica_when_the_acquire_returns() {
            $crate::suites::durability::with_a_replica_in_sync_the_key_is_on_the_replica_when_the_acquire_returns(
                &$factory,
            )
            .await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn with_the_replica_stopped_an_acquire_fails_as_a_vote_and_leaves_no_key() {
            $crate::suites::durability::with_the_replica_stopped_an_acquire_fails_as_a_vote_and_leaves_no_key(
                &$factory,
            )
            .await;
        }
    };
}
