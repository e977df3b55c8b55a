//! Limits on callers' connections, so that silent or idle ones cannot hold the process's file
//! descriptors (every sink connection and the ledger need some too): a connection must finish
//! sending a request's head within the header-read timeout of starting it (or of being
//! accepted), may wait between requests for the keep-alive timeout, and at most
//! `max_connections` are open at once; past that the acceptor waits for one to close, and new
//! callers wait in the listen queue.
//!
//! hyper's own `header_read_timeout` starts when a connection begins waiting for a request,
//! so it cannot tell an idle keep-alive connection from a slow head. Here a [`Clock`] per
//! connection learns both from the connection's reads ([`Watched`]) and from its requests,
//! which are busy until their response body has ended ([`Tracked`]).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::response::Response;
use http_body::{Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tower::Service;

/// The limits, from `sluice serve`'s options.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Longest time from a request head's first byte (or the connection's start) to its end.
    pub header_read: Duration,
    /// Longest wait for the next request on a connection whose last one is answered.
    pub keep_alive: Duration,
    /// Most connections open at once on one listener.
    pub max_connections: u32,
}

/// File descriptors left for everything but callers' connections when the default
/// connection cap is derived from the process's limit: a sink connection per exchange in
/// flight, the ledger's files and connections.
const RESERVED_FDS: u64 = 64;

/// The default connection cap: half of the file descriptors the process may open beyond a
/// reserve (the other half for the sink connections the callers' requests open), at most 16,384.
pub fn default_max_connections() -> u32 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct it is given.
    let soft = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
        lim.rlim_cur
    } else {
        1024
    };
    let half = soft.saturating_sub(RESERVED_FDS) / 2;
    u32::try_from(half.clamp(16, 16_384)).unwrap_or(16_384)
}

/// Why a connection was closed by its clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expired {
    /// A request head took too long to arrive.
    HeaderRead,
    /// No new request came while it was idle.
    KeepAlive,
}

impl Expired {
    /// The reason's name in metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Expired::HeaderRead => "header_read_timeout",
            Expired::KeepAlive => "keep_alive_timeout",
        }
    }
}

/// What one connection is doing: serving requests, waiting for a head, or idle since when.
#[derive(Debug)]
pub struct Clock {
    born: Instant,
    /// Requests being served, their response bodies not yet ended.
    busy: AtomicU32,
    /// Whether, with no request being served, a head has begun (or none came yet).
    reading_head: AtomicBool,
    /// Milliseconds after `born` when the head began or the connection went idle.
    since_ms: AtomicU64,
}

impl Clock {
    /// The clock of a connection accepted now: waiting for its first request's head.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            born: Instant::now(),
            busy: AtomicU32::new(0),
            reading_head: AtomicBool::new(true),
            since_ms: AtomicU64::new(0),
        })
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.born.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Bytes arrived: on an idle connection they begin a request's head.
    fn on_read(&self) {
        if self.busy.load(Ordering::Relaxed) == 0 && !self.reading_head.load(Ordering::Relaxed) {
            self.since_ms.store(self.now_ms(), Ordering::Relaxed);
            self.reading_head.store(true, Ordering::Relaxed);
        }
    }

    /// A request's head has arrived: the connection is busy until the returned guard drops.
    fn begin(self: &Arc<Self>) -> Busy {
        self.busy.fetch_add(1, Ordering::Relaxed);
        self.reading_head.store(false, Ordering::Relaxed);
        Busy(self.clone())
    }

    /// When the connection expires and why, if nothing happens before (none while busy).
    fn deadline(&self, limits: &ConnectionLimits) -> Option<(Instant, Expired)> {
        if self.busy.load(Ordering::Relaxed) > 0 {
            return None;
        }
        let since = self.born + Duration::from_millis(self.since_ms.load(Ordering::Relaxed));
        Some(if self.reading_head.load(Ordering::Relaxed) {
            (since + limits.header_read, Expired::HeaderRead)
        } else {
            (since + limits.keep_alive, Expired::KeepAlive)
        })
    }

    /// Resolves when the connection has expired: at most the shorter limit late, as the
    /// connection's requests and reads move its deadline without waking this (which would
    /// cost a wake-up per request).
    pub async fn expired(&self, limits: &ConnectionLimits) -> Expired {
        let every = limits.header_read.min(limits.keep_alive);
        loop {
            let now = Instant::now();
            match self.deadline(limits) {
                Some((at, why)) if at <= now => return why,
                Some((at, _)) => tokio::time::sleep_until(at.min(now + every).into()).await,
                None => tokio::time::sleep(every).await,
            }
        }
    }
}

