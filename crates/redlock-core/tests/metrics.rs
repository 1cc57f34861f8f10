//! The `metrics` feature records what the `telemetry` module promises.

#![cfg(feature = "metrics")]

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use common::{ms, setup};
use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder,
    SharedString, Unit,
};
use redlock_core::{Options, Retries};
use redlock_testkit::sim::Announce;

/// Every counter increment and histogram sample, by name and labels.
#[derive(Default)]
struct Seen {
    counters: BTreeMap<String, u64>,
    histograms: BTreeMap<String, Vec<f64>>,
    gauges: BTreeMap<String, f64>,
}

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Seen>>);

struct Handle {
    seen: Capture,
    name: String,
}

fn label(key: &Key) -> String {
    let labels: Vec<String> = key
        .labels()
        .map(|l| format!("{}={}", l.key(), l.value()))
        .collect();
    if labels.is_empty() {
        key.name().to_string()
    } else {
        format!("{}{{{}}}", key.name(), labels.join(","))
    }
}

impl CounterFn for Handle {
    fn increment(&self, value: u64) {
        let mut s = self.seen.0.lock().unwrap_or_else(PoisonError::into_inner);
        *s.counters.entry(self.name.clone()).or_default() += value;
    }
    fn absolute(&self, value: u64) {
        let mut s = self.seen.0.lock().unwrap_or_else(PoisonError::into_inner);
        s.counters.insert(self.name.clone(), value);
    }
}

impl HistogramFn for Handle {
    fn record(&self, value: f64) {
        let mut s = self.seen.0.lock().unwrap_or_else(PoisonError::into_inner);
        s.histograms
            .entry(self.name.clone())
            .or_default()
            .push(value);
    }
}

impl GaugeFn for Handle {
    fn increment(&self, value: f64) {
        let mut s = self.seen.0.lock().unwrap_or_else(PoisonError::into_inner);
        *s.gauges.entry(self.name.clone()).or_default() += value;
    }
    fn decrement(&self, value: f64) {
        let mut s = self.seen.0.lock().unwrap_or_else(PoisonError::into_inner);
        *s.gauges.entry(self.name.clone()).or_default() -= value;
    }
    fn set(&self, value: f64) {
        let mut s = self.seen.0.lock().unwrap_or_else(PoisonError::into_inner);
        s.gauges.insert(self.name.clone(), value);
    }
}

impl Recorder for Capture {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(Arc::new(Handle {
            seen: self.clone(),
            name: label(key),
        }))
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(Arc::new(Handle {
            seen: self.clone(),
            name: label(key),
        }))
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(Arc::new(Handle {
            seen: self.clone(),
            name: label(key),
        }))
    }
}

const TTL: Duration = Duration::from_secs(10);

#[test]
fn lock_wait_attempts_conflicts_errors_wakeups_and_extension_failures() {
    let capture = Capture::default();
    let seen = capture.0.clone();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime");
    // A current-thread runtime: the thread-local recorder sees everything.
    metrics::with_local_recorder(&capture, || {
        runtime.block_on(async {
            let options = Options::new()
                .retries(Retries::Limited(1))
                .retry_delay(ms(100))
                .retry_jitter(Duration::ZERO)
                .node_timeout(ms(50));
            let (redlock, nodes) = setup(5, options);
            for n in &nodes {
                n.set_announce(Announce::On);
            }
            nodes[4].set_down(true);

            // Acquired at once: wait 0, one attempt. Node 4 is down, so
            // every call to it counts as a node error.
            let mut held = redlock.lock("job", TTL).await.expect("quorum of 4");

            // A second caller conflicts twice and gives up.
            let err = redlock.lock("job", TTL).await.expect_err("held");
            assert!(err.is_conflict());

            // A third waits, and is woken by the release.
            let waiter = {
                let redlock = redlock.clone();
                tokio::spawn(async move { redlock.lock("job", TTL).await })
            };
            tokio::time::sleep(ms(30)).await;
            // An extension that cannot reach a quorum fails first.
            for n in &nodes[1..4] {
                n.set_down(true);
            }
            redlock
                .extend(&mut held, TTL)
                .await
                .expect_err("no quorum to extend");
            for n in &nodes[1..4] {
                n.set_down(false);
            }
            held.unlock().await.expect("unlocked");
            let lock = waiter.await.expect("task").expect("woken and locked");
            assert_eq!(lock.attempts(), 2);
            lock.unlock().await.expect("unlocked");
        });
    });
    let s = seen.lock().unwrap_or_else(PoisonError::into_inner);
    let counter = |name: &str| s.counters.get(name).copied().unwrap_or(0);
    assert_eq!(s.histograms["redlock_acquire_attempts"], vec![1.0, 2.0]);
    let waits = &s.histograms["redlock_acquire_wait_seconds"];
    assert_eq!(waits.len(), 2);
    assert_eq!(waits[0], 0.0);
    assert!((waits[1] - 0.030).abs() < 1e-9, "{waits:?}");
    assert_eq!(counter("redlock_conflicts_total"), 3);
    assert_eq!(
        counter("redlock_acquire_failures_total{reason=conflict}"),
        1
    );
    assert_eq!(counter("redlock_release_wakeups_total"), 1);
    assert_eq!(
        counter("redlock_extend_failures_total{reason=no_quorum}"),
        1
    );
    let node_errors: u64 = s
        .counters
        .iter()
        .filter(|(k, _)| k.starts_with("redlock_node_errors_total{node=sim-4"))
        .map(|(_, v)| *v)
        .sum();
    assert!(node_errors >= 4, "{:?}", s.counters);
}

#[test]
fn a_nodes_outstanding_requests_are_a_gauge() {
    let capture = Capture::default();
    let seen = capture.0.clone();
    let gauge = || {
        let s = seen.lock().unwrap_or_else(PoisonError::into_inner);
        s.gauges
            .get("redlock_node_outstanding{node=redis://n1:6379}")
            .copied()
    };
    metrics::with_local_recorder(&capture, || {
        let backlog = redlock_core::backlog::Backlog::new(2)
            .expect("limit")
            .with_gauge("redis://n1:6379");
        let a = backlog.try_admit().expect("room");
        let b = backlog.try_admit().expect("room");
        assert!(backlog.try_admit().is_none());
        let release = backlog.admit();
        assert_eq!(gauge(), Some(3.0));
        drop((a, b));
        assert_eq!(gauge(), Some(1.0));
        drop(release);
        assert_eq!(gauge(), Some(0.0));
    });
}
