//! A real upstream for tests: an HTTP/1.1 server (plain or TLS) on loopback that echoes what
//! it receives and can answer with any status, stream big or slow bodies, or never answer.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpListener;

type Body = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

/// A running upstream.
pub struct Upstream {
    /// Its address.
    pub addr: SocketAddr,
    /// `http` or `https`.
    pub scheme: &'static str,
    /// Requests received so far.
    pub hits: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Upstream {
    /// Base URL with a trailing slash.
    pub fn url(&self, path: &str) -> String {
        format!("{}://{}{}", self.scheme, self.addr, path)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Requests received so far.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

/// The deterministic byte pattern of `/big/N`.
pub fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

async fn handle(req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_string();
    let seg: Vec<&str> = path.split('/').collect();
    let find = |name: &str| {
        seg.iter()
            .position(|s| *s == name)
            .map(|i| seg.get(i + 1).copied())
    };
    if let Some(Some(code)) = find("status") {
        let code: u16 = code.parse().unwrap_or(500);
        let mut res = Response::new(full(format!("status {code}")));
        *res.status_mut() = hyper::StatusCode::from_u16(code).unwrap();
        res.headers_mut()
            .insert("x-upstream", "yes".parse().unwrap());
        res.headers_mut()
            .insert("content-type", "text/plain".parse().unwrap());
        res.headers_mut().insert(
            "set-cookie",
            "session=upstream-cookie-secret".parse().unwrap(),
        );
        return Ok(res);
    }
    if let Some(Some(ms)) = find("delay") {
        tokio::time::sleep(Duration::from_millis(ms.parse().unwrap_or(0))).await;
    }
    if seg.contains(&"hang") {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    if let Some(Some(n)) = find("big") {
        let n: usize = n.parse().unwrap_or(0);
        let chunks = stream::iter((0..n).step_by(65536).map(move |start| {
            let end = (start + 65536).min(n);
            Ok::<_, std::io::Error>(Frame::data(Bytes::from(
                (start..end).map(|i| (i % 251) as u8).collect::<Vec<u8>>(),
            )))
        }));
        let mut res = Response::new(StreamBody::new(chunks).boxed());
        res.headers_mut()
            .insert("content-length", n.to_string().parse().unwrap());
        return Ok(res);
    }
    if seg.contains(&"slowbody") {
        let chunks = stream::unfold(0u32, |i| async move {
            if i >= 400 {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            Some((
                Ok::<_, std::io::Error>(Frame::data(Bytes::from(vec![b'z'; 1024]))),
                i + 1,
            ))
        });
        return Ok(Response::new(StreamBody::new(chunks).boxed()));
    }
    if seg.contains(&"stall") {
        // Head and one chunk, then silence: for idle timeouts.
        let chunks = stream::unfold(0u32, |i| async move {
            if i > 0 {
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
            Some((
                Ok::<_, std::io::Error>(Frame::data(Bytes::from_static(b"first"))),
                i + 1,
            ))
        });
        return Ok(Response::new(StreamBody::new(chunks).boxed()));
    }
    let (parts, body) = req.into_parts();
    let bytes = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    if seg.contains(&"echo-body") {
        return Ok(Response::new(full(bytes)));
    }
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(n, v)| {
            (
                n.to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let doc = json!({
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "query": parts.uri.query(),
        "headers": headers,
        "body_len": bytes.len(),
        "body_sha256": super::sha256(&bytes),
    });
    let mut res = Response::new(full(doc.to_string()));
    let h = res.headers_mut();
    h.insert("content-type", "application/json".parse().unwrap());
    h.append(
        "set-cookie",
        "session=upstream-cookie-secret".parse().unwrap(),
    );
    if seg.contains(&"hop") {
        h.insert("connection", "x-hop-only".parse().unwrap());
        h.insert("x-hop-only", "1".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("proxy-authenticate", "Basic".parse().unwrap());
        h.insert("x-end-to-end", "kept".parse().unwrap());
    }
    Ok(res)
}

/// Starts a plain HTTP upstream on an ephemeral loopback port.
pub async fn start() -> Upstream {
    start_inner(None, TcpListener::bind("127.0.0.1:0").await.unwrap()).await
}

/// Starts a plain HTTP upstream on `addr` (e.g. again on the port of a stopped one), retrying
/// the bind for a few seconds.
pub async fn start_at(addr: SocketAddr) -> Upstream {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        match TcpListener::bind(addr).await {
            Ok(l) => return start_inner(None, l).await,
            Err(_) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("binding {addr} again: {e}"),
        }
    }
}

/// Starts an HTTPS upstream presenting `cert_chain` with `key`.
pub async fn start_tls(config: rustls::ServerConfig) -> Upstream {
    start_inner(
        Some(tokio_rustls::TlsAcceptor::from(Arc::new(config))),
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
    )
    .await
}

async fn start_inner(tls: Option<tokio_rustls::TlsAcceptor>, listener: TcpListener) -> Upstream {
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicU64::new(0));
    let counter = hits.clone();
    let scheme = if tls.is_some() { "https" } else { "http" };
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let counter = counter.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    counter.fetch_add(1, Ordering::SeqCst);
                    handle(req)
                });
                let builder = hyper::server::conn::http1::Builder::new();
                match tls {
                    Some(acceptor) => {
                        if let Ok(stream) = acceptor.accept(tcp).await {
                            let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
                        }
                    }
                    None => {
                        let _ = builder.serve_connection(TokioIo::new(tcp), svc).await;
                    }
                }
            });
        }
    });
    Upstream {
        addr,
        scheme,
        hits,
        task,
    }
}

/// A test certificate authority and a server certificate for 127.0.0.1 signed by it.
pub struct TestPki {
    /// PEM of the CA certificate (what sluice must trust).
    pub ca_pem: String,
    /// Server TLS configuration using the CA-signed certificate.
    pub server: rustls::ServerConfig,
}

/// Makes a CA and a 127.0.0.1 server certificate.
pub fn test_pki() -> TestPki {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
    TestPki {
        ca_pem: ca.pem(),
        server,
    }
}
