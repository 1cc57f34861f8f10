//! What each server does with the native commands `redlock_kit::native`
//! builds: Valkey 9 has `DELIFEQ` and `SET … IFEQ` with the script's
//! semantics, Redis 7.0 and 6.2 have neither and say so in a way the
//! detection reads as "scripts only". Each server is found by
//! `binaries::find_server`; a missing one is skipped with a printed reason.

use std::time::Duration;

use redlock_core::scripts::{EXTEND, RELEASE};
use redlock_core::Extend;
use redlock_kit::native::{self, Capabilities, Command, DETECT};
use redlock_kit::reply::{self as kit_reply, Reply as KitReply};
use redlock_testkit::server::binaries::{find_server, known_servers};
use redlock_testkit::server::{RedisServer, Reply, ServerOptions, ServerVersion};

fn kit(reply: Reply) -> KitReply {
    match reply {
        Reply::Status(s) => KitReply::Text(s),
        Reply::Error(e) => KitReply::Other(format!("error: {e}")),
        Reply::Int(i) => KitReply::Int(i),
        Reply::Bulk(Some(s)) => KitReply::Text(s),
        Reply::Bulk(None) | Reply::Array(None) => KitReply::Nil,
        Reply::Array(Some(items)) => KitReply::Array(items.into_iter().map(kit).collect()),
    }
}

fn run(server: &RedisServer, cmd: &Command<'_>) -> Reply {
    let words: Vec<&str> = cmd.words().collect();
    server.command(&words).expect("server answers")
}

fn detect(server: &RedisServer) -> Capabilities {
    Capabilities::from_command_info(&kit(server.command(&DETECT).expect("COMMAND INFO")))
}

fn pttl(server: &RedisServer, key: &str) -> i64 {
    match server.command(&["PTTL", key]).expect("PTTL") {
        Reply::Int(ms) => ms,
        other => panic!("PTTL replied {other:?}"),
    }
}

fn start(wanted: &str, has: impl Fn(&ServerVersion) -> bool) -> Option<(RedisServer, String)> {
    let Some((binary, version)) = find_server(has) else {
        eprintln!(
            "skipped: no {wanted} binary found (set REDLOCK_SERVER_BIN or REDLOCK_SERVERS_CACHE); \
             known: {:?}",
            known_servers()
                .iter()
                .map(|(_, v)| v.to_string())
                .collect::<Vec<_>>()
        );
        return None;
    };
    let server = RedisServer::start_binary(&binary, ServerOptions::default()).expect("server");
    Some((server, version.to_string()))
}

/// The native commands on a server that has them behave as the built-in
/// scripts do for one key.
fn check_semantics(server: &RedisServer, caps: Capabilities) {
    let key = vec!["native:job".to_owned()];
    let ttl_ms = 60_000;
    let extend = |token: &str| {
        let cmd = native::extend(caps, EXTEND, &key, token, ttl_ms).expect("native extend");
        native::extend_reply(&kit(run(server, &cmd))).expect("extend reply")
    };
    let release = |token: &str| {
        let cmd = native::release(caps, RELEASE, &key, token).expect("native release");
        kit_reply::release(&kit(run(server, &cmd))).expect("release reply")
    };

    // Neither recreates a vanished key.
    assert_eq!(extend("tok"), Extend::NotHeld);
    assert_eq!(server.command(&["EXISTS", &key[0]]).unwrap(), Reply::Int(0));
    assert_eq!(release("tok"), 0);

    assert_eq!(
        server
            .text(&["SET", &key[0], "tok", "NX", "PX", "1000"])
            .unwrap(),
        "OK"
    );
    // Another token: nothing changes.
    assert_eq!(extend("other"), Extend::NotHeld);
    assert!(pttl(server, &key[0]) <= 1000);
    assert_eq!(release("other"), 0);
    assert_eq!(server.text(&["GET", &key[0]]).unwrap(), "tok");
    // Ours: a new TTL, the same value.
    assert_eq!(extend("tok"), Extend::Extended);
    assert!(pttl(server, &key[0]) > 1000, "the TTL was set anew");
    assert_eq!(server.text(&["GET", &key[0]]).unwrap(), "tok");
    // Ours: deleted.
    assert_eq!(release("tok"), 1);
    assert_eq!(server.command(&["EXISTS", &key[0]]).unwrap(), Reply::Int(0));

    // A key of another type is an error, as GET in the scripts is.
    server.command(&["RPUSH", &key[0], "x"]).unwrap();
    for cmd in [
        native::release(caps, RELEASE, &key, "tok").unwrap(),
        native::extend(caps, EXTEND, &key, "tok", ttl_ms).unwrap(),
    ] {
        assert!(
            matches!(run(server, &cmd), Reply::Error(e) if e.starts_with("WRONGTYPE")),
            "{cmd}"
        );
    }

    // The announcement is an ordinary PUBLISH on the scripts' channel.
    assert_eq!(
        run(server, &native::announce(&key[0], "tok")),
        Reply::Int(0)
    );
}

