//! A plain connection to one server, used by the node's queue directly.
//!
//! The queue already sends one request (or one pipeline) at a time per
//! node, so the node needs no multiplexing: the request is written from
//! the task that sends it, on its first poll, and the reply is read by the
//! same task. A [`redis::aio::MultiplexedConnection`] would add a task of
//! its own in between (a hop each way per request).
//!
//! Commands are encoded by the `redis` crate ([`redis::Cmd`]) and replies
//! parsed by it ([`redis::Parser`]); this module only finds
//! where one reply ends in the byte stream.
//!
//! Used for `redis://` (TCP) and `redis+unix://` addresses speaking RESP2;
//! TLS and RESP3 keep the `redis` crate's connection.
//!
//! A request may be dropped at any point (a timeout, a caller gone): the
//! replies it was owed are counted and skipped by the next request, so the
//! connection keeps its order. Only a write cut off halfway, or a reply
//! that could not be read, leaves the stream unusable; the connection then
//! says so ([`Direct::is_usable`]) and is replaced.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use redis::{ConnectionAddr, ConnectionInfo, ProtocolVersion, RedisError, RedisResult, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Sleep;

/// The transport.
enum Io {
    Tcp(tokio::net::TcpStream),
    #[cfg(unix)]
    Unix(tokio::net::UnixStream),
}

/// The stream and its buffers.
struct Wire {
    io: Io,
    /// Commands being written; reused.
    out: Vec<u8>,
    /// Bytes read and not yet consumed start at `pos`.
    input: Vec<u8>,
    pos: usize,
    /// Replies the server still owes to requests sent on this connection
    /// (including ones whose sender stopped waiting).
    owed: usize,
    /// Reused for every reply (keeps its buffer).
    parser: redis::Parser,
    /// The stream's state is unknown: a write is under way (or was cut
    /// off), or a reply could not be read.
    unsure: bool,
}

/// One connection; see the module documentation.
pub(crate) struct Direct {
    wire: Wire,
    /// Bounds each request by `limit`. One timer, moved to each request's
    /// deadline: moving a deadline later costs next to nothing.
    timer: Pin<Box<Sleep>>,
    limit: Option<Duration>,
}

impl Direct {
    /// Connects, authenticates and selects the database of `info`, within
    /// `connect_timeout`; each request is then bounded by `response_timeout`.
    pub(crate) async fn connect(
        info: &ConnectionInfo,
        connect_timeout: Option<Duration>,
        response_timeout: Option<Duration>,
    ) -> RedisResult<Self> {
        Ok(Direct {
            wire: Wire::connect(info, connect_timeout).await?,
            timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
            limit: response_timeout,
        })
    }

    /// Whether the stream is still in a known state: no write was cut off
    /// and every reply so far could be read.
    pub(crate) fn is_usable(&self) -> bool {
        !self.wire.unsure
    }

    /// One command; a server's error reply is the inner `Err`, a broken
    /// connection or a timeout the outer one.
    pub(crate) async fn query_one(&mut self, cmd: &redis::Cmd) -> RedisResult<RedisResult<Value>> {
        let Direct { wire, timer, limit } = self;
        bounded(timer, *limit, wire.query_one(cmd))
            .await
            .map(server_error)
    }

    /// The commands of `pipe`, one result each.
    pub(crate) async fn query(
        &mut self,
        pipe: &redis::Pipeline,
    ) -> RedisResult<Vec<RedisResult<Value>>> {
        let Direct { wire, timer, limit } = self;
        bounded(timer, *limit, wire.query(pipe)).await
    }
}

/// `work`, or a timeout error once `limit` has passed. A request cut off
/// here leaves its replies owed (skipped by the next one), or, if cut off
/// mid-write, the connection unusable.
async fn bounded<T>(
    timer: &mut Pin<Box<Sleep>>,
    limit: Option<Duration>,
    work: impl Future<Output = RedisResult<T>>,
) -> RedisResult<T> {
    let Some(limit) = limit else {
        return work.await;
    };
    timer.as_mut().reset(tokio::time::Instant::now() + limit);
    let mut work = std::pin::pin!(work);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(result) = work.as_mut().poll(cx) {
            return Poll::Ready(result);
        }
        if timer.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no reply within the response timeout",
            )
            .into()));
        }
        Poll::Pending
    })
    .await
}

