//! A node's durability: the TTL checked against its replica wait, and an
//! acquire that did not reach its replicas counted as a failed vote whose
//! keys are released.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use redlock_core::{
    Acquire, Durability, DurabilityError, Extend, InvalidArgument, KeyState, LockError, Node,
    NodeError, NodeOutcome, Redlock,
};
use redlock_testkit::sim::SimNode;

/// A simulated node that claims a replica wait and, while `lagging`, runs
/// each acquire and extend and then answers like a `WAIT` that reached no
/// replica.
#[derive(Debug)]
struct Replicated {
    sim: SimNode,
    durability: Durability,
    lagging: AtomicBool,
}

impl Replicated {
    fn new(wait: Duration) -> Arc<Self> {
        Arc::new(Replicated {
            sim: SimNode::new("replicated"),
            durability: Durability::replicas(1, wait).expect("valid"),
            lagging: AtomicBool::new(false),
        })
    }

    fn not_replicated(&self) -> NodeError {
        NodeError::NotReplicated {
            required: 1,
            reached: 0,
        }
    }
}

#[redlock_core::async_trait]
impl Node for Replicated {
    fn id(&self) -> &str {
        self.sim.id()
    }

    async fn acquire(
        &self,
        keys: &[String],
        token: &str,
        ttl: Duration,
    ) -> Result<Acquire, NodeError> {
        let answer = self.sim.acquire(keys, token, ttl).await?;
        if self.lagging.load(Ordering::SeqCst) {
            return Err(self.not_replicated());
        }
        Ok(answer)
    }

    async fn release(&self, keys: &[String], token: &str) -> Result<u64, NodeError> {
        self.sim.release(keys, token).await
    }

    async fn extend(
        &self,
        keys: &[String],
        token: &str,
        ttl: Duration,
    ) -> Result<Extend, NodeError> {
        let answer = self.sim.extend(keys, token, ttl).await?;
        if self.lagging.load(Ordering::SeqCst) {
            return Err(self.not_replicated());
        }
        Ok(answer)
    }

    async fn inspect(&self, keys: &[String]) -> Result<Vec<KeyState>, NodeError> {
        self.sim.inspect(keys).await
    }

    fn durability(&self) -> Durability {
        self.durability
    }
}

#[tokio::test(start_paused = true)]
async fn a_ttl_the_replica_wait_would_use_up_is_refused_before_sending() {
    let node = Replicated::new(ms(50));
    let redlock = Redlock::from_nodes(vec![node.clone() as Arc<dyn Node>], exact()).expect("valid");
    // 52 ms less the 2 ms drift allowance leaves exactly the 50 ms wait.
    match redlock.lock("job", ms(52)).await {
        Err(LockError::InvalidArgument(InvalidArgument::Durability(
            DurabilityError::TimeoutNotBelowTtl { timeout, ttl, .. },
        ))) => {
            assert_eq!((timeout, ttl), (ms(50), ms(52)));
        }
        other => panic!("expected the replica wait to be refused: {other:?}"),
    }
    assert!(node.sim.log().is_empty(), "nothing sent on bad input");
    let mut lock = redlock.lock("job", ms(1_000)).await.expect("fits");
    match lock.extend(ms(40)).await {
        Err(LockError::InvalidArgument(InvalidArgument::Durability(_))) => {}
        other => panic!("an extend to a ttl below the wait is refused: {other:?}"),
    }
    lock.unlock().await.expect("released");
    assert!(node.sim.keys().is_empty());
}

#[tokio::test(start_paused = true)]
async fn an_acquire_that_reached_no_replica_fails_and_leaves_nothing() {
    let node = Replicated::new(ms(20));
    node.lagging.store(true, Ordering::SeqCst);
    let redlock = Redlock::from_nodes(vec![node.clone() as Arc<dyn Node>], exact()).expect("valid");
    let err = redlock
        .lock("job", ms(1_000))
        .await
        .expect_err("a vote that did not reach its replica");
    let failure = match &err {
        LockError::NoQuorum(f) => f,
        other => panic!("expected no quorum: {other:?}"),
    };
    assert!(
        failure.nodes.iter().any(|n| matches!(
            n.outcome,
            NodeOutcome::Error(NodeError::NotReplicated {
                required: 1,
                reached: 0
            })
        )),
        "{err}"
    );
    settle(std::slice::from_ref(&node.sim)).await;
    assert!(
        node.sim.keys().is_empty(),
        "the key the master took is released"
    );
    // Once the replica keeps up, the same node grants the lock.
    node.lagging.store(false, Ordering::SeqCst);
    let lock = redlock.lock("job", ms(1_000)).await.expect("replicated");
    lock.unlock().await.expect("released");
}
