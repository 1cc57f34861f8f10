//! Requests that queue up behind a busy node go out as one pipeline, and the
//! releases among them as one script call, with the meaning of the calls
//! taken one by one: what each call returns and what the server holds
//! afterwards are as if they had been sent in order.

use std::time::Duration;

use futures_util::future::join_all;
use redlock_core::{Acquire, Extend, Node, NodeError};
use redlock_redis_rs::RedisNode;
use redlock_testkit::server::Reply;
use redlock_testkit::RedisServer;

const TTL: Duration = Duration::from_secs(60);

/// A fresh server and a node on it.
async fn start() -> (RedisServer, RedisNode) {
    let server = RedisServer::start().unwrap_or_else(|e| panic!("redis-server: {e}"));
    let node = RedisNode::connect(&server.url())
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"));
    (server, node)
}

/// Script calls (EVAL and EVALSHA) the server has executed.
fn script_calls(server: &RedisServer) -> u64 {
    server.command_calls("evalsha") + server.command_calls("eval")
}

fn get(server: &RedisServer, key: &str) -> Option<String> {
    match server.command(&["GET", key]) {
        Ok(Reply::Bulk(v)) => v,
        other => panic!("GET {key}: {other:?}"),
    }
}

fn keys(k: &[&str]) -> Vec<String> {
    k.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_releases_share_one_script_call() {
    let (server, node) = start().await;
    let singles: Vec<Vec<String>> = (0..40).map(|i| keys(&[&format!("k{i}")])).collect();
    for k in &singles {
        assert_eq!(node.acquire(k, "tok", TTL).await, Ok(Acquire::Acquired));
    }
    let pair = keys(&["m1", "m2"]);
    assert_eq!(node.acquire(&pair, "tok", TTL).await, Ok(Acquire::Acquired));
    // The scripts are gone: the first script call of the batch meets
    // NOSCRIPT and is sent again in full.
    server
        .text(&["SCRIPT", "FLUSH"])
        .unwrap_or_else(|e| panic!("SCRIPT FLUSH: {e}"));
    let before = script_calls(&server);

    // Every other release has the wrong token; then the two-key one.
    let mut releases = Vec::new();
    for (i, k) in singles.iter().enumerate() {
        let token = if i % 2 == 0 { "tok" } else { "other" };
        releases.push(node.release(k, token));
    }
    releases.push(node.release(&pair, "tok"));
    let answers = join_all(releases).await;

    for (i, answer) in answers.iter().take(singles.len()).enumerate() {
        let want = if i % 2 == 0 { 1 } else { 0 };
        assert_eq!(answer, &Ok(want), "release {i}");
        let held = get(&server, &singles[i][0]);
        assert_eq!(held.is_none(), i % 2 == 0, "key {i} after its release");
    }
    assert_eq!(answers.last(), Some(&Ok(2)), "the two-key release");
    assert_eq!(get(&server, "m1"), None);
    let calls = script_calls(&server) - before;
    assert!(
        calls <= 6,
        "41 releases took {calls} script calls; queued ones should share one"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_keeps_the_order_of_calls_on_the_same_key() {
    let (server, node) = start().await;
    let (k1, k2, k3) = (keys(&["k1"]), keys(&["k2"]), keys(&["k3"]));
    for k in [&k1, &k2, &k3] {
        assert_eq!(node.acquire(k, "a", TTL).await, Ok(Acquire::Acquired));
    }
    // The inspect takes the idle node; the rest queue behind it and go out
    // as one pipeline. `b` can only take k1 if a's release of k1 runs first,
    // and its extend only works after its acquire.
    let (_, release_a1, acquire_b1, release_a2, release_wrong3, extend_b1) = tokio::join!(
        node.inspect(&k1),
        node.release(&k1, "a"),
        node.acquire(&k1, "b", TTL),
        node.release(&k2, "a"),
        node.release(&k3, "wrong"),
        node.extend(&k1, "b", TTL),
    );
    assert_eq!(release_a1, Ok(1));
    assert_eq!(acquire_b1, Ok(Acquire::Acquired));
    assert_eq!(release_a2, Ok(1));
    assert_eq!(release_wrong3, Ok(0));
    assert_eq!(extend_b1, Ok(Extend::Extended));
    assert_eq!(get(&server, "k1").as_deref(), Some("b"));
    assert_eq!(get(&server, "k2"), None);
    assert_eq!(get(&server, "k3").as_deref(), Some("a"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_in_one_release_leaves_the_others_of_its_batch() {
    let (server, node) = start().await;
    server
        .text(&["LPUSH", "list", "x"])
        .unwrap_or_else(|e| panic!("LPUSH: {e}"));
    let (ok1, ok2) = (keys(&["ok1"]), keys(&["ok2"]));
    for k in [&ok1, &ok2] {
        assert_eq!(node.acquire(k, "tok", TTL).await, Ok(Acquire::Acquired));
    }
    let list = keys(&["list"]);
    let (_, first, broken, last) = tokio::join!(
        node.inspect(&ok1),
        node.release(&ok1, "tok"),
        node.release(&list, "tok"),
        node.release(&ok2, "tok"),
    );
    assert_eq!(first, Ok(1));
    assert!(
        matches!(&broken, Err(NodeError::Server(m)) if m.contains("WRONGTYPE")),
        "a release of a list: {broken:?}"
    );
    assert_eq!(last, Ok(1));
    assert_eq!(get(&server, "ok1"), None);
    assert_eq!(get(&server, "ok2"), None);
}