/// Whether `info` can use a [`Direct`] connection.
pub(crate) fn supports(info: &ConnectionInfo) -> bool {
    let addr = match info.addr() {
        ConnectionAddr::Tcp(..) => true,
        #[cfg(unix)]
        ConnectionAddr::Unix(_) => true,
        _ => false,
    };
    addr && info.redis_settings().protocol() == ProtocolVersion::RESP2
}

impl Wire {
    /// Connects, authenticates and selects the database of `info`, within
    /// `timeout`.
    async fn connect(info: &ConnectionInfo, timeout: Option<Duration>) -> RedisResult<Self> {
        let attempt = Self::connect_inner(info);
        match timeout {
            Some(t) => tokio::time::timeout(t, attempt)
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connection timed out"))?,
            None => attempt.await,
        }
    }

    async fn connect_inner(info: &ConnectionInfo) -> RedisResult<Self> {
        let io = match info.addr() {
            ConnectionAddr::Tcp(host, port) => {
                let stream = tokio::net::TcpStream::connect((host.as_str(), *port)).await?;
                stream.set_nodelay(true)?;
                Io::Tcp(stream)
            }
            #[cfg(unix)]
            ConnectionAddr::Unix(path) => Io::Unix(tokio::net::UnixStream::connect(path).await?),
            _ => {
                return Err(RedisError::from((
                    redis::ErrorKind::InvalidClientConfig,
                    "address not supported by a direct connection",
                )))
            }
        };
        let mut conn = Wire {
            io,
            out: Vec::with_capacity(512),
            input: Vec::with_capacity(4096),
            pos: 0,
            owed: 0,
            parser: redis::Parser::new(),
            unsure: false,
        };
        let settings = info.redis_settings();
        let mut setup = redis::pipe();
        if let Some(password) = settings.password() {
            let auth = setup.cmd("AUTH");
            if let Some(user) = settings.username() {
                auth.arg(user);
            }
            auth.arg(password);
        }
        if settings.db() != 0 {
            setup.cmd("SELECT").arg(settings.db());
        }
        if setup.cmd_iter().next().is_some() {
            for reply in conn.query(&setup).await? {
                reply?;
            }
        }
        Ok(conn)
    }

    /// Writes `cmd` and reads its reply.
    async fn query_one(&mut self, cmd: &redis::Cmd) -> RedisResult<Value> {
        self.out.clear();
        cmd.write_packed_command(&mut self.out);
        self.send(1).await?;
        self.receive(1).await
    }

    /// Writes the commands of `pipe` and reads their replies.
    async fn query(&mut self, pipe: &redis::Pipeline) -> RedisResult<Vec<RedisResult<Value>>> {
        self.out.clear();
        let mut n = 0;
        for cmd in pipe.cmd_iter() {
            cmd.write_packed_command(&mut self.out);
            n += 1;
        }
        self.send(n).await?;
        let mut replies = Vec::with_capacity(n);
        for i in 0..n {
            replies.push(server_error(self.receive(n - i).await?));
        }
        Ok(replies)
    }

    /// Writes `out` (`n` commands).
    async fn send(&mut self, n: usize) -> RedisResult<()> {
        if self.unsure {
            return Err(
                io::Error::new(io::ErrorKind::BrokenPipe, "connection left unusable").into(),
            );
        }
        self.unsure = true;
        let written = match &mut self.io {
            Io::Tcp(s) => s.write_all(&self.out).await,
            #[cfg(unix)]
            Io::Unix(s) => s.write_all(&self.out).await,
        };
        written?;
        self.unsure = false;
        self.owed += n;
        Ok(())
    }