/// A request being served; the connection goes idle when the last one drops.
pub struct Busy(Arc<Clock>);

impl Drop for Busy {
    fn drop(&mut self) {
        if self.0.busy.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.0.since_ms.store(self.0.now_ms(), Ordering::Relaxed);
        }
    }
}

/// A connection's service that marks the connection busy while each response is produced and
/// its body sent.
#[derive(Clone)]
pub struct Tracked<S> {
    inner: S,
    clock: Arc<Clock>,
}

impl<S> Tracked<S> {
    /// Tracks the requests `inner` serves on the connection of `clock`.
    pub fn new(inner: S, clock: Arc<Clock>) -> Self {
        Self { inner, clock }
    }
}

impl<S, R> Service<R> for Tracked<S>
where
    S: Service<R, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = TrackedFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: R) -> Self::Future {
        TrackedFuture {
            busy: Some(self.clock.begin()),
            inner: self.inner.call(req),
        }
    }
}

pin_project_lite::pin_project! {
    /// A response being produced; its body then carries the connection's busy mark.
    pub struct TrackedFuture<F> {
        #[pin]
        inner: F,
        busy: Option<Busy>,
    }
}

impl<F, E> Future for TrackedFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let res = std::task::ready!(this.inner.poll(cx))?;
        let busy = this.busy.take();
        Poll::Ready(Ok(res.map(|body| Body::new(BusyBody { body, _busy: busy }))))
    }
}

/// A response body that keeps its connection busy until it ends.
struct BusyBody {
    body: Body,
    _busy: Option<Busy>,
}

impl http_body::Body for BusyBody {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A caller's socket whose reads start its clock's header-read timeout.
pub struct Watched<T> {
    inner: T,
    clock: Arc<Clock>,
}

impl<T> Watched<T> {
    /// Watches `inner` for `clock`.
    pub fn new(inner: T, clock: Arc<Clock>) -> Self {
        Self { inner, clock }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.clock.on_read();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: ConnectionLimits = ConnectionLimits {
        header_read: Duration::from_secs(10),
        keep_alive: Duration::from_secs(60),
        max_connections: 1,
    };

    #[test]
    fn a_connection_waits_for_its_head_then_idles_after_its_request_ends() {
        let clock = Clock::new();
        let (_, why) = clock.deadline(&LIMITS).unwrap();
        assert_eq!(
            why,
            Expired::HeaderRead,
            "a new connection must send a head"
        );
        let busy = clock.begin();
        assert!(
            clock.deadline(&LIMITS).is_none(),
            "never expires while serving"
        );
        clock.on_read();
        assert!(
            clock.deadline(&LIMITS).is_none(),
            "a body read is not a head"
        );
        drop(busy);
        let (at, why) = clock.deadline(&LIMITS).unwrap();
        assert_eq!(why, Expired::KeepAlive);
        assert!(at > Instant::now() + Duration::from_secs(59));
        clock.on_read();
        let (at, why) = clock.deadline(&LIMITS).unwrap();
        assert_eq!(why, Expired::HeaderRead, "the next head has begun");
        assert!(at < Instant::now() + Duration::from_secs(11));
    }
}
