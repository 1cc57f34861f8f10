//! Native compare-and-delete and compare-and-set, where the server has them.
//!
//! Newer servers can release and extend a one-key lock without a script:
//!
//! | server | release (compare-and-delete) | extend (compare-and-set) |
//! |---|---|---|
//! | Valkey 9.0+ | `DELIFEQ key token` → `1` / `0` | `SET key token IFEQ token PX ttl` → `OK` / nil |
//! | Redis 8.4+ | `DELEX key IFEQ token` → `1` / `0` | `SET key token IFEQ token PX ttl` → `OK` / nil |
//!
//! Each has the same atomic effect as the built-in script for one key:
//! the key is deleted (or given a new TTL) only while it still holds the
//! token, and `SET … IFEQ` never creates a key that is gone. Without
//! scripts, a node keeps working where an ACL denies `@scripting` to its
//! user, and the server does less work per call.
//!
//! An adapter asks once per connection, as it connects, with
//! [`DETECT`] (`COMMAND INFO DELIFEQ DELEX`), and reads the reply with
//! [`Capabilities::from_command_info`]. A server that does not know the
//! command (Redis 7 and older, Valkey 8) answers nil for it; a user whose
//! ACL forbids `COMMAND` gets an error: either way the node keeps to the
//! scripts. A server has `SET … IFEQ` wherever it has one of the two
//! compare-and-delete commands (Valkey added it in 8.1, Redis with `DELEX`
//! in 8.4), so one question answers both.
//!
//! Only the built-in scripts are replaced, and only for one key: a
//! substitute script (see [`redlock_core::Scripts`]) is always run as
//! written, and a multi-key call stays one script (a native command covers
//! one key).
//!
//! ## Wake-on-release
//!
//! The built-in release script also announces the release on the key's
//! channel ([`release_channel`](redlock_core::scripts::release_channel)),
//! which is what wakes waiters in other processes. A native delete does
//! not publish, so a native release is sent as two commands in one go:
//! the delete, then [`announce`]'s `PUBLISH`. The announcement goes out
//! only once the delete's reply says it deleted the key
//! ([`Entry::announcement`](crate::plan::Entry::announcement)), ahead of
//! the node's next batch, as the script announces only what it deleted. The
//! announcement's reply is not the release's: a `PUBLISH` refused by an
//! ACL without channel rights never fails a release.
//!
//! ```
//! use redlock_kit::native::{self, Capabilities};
//! use redlock_kit::reply::Reply;
//!
//! // What Valkey 9 answers to `COMMAND INFO DELIFEQ DELEX`:
//! let reply = Reply::Array(vec![
//!     Reply::Array(vec![Reply::Text("delifeq".into()), Reply::Int(3)]),
//!     Reply::Nil,
//! ]);
//! let caps = Capabilities::from_command_info(&reply);
//! let keys = vec!["job".to_owned()];
//! let release = native::release(caps, redlock_core::scripts::RELEASE, &keys, "tok")
//!     .expect("a native release");
//! assert_eq!(release.to_string(), "DELIFEQ job tok");
//! assert_eq!(native::announce("job", "tok").to_string(), "PUBLISH redlock:release:job tok");
//! ```

use std::borrow::Cow;
use std::fmt;

use redlock_core::{Extend, NodeError};

use crate::reply::Reply;

/// The command that asks a server which native commands it has:
/// `COMMAND INFO DELIFEQ DELEX`. Its reply goes to
/// [`Capabilities::from_command_info`].
pub const DETECT: [&str; 4] = ["COMMAND", "INFO", "DELIFEQ", "DELEX"];

/// [`DETECT`] as a [`Command`].
pub fn detect() -> Command<'static> {
    Command {
        name: DETECT[0],
        args: DETECT[1..].iter().map(|a| Cow::Borrowed(*a)).collect(),
    }
}

/// Which compare-and-delete command a server has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// Valkey 9: `DELIFEQ key value`.
    DelIfEq,
    /// Redis 8.4: `DELEX key IFEQ value`.
    DelEx,
}

