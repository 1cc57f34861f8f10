//! One command over a fresh connection, for driving test servers without a
//! client: [`raw_command`] and its decoded [`Reply`].

use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// A decoded RESP2 reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK` and friends.
    Status(String),
    /// `-ERR ...`.
    Error(String),
    /// `:1`.
    Int(i64),
    /// `$..`; `None` for nil.
    Bulk(Option<String>),
    /// `*..`; `None` for nil.
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// The reply as text: status, bulk string or integer; errors keep their
    /// leading `-`; nil is empty; arrays are their elements joined by `\n`.
    pub fn text(&self) -> String {
        match self {
            Reply::Status(s) => s.clone(),
            Reply::Error(e) => format!("-{e}"),
            Reply::Int(i) => i.to_string(),
            Reply::Bulk(b) => b.clone().unwrap_or_default(),
            Reply::Array(a) => a
                .iter()
                .flatten()
                .map(|r| r.text())
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }

    /// The elements of an array reply (empty otherwise).
    pub fn items(&self) -> Vec<Reply> {
        match self {
            Reply::Array(Some(v)) => v.clone(),
            _ => Vec::new(),
        }
    }
}

impl Reply {
    /// A reply from the `redis` crate's value (RESP3 types as their
    /// closest RESP2 form).
    fn from_value(value: redis::Value) -> Reply {
        use redis::Value;
        let text = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
        match value {
            Value::Nil => Reply::Bulk(None),
            Value::Int(i) => Reply::Int(i),
            Value::BulkString(b) => Reply::Bulk(Some(text(b))),
            Value::SimpleString(s) => Reply::Status(s),
            Value::Okay => Reply::Status("OK".into()),
            Value::ServerError(e) => Reply::Error(match e.details() {
                Some(d) => format!("{} {d}", e.code()),
                None => e.code().to_string(),
            }),
            Value::Array(items) | Value::Set(items) | Value::Push { data: items, .. } => {
                Reply::Array(Some(items.into_iter().map(Reply::from_value).collect()))
            }
            Value::Map(pairs) => Reply::Array(Some(
                pairs
                    .into_iter()
                    .flat_map(|(k, v)| [Reply::from_value(k), Reply::from_value(v)])
                    .collect(),
            )),
            Value::Attribute { data, .. } => Reply::from_value(*data),
            Value::Double(d) => Reply::Bulk(Some(d.to_string())),
            Value::Boolean(b) => Reply::Int(i64::from(b)),
            Value::VerbatimString { text, .. } => Reply::Bulk(Some(text)),
            other => Reply::Bulk(Some(format!("{other:?}"))),
        }
    }
}

fn encode(args: &[&str]) -> Vec<u8> {
    let mut req = format!("*{}\r\n", args.len());
    for a in args {
        req.push_str(&format!("${}\r\n{}\r\n", a.len(), a));
    }
    req.into_bytes()
}

/// Sends one command over a fresh connection (after `AUTH` when a password
/// is given) and returns the decoded reply (parsed by the `redis` crate).
/// Bounded by `timeout`; a reply that is not valid RESP is an
/// [`InvalidData`](std::io::ErrorKind::InvalidData) error.
pub fn raw_command(
    port: u16,
    password: Option<&str>,
    args: &[&str],
    timeout: Duration,
) -> std::io::Result<Reply> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut req = Vec::new();
    if let Some(p) = password {
        req.extend(encode(&["AUTH", p]));
    }
    req.extend(encode(args));
    stream.write_all(&req)?;
    let mut reader = BufReader::new(stream);
    let mut parser = redis::Parser::new();
    if password.is_some() {
        read_reply(&mut parser, &mut reader)?;
    }
    read_reply(&mut parser, &mut reader)
}

fn read_reply(parser: &mut redis::Parser, reader: impl Read) -> std::io::Result<Reply> {
    match parser.parse_value(reader) {
        Ok(value) => Ok(Reply::from_value(value)),
        Err(e) if e.is_io_error() || e.is_timeout() => Err(std::io::Error::new(
            if e.is_timeout() {
                std::io::ErrorKind::TimedOut
            } else {
                std::io::ErrorKind::UnexpectedEof
            },
            e.to_string(),
        )),
        Err(e) => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("unparsable reply: {e}"),
        )),
    }
}
