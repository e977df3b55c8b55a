//! The main listener's threads: one single-threaded tokio runtime per core, each serving the
//! connections an acceptor hands it in turn.
//!
//! On tokio's work-stealing runtime a request's wake-ups (its caller's socket, its sink's
//! socket) hop between workers, which park and wake each other: on a 2-core machine the cores
//! sat idle ~19% of a load that kept nginx's at 5%. Here a connection, its requests and the sink
//! connections they use stay on one thread, as nginx's workers keep theirs.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use axum::serve::Listener;
use sluice_proxy::service::MakeConnService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};

/// An accepted connection on its way to a thread: the socket and the caller's address.
type Accepted = (std::net::TcpStream, SocketAddr);

/// The listener of one thread: the connections the acceptor hands it.
struct Handoff {
    rx: mpsc::UnboundedReceiver<Accepted>,
    local: SocketAddr,
}

impl Listener for Handoff {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        loop {
            // With the acceptor gone no connection will come: shutdown ends the server.
            let Some((tcp, peer)) = self.rx.recv().await else {
                return std::future::pending().await;
            };
            match TcpStream::from_std(tcp) {
                Ok(tcp) => return (tcp, peer),
                Err(e) => tracing::warn!(error = %e, "could not take over an accepted connection"),
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }
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
    stop: watch::Receiver<bool>,
) -> io::Result<ProxyThreads> {
    let local = listener.local_addr()?;
    let (release, released) = watch::channel(());
    let mut queues = Vec::new();
    let mut ended = Vec::new();
    for i in 0..threads.max(1) {
        let (tx, rx) = mpsc::unbounded_channel();
        let (done, end) = oneshot::channel();
        let (app, mut stop, mut released) = (app.clone(), stop.clone(), released.clone());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        std::thread::Builder::new()
            .name(format!("sluice-proxy-{i}"))
            .spawn(move || {
                runtime.block_on(async move {
                    let served = axum::serve(Handoff { rx, local }, app)
                        .with_graceful_shutdown(async move {
                            let _ = stop.wait_for(|s| *s).await;
                        })
                        .await;
                    let _ = done.send(served);
                    // Nothing is ever sent: this returns once the sender is dropped.
                    let _ = released.changed().await;
                });
            })?;
        queues.push(tx);
        ended.push(end);
    }
    let acceptor = tokio::spawn(accept(listener, queues, stop));
    let served = tokio::spawn(async move {
        let _ = acceptor.await;
        for end in ended {
            match end.await {
                Ok(served) => served?,
                Err(_) => return Err(io::Error::other("a proxy thread ended abnormally")),
            }
        }
        Ok(())
    });
    Ok(ProxyThreads { served, release })
}

/// Accepts connections until `stop`, handing them to the threads in turn; the listening socket
/// closes when it returns.
async fn accept(
    listener: TcpListener,
    queues: Vec<mpsc::UnboundedSender<Accepted>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut next = 0;
    loop {
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
                        let _ = queues[next].send((tcp, peer));
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
