//! A TCP fault proxy: put it between a client and a node to slow, stall,
//! cut or truncate the connection while a test runs.
//!
//! [`FaultProxy::start`] listens on a free loopback port and forwards every
//! connection to the target. Each direction ([`Direction::ToServer`],
//! [`Direction::ToClient`]) has its own [`Mode`], switchable at any time:
//!
//! - [`Mode::Pass`]: forward as read.
//! - [`Mode::Delay`]: forward every chunk `fixed + random(0..=jitter)` after
//!   it was read, keeping the byte order.
//! - [`Mode::DelayPerConnection`]: each connection draws one delay when it
//!   opens (some connections slow, others fast).
//! - [`Mode::Hold`]: keep reading, forward nothing (a blackhole, as a
//!   partition looks to both ends). What was read is delivered when the mode
//!   changes back, the way TCP delivers retransmitted data after a partition
//!   heals; [`FaultProxy::reset`] throws it away with the connection.
//! - [`Mode::Reset`]: every open connection is reset (RST) when the mode is
//!   set, and any connection that carries data in this direction while the
//!   mode is on is reset too.
//! - [`Mode::CloseAfter`]: forward this many more bytes per connection, then
//!   close the connection (a command or reply cut in the middle).
//!
//! [`FaultProxy::reset`] resets all open connections once and leaves the
//! modes as they are. The proxy stops (and drops every connection) when
//! dropped.
//!
//! ```no_run
//! use std::time::Duration;
//! use redlock_testkit::fault_proxy::{Direction, FaultProxy, Mode};
//! use redlock_testkit::server::RedisServer;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let server = RedisServer::start()?;
//! let proxy = FaultProxy::start(server.port()).await?;
//! // connect the client to proxy.url() instead of server.url()
//! proxy.set_mode(Direction::ToClient, Mode::delay(Duration::from_millis(5), Duration::from_millis(5)));
//! proxy.set_both(Mode::Hold);   // a partition
//! proxy.heal();                 // back to Pass both ways
//! proxy.reset();                // every open connection gets an RST
//! # Ok(())
//! # }
//! ```

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Which way the bytes flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the client to the node (commands).
    ToServer,
    /// From the node to the client (replies).
    ToClient,
}

/// What the proxy does with the bytes of one direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Forward as read.
    #[default]
    Pass,
    /// Forward each chunk `fixed + random(0..=jitter)` after it was read;
    /// the byte order is kept (a chunk never overtakes an earlier one).
    Delay {
        /// Added to every chunk.
        fixed: Duration,
        /// Up to this much more, at random per chunk.
        jitter: Duration,
    },
    /// Like [`Mode::Delay`], but every connection draws one delay from
    /// `min..=max` when it opens and keeps it; the byte order is kept.
    DelayPerConnection {
        /// Shortest delay a connection may draw.
        min: Duration,
        /// Longest delay a connection may draw.
        max: Duration,
    },
    /// Read, forward nothing; delivered when the mode changes back.
    Hold,
    /// Reset (RST) every connection that is open or carries data in this
    /// direction.
    Reset,
    /// Forward this many more bytes on each connection, then close it.
    CloseAfter(u64),
}

impl Mode {
    /// [`Mode::Delay`] with these values.
    pub fn delay(fixed: Duration, jitter: Duration) -> Self {
        Mode::Delay { fixed, jitter }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Modes {
    to_server: Mode,
    to_client: Mode,
    /// Bumped on every change, so byte budgets restart with a new mode.
    generation: u64,
    /// Bumped on every reset; connections opened before it end.
    resets: u64,
}

impl Modes {
    fn get(&self, d: Direction) -> Mode {
        match d {
            Direction::ToServer => self.to_server,
            Direction::ToClient => self.to_client,
        }
    }
}

#[derive(Debug, Default)]
struct Counters {
    accepted: AtomicU64,
    active: AtomicU64,
    resets: AtomicU64,
    closed_after: AtomicU64,
    upstream_failures: AtomicU64,
    to_server: AtomicU64,
    to_client: AtomicU64,
}

/// A snapshot of a proxy's counters, for tests to see that a fault was
/// exercised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProxyStats {
    /// Connections accepted so far.
    pub accepted: u64,
    /// Connections open now.
    pub active: u64,
    /// Connections ended with a reset.
    pub resets: u64,
    /// Connections closed by [`Mode::CloseAfter`].
    pub closed_after: u64,
    /// Accepted connections whose connect to the target failed.
    pub upstream_failures: u64,
    /// Bytes forwarded to the server.
    pub bytes_to_server: u64,
    /// Bytes forwarded to the client.
    pub bytes_to_client: u64,
}

/// A TCP proxy on a free loopback port in front of one target; see the
/// [module docs](self). Stops when dropped.
pub struct FaultProxy {
    addr: SocketAddr,
    target: SocketAddr,
    modes: watch::Sender<Modes>,
    counters: Arc<Counters>,
    task: JoinHandle<()>,
}

impl fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultProxy")
            .field("addr", &self.addr)
            .field("target", &self.target)
            .field("modes", &*self.modes.borrow())
            .finish()
    }
}

