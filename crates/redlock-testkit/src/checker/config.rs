//! What a run does: [`Config`].

use std::time::Duration;

/// What a run does.
#[derive(Debug, Clone)]
pub struct Config {
    /// A name for the report.
    pub name: String,
    /// Concurrent contenders (tasks).
    pub contenders: usize,
    /// Stop once this many holds happened.
    pub acquisitions: u64,
    /// The lock's TTL.
    pub ttl: Duration,
    /// The gap between the read and the write while holding the lock.
    pub hold: Duration,
    /// The resource name (the key is `key_prefix + resource`).
    pub resource: String,
    /// A key prefix, so runs on the same nodes do not meet.
    pub key_prefix: String,
    /// Take fencing tokens and make the register check them.
    pub fenced: bool,
    /// Every `n`-th hold pauses its whole task (the lock's keep-alive too)
    /// for the given time between read and write: a client stopped by a GC
    /// pause or SIGSTOP. Needs a multi-threaded tokio runtime.
    pub client_pause: Option<(u64, Duration)>,
    /// After each acquisition, read the nodes to count how many hold the
    /// token (costs a round trip per hold): `Some(skip)` reads every node but
    /// those in `skip` (nodes whose keys a fault removes, so a read there
    /// says nothing) and counts a hold as "exactly a quorum" when the others
    /// hold `quorum - skip.len()` (with fewer, the quorum needed the skipped
    /// nodes).
    pub count_holders: Option<Vec<usize>>,
    /// Retry delay between attempts (jitter is the same again at most).
    pub retry_delay: Duration,
    /// A fixed per-node timeout (default: derived from the TTL by the core).
    pub node_timeout: Option<Duration>,
    /// The run goes on at least this long (so a fault goes through a whole
    /// cycle), even after [`Config::acquisitions`] holds.
    pub min_duration: Duration,
    /// The run stops after this long even if fewer holds happened.
    pub max_duration: Duration,
}

impl Config {
    /// Defaults: 8 contenders, 1000 holds, TTL 1 s, hold 1 ms, no fencing.
    pub fn new(name: &str) -> Self {
        Config {
            name: name.to_owned(),
            contenders: 8,
            acquisitions: 1000,
            ttl: Duration::from_secs(1),
            hold: Duration::from_millis(1),
            resource: "checker".to_owned(),
            key_prefix: format!("chk:{name}:{}:", std::process::id()),
            fenced: false,
            client_pause: None,
            count_holders: None,
            retry_delay: Duration::from_millis(2),
            node_timeout: None,
            min_duration: Duration::ZERO,
            max_duration: Duration::from_secs(600),
        }
    }

    /// Sets [`Config::acquisitions`].
    pub fn acquisitions(mut self, n: u64) -> Self {
        self.acquisitions = n;
        self
    }

    /// Sets [`Config::contenders`].
    pub fn contenders(mut self, k: usize) -> Self {
        self.contenders = k;
        self
    }

    /// Sets [`Config::ttl`].
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Sets [`Config::hold`].
    pub fn hold(mut self, hold: Duration) -> Self {
        self.hold = hold;
        self
    }

    /// Sets [`Config::fenced`].
    pub fn fenced(mut self, fenced: bool) -> Self {
        self.fenced = fenced;
        self
    }

    /// Sets [`Config::client_pause`].
    pub fn client_pause(mut self, every: u64, pause: Duration) -> Self {
        self.client_pause = Some((every.max(1), pause));
        self
    }

    /// Sets [`Config::count_holders`]: count holders on every node but
    /// those in `skip`.
    pub fn count_holders(mut self, skip: Vec<usize>) -> Self {
        self.count_holders = Some(skip);
        self
    }

    /// Sets [`Config::node_timeout`].
    pub fn node_timeout(mut self, timeout: Duration) -> Self {
        self.node_timeout = Some(timeout);
        self
    }

    /// Sets [`Config::min_duration`].
    pub fn min_duration(mut self, d: Duration) -> Self {
        self.min_duration = d;
        self
    }

    /// Sets [`Config::max_duration`].
    pub fn max_duration(mut self, d: Duration) -> Self {
        self.max_duration = d;
        self
    }

    /// The lock key on the nodes.
    pub fn key(&self) -> String {
        format!("{}{}", self.key_prefix, self.resource)
    }
}
