//! "Is it locked?", answered by quorum: who holds a resource on each node,
//! and what a majority says.

use std::fmt;
use std::time::Duration;

use crate::error::{NodeOutcome, Operation};
use crate::node::{KeyState, NodeError};
use crate::options::{default_node_timeout, drift};
use crate::round;
use crate::shared::{Shared, Target};
use futures_util::future::{self, Either};

/// A holder as shown by [`Redlock::status`](crate::Redlock::status): our own token in full, anyone
/// else's redacted to its first characters.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Holder {
    /// The key holds the token of the lock we asked about.
    Us(String),
    /// The key holds another token; only a short prefix is kept.
    Other(String),
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Holder::Us(t) => write!(f, "us ({t})"),
            Holder::Other(p) => write!(f, "another owner ({p}…)"),
        }
    }
}

/// One node's view of one resource.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NodeView {
    /// The node's id.
    pub node: String,
    /// `Ok(None)`: free on this node. `Ok(Some(holder))`: held.
    /// `Err(outcome)`: the node did not answer (error or timeout).
    pub holder: Result<Option<Holder>, NodeOutcome>,
    /// Remaining TTL of the key on this node.
    pub ttl: Option<Duration>,
}

/// What a quorum of nodes says about a resource.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Verdict {
    /// Free on a quorum of nodes: a lock attempt would not meet a holder
    /// there.
    Free,
    /// Held by the lock asked about on a quorum, safely for `remaining`.
    HeldByUs {
        /// Time until fewer than a quorum of nodes hold it, less drift.
        remaining: Duration,
    },
    /// Held by another owner on a quorum, safely for `remaining`.
    HeldByOther {
        /// Time until fewer than a quorum of nodes hold it, less drift.
        remaining: Duration,
    },
    /// Keys exist but no owner has a quorum, and not enough nodes are free:
    /// nobody holds a valid lock, yet new attempts fail until the stray keys
    /// expire (at most `until_free`).
    Contended {
        /// The longest remaining TTL among the stray keys.
        until_free: Duration,
    },
    /// Fewer than a quorum of nodes answered: nothing can be said.
    Unknown,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Free => f.write_str("free"),
            Verdict::HeldByUs { remaining } => write!(f, "held by us for {remaining:?}"),
            Verdict::HeldByOther { remaining } => {
                write!(f, "held by another owner for {remaining:?}")
            }
            Verdict::Contended { until_free } => {
                write!(
                    f,
                    "no owner has a quorum; stray keys expire within {until_free:?}"
                )
            }
            Verdict::Unknown => f.write_str("unknown (no quorum of nodes answered)"),
        }
    }
}

/// The status of one resource.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ResourceStatus {
    /// The resource name (without prefix).
    pub resource: String,
    /// Per node, in node order.
    pub nodes: Vec<NodeView>,
    /// The quorum verdict.
    pub verdict: Verdict,
}

/// How many characters of another owner's token a status shows.
const REDACTED_PREFIX: usize = 6;

