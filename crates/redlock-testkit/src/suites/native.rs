//! Native compare-and-delete / compare-and-set against real servers: on
//! Valkey 9 a one-key release goes out as `DELIFEQ` (plus its `PUBLISH`)
//! and an extend as `SET … IFEQ`, read from `INFO commandstats`; on Redis
//! 7.0 and 6.2, and with native commands off, substitute scripts or
//! several keys, the scripts run. A user whose ACL denies `@scripting`
//! locks, extends and unlocks on Valkey; waiters still wake on a native
//! release; a Valkey replaced by an older server behind the same address
//! gets scripts again once the node is connected to it; a native command
//! the ACL refuses gets the script instead.
//!
//! The servers are found with `binaries::find_server` (the default server
//! binary, the servers cache `.ci/run` fills, `redis-server` on the
//! `PATH`); a check whose server is missing returns early with a printed
//! reason. An adapter runs them all with
//! [`native_tests!`](crate::native_tests), given a [`NativeNodeFactory`].

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use redlock_core::scripts::RELEASE;
use redlock_core::{Acquire, Extend, Node, NodeError, Options, Redlock, Scripts};

use super::wake::{hour_delay, spawn_acquire};
use crate::conformance::BoxError;
use crate::server::binaries::{find_server, known_servers};
use crate::server::{RedisServer, Reply, ServerOptions, ServerVersion};
use crate::wait::eventually;

/// The builder settings a check asks the adapter's node for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NativeSettings {
    /// `Builder::native_commands`: `DELIFEQ` / `SET … IFEQ` where the
    /// server has them.
    pub native_commands: bool,
    /// `Builder::scripts`: the scripts the node runs.
    pub scripts: Scripts,
}

impl Default for NativeSettings {
    /// Native commands on, the built-in scripts.
    fn default() -> Self {
        NativeSettings {
            native_commands: true,
            scripts: Scripts::default(),
        }
    }
}

impl NativeSettings {
    /// Native commands off, the built-in scripts.
    pub fn scripts_only() -> Self {
        NativeSettings {
            native_commands: false,
            ..NativeSettings::default()
        }
    }
}

/// Builds the adapter's node for one server URL (credentials included)
/// with the given [`NativeSettings`].
///
/// Implemented for every `Fn(String, NativeSettings) -> Future<Output =
/// Result<Arc<dyn Node>, BoxError>>`.
#[async_trait::async_trait]
pub trait NativeNodeFactory: Send + Sync {
    /// A node connected to the server at `url`, built with `settings`.
    async fn node(&self, url: &str, settings: NativeSettings) -> Result<Arc<dyn Node>, BoxError>;
}

#[async_trait::async_trait]
impl<F, Fut> NativeNodeFactory for F
where
    F: Fn(String, NativeSettings) -> Fut + Send + Sync,
    Fut: Future<Output = Result<Arc<dyn Node>, BoxError>> + Send,
{
    async fn node(&self, url: &str, settings: NativeSettings) -> Result<Arc<dyn Node>, BoxError> {
        self(url.to_owned(), settings).await
    }
}

async fn make_node(
    f: &dyn NativeNodeFactory,
    url: String,
    settings: NativeSettings,
) -> Arc<dyn Node> {
    match f.node(&url, settings.clone()).await {
        Ok(n) => n,
        Err(e) => panic!("node factory failed for {settings:?}: {e}"),
    }
}

const TTL: Duration = Duration::from_secs(30);

fn valkey() -> Option<(PathBuf, ServerVersion)> {
    let found = find_server(|v| v.is_valkey() && v.at_least(9, 0));
    if found.is_none() {
        eprintln!(
            "skipped: no Valkey 9 binary found (REDLOCK_SERVER_BIN or the servers cache); known: {:?}",
            known_servers()
                .iter()
                .map(|(_, v)| v.to_string())
                .collect::<Vec<_>>()
        );
    }
    found
}

fn start(binary: &PathBuf) -> RedisServer {
    RedisServer::start_binary(binary, ServerOptions::default()).expect("server starts")
}

