//! A bounded HTTP/1 server for the operational endpoints: the consumer's `/metrics`,
//! `/healthz`, `/readyz` today, and any other HTTP port a binary opens (a future
//! `producer serve` uses the same [`serve`]). Such a port is often reachable from a whole
//! network (`0.0.0.0` in a container), so nobody who can connect may hold the process's
//! resources for long:
//!
//! - **connections**: at most [`HttpLimits::max_connections`] at once, and at most
//!   [`HttpLimits::max_connections_per_client`] from one client address, so one client
//!   holding idle or slow connections cannot shut the others out. One more is accepted,
//!   held unanswered for [`SHED_DELAY`] and closed (shed), so the kernel's backlog never
//!   fills with waiting attackers and a client that reconnects at once in a loop costs one
//!   accept per second per connection, not a core; at most
//!   [`HttpLimits::max_held_connections`] are held so (more are closed at once), so the file
//!   descriptors the process needs for MySQL and Redis stay free;
//! - **header read timeout**: a request head must arrive within
//!   [`HttpLimits::header_read_timeout`], counted from the moment the server waits for it —
//!   on a new connection and between two requests of a kept-alive one, so it is also the
//!   idle timeout;
//! - **request timeout**: a response not ready after [`HttpLimits::request_timeout`] closes
//!   the connection;
//! - **connection age**: after [`HttpLimits::max_connection_age`] a connection is closed once
//!   its current request is answered (and at most `request_timeout` later in any case), so
//!   a client that never reads its response cannot keep it either;
//! - **head size**: the read buffer, hence a request head, is at most
//!   [`HttpLimits::max_head_bytes`];
//! - **response writing**: a connection whose writes make no progress for
//!   [`HttpLimits::write_stall_timeout`] (a client that does not read its answer) is closed.
//!
//! The service is any tower `Service` (an axum `Router`); each request carries the peer's
//! address as a [`ClientAddr`] extension.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower::{Service, ServiceExt};

type BoxError = Box<dyn StdError + Send + Sync>;

/// How much a client may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    pub max_connections: usize,
    pub max_connections_per_client: usize,
    /// Connections over the limits held unanswered for [`SHED_DELAY`] before they are
    /// closed; beyond that many, they are closed at once.
    pub max_held_connections: usize,
    pub header_read_timeout: Duration,
    pub request_timeout: Duration,
    pub max_connection_age: Duration,
    pub max_head_bytes: usize,
    pub write_stall_timeout: Duration,
}

/// The address of the peer a request came from (a request extension: the rate limit keys
/// on it, the audit log names it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub SocketAddr);

impl Default for HttpLimits {
    /// 64 connections (Prometheus, a probe and a few people need a handful), 16 from one
    /// address, 16 over the limits held for a second, 5 s for a request head or between
    /// requests, 10 s per request, 60 s per connection, 16 KiB heads, 10 s without progress
    /// writing an answer.
    fn default() -> Self {
        HttpLimits {
            max_connections: 64,
            max_connections_per_client: 16,
            max_held_connections: 16,
            header_read_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            max_connection_age: Duration::from_secs(60),
            max_head_bytes: 16 * 1024,
            write_stall_timeout: Duration::from_secs(10),
        }
    }
}

/// Open connections by client address.
#[derive(Default)]
struct PerClient(Mutex<HashMap<IpAddr, usize>>);

/// One open connection of a client; counted until dropped.
struct ClientSlot {
    clients: Arc<PerClient>,
    ip: IpAddr,
}

impl PerClient {
    fn take(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<ClientSlot> {
        let mut open = self.0.lock().expect("per-client lock");
        let n = open.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(ClientSlot {
            clients: self.clone(),
            ip,
        })
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut open = self.clients.0.lock().expect("per-client lock");
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// A connection's stream that notes since when its writes have been blocked (the client
/// does not read): milliseconds since `start`, plus one; 0 while writes progress.
struct WatchedStream {
    stream: TcpStream,
    start: Instant,
    blocked_since: Arc<AtomicU64>,
}

impl AsyncRead for WatchedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl WatchedStream {
    fn note<T>(&self, polled: &Poll<std::io::Result<T>>) {
        match polled {
            Poll::Pending => {
                let now = self.start.elapsed().as_millis() as u64 + 1;
                let _ = self.blocked_since.compare_exchange(
                    0,
                    now,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                );
            }
            Poll::Ready(_) => self.blocked_since.store(0, Ordering::Relaxed),
        }
    }
}

impl AsyncWrite for WatchedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write(cx, buf);
        self.note(&polled);
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        self.note(&polled);
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let polled = Pin::new(&mut self.stream).poll_flush(cx);
        self.note(&polled);
        polled
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Resolves once writes have been blocked for `limit`.
async fn write_stalled(start: Instant, blocked_since: Arc<AtomicU64>, limit: Duration) {
    let tick = (limit / 4).max(Duration::from_millis(50));
    loop {
        tokio::time::sleep(tick).await;
        let since = blocked_since.load(Ordering::Relaxed);
        if since > 0 {
            let blocked = start
                .elapsed()
                .saturating_sub(Duration::from_millis(since - 1));
            if blocked >= limit {
                return;
            }
        }
    }
}

/// How long [`serve`] waits for open connections to finish after `shutdown`.
const DRAIN: Duration = Duration::from_secs(5);

/// How long a connection over the limits is held, unanswered, before it is closed: a
/// crowd that reconnects as soon as it is closed is slowed to one attempt per second per
/// connection instead of spinning the accept loop.
pub(crate) const SHED_DELAY: Duration = Duration::from_secs(1);

/// Holds connections over the limits for [`SHED_DELAY`], at most
/// [`HttpLimits::max_held_connections`]; beyond that they are closed at once.
struct Shedder {
    held: Arc<Semaphore>,
    log: ShedLog,
    max: usize,
}

impl Shedder {
    fn new(max: usize, held: usize) -> Shedder {
        Shedder {
            held: Arc::new(Semaphore::new(held)),
            log: ShedLog::default(),
            max,
        }
    }

    fn shed(&mut self, stream: TcpStream, shutdown: &CancellationToken) {
        self.log.one_more(self.max);
        let Ok(permit) = self.held.clone().try_acquire_owned() else {
            return;
        };
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(SHED_DELAY) => {}
                _ = shutdown.cancelled() => {}
            }
            drop(stream);
            drop(permit);
        });
    }
}