/// What one connection's server can do without scripts. The default (and
/// [`Capabilities::NONE`]) is nothing: every call is a script.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Capabilities {
    /// The compare-and-delete command, if any.
    pub delete_if_equal: Option<Dialect>,
    /// Whether `SET key value IFEQ old PX ttl` is understood.
    pub set_if_equal: bool,
}

impl Capabilities {
    /// No native commands: scripts only.
    pub const NONE: Capabilities = Capabilities {
        delete_if_equal: None,
        set_if_equal: false,
    };

    /// What Valkey 9 has.
    pub const VALKEY: Capabilities = Capabilities {
        delete_if_equal: Some(Dialect::DelIfEq),
        set_if_equal: true,
    };

    /// What Redis 8.4 has.
    pub const REDIS: Capabilities = Capabilities {
        delete_if_equal: Some(Dialect::DelEx),
        set_if_equal: true,
    };

    /// Reads the reply to [`DETECT`]: one entry per command asked about,
    /// nil (or an empty array) for a command the server does not know.
    /// Anything else (an error, a reply of another shape) means
    /// [`NONE`](Self::NONE): the node keeps to its scripts, which work
    /// everywhere scripting is allowed.
    ///
    /// ```
    /// use redlock_kit::native::{Capabilities, Dialect};
    /// use redlock_kit::reply::Reply;
    ///
    /// // Redis 7: neither command.
    /// let old = Reply::Array(vec![Reply::Nil, Reply::Nil]);
    /// assert_eq!(Capabilities::from_command_info(&old), Capabilities::NONE);
    /// // Redis 8.4: DELEX.
    /// let new = Reply::Array(vec![
    ///     Reply::Nil,
    ///     Reply::Array(vec![Reply::Text("delex".into()), Reply::Int(-2)]),
    /// ]);
    /// assert_eq!(
    ///     Capabilities::from_command_info(&new).delete_if_equal,
    ///     Some(Dialect::DelEx)
    /// );
    /// ```
    pub fn from_command_info(reply: &Reply) -> Capabilities {
        let Reply::Array(entries) = reply else {
            return Capabilities::NONE;
        };
        if entries.len() != DETECT.len() - 2 {
            return Capabilities::NONE;
        }
        let has = |i: usize| described(&entries[i], DETECT[i + 2]);
        let delete_if_equal = if has(0) {
            Some(Dialect::DelIfEq)
        } else if has(1) {
            Some(Dialect::DelEx)
        } else {
            None
        };
        Capabilities {
            delete_if_equal,
            set_if_equal: delete_if_equal.is_some(),
        }
    }

    /// These capabilities when native commands are allowed, else
    /// [`NONE`](Self::NONE): what a node's `native_commands(bool)` setting
    /// does with what it detected.
    pub fn allowed(self, allowed: bool) -> Capabilities {
        if allowed {
            self
        } else {
            Capabilities::NONE
        }
    }

    /// Whether any call can go out without a script.
    pub fn any(self) -> bool {
        self.delete_if_equal.is_some() || self.set_if_equal
    }
}

/// Whether one entry of a `COMMAND INFO` reply describes `name`: an array
/// whose first item is the command's name (any case).
fn described(entry: &Reply, name: &str) -> bool {
    match entry {
        Reply::Array(items) => match items.first() {
            Some(Reply::Text(found)) => found.eq_ignore_ascii_case(name),
            _ => false,
        },
        _ => false,
    }
}

/// One command ready for any client: its name and its arguments, as plain
/// text. `Display` shows it as it would be typed (for tests and logs; it
/// holds a token, so it is no place for secrets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command<'a> {
    /// The command's name, e.g. `DELIFEQ`.
    pub name: &'static str,
    /// Its arguments in order.
    pub args: Vec<Cow<'a, str>>,
}

impl Command<'_> {
    /// Whether this is a native release's delete (`DELIFEQ`, `DELEX`): an
    /// adapter treats it as it treats the release script (ordering, one
    /// more write attempt after a reconnect).
    pub fn is_release(&self) -> bool {
        matches!(self.name, "DELIFEQ" | "DELEX")
    }

    /// The name followed by the arguments, e.g. to hand to a client that
    /// takes one list.
    pub fn words(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.name).chain(self.args.iter().map(|a| a.as_ref()))
    }
}

