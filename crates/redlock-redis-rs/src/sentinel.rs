//! The master of a Sentinel deployment as one Redlock node (feature
//! `sentinel`), followed across failovers: when the connection breaks or the
//! server answers `READONLY` (it became a replica), the next request asks the
//! sentinels for the master again.

use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};

use crate::address::{redact_url, seed_urls};
use crate::node::{Builder, RedisNode};
use crate::single::Connector;
use crate::Error;
use redlock_kit::watch::ReleaseHub;

use crate::watch::SentinelOpener;

impl Builder {
    /// One node for the master that the sentinels at `sentinels` know as
    /// `master_name`. `master` carries the master's own settings (password,
    /// db, TLS) when it needs any. Connects in the background.
    // `SentinelClient::build` takes a `String` without the `tls` feature.
    #[allow(clippy::unnecessary_to_owned)]
    pub fn open_sentinel<S: AsRef<str>>(
        self,
        sentinels: &[S],
        master_name: &str,
        master: Option<SentinelNodeConnectionInfo>,
    ) -> Result<RedisNode, Error> {
        let (urls, redact) = seed_urls(sentinels, "no sentinel URLs")?;
        let first = urls.first().copied().unwrap_or_default();
        let build = |master| {
            SentinelClient::build(
                urls.clone(),
                master_name.to_string(),
                master,
                SentinelServerType::Master,
            )
            .map_err(|e| Error::InvalidConfig(redact.redact(&e.to_string())))
        };
        let client = build(master.clone())?;
        let id = format!("sentinel:{master_name}@{}", redact_url(first));
        // The release watch asks the sentinels for the master on every
        // connection it opens, so it follows a failover.
        let hub = if self.settings.wake_on_release {
            ReleaseHub::spawn(SentinelOpener(build(master)?), redact.clone(), id.clone())
        } else {
            None
        };
        let connector = Connector::Sentinel {
            client,
            config: self.config(),
        };
        self.spawn_single(connector, id, redact, hub)
    }

    /// Like [`open_sentinel`](Self::open_sentinel), then waits until the
    /// master answers.
    pub async fn connect_sentinel<S: AsRef<str>>(
        self,
        sentinels: &[S],
        master_name: &str,
        master: Option<SentinelNodeConnectionInfo>,
    ) -> Result<RedisNode, Error> {
        let node = self.open_sentinel(sentinels, master_name, master)?;
        node.ping().await?;
        Ok(node)
    }
}

impl RedisNode {
    /// One node for a Sentinel-managed master, once it answered. See
    /// [`Builder::open_sentinel`].
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), redlock_redis_rs::Error> {
    /// use redlock_redis_rs::RedisNode;
    /// let node = RedisNode::connect_sentinel(
    ///     &["redis://127.0.0.1:26379", "redis://127.0.0.1:26380"],
    ///     "mymaster",
    /// )
    /// .await?;
    /// # let _ = node; Ok(()) }
    /// ```
    pub async fn connect_sentinel<S: AsRef<str>>(
        sentinels: &[S],
        master_name: &str,
    ) -> Result<RedisNode, Error> {
        Builder::default()
            .connect_sentinel(sentinels, master_name, None)
            .await
    }
}
