//! Scoped locks (automatic extension, pushed loss, caps), release on drop and
//! status verdicts, on simulated nodes and tokio's paused clock.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::*;
use redlock_core::{Holder, LockError, LockOptions, Verdict};

#[tokio::test(start_paused = true)]
async fn using_returns_the_output_extends_while_running_and_releases() {
    let (redlock, nodes) = setup(5, exact());
    let ttl = ms(300);
    let observed = redlock
        .using("job", ttl, |lease| {
            let nodes = nodes.clone();
            async move {
                let token = lease.token().to_owned();
                // Run for ten TTLs; the lock must stay ours all along.
                for _ in 0..30 {
                    tokio::time::sleep(ms(100)).await;
                    assert!(lease.is_held(), "lease lost while nodes are healthy");
                    assert!(keys_with_token(&nodes, &token) >= 3);
                }
                (token, lease.remaining())
            }
        })
        .await;
    let (token, remaining) = match observed {
        Ok(v) => v,
        Err(e) => panic!("scoped lock failed: {e}"),
    };
    assert!(remaining > ms(0));
    settle(&nodes).await;
    assert_eq!(keys_with_token(&nodes, &token), 0);
    assert_eq!(total_keys(&nodes), 0);
    let extends = ops(&nodes[0], redlock_core::Operation::Extend).len();
    assert!(
        extends >= 9,
        "expected about one extension per 200 ms, saw {extends}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_majority_down_fires_lost_before_validity_ends_and_cancels_the_work() {
    let (redlock, nodes) = setup(5, exact());
    let ttl = ms(1000);
    let cancelled = Arc::new(AtomicBool::new(true));
    let flag = cancelled.clone();
    let handles = nodes.clone();
    let result = redlock
        .using("job", ttl, |lease| async move {
            for n in &handles[..3] {
                n.set_down(true);
            }
            let valid_until = lease.valid_until();
            lease.lost().await;
            let at = tokio::time::Instant::now().into_std();
            assert!(at < valid_until, "lost fired after valid_until");
            assert!(!lease.is_held());
            // Cancel mode: the future is dropped at the loss, so this point is
            // reached only if it was not.
            tokio::time::sleep(ms(10_000)).await;
            flag.store(false, Ordering::SeqCst);
        })
        .await;
    assert!(matches!(result, Err(LockError::Lost(_))), "{result:?}");
    assert!(
        cancelled.load(Ordering::SeqCst),
        "the work ran on after the loss"
    );
    for n in &nodes {
        n.heal();
    }
    // The release reached the healthy minority; the rest expires by TTL.
    tokio::time::sleep(ttl).await;
    settle(&nodes).await;
    assert_eq!(total_keys(&nodes), 0);
}

#[tokio::test(start_paused = true)]
async fn keep_mode_lets_the_work_finish_after_the_loss() {
    let (redlock, nodes) = setup(3, exact());
    let handles = nodes.clone();
    let result = redlock
        .scoped(
            &LockOptions::new("job", ms(500)).cancel_on_loss(false),
            |lease| async move {
                for n in &handles[..2] {
                    n.set_down(true);
                }
                lease.lost().await;
                "finished"
            },
        )
        .await;
    assert_eq!(result.ok(), Some("finished"));
}

#[tokio::test(start_paused = true)]
async fn a_minority_down_does_not_stop_extensions() {
    let (redlock, nodes) = setup(5, exact());
    nodes[3].set_down(true);
    nodes[4].set_hung(true);
    let result = redlock
        .using("job", ms(300), |lease| async move {
            tokio::time::sleep(ms(3000)).await;
            lease.is_held()
        })
        .await;
    assert_eq!(result.ok(), Some(true));
    for n in &nodes {
        n.heal();
    }
    settle(&nodes).await;
    assert_eq!(total_keys(&nodes), 0);
}

#[tokio::test(start_paused = true)]
async fn another_owner_taking_the_keys_is_reported_as_lost() {
    let (redlock, nodes) = setup(3, exact());
    let handles = nodes.clone();
    let result = redlock
        .using("job", ms(600), |lease| async move {
            // Simulate the keys expiring early everywhere (a clock jump) and
            // someone else taking them.
            for n in &handles {
                n.expire_all();
                n.put_key("job", "intruder", Some(ms(10_000)));
            }
            lease.lost().await;
        })
        .await;
    assert!(matches!(result, Err(LockError::Lost(_))), "{result:?}");
    settle(&nodes).await;
    // Our release did not touch the other owner's keys.
    assert_eq!(keys_with_token(&nodes, "intruder"), 3);
}

#[tokio::test(start_paused = true)]
async fn max_extensions_caps_the_hold() {
    let (redlock, nodes) = setup(3, exact());
    let started = tokio::time::Instant::now();
    let result = redlock
        .scoped(
            &LockOptions::new("job", ms(300)).max_extensions(2),
            |lease| async move {
                lease.lost().await;
            },
        )
        .await;
    assert!(matches!(result, Err(LockError::Lost(_))));
    let held = started.elapsed();
    // Acquire + two extensions at two thirds of the TTL, then one last TTL.
    assert!(held >= ms(600) && held < ms(1000), "held {held:?}");
    assert_eq!(ops(&nodes[0], redlock_core::Operation::Extend).len(), 2);
}

#[tokio::test(start_paused = true)]
async fn max_hold_stops_extending() {
    let (redlock, _nodes) = setup(3, exact());
    let started = tokio::time::Instant::now();
    let result = redlock
        .scoped(
            &LockOptions::new("job", ms(300)).max_hold(ms(1000)),
            |lease| async move { lease.lost().await },
        )
        .await;
    assert!(matches!(result, Err(LockError::Lost(_))));
    let held = started.elapsed();
    // Extensions at about 195, 390, ..., 975 ms; none after 1000 ms; the last
    // validity then runs out.
    assert!(held >= ms(1000) && held < ms(1300), "held {held:?}");
}

#[tokio::test(start_paused = true)]
async fn a_lock_dropped_without_unlock_is_released_in_the_background() {
    let (redlock, nodes) = setup(3, exact());
    let lock = match redlock.lock("dropped", ms(60_000)).await {
        Ok(l) => l,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(total_keys(&nodes), 3);
    drop(lock);
    settle(&nodes).await;
    assert_eq!(total_keys(&nodes), 0, "keys stayed until the TTL");
}

#[tokio::test(start_paused = true)]
async fn leave_to_ttl_keeps_the_keys() {
    let (redlock, nodes) = setup(3, exact());
    let lock = match redlock.lock("handover", ms(60_000)).await {
        Ok(l) => l,
        Err(e) => panic!("{e}"),
    };
    lock.leave_to_ttl();
    settle(&nodes).await;
    assert_eq!(total_keys(&nodes), 3);
}

#[tokio::test(start_paused = true)]
async fn status_tells_free_ours_other_contended_and_unknown() {
    let (redlock, nodes) = setup(5, exact());
    let free = redlock.status("r").await.ok().unwrap_or_default();
    assert_eq!(free.len(), 1);
    assert_eq!(free[0].verdict, Verdict::Free);

    let lock = match redlock.lock("r", ms(10_000)).await {
        Ok(l) => l,
        Err(e) => panic!("{e}"),
    };
    let ours = lock.status().await;
    match &ours[0].verdict {
        Verdict::HeldByUs { remaining } => assert!(*remaining > ms(9000)),
        v => panic!("expected held by us, got {v}"),
    }
    assert!(ours[0]
        .nodes
        .iter()
        .all(|v| v.holder == Ok(Some(Holder::Us(lock.token().to_owned())))));

    // Seen without the lock, the token is redacted.
    let other = redlock.status("r").await.ok().unwrap_or_default();
    assert!(matches!(other[0].verdict, Verdict::HeldByOther { .. }));
    for v in &other[0].nodes {
        match &v.holder {
            Ok(Some(Holder::Other(prefix))) => {
                assert!(
                    prefix.len() < lock.token().len() && lock.token().starts_with(prefix.as_str())
                )
            }
            h => panic!("expected a redacted holder, got {h:?}"),
        }
    }
    drop(lock);
    settle(&nodes).await;

    // Two owners, neither with a quorum, one node free: contended.
    for (i, n) in nodes.iter().enumerate() {
        match i {
            0 | 1 => n.put_key("c", "owner-a", Some(ms(5000))),
            2 | 3 => n.put_key("c", "owner-b", Some(ms(7000))),
            _ => {}
        }
    }
    let contended = redlock.status("c").await.ok().unwrap_or_default();
    match contended[0].verdict {
        Verdict::Contended { until_free } => {
            assert!(
                until_free > ms(6900) && until_free <= ms(7000),
                "{until_free:?}"
            )
        }
        ref v => panic!("expected contended, got {v}"),
    }

    // Three of five down: unknown.
    for n in &nodes[..3] {
        n.set_down(true);
    }
    let unknown = redlock.status("r").await.ok().unwrap_or_default();
    assert_eq!(unknown[0].verdict, Verdict::Unknown);
    assert_eq!(
        unknown[0]
            .nodes
            .iter()
            .filter(|v| v.holder.is_err())
            .count(),
        3
    );
}

#[tokio::test(start_paused = true)]
async fn a_failed_release_does_not_hide_the_output_and_reaches_the_hook() {
    let seen = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let hook_seen = seen.clone();
    let options = exact().on_node_error(move |event| {
        if event.operation == redlock_core::Operation::Release {
            if let Ok(mut s) = hook_seen.lock() {
                s.push(event.node.to_owned());
            }
        }
    });
    let (redlock, nodes) = setup(3, options);
    let handles = nodes.clone();
    let result = redlock
        .using("job", ms(10_000), |_lease| async move {
            // Every node fails from now on: the release at the end fails.
            for n in &handles {
                n.set_down(true);
            }
            "the output"
        })
        .await;
    assert_eq!(result.ok(), Some("the output"));
    let seen = seen.lock().map(|s| s.len()).unwrap_or(0);
    assert_eq!(seen, 3, "the hook did not hear of the failed releases");
}