impl fmt::Display for Command<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for w in self.words() {
            if !first {
                f.write_str(" ")?;
            }
            first = false;
            f.write_str(w)?;
        }
        Ok(())
    }
}

/// Whether an error reply to a native command says the server refused it
/// without running it: an ACL that does not allow it (`NOPERM`), or a
/// server that does not have it (an unknown command, or `SET … IFEQ` read
/// as a syntax error), as after a failover or a rollback to an older
/// server. The built-in script then does the same work.
///
/// ```
/// use redlock_kit::native::refused_unrun;
///
/// assert!(refused_unrun("NOPERM User default has no permissions to run the 'delifeq' command"));
/// assert!(refused_unrun("NoPerm: User default has no permissions to run the 'delifeq' command"));
/// assert!(refused_unrun("ERR unknown command 'DELIFEQ', with args beginning with: 'k' 't'"));
/// assert!(refused_unrun("ERR syntax error"));
/// assert!(!refused_unrun("connection reset"));
/// assert!(!refused_unrun("WRONGTYPE Operation against a key holding the wrong kind of value"));
/// ```
pub fn refused_unrun(error: &str) -> bool {
    // Clients spell the code their own way (`NOPERM`, `NoPerm`).
    let error = error.to_ascii_lowercase();
    ["noperm", "unknown command", "syntax error"]
        .iter()
        .any(|refusal| error.contains(refusal))
}

/// The native release of `keys` held by `token`, when the server has a
/// compare-and-delete command, `release_script` is the built-in
/// [`RELEASE`](redlock_core::scripts::RELEASE) and there is exactly one
/// key; `None` otherwise (send the script). Its reply (`1` deleted, `0`
/// not ours or gone) is read by [`crate::reply::release`]. Send
/// [`announce`] right after it, in the same pipeline.
pub fn release<'a>(
    caps: Capabilities,
    release_script: &str,
    keys: &'a [String],
    token: &'a str,
) -> Option<Command<'a>> {
    if !releases_natively(caps, release_script, keys) {
        return None;
    }
    let [key] = keys else { return None };
    let (key, token) = (Cow::Borrowed(key.as_str()), Cow::Borrowed(token));
    Some(match caps.delete_if_equal? {
        Dialect::DelIfEq => Command {
            name: "DELIFEQ",
            args: vec![key, token],
        },
        Dialect::DelEx => Command {
            name: "DELEX",
            args: vec![key, Cow::Borrowed("IFEQ"), token],
        },
    })
}

/// Whether [`release`] gives a native command for these arguments (one
/// key, the built-in script, a compare-and-delete on the server), without
/// building it.
pub fn releases_natively(caps: Capabilities, release_script: &str, keys: &[String]) -> bool {
    caps.delete_if_equal.is_some()
        && keys.len() == 1
        && release_script == redlock_core::scripts::RELEASE
}

/// The announcement a native release sends after its delete, as the
/// built-in release script does: `PUBLISH redlock:release:<key> <token>`.
/// Its reply (the number of subscribers, or an error) is not the
/// release's and is ignored.
pub fn announce<'a>(key: &str, token: &'a str) -> Command<'a> {
    Command {
        name: "PUBLISH",
        args: vec![
            Cow::Owned(redlock_core::scripts::release_channel(key)),
            Cow::Borrowed(token),
        ],
    }
}

