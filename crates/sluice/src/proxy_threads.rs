//! The main listener's threads: one single-threaded tokio runtime per core, each serving the
//! connections an acceptor hands it in turn.
//!
//! On tokio's work-stealing runtime a request's wake-ups (its caller's socket, its sink's
//! socket) hop between workers, which park and wake each other: on a 2-core machine the cores
//! sat idle ~19% of a load that kept nginx's at 5%. Here a connection, its requests and the sink
//! connections they use stay on one thread, as nginx's workers keep theirs.
//!
//! Each thread serves its connections with hyper's server itself rather than `axum::serve`,
//! which cannot bound the read buffer a connection grows ([`MAX_READ_BUFFER`]) nor close
//! silent and idle connections (`crate::connections`).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use sluice_proxy::service::MakeConnService;

use crate::connections::{Clock, ConnectionLimits, Expired, Tracked, Watched};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch, OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

/// An accepted connection on its way to a thread: the socket, the caller's address, and its
/// place among the open connections.
type Accepted = (std::net::TcpStream, SocketAddr, OwnedSemaphorePermit);

/// Largest read buffer of a caller's connection. hyper's default (~400 KiB) is reached by any
/// fast upload, and a body chunk cut from a buffer keeps all of it alive until it is sent on:
/// with twenty 1 MiB uploads in flight the peak RSS was 57–81 MiB, with 256 KiB 48–51 MiB
/// (64 KiB: 46 MiB, but 15% fewer uploads a second; 256 KiB: 9%; docs/BENCHMARKS.md).
const MAX_READ_BUFFER: usize = 256 << 10;

/// Serves the connections arriving on `rx` until `stop` turns true (or the acceptor is gone),
/// then waits for the exchanges in flight on them to finish. With `tls`, each connection's
/// handshake comes first, under the same header-read deadline as a request's head.
async fn serve(
    mut rx: mpsc::UnboundedReceiver<Accepted>,
    app: MakeConnService,
    limits: ConnectionLimits,
    tls: Option<TlsAcceptor>,
    mut stop: watch::Receiver<bool>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().max_buf_size(MAX_READ_BUFFER);
    let graceful = GracefulShutdown::new();
    loop {
        let (tcp, peer, permit) = tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            accepted = rx.recv() => match accepted {
                Some(accepted) => accepted,
                None => break,
            },
        };
        let tcp = match TcpStream::from_std(tcp) {
            Ok(tcp) => tcp,
            Err(e) => {
                tracing::warn!(error = %e, "could not take over an accepted connection");
                continue;
            }
        };
        let clock = Clock::new();
        let io = Watched::new(tcp, clock.clone());
        let conn = Conn {
            builder: builder.clone(),
            app: app.clone(),
            peer,
            clock,
            limits,
            watcher: graceful.watcher(),
        };
        let tls = tls.clone();
        tokio::spawn(async move {
            let _open = permit;
            let open = metrics::gauge!("sluice_connections_open");
            open.increment(1.0);
            match &tls {
                None => conn.run(io).await,
                Some(tls) => {
                    let handshake = tokio::select! {
                        done = tls.accept(io) => done,
                        why = conn.clock.expired(&limits) => {
                            closed(peer, why);
                            open.decrement(1.0);
                            return;
                        }
                    };
                    match handshake {
                        Ok(io) => conn.run(io).await,
                        Err(e) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                    }
                }
            }
            open.decrement(1.0);
        });
    }
    graceful.shutdown().await;
}

/// One caller's connection, ready to be served over plain TCP or TLS.
struct Conn {
    builder: auto::Builder<TokioExecutor>,
    app: MakeConnService,
    peer: SocketAddr,
    clock: Arc<Clock>,
    limits: ConnectionLimits,
    watcher: hyper_util::server::graceful::Watcher,
}

impl Conn {
    /// Serves requests on `io` until the caller closes it, its clock runs out, or shutdown.
    async fn run<I>(self, io: I)
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let Conn {
            builder,
            app,
            peer,
            clock,
            limits,
            watcher,
        } = self;
        let service = Tracked::new(app.connection(peer), clock.clone())
            .map_request(|req: Request<Incoming>| req.map(Body::new));
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(io), TowerToHyperService::new(service))
            .into_owned();
        tokio::select! {
            ended = watcher.watch(conn) => if let Err(e) = ended {
                tracing::trace!(error = %e, "connection ended with an error");
            },
            why = clock.expired(&limits) => closed(peer, why),
        }
    }
}

