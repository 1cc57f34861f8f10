//! Bad input at every public entry: property tests over resource names, TTLs,
//! options, tokens and adapter URLs. Expected: a typed error or a normal
//! outcome, never a panic, never a key left behind, never a password in an
//! error, a `Debug` output or a log line.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config as PropConfig, TestRunner};
use redlock_core::{InvalidArgument, LockError, Node, Options, Redlock, Retries, RetryPolicy};
use redlock_fred::FredNode;
use redlock_redis_rs::RedisNode;
use redlock_testkit::server::{RedisServer, ServerOptions};
use redlock_testkit::sim::SimNode;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime")
    })
}

/// Resource names: empty, binary-ish, with hash tags, very long.
fn resource_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "\\PC{0,40}",
        "[{}a-z]{0,12}",
        proptest::collection::vec(any::<char>(), 0..64).prop_map(|v| v.into_iter().collect()),
        (0usize..70_000).prop_map(|n| "x".repeat(n)),
        Just("\u{0}\u{1}\r\n\u{7f}\u{fffd}".to_owned()),
        Just("{}".to_owned()),
        Just("{user1000}.following".to_owned()),
    ]
}

/// TTLs from zero to far above the maximum.
fn ttl() -> impl Strategy<Value = Duration> {
    prop_oneof![
        Just(Duration::ZERO),
        Just(Duration::from_nanos(1)),
        Just(Duration::from_millis(2)),
        Just(Duration::from_millis(3)),
        Just(redlock_core::MAX_TTL),
        Just(redlock_core::MAX_TTL + Duration::from_millis(1)),
        Just(Duration::MAX),
        (0u64..u64::MAX).prop_map(Duration::from_nanos),
        (0u64..100_000).prop_map(Duration::from_millis),
    ]
}

fn sim_nodes(n: usize) -> (Vec<SimNode>, Vec<Arc<dyn Node>>) {
    let sims: Vec<SimNode> = (0..n).map(|i| SimNode::new(format!("sim-{i}"))).collect();
    let nodes = sims
        .iter()
        .map(|s| Arc::new(s.clone()) as Arc<dyn Node>)
        .collect();
    (sims, nodes)
}

fn keys_on(sims: &[SimNode]) -> usize {
    sims.iter().map(|s| s.keys().len()).sum()
}

/// Any resource name and TTL on simulated nodes: a lock or a typed error,
/// and no key left once the lock is released.
#[test]
fn any_resource_and_ttl_gives_a_lock_or_a_typed_error_and_leaves_no_key() {
    let mut runner = TestRunner::new(PropConfig::with_cases(256));
    runner
        .run(&(resource_name(), ttl()), |(name, ttl)| {
            runtime().block_on(async {
                let (sims, nodes) = sim_nodes(5);
                let redlock = Redlock::from_nodes(nodes, Options::new().retry_count(0))
                    .expect("valid options");
                match redlock.lock(name.as_str(), ttl).await {
                    Ok(lock) => {
                        prop_assert!(!name.is_empty());
                        lock.unlock().await.expect("unlock");
                    }
                    Err(LockError::InvalidArgument(e)) => {
                        let expected = name.is_empty()
                            || name.len() > redlock_core::MAX_KEY_BYTES
                            || ttl.is_zero()
                            || ttl > redlock_core::MAX_TTL
                            || ttl <= redlock.drift(ttl);
                        prop_assert!(expected, "unexpected {e:?} for ttl {ttl:?}");
                    }
                    // A TTL barely above the drift may run out during the
                    // attempt: the attempt is released.
                    Err(LockError::ValidityExpired(_)) => {}
                    Err(e) => prop_assert!(false, "unexpected error {e}"),
                }
                prop_assert_eq!(keys_on(&sims), 0);
                Ok(())
            })
        })
        .expect("property");
}

/// Extreme options: construction either fails with a typed error or gives a
/// Redlock that locks and unlocks; nothing panics.
#[test]
fn extreme_options_are_rejected_or_work() {
    let drift = prop_oneof![
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(-0.0),
        Just(1.0),
        Just(0.999_999),
        -10.0..10.0f64,
    ];
    let count = prop_oneof![
        Just(i64::MIN),
        Just(i64::MAX),
        Just(-1i64),
        Just(-2i64),
        any::<i64>()
    ];
    let dur = prop_oneof![
        Just(Duration::ZERO),
        Just(Duration::MAX),
        (0u64..1_000).prop_map(Duration::from_millis)
    ];
    let mut runner = TestRunner::new(PropConfig::with_cases(256));
    runner
        .run(
            &(drift, count, dur.clone(), dur.clone(), dur),
            |(drift, count, delay, jitter, timeout)| {
                runtime().block_on(async {
                    let (sims, nodes) = sim_nodes(3);
                    let options = Options::new()
                        .drift_factor(drift)
                        .retry_count(count)
                        .retry_delay(delay)
                        .retry_jitter(jitter)
                        .node_timeout(timeout);
                    let redlock = match Redlock::from_nodes(nodes, options) {
                        Ok(r) => r,
                        Err(e) => {
                            // Typed and explained.
                            prop_assert!(!e.to_string().is_empty());
                            return Ok(());
                        }
                    };
                    // Free nodes: the first attempt succeeds, so no retry
                    // delay is ever slept.
                    let got = tokio::time::timeout(
                        Duration::from_secs(10),
                        redlock.lock("opt", Duration::from_secs(5)),
                    )
                    .await;
                    match got {
                        Ok(Ok(lock)) => lock.unlock().await.expect("unlock"),
                        Ok(Err(e)) => prop_assert!(
                            matches!(
                                e,
                                LockError::InvalidArgument(_) | LockError::ValidityExpired(_)
                            ),
                            "unexpected {e}"
                        ),
                        Err(_) => prop_assert!(false, "lock hung"),
                    }
                    prop_assert_eq!(keys_on(&sims), 0);
                    Ok(())
                })
            },
        )
        .expect("property");
}

