//! What users see of the API: Debug output, error messages.

mod common;

use std::error::Error;

use common::*;
use redlock_core::{InvalidArgument, LockError, LockOptions, NodeError, Redlock};

#[tokio::test(start_paused = true)]
async fn a_lock_never_prints_its_token() {
    let (redlock, _nodes) = setup(3, exact());
    let lock = redlock.lock("job", ms(1_000)).await.expect("free");
    let token = lock.token().to_owned();
    assert!(token.len() >= 16);
    for shown in [format!("{lock:?}"), format!("{lock:#?}")] {
        assert!(!shown.contains(&token), "token in {shown}");
        assert!(!shown.contains(&token[..8]), "token prefix in {shown}");
        assert!(
            shown.contains("<redacted>") && shown.contains("job"),
            "{shown}"
        );
    }
    lock.unlock().await.expect("released");
}

/// Every message in the chain, outermost first.
fn chain(e: &(dyn Error + 'static)) -> Vec<String> {
    let mut out = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push(s.to_string());
        cur = s.source();
    }
    out
}

#[tokio::test(start_paused = true)]
async fn an_error_message_does_not_repeat_its_source() {
    let (redlock, nodes) = setup(3, exact());
    let held = redlock.lock("job", ms(1_000)).await.expect("free");
    nodes[0].set_down(true);
    let errors: Vec<LockError> = vec![
        redlock.try_lock("job", ms(1_000)).await.expect_err("held"),
        redlock.lock("", ms(1_000)).await.expect_err("empty name"),
        LockError::from(InvalidArgument::ZeroTtl),
        redlock
            .acquire(&LockOptions::new("x", ms(100)).extend_when_remaining(ms(200)))
            .await
            .expect_err("threshold"),
    ];
    for err in &errors {
        let messages = chain(err);
        // Printed the usual way (the message, then each cause), nothing
        // appears twice.
        for (i, outer) in messages.iter().enumerate() {
            for inner in &messages[i + 1..] {
                assert!(
                    !outer.contains(inner.as_str()),
                    "{outer:?} repeats its source {inner:?}"
                );
            }
        }
        assert!(!messages[0].is_empty());
    }
    // A conflict names the cause and each node's part in one line.
    let conflict = errors[0].to_string();
    assert!(
        conflict.starts_with("resource is held by another owner"),
        "{conflict}"
    );
    assert!(conflict.contains("held by another"), "{conflict}");
    held.unlock().await.ok();
    let node_error = NodeError::Connection("refused".into());
    assert_eq!(chain(&node_error), [node_error.to_string()]);
}

#[test]
fn bad_nodes_and_options_are_typed_errors() {
    let none: Vec<redlock_testkit::sim::SimNode> = Vec::new();
    assert_eq!(
        Redlock::new(none, exact()).expect_err("no nodes"),
        InvalidArgument::NoNodes
    );
    let nodes = redlock_testkit::sim::SimNode::many(3);
    let err = Redlock::new(nodes, exact().drift_factor(2.0)).expect_err("drift");
    assert_eq!(err, InvalidArgument::DriftFactor(2.0));
    assert!(err.to_string().contains("0.01"), "{err}");
}
