//! `redlock status`.

use std::time::Duration;

use redlock_core::{Holder, LockError, NodeOutcome, Redlock, ResourceStatus, Verdict};
use serde_json::{json, Value};

use crate::{exit, StatusArgs};

pub async fn status(redlock: &Redlock, args: StatusArgs) -> u8 {
    let result = match &args.token {
        Some(token) => {
            redlock
                .status_with_token(args.resource.as_str(), token)
                .await
        }
        None => redlock.status(args.resource.as_str()).await,
    };
    let statuses = match result {
        Ok(s) => s,
        Err(LockError::InvalidArgument(e)) => {
            eprintln!("redlock: {e}");
            return exit::USAGE;
        }
        Err(e) => {
            eprintln!("redlock: {e}");
            return exit::UNAVAILABLE;
        }
    };
    let mut code = exit::OK;
    for s in &statuses {
        if s.verdict == Verdict::Unknown {
            let refused = s
                .nodes
                .iter()
                .filter(|v| matches!(&v.holder, Err(NodeOutcome::Error(e)) if e.is_config()))
                .count();
            code = if refused > 0 && s.nodes.len() - refused < redlock.quorum() {
                exit::CONFIG
            } else {
                exit::UNAVAILABLE
            };
        }
        if args.json {
            println!("{}", to_json(s, redlock.quorum()));
        } else {
            print_text(s, redlock.quorum());
        }
    }
    code
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn to_json(s: &ResourceStatus, quorum: usize) -> Value {
    let verdict = match &s.verdict {
        Verdict::Free => json!({ "state": "free" }),
        Verdict::HeldByUs { remaining } => {
            json!({ "state": "held_by_us", "remaining_ms": ms(*remaining) })
        }
        Verdict::HeldByOther { remaining } => {
            json!({ "state": "held_by_other", "remaining_ms": ms(*remaining) })
        }
        Verdict::Contended { until_free } => {
            json!({ "state": "contended", "until_free_ms": ms(*until_free) })
        }
        Verdict::Unknown => json!({ "state": "unknown" }),
        other => json!({ "state": "unknown", "verdict": other.to_string() }),
    };
    let nodes: Vec<Value> = s
        .nodes
        .iter()
        .map(|v| match &v.holder {
            Ok(None) => json!({ "node": v.node, "state": "free" }),
            Ok(Some(Holder::Us(t))) => {
                json!({ "node": v.node, "state": "held", "holder": t, "ours": true, "ttl_ms": v.ttl.map(ms) })
            }
            Ok(Some(Holder::Other(p))) => {
                json!({ "node": v.node, "state": "held", "holder": format!("{p}…"), "ours": false, "ttl_ms": v.ttl.map(ms) })
            }
            Ok(Some(h)) => json!({ "node": v.node, "state": "held", "holder": h.to_string(), "ttl_ms": v.ttl.map(ms) }),
            Err(NodeOutcome::TimedOut) => json!({ "node": v.node, "state": "timed_out" }),
            Err(o) => json!({ "node": v.node, "state": "error", "error": o.to_string() }),
        })
        .collect();
    json!({ "resource": s.resource, "quorum": quorum, "verdict": verdict, "nodes": nodes })
}

fn print_text(s: &ResourceStatus, quorum: usize) {
    println!(
        "{}: {} (quorum {} of {})",
        escape(&s.resource),
        s.verdict,
        quorum,
        s.nodes.len()
    );
    for v in &s.nodes {
        let line = match &v.holder {
            Ok(None) => "free".to_owned(),
            Ok(Some(h)) => match v.ttl {
                Some(t) => format!("held by {h}, ttl {t:?}"),
                None => format!("held by {h}, no ttl"),
            },
            Err(o) => o.to_string(),
        };
        println!("  {:<40} {}", escape(&v.node), escape(&line));
    }
}

/// `text` with control characters escaped (`\n`, `\u{1b}`), so that a
/// resource name cannot rewrite the terminal or forge lines.
fn escape(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_owned();
    }
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(escape("plain-name"), "plain-name");
        assert_eq!(escape("a\nb\x1b[2Jc\r"), "a\\nb\\u{1b}[2Jc\\r");
        assert_eq!(escape("naïve"), "naïve");
    }
}
