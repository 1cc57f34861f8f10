//! The built `redlock` binary against real redis-server processes.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use redlock_testkit::server::{RedisServer, ServerOptions};
use redlock_testkit::wait::eventually_blocking as eventually;

fn servers(n: usize) -> Vec<RedisServer> {
    (0..n)
        .map(|_| RedisServer::start().expect("redis-server"))
        .collect()
}

fn nodes_arg(servers: &[RedisServer]) -> String {
    servers
        .iter()
        .map(|s| s.url())
        .collect::<Vec<_>>()
        .join(",")
}

fn redlock(nodes: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_redlock"));
    c.env_remove("REDLOCK_NODES").arg("--nodes").arg(nodes);
    c
}

fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null()).output().expect("run redlock")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("redlock-cli-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn holders(servers: &[RedisServer], key: &str) -> usize {
    servers
        .iter()
        .filter(|s| s.text(&["EXISTS", key]).is_ok_and(|t| t == "1"))
        .count()
}

#[test]
fn runs_the_command_passes_its_exit_code_and_token_and_releases() {
    let s = servers(3);
    let dir = scratch("exit");
    let out_file = dir.join("token");
    let o = run(redlock(&nodes_arg(&s))
        .args(["run", "--resource", "job", "--"])
        .args([
            "sh",
            "-c",
            &format!(
                "echo \"$REDLOCK_RESOURCE $REDLOCK_TOKEN\" > {}; exit 3",
                out_file.display()
            ),
        ]));
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let written = fs::read_to_string(&out_file).expect("child output");
    let mut parts = written.split_whitespace();
    assert_eq!(parts.next(), Some("job"));
    assert_eq!(
        parts.next().map(str::len),
        Some(40),
        "token missing: {written}"
    );
    assert_eq!(holders(&s, "job"), 0, "lock left behind");
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn two_processes_on_one_resource_never_overlap() {
    let s = servers(3);
    let dir = scratch("overlap");
    let log = dir.join("log");
    let script = format!(
        "echo start $(date +%s%N) >> {log}; sleep 0.2; echo end $(date +%s%N) >> {log}",
        log = log.display()
    );
    let nodes = nodes_arg(&s);
    let mut children = Vec::new();
    for _ in 0..4 {
        children.push(
            redlock(&nodes)
                .args([
                    "run",
                    "--resource",
                    "shared",
                    "--ttl",
                    "5s",
                    "--",
                    "sh",
                    "-c",
                    &script,
                ])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn"),
        );
    }
    for mut c in children {
        assert!(c.wait().expect("wait").success());
    }
    let content = fs::read_to_string(&log).expect("log");
    let lines: Vec<&str> = content.lines().collect();
    assert_eq!(lines.len(), 8, "{content}");
    // Strictly alternating start/end: no second start before the end.
    for pair in lines.chunks(2) {
        assert!(
            pair[0].starts_with("start") && pair[1].starts_with("end"),
            "overlap:\n{content}"
        );
    }
    assert_eq!(holders(&s, "shared"), 0);
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn no_wait_exits_75_when_held_and_wait_gives_up_with_75() {
    let s = servers(3);
    let nodes = nodes_arg(&s);
    let dir = scratch("busy");
    let ready = dir.join("ready");
    let mut holder = redlock(&nodes)
        .args(["run", "--resource", "busy", "--"])
        .args(["sh", "-c", &format!("touch {}; sleep 5", ready.display())])
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn holder");
    assert!(eventually(Duration::from_secs(10), || ready.exists()));
    let started = Instant::now();
    let o = run(redlock(&nodes).args(["run", "--resource", "busy", "--no-wait", "--", "true"]));
    assert_eq!(o.status.code(), Some(75), "{}", text(&o));
    assert!(text(&o).contains("held by another owner"));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "--no-wait waited"
    );
    let o =
        run(redlock(&nodes).args(["run", "--resource", "busy", "--wait", "300ms", "--", "true"]));
    assert_eq!(o.status.code(), Some(75), "{}", text(&o));
    let _ = holder.kill();
    let _ = holder.wait();
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn a_waiting_run_gets_the_lock_once_it_is_released() {
    let s = servers(3);
    let nodes = nodes_arg(&s);
    let dir = scratch("waits");
    let ready = dir.join("ready");
    let mut holder = redlock(&nodes)
        .args(["run", "--resource", "w", "--"])
        .args(["sh", "-c", &format!("touch {}; sleep 0.5", ready.display())])
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn holder");
    assert!(eventually(Duration::from_secs(10), || ready.exists()));
    let o = run(redlock(&nodes).args([
        "run",
        "--resource",
        "w",
        "--wait",
        "20s",
        "--",
        "echo",
        "got it",
    ]));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("got it"));
    // Not a terminal: one line when waiting starts, no progress line.
    let waiting: Vec<String> = text(&o)
        .lines()
        .filter(|l| l.contains("waiting for"))
        .map(str::to_owned)
        .collect();
    assert_eq!(
        waiting,
        vec!["redlock: waiting for 'w': held by another owner".to_owned()],
        "{}",
        text(&o)
    );
    assert!(!text(&o).contains('\r'), "{}", text(&o));
    assert!(holder.wait().expect("wait").success());
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn a_lost_lock_terminates_the_command_with_exit_70() {
    let s = servers(3);
    let dir = scratch("lost");
    let pid_file = dir.join("pid");
    let mut child = redlock(&nodes_arg(&s))
        .args([
            "run",
            "--resource",
            "lost",
            "--ttl",
            "1s",
            "--grace",
            "500ms",
            "--",
        ])
        .args([
            "sh",
            "-c",
            &format!("echo $$ > {}; exec sleep 30", pid_file.display()),
        ])
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    assert!(eventually(Duration::from_secs(10), || pid_file.exists()));
    let pid = fs::read_to_string(&pid_file)
        .expect("pid")
        .trim()
        .to_owned();
    // A majority stops answering: extensions fail, the lock runs out.
    s[0].pause().expect("pause");
    s[1].pause().expect("pause");
    let started = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            break st;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "redlock did not give up"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    s[0].resume().expect("resume");
    s[1].resume().expect("resume");
    assert_eq!(status.code(), Some(70));
    let gone = eventually(Duration::from_secs(5), || {
        !Path::new(&format!("/proc/{pid}")).exists()
    });
    assert!(gone, "the command survived the lost lock");
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn sigterm_to_redlock_reaches_the_command_and_releases() {
    let s = servers(3);
    let dir = scratch("signal");
    let ready = dir.join("ready");
    let mut child = redlock(&nodes_arg(&s))
        .args(["run", "--resource", "sig", "--ttl", "30s", "--"])
        .args([
            "sh",
            "-c",
            &format!(
                "trap 'exit 42' TERM; touch {}; while true; do sleep 0.05; done",
                ready.display()
            ),
        ])
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn");
    assert!(eventually(Duration::from_secs(10), || ready.exists()));
    assert!(holders(&s, "sig") >= 2);
    let pid = nix_pid(child.id());
    unsafe_free_kill(pid);
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(42), "the command did not get SIGTERM");
    assert_eq!(holders(&s, "sig"), 0, "lock not released after the signal");
    let _ = fs::remove_dir_all(dir);
}

fn nix_pid(id: u32) -> String {
    id.to_string()
}

/// Sends SIGTERM with the `kill` command (no unsafe code in tests).
fn unsafe_free_kill(pid: String) {
    let ok = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(ok.success());
}

#[test]
fn status_shows_holders_and_verdict_in_text_and_json() {
    let s = servers(3);
    let nodes = nodes_arg(&s);
    let o = run(redlock(&nodes).args(["status", "st"]));
    assert_eq!(o.status.code(), Some(0));
    assert!(text(&o).starts_with("st: free"), "{}", text(&o));

    let dir = scratch("status");
    let ready = dir.join("ready");
    let mut holder = redlock(&nodes)
        .args(["run", "--resource", "st", "--"])
        .args(["sh", "-c", &format!("touch {}; sleep 5", ready.display())])
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn holder");
    assert!(eventually(Duration::from_secs(10), || ready.exists()));
    let o = run(redlock(&nodes).args(["status", "st", "--json"]));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["verdict"]["state"], "held_by_other");
    assert_eq!(v["nodes"].as_array().map(Vec::len), Some(3));
    assert_eq!(v["nodes"][0]["state"], "held");
    // Another owner's token is redacted.
    let holder_shown = v["nodes"][0]["holder"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(holder_shown.chars().count() < 12, "{holder_shown}");

    // A majority paused: unknown, exit 69.
    s[0].pause().expect("pause");
    s[1].pause().expect("pause");
    let o = run(redlock(&nodes).args(["status", "st"]));
    s[0].resume().expect("resume");
    s[1].resume().expect("resume");
    assert_eq!(o.status.code(), Some(69), "{}", text(&o));
    assert!(text(&o).contains("unknown"));
    let _ = holder.kill();
    let _ = holder.wait();
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn release_by_token_and_forced_release() {
    let s = servers(3);
    let nodes = nodes_arg(&s);
    let key = "rel";
    for server in &s {
        server
            .text(&["SET", key, "the-token", "PX", "60000"])
            .expect("set");
    }
    let o = run(redlock(&nodes).args(["release", key, "--token", "wrong"]));
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert_eq!(holders(&s, key), 3);
    let o = run(redlock(&nodes).args(["release", key, "--token", "the-token"]));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(holders(&s, key), 0);

    for server in &s {
        server
            .text(&["SET", key, "someone", "PX", "60000"])
            .expect("set");
    }
    let o = run(redlock(&nodes).args(["release", key, "--force"]));
    assert_eq!(
        o.status.code(),
        Some(2),
        "--force without --yes must refuse"
    );
    assert_eq!(holders(&s, key), 3);
    let o = run(redlock(&nodes).args(["release", key, "--force", "--yes"]));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("force-released"));
    assert_eq!(holders(&s, key), 0);
}

#[test]
fn bad_arguments_exit_2() {
    let nodes = "redis://127.0.0.1:1";
    for args in [
        vec!["run", "--", "true"],
        vec!["run", "--resource", "x"],
        vec!["run", "--resource", "x", "--ttl", "0s", "--", "true"],
        vec!["run", "--resource", "x", "--ttl", "soon", "--", "true"],
        vec![
            "run",
            "--resource",
            "x",
            "--wait",
            "1s",
            "--no-wait",
            "--",
            "true",
        ],
        vec!["release", "x"],
        vec!["frobnicate"],
    ] {
        let o = run(redlock(nodes).args(&args));
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o));
    }
    let o = run(redlock(nodes).args(["run", "--resource", "", "--", "true"]));
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}

