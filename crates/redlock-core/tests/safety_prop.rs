//! Property tests: random node faults, delays and cancellations with several
//! concurrent contenders never give two holders overlapping validity, and
//! (with faults that keep requests) leave no keys once everyone unlocked and
//! the queues drained.
//!
//! Each case runs on its own current-thread tokio runtime with a paused
//! clock, from a fixed proptest seed: the same cases, the same schedule, every
//! run.

mod common;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use common::*;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};
use redlock_core::{LockOptions, Operation, Redlock, Retries, RetryPolicy, Runtime, TokioRuntime};

/// A switch flipped on one node at a time.
#[derive(Debug, Clone)]
enum Fault {
    Delay(u64),
    Hung(bool),
    Down(bool),
    FailAfter(u64),
}

#[derive(Debug, Clone)]
struct FaultEvent {
    at_ms: u64,
    node: usize,
    fault: Fault,
}

#[derive(Debug, Clone)]
struct Contender {
    start_ms: u64,
    rounds: usize,
    ttl_ms: u64,
    hold_ms: u64,
    retries: u32,
    retry_delay_ms: u64,
    /// Extend once, halfway through the hold, to this TTL.
    extend_ms: Option<u64>,
    /// Give up on the lock call after this long (the future is dropped).
    cancel_after_ms: Option<u64>,
}

#[derive(Debug, Clone)]
struct Scenario {
    nodes: usize,
    node_timeout_ms: u64,
    initial_delays: Vec<u64>,
    faults: Vec<FaultEvent>,
    contenders: Vec<Contender>,
}

/// One holding: when the lock call returned, and when the holder stopped
/// relying on it (unlock, or the end of its validity, whichever first).
#[derive(Debug, Clone, Copy)]
struct Held {
    who: usize,
    from: Instant,
    to: Instant,
}

struct Outcome {
    held: Vec<Held>,
    leftover_keys: usize,
    /// Keys left that no refused release explains.
    unexplained: Vec<String>,
    elapsed: Duration,
}

fn fault(lossy: bool) -> BoxedStrategy<Fault> {
    let keeping = prop_oneof![
        3 => (0u64..120).prop_map(Fault::Delay),
        2 => any::<bool>().prop_map(Fault::Hung),
    ];
    if lossy {
        prop_oneof![
            5 => keeping,
            2 => any::<bool>().prop_map(Fault::Down),
            1 => (0u64..6).prop_map(Fault::FailAfter),
        ]
        .boxed()
    } else {
        keeping.boxed()
    }
}

fn scenario(lossy: bool, ttl: std::ops::Range<u64>) -> impl Strategy<Value = Scenario> {
    (1usize..=5, 10u64..60).prop_flat_map(move |(nodes, node_timeout_ms)| {
        let event = (0u64..800, 0..nodes, fault(lossy))
            .prop_map(|(at_ms, node, fault)| FaultEvent { at_ms, node, fault });
        let contender = (
            0u64..200,
            1usize..=3,
            ttl.clone(),
            0u64..400,
            0u32..6,
            5u64..120,
            proptest::option::weighted(0.7, ttl.clone()),
            proptest::option::weighted(0.2, 1u64..150),
        )
            .prop_map(
                |(
                    start_ms,
                    rounds,
                    ttl_ms,
                    hold_ms,
                    retries,
                    retry_delay_ms,
                    extend_ms,
                    cancel_after_ms,
                )| Contender {
                    start_ms,
                    rounds,
                    ttl_ms,
                    hold_ms,
                    retries,
                    retry_delay_ms,
                    extend_ms,
                    cancel_after_ms,
                },
            );
        (
            Just(nodes),
            Just(node_timeout_ms),
            proptest::collection::vec(0u64..40, nodes),
            proptest::collection::vec(event, 0..12),
            proptest::collection::vec(contender, 2..=4),
        )
            .prop_map(
                |(nodes, node_timeout_ms, initial_delays, faults, contenders)| Scenario {
                    nodes,
                    node_timeout_ms,
                    initial_delays,
                    faults,
                    contenders,
                },
            )
    })
}

