//! Errors: [`Error`] for building a node, and the mapping of fred's
//! errors to [`NodeError`] with every secret removed.

use fred::error::{Error as FredError, ErrorKind};
use redlock_core::NodeError;
pub(crate) use redlock_kit::Secrets;

redlock_kit::adapter_error! {
    /// Why a [`FredNode`](crate::FredNode) could not be built. Never
    /// contains a password.
    pub enum Error {
        /// The URL could not be parsed into a fred configuration.
        #[error("invalid redis url: {0}")]
        InvalidUrl(String),
        /// A pool without clients was given.
        #[error("the pool has no clients")]
        EmptyPool,
    }
}

/// The former name of [`Error`].
#[doc(hidden)]
pub type ConnectError = Error;

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
    redlock_kit::is_auth_reply(e.details())
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
    fn classifies_errors() {
        let s = Secrets::default();
        let e = FredError::new(ErrorKind::Unknown, "NOSCRIPT No matching script.");
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
        let s = Secrets::default();
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