/// Counts and logs a connection closed by its clock.
fn closed(peer: SocketAddr, why: Expired) {
    metrics::counter!("sluice_connections_closed_total", "reason" => why.as_str()).increment(1);
    tracing::debug!(%peer, reason = why.as_str(), "connection closed");
}

/// The running threads.
pub struct ProxyThreads {
    /// Ends when every thread has stopped serving.
    pub served: tokio::task::JoinHandle<io::Result<()>>,
    /// Dropping it ends the threads. Until then each keeps its runtime going after it has
    /// served: a database connection a request opened there is driven by that runtime, and the
    /// ledger may need it to flush.
    pub release: watch::Sender<()>,
}

/// Serves `app` on `listener` with `threads` threads until `stop` turns true, then finishes
/// the exchanges in flight.
pub fn spawn(
    listener: TcpListener,
    app: MakeConnService,
    threads: u16,
    limits: ConnectionLimits,
    tls: Option<TlsAcceptor>,
    stop: watch::Receiver<bool>,
) -> io::Result<ProxyThreads> {
    let (release, released) = watch::channel(());
    let mut queues = Vec::new();
    let mut ended = Vec::new();
    for i in 0..threads.max(1) {
        let (tx, rx) = mpsc::unbounded_channel();
        let (done, end) = oneshot::channel();
        let (app, stop, mut released) = (app.clone(), stop.clone(), released.clone());
        let tls = tls.clone();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        std::thread::Builder::new()
            .name(format!("sluice-proxy-{i}"))
            .spawn(move || {
                runtime.block_on(async move {
                    serve(rx, app, limits, tls, stop).await;
                    let _ = done.send(());
                    // Nothing is ever sent: this returns once the sender is dropped.
                    let _ = released.changed().await;
                });
            })?;
        queues.push(tx);
        ended.push(end);
    }
    let open = Arc::new(Semaphore::new(limits.max_connections.max(1) as usize));
    let acceptor = tokio::spawn(accept(listener, queues, open, stop));
    let served = tokio::spawn(async move {
        let _ = acceptor.await;
        for end in ended {
            if end.await.is_err() {
                return Err(io::Error::other("a proxy thread ended abnormally"));
            }
        }
        Ok(())
    });
    Ok(ProxyThreads { served, release })
}

/// Longest silence between two warnings that the connection cap is reached.
const CAP_WARNING_EVERY: Duration = Duration::from_secs(60);

/// Takes a place among the open connections, waiting (with a warning at most once a minute)
/// while all are taken; none once `stop` turns true.
async fn place(
    open: &Arc<Semaphore>,
    last_warning: &mut Option<Instant>,
    stop: &mut watch::Receiver<bool>,
) -> Option<OwnedSemaphorePermit> {
    if let Ok(permit) = open.clone().try_acquire_owned() {
        return Some(permit);
    }
    metrics::counter!("sluice_connections_capped_total").increment(1);
    if last_warning.is_none_or(|at| at.elapsed() >= CAP_WARNING_EVERY) {
        *last_warning = Some(Instant::now());
        tracing::warn!(
            "connection limit reached (--max-connections): new connections wait until one closes"
        );
    }
    tokio::select! {
        _ = stop.wait_for(|s| *s) => None,
        permit = open.clone().acquire_owned() => permit.ok(),
    }
}

/// Accepts connections until `stop`, up to the `open` places, handing them to the threads in
/// turn; the listening socket closes when it returns.
async fn accept(
    listener: TcpListener,
    queues: Vec<mpsc::UnboundedSender<Accepted>>,
    open: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
) {
    let mut next = 0;
    let mut last_warning = None;
    loop {
        let Some(permit) = place(&open, &mut last_warning, &mut stop).await else {
            return;
        };
        let accepted = tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((tcp, peer)) => {
                // No Nagle: a streamed response's head and first chunk must not wait for an ACK.
                if let Err(e) = tcp.set_nodelay(true) {
                    tracing::debug!(error = %e, "could not set TCP_NODELAY");
                }
                match tcp.into_std() {
                    Ok(tcp) => {
                        let _ = queues[next].send((tcp, peer, permit));
                        next = (next + 1) % queues.len();
                    }
                    Err(e) => tracing::warn!(error = %e, "could not hand over a connection"),
                }
            }
            // The caller gave up before we took it: nothing to serve.
            Err(e) if is_connection_error(&e) => {}
            // Out of file descriptors and the like: wait for some to be released.
            Err(e) => {
                tracing::error!(error = %e, "accepting a connection failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Errors about one connection, not the listener.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}