#[test]
fn a_ttl_too_short_to_extend_is_refused_with_the_minimum() {
    for ttl in ["3ms", "499ms"] {
        let o = run(redlock("redis://127.0.0.1:1").args([
            "run",
            "--resource",
            "x",
            "--ttl",
            ttl,
            "--",
            "true",
        ]));
        assert_eq!(o.status.code(), Some(2), "{ttl}: {}", text(&o));
        assert!(text(&o).contains("at least 500ms"), "{}", text(&o));
    }
}

#[test]
fn the_same_node_twice_is_refused_with_exit_2() {
    let s = servers(1);
    let port = s[0].port();
    for list in [
        format!("redis://127.0.0.1:{port},redis://127.0.0.1:{port}"),
        format!("redis://localhost:{port},redis://LOCALHOST:{port}/0"),
        format!("redis://127.0.0.1:{port}/0,redis://127.0.0.1:{port}/1"),
    ] {
        for args in [
            vec!["run", "--resource", "dup", "--no-wait", "--", "true"],
            vec!["status", "dup"],
        ] {
            let o = run(redlock(&list).args(&args));
            assert_eq!(o.status.code(), Some(2), "{list} {args:?}: {}", text(&o));
            assert!(text(&o).contains("same server"), "{}", text(&o));
        }
    }
    // The default port written out or left implicit is the same node.
    let o = run(redlock("redis://h,redis://h:6379").args(["status", "x"]));
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}

