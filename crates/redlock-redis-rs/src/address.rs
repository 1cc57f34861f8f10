//! Names for logs: addresses without passwords, and what is wrong with a
//! URL (secret scrubbing itself is [`redlock_kit::Secrets`]).

use redis::{ConnectionAddr, ConnectionInfo};
pub(crate) use redlock_kit::{redact_url, Secrets};

/// `redis://user@host:port/db` for a connection, never with the password.
pub(crate) fn display_id(info: &ConnectionInfo) -> String {
    let settings = info.redis_settings();
    let scheme = match info.addr() {
        ConnectionAddr::Tcp(..) => "redis",
        ConnectionAddr::TcpTls { .. } => "rediss",
        ConnectionAddr::Unix(..) => "redis+unix",
        _ => "redis",
    };
    let user = settings
        .username()
        .map(|u| format!("{u}@"))
        .unwrap_or_default();
    let db = if settings.db() != 0 {
        format!("/{}", settings.db())
    } else {
        String::new()
    };
    format!("{scheme}://{user}{}{db}", info.addr())
}

/// The form a node URL must have, for error messages.
pub(crate) const EXPECTED_FORM: &str =
    "redis://[user:password@]host:port[/db] (rediss:// for TLS, redis+unix:///path for a socket)";

/// What is wrong with a URL the `redis` crate refused, in words a user can
/// act on. Never quotes the password.
pub(crate) fn url_problem(url: &str) -> String {
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

/// The secrets of a connection (its password), for [`Secrets::redact`].
pub(crate) fn secrets_of(info: &ConnectionInfo) -> Secrets {
    let mut secrets = Secrets::default();
    secrets.add_opt(info.redis_settings().password());
    secrets
}

/// The URLs of a deployment (cluster seeds, sentinels) and the secrets in
/// them; `InvalidConfig` with `none` when there are none.
#[cfg(any(feature = "cluster", feature = "sentinel"))]
pub(crate) fn seed_urls<'a, S: AsRef<str>>(
    seeds: &'a [S],
    none: &str,
) -> Result<(Vec<&'a str>, Secrets), crate::Error> {
    let urls: Vec<&str> = seeds.iter().map(|s| s.as_ref()).collect();
    if urls.is_empty() {
        return Err(crate::Error::InvalidConfig(none.to_owned()));
    }
    let mut redact = Secrets::default();
    for u in &urls {
        if let Ok(info) = redis::IntoConnectionInfo::into_connection_info(*u) {
            redact.add_opt(info.redis_settings().password());
        }
    }
    Ok((urls, redact))
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

    #[test]
    fn ids_from_connection_info() {
        use redis::IntoConnectionInfo;
        let info = "redis://alice:s3cret@127.0.0.1:6380/3"
            .into_connection_info()
            .unwrap();
        let id = display_id(&info);
        assert_eq!(id, "redis://alice@127.0.0.1:6380/3");
        let r = secrets_of(&info);
        assert_eq!(r.redact("bad s3cret here"), "bad *** here");
    }
}
