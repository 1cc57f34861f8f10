//! Mixed deployments: node-redlock (the npm `redlock` package, 4.2.0, over
//! `ioredis`) and this library lock the same resources on the same three
//! `redis-server` processes and exclude each other.
//!
//! Needs `node` and the two npm packages. They are taken from
//! `REDLOCK_NODE_MODULES` (a folder holding `node_modules/redlock` and
//! `node_modules/ioredis`), else from `target/node-redlock`, where `npm`
//! installs them on first use. Without `node`, or when the packages cannot be
//! had, the test prints why and passes without running.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use redlock_core::{LockError, Options, Redlock};
use redlock_redis_rs::RedisNode;
use redlock_testkit::server::Reply;
use redlock_testkit::RedisServer;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

const TTL: Duration = Duration::from_secs(10);
const RESOURCE: &str = "mixed:report";

/// A node-redlock client driven line by line over stdin / stdout.
const SCRIPT: &str = r#"
const Redlock = require('redlock');
const Redis = require('ioredis');
const clients = process.argv.slice(2).map((url) => new Redis(url, { maxRetriesPerRequest: 1 }));
const redlock = new Redlock(clients, { retryCount: 0, retryDelay: 50, retryJitter: 0 });
redlock.on('clientError', () => {});
let lock = null;
const lines = require('readline').createInterface({ input: process.stdin });
lines.on('line', async (line) => {
  const [command, resource] = line.trim().split(' ');
  try {
    if (command === 'lock') {
      lock = await redlock.lock(resource, 10000);
      console.log('locked ' + lock.value);
    } else if (command === 'unlock') {
      await lock.unlock();
      console.log('unlocked');
    } else if (command === 'unlock-foreign') {
      // A lock object with a token that is not the holder's.
      const foreign = new Redlock.Lock(redlock, resource, 'not-the-holders-token', Date.now() + 10000);
      await redlock.unlock(foreign).catch(() => {});
      console.log('unlocked');
    } else if (command === 'quit') {
      await redlock.quit();
      console.log('bye');
      process.exit(0);
    }
  } catch (e) {
    console.log('failed ' + (e && e.name));
  }
});
"#;

/// Where `node_modules` with redlock 4.2.0 and ioredis is, or why not.
fn node_modules() -> Result<PathBuf, String> {
    let has = |dir: &Path| {
        dir.join("node_modules/redlock/package.json").exists()
            && dir.join("node_modules/ioredis/package.json").exists()
    };
    if let Some(dir) = std::env::var_os("REDLOCK_NODE_MODULES").map(PathBuf::from) {
        return if has(&dir) {
            Ok(dir)
        } else {
            Err(format!(
                "REDLOCK_NODE_MODULES={} has no node_modules/redlock and node_modules/ioredis",
                dir.display()
            ))
        };
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/node-redlock");
    if has(&dir) {
        return Ok(dir);
    }
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let out = std::process::Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--prefix"])
        .arg(&dir)
        .args(["redlock@4.2.0", "ioredis@5"])
        .output()
        .map_err(|e| format!("npm not available ({e})"))?;
    if out.status.success() && has(&dir) {
        Ok(dir)
    } else {
        Err(format!(
            "npm install redlock@4.2.0 ioredis@5 failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

struct NodeClient {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl NodeClient {
    async fn start(dir: &Path, urls: &[String]) -> NodeClient {
        let script = dir.join("redlock-interop.js");
        std::fs::write(&script, SCRIPT).expect("script written");
        let mut child = Command::new("node")
            .arg(&script)
            .args(urls)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("node starts");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
        NodeClient {
            child,
            stdin,
            stdout,
        }
    }

    /// Sends a command and returns the reply line.
    async fn ask(&mut self, command: &str) -> String {
        self.stdin
            .write_all(format!("{command}\n").as_bytes())
            .await
            .expect("write to node");
        let line = tokio::time::timeout(Duration::from_secs(20), self.stdout.next_line())
            .await
            .unwrap_or_else(|_| panic!("node answers {command:?} in time"))
            .expect("read from node");
        line.unwrap_or_else(|| panic!("node exited before answering {command:?}"))
    }
}

async fn redlock(servers: &[RedisServer], options: Options) -> Redlock {
    let mut nodes = Vec::new();
    for s in servers {
        nodes.push(RedisNode::connect(&s.url()).await.expect("connects"));
    }
    Redlock::new(nodes, options).expect("valid")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_redlock_and_this_library_exclude_each_other() {
    if std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_err()
    {
        println!("skipped: `node` is not on the PATH");
        return;
    }
    let dir = match node_modules() {
        Ok(dir) => dir,
        Err(why) => {
            println!("skipped: {why}");
            return;
        }
    };
    let servers: Vec<RedisServer> = (0..3)
        .map(|_| RedisServer::start().expect("redis-server starts"))
        .collect();
    let urls: Vec<String> = servers.iter().map(|s| s.url()).collect();
    let mut node = NodeClient::start(&dir, &urls).await;
    let rust = redlock(&servers, Options::new()).await;

    // A Node.js holder keeps this library out.
    let reply = node.ask(&format!("lock {RESOURCE}")).await;
    let node_token = reply.strip_prefix("locked ").expect(&reply).to_owned();
    match rust.try_lock(RESOURCE, TTL).await {
        Err(LockError::Conflict(_)) => {}
        other => panic!("expected a conflict with the Node.js holder, got {other:?}"),
    }
    // Same key, same token check: the key holds the Node.js token.
    for server in &servers {
        assert_eq!(
            server.command(&["GET", RESOURCE]).ok(),
            Some(Reply::Bulk(Some(node_token.clone()))),
        );
    }

    // A waiter here gets the lock once the Node.js holder releases it (at
    // its next retry: node-redlock announces no release).
    let waiter = redlock(
        &servers,
        Options::new()
            .retry_count(-1)
            .retry_delay(Duration::from_millis(50))
            .retry_jitter(Duration::from_millis(10)),
    )
    .await;
    let waiting = tokio::spawn(async move { waiter.lock(RESOURCE, TTL).await });
    assert_eq!(node.ask("unlock").await, "unlocked");
    let mut lock = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the waiter gets the lock after the Node.js release")
        .expect("task")
        .expect("locked");

    // A holder here keeps node-redlock out, and a Node.js release with
    // another token leaves the lock alone.
    let reply = node.ask(&format!("lock {RESOURCE}")).await;
    assert!(
        reply.starts_with("failed"),
        "node-redlock got the lock: {reply}"
    );
    assert_eq!(
        node.ask(&format!("unlock-foreign {RESOURCE}")).await,
        "unlocked"
    );
    lock.extend(TTL)
        .await
        .expect("still ours after the foreign release");

    // Released here: node-redlock gets it.
    lock.unlock().await.expect("released");
    let reply = node.ask(&format!("lock {RESOURCE}")).await;
    assert!(reply.starts_with("locked "), "{reply}");
    assert_eq!(node.ask("unlock").await, "unlocked");
    assert_eq!(node.ask("quit").await, "bye");
    let _ = node.child.wait().await;
}
