//! The upstream side: pooled HTTP/1 connections to sinks (plain or rustls), each driven by the
//! task of the request using it.
//!
//! A general-purpose client spawns a task per connection and hands every request, response
//! head and body chunk across to it. Here the caller's connection task polls the sink
//! connection itself while it waits for the response head and while it streams the response
//! body, so an exchange runs in one task: no hand-off, no wake-up of a second task per
//! request. An idle connection waits in the pool, unpolled; it is checked when taken out and
//! swept now and then, so one the sink has closed is never used and never lingers for long.

use std::future::{poll_fn, Future};
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll, Waker};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use bytes::Bytes;
use foldhash::HashMap;
use http::uri::{Authority, Scheme};
use http::{Request, Response, Uri};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder, MaybeHttpsStream};
use hyper_util::client::legacy::connect::dns::{GaiResolver, Name};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use sluice_core::egress::EgressPolicy;
use sluice_core::ExchangeError;
use tokio::net::TcpStream;
use tokio::runtime::RuntimeFlavor;
use tower::Service;

use crate::tap::{BoxError, OutboundBody};

/// How long a connection may wait unused in the pool.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How often the pool is swept for closed and expired connections.
const SWEEP_INTERVAL: Duration = Duration::from_secs(10);
/// Idle connections kept per sink; more are closed when they come back.
const MAX_IDLE_PER_SINK: usize = 256;

/// The byte stream of a sink connection.
type Io = MaybeHttpsStream<TokioIo<TcpStream>>;
/// A sink's scheme and authority: connections are pooled per key.
type PoolKey = (Scheme, Authority);
/// Idle connections per sink. The pool's maps hash with foldhash: with std's SipHash, hashing
/// the key byte by byte (an authority hashes case-insensitively) cost ~1 300 instructions per
/// lookup, two lookups per request (docs/BENCHMARKS.md, tuning step 29).
#[allow(
    clippy::vec_box,
    reason = "a `Conn` is several KiB: moved by pointer, not copied"
)]
type Idle = HashMap<PoolKey, Vec<Box<Conn>>>;

/// The thread whose idle connections this one may use: its own on a single-threaded runtime
/// (a connection's I/O is registered with the runtime that opened it, which would otherwise
/// have to wake this thread for every event on it), `None` (one shared pool) elsewhere.
fn home_thread() -> Option<ThreadId> {
    thread_local! {
        static HOME: Option<ThreadId> = tokio::runtime::Handle::try_current()
            .is_ok_and(|rt| rt.runtime_flavor() == RuntimeFlavor::CurrentThread)
            .then(|| std::thread::current().id());
    }
    HOME.with(|home| *home)
}

/// One HTTP/1 connection to a sink. Always boxed: with its buffers and TLS state it is
/// several KiB, and it moves between the pool, a request's future and a response body.
struct Conn {
    send: http1::SendRequest<OutboundBody>,
    conn: http1::Connection<Io, OutboundBody>,
    /// The connection future has completed: the connection is closed.
    closed: bool,
    /// When it was put back in the pool.
    idle_since: Instant,
}

impl Conn {
    /// Polls the connection's I/O (writing the request, reading the response into its body).
    fn drive(&mut self, cx: &mut Context<'_>) {
        if !self.closed && Pin::new(&mut self.conn).poll(cx).is_ready() {
            self.closed = true;
        }
    }

    /// Whether the connection is open and waiting for its next request.
    fn ready(&self) -> bool {
        !self.closed && self.send.is_ready()
    }

    /// Whether a pooled connection can take another request, checked without waiting.
    fn usable(&mut self) -> bool {
        self.drive(&mut Context::from_waker(Waker::noop()));
        self.ready() && self.idle_since.elapsed() < IDLE_TIMEOUT
    }
}

/// The system resolver, keeping only the addresses the egress policy allows: what is dialled is
/// what was checked, whatever the name resolved to when the channel was saved.
#[derive(Clone)]
struct PolicyResolver {
    egress: Arc<EgressPolicy>,
    gai: GaiResolver,
}

impl Service<Name> for PolicyResolver {
    type Response = std::vec::IntoIter<std::net::SocketAddr>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.gai.poll_ready(cx)
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let (egress, mut gai) = (self.egress.clone(), self.gai.clone());
        Box::pin(async move {
            let host = name.as_str().to_string();
            let found = gai.call(name).await?.collect();
            sluice_health::egress::allowed(&egress, &host, found)
                .map(Vec::into_iter)
                .map_err(|denied| io::Error::new(io::ErrorKind::PermissionDenied, denied))
        })
    }
}

