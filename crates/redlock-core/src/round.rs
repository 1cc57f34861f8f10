//! One round: the same request sent to every node at once, each bounded by a
//! per-node timeout, decided as soon as the outcome is known either way.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use futures_util::future::{self, Either};

use crate::error::{Failure, NodeOutcome, NodeReport, Operation};
use crate::node::{Node, NodeError};
use crate::options::{NodeErrorEvent, Options};
use crate::runtime::BoxFuture;
use crate::shared::{Shared, Target};
use crate::telemetry;

/// The longest a background probe waits for an unresponsive node's answer
/// before giving up (the next round that finds the node still unresponsive
/// starts another one).
const PROBE_LIMIT: Duration = Duration::from_secs(10);

/// In a contended acquire (some node already answered "held by another")
/// that the answers so far cannot decide, the nodes still silent are waited
/// for at most this many times as long as the round has taken so far
/// (at least [`CONTENDED_STRAGGLER_FLOOR`], at most the per-node timeout).
/// Meanwhile this attempt holds the nodes it got and blocks every other
/// contender, which is what made a stopped minority so costly: each client
/// waited out the full per-node timeout once per stop, holding its keys.
/// Giving up early is always safe (the attempt fails and releases
/// everywhere); the silent nodes are then treated as unresponsive until a
/// probe hears from them, which for a node that is merely slow is one round
/// trip. An uncontended attempt still waits the full per-node timeout.
const CONTENDED_STRAGGLERS: u32 = 8;
/// The least a contended acquire waits for silent nodes.
const CONTENDED_STRAGGLER_FLOOR: Duration = Duration::from_millis(5);

/// Marks node `i` unresponsive (see [`Health`](crate::health::Health)) and
/// makes sure a probe is running for it. A runtime that cannot spawn leaves
/// the node responsive (every round then waits for it, as without this
/// mechanism).
fn suspect(shared: &Arc<Shared>, i: usize, key: Option<&str>) {
    let health = &shared.health[i];
    if !health.start_probe() {
        health.suspect();
        return;
    }
    let owned = shared.clone();
    let keys: Vec<String> = key.map(str::to_owned).into_iter().collect();
    let probe: BoxFuture<'static, ()> = Box::pin(async move {
        let node = owned.nodes[i].clone();
        let answered = matches!(
            future::select(node.inspect(&keys), owned.runtime.sleep(PROBE_LIMIT)).await,
            Either::Left(_)
        );
        owned.health[i].end_probe(answered);
    });
    if shared.runtime.spawn(probe) {
        health.suspect();
    } else {
        health.end_probe(false);
    }
}

/// How a node's answer counts towards the decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Vote {
    /// Counts towards the quorum.
    Yes,
    /// The node answered, but against us (held by another, not ours any more).
    No,
    /// The node failed or timed out.
    Fail,
}

/// The result of a round.
#[derive(Debug)]
pub(crate) struct Round {
    pub outcomes: Vec<NodeOutcome>,
    pub yes: usize,
    pub no: usize,
    pub fail: usize,
    /// The round was cut short because `until` passed.
    pub out_of_time: bool,
}

impl Round {
    /// A round in which no node answered (yet).
    pub fn undecided(nodes: usize, out_of_time: bool) -> Round {
        Round {
            outcomes: vec![NodeOutcome::Undecided; nodes],
            yes: 0,
            no: 0,
            fail: 0,
            out_of_time,
        }
    }

    /// The bounded failure summary of this round.
    pub fn failure(
        &self,
        shared: &Shared,
        operation: Operation,
        target: &Target,
        attempts: u32,
    ) -> Box<Failure> {
        Box::new(Failure {
            operation,
            resources: target.names.to_vec(),
            attempts,
            quorum: shared.quorum,
            nodes: self.reports(&shared.nodes),
        })
    }

    /// Per node, what it did.
    pub fn reports(&self, nodes: &[Arc<dyn Node>]) -> Vec<NodeReport> {
        nodes
            .iter()
            .zip(&self.outcomes)
            .map(|(n, o)| NodeReport {
                node: n.id().to_owned(),
                outcome: o.clone(),
            })
            .collect()
    }
}

type Answer = Result<(Vote, NodeOutcome), NodeError>;