#[test]
fn malformed_urls_exit_78_with_the_expected_form() {
    for (url, says) in [
        ("127.0.0.1:6379", "scheme is missing"),
        ("http://nope", "unknown scheme"),
        ("redis://127.0.0.1:70000", "out of range"),
        ("redis://user:s3cret@127.0.0.1:99999", "out of range"),
        ("redis://127.0.0.1:port", "not a number"),
    ] {
        for args in [
            vec!["run", "--resource", "x", "--", "true"],
            vec!["status", "x"],
        ] {
            let o = run(redlock(url).args(&args));
            let t = text(&o);
            assert_eq!(o.status.code(), Some(78), "{url}: {t}");
            assert!(t.contains(says), "{url}: {t}");
            assert!(
                t.contains("redis://[user:password@]host:port[/db]"),
                "{url}: {t}"
            );
            assert!(!t.contains("s3cret"), "{t}");
        }
    }
}

#[test]
fn refused_credentials_exit_78_at_once_without_waiting() {
    let server = RedisServer::start_with(ServerOptions {
        password: Some("hunter2-secret".into()),
        ..ServerOptions::default()
    })
    .expect("redis-server");
    let port = server.port();
    for (url, reply) in [
        (
            format!("redis://:wrong-secret@127.0.0.1:{port}"),
            "WRONGPASS",
        ),
        (format!("redis://127.0.0.1:{port}"), "NOAUTH"),
        (
            format!("redis://nobody:hunter2-secret@127.0.0.1:{port}"),
            "WRONGPASS",
        ),
    ] {
        let started = Instant::now();
        // The default waits for another owner without limit: a refused
        // password must not count as one, nor as an outage.
        let o = run(redlock(&url).args(["run", "--resource", "pw", "--", "true"]));
        let t = text(&o);
        assert_eq!(o.status.code(), Some(78), "{url}: {t}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "waited {:?}",
            started.elapsed()
        );
        // The server's code, or the redis crate's name for a refused AUTH
        // at connect time (it does not pass the code on).
        assert!(
            t.contains(reply) || t.contains("AuthenticationFailed"),
            "{t}"
        );
        assert!(t.contains("fix the credentials"), "{t}");
        assert!(!t.contains("secret"), "a password leaked: {t}");
        for args in [
            vec!["status", "pw"],
            vec!["release", "pw", "--token", "abc"],
            vec!["release", "pw", "--force", "--yes"],
        ] {
            let o = run(redlock(&url).args(&args));
            assert_eq!(o.status.code(), Some(78), "{url} {args:?}: {}", text(&o));
            assert!(!text(&o).contains("secret"), "{}", text(&o));
        }
    }
}

