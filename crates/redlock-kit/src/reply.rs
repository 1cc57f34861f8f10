//! The lock scripts' replies in lock terms, and the one-key acquire sent as a
//! plain `SET NX PX`.
//!
//! An adapter turns its client's reply value into a [`Reply`] (a few lines:
//! one arm per variant) and decodes it here. Anything the scripts never
//! return becomes [`NodeError::Protocol`], never a panic.

use std::time::Duration;

use redlock_core::{Acquire, Extend, KeyState, NodeError};

/// A server reply, in the terms the lock scripts use.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// Nil (also a Lua `false`).
    Nil,
    /// An integer.
    Int(i64),
    /// A bulk or simple string (`OK`, a token, a number as text).
    Text(String),
    /// An array.
    Array(Vec<Reply>),
    /// A reply the scripts never give, described for the error message.
    Other(String),
    /// A server's error reply inside an array (one release of a merged
    /// release that failed), its text already scrubbed of secrets.
    Error(String),
}

impl Reply {
    fn int(&self) -> Option<i64> {
        match self {
            Reply::Int(i) => Some(*i),
            Reply::Text(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    /// An [`Error`](Reply::Error) as [`NodeError::Server`], anything else
    /// as it is.
    pub fn into_result(self) -> Result<Reply, NodeError> {
        match self {
            Reply::Error(text) => Err(NodeError::Server(text)),
            other => Ok(other),
        }
    }

    fn text(&self) -> Option<String> {
        match self {
            Reply::Text(s) => Some(s.clone()),
            Reply::Int(i) => Some(i.to_string()),
            _ => None,
        }
    }
}

/// Cuts `s` to at most `max` bytes (on a character boundary), marking the
/// cut with `…`.
pub(crate) fn truncate(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
}

fn unexpected(what: &str, v: &Reply) -> NodeError {
    let mut s = format!("{v:?}");
    truncate(&mut s, 120);
    NodeError::Protocol(format!("{what}: {s}"))
}

/// The acquire script's `1` / `0`, or a plain `SET NX PX`'s `OK` / nil.
///
/// ```
/// use redlock_core::Acquire;
/// use redlock_kit::reply::{acquire, Reply};
///
/// assert_eq!(acquire(&Reply::Text("OK".into())), Ok(Acquire::Acquired));
/// assert_eq!(acquire(&Reply::Nil), Ok(Acquire::Held));
/// assert!(acquire(&Reply::Int(7)).is_err());
/// ```
pub fn acquire(v: &Reply) -> Result<Acquire, NodeError> {
    match v {
        Reply::Nil => return Ok(Acquire::Held),
        Reply::Text(s) if s == "OK" => return Ok(Acquire::Acquired),
        _ => {}
    }
    match v.int() {
        Some(1) => Ok(Acquire::Acquired),
        Some(0) => Ok(Acquire::Held),
        _ => Err(unexpected("acquire script returned", v)),
    }
}

/// The extend script's `1` / `0`.
pub fn extend(v: &Reply) -> Result<Extend, NodeError> {
    match v.int() {
        Some(1) => Ok(Extend::Extended),
        Some(0) => Ok(Extend::NotHeld),
        _ => Err(unexpected("extend script returned", v)),
    }
}

/// The release script's count of deleted keys.
pub fn release(v: &Reply) -> Result<u64, NodeError> {
    v.int()
        .and_then(|n| u64::try_from(n).ok())
        .ok_or_else(|| unexpected("release script returned", v))
}

/// The fence script's largest counter (an integer or a decimal string).
pub fn fence(v: &Reply) -> Result<u64, NodeError> {
    if let Some(n) = v.int().and_then(|n| u64::try_from(n).ok()) {
        return Ok(n);
    }
    // Lua may print large numbers as floats ("1e+15").
    v.text()
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|f| f.is_finite() && *f >= 0.0 && *f < u64::MAX as f64)
        .map(|f| f as u64)
        .ok_or_else(|| unexpected("fence script returned", v))
}

/// The inspect script's `{pttl, value}` per key, one entry per key.
pub fn inspect(keys: &[String], v: Reply) -> Result<Vec<KeyState>, NodeError> {
    let items = match v {
        Reply::Array(items) => items,
        // An empty Lua table comes back as an empty array or as nil.
        Reply::Nil if keys.is_empty() => Vec::new(),
        other => return Err(unexpected("inspect script returned", &other)),
    };
    if items.len() != keys.len() {
        return Err(NodeError::Protocol(format!(
            "inspect script returned {} entries for {} keys",
            items.len(),
            keys.len()
        )));
    }
    keys.iter()
        .zip(items)
        .map(|(key, item)| {
            let pair = match item {
                Reply::Array(pair) if !pair.is_empty() && pair.len() <= 2 => pair,
                other => return Err(unexpected("inspect entry", &other)),
            };
            let pttl = pair[0]
                .int()
                .ok_or_else(|| unexpected("inspect pttl", &pair[0]))?;
            let holder = match pair.get(1) {
                None | Some(Reply::Nil) => None,
                Some(v) => Some(v.text().ok_or_else(|| unexpected("inspect value", v))?),
            };
            let ttl = match u64::try_from(pttl) {
                Ok(ms) if holder.is_some() => Some(Duration::from_millis(ms)),
                _ => None,
            };
            Ok(KeyState::new(key.clone(), holder, ttl))
        })
        .collect()
}

/// The arguments of `SET key token NX PX ttl` for a one-key acquire, when
/// the acquire script is the built-in one: the same atomic effect and reply
/// (`OK` / nil, read by [`acquire`]) at a fraction of the server's cost of a
/// script, and no `NOSCRIPT` to handle. `None` for anything else.
///
/// ```
/// use redlock_kit::reply::plain_set;
///
/// let keys = vec!["job".to_owned()];
/// assert_eq!(
///     plain_set(redlock_core::scripts::ACQUIRE, &keys, "tok", 3000),
///     Some(["SET", "job", "tok", "NX", "PX"]).map(|a| (a, "3000".to_owned()))
/// );
/// assert_eq!(plain_set("return 1", &keys, "tok", 3000), None);
/// ```
pub fn plain_set<'a>(
    acquire_script: &str,
    keys: &'a [String],
    token: &'a str,
    ttl_ms: u64,
) -> Option<([&'a str; 5], String)> {
    match keys {
        [key] if acquire_script == redlock_core::scripts::ACQUIRE => {
            Some((["SET", key.as_str(), token, "NX", "PX"], ttl_ms.to_string()))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_script_replies() {
        assert_eq!(acquire(&Reply::Int(1)), Ok(Acquire::Acquired));
        assert_eq!(acquire(&Reply::Int(0)), Ok(Acquire::Held));
        assert_eq!(acquire(&Reply::Text("1".into())), Ok(Acquire::Acquired));
        assert!(acquire(&Reply::Int(2)).is_err());
        assert!(acquire(&Reply::Other("Double(1.5)".into())).is_err());
        assert_eq!(extend(&Reply::Int(0)), Ok(Extend::NotHeld));
        assert_eq!(extend(&Reply::Int(1)), Ok(Extend::Extended));
        assert!(extend(&Reply::Nil).is_err());
        assert_eq!(release(&Reply::Int(3)), Ok(3));
        assert!(release(&Reply::Int(-1)).is_err());
        assert_eq!(fence(&Reply::Text("42".into())), Ok(42));
        assert_eq!(fence(&Reply::Int(42)), Ok(42));
        assert_eq!(
            fence(&Reply::Text("1e+15".into())),
            Ok(1_000_000_000_000_000)
        );
        assert!(fence(&Reply::Text("x".into())).is_err());
        assert!(fence(&Reply::Text("-1".into())).is_err());
    }

    #[test]
    fn long_replies_are_cut_in_errors() {
        let long = Reply::Text("é".repeat(200));
        let Err(NodeError::Protocol(text)) = release(&long) else {
            panic!("a protocol error");
        };
        assert!(text.len() < 200, "{text}");
        assert!(text.ends_with('…'));
    }

    #[test]
    fn parses_inspect() {
        let keys = vec!["a".to_string(), "b".to_string()];
        let v = Reply::Array(vec![
            Reply::Array(vec![Reply::Int(900), Reply::Text("tok".into())]),
            Reply::Array(vec![Reply::Int(-2), Reply::Nil]),
        ]);
        let states = inspect(&keys, v).expect("valid reply");
        assert_eq!(states[0].holder.as_deref(), Some("tok"));
        assert_eq!(states[0].ttl, Some(Duration::from_millis(900)));
        assert_eq!(states[1].holder, None);
        assert_eq!(states[1].ttl, None);
        assert!(inspect(&keys, Reply::Array(vec![])).is_err());
        assert!(inspect(&keys, Reply::Int(1)).is_err());
        assert_eq!(inspect(&[], Reply::Nil), Ok(Vec::new()));
        let bad = Reply::Array(vec![Reply::Array(vec![]), Reply::Array(vec![])]);
        assert!(inspect(&keys, bad).is_err());
    }
}