fn run(s: &Scenario) -> Outcome {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => panic!("runtime: {e}"),
    };
    rt.block_on(play(s.clone()))
}

async fn play(s: Scenario) -> Outcome {
    let clock = TokioRuntime;
    let t0 = clock.now();
    let options = exact().node_timeout(ms(s.node_timeout_ms));
    let (redlock, nodes) = setup(s.nodes, options);
    for (node, d) in nodes.iter().zip(&s.initial_delays) {
        node.set_delay(ms(*d));
    }

    let injector = {
        let nodes = nodes.clone();
        let mut faults = s.faults.clone();
        faults.sort_by_key(|f| f.at_ms);
        tokio::spawn(async move {
            for f in faults {
                let now = TokioRuntime.now();
                let at = t0 + ms(f.at_ms);
                tokio::time::sleep(at.saturating_duration_since(now)).await;
                let node = &nodes[f.node];
                match f.fault {
                    Fault::Delay(d) => node.set_delay(ms(d)),
                    Fault::Hung(h) => node.set_hung(h),
                    Fault::Down(d) => node.set_down(d),
                    Fault::FailAfter(n) => node.fail_after(n),
                }
            }
        })
    };

    let held: Arc<Mutex<Vec<Held>>> = Arc::default();
    let mut tasks = Vec::new();
    for (who, c) in s.contenders.iter().cloned().enumerate() {
        let redlock = redlock.clone();
        let held = held.clone();
        tasks.push(tokio::spawn(async move {
            contend(who, c, redlock, held).await;
        }));
    }
    for t in tasks {
        if let Err(e) = t.await {
            panic!("contender panicked: {e}");
        }
    }
    if let Err(e) = injector.await {
        panic!("injector panicked: {e}");
    }
    for node in &nodes {
        node.heal();
    }
    settle(&nodes).await;
    let elapsed = clock.now() - t0;
    let leftover_keys = total_keys(&nodes);
    let mut unexplained = Vec::new();
    for node in &nodes {
        let refused = node.refused();
        for (key, k) in node.keys() {
            let explained = refused.iter().any(|r| {
                r.operation == Operation::Release && r.token.as_deref() == Some(k.token.as_str())
            });
            if !explained {
                unexplained.push(format!("{}: {key} = {}", node.name(), k.token));
            }
        }
    }
    let held = held.lock().unwrap_or_else(PoisonError::into_inner).clone();
    Outcome {
        held,
        leftover_keys,
        unexplained,
        elapsed,
    }
}

async fn contend(who: usize, c: Contender, redlock: Redlock, held: Arc<Mutex<Vec<Held>>>) {
    let clock = TokioRuntime;
    tokio::time::sleep(ms(c.start_ms)).await;
    let policy = RetryPolicy::default()
        .retries(Retries::Limited(c.retries))
        .delay(ms(c.retry_delay_ms))
        .jitter(Duration::ZERO)
        .deadline(None);
    for _ in 0..c.rounds {
        let options = LockOptions::new("resource", ms(c.ttl_ms)).retry(policy);
        let call = redlock.acquire(&options);
        let result = match c.cancel_after_ms {
            Some(after) => match tokio::time::timeout(ms(after), call).await {
                Ok(r) => r,
                Err(_) => continue,
            },
            None => call.await,
        };
        let Ok(mut lock) = result else {
            continue;
        };
        let from = clock.now();
        assert!(lock.acquired_at() <= from);
        assert_eq!(
            lock.valid_until() - lock.acquired_at(),
            ms(c.ttl_ms) - redlock.drift(ms(c.ttl_ms)),
            "validity formula"
        );
        assert!(from < lock.valid_until(), "returned an expired lock");
        if let Some(ext) = c.extend_ms {
            tokio::time::sleep(ms(c.hold_ms / 2)).await;
            let _ = lock.extend(ms(ext)).await;
            tokio::time::sleep(ms(c.hold_ms - c.hold_ms / 2)).await;
        } else {
            tokio::time::sleep(ms(c.hold_ms)).await;
        }
        let to = clock.now().min(lock.valid_until());
        held.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Held { who, from, to });
        // A failed unlock drops the lock, which releases in the background.
        let _ = lock.unlock().await;
    }
}