#[test]
fn busy_unlimited_retries_are_rejected() {
    runtime().block_on(async {
        let (_sims, nodes) = sim_nodes(1);
        let err = Redlock::from_nodes(
            nodes,
            Options::new().retry_policy(
                RetryPolicy::default()
                    .retries(Retries::Forever)
                    .delay(Duration::ZERO)
                    .jitter(Duration::ZERO)
                    .deadline(None),
            ),
        )
        .expect_err("spinning retries");
        assert_eq!(err, InvalidArgument::BusyRetry);
    });
}

/// Wrong tokens on a real server through `RedisNode`: nothing is deleted, an
/// empty token is a typed error, the owner's lock is intact, and after the
/// owner's release no key is left.
#[test]
fn wrong_tokens_release_nothing_on_a_real_server() {
    let server = RedisServer::start().expect("redis-server");
    let url = server.url();
    let (redlock, lock) = runtime().block_on(async {
        let node = RedisNode::connect(&url).await.expect("connect");
        let redlock = Redlock::new([node], Options::new().retry_count(0)).expect("redlock");
        let lock = redlock
            .lock("owned", Duration::from_secs(60))
            .await
            .expect("lock");
        (redlock, lock)
    });
    let token_strategy = prop_oneof![
        Just(String::new()),
        "\\PC{0,64}",
        proptest::collection::vec(any::<char>(), 0..200).prop_map(|v| v.into_iter().collect()),
        Just(lock.token()[..lock.token().len() - 1].to_owned()),
        Just(format!("{} ", lock.token())),
    ];
    let mut runner = TestRunner::new(PropConfig::with_cases(64));
    runner
        .run(&token_strategy, |token| {
            runtime().block_on(async {
                prop_assume!(token != lock.token());
                match redlock.release_token("owned", &token).await {
                    Ok(r) => prop_assert_eq!(r.keys_deleted, 0),
                    Err(LockError::InvalidArgument(InvalidArgument::Token(_))) => {
                        prop_assert!(token.is_empty())
                    }
                    Err(e) => prop_assert!(false, "unexpected {e}"),
                }
                Ok(())
            })
        })
        .expect("property");
    assert_eq!(server.text(&["EXISTS", "owned"]).expect("exists"), "1");
    runtime().block_on(async { lock.unlock().await.expect("unlock") });
    assert_eq!(server.text(&["DBSIZE"]).expect("dbsize"), "0");
}

/// Names of every shape on a real server through `RedisNode`: lock, unlock,
/// and the database is empty again.
#[test]
fn any_resource_name_leaves_no_key_on_a_real_server() {
    let server = RedisServer::start().expect("redis-server");
    let url = server.url();
    let redlock = runtime().block_on(async {
        let node = RedisNode::connect(&url).await.expect("connect");
        Redlock::new([node], Options::new().retry_count(0)).expect("redlock")
    });
    let mut runner = TestRunner::new(PropConfig::with_cases(48));
    runner
        .run(&resource_name(), |name| {
            runtime().block_on(async {
                match redlock.lock(name.as_str(), Duration::from_secs(30)).await {
                    Ok(lock) => lock.unlock().await.expect("unlock"),
                    Err(e) => prop_assert!(
                        (name.is_empty()
                            && matches!(
                                e,
                                LockError::InvalidArgument(InvalidArgument::EmptyResource(0))
                            ))
                            || (name.len() > redlock_core::MAX_KEY_BYTES
                                && matches!(
                                    e,
                                    LockError::InvalidArgument(
                                        InvalidArgument::ResourceTooLong { .. }
                                    )
                                )),
                        "unexpected {e} for {} bytes",
                        name.len()
                    ),
                }
                Ok(())
            })
        })
        .expect("property");
    assert_eq!(server.text(&["DBSIZE"]).expect("dbsize"), "0");
}

const SECRET: &str = "pw-s3cr3t-9f2c";

