//! Five-node Redlock end to end on real servers: bodies every adapter runs
//! with its own [`NodeFactory`], so the adapters share the tests rather than
//! copy them.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redlock_core::{LockError, Node, Options, Redlock};

use crate::conformance::{count_on, eventually, make, unique_prefix, NodeFactory, Target};
use crate::server::{test_nodes, RedisServer};

async fn redlock_over(f: &dyn NodeFactory, urls: &[String], options: Options) -> Redlock {
    let mut nodes: Vec<Arc<dyn Node>> = Vec::new();
    for u in urls {
        nodes.push(make(f, &Target::Single(u.clone())).await);
    }
    Redlock::from_nodes(nodes, options).expect("redlock")
}

fn five() -> Vec<RedisServer> {
    (0..5)
        .map(|_| RedisServer::start().expect("redis-server"))
        .collect()
}

async fn assert_no_keys(urls: &[String], prefix: &str) {
    for u in urls {
        let ok = eventually(Duration::from_secs(10), || {
            let u = u.clone();
            let p = prefix.to_string();
            async move { count_on(&u, &p).await == Some(0) }
        })
        .await;
        assert!(ok, "keys left on {u}: {:?}", count_on(u, prefix).await);
    }
}

/// Lock, extend, unlock on five nodes (or `REDLOCK_TEST_NODES`).
pub async fn lock_extend_unlock(f: &dyn NodeFactory) {
    let nodes = test_nodes(5).expect("nodes");
    let p = unique_prefix("e2e-basic");
    let redlock = redlock_over(f, nodes.urls(), Options::new().key_prefix(p.clone())).await;
    let mut lock = redlock
        .lock("res", Duration::from_secs(10))
        .await
        .expect("lock");
    assert!(lock.remaining() > Duration::from_secs(9));
    let err = redlock
        .try_lock("res", Duration::from_secs(10))
        .await
        .unwrap_err();
    assert!(err.is_conflict(), "expected a conflict: {err}");
    lock.extend(Duration::from_secs(30)).await.expect("extend");
    assert!(lock.remaining() > Duration::from_secs(29));
    lock.unlock().await.expect("unlock");
    assert_no_keys(nodes.urls(), &p).await;
    let again = redlock
        .try_lock("res", Duration::from_secs(10))
        .await
        .expect("free again");
    again.unlock().await.unwrap();
}

/// Many tasks contend for one resource; the holders' intervals (from
/// acquisition to the start of the release) never overlap.
pub async fn contention_never_two_holders(f: &dyn NodeFactory) {
    let nodes = test_nodes(5).expect("nodes");
    let p = unique_prefix("e2e-contend");
    let redlock = redlock_over(
        f,
        nodes.urls(),
        Options::new()
            .key_prefix(p.clone())
            .retry_count(-1)
            .retry_delay(Duration::from_millis(2))
            .retry_jitter(Duration::from_millis(5))
            .retry_deadline(Duration::from_secs(30)),
    )
    .await;
    let holders = Arc::new(AtomicUsize::new(0));
    let intervals = Arc::new(Mutex::new(Vec::<(Instant, Instant)>::new()));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let redlock = redlock.clone();
        let holders = holders.clone();
        let intervals = intervals.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..10 {
                let lock = redlock
                    .lock("shared", Duration::from_secs(5))
                    .await
                    .expect("lock");
                let start = Instant::now();
                assert_eq!(
                    holders.fetch_add(1, Ordering::SeqCst),
                    0,
                    "two holders at once"
                );
                tokio::task::yield_now().await;
                holders.fetch_sub(1, Ordering::SeqCst);
                let end = Instant::now();
                intervals.lock().unwrap().push((start, end));
                lock.unlock().await.expect("unlock");
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    let mut iv = intervals.lock().unwrap().clone();
    assert_eq!(iv.len(), 80);
    iv.sort();
    for w in iv.windows(2) {
        assert!(w[0].1 <= w[1].0, "holder intervals overlap: {w:?}");
    }
    assert_no_keys(nodes.urls(), &p).await;
}

/// One node of five is paused mid-run: locking goes on (each call bounded by
/// the per-node timeout), and after it resumes no key is left anywhere.
pub async fn one_node_paused(f: &dyn NodeFactory) {
    let servers = five();
    let urls: Vec<String> = servers.iter().map(|s| s.url()).collect();
    let p = unique_prefix("e2e-paused");
    let node_timeout = Duration::from_millis(100);
    let redlock = redlock_over(
        f,
        &urls,
        Options::new()
            .key_prefix(p.clone())
            .node_timeout(node_timeout)
            .retry_count(3)
            .retry_delay(Duration::from_millis(5))
            .retry_jitter(Duration::from_millis(5)),
    )
    .await;
    let done = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let slowest = Arc::new(Mutex::new(Duration::ZERO));
    let mut tasks = Vec::new();
    for t in 0..4 {
        let (redlock, done, stop, slowest) =
            (redlock.clone(), done.clone(), stop.clone(), slowest.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                let started = Instant::now();
                let lock = redlock
                    .lock(format!("w{t}-{i}"), Duration::from_secs(30))
                    .await
                    .expect("lock while one of five is paused");
                lock.unlock().await.expect("unlock");
                let took = started.elapsed();
                let mut s = slowest.lock().unwrap();
                *s = (*s).max(took);
                done.fetch_add(1, Ordering::SeqCst);
                i += 1;
            }
        }));
    }
    let wait_for = |n: usize| {
        let done = done.clone();
        async move {
            let target = done.load(Ordering::SeqCst) + n;
            eventually(Duration::from_secs(20), || {
                let done = done.clone();
                async move { done.load(Ordering::SeqCst) >= target }
            })
            .await
        }
    };
    assert!(wait_for(20).await, "no progress before the pause");
    servers[2].pause().unwrap();
    *slowest.lock().unwrap() = Duration::ZERO;
    assert!(
        wait_for(50).await,
        "locking stopped while one node was paused"
    );
    let worst = *slowest.lock().unwrap();
    servers[2].resume().unwrap();
    assert!(wait_for(20).await, "no progress after resume");
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await.expect("worker");
    }
    assert!(
        worst < node_timeout * 10,
        "a lock+unlock took {worst:?} with one node paused"
    );
    assert_no_keys(&urls, &p).await;
}