fn assert_no_overlap(held: &[Held]) -> Result<(), TestCaseError> {
    for (i, a) in held.iter().enumerate() {
        for b in &held[i + 1..] {
            let overlap = a.from < b.to && b.from < a.to;
            prop_assert!(
                !overlap,
                "two holders at once: {a:?} and {b:?} (all: {held:#?})"
            );
        }
    }
    Ok(())
}

fn config(cases: u32) -> Config {
    Config {
        cases,
        rng_seed: RngSeed::Fixed(0x0072_6564_6c6f_636b),
        failure_persistence: None,
        ..Config::default()
    }
}

proptest! {
    #![proptest_config(config(256))]

    /// Any faults (delays, hangs, down nodes, nodes that start failing),
    /// short TTLs, extensions and cancelled calls: never two holders at once.
    #[test]
    fn holders_never_overlap(s in scenario(true, 20..600)) {
        let out = run(&s);
        assert_no_overlap(&out.held)?;
    }

    /// Faults that keep every request (delays, hangs) and TTLs far longer
    /// than the scenario: once everyone unlocked and the queues drained, no
    /// key is left, and it was a release that removed each one, not its TTL.
    #[test]
    fn nothing_is_left_behind(s in scenario(false, 20_000..30_000)) {
        let out = run(&s);
        assert_no_overlap(&out.held)?;
        prop_assert!(out.elapsed < ms(20_000), "scenario ran {:?}", out.elapsed);
        prop_assert_eq!(out.leftover_keys, 0);
    }

    /// With nodes that go down or start failing, a key can outlive its
    /// release only where that release was refused (the TTL is then the last
    /// resort); every other key was released.
    #[test]
    fn only_refused_releases_leave_keys(s in scenario(true, 20_000..30_000)) {
        let out = run(&s);
        assert_no_overlap(&out.held)?;
        prop_assert!(out.elapsed < ms(20_000), "scenario ran {:?}", out.elapsed);
        prop_assert!(out.unexplained.is_empty(), "stale keys: {:?}", out.unexplained);
    }
}

/// The property is not vacuous: in the default scenario space locks are
/// actually taken, by several contenders, with holdings back to back.
#[test]
fn the_property_sees_real_contention() {
    let s = Scenario {
        nodes: 5,
        node_timeout_ms: 30,
        initial_delays: vec![0, 5, 10, 15, 20],
        faults: vec![
            FaultEvent {
                at_ms: 10,
                node: 1,
                fault: Fault::Hung(true),
            },
            FaultEvent {
                at_ms: 400,
                node: 1,
                fault: Fault::Hung(false),
            },
        ],
        contenders: (0..3)
            .map(|i| Contender {
                start_ms: i * 3,
                rounds: 2,
                ttl_ms: 500,
                hold_ms: 100,
                retries: 20,
                retry_delay_ms: 20,
                extend_ms: Some(300),
                cancel_after_ms: None,
            })
            .collect(),
    };
    let out = run(&s);
    assert_eq!(out.held.len(), 6, "{:#?}", out.held);
    let holders: std::collections::HashSet<usize> = out.held.iter().map(|h| h.who).collect();
    assert_eq!(holders.len(), 3);
    if let Err(e) = assert_no_overlap(&out.held) {
        panic!("{e}");
    }
    assert_eq!(out.leftover_keys, 0);
}
