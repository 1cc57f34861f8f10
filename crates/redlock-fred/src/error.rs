//! Errors: [`ConnectError`] for building a node, and the mapping of fred's
//! errors to [`NodeError`] with every secret removed.

use fred::error::{Error as FredError, ErrorKind};
use redlock_core::NodeError;

/// Why a [`FredNode`](crate::FredNode) could not be built. Never contains a
/// password.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The URL could not be parsed into a fred configuration.
    #[error("invalid redis url: {0}")]
    InvalidUrl(String),
    /// The client could not be built or could not connect.
    #[error("could not connect to {node}: {source}")]
    Connect {
        /// The node's address (see [`FredNode::id`](crate::FredNode)).
        node: String,
        /// What went wrong.
        source: NodeError,
    },
    /// A pool without clients was given.
    #[error("the pool has no clients")]
    EmptyPool,
    /// A setting of the [`FredNodeBuilder`](crate::FredNodeBuilder) is out of
    /// range, such as a zero [`max_outstanding`](crate::FredNodeBuilder::max_outstanding).
    #[error(transparent)]
    InvalidArgument(#[from] redlock_core::InvalidArgument),
}

/// The secrets that must never appear in an id, a log line or an error.
#[derive(Clone, Default)]
pub(crate) struct Secrets(Vec<String>);

impl Secrets {
    pub(crate) fn new() -> Self {
        Secrets(Vec::new())
    }

    /// Adds a secret (ignored when empty) and its percent-decoded form.
    pub(crate) fn add(&mut self, secret: &str) {
        if secret.is_empty() {
            return;
        }
        let decoded = percent_decode(secret);
        for s in [secret.to_owned(), decoded] {
            if !s.is_empty() && !self.0.contains(&s) {
                self.0.push(s);
            }
        }
        // Longest first so that a secret containing another is fully replaced.
        self.0.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }

    /// Adds the user-info part of a URL (`user:password@`), if any.
    pub(crate) fn add_from_url(&mut self, url: &str) {
        let Some((_, rest)) = url.split_once("://") else {
            return;
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
        if let Some((userinfo, _)) = authority.rsplit_once('@') {
            match userinfo.split_once(':') {
                Some((_, password)) => self.add(password),
                None => self.add(userinfo),
            }
        }
        // Query parameters such as `sentinelPassword=...`.
        if let Some((_, query)) = rest.split_once('?') {
            for pair in query.split('&') {
                if let Some((k, v)) = pair.split_once('=') {
                    if k.to_ascii_lowercase().contains("password") {
                        self.add(v);
                    }
                }
            }
        }
    }

    /// `text` with every secret replaced by `***`.
    pub(crate) fn redact(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for s in &self.0 {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), "***");
            }
        }
        out
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether the error is a `NOSCRIPT` reply (the script cache was flushed).
pub(crate) fn is_noscript(e: &FredError) -> bool {
    e.details().trim_start().starts_with("NOSCRIPT")
}

/// Whether `details` looks like a reply from the server (`ERR ...`,
/// `READONLY ...`): an upper-case first word.
fn is_server_reply(details: &str) -> bool {
    let first = details.split_whitespace().next().unwrap_or("");
    first.len() >= 2
        && first
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b == b'_' || b.is_ascii_digit())
}

/// Whether the server refused the credentials or permissions
/// (`WRONGPASS`, `NOAUTH`, `NOPERM`): a configuration error, not an outage.
fn is_auth(e: &FredError) -> bool {
    if matches!(e.kind(), ErrorKind::Auth) {
        return true;
    }
    let details = e.details();
    ["WRONGPASS", "NOAUTH", "NOPERM"]
        .iter()
        .any(|code| details.contains(code))
}

/// What fred answers, before handing the command to its connection task,
/// for a command with `fail_fast` while the client is not connected
/// (fred 10.1 `interfaces.rs`, `send_to_router`).
const FAIL_FAST_DETAILS: &str = "Connection closed unexpectedly.";
/// What fred answers for a command it could not hand to its connection task
/// because that task is gone (after `quit`, or never started):
/// `send_to_router` and `ClientInner::send_command` in fred 10.1.
const NO_ROUTER_DETAILS: [&str; 2] = [
    "Client is not initialized.",
    "Failed to send command to router.",
];

