//! The HTTP service of a listener: `/channels/...` goes straight to the proxy handler, anything
//! else to a fallback router (the API and UI, or nothing).
//!
//! The proxy path skips the router: matching the path, decoding its parameters and running the
//! extractors cost about 6 000 instructions per proxied request (`bench/callgrind.sh`), and the
//! handler needs only the path's prefix.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::{ConnectInfo, Request};
use axum::response::Response;
use axum::Router;
use futures_util::future::Either;
use tower::Service;

use crate::{handler, reply, Proxy};

/// The path prefix served by the proxy handler.
const PROXY_PREFIX: &str = "/channels/";

/// Makes one [`ConnService`] per accepted connection.
#[derive(Clone)]
pub struct MakeConnService {
    proxy: Option<Arc<Proxy>>,
    fallback: Router,
}

impl MakeConnService {
    /// Serves the proxy, and `fallback` for every path outside `/channels/`.
    pub fn new(proxy: Arc<Proxy>, fallback: Router) -> Self {
        Self {
            proxy: Some(proxy),
            fallback,
        }
    }

    /// Serves `router` alone (a listener for the API and UI only).
    pub fn router_only(router: Router) -> Self {
        Self {
            proxy: None,
            fallback: router,
        }
    }

    /// The service of one connection from `peer`.
    pub fn connection(&self, peer: SocketAddr) -> ConnService {
        ConnService {
            routes: self.clone(),
            peer,
            peer_ip: peer.ip().to_string().into(),
        }
    }
}

/// The service of one connection from `peer`.
#[derive(Clone)]
pub struct ConnService {
    routes: MakeConnService,
    peer: SocketAddr,
    /// The caller's address as text, formatted once per connection.
    peer_ip: Arc<str>,
}

/// The proxy handler's future.
type ProxyFuture = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

impl Service<Request> for ConnService {
    type Response = Response;
    type Error = Infallible;
    type Future = Either<ProxyFuture, <Router as Service<Request>>::Future>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        match &self.routes.proxy {
            Some(proxy) if req.uri().path().starts_with(PROXY_PREFIX) => {
                let (proxy, peer_ip) = (proxy.clone(), self.peer_ip.clone());
                Either::Left(Box::pin(async move {
                    Ok::<_, Infallible>(handler::proxy(proxy, peer_ip, req).await)
                }))
            }
            _ => {
                req.extensions_mut().insert(ConnectInfo(self.peer));
                Either::Right(self.routes.fallback.call(req))
            }
        }
    }
}

/// `404 {"error":"Not Found"}` for every path: the fallback of a listener that serves only the
/// proxy (the API and UI listen elsewhere).
pub fn not_found_router() -> Router {
    Router::new().fallback(|| async { reply::error(http::StatusCode::NOT_FOUND) })
}