    /// The next reply of the request being served, whose `mine` replies
    /// (this one included) are the last ones owed: older replies, owed to
    /// requests nobody waits for any more, are read and dropped first.
    async fn receive(&mut self, mine: usize) -> RedisResult<Value> {
        while self.owed > mine {
            self.next_reply().await?;
            self.owed -= 1;
        }
        let value = self.next_reply().await?;
        self.owed = self.owed.saturating_sub(1);
        Ok(value)
    }

    /// Reads one whole reply. After an error the stream's state is unknown:
    /// the connection is no longer used.
    async fn next_reply(&mut self) -> RedisResult<Value> {
        let reply = self.read_reply().await;
        if reply.is_err() {
            self.unsure = true;
        }
        reply
    }

    async fn read_reply(&mut self) -> RedisResult<Value> {
        loop {
            if let Some(len) = frame_len(&self.input[self.pos..])? {
                let start = self.pos;
                self.pos += len;
                let value = self.parser.parse_value(&self.input[start..self.pos]);
                if self.pos == self.input.len() {
                    self.input.clear();
                    self.pos = 0;
                }
                return value;
            }
            if self.pos > 0 {
                self.input.drain(..self.pos);
                self.pos = 0;
            }
            self.input.reserve(4096);
            let read = match &mut self.io {
                Io::Tcp(s) => s.read_buf(&mut self.input).await,
                #[cfg(unix)]
                Io::Unix(s) => s.read_buf(&mut self.input).await,
            }?;
            if read == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed by the server",
                )
                .into());
            }
        }
    }
}

fn server_error(value: Value) -> RedisResult<Value> {
    match value {
        Value::ServerError(e) => Err(e.into()),
        v => Ok(v),
    }
}

/// The length of the first whole RESP2 reply at the start of `buf`, or
/// `None` while it is incomplete.
fn frame_len(buf: &[u8]) -> RedisResult<Option<usize>> {
    let mut pos = 0;
    // Values still to read: the reply itself, then array elements.
    let mut pending: usize = 1;
    while pending > 0 {
        let Some(kind) = buf.get(pos) else {
            return Ok(None);
        };
        let Some(newline) = buf[pos..].iter().position(|&b| b == b'\n') else {
            return Ok(None);
        };
        let line_end = pos + newline;
        if newline < 2 || buf[line_end - 1] != b'\r' {
            return Err(protocol("a reply line does not end in CRLF"));
        }
        let line = &buf[pos + 1..line_end - 1];
        pos = line_end + 1;
        pending -= 1;
        match kind {
            b'+' | b'-' | b':' => {}
            b'$' => {
                if let Some(len) = length(line)? {
                    let end = pos.checked_add(len).and_then(|e| e.checked_add(2));
                    let Some(end) = end else {
                        return Err(protocol("bulk string too long"));
                    };
                    if buf.len() < end {
                        return Ok(None);
                    }
                    if &buf[end - 2..end] != b"\r\n" {
                        return Err(protocol("a bulk string does not end in CRLF"));
                    }
                    pos = end;
                }
            }
            b'*' => {
                if let Some(len) = length(line)? {
                    pending = pending
                        .checked_add(len)
                        .ok_or_else(|| protocol("array too long"))?;
                }
            }
            _ => return Err(protocol("unknown reply type")),
        }
    }
    Ok(Some(pos))
}

/// A length field: `None` for -1 (a nil), an error for anything else that
/// is not a count.
fn length(line: &[u8]) -> RedisResult<Option<usize>> {
    if line == b"-1" {
        return Ok(None);
    }
    if line.is_empty() || line.len() > 19 || !line.iter().all(u8::is_ascii_digit) {
        return Err(protocol("bad length in a reply"));
    }
    let n = line
        .iter()
        .fold(0usize, |n, &d| n * 10 + usize::from(d - b'0'));
    Ok(Some(n))
}

fn protocol(what: &'static str) -> RedisError {
    RedisError::from((
        redis::ErrorKind::Parse,
        "unexpected reply from the server",
        what.to_string(),
    ))
}

#[cfg(test)]
mod tests {
    use super::frame_len;