impl FaultProxy {
    /// Starts a proxy in front of `127.0.0.1:<target_port>`. Must be called
    /// within a tokio runtime (the proxy runs as tasks on it).
    pub async fn start(target_port: u16) -> io::Result<Self> {
        Self::start_to(SocketAddr::from((Ipv4Addr::LOCALHOST, target_port))).await
    }

    /// Starts a proxy in front of any address.
    pub async fn start_to(target: SocketAddr) -> io::Result<Self> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let (modes, _) = watch::channel(Modes::default());
        let counters = Arc::new(Counters::default());
        let task = tokio::spawn(accept_loop(
            listener,
            target,
            modes.clone(),
            counters.clone(),
        ));
        Ok(FaultProxy {
            addr,
            target,
            modes,
            counters,
            task,
        })
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The port clients connect to.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `redis://127.0.0.1:<port>`: the URL for a client.
    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// The address the proxy forwards to.
    pub fn target(&self) -> SocketAddr {
        self.target
    }

    /// The current mode of one direction.
    pub fn mode(&self, direction: Direction) -> Mode {
        self.modes.borrow().get(direction)
    }

    /// Switches one direction to `mode`; takes effect at once, also for data
    /// already read and not yet forwarded. [`Mode::Reset`] resets every open
    /// connection.
    pub fn set_mode(&self, direction: Direction, mode: Mode) {
        self.modes.send_modify(|m| {
            match direction {
                Direction::ToServer => m.to_server = mode,
                Direction::ToClient => m.to_client = mode,
            }
            m.generation += 1;
            if mode == Mode::Reset {
                m.resets += 1;
            }
        });
    }

    /// Switches both directions to `mode`.
    pub fn set_both(&self, mode: Mode) {
        self.modes.send_modify(|m| {
            m.to_server = mode;
            m.to_client = mode;
            m.generation += 1;
            if mode == Mode::Reset {
                m.resets += 1;
            }
        });
    }

    /// Back to [`Mode::Pass`] both ways.
    pub fn heal(&self) {
        self.set_both(Mode::Pass);
    }

    /// Resets (RST) every open connection once; the modes stay as they are
    /// and new connections are accepted as usual.
    pub fn reset(&self) {
        self.modes.send_modify(|m| m.resets += 1);
    }