/// Two of five nodes killed: locking still works.
pub async fn two_of_five_killed(f: &dyn NodeFactory) {
    let servers = five();
    let urls: Vec<String> = servers.iter().map(|s| s.url()).collect();
    let p = unique_prefix("e2e-two-down");
    let redlock = redlock_over(f, &urls, Options::new().key_prefix(p.clone())).await;
    servers[0].kill();
    servers[3].kill();
    for i in 0..10 {
        let mut lock = redlock
            .lock(format!("r{i}"), Duration::from_secs(10))
            .await
            .expect("lock with two of five down");
        lock.extend(Duration::from_secs(10)).await.expect("extend");
        lock.unlock().await.expect("unlock");
    }
    assert_no_keys(&[urls[1].clone(), urls[2].clone(), urls[4].clone()], &p).await;
}

/// Three of five killed: a clean no-quorum error, nothing left on the
/// living nodes; once the three are back, locking works again.
pub async fn three_of_five_killed(f: &dyn NodeFactory) {
    let servers = five();
    let urls: Vec<String> = servers.iter().map(|s| s.url()).collect();
    let p = unique_prefix("e2e-three-down");
    let redlock = redlock_over(
        f,
        &urls,
        Options::new()
            .key_prefix(p.clone())
            .retry_count(2)
            .retry_delay(Duration::from_millis(10)),
    )
    .await;
    for i in [0, 2, 4] {
        servers[i].kill();
    }
    let err = redlock
        .lock("res", Duration::from_secs(10))
        .await
        .unwrap_err();
    assert!(
        matches!(err, LockError::NoQuorum(_)),
        "expected NoQuorum, got {err}"
    );
    assert_no_keys(&[urls[1].clone(), urls[3].clone()], &p).await;
    for i in [0, 2, 4] {
        servers[i].restart().unwrap();
    }
    assert_no_keys(&urls, &p).await;
    let ok = eventually(Duration::from_secs(15), || {
        let redlock = redlock.clone();
        async move {
            match redlock.try_lock("res", Duration::from_secs(10)).await {
                Ok(lock) => lock.unlock().await.is_ok(),
                Err(_) => false,
            }
        }
    })
    .await;
    assert!(ok, "locking did not recover after the nodes came back");
    assert_no_keys(&urls, &p).await;
}

/// A node restarted (empty, same port): its client reconnects and the node
/// takes part again (it holds the next lock's key).
pub async fn node_restarted(f: &dyn NodeFactory) {
    let servers = five();
    let urls: Vec<String> = servers.iter().map(|s| s.url()).collect();
    let p = unique_prefix("e2e-restart");
    let redlock = redlock_over(f, &urls, Options::new().key_prefix(p.clone())).await;
    let lock = redlock.lock("res", Duration::from_secs(10)).await.unwrap();
    lock.unlock().await.unwrap();
    servers[1].kill();
    servers[1].restart().unwrap();
    let key = format!("{p}res");
    let ok = eventually(Duration::from_secs(15), || {
        let redlock = redlock.clone();
        let key = key.clone();
        let server = &servers[1];
        async move {
            let Ok(lock) = redlock.lock("res", Duration::from_secs(10)).await else {
                return false;
            };
            let on_restarted = server.text(&["GET", &key]).unwrap_or_default();
            let held = on_restarted == lock.token();
            lock.unlock().await.is_ok() && held
        }
    })
    .await;
    assert!(ok, "the restarted node never took part again");
    assert_no_keys(&urls, &p).await;
}

/// Defines one `#[tokio::test]` per body of this module, each run with the
/// node factory `$factory` (the path of a `conformance::NodeFactory`
/// function), so every adapter runs the same list without copying it.
#[macro_export]
macro_rules! e2e_tests {
    ($factory:path) => {
        $crate::e2e_tests!(@one $factory,
            lock_extend_unlock,
            contention_never_two_holders,
            one_node_paused,
            two_of_five_killed,
            three_of_five_killed,
            node_restarted
        );
    };
    (@one $factory:path, $($name:ident),+) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                $crate::e2e::$name(&$factory).await;
            }
        )+
    };
}
