//! The pooled upstream client: rustls with web roots (plus the system's and an optional extra
//! CA file), and a connector wrapper that times each new connection and counts its reuse.

use std::future::Future;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::Uri;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use parking_lot::RwLock;
use std::collections::HashMap;
use tower::Service;

use crate::tap::OutboundBody;

/// Facts about the connection an exchange used, found in the response's extensions.
#[derive(Debug, Clone)]
pub struct ConnMeta {
    /// Time spent opening it (TCP and TLS).
    pub connect_us: i64,
    /// Responses it has carried so far.
    served: Arc<AtomicU64>,
}

impl ConnMeta {
    /// Counts one more response on this connection; returns whether it had carried one before.
    pub fn mark_used(&self) -> bool {
        self.served.fetch_add(1, Ordering::Relaxed) > 0
    }
}

/// Wraps a connector: applies the connect timeout and attaches [`ConnMeta`] to the connection.
#[derive(Clone)]
pub struct TimedConnector<C> {
    inner: C,
    timeout: Duration,
}

/// A connection made by [`TimedConnector`].
pub struct TimedConn<T> {
    inner: T,
    meta: ConnMeta,
}

impl<C> Service<Uri> for TimedConnector<C>
where
    C: Service<Uri> + Clone + Send + 'static,
    C::Response: Connection + Send,
    C::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    C::Future: Send + 'static,
{
    type Response = TimedConn<C::Response>;
    type Error = Box<dyn std::error::Error + Send + Sync>;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let fut = self.inner.call(uri);
        let timeout = self.timeout;
        Box::pin(async move {
            let started = Instant::now();
            match tokio::time::timeout(timeout, fut).await {
                Ok(Ok(io)) => Ok(TimedConn {
                    inner: io,
                    meta: ConnMeta {
                        connect_us: started.elapsed().as_micros() as i64,
                        served: Arc::new(AtomicU64::new(0)),
                    },
                }),
                Ok(Err(e)) => Err(e.into()),
                Err(_) => {
                    Err(Box::new(io::Error::new(io::ErrorKind::TimedOut, "connect timeout")) as _)
                }
            }
        })
    }
}

impl<T: Connection> Connection for TimedConn<T> {
    fn connected(&self) -> Connected {
        self.inner.connected().extra(self.meta.clone())
    }
}

impl<T: Read + Unpin> Read for TimedConn<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<T: Write + Unpin> Write for TimedConn<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }
}

/// The client type used towards sinks.
pub type UpstreamClient = Client<TimedConnector<HttpsConnector<HttpConnector>>, OutboundBody>;

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

/// Pooled clients, one per distinct connect timeout (channels rarely differ).
pub struct Clients {
    tls: Arc<rustls::ClientConfig>,
    by_timeout: RwLock<HashMap<u64, UpstreamClient>>,
}

impl Clients {
    /// Clients trusting `tls`.
    pub fn new(tls: rustls::ClientConfig) -> Self {
        Self {
            tls: Arc::new(tls),
            by_timeout: RwLock::new(HashMap::new()),
        }
    }

    /// The client whose connections time out after `connect_ms`.
    pub fn get(&self, connect_ms: u64) -> UpstreamClient {
        if let Some(c) = self.by_timeout.read().get(&connect_ms) {
            return c.clone();
        }
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        let https = HttpsConnectorBuilder::new()
            .with_tls_config((*self.tls).clone())
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(TimedConnector {
                inner: https,
                timeout: Duration::from_millis(connect_ms),
            });
        self.by_timeout
            .write()
            .entry(connect_ms)
            .or_insert(client)
            .clone()
    }
}