/// The native extend of `keys` held by `token` to `ttl_ms`:
/// `SET key token IFEQ token PX ttl`, when the server has `SET … IFEQ`,
/// `extend_script` is the built-in
/// [`EXTEND`](redlock_core::scripts::EXTEND) and there is exactly one key;
/// `None` otherwise. It never creates a key that is gone. Its reply is
/// read by [`extend_reply`].
///
/// ```
/// use redlock_kit::native::{self, Capabilities};
///
/// let keys = vec!["job".to_owned()];
/// let script = redlock_core::scripts::EXTEND;
/// let cmd = native::extend(Capabilities::VALKEY, script, &keys, "tok", 3000).unwrap();
/// assert_eq!(cmd.to_string(), "SET job tok IFEQ tok PX 3000");
/// assert!(native::extend(Capabilities::NONE, script, &keys, "tok", 3000).is_none());
/// ```
pub fn extend<'a>(
    caps: Capabilities,
    extend_script: &str,
    keys: &'a [String],
    token: &'a str,
    ttl_ms: u64,
) -> Option<Command<'a>> {
    let [key] = keys else { return None };
    if !caps.set_if_equal || extend_script != redlock_core::scripts::EXTEND {
        return None;
    }
    Some(Command {
        name: "SET",
        args: vec![
            Cow::Borrowed(key.as_str()),
            Cow::Borrowed(token),
            Cow::Borrowed("IFEQ"),
            Cow::Borrowed(token),
            Cow::Borrowed("PX"),
            Cow::Owned(ttl_ms.to_string()),
        ],
    })
}

