//! TLS (feature `tls`) against a real TLS-only `redis-server` (no plain
//! port) with a CA and a server certificate generated for the test by the
//! testkit (`openssl`).
//!
//! - Verified: a `redis::Client` built with the test CA as its root
//!   certificate (`Client::build_with_tls`), wrapped in a `RedisNode`, runs
//!   the lock cycle; a CA that did not sign the server is refused, and so is
//!   a plain `rediss://` URL (the test CA is not in the system store).
//! - The conformance suite over `rediss://…/#insecure` (TLS without
//!   certificate checks; the suite's own raw connections need a URL alone).

mod common;

use std::time::Duration;

use redis::{Client, TlsCertificates};
use redlock_core::{Node, Options, Redlock};
use redlock_redis_rs::{Error, RedisNode};
use redlock_testkit::conformance::{self, Target};
use redlock_testkit::tls::{generate_ca, TlsRedisServer};
use redlock_testkit::wait::eventually;

fn server() -> TlsRedisServer {
    TlsRedisServer::start()
        .expect("TLS redis-server (needs redis-server built with TLS, and openssl)")
}

/// A client that trusts `root_cert` (PEM) for `url`.
fn client_trusting(url: &str, root_cert: Vec<u8>) -> Client {
    Client::build_with_tls(
        url,
        TlsCertificates {
            client_tls: None,
            root_cert: Some(root_cert),
        },
    )
    .expect("TLS client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_cycle_verified_with_the_test_ca() {
    let server = server();
    let client = client_trusting(&server.url(), server.ca_pem().unwrap());
    let node = RedisNode::from_client(client).unwrap();
    node.ping().await.expect("ping over verified TLS");
    assert!(node.id().starts_with("rediss://"), "id {}", node.id());

    let prefix = conformance::unique_prefix("tls");
    let redlock = Redlock::new([node], Options::new().key_prefix(prefix.clone())).unwrap();
    let mut lock = redlock
        .lock("invoice", Duration::from_secs(10))
        .await
        .expect("lock over TLS");
    let key = format!("{prefix}invoice");
    assert_eq!(server.cli(&["GET", &key]).unwrap(), lock.token());

    let err = redlock
        .try_lock("invoice", Duration::from_secs(10))
        .await
        .unwrap_err();
    assert!(err.is_conflict(), "expected a conflict, got {err}");

    lock.extend(Duration::from_secs(60))
        .await
        .expect("extend over TLS");
    let pttl: i64 = server.cli(&["PTTL", &key]).unwrap().parse().unwrap();
    assert!(pttl > 10_000, "PTTL {pttl} after extending to 60 s");

    lock.unlock().await.expect("unlock over TLS");
    assert_eq!(server.cli(&["EXISTS", &key]).unwrap(), "0");

    let scoped = redlock
        .using("invoice", Duration::from_secs(5), |lease| async move {
            lease.is_held()
        })
        .await
        .expect("using over TLS");
    assert!(scoped);
    assert_eq!(server.cli(&["EXISTS", &key]).unwrap(), "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_signed_by_another_ca_is_refused() {
    let server = server();
    let other = tempdir();
    let other_ca = std::fs::read(generate_ca(&other.0, "other").unwrap()).unwrap();
    let client = client_trusting(&server.url(), other_ca);
    let node = RedisNode::builder().open_client(client).unwrap();
    let err = tokio::time::timeout(Duration::from_secs(10), node.ping())
        .await
        .expect("the refusal does not hang")
        .unwrap_err();
    assert_certificate_refused(&err);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_rediss_url_does_not_trust_the_test_ca() {
    let server = server();
    let err = tokio::time::timeout(Duration::from_secs(10), RedisNode::connect(&server.url()))
        .await
        .expect("the refusal does not hang")
        .unwrap_err();
    assert_certificate_refused(&err);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_over_tls() {
    let server = server();
    let target = Target::Single(server.insecure_url());
    conformance::run_on_target(&common::factory, &target).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redlock_helper_over_tls_urls() {
    let servers = [server(), server(), server()];
    let urls: Vec<String> = servers.iter().map(|s| s.insecure_url()).collect();
    let redlock = redlock_redis_rs::redlock(&urls).unwrap();
    assert_eq!(redlock.quorum(), 2);
    let resource = conformance::unique_prefix("tls-helper");
    let lock = redlock
        .lock(resource.as_str(), Duration::from_secs(10))
        .await
        .expect("lock on three TLS servers");
    // `lock` returns once a quorum answered; the third node follows.
    let holding = || {
        servers
            .iter()
            .filter(|s| s.cli(&["GET", &resource]).is_ok_and(|t| t == lock.token()))
            .count()
    };
    assert!(holding() >= 2);
    assert!(
        eventually(Duration::from_secs(5), || async { holding() == 3 }).await,
        "a node never got the key"
    );
    lock.unlock().await.unwrap();
    let left = || {
        servers
            .iter()
            .filter(|s| s.cli(&["EXISTS", &resource]).is_ok_and(|t| t != "0"))
            .count()
    };
    assert!(
        eventually(Duration::from_secs(5), || async { left() == 0 }).await,
        "keys left after unlock"
    );
}

/// A connect error caused by certificate verification (not, say, a
/// refused connection or a panic in the client).
fn assert_certificate_refused(err: &Error) {
    assert!(matches!(err, Error::Connect { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("invalid peer certificate"),
        "not a certificate refusal: {text}"
    );
}

/// A scratch directory, removed on drop (also when the test panics).
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tempdir() -> TempDir {
    use std::hash::{BuildHasher, RandomState};
    let suffix = RandomState::new().hash_one(std::time::Instant::now());
    let dir = std::env::temp_dir().join(format!(
        "redlock-tls-test-{}-{suffix:016x}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    TempDir(dir)
}
