//! A node opened from a `redis://` or `redis+unix://` URL: the URL's
//! password and database, Unix sockets, and what happens to its connection
//! when the server stops answering (replaced, the old one fenced).

use std::time::Duration;

use redlock_core::{Acquire, Node, NodeError};
use redlock_redis_rs::{Error, RedisNode};
use redlock_testkit::server::{Reply, ServerOptions};
use redlock_testkit::RedisServer;

const TTL: Duration = Duration::from_secs(60);

fn keys(k: &[&str]) -> Vec<String> {
    k.iter().map(|s| s.to_string()).collect()
}

/// `INFO keyspace` line for `db`, e.g. `keys=1,expires=1,avg_ttl=0`.
fn keyspace(server: &RedisServer, db: u32) -> Option<String> {
    server
        .info("keyspace")
        .unwrap_or_else(|e| panic!("INFO: {e}"))
        .into_iter()
        .find(|(k, _)| *k == format!("db{db}"))
        .map(|(_, v)| v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_and_database_come_from_the_url() {
    let server = RedisServer::start_with(ServerOptions {
        password: Some("s3cret-pw".into()),
        ..Default::default()
    })
    .unwrap_or_else(|e| panic!("redis-server: {e}"));
    let url = format!("redis://:s3cret-pw@127.0.0.1:{}/3", server.port());
    let node = RedisNode::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"));
    let k = keys(&["in-db-3"]);
    assert_eq!(node.acquire(&k, "tok", TTL).await, Ok(Acquire::Acquired));
    assert!(
        keyspace(&server, 3).is_some_and(|v| v.starts_with("keys=1,")),
        "the key is in database 3"
    );
    assert_eq!(keyspace(&server, 0), None, "nothing in database 0");
    assert_eq!(node.release(&k, "tok").await, Ok(1));

    // A wrong password is a connection error on use, without the password.
    let wrong = format!("redis://:not-it@127.0.0.1:{}/3", server.port());
    let node = RedisNode::open(&wrong).unwrap_or_else(|e| panic!("open: {e}"));
    match node.acquire(&k, "tok", TTL).await {
        Err(e) => assert!(!e.to_string().contains("not-it"), "{e}"),
        Ok(a) => panic!("acquired with a wrong password: {a:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unix_socket() {
    let socket = std::env::temp_dir().join(format!("redlock-direct-{}.sock", std::process::id()));
    let server = RedisServer::start_with(ServerOptions {
        args: vec![
            "--unixsocket".into(),
            socket.display().to_string(),
            "--unixsocketperm".into(),
            "700".into(),
        ],
        ..Default::default()
    })
    .unwrap_or_else(|e| panic!("redis-server: {e}"));
    let node = RedisNode::connect(&format!("redis+unix://{}", socket.display()))
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"));
    let k = keys(&["over-unix"]);
    assert_eq!(node.acquire(&k, "tok", TTL).await, Ok(Acquire::Acquired));
    assert_eq!(node.acquire(&k, "other", TTL).await, Ok(Acquire::Held));
    assert_eq!(
        server.command(&["GET", "over-unix"]).ok(),
        Some(Reply::Bulk(Some("tok".into())))
    );
    assert_eq!(node.release(&k, "tok").await, Ok(1));
    drop(server);
    let _ = std::fs::remove_file(&socket);
}

/// A request that gave up on a paused server may still run when the server
/// resumes (it sits in the old socket's buffer). The connection is replaced
/// after the response timeout; the release that follows, which cannot be
/// sent while the server is paused, is owed and sent first thing on the new
/// connection (after the new connection killed the old one on the server):
/// once the server resumed, the key is gone, released after the acquire
/// ran, or never taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_after_a_replaced_connection_is_never_overtaken() {
    const GUARD: Duration = Duration::from_secs(20);
    let server = RedisServer::start().unwrap_or_else(|e| panic!("redis-server: {e}"));
    let node = RedisNode::builder()
        .response_timeout(Duration::from_millis(100))
        .connect(&server.url())
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"));
    let k = keys(&["fenced"]);
    let before = server.text(&["CLIENT", "ID"]).unwrap_or_default();
    server.pause().unwrap_or_else(|e| panic!("pause: {e}"));

    // The acquire's caller stops waiting (as the core does once a quorum
    // answered elsewhere); the node still sends it and gives the
    // connection up after 100 ms without a reply.
    let a = tokio::time::timeout(Duration::from_millis(10), node.acquire(&k, "a", TTL)).await;
    assert!(a.is_err(), "a paused server cannot answer: {a:?}");
    // The release that follows cannot be sent now (no connection can be
    // made to a paused server); it is owed to the next connection.
    match tokio::time::timeout(GUARD, node.release(&k, "a")).await {
        Ok(Err(_)) => {}
        other => panic!("a release to a paused server: {other:?}"),
    }
    server.resume().unwrap_or_else(|e| panic!("resume: {e}"));
    // The old connection was killed on the server (or had already run and
    // closed), and the owed release went out on the new one.
    let gone = async {
        loop {
            if server.text(&["EXISTS", "fenced"]).ok().as_deref() == Some("0")
                && node.outstanding() == 0
            {
                return;
            }
            let _ = node.acquire(&keys(&["other"]), "probe", TTL).await;
            let _ = node.release(&keys(&["other"]), "probe").await;
        }
    };
    tokio::time::timeout(GUARD, gone).await.unwrap_or_else(|_| {
        panic!(
            "the key outlived its release: {:?}",
            server.text(&["GET", "fenced"])
        )
    });
    // The node goes on, on a new connection.
    assert_eq!(node.acquire(&k, "c", TTL).await, Ok(Acquire::Acquired));
    assert_eq!(node.release(&k, "c").await, Ok(1));
    let after = server.text(&["CLIENT", "ID"]).unwrap_or_default();
    assert_ne!(before, after);
}

/// A server that accepts connections but never answers (paused) makes a
/// call fail after the response timeout, even with no deadline of the
/// caller's around it: on a fresh node (connect) and on a working one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_server_never_blocks_a_call() {
    const GUARD: Duration = Duration::from_secs(20);
    let server = RedisServer::start().unwrap_or_else(|e| panic!("redis-server: {e}"));
    let builder = || RedisNode::builder().response_timeout(Duration::from_millis(200));
    let node = builder()
        .connect(&server.url())
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"));
    server.pause().unwrap_or_else(|e| panic!("pause: {e}"));

    let k = keys(&["silent"]);
    match tokio::time::timeout(GUARD, node.acquire(&k, "tok", TTL)).await {
        Ok(Err(NodeError::Connection(_))) => {}
        other => panic!("acquire on a paused server: {other:?}"),
    }
    match tokio::time::timeout(GUARD, builder().connect(&server.url())).await {
        Ok(Err(_)) => {}
        Ok(Ok(_)) => panic!("connected to a paused server"),
        Err(_) => panic!("connect hung on a paused server"),
    }
    server.resume().unwrap_or_else(|e| panic!("resume: {e}"));
    // The node goes on; the timed-out acquire ran or was fenced off.
    assert_eq!(node.release(&k, "tok").await.map(|n| n <= 1), Ok(true));
    assert_eq!(node.acquire(&k, "tok2", TTL).await, Ok(Acquire::Acquired));
    assert_eq!(node.release(&k, "tok2").await, Ok(1));
}

#[tokio::test]
async fn zero_timeouts_are_refused_not_replaced() {
    // Nothing listens on port 1; the node is only built, never used.
    let url = "redis://127.0.0.1:1";
    let zero = Duration::ZERO;
    for builder in [
        RedisNode::builder().response_timeout(zero),
        RedisNode::builder().connection_timeout(zero),
    ] {
        let err = builder.open(url).expect_err("zero");
        assert!(
            matches!(&err, Error::InvalidConfig(m) if m.contains("is zero")),
            "{err}"
        );
    }
    let node = RedisNode::builder()
        .response_timeout(None)
        .connection_timeout(Duration::from_millis(5))
        .open(url);
    assert!(node.is_ok(), "None and positive durations work");
}
