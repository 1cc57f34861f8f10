//! One round: the same request sent to every node at once, each bounded by a
//! per-node timeout, decided as soon as the outcome is known either way.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use futures_util::future::{self, Either};

use crate::error::{NodeOutcome, NodeReport, Operation};
use crate::node::{Node, NodeError};
use crate::options::{NodeErrorEvent, Options};
use crate::runtime::{BoxFuture, Runtime};

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
///
/// Every node's future is polled at least once before the round returns, so
/// that each request is committed to that node's order (see the `Node`
/// contract); futures still pending at the decision are then dropped.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn run<'a, F>(
    nodes: &'a [Arc<dyn Node>],
    quorum: usize,
    runtime: &'a Arc<dyn Runtime>,
    options: &'a Options,
    operation: Operation,
    resources: &'a [String],
    timeout: Duration,
    until: Option<Instant>,
    call: F,
) -> Round
where
    F: Fn(&'a dyn Node) -> BoxFuture<'a, Answer>,
{
    let n = nodes.len();
    let mut pending: Vec<Option<BoxFuture<'a, Option<Answer>>>> = nodes
        .iter()
        .map(|node| {
            let request = call(node.as_ref());
            let sleep = runtime.sleep(timeout);
            let f: BoxFuture<'a, Option<Answer>> = Box::pin(async move {
                match future::select(request, sleep).await {
                    Either::Left((answer, _)) => Some(answer),
                    Either::Right(_) => None,
                }
            });
            Some(f)
        })
        .collect();
    let mut round = Round {
        outcomes: vec![NodeOutcome::Undecided; n],
        yes: 0,
        no: 0,
        fail: 0,
        out_of_time: false,
    };
    let mut deadline = until.map(|t| {
        let left = t.saturating_duration_since(runtime.now());
        runtime.sleep(left)
    });

    future::poll_fn(|cx| {
        for (i, slot) in pending.iter_mut().enumerate() {
            let Some(fut) = slot.as_mut() else { continue };
            let Poll::Ready(answer) = fut.as_mut().poll(cx) else {
                continue;
            };
            *slot = None;
            let (vote, outcome) = match answer {
                Some(Ok(v)) => v,
                Some(Err(e)) => {
                    report(options, nodes[i].id(), operation, resources, Some(&e));
                    (Vote::Fail, NodeOutcome::Error(e))
                }
                None => {
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
        if round.yes >= quorum || round.no + round.fail > n - quorum || answered == n {
            return Poll::Ready(());
        }
        if let Some(d) = deadline.as_mut() {
            if Pin::new(d).poll(cx).is_ready() {
                round.out_of_time = true;
                return Poll::Ready(());
            }
        }
        Poll::Pending
    })
    .await;
    round
}

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
    crate::telemetry::node_error(node, operation);
    if let Some(hook) = &options.on_node_error {
        hook(&event);
    }
}
