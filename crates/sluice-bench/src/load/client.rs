//! The hot-loop HTTP client: one keep-alive HTTP/1.1 connection per virtual user, on raw hyper.

use std::{net::SocketAddr, time::Duration};

use anyhow::{bail, Context as _};
use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, StatusCode, Uri};
use http_body::Body as _;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::report::ErrorKind;

/// Where requests go: a resolved address plus the request target and `Host` header.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Resolved socket address of the server.
    pub addr: SocketAddr,
    /// Full URL of the requests, for the report.
    pub url: String,
    host: HeaderValue,
    target: Uri,
}

impl Endpoint {
    /// Resolves `base` (an `http://` URL, optionally with a path prefix) and appends `path?query`.
    pub async fn resolve(base: &str, path: &str, query: &str) -> anyhow::Result<Self> {
        let uri: Uri = base
            .parse()
            .with_context(|| format!("{base:?} is not a URL"))?;
        if uri.scheme_str() != Some("http") {
            bail!("{base}: the load generator speaks plain http:// only");
        }
        let authority = uri
            .authority()
            .with_context(|| format!("{base}: no host"))?
            .clone();
        let port = authority.port_u16().unwrap_or(80);
        let addr = tokio::net::lookup_host((authority.host(), port))
            .await
            .with_context(|| format!("resolving {}", authority.host()))?
            .next()
            .with_context(|| format!("{} resolves to no address", authority.host()))?;
        let mut target = format!("{}{path}", uri.path().trim_end_matches('/'));
        if !query.is_empty() {
            target = format!("{target}?{query}");
        }
        Ok(Self {
            addr,
            url: format!("http://{authority}{target}"),
            host: HeaderValue::from_str(authority.as_str())?,
            target: target
                .parse()
                .with_context(|| format!("bad path {target:?}"))?,
        })
    }

    /// Builds one request carrying `body` (pass an empty one for methods without payload).
    pub fn request(&self, method: Method, body: Bytes) -> Request<Full<Bytes>> {
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = method;
        *request.uri_mut() = self.target.clone();
        let headers = request.headers_mut();
        headers.insert(header::HOST, self.host.clone());
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        request
    }
}

/// What came back for one request.
#[derive(Debug, Clone, Copy)]
pub struct Answer {
    /// Response status.
    pub status: StatusCode,
    /// Request body bytes sent.
    pub sent: u64,
    /// Response body bytes received.
    pub received: u64,
}

/// One keep-alive connection.
pub struct Connection {
    sender: SendRequest<Full<Bytes>>,
}

impl Connection {
    /// Opens a TCP connection (no Nagle) and performs the HTTP/1.1 handshake.
    pub async fn open(addr: SocketAddr) -> Result<Self, ErrorKind> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|_| ErrorKind::Connect)?;
        stream.set_nodelay(true).map_err(|_| ErrorKind::Connect)?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|_| ErrorKind::Connect)?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "load connection ended with an error");
            }
        });
        Ok(Self { sender })
    }

    /// Whether the server (or an error) closed the connection.
    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }

    /// Sends a request and reads (and discards) the whole response body.
    pub async fn exchange(&mut self, request: Request<Full<Bytes>>) -> Result<Answer, ErrorKind> {
        let sent = request.body().size_hint().exact().unwrap_or_default();
        self.sender.ready().await.map_err(classify)?;
        let response = self.sender.send_request(request).await.map_err(classify)?;
        let status = response.status();
        let mut body = response.into_body();
        let mut received = 0;
        while let Some(frame) = body.frame().await {
            if let Some(data) = frame.map_err(classify)?.data_ref() {
                received += data.len() as u64;
            }
        }
        Ok(Answer {
            status,
            sent,
            received,
        })
    }
}

fn classify(error: hyper::Error) -> ErrorKind {
    if error.is_timeout() {
        ErrorKind::Timeout
    } else {
        tracing::debug!(%error, "load request failed");
        ErrorKind::Other
    }
}

/// Checks once that `addr` accepts connections, so a wrong URL fails fast with a clear message.
pub async fn preflight(endpoint: &Endpoint, timeout: Duration) -> anyhow::Result<()> {
    match tokio::time::timeout(timeout, TcpStream::connect(endpoint.addr)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(error)) => bail!(
            "cannot connect to {} ({}): {error}",
            endpoint.url,
            endpoint.addr
        ),
        Err(_) => bail!("connecting to {} timed out", endpoint.url),
    }
}
