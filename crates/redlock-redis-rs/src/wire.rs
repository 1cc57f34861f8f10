//! The kit's wire plan in the `redis` crate's terms: each
//! [`Command`] as a [`redis::Cmd`], each reply as a kit [`Reply`].

use redis::{Cmd, Value};
use redlock_kit::plan::{Arg, Command};
use redlock_kit::reply::Reply;

use crate::address::Secrets;

/// `command` as the `redis` crate's command: its words as the kit lays
/// them out ([`Command::each_arg`]).
pub(crate) fn command(command: &Command<'_>) -> Cmd {
    let (count, bytes) = command.size_hint();
    let mut cmd = Cmd::with_capacity(1 + count, bytes);
    cmd.arg(command.name());
    command.each_arg(|arg| {
        match arg {
            Arg::Text(text) => cmd.arg(text),
            Arg::Int(n) => cmd.arg(n),
        };
    });
    cmd
}

/// `v` as a [`Reply`] for [`redlock_kit::reply`]: `OK` and tokens are text,
/// a Lua `false` (RESP3) is nil, an error inside an array is
/// [`Reply::Error`] without secrets.
pub(crate) fn decode(v: Value, redact: &Secrets) -> Reply {
    match v {
        Value::Nil | Value::Boolean(false) => Reply::Nil,
        Value::Int(i) => Reply::Int(i),
        Value::Boolean(true) => Reply::Int(1),
        Value::Okay => Reply::Text("OK".to_owned()),
        Value::SimpleString(s) => Reply::Text(s),
        Value::BulkString(b) => Reply::Text(String::from_utf8_lossy(&b).into_owned()),
        Value::VerbatimString { text, .. } => Reply::Text(text),
        Value::Array(items) => Reply::Array(items.into_iter().map(|v| decode(v, redact)).collect()),
        Value::ServerError(e) => {
            let e: redis::RedisError = e.into();
            Reply::Error(redact.redact(&e.to_string()))
        }
        other => Reply::Other(format!("{other:?}")),
    }
}
