//! Which node ids name the same server: two entries for one server would
//! count its vote twice.

/// The server behind a node id (see [`Node::id`](crate::Node::id)), for
/// comparison: host lower-cased, default port 6379 filled in, user, database
/// number and query left out. A different database or user on the same
/// server is still the same server, and fails with it. Ids that are not
/// URLs are compared as they are.
pub(crate) fn server_of(id: &str) -> String {
    let Some((scheme, rest)) = id.split_once("://") else {
        return id.to_owned();
    };
    // Keep a deployment kind written before the scheme (`cluster:`,
    // `sentinel:name@`): a cluster seed is not the same node as that server.
    let scheme = scheme.to_ascii_lowercase();
    let (kind, scheme) = match scheme.rsplit_once(':') {
        Some((kind, s)) => (format!("{kind}:"), s.to_owned()),
        None => (String::new(), scheme),
    };
    if scheme.contains("unix") {
        let path = rest.split(['?', '#']).next().unwrap_or(rest);
        return format!("{kind}unix:{path}");
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    let (host, port) = split_port(host_port);
    let port = port.unwrap_or("6379");
    let port = port
        .parse::<u16>()
        .map_or_else(|_| port.to_owned(), |p| p.to_string());
    format!("{kind}{}:{port}", host.to_ascii_lowercase())
}

/// `host:port`, `[v6]:port`, `host` or `[v6]`, into host and port.
fn split_port(host_port: &str) -> (&str, Option<&str>) {
    if let Some(v6) = host_port.strip_prefix('[') {
        return match v6.split_once(']') {
            Some((host, after)) => (host, after.strip_prefix(':').filter(|p| !p.is_empty())),
            None => (host_port, None),
        };
    }
    match host_port.rsplit_once(':') {
        Some((host, port)) if !port.is_empty() => (host, Some(port)),
        Some((host, _)) => (host, None),
        None => (host_port, None),
    }
}

#[cfg(test)]
mod tests {
    use super::server_of;

    #[test]
    fn the_same_server_written_differently() {
        let same = [
            "redis://a",
            "redis://a:6379",
            "redis://A:6379/0",
            "redis://A:6379/3",
            "redis://user@a:6379",
            "rediss://a:06379",
            "redis://a:6379?protocol=resp3",
        ];
        for id in same {
            assert_eq!(server_of(id), "a:6379", "{id}");
        }
        assert_ne!(server_of("redis://a:6380"), server_of("redis://a"));
        assert_ne!(server_of("redis://b"), server_of("redis://a"));
        assert_eq!(server_of("redis://[::1]"), server_of("redis://[::1]:6379"));
        assert_ne!(server_of("cluster:redis://a"), server_of("redis://a"));
        assert_eq!(server_of("sim-0"), "sim-0");
        assert_ne!(server_of("sim-0"), server_of("sim-1"));
        assert_eq!(
            server_of("redis+unix:///tmp/r.sock"),
            server_of("redis+unix:///tmp/r.sock?db=2")
        );
    }
}
