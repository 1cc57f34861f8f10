//! The factory that turns a conformance target into a `FredNode`: a URL for
//! single servers and sentinel, a client built by hand for a cluster (the
//! "wrap the user's client" path).
#![allow(dead_code)]

use std::sync::Arc;

use redlock_core::Node;
use redlock_fred::fred::prelude::*;
use redlock_fred::{default_reconnect_policy, FredNode};
use redlock_testkit::conformance::{BoxError, Target};

/// `host:port` of a `redis://host:port` URL.
pub fn host_port(url: &str) -> String {
    url.trim_start_matches("redis://")
        .rsplit('@')
        .next()
        .unwrap_or_default()
        .trim_end_matches('/')
        .to_string()
}

/// A fred cluster client over the given seed URLs, with a reconnect policy.
pub fn cluster_client(urls: &[String]) -> Result<Client, BoxError> {
    let mut hosts = Vec::new();
    for u in urls {
        let hp = host_port(u);
        let (host, port) = hp.rsplit_once(':').ok_or("url without port")?;
        hosts.push(Server::new(host, port.parse::<u16>()?));
    }
    let config = Config {
        server: ServerConfig::Clustered {
            hosts,
            policy: Default::default(),
        },
        ..Config::default()
    };
    let client = Builder::from_config(config)
        .set_policy(default_reconnect_policy())
        .build()?;
    Ok(client)
}

/// The sentinel URL fred understands.
pub fn sentinel_url(sentinels: &[String], master: &str) -> String {
    let first = host_port(&sentinels[0]);
    let others: String = sentinels[1..]
        .iter()
        .map(|s| format!("&node={}", host_port(s)))
        .collect();
    format!("redis-sentinel://{first}?sentinelServiceName={master}{others}")
}

pub async fn factory(target: Target) -> Result<Arc<dyn Node>, BoxError> {
    let node = match target {
        Target::Single(url) => FredNode::connect(&url).await?,
        Target::Cluster(urls) => FredNode::from_client(cluster_client(&urls)?).await?,
        Target::Sentinel { sentinels, master } => {
            FredNode::connect(&sentinel_url(&sentinels, &master)).await?
        }
    };
    Ok(Arc::new(node))
}
