//! Releasing by token, for tools that did not take the lock themselves (the
//! `redlock release` command, an operator cleaning up).

use std::sync::Arc;
use std::time::Duration;

use futures_util::future;

use crate::error::{InvalidArgument, LockError, NodeOutcome, Operation};
use crate::node::NodeError;
use crate::release::release_all;
use crate::round::Round;
use crate::shared::{Shared, Target};

/// What a release by token did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Released {
    /// Keys deleted, summed over all nodes.
    pub keys_deleted: u64,
    /// Nodes that answered.
    pub nodes_answered: usize,
}

/// Releases `target` where it holds `token`; see
/// [`Redlock::release_token`](crate::Redlock::release_token).
pub(crate) async fn release_token(
    shared: &Arc<Shared>,
    target: &Target,
    token: &str,
) -> Result<Released, LockError> {
    if token.is_empty() {
        return Err(
            InvalidArgument::Token("empty token: pass the token the lock was taken with").into(),
        );
    }
    let round = release_all(
        shared,
        &target.names,
        &target.keys,
        token,
        Duration::from_secs(10),
    )
    .await;
    if round.yes < shared.quorum {
        return Err(LockError::NoQuorum(round.failure(
            shared,
            Operation::Release,
            target,
            1,
        )));
    }
    Ok(Released {
        keys_deleted: round
            .outcomes
            .iter()
            .map(|o| match o {
                NodeOutcome::Released(n) => *n,
                _ => 0,
            })
            .sum(),
        nodes_answered: round.yes,
    })
}

/// Deletes `target` whoever holds it; see
/// [`Redlock::force_release`](crate::Redlock::force_release).
pub(crate) async fn force_release(
    shared: &Arc<Shared>,
    target: &Target,
) -> Result<Released, LockError> {
    let timeout = shared.node_timeout(Duration::from_secs(10));
    let keys: &[String] = &target.keys;
    let per_node = future::join_all(shared.nodes.iter().map(|node| async move {
        let sleep = shared.runtime.sleep(timeout);
        let work = async {
            let states = node.inspect(keys).await?;
            let mut deleted = 0;
            for state in states {
                if let Some(holder) = state.holder {
                    deleted += node
                        .release(std::slice::from_ref(&state.key), &holder)
                        .await?;
                }
            }
            Ok::<u64, NodeError>(deleted)
        };
        futures_util::pin_mut!(work);
        match future::select(work, sleep).await {
            future::Either::Left((Ok(n), _)) => Ok(n),
            future::Either::Left((Err(e), _)) => Err(NodeOutcome::Error(e)),
            future::Either::Right(_) => Err(NodeOutcome::TimedOut),
        }
    }))
    .await;
    let answered = per_node.iter().filter(|r| r.is_ok()).count();
    if answered < shared.quorum {
        let round = Round {
            outcomes: per_node
                .into_iter()
                .map(|r| r.map_or_else(|o| o, NodeOutcome::Released))
                .collect(),
            yes: answered,
            no: 0,
            fail: shared.nodes.len() - answered,
            out_of_time: false,
        };
        return Err(LockError::NoQuorum(round.failure(
            shared,
            Operation::Release,
            target,
            1,
        )));
    }
    Ok(Released {
        keys_deleted: per_node.iter().flatten().sum(),
        nodes_answered: answered,
    })
}