#[test]
fn unreachable_nodes_give_up_after_the_unavailable_timeout_with_one_line() {
    let s = servers(1);
    let url = s[0].url();
    s[0].kill();
    let started = Instant::now();
    let o = run(redlock(&url).args([
        "run",
        "--resource",
        "gone",
        "--unavailable-timeout",
        "1s",
        "--",
        "true",
    ]));
    let t = text(&o);
    assert_eq!(o.status.code(), Some(69), "{t}");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(800) && took < Duration::from_secs(10),
        "{took:?}"
    );
    let waiting = t.lines().filter(|l| l.contains("waiting for")).count();
    assert_eq!(waiting, 1, "one line when waiting starts: {t}");
    assert!(t.contains("nodes unavailable"), "{t}");
    assert!(t.contains("--unavailable-timeout"), "{t}");
}

#[test]
fn status_with_the_token_shows_the_lock_as_ours() {
    let s = servers(3);
    let nodes = nodes_arg(&s);
    for server in &s {
        server
            .text(&["SET", "mine", "my-token-0123456789", "PX", "60000"])
            .expect("set");
    }
    let o = run(redlock(&nodes).args(["status", "mine", "--json"]));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["verdict"]["state"], "held_by_other", "{}", text(&o));
    let o =
        run(redlock(&nodes).args(["status", "mine", "--token", "my-token-0123456789", "--json"]));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["verdict"]["state"], "held_by_us", "{}", text(&o));
    assert_eq!(v["nodes"][0]["ours"], true);
    let o = run(redlock(&nodes).args(["status", "mine", "--token", "my-token-0123456789"]));
    assert!(text(&o).starts_with("mine: held by us"), "{}", text(&o));
}

#[test]
fn status_text_escapes_control_characters() {
    let s = servers(1);
    let name = "evil\n\x1b[2Jname";
    s[0].text(&["SET", name, "someone", "PX", "60000"])
        .expect("set");
    let o = run(redlock(&s[0].url()).args(["status", name]));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(!out.contains('\x1b'), "{out:?}");
    assert!(
        out.starts_with("evil\\n\\u{1b}[2Jname: held by another owner"),
        "{out:?}"
    );
    assert_eq!(out.lines().count(), 2, "{out:?}");
}