/// The reply to a native extend: `OK` extended, nil not ours (another
/// token, or no key). Anything else is [`NodeError::Protocol`].
///
/// ```
/// use redlock_core::Extend;
/// use redlock_kit::native::extend_reply;
/// use redlock_kit::reply::Reply;
///
/// assert_eq!(extend_reply(&Reply::Text("OK".into())), Ok(Extend::Extended));
/// assert_eq!(extend_reply(&Reply::Nil), Ok(Extend::NotHeld));
/// assert!(extend_reply(&Reply::Int(1)).is_err());
/// ```
pub fn extend_reply(reply: &Reply) -> Result<Extend, NodeError> {
    match reply {
        Reply::Text(s) if s == "OK" => Ok(Extend::Extended),
        Reply::Nil => Ok(Extend::NotHeld),
        other => {
            let mut text = format!("{other:?}");
            crate::reply::truncate(&mut text, 120);
            Err(NodeError::Protocol(format!(
                "SET IFEQ (native extend) returned {text}"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redlock_core::scripts::{EXTEND, RELEASE};

    fn info(name: &str) -> Reply {
        Reply::Array(vec![
            Reply::Text(name.into()),
            Reply::Int(3),
            Reply::Array(vec![Reply::Text("write".into())]),
        ])
    }

    fn keys(k: &[&str]) -> Vec<String> {
        k.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn detects_each_dialect() {
        let valkey = Reply::Array(vec![info("delifeq"), Reply::Nil]);
        assert_eq!(
            Capabilities::from_command_info(&valkey),
            Capabilities::VALKEY
        );
        let redis = Reply::Array(vec![Reply::Nil, info("delex")]);
        assert_eq!(Capabilities::from_command_info(&redis), Capabilities::REDIS);
        // Both known: the one-word DELIFEQ is preferred.
        let both = Reply::Array(vec![info("DELIFEQ"), info("DELEX")]);
        assert_eq!(Capabilities::from_command_info(&both), Capabilities::VALKEY);
        // Neither, as nil or as an empty array (both seen in the wild).
        for none in [
            Reply::Array(vec![Reply::Nil, Reply::Nil]),
            Reply::Array(vec![Reply::Array(vec![]), Reply::Array(vec![])]),
        ] {
            let caps = Capabilities::from_command_info(&none);
            assert_eq!(caps, Capabilities::NONE);
            assert!(!caps.any());
        }
    }

    #[test]
    fn the_question() {
        assert_eq!(detect().to_string(), "COMMAND INFO DELIFEQ DELEX");
    }

    #[test]
    fn anything_unexpected_means_scripts() {
        for odd in [
            Reply::Nil,
            Reply::Int(1),
            Reply::Other("NOPERM this user has no permissions to run 'command'".into()),
            // A reply for a different question (one entry, or three).
            Reply::Array(vec![info("delifeq")]),
            Reply::Array(vec![info("delifeq"), Reply::Nil, Reply::Nil]),
            // An entry describing some other command.
            Reply::Array(vec![info("del"), info("get")]),
            Reply::Array(vec![Reply::Array(vec![Reply::Int(1)]), Reply::Nil]),
        ] {
            assert_eq!(
                Capabilities::from_command_info(&odd),
                Capabilities::NONE,
                "{odd:?}"
            );
        }
    }

    #[test]
    fn release_is_native_for_one_key_with_the_built_in_script() {
        let one = keys(&["job"]);
        let valkey = release(Capabilities::VALKEY, RELEASE, &one, "tok").unwrap();
        assert_eq!(valkey.to_string(), "DELIFEQ job tok");
        let redis = release(Capabilities::REDIS, RELEASE, &one, "tok").unwrap();
        assert_eq!(redis.to_string(), "DELEX job IFEQ tok");
        assert!(valkey.is_release() && redis.is_release());
        assert!(!announce("job", "tok").is_release());
        assert_eq!(
            redis.words().collect::<Vec<_>>(),
            ["DELEX", "job", "IFEQ", "tok"]
        );
        // Not native: no capability, switched off, several keys, no key,
        // a substitute script.
        assert!(release(Capabilities::NONE, RELEASE, &one, "tok").is_none());
        assert!(release(Capabilities::VALKEY.allowed(false), RELEASE, &one, "tok").is_none());
        assert!(release(Capabilities::VALKEY, RELEASE, &keys(&["a", "b"]), "tok").is_none());
        assert!(release(Capabilities::VALKEY, RELEASE, &[], "tok").is_none());
        let custom = RELEASE.replace("publish", "-- publish");
        assert!(release(Capabilities::VALKEY, &custom, &one, "tok").is_none());
        // SET IFEQ alone (no compare-and-delete) does not release natively.
        let set_only = Capabilities {
            delete_if_equal: None,
            set_if_equal: true,
        };
        assert!(set_only.any());
        assert!(release(set_only, RELEASE, &one, "tok").is_none());
    }

    #[test]
    fn extend_is_native_for_one_key_with_the_built_in_script() {
        let one = keys(&["job"]);
        for caps in [Capabilities::VALKEY, Capabilities::REDIS] {
            let cmd = extend(caps, EXTEND, &one, "tok", 1500).unwrap();
            assert_eq!(cmd.name, "SET");
            assert_eq!(cmd.to_string(), "SET job tok IFEQ tok PX 1500");
        }
        assert!(extend(Capabilities::NONE, EXTEND, &one, "tok", 1).is_none());
        assert!(extend(Capabilities::REDIS.allowed(false), EXTEND, &one, "tok", 1).is_none());
        assert!(extend(Capabilities::VALKEY, EXTEND, &keys(&["a", "b"]), "tok", 1).is_none());
        assert!(extend(Capabilities::VALKEY, "return 1", &one, "tok", 1).is_none());
        let delete_only = Capabilities {
            delete_if_equal: Some(Dialect::DelIfEq),
            set_if_equal: false,
        };
        assert!(extend(delete_only, EXTEND, &one, "tok", 1).is_none());
    }

    #[test]
    fn announce_matches_the_release_script_channel() {
        let cmd = announce("jobs:{7}", "tok");
        assert_eq!(cmd.name, "PUBLISH");
        assert_eq!(
            cmd.args[0],
            redlock_core::scripts::release_channel("jobs:{7}")
        );
        assert_eq!(cmd.args[1], "tok");
        assert!(RELEASE.contains("'redlock:release:' .. KEYS[i], ARGV[1]"));
    }

    #[test]
    fn extend_replies() {
        assert_eq!(
            extend_reply(&Reply::Text("OK".into())),
            Ok(Extend::Extended)
        );
        assert_eq!(extend_reply(&Reply::Nil), Ok(Extend::NotHeld));
        for bad in [
            Reply::Int(0),
            Reply::Text("QUEUED".into()),
            Reply::Array(vec![]),
        ] {
            assert!(
                matches!(extend_reply(&bad), Err(NodeError::Protocol(_))),
                "{bad:?}"
            );
        }
        let Err(NodeError::Protocol(long)) = extend_reply(&Reply::Text("é".repeat(300))) else {
            panic!("a protocol error");
        };
        assert!(long.len() < 200 && long.ends_with('…'), "{long}");
    }

    #[test]
    fn release_replies_are_the_scripts() {
        assert_eq!(crate::reply::release(&Reply::Int(1)), Ok(1));
        assert_eq!(crate::reply::release(&Reply::Int(0)), Ok(0));
    }
}
