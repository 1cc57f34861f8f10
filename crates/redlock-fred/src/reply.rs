//! Turning script replies into lock terms. Anything the scripts never return
//! becomes [`NodeError::Protocol`], never a panic.

use std::time::Duration;

use fred::types::Value;
use redlock_core::{Acquire, Extend, KeyState, NodeError};

fn describe(v: &Value) -> String {
    let mut s = format!("{v:?}");
    if s.len() > 120 {
        let mut end = 120;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

fn unexpected(what: &str, v: &Value) -> NodeError {
    NodeError::Protocol(format!("{what}: {}", describe(v)))
}

fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Integer(i) => Some(*i),
        Value::String(s) => s.trim().parse().ok(),
        Value::Bytes(b) => std::str::from_utf8(b).ok()?.trim().parse().ok(),
        _ => None,
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.to_string()),
        Value::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::Integer(i) => Some(i.to_string()),
        _ => None,
    }
}

/// The acquire script's `1` / `0`.
pub(crate) fn acquire(v: &Value) -> Result<Acquire, NodeError> {
    match int(v) {
        Some(1) => Ok(Acquire::Acquired),
        Some(0) => Ok(Acquire::Held),
        _ => Err(unexpected("acquire script returned", v)),
    }
}

/// The extend script's `1` / `0`.
pub(crate) fn extend(v: &Value) -> Result<Extend, NodeError> {
    match int(v) {
        Some(1) => Ok(Extend::Extended),
        Some(0) => Ok(Extend::NotHeld),
        _ => Err(unexpected("extend script returned", v)),
    }
}

/// The release script's count of deleted keys.
pub(crate) fn release(v: &Value) -> Result<u64, NodeError> {
    int(v)
        .and_then(|n| u64::try_from(n).ok())
        .ok_or_else(|| unexpected("release script returned", v))
}

/// The fence script's largest counter (a decimal string).
pub(crate) fn fence(v: &Value) -> Result<u64, NodeError> {
    if let Some(n) = int(v).and_then(|n| u64::try_from(n).ok()) {
        return Ok(n);
    }
    // Lua may print large numbers as floats ("1e+15").
    text(v)
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|f| f.is_finite() && *f >= 0.0 && *f < u64::MAX as f64)
        .map(|f| f as u64)
        .ok_or_else(|| unexpected("fence script returned", v))
}

/// The inspect script's `{pttl, value}` per key.
pub(crate) fn inspect(keys: &[String], v: Value) -> Result<Vec<KeyState>, NodeError> {
    let items = match v {
        Value::Array(items) => items,
        // An empty Lua table comes back as an empty array or as nil.
        Value::Null if keys.is_empty() => Vec::new(),
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
                Value::Array(pair) if !pair.is_empty() && pair.len() <= 2 => pair,
                other => return Err(unexpected("inspect entry", &other)),
            };
            let pttl = int(&pair[0]).ok_or_else(|| unexpected("inspect pttl", &pair[0]))?;
            let holder = match pair.get(1) {
                None | Some(Value::Null) | Some(Value::Boolean(false)) => None,
                Some(v) => Some(text(v).ok_or_else(|| unexpected("inspect value", v))?),
            };
            let ttl = match u64::try_from(pttl) {
                Ok(ms) if holder.is_some() => Some(Duration::from_millis(ms)),
                _ => None,
            };
            Ok(KeyState::new(key.clone(), holder, ttl))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_script_replies() {
        assert_eq!(acquire(&Value::Integer(1)), Ok(Acquire::Acquired));
        assert_eq!(acquire(&Value::Integer(0)), Ok(Acquire::Held));
        assert!(acquire(&Value::Integer(2)).is_err());
        assert!(acquire(&Value::Null).is_err());
        assert_eq!(extend(&Value::Integer(0)), Ok(Extend::NotHeld));
        assert_eq!(release(&Value::Integer(3)), Ok(3));
        assert!(release(&Value::Integer(-1)).is_err());
        assert_eq!(fence(&Value::String("42".into())), Ok(42));
        assert_eq!(
            fence(&Value::String("1e+15".into())),
            Ok(1_000_000_000_000_000)
        );
        assert!(fence(&Value::String("x".into())).is_err());
    }

    #[test]
    fn parses_inspect() {
        let keys = vec!["a".to_string(), "b".to_string()];
        let v = Value::Array(vec![
            Value::Array(vec![Value::Integer(900), Value::String("tok".into())]),
            Value::Array(vec![Value::Integer(-2), Value::Null]),
        ]);
        let states = inspect(&keys, v).expect("valid reply");
        assert_eq!(states[0].holder.as_deref(), Some("tok"));
        assert_eq!(states[0].ttl, Some(Duration::from_millis(900)));
        assert_eq!(states[1].holder, None);
        assert_eq!(states[1].ttl, None);
        assert!(inspect(&keys, Value::Array(vec![])).is_err());
    }
}