/// Why a request got no response head from the sink.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// Opening the connection (TCP or TLS) failed.
    #[error("connecting to the sink: {0}")]
    Connect(#[source] BoxError),
    /// The connection failed before the response head arrived.
    #[error("exchanging with the sink: {0}")]
    Exchange(#[source] BoxError),
}

impl UpstreamError {
    /// The contract's error string for this failure.
    pub fn classify(&self) -> ExchangeError {
        match self {
            UpstreamError::Connect(e) => ExchangeError::classify(&**e, true),
            UpstreamError::Exchange(e) => ExchangeError::classify(&**e, false),
        }
    }
}

/// A response head from the sink, with facts about the connection that carried it.
pub struct Sent {
    /// The response; its body drives the connection until it ends.
    pub response: Response<UpstreamBody>,
    /// Time spent opening the connection (TCP and TLS), or `None` when a pooled one was reused.
    pub connect_us: Option<i64>,
}

/// The pooled connections to every sink, and the connector that opens new ones.
pub struct Upstream {
    connector: HttpsConnector<HttpConnector<PolicyResolver>>,
    egress: Arc<EgressPolicy>,
    /// Per [`home_thread`].
    idle: Mutex<HashMap<Option<ThreadId>, Idle>>,
    /// The sweep task has been started.
    sweeping: AtomicBool,
}

impl Upstream {
    /// A pool whose TLS connections trust `tls`, connecting only where `egress` allows.
    pub fn new(tls: rustls::ClientConfig, egress: Arc<EgressPolicy>) -> Arc<Self> {
        let resolver = PolicyResolver {
            egress: egress.clone(),
            gai: GaiResolver::new(),
        };
        let mut http = HttpConnector::new_with_resolver(resolver);
        http.enforce_http(false);
        http.set_nodelay(true);
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Arc::new(Self {
            connector,
            egress,
            idle: Mutex::new(HashMap::default()),
            sweeping: AtomicBool::new(false),
        })
    }

    /// Sends `req` (origin-form URI, `host` header set) to the sink at `scheme://authority`,
    /// reusing an idle connection when one is usable and opening one (within
    /// `connect_timeout`) otherwise. Resolves with the response head.
    pub async fn send(
        self: &Arc<Self>,
        scheme: &Scheme,
        authority: &Authority,
        connect_timeout: Duration,
        mut req: Request<OutboundBody>,
    ) -> Result<Sent, UpstreamError> {
        let key = (scheme.clone(), authority.clone());
        loop {
            let (mut conn, connect_us) = match self.checkout(&key) {
                Some(c) => (c, None),
                None => {
                    let started = Instant::now();
                    // Boxed: the connect and handshake state would make every send's future
                    // KiBs larger.
                    let c = Box::pin(self.connect(&key, connect_timeout)).await?;
                    (c, Some(started.elapsed().as_micros() as i64))
                }
            };
            let mut pending = std::pin::pin!(conn.send.try_send_request(req));
            let result = poll_fn(|cx| {
                conn.drive(cx);
                match pending.as_mut().poll(cx) {
                    // A closed connection answers its request with an error; never wait on
                    // one that did not.
                    Poll::Pending if conn.closed => Poll::Ready(None),
                    polled => polled.map(Some),
                }
            })
            .await;
            match result {
                Some(Ok(res)) => {
                    let home = Arc::downgrade(self);
                    let response = res.map(|body| UpstreamBody {
                        body,
                        conn: Some(conn),
                        home: Some((home, key)),
                    });
                    return Ok(Sent {
                        response,
                        connect_us,
                    });
                }
                None => {
                    return Err(UpstreamError::Exchange(Box::new(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the sink closed the connection",
                    ))))
                }
                Some(Err(mut e)) => match e.take_message() {
                    // A pooled connection the sink closed before it took the request: the
                    // request is untouched, so it goes out on another connection.
                    Some(back) if connect_us.is_none() => req = back,
                    _ => return Err(UpstreamError::Exchange(e.into_error().into())),
                },
            }
        }
    }

    /// Opens a connection to `key` within `timeout`.
    async fn connect(&self, key: &PoolKey, timeout: Duration) -> Result<Box<Conn>, UpstreamError> {
        let uri = Uri::builder()
            .scheme(key.0.clone())
            .authority(key.1.clone())
            .path_and_query("/")
            .build()
            .map_err(|e| UpstreamError::Connect(e.into()))?;
        // An address literal never reaches the resolver: check it here.
        let host = key.1.host();
        if let Ok(ip) = host.trim_start_matches('[').trim_end_matches(']').parse() {
            if let Err(denied) = self.egress.check(host, ip) {
                return Err(UpstreamError::Connect(Box::new(denied)));
            }
        }
        let mut connector = self.connector.clone();
        let io = match tokio::time::timeout(timeout, connector.call(uri)).await {
            Ok(Ok(io)) => io,
            Ok(Err(e)) => return Err(UpstreamError::Connect(e)),
            Err(_) => {
                return Err(UpstreamError::Connect(Box::new(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "connect timeout",
                ))))
            }
        };
        let (send, conn) = http1::handshake(io)
            .await
            .map_err(|e| UpstreamError::Connect(e.into()))?;
        Ok(Box::new(Conn {
            send,
            conn,
            closed: false,
            idle_since: Instant::now(),
        }))
    }

    /// The most recently used idle connection to `key` that is still usable.
    fn checkout(&self, key: &PoolKey) -> Option<Box<Conn>> {
        loop {
            let mut conn = self
                .idle
                .lock()
                .get_mut(&home_thread())?
                .get_mut(key)?
                .pop()?;
            if conn.usable() {
                return Some(conn);
            }
        }
    }

    /// Puts `conn` back for the next request to `key`.
    fn checkin(self: &Arc<Self>, key: PoolKey, mut conn: Box<Conn>) {
        conn.idle_since = Instant::now();
        {
            let mut idle = self.idle.lock();
            let conns = idle
                .entry(home_thread())
                .or_default()
                .entry(key)
                .or_default();
            if conns.len() >= MAX_IDLE_PER_SINK {
                return;
            }
            conns.push(conn);
        }
        // The sweep starts with the first check-in made inside a runtime.
        if !self.sweeping.load(Ordering::Relaxed) {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                if !self.sweeping.swap(true, Ordering::AcqRel) {
                    rt.spawn(sweep(Arc::downgrade(self)));
                }
            }
        }
    }
}