/// Sends `call` to every node concurrently and returns once a quorum of
/// `Yes` votes is reached, once a quorum has become impossible, once every
/// node has answered, or once `until` passes — whichever comes first.
/// Nodes known to be unresponsive (see [`Health`](crate::health::Health)) count as failed for the
/// "impossible" decision while they have not answered, and as
/// [`NodeOutcome::Unresponsive`] if the round ends before they do.
///
/// Every node's future is polled at least once before the round returns, so
/// that each request is committed to that node's order (see the `Node`
/// contract); futures still pending at the decision are then dropped.
/// `probe_key` is a key of the request, read by the background probe of a
/// node that timed out (it picks the cluster slot the request went to).
pub(crate) async fn run<'a, F>(
    shared: &'a Arc<Shared>,
    operation: Operation,
    resources: &'a [String],
    probe_key: Option<&'a str>,
    timeout: Duration,
    until: Option<Instant>,
    call: F,
) -> Round
where
    F: Fn(usize, &'a dyn Node) -> BoxFuture<'a, Answer>,
{
    let nodes = &shared.nodes;
    let quorum = shared.quorum;
    let runtime = &shared.runtime;
    let options = &shared.options;
    let n = nodes.len();
    let mut pending: Vec<Option<BoxFuture<'a, Answer>>> = nodes
        .iter()
        .enumerate()
        .map(|(i, node)| Some(call(i, node.as_ref())))
        .collect();
    // Every node's request started now and has the same bound, so one timer
    // serves them all.
    let mut node_timer = runtime.sleep(timeout);
    let mut expired = false;
    let mut round = Round {
        outcomes: vec![NodeOutcome::Undecided; n],
        yes: 0,
        no: 0,
        fail: 0,
        out_of_time: false,
    };
    let started = runtime.now();
    let mut straggler: Option<BoxFuture<'static, ()>> = None;
    let mut deadline = until.map(|t| {
        let left = t.saturating_duration_since(runtime.now());
        runtime.sleep(left)
    });

    future::poll_fn(|cx| {
        if !expired && node_timer.as_mut().poll(cx).is_ready() {
            expired = true;
        }
        let mut waiting_on_unresponsive = 0;
        for (i, slot) in pending.iter_mut().enumerate() {
            let Some(fut) = slot.as_mut() else { continue };
            // The node's answer, or `None` when the per-node timeout passed
            // first.
            let answer = match fut.as_mut().poll(cx) {
                Poll::Ready(answer) => Some(answer),
                Poll::Pending if expired => None,
                Poll::Pending => {
                    if shared.health[i].is_unresponsive() {
                        waiting_on_unresponsive += 1;
                    }
                    continue;
                }
            };
            *slot = None;
            let (vote, outcome) = match answer {
                Some(Ok(v)) => {
                    shared.health[i].answered();
                    v
                }
                Some(Err(e)) => {
                    shared.health[i].answered();
                    report(options, nodes[i].id(), operation, resources, Some(&e));
                    (Vote::Fail, NodeOutcome::Error(e))
                }
                None => {
                    suspect(shared, i, probe_key);
                    report(options, nodes[i].id(), operation, resources, None);
                    (Vote::Fail, NodeOutcome::TimedOut)
                }
            };
            match vote {
                Vote::Yes => round.yes += 1,
                Vote::No => round.no += 1,
                Vote::Fail => round.fail += 1,
            }
            round.outcomes[i] = outcome;
        }
        let answered = round.yes + round.no + round.fail;
        if round.yes >= quorum
            || round.no + round.fail + waiting_on_unresponsive > n - quorum
            || answered + waiting_on_unresponsive == n
        {
            return Poll::Ready(());
        }
        if let Some(d) = deadline.as_mut() {
            if Pin::new(d).poll(cx).is_ready() {
                round.out_of_time = true;
                return Poll::Ready(());
            }
        }
        if operation == Operation::Acquire && round.no > 0 {
            // Contended, and only nodes that have not answered yet can
            // still make (or rule out) a quorum: see `CONTENDED_STRAGGLERS`.
            let limit = straggler.get_or_insert_with(|| {
                let so_far = runtime.now().saturating_duration_since(started);
                let wait = so_far
                    .saturating_mul(CONTENDED_STRAGGLERS)
                    .max(CONTENDED_STRAGGLER_FLOOR)
                    .min(timeout);
                runtime.sleep(wait)
            });
            if limit.as_mut().poll(cx).is_ready() {
                for (i, slot) in pending.iter().enumerate() {
                    if slot.is_some() {
                        suspect(shared, i, probe_key);
                    }
                }
                return Poll::Ready(());
            }
        }
        Poll::Pending
    })
    .await;
    for (i, slot) in pending.iter().enumerate() {
        if slot.is_some() && shared.health[i].is_unresponsive() {
            round.fail += 1;
            round.outcomes[i] = NodeOutcome::Unresponsive;
            // Keep a probe running while the node is skipped.
            suspect(shared, i, probe_key);
        }
    }
    round
}

/// Tells the node-error hook and `tracing` about a node that failed or
/// timed out (`error: None`).
pub(crate) fn report(
    options: &Options,
    node: &str,
    operation: Operation,
    resources: &[String],
    error: Option<&NodeError>,
) {
    let event = NodeErrorEvent {
        node,
        operation,
        resources,
        error,
    };
    tracing::warn!(node, %operation, ?resources, "{event}");
    telemetry::node_error(node, operation);
    if let Some(hook) = &options.on_node_error {
        hook(&event);
    }
}