    #[test]
    fn whole_replies_are_measured() {
        for reply in [
            &b"+OK\r\n"[..],
            b"-ERR wrong\r\n",
            b":42\r\n",
            b"$-1\r\n",
            b"*-1\r\n",
            b"$0\r\n\r\n",
            b"$4\r\na\r\nb\r\n",
            b"*0\r\n",
            b"*3\r\n:1\r\n$2\r\nab\r\n*2\r\n+x\r\n$-1\r\n",
        ] {
            assert_eq!(frame_len(reply).unwrap(), Some(reply.len()), "{reply:?}");
            let mut two = reply.to_vec();
            two.extend_from_slice(b":7\r\n");
            assert_eq!(
                frame_len(&two).unwrap(),
                Some(reply.len()),
                "{reply:?} then more"
            );
            for cut in 0..reply.len() {
                assert_eq!(
                    frame_len(&reply[..cut]).unwrap(),
                    None,
                    "{reply:?} cut at {cut}"
                );
            }
        }
    }

    #[test]
    fn garbage_is_an_error() {
        for bad in [
            &b"?x\r\n"[..],
            b"$abc\r\n",
            b"*-2\r\n",
            b"$2\r\nabcd\r\n",
            b"+OK\n",
            b"$99999999999999999999\r\n",
        ] {
            assert!(frame_len(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn parsed_values_match_the_redis_crate() {
        let reply = b"*2\r\n$5\r\nhello\r\n:3\r\n";
        let len = frame_len(reply).unwrap().unwrap();
        let value = redis::parse_redis_value(&reply[..len]).unwrap();
        assert_eq!(
            value,
            redis::Value::Array(vec![
                redis::Value::BulkString(b"hello".to_vec()),
                redis::Value::Int(3)
            ])
        );
    }

    /// A small deterministic generator (xorshift), so that failures repeat.
    struct Gen(u64);

    impl Gen {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }

        /// One random RESP2 reply, encoded; `depth` bounds nesting.
        fn reply(&mut self, out: &mut Vec<u8>, depth: u32) {
            let kinds = if depth == 0 { 6 } else { 8 };
            match self.below(kinds) {
                0 => out.extend_from_slice(b"+OK\r\n"),
                1 => out.extend_from_slice(b"-ERR something went wrong\r\n"),
                2 => out.extend_from_slice(format!(":{}\r\n", self.next() as i64).as_bytes()),
                3 => out.extend_from_slice(b"$-1\r\n"),
                4 | 5 => {
                    // Bulk strings with CR, LF and CRLF inside.
                    let len = self.below(40) as usize;
                    let body: Vec<u8> = (0..len)
                        .map(|_| {
                            *b"ab\r\n:*$-+0"
                                .get(self.below(11) as usize)
                                .unwrap_or(&b'x')
                        })
                        .collect();
                    out.extend_from_slice(format!("${len}\r\n").as_bytes());
                    out.extend_from_slice(&body);
                    out.extend_from_slice(b"\r\n");
                }
                6 => out.extend_from_slice(b"*-1\r\n"),
                _ => {
                    let n = self.below(5);
                    out.extend_from_slice(format!("*{n}\r\n").as_bytes());
                    for _ in 0..n {
                        self.reply(out, depth - 1);
                    }
                }
            }
        }
    }

    /// Random replies back to back: each is measured exactly, every cut
    /// short of its end waits for more, and the `redis` crate parses it.
    #[test]
    fn random_replies_are_measured_and_parsed() {
        let mut gen = Gen(0x9e37_79b9_7f4a_7c15);
        for _ in 0..2_000 {
            let mut stream = Vec::new();
            let mut ends = Vec::new();
            for _ in 0..1 + gen.below(4) {
                gen.reply(&mut stream, 3);
                ends.push(stream.len());
            }
            let mut start = 0;
            for end in ends {
                let frame = &stream[start..];
                assert_eq!(frame_len(frame).unwrap(), Some(end - start), "{frame:?}");
                for cut in start..end {
                    assert_eq!(frame_len(&stream[start..cut]).unwrap(), None);
                }
                redis::parse_redis_value(&stream[start..end])
                    .unwrap_or_else(|e| panic!("{e}: {:?}", &stream[start..end]));
                start = end;
            }
        }
    }
}
