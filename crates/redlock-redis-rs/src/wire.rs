//! The kit's wire plan in the `redis` crate's terms: each
//! [`Command`] as a [`redis::Cmd`], each reply as a kit [`Reply`].

use redis::{Cmd, Value};
use redlock_kit::plan::Command;
use redlock_kit::reply::Reply;

use crate::address::Secrets;

/// `command` as the `redis` crate's command.
pub(crate) fn command(command: &Command<'_>) -> Cmd {
    match command {
        Command::Ping => redis::cmd("PING"),
        Command::SetNx { key, token, ttl_ms } => {
            let mut cmd = Cmd::with_capacity(6, 40 + key.len() + token.len());
            cmd.arg("SET").arg(*key).arg(*token).arg("NX").arg("PX");
            cmd.arg(*ttl_ms);
            cmd
        }
        Command::Script {
            script,
            call,
            source,
        } => {
            let text = if *source { &script.source } else { &script.sha };
            let data = text.len()
                + 48
                + call.keys.iter().map(String::len).sum::<usize>()
                + call.token.as_ref().map_or(0, String::len);
            let mut cmd = Cmd::with_capacity(3 + call.keys.len() + call.argc(), data);
            cmd.arg(if *source { "EVAL" } else { "EVALSHA" }).arg(text);
            cmd.arg(call.keys.len()).arg(&call.keys);
            if let Some(token) = &call.token {
                cmd.arg(token);
            }
            if let Some(n) = call.number {
                cmd.arg(n);
            }
            cmd
        }
        Command::ReleaseMany {
            script,
            releases,
            source,
        } => {
            let text = if *source { &script.source } else { &script.sha };
            let nkeys: usize = releases.iter().map(|c| c.keys.len()).sum();
            let bytes: usize = releases
                .iter()
                .flat_map(|c| c.keys.iter().chain(&c.token))
                .map(|s| s.len() + 4)
                .sum();
            let mut cmd =
                Cmd::with_capacity(3 + nkeys + 2 * releases.len(), text.len() + 16 + bytes);
            cmd.arg(if *source { "EVAL" } else { "EVALSHA" }).arg(text);
            cmd.arg(nkeys);
            for c in releases {
                cmd.arg(&c.keys);
            }
            for c in releases {
                cmd.arg(c.keys.len()).arg(c.token.as_deref().unwrap_or(""));
            }
            cmd
        }
        Command::WriteMany {
            script,
            calls,
            source,
        } => {
            let text = if *source { &script.source } else { &script.sha };
            let nkeys: usize = calls.iter().map(|c| c.keys.len()).sum();
            let mut cmd =
                Cmd::with_capacity(3 + nkeys + 4 * calls.len(), text.len() + 64 * calls.len());
            cmd.arg(if *source { "EVAL" } else { "EVALSHA" }).arg(text);
            cmd.arg(nkeys);
            for c in calls {
                cmd.arg(&c.keys);
            }
            for (kind, count, token, ttl_ms) in command.write_many_fields() {
                cmd.arg(kind).arg(count).arg(token).arg(ttl_ms);
            }
            cmd
        }
        Command::ScriptLoad { script } => {
            let mut cmd = redis::cmd("SCRIPT");
            cmd.arg("LOAD").arg(&script.source);
            cmd
        }
        Command::ClientId => {
            let mut cmd = redis::cmd("CLIENT");
            cmd.arg("ID");
            cmd
        }
        Command::InfoServer => {
            let mut cmd = redis::cmd("INFO");
            cmd.arg("server");
            cmd
        }
        Command::Native(native) => {
            let mut cmd = Cmd::with_capacity(
                1 + native.args.len(),
                native.name.len() + native.args.iter().map(|a| a.len()).sum::<usize>(),
            );
            cmd.arg(native.name);
            for arg in &native.args {
                cmd.arg(arg.as_ref());
            }
            cmd
        }
        Command::ClientKill { id } => {
            let mut cmd = redis::cmd("CLIENT");
            cmd.arg("KILL").arg("ID").arg(*id);
            cmd
        }
        Command::Wait {
            replicas,
            timeout_ms,
        } => {
            let mut cmd = redis::cmd("WAIT");
            cmd.arg(*replicas).arg(*timeout_ms);
            cmd
        }
    }
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