fn keys(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

fn pttl(server: &RedisServer, key: &str) -> i64 {
    match server.command(&["PTTL", key]).expect("PTTL") {
        Reply::Int(ms) => ms,
        other => panic!("PTTL: {other:?}"),
    }
}

/// Acquire, extend (ours, another's), release (another's, ours), extend
/// after the release, one call at a time on a connected node; checks the
/// replies and the key, then returns the server's command counts
/// `(delifeq, set, publish, evalsha + eval)` for these calls.
async fn one_key_round(server: &RedisServer, node: &dyn Node) -> (u64, u64, u64, u64) {
    server.command(&["CONFIG", "RESETSTAT"]).expect("resetstat");
    let job = keys(&["native-job"]);
    let short = Duration::from_secs(5);
    assert_eq!(
        node.acquire(&job, "tok", short).await.unwrap(),
        Acquire::Acquired
    );
    assert_eq!(
        node.extend(&job, "tok", TTL).await.unwrap(),
        Extend::Extended
    );
    assert!(pttl(server, &job[0]) > 5_000, "the TTL was set anew");
    assert_eq!(
        node.extend(&job, "other", TTL).await.unwrap(),
        Extend::NotHeld
    );
    assert_eq!(node.release(&job, "other").await.unwrap(), 0);
    assert_eq!(server.text(&["GET", &job[0]]).unwrap(), "tok");
    assert_eq!(node.release(&job, "tok").await.unwrap(), 1);
    assert_eq!(
        node.extend(&job, "tok", TTL).await.unwrap(),
        Extend::NotHeld,
        "never recreates a released key"
    );
    assert_eq!(server.command(&["EXISTS", &job[0]]).unwrap(), Reply::Int(0));
    (
        server.command_calls("delifeq"),
        server.command_calls("set"),
        server.command_calls("publish"),
        server.command_calls("evalsha") + server.command_calls("eval"),
    )
}

/// On Valkey 9 a one-key release is `DELIFEQ` (announced only when it
/// deleted) and an extend `SET … IFEQ`: no script runs.
pub async fn valkey_releases_and_extends_without_scripts(f: &dyn NativeNodeFactory) {
    let Some((binary, version)) = valkey() else {
        return;
    };
    let server = start(&binary);
    let node = make_node(f, server.url(), NativeSettings::default()).await;
    let (delifeq, set, publish, scripts) = one_key_round(&server, &*node).await;
    assert_eq!(delifeq, 2, "{version}: both releases are DELIFEQ");
    assert_eq!(set, 4, "{version}: SET NX, then three SET IFEQ");
    assert_eq!(
        publish, 1,
        "{version}: only the release that deleted the key is announced"
    );
    assert_eq!(scripts, 0, "{version}: no script ran");
}

/// With native commands off (`NativeSettings::scripts_only`) the same calls
/// run the scripts on Valkey 9.
pub async fn native_commands_off_runs_the_scripts_on_valkey(f: &dyn NativeNodeFactory) {
    let Some((binary, version)) = valkey() else {
        return;
    };
    let server = start(&binary);
    let node = make_node(f, server.url(), NativeSettings::scripts_only()).await;
    let (delifeq, set, _, scripts) = one_key_round(&server, &*node).await;
    assert_eq!(delifeq, 0, "{version}");
    assert_eq!(set, 1, "{version}: only the acquire is a SET");
    assert_eq!(scripts, 5, "{version}: three extends, two releases");
}

/// Every known Redis older than 8.4 runs the scripts.
pub async fn older_servers_run_the_scripts(f: &dyn NativeNodeFactory) {
    let older: Vec<_> = known_servers()
        .into_iter()
        .filter(|(_, v)| !v.is_valkey() && !v.at_least(8, 4))
        .collect();
    if older.is_empty() {
        eprintln!("skipped: no Redis older than 8.4 found");
        return;
    }
    for (binary, version) in older {
        let server = start(&binary);
        let node = make_node(f, server.url(), NativeSettings::default()).await;
        let (delifeq, set, _, scripts) = one_key_round(&server, &*node).await;
        assert_eq!(delifeq, 0, "{version}");
        assert_eq!(set, 1, "{version}: only the acquire is a SET");
        assert_eq!(scripts, 5, "{version}: three extends, two releases");
        eprintln!("checked {version}: scripts");
    }
}

/// A Valkey 9 replaced by an older server behind the same address (a
/// failover to an older replica, a rollback): once the node is connected
/// again it releases and extends with the scripts, which that server has,
/// instead of the native commands it no longer has, and nothing is left
/// behind.
pub async fn a_server_replaced_by_an_older_one_gets_scripts(f: &dyn NativeNodeFactory) {
    let Some((valkey, _)) = valkey() else {
        return;
    };
    let Some((older, version)) = find_server(|v| !v.is_valkey() && !v.at_least(8, 4)) else {
        eprintln!("skipped: no Redis older than 8.4 found");
        return;
    };
    let mut server = start(&valkey);
    let node = make_node(f, server.url(), NativeSettings::default()).await;
    let (delifeq, ..) = one_key_round(&server, &*node).await;
    assert_eq!(delifeq, 2, "native releases on Valkey first");

    server
        .restart_as(&older)
        .expect("the older server starts on the same port");
    let probe = keys(&["native-probe"]);
    let reconnected = eventually(Duration::from_secs(10), || async {
        match node.acquire(&probe, "probe", TTL).await {
            Ok(Acquire::Acquired) => true,
            Ok(other) => panic!("a fresh key on an empty server: {other:?}"),
            Err(_) => false,
        }
    })
    .await;
    assert!(reconnected, "the node works again on {version}");
    assert_eq!(
        node.extend(&probe, "probe", TTL).await.unwrap(),
        Extend::Extended,
        "the extend on {version}"
    );
    assert_eq!(
        node.release(&probe, "probe").await.unwrap(),
        1,
        "the release on {version}"
    );
    let (delifeq, set, _, scripts) = one_key_round(&server, &*node).await;
    assert_eq!(delifeq, 0, "{version}");
    assert_eq!(set, 1, "{version}: only the acquire is a SET");
    assert_eq!(scripts, 5, "{version}: three extends, two releases");
    assert_eq!(
        server.command(&["DBSIZE"]).unwrap(),
        Reply::Int(0),
        "no key left"
    );
    node.quit().await.expect("quit");
}

/// A native command the user's ACL does not allow (an allowlist written
/// before the server had `DELIFEQ`) is refused unrun: the release goes out
/// as the script instead, deletes the key, and the node keeps to the
/// scripts on that connection.
pub async fn a_native_command_the_acl_refuses_gets_the_script_instead(f: &dyn NativeNodeFactory) {
    let Some((valkey, version)) = valkey() else {
        return;
    };
    let server = start(&valkey);
    let node = make_node(f, server.url(), NativeSettings::default()).await;
    let (delifeq, ..) = one_key_round(&server, &*node).await;
    assert_eq!(delifeq, 2, "native releases on {version} first");

    server
        .command(&["ACL", "SETUSER", "default", "-delifeq"])
        .expect("ACL SETUSER");
    server.command(&["CONFIG", "RESETSTAT"]).expect("resetstat");
    for round in ["first", "second"] {
        let job = keys(&[&format!("acl-job-{round}")]);
        assert_eq!(
            node.acquire(&job, "tok", TTL).await.unwrap(),
            Acquire::Acquired
        );
        assert_eq!(
            node.release(&job, "tok").await.unwrap(),
            1,
            "the {round} release deletes the key although DELIFEQ is refused"
        );
        assert_eq!(server.command(&["EXISTS", &job[0]]).unwrap(), Reply::Int(0));
    }
    assert_eq!(
        server.command_calls("eval") + server.command_calls("evalsha"),
        2,
        "both releases ran the script"
    );
    assert_eq!(
        server.command(&["DBSIZE"]).unwrap(),
        Reply::Int(0),
        "no key left"
    );
    node.quit().await.expect("quit");
}

/// Several keys, and a substitute release script, stay scripts on Valkey 9;
/// the built-in extend script is still replaced.
pub async fn several_keys_and_substitute_scripts_stay_scripts_on_valkey(f: &dyn NativeNodeFactory) {
    let Some((binary, version)) = valkey() else {
        return;
    };
    let server = start(&binary);
    let node = make_node(f, server.url(), NativeSettings::default()).await;
    server.command(&["CONFIG", "RESETSTAT"]).unwrap();
    let two = keys(&["multi-a", "multi-b"]);
    assert_eq!(
        node.acquire(&two, "tok", TTL).await.unwrap(),
        Acquire::Acquired
    );
    assert_eq!(
        node.extend(&two, "tok", TTL).await.unwrap(),
        Extend::Extended
    );
    assert_eq!(node.release(&two, "tok").await.unwrap(), 2);
    assert_eq!(server.command_calls("delifeq"), 0, "{version}");
    assert_eq!(server.command_calls("evalsha"), 3, "{version}");

    // A substitute release script runs as written; the built-in extend
    // script is still replaced.
    let custom = make_node(
        f,
        server.url(),
        NativeSettings {
            scripts: Scripts::default().with_release(format!("{RELEASE}-- substitute\n")),
            ..NativeSettings::default()
        },
    )
    .await;
    server.command(&["CONFIG", "RESETSTAT"]).unwrap();
    let one = keys(&["custom-job"]);
    assert_eq!(
        custom.acquire(&one, "tok", TTL).await.unwrap(),
        Acquire::Acquired
    );
    assert_eq!(
        custom.extend(&one, "tok", TTL).await.unwrap(),
        Extend::Extended
    );
    assert_eq!(custom.release(&one, "tok").await.unwrap(), 1);
    assert_eq!(server.command_calls("delifeq"), 0, "{version}");
    assert_eq!(server.command_calls("evalsha"), 1, "{version}: the release");
    assert_eq!(
        server.command_calls("set"),
        2,
        "{version}: SET NX, SET IFEQ"
    );
}

/// An ACL user without `@scripting` (and, as Valkey gives new users by
/// default, without channel rights): a one-key lock is taken, extended
/// and released end to end; the same user with native commands off cannot
/// release (so the native path is what makes it work).
pub async fn a_user_without_scripting_locks_extends_and_unlocks_on_valkey(
    f: &dyn NativeNodeFactory,
    refused_evalsha: &dyn Fn(&NodeError) -> bool,
) {
    let Some((binary, version)) = valkey() else {
        return;
    };
    let server = start(&binary);
    server
        .text(&[
            "ACL",
            "SETUSER",
            "locker",
            "on",
            ">locker-pw",
            "~*",
            "resetchannels",
            "+@all",
            "-@scripting",
        ])
        .expect("ACL SETUSER");
    let url = format!("redis://locker:locker-pw@127.0.0.1:{}", server.port());

    let node = make_node(f, url.clone(), NativeSettings::default()).await;
    let redlock = Redlock::from_nodes(vec![node], Options::new()).expect("valid");
    let mut lock = redlock.lock("acl-job", TTL).await.expect("locked");
    lock.extend(TTL).await.expect("extended");
    assert_eq!(server.text(&["GET", "acl-job"]).unwrap(), lock.token());
    lock.unlock().await.expect("unlocked");
    assert_eq!(
        server.command(&["EXISTS", "acl-job"]).unwrap(),
        Reply::Int(0)
    );
    assert_eq!(server.command_calls("delifeq"), 1, "{version}");

    // Connects: a refused SCRIPT LOAD does not stop the node.
    let scripts_only = make_node(f, url, NativeSettings::scripts_only()).await;
    let job = keys(&["acl-job"]);
    assert_eq!(
        scripts_only.acquire(&job, "tok", TTL).await.unwrap(),
        Acquire::Acquired
    );
    let refused = scripts_only.release(&job, "tok").await;
    assert!(
        matches!(&refused, Err(e) if refused_evalsha(e)),
        "{refused:?}"
    );
}

/// A waiter in another client, with a retry delay of an hour, gets the
/// lock as soon as the holder releases with `DELIFEQ`: the announcement
/// after it wakes the waiter.
pub async fn a_native_release_wakes_waiters_on_valkey(f: &dyn NativeNodeFactory) {
    let Some((binary, version)) = valkey() else {
        return;
    };
    let servers: Vec<RedisServer> = (0..3).map(|_| start(&binary)).collect();
    let redlock = |servers: &[RedisServer]| {
        let urls: Vec<String> = servers.iter().map(RedisServer::url).collect();
        async move {
            let mut nodes = Vec::new();
            for url in urls {
                nodes.push(make_node(f, url, NativeSettings::default()).await);
            }
            Redlock::from_nodes(nodes, Options::new()).expect("valid")
        }
    };
    let holder = redlock(&servers).await;
    let held = holder.lock("wake-native", TTL).await.expect("free");
    let waiter = {
        let other = redlock(&servers).await;
        spawn_acquire(
            &other,
            "wake-native",
            TTL,
            hour_delay(Duration::from_secs(60)),
        )
    };
    // One node's announcement is enough to wake the waiter.
    let subscribed = eventually(Duration::from_secs(10), || async {
        servers
            .iter()
            .any(|s| s.numsub("redlock:release:wake-native") == 1)
    })
    .await;
    assert!(
        subscribed,
        "{version}: the waiter subscribed on a server: {:?}, waiter finished: {}",
        servers
            .iter()
            .map(|s| s.numsub("redlock:release:wake-native"))
            .collect::<Vec<_>>(),
        waiter.is_finished()
    );
    for s in &servers {
        s.command(&["CONFIG", "RESETSTAT"]).unwrap();
    }
    held.unlock().await.expect("unlocked");
    let lock = waiter
        .await
        .expect("task")
        .expect("woken by the release, long before the hour");
    assert_eq!(lock.attempts(), 2, "{version}");
    let delifeq: u64 = servers.iter().map(|s| s.command_calls("delifeq")).sum();
    let scripts: u64 = servers.iter().map(|s| s.command_calls("evalsha")).sum();
    assert!(delifeq >= 2, "{version}: released with DELIFEQ ({delifeq})");
    assert_eq!(scripts, 0, "{version}: no release script ran");
    lock.unlock().await.expect("unlocked");
}

/// Emits the checks of [`suites::native`](crate::suites::native) as tests,
/// with their names: `$factory` is a [`NativeNodeFactory`], e.g. an
/// `async fn(String, NativeSettings) -> Result<Arc<dyn Node>, BoxError>`
/// that builds the adapter's node; `$refused_evalsha` is a
/// `fn(&NodeError) -> bool` that tells the adapter's error for an `EVALSHA`
/// the server's ACL refused.
#[macro_export]
macro_rules! native_tests {
    ($factory:path, $refused_evalsha:path) => {
        #[tokio::test]
        async fn valkey_releases_and_extends_without_scripts() {
            $crate::suites::native::valkey_releases_and_extends_without_scripts(&$factory).await;
        }

        #[tokio::test]
        async fn native_commands_off_runs_the_scripts_on_valkey() {
            $crate::suites::native::native_commands_off_runs_the_scripts_on_valkey(&$factory).await;
        }

        #[tokio::test]
        async fn older_servers_run_the_scripts() {
            $crate::suites::native::older_servers_run_the_scripts(&$factory).await;
        }

        #[tokio::test]
        async fn several_keys_and_substitute_scripts_stay_scripts_on_valkey() {
            $crate::suites::native::several_keys_and_substitute_scripts_stay_scripts_on_valkey(
                &$factory,
            )
            .await;
        }

        #[tokio::test]
        async fn a_user_without_scripting_locks_extends_and_unlocks_on_valkey() {
            $crate::suites::native::a_user_without_scripting_locks_extends_and_unlocks_on_valkey(
                &$factory,
                &$refused_evalsha,
            )
            .await;
        }

        #[tokio::test]
        async fn a_native_command_the_acl_refuses_gets_the_script_instead() {
            $crate::suites::native::a_native_command_the_acl_refuses_gets_the_script_instead(
                &$factory,
            )
            .await;
        }

        #[tokio::test]
        async fn a_server_replaced_by_an_older_one_gets_scripts() {
            $crate::suites::native::a_server_replaced_by_an_older_one_gets_scripts(&$factory).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_native_release_wakes_waiters_on_valkey() {
            $crate::suites::native::a_native_release_wakes_waiters_on_valkey(&$factory).await;
        }
    };
}