    /// The counters so far.
    pub fn stats(&self) -> ProxyStats {
        let c = &self.counters;
        ProxyStats {
            accepted: c.accepted.load(Ordering::Relaxed),
            active: c.active.load(Ordering::Relaxed),
            resets: c.resets.load(Ordering::Relaxed),
            closed_after: c.closed_after.load(Ordering::Relaxed),
            upstream_failures: c.upstream_failures.load(Ordering::Relaxed),
            bytes_to_server: c.to_server.load(Ordering::Relaxed),
            bytes_to_client: c.to_client.load(Ordering::Relaxed),
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        // Aborting the acceptor drops its JoinSet, which aborts every
        // connection task; their sockets close with them.
        self.task.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    target: SocketAddr,
    modes: watch::Sender<Modes>,
    counters: Arc<Counters>,
) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((client, _)) = accepted else {
                    // Out of descriptors or similar: back off briefly.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                counters.accepted.fetch_add(1, Ordering::Relaxed);
                connections.spawn(connection(client, target, modes.subscribe(), counters.clone()));
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// How a connection (or one direction of it) ended.
enum End {
    /// Finished normally (EOF or a write error).
    Done,
    /// Reset with RST.
    Reset,
    /// Closed by a byte budget.
    Closed,
}

/// Keeps the active-connection gauge right however the task ends.
struct ActiveGuard(Arc<Counters>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn connection(
    mut client: TcpStream,
    target: SocketAddr,
    mut modes: watch::Receiver<Modes>,
    counters: Arc<Counters>,
) {
    counters.active.fetch_add(1, Ordering::Relaxed);
    let _guard = ActiveGuard(counters.clone());
    let resets_at_start = modes.borrow().resets;
    let mut server = match TcpStream::connect(target).await {
        Ok(s) => s,
        Err(_) => {
            counters.upstream_failures.fetch_add(1, Ordering::Relaxed);
            let _ = client.set_zero_linger();
            return;
        }
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let end = {
        // Borrowed halves: dropping them sends nothing, so a reset below can
        // close the sockets with RST only.
        let (mut cr, mut cw) = client.split();
        let (mut sr, mut sw) = server.split();
        let (up_modes, down_modes) = (modes.clone(), modes.clone());
        let pumps = async {
            let up = pump(&mut cr, &mut sw, Direction::ToServer, up_modes, &counters);
            let down = pump(&mut sr, &mut cw, Direction::ToClient, down_modes, &counters);
            tokio::pin!(up);
            tokio::pin!(down);
            // Half-closes flow through; the first Reset/Closed ends both.
            let first = tokio::select! {
                e = &mut up => (e, true),
                e = &mut down => (e, false),
            };
            match first {
                (End::Done, true) => down.await,
                (End::Done, false) => up.await,
                (other, _) => other,
            }
        };
        let reset = async {
            loop {
                if modes.borrow_and_update().resets != resets_at_start {
                    return;
                }
                if modes.changed().await.is_err() {
                    // The proxy is gone: wait to be aborted.
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::select! {
            end = pumps => end,
            () = reset => End::Reset,
        }
    };
    match end {
        End::Done => {}
        End::Reset => {
            counters.resets.fetch_add(1, Ordering::Relaxed);
            // Closing with SO_LINGER 0 sends RST instead of FIN.
            let _ = client.set_zero_linger();
            let _ = server.set_zero_linger();
        }
        End::Closed => {
            counters.closed_after.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Waits until the deadline or a mode change, whichever is first; `true` when
/// the deadline was reached.
async fn sleep_or_change(due: Instant, modes: &mut watch::Receiver<Modes>) -> bool {
    if due <= Instant::now() {
        return true;
    }
    tokio::select! {
        () = tokio::time::sleep_until(due) => true,
        changed = modes.changed() => {
            if changed.is_err() {
                std::future::pending::<()>().await;
            }
            false
        }
    }
}

/// One direction: a reader that stamps chunks and a writer that forwards them
/// by the current mode.
async fn pump<R, W>(
    src: &mut R,
    dst: &mut W,
    direction: Direction,
    mut modes: watch::Receiver<Modes>,
    counters: &Counters,
) -> End
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let reader = async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match src.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if tx.send((Instant::now(), buf[..n].to_vec())).is_err() {
                        return;
                    }
                }
            }
        }
        // `tx` drops here: the writer drains what is pending, then
        // half-closes.
    };
    let writer = async {
        let mut last_due = Instant::now();
        // Drawn once: this connection's place in a DelayPerConnection range.
        let unit: f64 = rand::rng().random_range(0.0..=1.0);
        // (generation, bytes left) of the current CloseAfter budget.
        let mut budget: Option<(u64, u64)> = None;
        let mut pending: VecDeque<(Instant, Vec<u8>)> = VecDeque::new();
        loop {
            if pending.is_empty() {
                match rx.recv().await {
                    Some(item) => pending.push_back(item),
                    None => {
                        let _ = dst.shutdown().await;
                        return End::Done;
                    }
                }
            }
            let Some((read_at, _)) = pending.front() else {
                continue;
            };
            let read_at = *read_at;
            let current = *modes.borrow_and_update();
            match current.get(direction) {
                Mode::Pass => {}
                Mode::Reset => return End::Reset,
                Mode::Hold => {
                    if modes.changed().await.is_err() {
                        std::future::pending::<()>().await;
                    }
                    continue;
                }
                Mode::Delay { fixed, jitter } => {
                    let extra = if jitter.is_zero() {
                        Duration::ZERO
                    } else {
                        rand::rng().random_range(Duration::ZERO..=jitter)
                    };
                    let due = (read_at + fixed + extra).max(last_due);
                    if !sleep_or_change(due, &mut modes).await {
                        continue;
                    }
                    last_due = due;
                }
                Mode::DelayPerConnection { min, max } => {
                    let spread = max.saturating_sub(min).mul_f64(unit);
                    let due = (read_at + min + spread).max(last_due);
                    if !sleep_or_change(due, &mut modes).await {
                        continue;
                    }
                    last_due = due;
                }
                Mode::CloseAfter(n) => {
                    let left = match budget {
                        Some((g, left)) if g == current.generation => left,
                        _ => n,
                    };
                    let Some((_, chunk)) = pending.front_mut() else {
                        continue;
                    };
                    let take = usize::try_from(left).unwrap_or(usize::MAX).min(chunk.len());
                    if take > 0 && dst.write_all(&chunk[..take]).await.is_err() {
                        return End::Done;
                    }
                    count(counters, direction, take);
                    chunk.drain(..take);
                    let left = left - take as u64;
                    budget = Some((current.generation, left));
                    if left == 0 {
                        let _ = dst.flush().await;
                        return End::Closed;
                    }
                    pending.pop_front();
                    continue;
                }
            }
            if let Some((_, chunk)) = pending.pop_front() {
                if dst.write_all(&chunk).await.is_err() {
                    return End::Done;
                }
                count(counters, direction, chunk.len());
            }
        }
    };
    tokio::pin!(writer);
    tokio::select! {
        () = reader => {}
        end = &mut writer => return end,
    }
    writer.await
}

fn count(counters: &Counters, direction: Direction, n: usize) {
    let n = n as u64;
    match direction {
        Direction::ToServer => counters.to_server.fetch_add(n, Ordering::Relaxed),
        Direction::ToClient => counters.to_client.fetch_add(n, Ordering::Relaxed),
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::RedisServer;

    /// One RESP round trip over a raw connection, bounded so a test never
    /// hangs.
    async fn roundtrip(
        stream: &mut TcpStream,
        cmd: &[u8],
        within: Duration,
    ) -> io::Result<Vec<u8>> {
        stream.write_all(cmd).await?;
        let mut buf = vec![0u8; 1024];
        match tokio::time::timeout(within, stream.read(&mut buf)).await {
            Ok(Ok(0)) => Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(Ok(n)) => Ok(buf[..n].to_vec()),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(io::ErrorKind::TimedOut.into()),
        }
    }

    const PING: &[u8] = b"*1\r\n$4\r\nPING\r\n";

    /// A PING over `c` is answered with PONG within 5 s.
    async fn pong(c: &mut TcpStream) {
        let reply = roundtrip(c, PING, Duration::from_secs(5))
            .await
            .expect("pong");
        assert_eq!(reply, b"+PONG\r\n");
    }

    async fn wait_for(cond: impl Fn() -> bool) {
        crate::wait::until("the condition", Duration::from_secs(10), || async {
            cond()
        })
        .await;
    }

    /// Sends `n` ECHO commands as separate writes; returns the replies the
    /// server must send, in order.
    async fn echoes(c: &mut TcpStream, n: usize) -> Vec<u8> {
        let mut expected = Vec::new();
        for i in 0..n {
            let v = i.to_string();
            let cmd = format!("*2\r\n$4\r\nECHO\r\n${}\r\n{}\r\n", v.len(), v);
            c.write_all(cmd.as_bytes()).await.expect("write");
            expected.extend_from_slice(format!("${}\r\n{}\r\n", v.len(), v).as_bytes());
        }
        expected
    }

    /// Sends `n` ECHO commands as separate writes ([`echoes`]) and checks
    /// that their replies come back complete and in order within 10 s.
    async fn echoes_come_back_in_order(c: &mut TcpStream, n: usize) {
        let expected = echoes(c, n).await;
        let mut got = vec![0u8; expected.len()];
        tokio::time::timeout(Duration::from_secs(10), c.read_exact(&mut got))
            .await
            .expect("replies within 10 s")
            .expect("read");
        assert_eq!(got, expected);
    }

    #[tokio::test]
    async fn passes_and_reports_its_url() {
        let server = RedisServer::start().expect("redis-server");
        let proxy = FaultProxy::start(server.port()).await.expect("proxy");
        assert_eq!(proxy.url(), format!("redis://127.0.0.1:{}", proxy.port()));
        let mut c = TcpStream::connect(proxy.addr()).await.expect("connect");
        pong(&mut c).await;
        let stats = proxy.stats();
        assert_eq!(stats.accepted, 1);
        assert_eq!(stats.bytes_to_server, PING.len() as u64);
        assert_eq!(stats.bytes_to_client, 7);
    }

    #[tokio::test]
    async fn hold_forwards_nothing_until_healed_then_delivers() {
        let server = RedisServer::start().expect("redis-server");
        let proxy = FaultProxy::start(server.port()).await.expect("proxy");
        let mut c = TcpStream::connect(proxy.addr()).await.expect("connect");
        proxy.set_mode(Direction::ToServer, Mode::Hold);
        c.write_all(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n")
            .await
            .expect("write");
        wait_for(|| proxy.stats().accepted == 1).await;
        let mut buf = [0u8; 64];
        assert!(
            tokio::time::timeout(Duration::from_millis(100), c.read(&mut buf))
                .await
                .is_err(),
            "no reply while held"
        );
        assert_eq!(server.text(&["EXISTS", "k"]).expect("exists"), "0");
        assert_eq!(proxy.stats().bytes_to_server, 0);
        proxy.heal();
        let n = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf))
            .await
            .expect("reply after heal")
            .expect("read");
        assert_eq!(&buf[..n], b"+OK\r\n");
        assert_eq!(server.text(&["GET", "k"]).expect("get"), "v");
    }

    #[tokio::test]
    async fn hold_replies_only() {
        let server = RedisServer::start().expect("redis-server");
        let proxy = FaultProxy::start(server.port()).await.expect("proxy");
        let mut c = TcpStream::connect(proxy.addr()).await.expect("connect");
        proxy.set_mode(Direction::ToClient, Mode::Hold);
        c.write_all(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nw\r\n")
            .await
            .expect("write");
        // The command runs; its reply is held.
        wait_for(|| server.text(&["GET", "k"]).is_ok_and(|v| v == "w")).await;
        let mut buf = [0u8; 64];
        assert!(
            tokio::time::timeout(Duration::from_millis(100), c.read(&mut buf))
                .await
                .is_err()
        );
        proxy.set_mode(Direction::ToClient, Mode::Pass);
        let n = c.read(&mut buf).await.expect("read");
        assert_eq!(&buf[..n], b"+OK\r\n");
    }

    #[tokio::test]
    async fn delay_keeps_order_and_switches_back() {
        let server = RedisServer::start().expect("redis-server");
        let proxy = FaultProxy::start(server.port()).await.expect("proxy");
        let mode = Mode::delay(Duration::from_millis(2), Duration::from_millis(3));
        proxy.set_both(mode);
        assert_eq!(proxy.mode(Direction::ToServer), mode);
        let mut c = TcpStream::connect(proxy.addr()).await.expect("connect");
        // Many small writes, each its own chunk with its own jitter: replies
        // must come back complete and in order.
        echoes_come_back_in_order(&mut c, 50).await;
        proxy.heal();
        pong(&mut c).await;
    }

    #[tokio::test]
    async fn delay_per_connection_keeps_order() {
        let server = RedisServer::start().expect("redis-server");
        let proxy = FaultProxy::start(server.port()).await.expect("proxy");
        proxy.set_both(Mode::DelayPerConnection {
            min: Duration::from_millis(1),
            max: Duration::from_millis(8),
        });
        for _ in 0..3 {
            let mut c = TcpStream::connect(proxy.addr()).await.expect("connect");
            echoes_come_back_in_order(&mut c, 20).await;
        }
    }

    #[tokio::test]
    async fn reset_cuts_open_connections_and_accepts_new_ones() {
        let server = RedisServer::start().expect("redis-server");
        let proxy = FaultProxy::start(server.port()).await.expect("proxy");
        let mut c = TcpStream::connect(proxy.addr()).await.expect("connect");
        roundtrip(&mut c, PING, Duration::from_secs(5))
            .await
            .expect("pong");
        proxy.reset();
        wait_for(|| proxy.stats().resets == 1).await;
        let mut buf = [0u8; 16];
        let read = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf))
            .await
            .expect("reset seen");
        match read {
            Err(e) => assert_eq!(e.kind(), io::ErrorKind::ConnectionReset),
            Ok(n) => assert_eq!(n, 0, "closed"),
        }
        // Still in pass mode: a new connection works.
        let mut c2 = TcpStream::connect(proxy.addr()).await.expect("connect");
        pong(&mut c2).await;
    }

    #[tokio::test]
    async fn reset_mode_resets_every_connection_that_sends() {
        let server = RedisServer::start().expect("redis-server");
        let proxy = FaultProxy::start(server.port()).await.expect("proxy");
        proxy.set_mode(Direction::ToServer, Mode::Reset);
        for _ in 0..3 {
            let mut c = TcpStream::connect(proxy.addr()).await.expect("connect");
            assert!(roundtrip(&mut c, PING, Duration::from_secs(5))
                .await
                .is_err());
        }
        wait_for(|| proxy.stats().resets == 3).await;
        assert_eq!(proxy.stats().bytes_to_server, 0);
        proxy.heal();
        let mut c = TcpStream::connect(proxy.addr()).await.expect("connect");
        pong(&mut c).await;
    }

    #[tokio::test]
    async fn close_after_cuts_a_command_in_the_middle() {
        let server = RedisServer::start().expect("redis-server");
        let proxy = FaultProxy::start(server.port()).await.expect("proxy");
        let set = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nvalue\r\n";
        proxy.set_mode(Direction::ToServer, Mode::CloseAfter(10));
        let mut c = TcpStream::connect(proxy.addr()).await.expect("connect");
        assert!(roundtrip(&mut c, set, Duration::from_secs(5))
            .await
            .is_err());
        wait_for(|| proxy.stats().closed_after == 1).await;
        assert_eq!(proxy.stats().bytes_to_server, 10);
        assert_eq!(
            server.text(&["EXISTS", "k"]).expect("exists"),
            "0",
            "half a command does nothing"
        );
        // A budget of exactly one command lets that command through, then
        // closes.
        proxy.set_mode(Direction::ToServer, Mode::CloseAfter(set.len() as u64));
        let mut c = TcpStream::connect(proxy.addr()).await.expect("connect");
        let _ = roundtrip(&mut c, set, Duration::from_secs(5)).await;
        wait_for(|| proxy.stats().closed_after == 2).await;
        wait_for(|| server.text(&["GET", "k"]).is_ok_and(|v| v == "value")).await;
    }

    #[tokio::test]
    async fn a_dead_target_is_a_dropped_connection_and_drop_stops_the_proxy() {
        let server = RedisServer::start().expect("redis-server");
        let proxy = FaultProxy::start(server.port()).await.expect("proxy");
        server.kill();
        let mut c = TcpStream::connect(proxy.addr()).await.expect("accepts");
        assert!(roundtrip(&mut c, PING, Duration::from_secs(5))
            .await
            .is_err());
        wait_for(|| proxy.stats().upstream_failures == 1).await;
        server.restart().expect("restart");
        let mut c = TcpStream::connect(proxy.addr()).await.expect("connect");
        pong(&mut c).await;
        let addr = proxy.addr();
        drop(proxy);
        // The open connection goes with the proxy...
        let mut buf = [0u8; 8];
        let read = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf))
            .await
            .expect("closed with the proxy");
        assert!(matches!(read, Ok(0) | Err(_)));
        // ...and nothing listens any more.
        crate::wait::until(
            "the proxy stopped listening",
            Duration::from_secs(5),
            || async { TcpStream::connect(addr).await.is_err() },
        )
        .await;
    }
}