/// Serves `service` on `listener` within `limits` until `shutdown`, then lets open
/// connections finish their request (up to a few seconds) and returns.
pub async fn serve<S, B>(
    listener: TcpListener,
    service: S,
    limits: HttpLimits,
    shutdown: CancellationToken,
) where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let max = limits.max_connections.max(1);
    let slots = Arc::new(Semaphore::new(max));
    let per_client = Arc::new(PerClient::default());
    let mut shedder = Shedder::new(max, limits.max_held_connections);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.cancelled() => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors, most likely: back off instead of spinning.
                tracing::warn!(error = %e, "cannot accept an HTTP connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(client) = per_client.take(peer.ip(), limits.max_connections_per_client.max(1))
        else {
            shedder.shed(stream, &shutdown);
            continue;
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            shedder.shed(stream, &shutdown);
            continue;
        };
        let service = service.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            serve_connection(stream, peer, service, limits, shutdown).await;
            drop(slot);
            drop(client);
        });
    }
    // Every slot back: every connection ended.
    let _ = tokio::time::timeout(DRAIN, slots.acquire_many(max as u32)).await;
}

async fn serve_connection<S, B>(
    stream: TcpStream,
    peer: SocketAddr,
    service: S,
    limits: HttpLimits,
    shutdown: CancellationToken,
) where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let request_timeout = limits.request_timeout;
    let timed = hyper::service::service_fn(move |mut request: Request<Incoming>| {
        let service = service.clone();
        request.extensions_mut().insert(ClientAddr(peer));
        async move {
            match tokio::time::timeout(request_timeout, service.oneshot(request)).await {
                Ok(answered) => answered.map_err(|e| RequestFailed(e.into().to_string())),
                Err(_) => Err(RequestFailed("request timed out".into())),
            }
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_head_bytes.max(8192));
    let start = Instant::now();
    let blocked_since = Arc::new(AtomicU64::new(0));
    let watched = WatchedStream {
        stream,
        start,
        blocked_since: blocked_since.clone(),
    };
    let connection = builder.serve_connection(TokioIo::new(watched), timed);
    tokio::pin!(connection);
    let stalled = write_stalled(start, blocked_since, limits.write_stall_timeout);
    tokio::pin!(stalled);
    tokio::select! {
        _ = connection.as_mut() => return,
        // The client does not read its answer: drop the connection (closes it).
        _ = stalled.as_mut() => return,
        _ = tokio::time::sleep(limits.max_connection_age) => {}
        _ = shutdown.cancelled() => {}
    }
    connection.as_mut().graceful_shutdown();
    tokio::select! {
        _ = tokio::time::timeout(request_timeout, connection) => {}
        _ = stalled => {}
    }
}

/// A request that got no response (hyper closes its connection).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct RequestFailed(String);

/// Says that connections are being shed, at most once a minute, with how many.
#[derive(Default)]
struct ShedLog {
    since_last: u64,
    last: Option<Instant>,
}

impl ShedLog {
    fn one_more(&mut self, max: usize) {
        self.since_last += 1;
        if self
            .last
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(60))
        {
            tracing::warn!(
                closed = self.since_last,
                max_connections = max,
                "HTTP connections over the limit closed unanswered"
            );
            self.since_last = 0;
            self.last = Some(Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";

    /// Reads until the server closes the connection (or `within` passes: `None`).
    async fn until_closed(stream: &mut TcpStream, within: Duration) -> Option<String> {
        let mut got = Vec::new();
        let read = tokio::time::timeout(within, async {
            let mut buf = [0u8; 1024];
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
        });
        read.await
            .ok()
            .map(|_| String::from_utf8_lossy(&got).into_owned())
    }

    /// One request on a new connection; the response's head line.
    async fn get(addr: std::net::SocketAddr, path: &str) -> Option<String> {
        let mut s = TcpStream::connect(addr).await.ok()?;
        let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.ok()?;
        let reply = until_closed(&mut s, Duration::from_secs(5)).await?;
        reply.lines().next().map(str::to_string)
    }

    #[tokio::test]
    async fn connections_heads_and_requests_are_bounded() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let service = tower::service_fn(|request: Request<Incoming>| async move {
            if request.uri().path() == "/slow" {
                tokio::time::sleep(Duration::from_secs(30)).await;
            }
            Ok::<_, Infallible>(Response::new("ok".to_string()))
        });
        let limits = HttpLimits {
            max_connections: 2,
            max_connections_per_client: 2,
            max_held_connections: 2,
            header_read_timeout: Duration::from_millis(400),
            request_timeout: Duration::from_millis(300),
            max_connection_age: Duration::from_secs(30),
            max_head_bytes: 8192,
            write_stall_timeout: Duration::from_secs(5),
        };
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(serve(listener, service, limits, shutdown.clone()));

        // Two kept-alive connections take both slots (each answered once).
        let mut held = Vec::new();
        for _ in 0..2 {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(GET).await.unwrap();
            let mut buf = [0u8; 256];
            let n = s.read(&mut buf).await.unwrap();
            assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
            held.push(s);
        }
        // A third is held unanswered for SHED_DELAY, then closed.
        let mut third = TcpStream::connect(addr).await.unwrap();
        let started = Instant::now();
        let shed = until_closed(&mut third, SHED_DELAY * 3).await;
        assert_eq!(
            shed.as_deref(),
            Some(""),
            "the connection over the limit is shed"
        );
        assert!(
            started.elapsed() >= SHED_DELAY - Duration::from_millis(100),
            "closed at once: a reconnecting crowd would spin the accept loop"
        );
        // Idle connections are closed after the header timeout, freeing their slots.
        let started = Instant::now();
        for s in &mut held {
            assert!(until_closed(s, Duration::from_secs(2)).await.is_some());
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(get(addr, "/").await.as_deref(), Some("HTTP/1.1 200 OK"));
        // A half-sent head is cut off after the header timeout.
        let mut slow = TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"GET / HTTP/1.1\r\nHost:").await.unwrap();
        let started = Instant::now();
        assert!(until_closed(&mut slow, Duration::from_secs(2))
            .await
            .is_some());
        assert!(started.elapsed() < Duration::from_secs(1));
        // A request that takes too long closes its connection without an answer.
        let started = Instant::now();
        assert_eq!(get(addr, "/slow").await, None);
        assert!(started.elapsed() < Duration::from_secs(2));

        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), server)
            .await
            .expect("serve returns after shutdown")
            .unwrap();
    }

    /// A connection from `ip` (a loopback address of its own: another client).
    async fn connect_from(ip: &str, addr: std::net::SocketAddr) -> TcpStream {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(format!("{ip}:0").parse().unwrap()).unwrap();
        socket.connect(addr).await.unwrap()
    }

    #[tokio::test]
    async fn one_client_cannot_take_every_slot_nor_keep_one_without_reading() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let service = tower::service_fn(|request: Request<Incoming>| async move {
            let peer = request.extensions().get::<ClientAddr>().map(|c| c.0.ip());
            let body = if request.uri().path() == "/big" {
                "x".repeat(32 << 20)
            } else {
                format!("{peer:?}")
            };
            Ok::<_, Infallible>(Response::new(body))
        });
        let limits = HttpLimits {
            max_connections: 8,
            max_connections_per_client: 3,
            max_held_connections: 8,
            header_read_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(30),
            max_connection_age: Duration::from_secs(60),
            max_head_bytes: 8192,
            write_stall_timeout: Duration::from_millis(500),
        };
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(serve(listener, service, limits, shutdown.clone()));

        // One client holds its three idle connections; its fourth is shed...
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(connect_from("127.0.0.1", addr).await);
        }
        let mut fourth = connect_from("127.0.0.1", addr).await;
        let shed = until_closed(&mut fourth, SHED_DELAY * 3).await;
        assert_eq!(shed.as_deref(), Some(""), "over the per-client cap");
        // ...while another client is served, and sees its own address.
        let mut other = connect_from("127.0.0.2", addr).await;
        other
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let reply = until_closed(&mut other, Duration::from_secs(5))
            .await
            .unwrap();
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
        assert!(reply.ends_with("Some(127.0.0.2)"), "{reply}");
        drop(held);

        // A client that never reads a big answer is cut off once writing stalls.
        let mut sleeper = connect_from("127.0.0.3", addr).await;
        sleeper
            .write_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let started = Instant::now();
        let mut got = 0usize;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            match tokio::time::timeout(Duration::from_secs(5), sleeper.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(n)) => got += n,
                Err(_) => panic!("the stalled connection is still open"),
            }
        }
        assert!(got < 32 << 20, "the whole answer was written: {got}");
        assert!(started.elapsed() < Duration::from_secs(5));

        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), server)
            .await
            .expect("serve returns after shutdown")
            .unwrap();
    }
}