fn hostile_url() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\PC{0,60}",
        "redis://[a-z:@/\\[\\]%0-9.]{0,40}",
        Just(format!("redis://:{SECRET}@")),
        Just(format!("redis://user:{SECRET}@[::1")),
        Just(format!("redis://:{SECRET}@127.0.0.1:99999")),
        Just(format!("redis://:{SECRET}@127.0.0.1:1/notanumber")),
        Just(format!("rediss://:{SECRET}@127.0.0.1:1")),
        Just(format!("redis+unix:///nonexistent/sock?pass={SECRET}")),
        Just(format!("redis://:{SECRET}@\u{0}host:1")),
        Just(format!("redis://:{SECRET}@{}:1", "h".repeat(5000))),
        Just(format!("http://:{SECRET}@127.0.0.1:1")),
        Just(format!("redis-sentinel://:{SECRET}@127.0.0.1:1/mymaster")),
        Just(format!("redis-cluster://:{SECRET}@127.0.0.1:1,127.0.0.1:2")),
    ]
}

/// Malformed and hostile URLs for both adapters' constructors: an error
/// (or a node, for a valid URL of an unreachable server), never a panic,
/// never the password in the error, the node id or `Debug`.
#[test]
fn hostile_urls_give_errors_without_secrets() {
    let mut runner = TestRunner::new(PropConfig::with_cases(96));
    runner
        .run(&hostile_url(), |url| {
            runtime().block_on(async {
                let bound = Duration::from_secs(5);
                if let Ok(r) = tokio::time::timeout(bound, RedisNode::connect(&url)).await {
                    let text = match r {
                        Ok(node) => format!("{} {node:?}", node.id()),
                        Err(e) => format!("{e} {e:?}"),
                    };
                    prop_assert!(!text.contains(SECRET), "redis-rs leaked: {text}");
                }
                if let Ok(r) = tokio::time::timeout(bound, FredNode::connect(&url)).await {
                    let text = match r {
                        Ok(node) => format!("{} {node:?}", node.id()),
                        Err(e) => format!("{e} {e:?}"),
                    };
                    prop_assert!(!text.contains(SECRET), "fred leaked: {text}");
                }
                Ok(())
            })
        })
        .expect("property");
}

/// A `Write` that appends to a shared buffer, for capturing logs.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// With a password-protected server: wrong and right passwords, a lock, a
/// killed server, failing calls. Everything logged at TRACE, every error and
/// `Debug` output is free of the password.
#[test]
fn passwords_never_reach_errors_debug_or_logs() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    // Global, so the runtime's worker threads log into it too.
    let _ = tracing::subscriber::set_global_default(subscriber);

    let server = RedisServer::start_with(ServerOptions {
        password: Some(SECRET.to_owned()),
        ..ServerOptions::default()
    })
    .expect("redis-server");
    let good = server.url();
    assert!(good.contains(SECRET));
    let wrong = good.replace(SECRET, "not-the-password");
    let bare = format!("redis://127.0.0.1:{}", server.port());
    let mut seen = Vec::new();
    runtime().block_on(async {
        for url in [&wrong, &bare] {
            if let Ok(Err(e)) =
                tokio::time::timeout(Duration::from_secs(5), RedisNode::connect(url)).await
            {
                seen.push(format!("{e} {e:?}"));
            }
            if let Ok(Err(e)) =
                tokio::time::timeout(Duration::from_secs(5), FredNode::connect(url)).await
            {
                seen.push(format!("{e} {e:?}"));
            }
        }
        let rn = RedisNode::connect(&good)
            .await
            .expect("redis-rs with password");
        let fr = FredNode::connect(&good).await.expect("fred with password");
        seen.push(format!("{} {rn:?} {} {fr:?}", rn.id(), fr.id()));
        // One Redlock per adapter (both reach the same server).
        let mut held = Vec::new();
        let nodes = [Arc::new(rn) as Arc<dyn Node>, Arc::new(fr) as Arc<dyn Node>];
        for (i, node) in nodes.into_iter().enumerate() {
            let name = format!("secret-test-{i}");
            let redlock = Redlock::from_nodes(
                vec![node],
                Options::new()
                    .retry_count(0)
                    .node_timeout(Duration::from_millis(200)),
            )
            .expect("redlock");
            let lock = redlock
                .lock(name.as_str(), Duration::from_secs(5))
                .await
                .expect("lock");
            seen.push(format!("{redlock:?} {lock:?}"));
            lock.unlock().await.expect("unlock");
            let lock = redlock
                .lock(name.as_str(), Duration::from_secs(5))
                .await
                .expect("lock again");
            held.push((redlock, lock));
        }
        server.kill();
        for (redlock, lock) in held {
            if let Err(e) = redlock.lock("secret-test-2", Duration::from_secs(5)).await {
                seen.push(format!("{e} {e:?}"));
            }
            if let Err(e) = lock.unlock().await {
                seen.push(format!("{e} {e:?}"));
            }
        }
    });
    assert!(seen.len() >= 6, "errors were produced: {seen:?}");
    for text in &seen {
        assert!(!text.contains(SECRET), "leaked: {text}");
    }
    let logs =
        String::from_utf8_lossy(&captured.0.lock().unwrap_or_else(|p| p.into_inner())).into_owned();
    assert!(logs.contains("127.0.0.1"), "logs were captured: {logs}");
    assert!(!logs.contains(SECRET), "password in logs");
}
