//! Releasing by token, for tools that did not take the lock themselves (the
//! `redlock release` command, an operator cleaning up).

use std::time::Duration;

use futures_util::future;

use crate::error::{InvalidArgument, LockError, NodeOutcome, Operation};
use crate::redlock::{release_all, Redlock};
use crate::resources::IntoResources;

/// What a release by token did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Released {
    /// Keys deleted, summed over all nodes.
    pub keys_deleted: u64,
    /// Nodes that answered.
    pub nodes_answered: usize,
}

impl Redlock {
    /// Releases `resources` where they hold `token`. A wrong or expired token
    /// deletes nothing (`keys_deleted == 0`); it is not an error. Fails when
    /// fewer than a quorum of nodes answered.
    pub async fn release_token(
        &self,
        resources: impl IntoResources,
        token: &str,
    ) -> Result<Released, LockError> {
        if token.is_empty() {
            return Err(InvalidArgument::Token(
                "empty token: pass the token the lock was taken with",
            )
            .into());
        }
        let target = self.target(resources.into_resources())?;
        let round = release_all(
            &self.shared,
            &target.names,
            &target.keys,
            token,
            Duration::from_secs(10),
        )
        .await;
        if round.yes < self.shared.quorum {
            return Err(LockError::NoQuorum(self.failure(
                Operation::Release,
                &target,
                1,
                &round,
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

    /// Deletes `resources` whoever holds them: reads each node's holders and
    /// releases every key with the token found there. For operators; the
    /// holder, if alive, loses its lock without being told.
    pub async fn force_release(
        &self,
        resources: impl IntoResources,
    ) -> Result<Released, LockError> {
        let target = self.target(resources.into_resources())?;
        let shared = &self.shared;
        let timeout = crate::redlock::node_timeout(&shared.options, Duration::from_secs(10));
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
                Ok::<u64, crate::NodeError>(deleted)
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
            let round = crate::round::Round {
                outcomes: per_node
                    .into_iter()
                    .map(|r| r.map_or_else(|o| o, NodeOutcome::Released))
                    .collect(),
                yes: answered,
                no: 0,
                fail: shared.nodes.len() - answered,
                out_of_time: false,
            };
            return Err(LockError::NoQuorum(self.failure(
                Operation::Release,
                &target,
                1,
                &round,
            )));
        }
        Ok(Released {
            keys_deleted: per_node.iter().flatten().sum(),
            nodes_answered: answered,
        })
    }
}
