//! Nodes for a suite, started here or given by `REDLOCK_TEST_NODES`:
//! [`test_nodes`].

use super::{RedisServer, Result, ServerError};

/// Nodes for a suite: servers started here, or the URLs of
/// `REDLOCK_TEST_NODES` when set.
#[derive(Debug)]
pub struct TestNodes {
    urls: Vec<String>,
    servers: Vec<RedisServer>,
}

impl TestNodes {
    /// The URLs, one per node.
    pub fn urls(&self) -> &[String] {
        &self.urls
    }

    /// The servers started here (empty when `REDLOCK_TEST_NODES` was used).
    pub fn servers(&self) -> &[RedisServer] {
        &self.servers
    }

    /// Whether these are servers started elsewhere.
    pub fn external(&self) -> bool {
        self.servers.is_empty()
    }
}

/// `n` nodes for a test: when `REDLOCK_TEST_NODES=redis://a,redis://b,...` is
/// set, its first `n` URLs (an error when it lists fewer); otherwise `n`
/// fresh servers started here.
pub fn test_nodes(n: usize) -> Result<TestNodes> {
    if let Ok(list) = std::env::var("REDLOCK_TEST_NODES") {
        let urls: Vec<String> = list
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        if !urls.is_empty() {
            if urls.len() < n {
                return Err(ServerError::Settle(format!(
                    "REDLOCK_TEST_NODES lists {} nodes, the test needs {n}",
                    urls.len()
                )));
            }
            return Ok(TestNodes {
                urls: urls.into_iter().take(n).collect(),
                servers: Vec::new(),
            });
        }
    }
    let mut servers = Vec::with_capacity(n);
    for _ in 0..n {
        servers.push(RedisServer::start()?);
    }
    Ok(TestNodes {
        urls: servers.iter().map(|s| s.url()).collect(),
        servers,
    })
}
