//! The error type every adapter returns when a node cannot be made, its
//! shared variants written once ([`adapter_error!`](crate::adapter_error)),
//! and what in a server's error reply tells a refused credential apart
//! ([`is_auth_reply`](crate::is_auth_reply)).

/// Error codes of a server that refuses the credentials or permissions
/// (`WRONGPASS`, `NOAUTH`, `NOPERM`): a configuration error
/// ([`NodeError::Auth`](redlock_core::NodeError::Auth)), not an outage.
pub const AUTH_CODES: [&str; 3] = ["WRONGPASS", "NOAUTH", "NOPERM"];

/// Whether an error's text names one of the [`AUTH_CODES`].
///
/// ```
/// assert!(redlock_kit::is_auth_reply("NOPERM this user has no permissions"));
/// assert!(!redlock_kit::is_auth_reply("ERR unknown command"));
/// ```
pub fn is_auth_reply(text: &str) -> bool {
    AUTH_CODES.iter().any(|code| text.contains(code))
}

/// Declares an adapter's public error type for making a node: the variants
/// every adapter has (`InvalidConfig`, `Connect`, `NoRuntime`,
/// `InvalidArgument`) followed by the adapter's own, with `From`
/// conversions from [`settings::Invalid`](crate::settings::Invalid) and
/// [`queue::NoRuntime`](crate::queue::NoRuntime). The adapter depends on
/// `thiserror` (the variants' messages use it).
///
/// ```
/// redlock_kit::adapter_error! {
///     /// Why a node could not be made.
///     pub enum Error {
///         /// No client was given.
///         #[error("no client")]
///         NoClient,
///     }
/// }
///
/// let e = Error::InvalidConfig("response_timeout is zero".into());
/// assert_eq!(e.to_string(), "invalid node settings: response_timeout is zero");
/// assert_eq!(Error::NoClient.to_string(), "no client");
/// ```
#[macro_export]
macro_rules! adapter_error {
    ($(#[$meta:meta])* pub enum $name:ident { $($own:tt)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, thiserror::Error)]
        #[non_exhaustive]
        pub enum $name {
            /// The node's settings cannot work (a malformed URL or seed
            /// list, a zero timeout, a replica wait on a cluster); the
            /// message says which and what to give instead.
            #[error("invalid node settings: {0}")]
            InvalidConfig(String),
            /// The server could not be reached, or refused the connection
            /// or the credentials.
            #[error("could not connect to {node}: {cause}")]
            Connect {
                /// The node's id (its address without credentials).
                node: String,
                /// What went wrong.
                cause: $crate::__core::NodeError,
            },
            /// No tokio runtime is running; a node's connections and queue
            /// run as tasks on it. Make nodes from within a tokio runtime.
            #[error("no tokio runtime: create nodes from within a tokio runtime")]
            NoRuntime,
            /// A setting is out of range, such as a zero `max_outstanding`;
            /// or the Redlock options were invalid.
            #[error(transparent)]
            InvalidArgument(#[from] $crate::__core::InvalidArgument),
            $($own)*
        }

        impl ::std::convert::From<$crate::settings::Invalid> for $name {
            fn from(invalid: $crate::settings::Invalid) -> Self {
                match invalid {
                    $crate::settings::Invalid::Config(text) => $name::InvalidConfig(text),
                    $crate::settings::Invalid::Argument(e) => $name::InvalidArgument(e),
                }
            }
        }

        impl ::std::convert::From<$crate::queue::NoRuntime> for $name {
            fn from(_: $crate::queue::NoRuntime) -> Self {
                $name::NoRuntime
            }
        }
    };
}
