//! A real OAuth token endpoint for tests: answers every POST with a fixed status and JSON body
//! after an optional delay, counts the calls, and keeps the last form it received.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpListener;

/// A running token endpoint.
pub struct TokenServer {
    /// Its address.
    pub addr: SocketAddr,
    calls: Arc<AtomicU64>,
    last_form: Arc<Mutex<String>>,
    task: tokio::task::JoinHandle<()>,
}

impl TokenServer {
    /// The token URL.
    pub fn url(&self) -> String {
        format!("http://{}/oauth/token", self.addr)
    }

    /// Calls received so far.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    /// The last form body received.
    pub fn last_form(&self) -> String {
        self.last_form.lock().unwrap().clone()
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts an endpoint answering `status` with `body` after `delay`.
pub async fn start(status: u16, body: Value, delay: Duration) -> TokenServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let calls = Arc::new(AtomicU64::new(0));
    let last_form = Arc::new(Mutex::new(String::new()));
    let (c, f) = (calls.clone(), last_form.clone());
    let body = Bytes::from(body.to_string());
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let (c, f, body) = (c.clone(), f.clone(), body.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let (c, f, body) = (c.clone(), f.clone(), body.clone());
                    async move {
                        c.fetch_add(1, Ordering::SeqCst);
                        let form = req.into_body().collect().await.unwrap().to_bytes();
                        *f.lock().unwrap() = String::from_utf8_lossy(&form).into_owned();
                        tokio::time::sleep(delay).await;
                        let mut res = Response::new(Full::new(body));
                        *res.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                        res.headers_mut()
                            .insert("content-type", "application/json".parse().unwrap());
                        Ok::<_, Infallible>(res)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    TokenServer {
        addr,
        calls,
        last_form,
        task,
    }
}