#[test]
fn passwords_never_appear_in_output() {
    let server = RedisServer::start_with(ServerOptions {
        password: Some("hunter2-secret".into()),
        ..ServerOptions::default()
    })
    .expect("redis-server");
    let good = format!("redis://:hunter2-secret@127.0.0.1:{}", server.port());
    let bad = format!("redis://:wrong-secret@127.0.0.1:{}", server.port());
    let o = run(redlock(&good).args(["status", "pw"]));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(!text(&o).contains("hunter2"), "{}", text(&o));
    let o = run(redlock(&bad).args(["run", "--resource", "pw", "--no-wait", "--", "true"]));
    assert_eq!(o.status.code(), Some(78), "{}", text(&o));
    assert!(!text(&o).contains("wrong-secret"), "{}", text(&o));
    let o = run(redlock(&format!("{good},not a url :hunter2-secret@")).args(["status", "pw"]));
    assert_eq!(o.status.code(), Some(78));
    assert!(!text(&o).contains("hunter2"), "{}", text(&o));
}

#[test]
fn help_teaches_by_example() {
    let o = run(Command::new(env!("CARGO_BIN_EXE_redlock")).arg("--help"));
    assert_eq!(o.status.code(), Some(0));
    let t = text(&o);
    assert!(t.contains("redlock run --resource nightly-export"), "{t}");
    for code in [
        "75",
        "69",
        "70",
        "78",
        "126",
        "127",
        "2 bad arguments",
        "1 when nothing",
    ] {
        assert!(t.contains(code), "exit code {code} missing: {t}");
    }
    assert!(t.contains("--unavailable-timeout"), "{t}");
    assert!(t.contains("process group"), "{t}");
}

#[test]
fn waiting_on_a_terminal_shows_one_progress_line() {
    // `script` (util-linux) runs redlock on a pseudo-terminal.
    if Command::new("script").arg("--version").output().is_err() {
        panic!("the `script` command (util-linux) is needed for this test");
    }
    let s = servers(1);
    let nodes = nodes_arg(&s);
    s[0].text(&["SET", "tty", "someone", "PX", "60000"])
        .expect("set");
    let inner = format!(
        "{} --nodes {nodes} run --resource tty --wait 700ms -- true",
        env!("CARGO_BIN_EXE_redlock")
    );
    let o = run(Command::new("script")
        .args(["-qfec", &inner, "/dev/null"])
        .env_remove("REDLOCK_NODES"));
    let t = text(&o);
    assert_eq!(o.status.code(), Some(75), "{t}");
    assert!(t.contains("waiting for 'tty' for"), "no progress line: {t}");
    assert!(t.contains("held by another owner"), "{t}");
    // Redrawn in place with carriage returns, not one line per attempt.
    let lines = t.lines().filter(|l| l.contains("waiting for")).count();
    assert_eq!(lines, 1, "{t}");
}

#[test]
fn without_a_terminal_a_line_is_written_when_the_reason_for_waiting_changes() {
    use std::io::{BufRead, BufReader};
    use std::sync::{Arc, Mutex};

    let s = servers(1);
    s[0].text(&["SET", "why", "someone", "PX", "60000"])
        .expect("set");
    let mut child = redlock(&s[0].url())
        .args([
            "run",
            "--resource",
            "why",
            "--unavailable-timeout",
            "1s",
            "--",
            "true",
        ])
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let reader = {
        let lines = lines.clone();
        let stderr = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                lines.lock().expect("lines").push(line);
            }
        })
    };
    let seen = |what: &str| {
        lines
            .lock()
            .expect("lines")
            .iter()
            .any(|l| l.contains(what))
    };
    assert!(
        eventually(Duration::from_secs(10), || seen("held by another owner")),
        "no line when waiting started"
    );
    // The only node stops answering: the reason changes to an outage, and
    // the command gives up after --unavailable-timeout.
    s[0].pause().expect("pause");
    let started = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            break st;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "no exit");
        std::thread::sleep(Duration::from_millis(20));
    };
    s[0].resume().expect("resume");
    reader.join().expect("reader");
    let lines = lines.lock().expect("lines").clone();
    assert_eq!(status.code(), Some(69), "{lines:#?}");
    let waiting: Vec<&String> = lines.iter().filter(|l| l.contains("waiting for")).collect();
    assert_eq!(waiting.len(), 2, "one line per reason: {lines:#?}");
    assert!(waiting[0].ends_with("held by another owner"), "{lines:#?}");
    assert!(waiting[1].contains("nodes unavailable"), "{lines:#?}");
}