/// Whether fred certainly did not send the command: refused by the
/// fail-fast check, by a full command queue (`max_command_buffer_len`), or
/// because the connection task is gone. Every other error may come after
/// the command was written.
pub(crate) fn never_sent(e: &FredError) -> bool {
    match e.kind() {
        ErrorKind::Canceled => e.details() == FAIL_FAST_DETAILS,
        ErrorKind::Backpressure => true,
        ErrorKind::Unknown => NO_ROUTER_DETAILS.contains(&e.details()),
        _ => false,
    }
}

/// Maps a fred error to a [`NodeError`], removing secrets. A command fred
/// certainly did not send ([`never_sent`]) becomes
/// [`NodeError::NotConnected`], which tells the core that no release is
/// owed for it.
pub(crate) fn node_error(e: &FredError, secrets: &Secrets) -> NodeError {
    let text = secrets.redact(&e.to_string());
    if is_auth(e) {
        return NodeError::Auth(text);
    }
    if never_sent(e) {
        return NodeError::NotConnected(text);
    }
    match e.kind() {
        ErrorKind::Parse | ErrorKind::Protocol => NodeError::Protocol(text),
        ErrorKind::InvalidArgument | ErrorKind::InvalidCommand | ErrorKind::NotFound => {
            NodeError::Server(text)
        }
        ErrorKind::Unknown if is_server_reply(e.details()) => NodeError::Server(text),
        _ => NodeError::Connection(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_url_passwords() {
        let mut s = Secrets::new();
        s.add_from_url("redis://user:s%40cret@host:6379/0?sentinelPassword=other");
        assert_eq!(s.redact("bad s@cret and s%40cret"), "bad *** and ***");
        assert_eq!(s.redact("x other y"), "x *** y");
        let mut s = Secrets::new();
        s.add_from_url("redis://onlypass@host");
        assert_eq!(s.redact("onlypass"), "***");
        let mut s = Secrets::new();
        s.add_from_url("redis://host:6379");
        assert_eq!(s.redact("host:6379"), "host:6379");
    }

    #[test]
    fn classifies_errors() {
        let s = Secrets::new();
        let e = FredError::new(ErrorKind::Unknown, "NOSCRIPT No matching script.");
        assert!(is_noscript(&e));
        assert!(matches!(node_error(&e, &s), NodeError::Server(_)));
        let e = FredError::new(ErrorKind::IO, "connection reset");
        assert!(matches!(node_error(&e, &s), NodeError::Connection(_)));
        let e = FredError::new(ErrorKind::Unknown, "Too many failed write attempts.");
        assert!(matches!(node_error(&e, &s), NodeError::Connection(_)));
        for details in [
            "WRONGPASS invalid username-password pair or user is disabled.",
            "NOAUTH Authentication required.",
            "NOPERM this user has no permissions to run the 'evalsha' command",
        ] {
            let e = FredError::new(ErrorKind::Unknown, details);
            assert!(
                matches!(node_error(&e, &s), NodeError::Auth(_)),
                "{details}"
            );
        }
        let e = FredError::new(ErrorKind::Auth, "auth failed");
        assert!(matches!(node_error(&e, &s), NodeError::Auth(_)));
        let e = FredError::new(ErrorKind::Protocol, "bad frame");
        assert!(matches!(node_error(&e, &s), NodeError::Protocol(_)));
    }

    #[test]
    fn tells_unsent_commands_apart() {
        let s = Secrets::new();
        for e in [
            FredError::new(ErrorKind::Canceled, FAIL_FAST_DETAILS),
            FredError::new(ErrorKind::Unknown, NO_ROUTER_DETAILS[0]),
            FredError::new(ErrorKind::Unknown, NO_ROUTER_DETAILS[1]),
            FredError::new(ErrorKind::Backpressure, "Max in-flight commands reached."),
        ] {
            let mapped = node_error(&e, &s);
            assert!(matches!(mapped, NodeError::NotConnected(_)), "{e:?}");
            assert!(!mapped.was_sent(), "{e:?}");
        }
        // A command dropped by fred after it may have been written (its
        // connection task was stopped) is not known to be unsent.
        for e in [
            FredError::new_canceled(),
            FredError::new(ErrorKind::IO, "Connection Closed"),
            FredError::new(ErrorKind::Timeout, "Request timed out."),
        ] {
            assert!(node_error(&e, &s).was_sent(), "{e:?}");
        }
    }
}
