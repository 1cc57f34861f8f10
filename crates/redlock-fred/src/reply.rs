//! fred's reply values in the terms of [`redlock_kit::reply`], which turns
//! them into lock terms.

use fred::types::Value;
use redlock_kit::reply::Reply;

/// `v` as a [`Reply`]: Lua `false` is nil, `OK` and tokens are text.
pub(crate) fn from_fred(v: Value) -> Reply {
    match v {
        Value::Null | Value::Boolean(false) => Reply::Nil,
        Value::Integer(i) => Reply::Int(i),
        Value::String(s) => Reply::Text(s.to_string()),
        Value::Bytes(b) => Reply::Text(String::from_utf8_lossy(&b).into_owned()),
        Value::Array(items) => Reply::Array(items.into_iter().map(from_fred).collect()),
        other => Reply::Other(format!("{other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use redlock_core::{Acquire, Extend};
    use redlock_kit::reply;

    use super::*;

    #[test]
    fn fred_values_decode_as_script_replies() {
        let ok = from_fred(Value::String("OK".into()));
        assert_eq!(reply::acquire(&ok), Ok(Acquire::Acquired));
        assert_eq!(reply::acquire(&from_fred(Value::Null)), Ok(Acquire::Held));
        assert_eq!(
            reply::extend(&from_fred(Value::Integer(1))),
            Ok(Extend::Extended)
        );
        assert_eq!(reply::fence(&from_fred(Value::Bytes("42".into()))), Ok(42));
        assert!(reply::release(&from_fred(Value::Double(1.5))).is_err());
        let keys = vec!["a".to_owned()];
        let v = Value::Array(vec![Value::Array(vec![
            Value::Integer(-2),
            Value::Boolean(false),
        ])]);
        let states = reply::inspect(&keys, from_fred(v)).expect("valid");
        assert_eq!(states[0].holder, None);
    }
}