/// Reads every node's view of `target` (waiting for all answers, each
/// bounded by the per-node timeout) and decides by quorum; `ours` is the
/// token to recognise as ours.
pub(crate) async fn status_of(
    shared: &Shared,
    target: &Target,
    ours: Option<&str>,
) -> Vec<ResourceStatus> {
    let timeout = shared
        .options
        .node_timeout
        .unwrap_or_else(|| default_node_timeout(Duration::from_secs(10)));
    let keys: &[String] = &target.keys;
    // A status is read-only and shows every node: wait for all answers
    // (each bounded by the per-node timeout).
    let answers: Vec<Result<Vec<KeyState>, NodeOutcome>> =
        future::join_all(shared.nodes.iter().map(|node| async move {
            let sleep = shared.runtime.sleep(timeout);
            let outcome = match future::select(node.inspect(keys), sleep).await {
                Either::Left((Ok(states), _)) => return Ok(states),
                Either::Left((Err(e), _)) => {
                    round::report(
                        &shared.options,
                        node.id(),
                        Operation::Inspect,
                        &target.names,
                        Some(&e),
                    );
                    NodeOutcome::Error(e)
                }
                Either::Right(_) => {
                    round::report(
                        &shared.options,
                        node.id(),
                        Operation::Inspect,
                        &target.names,
                        None,
                    );
                    NodeOutcome::TimedOut
                }
            };
            Err(outcome)
        }))
        .await;
    target
        .names
        .iter()
        .enumerate()
        .map(|(k, name)| {
            let (views, tokens): (Vec<NodeView>, Vec<Option<&str>>) = shared
                .nodes
                .iter()
                .zip(&answers)
                .map(|(node, answer)| view(node.id(), answer, k, ours))
                .unzip();
            let verdict = verdict(&views, &tokens, shared.quorum, shared.options.drift_factor);
            ResourceStatus {
                resource: name.clone(),
                nodes: views,
                verdict,
            }
        })
        .collect()
}

/// One node's view, and the full token behind it (kept for grouping only).
fn view<'a>(
    node: &str,
    answer: &'a Result<Vec<KeyState>, NodeOutcome>,
    k: usize,
    ours: Option<&str>,
) -> (NodeView, Option<&'a str>) {
    let states = match answer {
        Ok(states) => states,
        Err(outcome) => {
            let view = NodeView {
                node: node.to_owned(),
                holder: Err(outcome.clone()),
                ttl: None,
            };
            return (view, None);
        }
    };
    let Some(state) = states.get(k) else {
        let view = NodeView {
            node: node.to_owned(),
            holder: Err(NodeOutcome::Error(NodeError::Protocol(
                "inspect returned fewer entries than keys".into(),
            ))),
            ttl: None,
        };
        return (view, None);
    };
    let holder = state.holder.as_ref().map(|t| {
        if Some(t.as_str()) == ours {
            Holder::Us(t.clone())
        } else {
            Holder::Other(t.chars().take(REDACTED_PREFIX).collect())
        }
    });
    let view = NodeView {
        node: node.to_owned(),
        holder: Ok(holder),
        ttl: state.ttl,
    };
    (view, state.holder.as_deref())
}

fn verdict(
    views: &[NodeView],
    tokens: &[Option<&str>],
    quorum: usize,
    drift_factor: f64,
) -> Verdict {
    let answered = views.iter().filter(|v| v.holder.is_ok()).count();
    if answered < quorum {
        return Verdict::Unknown;
    }
    let free = views
        .iter()
        .filter(|v| matches!(v.holder, Ok(None)))
        .count();
    if free >= quorum {
        return Verdict::Free;
    }
    // Group the held keys by full token (redacted prefixes may collide).
    let mut groups: Vec<(&str, bool, Vec<Duration>)> = Vec::new();
    for (v, token) in views.iter().zip(tokens) {
        let (Ok(Some(holder)), Some(token)) = (&v.holder, token) else {
            continue;
        };
        let ttl = v.ttl.unwrap_or(Duration::MAX);
        match groups.iter_mut().find(|(t, _, _)| t == token) {
            Some((_, _, ttls)) => ttls.push(ttl),
            None => groups.push((token, matches!(holder, Holder::Us(_)), vec![ttl])),
        }
    }
    for (_, ours, mut ttls) in groups {
        if ttls.len() >= quorum {
            ttls.sort_unstable_by(|a, b| b.cmp(a));
            let quorum_ttl = ttls[quorum - 1];
            let remaining = quorum_ttl.saturating_sub(drift(quorum_ttl, drift_factor));
            return if ours {
                Verdict::HeldByUs { remaining }
            } else {
                Verdict::HeldByOther { remaining }
            };
        }
    }
    let until_free = views.iter().filter_map(|v| v.ttl).max().unwrap_or_default();
    Verdict::Contended { until_free }
}
