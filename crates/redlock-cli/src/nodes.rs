//! Node URLs: parsing, redaction and connecting.

use std::sync::Arc;

use redlock_core::Node;

/// The default when neither `--nodes` nor `REDLOCK_NODES` is given.
pub const DEFAULT_NODE: &str = "redis://127.0.0.1:6379";

/// Splits a comma-separated list of URLs, trimming blanks.
pub fn split(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `url` without its password.
pub use redlock_redis_rs::redact_url as redact;

/// A node per URL, connecting in the background: an unreachable minority
/// must not stop the command. Only a malformed URL is an error here: a
/// configuration error whose message names the URL with its password
/// redacted, what is wrong and the expected form.
pub fn open(urls: &[String]) -> Result<Vec<Arc<dyn Node>>, String> {
    let mut nodes: Vec<Arc<dyn Node>> = Vec::with_capacity(urls.len());
    for url in urls {
        let node = redlock_redis_rs::RedisNode::open(url).map_err(|e| match e {
            redlock_redis_rs::Error::InvalidConfig(why) => format!("invalid node URL {why}"),
            other => format!("cannot use node {}: {other}", redact(url)),
        })?;
        nodes.push(Arc::new(node));
    }
    Ok(nodes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        for url in [
            "redis://user:s3cret@host:1/0",
            "redis://:s3cret@host",
            "redis://a:s3cret@c@host",
            "not a url s3cret@host",
        ] {
            assert!(!redact(url).contains("s3cret"), "{url} -> {}", redact(url));
        }
        assert_eq!(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
    }

    #[test]
    fn splits_lists() {
        assert_eq!(
            split(" redis://a , redis://b,,"),
            vec!["redis://a", "redis://b"]
        );
    }
}
