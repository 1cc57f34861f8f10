//! Node URLs in error messages: the form they must have, and what is
//! wrong with one a client refused.

use crate::{redact_url, Secrets};

/// The form a node URL must have, for error messages.
pub const EXPECTED_FORM: &str =
    "redis://[user:password@]host:port[/db] (rediss:// for TLS, redis+unix:///path for a socket)";

/// What is wrong with a node URL a client refused, in words a user can act
/// on. Never quotes the password.
///
/// ```
/// use redlock_kit::url::url_problem;
///
/// assert!(url_problem("127.0.0.1:6379").contains("scheme is missing"));
/// assert!(url_problem("redis://h:70000").contains("out of range"));
/// ```
pub fn url_problem(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "the scheme is missing (start the URL with redis://)".into();
    };
    let scheme = scheme.to_ascii_lowercase();
    if !matches!(
        scheme.as_str(),
        "redis" | "rediss" | "redis+unix" | "unix" | "valkey" | "valkeys"
    ) {
        return format!("unknown scheme {scheme:?} (use redis:// or rediss://)");
    }
    if scheme.contains("unix") {
        return "the socket path is not valid".into();
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    let (host, port) = if let Some(v6) = host_port.strip_prefix('[') {
        match v6.split_once(']') {
            Some((h, after)) => (h, after.strip_prefix(':')),
            None => return "an IPv6 address needs a closing ] (redis://[::1]:6379)".into(),
        }
    } else {
        match host_port.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (host_port, None),
        }
    };
    if host.is_empty() {
        return "the host is missing".into();
    }
    if let Some(port) = port {
        match port.parse::<u32>() {
            Ok(p) if (1..=65535).contains(&p) => {}
            Ok(p) => return format!("port {p} is out of range (1 to 65535)"),
            Err(_) if port.is_empty() => return "the port is empty after ':'".into(),
            Err(_) => return "the port is not a number".into(),
        }
    }
    if let Some(db) = rest
        .split(['?', '#'])
        .next()
        .and_then(|r| r.split_once('/'))
        .map(|(_, db)| db)
        .filter(|db| !db.is_empty())
    {
        if db.parse::<i64>().is_err() {
            return "the database after '/' is not a number".into();
        }
    }
    "the URL is malformed".into()
}

/// The text of an adapter's error for a node URL its client refused: the
/// URL without its password, what is wrong with it ([`url_problem`]), the
/// form expected, and the client's own words with the password removed.
///
/// ```
/// use redlock_kit::url::invalid_url;
///
/// let text = invalid_url("redis://:s3cret@h:70000", "invalid port s3cret");
/// assert!(text.contains("port 70000 is out of range"));
/// assert!(!text.contains("s3cret"));
/// ```
pub fn invalid_url(url: &str, client_error: &str) -> String {
    let mut secrets = Secrets::default();
    // The password as written in the URL (percent-encoded or not).
    secrets.add_from_url(url);
    format!(
        "{}: {}; expected {EXPECTED_FORM} ({})",
        redact_url(url),
        url_problem(url),
        secrets.redact(client_error)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_problems_say_what_to_fix() {
        assert!(url_problem("127.0.0.1:6379").contains("scheme is missing"));
        assert!(url_problem("http://h").contains("unknown scheme"));
        assert!(url_problem("redis://h:70000").contains("out of range"));
        assert!(url_problem("redis://h:0").contains("out of range"));
        assert!(url_problem("redis://h:x").contains("not a number"));
        assert!(url_problem("redis://:pw@").contains("host is missing"));
        assert!(!url_problem("redis://u:s3cret@h:70000").contains("s3cret"));
    }
}
