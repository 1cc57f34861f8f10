//! A node's batch on fred against a real redis-server: the acquires and
//! extends that wait behind a request in flight go out as one script call
//! (`WRITE_MANY`), the releases as another (`RELEASE_MANY`), read from
//! `INFO commandstats`; every call still gets its own answer, a held key
//! stays held, and a flushed script cache costs nothing but a resend by
//! source.
//!
//! To make the batch, the server is paused (SIGSTOP) while the first call
//! is in flight: every call made meanwhile waits in the node's queue and
//! goes out together once the first is answered.

use std::future::Future;
use std::time::Duration;

use futures_util::future::join_all;
use futures_util::FutureExt;
use redlock_core::{Acquire, Extend, Node};
use redlock_fred::FredNode;
use redlock_testkit::server::RedisServer;
use redlock_testkit::wait::until;

const TTL: Duration = Duration::from_secs(30);

fn keys(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

fn exists(server: &RedisServer, key: &str) -> bool {
    server.text(&["EXISTS", key]).expect("EXISTS") == "1"
}

/// Runs `first`, then (while the server is paused, so that `first` is
/// still in flight) every future of `rest`, and answers them all once the
/// server resumes: it resumes once `node` admitted every call (the first
/// in flight, the rest in its queue).
async fn batched<T, F, G>(
    server: &RedisServer,
    node: &FredNode,
    first: F,
    rest: Vec<G>,
) -> (T, Vec<T>)
where
    F: Future<Output = T>,
    G: Future<Output = T>,
{
    server.pause().expect("pause");
    let mut first = Box::pin(first);
    // The first call is handed to fred and waits for the paused server.
    assert!(futures_util::poll!(first.as_mut()).is_pending());
    let calls = 1 + rest.len();
    let rest = join_all(rest);
    let resume = async {
        until("every call is queued", Duration::from_secs(10), || async {
            node.outstanding() == Some(calls)
        })
        .await;
        server.resume().expect("resume");
    };
    let (a, b, ()) = tokio::join!(first, rest, resume);
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_acquires_is_one_command() {
    let server = RedisServer::start().expect("redis-server");
    // Scripts only, so that the counts hold on every server (a Valkey 9
    // release of one key is its native DELIFEQ).
    let node = FredNode::builder()
        .native_commands(false)
        .connect(&server.url())
        .await
        .expect("connect");
    // Scripts are loaded on the first batch after the connection.
    node.acquire(&keys(&["warm"]), "w", TTL)
        .await
        .expect("warm");
    server.command(&["CONFIG", "RESETSTAT"]).expect("resetstat");

    let names: Vec<Vec<String>> = (0..20).map(|i| keys(&[&format!("many:{i}")])).collect();
    let first = keys(&["many:first"]);
    let (a, rest) = batched(
        &server,
        &node,
        node.acquire(&first, "t", TTL),
        names.iter().map(|k| node.acquire(k, "t", TTL)).collect(),
    )
    .await;
    assert_eq!(a, Ok(Acquire::Acquired));
    assert!(rest.iter().all(|r| *r == Ok(Acquire::Acquired)), "{rest:?}");
    assert!(names.iter().all(|k| exists(&server, &k[0])));
    // The first alone as `SET NX PX`, the twenty others as one script call
    // (whose own `SET NX PX` calls count as well).
    assert_eq!(server.command_calls("evalsha"), 1);
    assert_eq!(server.command_calls("set"), 21);

    // Releases and acquires (some held, one of two keys where one is
    // held), and extends (ours, another's) in one batch: two commands,
    // every call its own answer.
    server.command(&["CONFIG", "RESETSTAT"]).expect("resetstat");
    let fresh: Vec<Vec<String>> = (0..5).map(|i| keys(&[&format!("fresh:{i}")])).collect();
    let pair = keys(&["fresh:pair", "many:0"]);
    let (released, answers) = batched(
        &server,
        &node,
        async { node.release(&first, "t").await.map(|n| n.to_string()) },
        names[10..]
            .iter()
            .map(|k| async { node.release(k, "t").await.map(|n| n.to_string()) }.boxed())
            .chain(fresh.iter().map(|k| {
                async { node.acquire(k, "u", TTL).await.map(|a| format!("{a:?}")) }.boxed()
            }))
            .chain([
                async {
                    node.acquire(&names[1], "u", TTL)
                        .await
                        .map(|a| format!("{a:?}"))
                }
                .boxed(),
                async {
                    node.acquire(&pair, "u", TTL)
                        .await
                        .map(|a| format!("{a:?}"))
                }
                .boxed(),
                async {
                    node.extend(&names[2], "t", TTL)
                        .await
                        .map(|e| format!("{e:?}"))
                }
                .boxed(),
                async {
                    node.extend(&names[3], "x", TTL)
                        .await
                        .map(|e| format!("{e:?}"))
                }
                .boxed(),
            ])
            .collect(),
    )
    .await;
    // The first release alone; then one merged release, one merged write.
    assert_eq!(server.command_calls("evalsha"), 3);
    assert_eq!(server.command_calls("exists"), 2, "the acquire of two keys");
    assert_eq!(released.as_deref(), Ok("1"));
    let answers: Vec<String> = answers.into_iter().map(|r| r.expect("answer")).collect();
    assert!(answers[..10].iter().all(|a| a == "1"), "{answers:?}");
    assert!(
        answers[10..15].iter().all(|a| a == "Acquired"),
        "{answers:?}"
    );
    assert_eq!(answers[15..], ["Held", "Held", "Extended", "NotHeld"]);
    assert!(!exists(&server, "fresh:pair"), "all or nothing");
    assert!(!exists(&server, "many:10") && exists(&server, "fresh:4"));
    node.quit().await.expect("quit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merged_batch_survives_a_flushed_script_cache() {
    let server = RedisServer::start().expect("redis-server");
    // Scripts only, so that the counts hold on every server (a Valkey 9
    // release of one key is its native DELIFEQ).
    let node = FredNode::builder()
        .native_commands(false)
        .connect(&server.url())
        .await
        .expect("connect");
    let held: Vec<Vec<String>> = (0..8).map(|i| keys(&[&format!("held:{i}")])).collect();
    for k in &held {
        assert_eq!(node.acquire(k, "t", TTL).await, Ok(Acquire::Acquired));
    }
    assert_eq!(server.text(&["SCRIPT", "FLUSH"]).expect("flush"), "OK");

    // Releases of what is held and acquires of new keys in one batch,
    // both refused with NOSCRIPT and sent again by source, in order.
    let new: Vec<Vec<String>> = (0..8).map(|i| keys(&[&format!("new:{i}")])).collect();
    let (first, answers) = batched(
        &server,
        &node,
        async {
            node.extend(&held[0], "t", TTL)
                .await
                .map(|e| format!("{e:?}"))
        }
        .boxed(),
        held[1..]
            .iter()
            .map(|k| async { node.release(k, "t").await.map(|n| n.to_string()) }.boxed())
            .chain(new.iter().map(|k| {
                async { node.acquire(k, "t", TTL).await.map(|a| format!("{a:?}")) }.boxed()
            }))
            .collect(),
    )
    .await;
    assert_eq!(first.as_deref(), Ok("Extended"));
    let answers: Vec<String> = answers.into_iter().map(|r| r.expect("answer")).collect();
    assert!(answers[..7].iter().all(|a| a == "1"), "{answers:?}");
    assert!(answers[7..].iter().all(|a| a == "Acquired"), "{answers:?}");
    assert!(new.iter().all(|k| exists(&server, &k[0])));
    assert!(held[1..].iter().all(|k| !exists(&server, &k[0])));
    assert!(server.command_calls("eval") >= 2, "sent again by source");

    // Nothing was left behind: releasing all leaves only the extended key.
    for k in &new {
        assert_eq!(node.release(k, "t").await, Ok(1));
    }
    assert_eq!(node.extend(&held[0], "t", TTL).await, Ok(Extend::Extended));
    assert_eq!(server.text(&["DBSIZE"]).expect("dbsize"), "1");
    node.quit().await.expect("quit");
}