#[test]
fn valkey_9_has_delifeq_and_set_ifeq() {
    let Some((server, version)) = start("Valkey 9", |v| v.is_valkey() && v.at_least(9, 0)) else {
        return;
    };
    let caps = detect(&server);
    assert_eq!(caps, Capabilities::VALKEY, "{version}");
    check_semantics(&server, caps);
}

#[test]
fn redis_8_4_has_delex_and_set_ifeq() {
    let Some((server, version)) = start("Redis 8.4", |v| !v.is_valkey() && v.at_least(8, 4)) else {
        return;
    };
    let caps = detect(&server);
    assert_eq!(caps, Capabilities::REDIS, "{version}");
    check_semantics(&server, caps);
}

/// Servers without the commands: the detection says "scripts only", and
/// the commands really are refused (so sending them would have failed).
#[test]
fn older_servers_have_neither() {
    let older: Vec<(std::path::PathBuf, ServerVersion)> = known_servers()
        .into_iter()
        .filter(|(_, v)| !v.is_valkey() && !v.at_least(8, 0))
        .collect();
    if older.is_empty() {
        eprintln!("skipped: no Redis older than 8 found");
        return;
    }
    for (binary, version) in older {
        let server = RedisServer::start_binary(&binary, ServerOptions::default()).unwrap();
        assert_eq!(detect(&server), Capabilities::NONE, "{version}");
        for cmd in [
            native::release(Capabilities::VALKEY, RELEASE, &["k".to_owned()], "t").unwrap(),
            native::release(Capabilities::REDIS, RELEASE, &["k".to_owned()], "t").unwrap(),
            native::extend(Capabilities::VALKEY, EXTEND, &["k".to_owned()], "t", 1000).unwrap(),
        ] {
            assert!(
                matches!(run(&server, &cmd), Reply::Error(_)),
                "{version}: {cmd} is refused"
            );
        }
        eprintln!("checked {version}: no native commands");
    }
}

/// A user whose ACL forbids `COMMAND` cannot ask: the error reads as
/// "scripts only", never as a capability.
#[test]
fn a_refused_detection_means_scripts() {
    let Some((server, version)) = start("Valkey 9", |v| v.is_valkey() && v.at_least(9, 0)) else {
        return;
    };
    server
        .text(&[
            "ACL", "SETUSER", "nocmd", "on", ">pw", "~*", "+@all", "-command",
        ])
        .unwrap();
    let stream = std::net::TcpStream::connect(server.addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let replies = pipeline(stream, &[&["AUTH", "nocmd", "pw"], &DETECT]);
    assert_eq!(replies[0], "+OK", "{version}");
    assert!(
        replies[1].starts_with("-NOPERM"),
        "{version}: {}",
        replies[1]
    );
    let refused = KitReply::Other(replies[1].clone());
    assert_eq!(
        Capabilities::from_command_info(&refused),
        Capabilities::NONE
    );
}

/// Sends `commands` on one connection and returns the first line of each
/// reply (enough for status and error replies).
fn pipeline(stream: std::net::TcpStream, commands: &[&[&str]]) -> Vec<String> {
    use std::io::{BufRead, BufReader, Write};
    let mut out = Vec::new();
    for cmd in commands {
        out.extend(format!("*{}\r\n", cmd.len()).bytes());
        for w in *cmd {
            out.extend(format!("${}\r\n{w}\r\n", w.len()).bytes());
        }
    }
    (&stream).write_all(&out).unwrap();
    let mut reader = BufReader::new(&stream);
    commands
        .iter()
        .map(|_| {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            line.trim_end().to_owned()
        })
        .collect()
}