/// Closes, every [`SWEEP_INTERVAL`], the idle connections the sink has closed or that have
/// idled past [`IDLE_TIMEOUT`]; ends with the pool.
async fn sweep(pool: Weak<Upstream>) {
    let mut tick = tokio::time::interval(SWEEP_INTERVAL);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(pool) = pool.upgrade() else { return };
        let mut idle = pool.idle.lock();
        for sinks in idle.values_mut() {
            for conns in sinks.values_mut() {
                conns.retain_mut(|c| c.usable());
            }
            sinks.retain(|_, conns| !conns.is_empty());
        }
        idle.retain(|_, sinks| !sinks.is_empty());
    }
}

/// A sink's response body. Polling it also drives the connection it arrives on; once it has
/// ended, the connection goes back to the pool if it can carry another request.
pub struct UpstreamBody {
    body: Incoming,
    conn: Option<Box<Conn>>,
    home: Option<(Weak<Upstream>, PoolKey)>,
}

impl UpstreamBody {
    fn release(&mut self, cx: &mut Context<'_>) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        // Let the connection see the end of the message and ask for the next one.
        conn.drive(cx);
        if let Some((home, key)) = self.home.take() {
            if let Some(pool) = home.upgrade() {
                if conn.ready() {
                    pool.checkin(key, conn);
                }
            }
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        if let Some(conn) = &mut this.conn {
            conn.drive(cx);
        }
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        // A reader may stop at the last frame once the body reports its end, without asking
        // for the `None` after it.
        match &polled {
            Poll::Ready(None) => this.release(cx),
            Poll::Ready(Some(Ok(_))) if this.body.is_end_stream() => this.release(cx),
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        // Read to its end (or empty from the start) but never polled past it.
        if self.conn.is_some() && self.body.is_end_stream() {
            self.release(&mut Context::from_waker(Waker::noop()));
        }
    }
}

/// Builds the TLS configuration trusted for sinks.
pub fn tls_config(extra_ca_file: Option<&Path>) -> io::Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = extra_ca_file {
        let pem = std::fs::read(path).map_err(|e| {
            io::Error::new(e.kind(), format!("extra CA file {}: {e}", path.display()))
        })?;
        let mut added = 0;
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            roots.add(cert?).map_err(|e| {
                io::Error::new(io::ErrorKind::InvalidData, format!("extra CA file: {e}"))
            })?;
            added += 1;
        }
        if added == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("extra CA file {} holds no PEM certificate", path.display()),
            ));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| io::Error::other(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
