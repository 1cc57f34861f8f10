//! Errors of constructing a node, and mapping of `redis` errors to
//! [`NodeError`].

use redlock_core::NodeError;
use redlock_kit::{is_auth_reply, AUTH_CODES};

use crate::address::Secrets;

redlock_kit::adapter_error! {
    /// Why a node could not be created. Never contains a password. A URL
    /// the `redis` crate refuses is [`Error::InvalidConfig`].
    pub enum Error {}
}

/// Maps a `redis` error to a [`NodeError`], scrubbing secrets.
pub(crate) fn node_error(e: &redis::RedisError, redact: &Secrets) -> NodeError {
    let text = redact.redact(&e.to_string());
    if is_auth(e) {
        NodeError::Auth(text)
    } else if e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.is_unrecoverable_error()
    {
        NodeError::Connection(text)
    } else if e.code().is_some() {
        NodeError::Server(text)
    } else if matches!(e.kind(), redis::ErrorKind::UnexpectedReturnType) {
        NodeError::Protocol(text)
    } else {
        NodeError::Connection(text)
    }
}

/// Whether `e` refuses the credentials or permissions.
pub(crate) fn is_auth(e: &redis::RedisError) -> bool {
    if matches!(e.kind(), redis::ErrorKind::AuthenticationFailed) {
        return true;
    }
    e.code().is_some_and(|c| AUTH_CODES.contains(&c)) || is_auth_reply(&e.to_string())
}

/// Whether the connection should be replaced after this error: it broke, or
/// the server became a replica (after a failover).
pub(crate) fn needs_reconnect(e: &redis::RedisError) -> bool {
    if e.is_timeout() {
        // The connection still keeps order; replacing it could let a later
        // request overtake one still queued on the old socket.
        return false;
    }
    e.is_connection_dropped() || e.is_unrecoverable_error() || e.is_io_error() || is_readonly(e)
}

pub(crate) fn is_readonly(e: &redis::RedisError) -> bool {
    e.code() == Some("READONLY") || e.to_string().contains("READONLY")
}

pub(crate) fn is_noscript(e: &redis::RedisError) -> bool {
    e.code() == Some("NOSCRIPT") || e.to_string().contains("NOSCRIPT")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_and_permission_errors_are_configuration_errors() {
        let r = Secrets::default();
        for (code, detail) in [
            (
                "WRONGPASS",
                "invalid username-password pair or user is disabled.",
            ),
            ("NOAUTH", "Authentication required."),
            (
                "NOPERM",
                "this user has no permissions to run the 'evalsha' command",
            ),
        ] {
            let e = redis::make_extension_error(code.into(), Some(detail.into()));
            assert!(
                matches!(node_error(&e, &r), NodeError::Auth(_)),
                "{code}: {:?}",
                node_error(&e, &r)
            );
        }
        let e = redis::RedisError::from((redis::ErrorKind::AuthenticationFailed, "auth failed"));
        assert!(matches!(node_error(&e, &r), NodeError::Auth(_)));
        let e = redis::RedisError::from((redis::ErrorKind::Io, "connection refused"));
        assert!(!matches!(node_error(&e, &r), NodeError::Auth(_)));
    }
}
