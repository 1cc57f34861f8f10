//! FredNode against one real redis-server: what is particular to this
//! adapter (construction, secrets, pools, fred's queue, reconnects).

use std::time::{Duration, Instant};

use futures_util::FutureExt;
use redlock_core::{Acquire, Extend, Node, NodeError, Scripts};
use redlock_fred::fred::prelude::*;
use redlock_fred::{Error, FredNode};
use redlock_testkit::server::{RedisServer, ServerOptions};
use redlock_testkit::wait::eventually;

fn keys(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_cycle_on_one_server() {
    let server = RedisServer::start().expect("redis-server");
    let node = FredNode::connect(&server.url()).await.expect("connect");
    let k = keys(&["smoke:a", "smoke:b"]);
    let ttl = Duration::from_secs(10);

    assert_eq!(node.acquire(&k, "t1", ttl).await, Ok(Acquire::Acquired));
    assert_eq!(node.acquire(&k, "t2", ttl).await, Ok(Acquire::Held));
    // all or nothing: one key taken blocks the pair, and nothing is written
    assert_eq!(
        node.acquire(&keys(&["smoke:c", "smoke:a"]), "t3", ttl)
            .await,
        Ok(Acquire::Held)
    );
    assert_eq!(server.text(&["EXISTS", "smoke:c"]).expect("exists"), "0");

    let pttl: i64 = server
        .text(&["PTTL", "smoke:a"])
        .expect("pttl")
        .parse()
        .expect("int");
    assert!(pttl > 9_000 && pttl <= 10_000, "pttl {pttl}");

    let states = node.inspect(&k).await.expect("inspect");
    assert_eq!(states[0].holder.as_deref(), Some("t1"));
    assert!(states[1].ttl.is_some_and(|t| t <= ttl));

    assert_eq!(
        node.extend(&k, "t2", Duration::from_secs(30)).await,
        Ok(Extend::NotHeld)
    );
    assert_eq!(
        node.extend(&k, "t1", Duration::from_secs(30)).await,
        Ok(Extend::Extended)
    );
    let pttl: i64 = server
        .text(&["PTTL", "smoke:b"])
        .expect("pttl")
        .parse()
        .expect("int");
    assert!(pttl > 20_000, "extended pttl {pttl}");

    assert_eq!(node.release(&k, "t2").await, Ok(0));
    assert_eq!(node.release(&k, "t1").await, Ok(2));
    assert_eq!(node.release(&k, "t1").await, Ok(0));
    let states = node.inspect(&k).await.expect("inspect");
    assert!(states.iter().all(|s| s.holder.is_none() && s.ttl.is_none()));

    node.quit().await.expect("quit");
    assert_eq!(node.acquire(&k, "t4", ttl).await, Err(NodeError::Closed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_never_show() {
    let password = "s3cret-pa55";
    let server = RedisServer::start_with(ServerOptions {
        args: Vec::new(),
        password: Some(password.to_string()),
    })
    .expect("redis-server");
    let url = server.url();
    assert!(url.contains(password));

    let node = FredNode::connect(&url).await.expect("connect");
    assert_eq!(node.id(), format!("redis://127.0.0.1:{}", server.port()));
    assert!(!format!("{node:?}").contains(password));
    assert_eq!(
        node.acquire(&keys(&["pw:a"]), "t", Duration::from_secs(5))
            .await,
        Ok(Acquire::Acquired)
    );

    // A wrong password: the error names the node but not the password.
    let wrong = format!("redis://:wrong-{password}@127.0.0.1:{}", server.port());
    let err = FredNode::connect(&wrong).await.expect_err("wrong password");
    let text = format!("{err} {err:?}");
    assert!(matches!(err, Error::Connect { .. }), "{text}");
    assert!(!text.contains(password), "{text}");

    // A client built by the application.
    let config = Config::from_url(&url).expect("config");
    let client = Builder::from_config(config).build().expect("client");
    let node = FredNode::from_client(client).await.expect("from_client");
    assert!(!format!("{node:?} {}", node.id()).contains(password));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn script_flush_does_not_break_locking() {
    let server = RedisServer::start().expect("redis-server");
    let node = FredNode::connect(&server.url()).await.expect("connect");
    let k = keys(&["flush:a"]);
    let ttl = Duration::from_secs(10);
    assert_eq!(node.acquire(&k, "t1", ttl).await, Ok(Acquire::Acquired));
    assert_eq!(server.text(&["SCRIPT", "FLUSH"]).expect("flush"), "OK");
    assert_eq!(node.extend(&k, "t1", ttl).await, Ok(Extend::Extended));
    assert_eq!(server.text(&["SCRIPT", "FLUSH"]).expect("flush"), "OK");
    assert_eq!(node.release(&k, "t1").await, Ok(1));
    assert_eq!(server.text(&["SCRIPT", "FLUSH"]).expect("flush"), "OK");
    assert_eq!(node.acquire(&k, "t2", ttl).await, Ok(Acquire::Acquired));
    assert_eq!(server.text(&["SCRIPT", "FLUSH"]).expect("flush"), "OK");
    assert_eq!(
        node.inspect(&k).await.expect("inspect")[0]
            .holder
            .as_deref(),
        Some("t2")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_scripts_are_used() {
    let server = RedisServer::start().expect("redis-server");
    // An acquire script that also leaves a marker, to see it ran.
    let acquire = format!(
        "redis.call('incr', 'custom-acquire-ran')\n{}",
        redlock_core::scripts::ACQUIRE
    );
    let node = FredNode::builder()
        .scripts(Scripts::default().with_acquire(acquire))
        .connect(&server.url())
        .await
        .expect("connect");
    assert_eq!(
        node.acquire(&keys(&["custom:a"]), "t", Duration::from_secs(5))
            .await,
        Ok(Acquire::Acquired)
    );
    assert_eq!(
        server.text(&["GET", "custom-acquire-ran"]).expect("get"),
        "1"
    );
}

/// A request polled once and then dropped is still sent, and a release sent
/// after it never overtakes it: no key is left behind. Run over a pool too,
/// where requests for the same keys must share a connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_acquire_never_overtakes_release() {
    let server = RedisServer::start().expect("redis-server");
    for pool_size in [1, 4] {
        let node = FredNode::builder()
            .pool_size(pool_size)
            .connect(&server.url())
            .await
            .expect("connect");
        assert_eq!(node.clients().len(), pool_size);
        let ttl = Duration::from_secs(60);
        for i in 0..300 {
            let k = vec![format!("order:{pool_size}:{i}")];
            let token = format!("tok{i}");
            // Poll once (the request is handed to fred), then drop it. It
            // almost never completes in that one poll; when the thread was
            // descheduled long enough it may, which is fine too.
            drop(node.acquire(&k, &token, ttl).now_or_never());
            node.release(&k, &token).await.expect("release");
        }
        let left = server.text(&["DBSIZE"]).expect("dbsize");
        assert_eq!(left, "0", "stale keys with pool size {pool_size}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_server_is_reconnected() {
    let server = RedisServer::start().expect("redis-server");
    let node = FredNode::builder()
        .response_timeout(Duration::from_secs(1))
        .connect(&server.url())
        .await
        .expect("connect");
    let ttl = Duration::from_secs(10);
    assert_eq!(
        node.acquire(&keys(&["restart:a"]), "t1", ttl).await,
        Ok(Acquire::Acquired)
    );
    server.kill();
    // While it is down, calls fail instead of hanging: the first one may
    // have been written to the dying connection (bounded by the command
    // timeout); later ones fail at once (fail fast while reconnecting).
    for _ in 0..3 {
        let began = Instant::now();
        let down = node.acquire(&keys(&["restart:b"]), "t2", ttl).await;
        assert!(down.is_err(), "acquire on a dead server: {down:?}");
        assert!(began.elapsed() < Duration::from_secs(2));
    }
    server.restart().expect("restart");
    let back = eventually(Duration::from_secs(15), || async {
        node.acquire(&keys(&["restart:c"]), "t3", ttl).await == Ok(Acquire::Acquired)
    })
    .await;
    assert!(back, "node did not come back after the server restarted");
    // The restarted server is empty, and its script cache too.
    assert_eq!(
        node.acquire(&keys(&["restart:a"]), "t4", ttl).await,
        Ok(Acquire::Acquired)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_server_does_not_hang_a_call() {
    let server = RedisServer::start().expect("redis-server");
    let node = FredNode::builder()
        .response_timeout(Duration::from_millis(300))
        .connect(&server.url())
        .await
        .expect("connect");
    server.pause().expect("pause");
    let began = Instant::now();
    let answer = node
        .acquire(&keys(&["pause:a"]), "t", Duration::from_secs(10))
        .await;
    let took = began.elapsed();
    server.resume().expect("resume");
    assert!(
        matches!(answer, Err(NodeError::Connection(_))),
        "{answer:?}"
    );
    assert!(took < Duration::from_secs(2), "took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_server_is_a_connect_error() {
    // Start and stop a server to get a port nobody listens on.
    let server = RedisServer::start().expect("redis-server");
    let url = server.url();
    drop(server);
    let began = Instant::now();
    let err = FredNode::connect(&url).await.expect_err("nothing listens");
    assert!(matches!(err, Error::Connect { .. }), "{err}");
    assert!(began.elapsed() < Duration::from_secs(10));
    let err = FredNode::connect("not a url").await.expect_err("bad url");
    assert!(matches!(err, Error::InvalidUrl(_)), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_opened_while_its_server_is_down_works_once_it_is_up() {
    let server = RedisServer::start().expect("redis-server");
    server.kill();
    let began = Instant::now();
    let node = FredNode::open(&server.url()).expect("opens without its server");
    let redlock = redlock_fred::redlock(&[server.url()]).expect("made without its server");
    assert!(
        began.elapsed() < Duration::from_millis(500),
        "{:?}",
        began.elapsed()
    );
    let ttl = Duration::from_secs(10);
    let answer = node.acquire(&keys(&["lazy"]), "t0", ttl).await;
    assert!(
        matches!(&answer, Err(e @ NodeError::NotConnected(_)) if !e.was_sent()),
        "{answer:?}"
    );
    server.restart().expect("restart");
    let acquired = eventually(Duration::from_secs(10), || async {
        node.acquire(&keys(&["lazy"]), "t1", ttl).await == Ok(Acquire::Acquired)
    })
    .await;
    assert!(acquired, "never acquired after the server came up");
    assert_eq!(server.text(&["GET", "lazy"]).expect("get"), "t1");
    let locked = eventually(Duration::from_secs(10), || async {
        redlock.try_lock("lazy:redlock", ttl).await.is_ok()
    })
    .await;
    assert!(locked, "the redlock never locked after the server came up");
}

#[test]
fn redlock_outside_a_runtime_is_a_typed_error() {
    let err = redlock_fred::redlock(&["redis://127.0.0.1:1"]).expect_err("no runtime");
    assert!(matches!(err, Error::NoRuntime), "{err}");
    let err = FredNode::open("redis://127.0.0.1:1").expect_err("no runtime");
    assert!(matches!(err, Error::NoRuntime), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_timeouts_are_refused() {
    for builder in [
        FredNode::builder().response_timeout(Duration::ZERO),
        FredNode::builder().connection_timeout(Duration::ZERO),
    ] {
        let err = builder.open("redis://127.0.0.1:1").expect_err("zero");
        assert!(matches!(err, Error::InvalidConfig(_)), "{err}");
    }
}
