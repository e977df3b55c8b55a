//! Mock sink (`sluice bench sink`): a fast HTTP/1.1 server that answers according to a mode and
//! per-request query overrides, so the load generator can shape the upstream it measures against.
//!
//! Bodies are slices of one pre-allocated buffer: small answers are a single zero-copy slice,
//! large ones (up to any size) stream as repeated slices of the same 64 KiB chunk, so the sink
//! allocates nothing per response body and its memory stays flat whatever `response_size` asks.

use std::{
    convert::Infallible,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use anyhow::Context as _;
use bytes::Bytes;
use clap::{Args, ValueEnum};
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use rand::Rng;
use tokio::{net::TcpListener, task::JoinHandle};

/// Size of the shared buffer every response body is sliced from.
const CHUNK_SIZE: usize = 64 * 1024;
/// Delay of the slow answers in `mixed` mode.
const MIXED_SLOW_DELAY: Duration = Duration::from_secs(2);
/// The only `Authorization` value `auth` mode accepts.
const AUTH_EXPECTED: &[u8] = b"Bearer test-api-key";

/// How the sink answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SinkMode {
    /// Always `--status` (or `?status=`) with a body of `--body-size` (or `?response_size=`) bytes.
    Fixed,
    /// Accepts and reads the request, then never answers.
    Timeout,
    /// 401 without `Authorization`, 403 unless it is exactly `Bearer test-api-key`, else the status.
    Auth,
    /// 80% fast 200, 10% 200 after 2 s, 10% 503.
    Mixed,
}

/// Options of `sluice bench sink`.
#[derive(Debug, Clone, Args)]
pub struct SinkArgs {
    /// Address to listen on.
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    pub host: IpAddr,
    /// Port to listen on (0 picks a free one).
    #[arg(long, default_value_t = 4001)]
    pub port: u16,
    /// Response mode.
    #[arg(long, value_enum, default_value_t = SinkMode::Fixed)]
    pub mode: SinkMode,
    /// Status of successful answers (`fixed`, and `auth` once authorised); `?status=N` overrides.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u16).range(100..=599))]
    pub status: u16,
    /// Response body size in bytes; `?response_size=N` overrides.
    #[arg(long, default_value_t = 256)]
    pub body_size: u64,
}

/// Binds the sink and serves it on a background task; returns the bound address and the task.
pub async fn spawn(args: SinkArgs) -> anyhow::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind((args.host, args.port))
        .await
        .with_context(|| format!("binding the mock sink to {}:{}", args.host, args.port))?;
    let addr = listener.local_addr()?;
    let sink = Arc::new(Sink::new(&args));
    Ok((addr, tokio::spawn(accept_loop(listener, sink))))
}

/// Runs the sink in the foreground until Ctrl-C.
pub async fn run_sink(args: SinkArgs) -> anyhow::Result<()> {
    let mode = args.mode;
    let (addr, server) = spawn(args).await?;
    tracing::info!(%addr, ?mode, "mock sink listening");
    println!("mock sink listening on http://{addr} (mode {mode:?})");
    tokio::select! {
        joined = server => joined.context("mock sink accept loop failed")?,
        signal = tokio::signal::ctrl_c() => signal.context("waiting for Ctrl-C")?,
    }
    Ok(())
}

/// Configuration shared by every connection.
struct Sink {
    mode: SinkMode,
    status: StatusCode,
    body_size: u64,
    chunk: Bytes,
}

impl Sink {
    fn new(args: &SinkArgs) -> Self {
        Self {
            mode: args.mode,
            status: StatusCode::from_u16(args.status).unwrap_or(StatusCode::OK),
            body_size: args.body_size,
            chunk: Bytes::from(vec![b'x'; CHUNK_SIZE]),
        }
    }

    fn body(&self, len: u64) -> SinkBody {
        SinkBody {
            chunk: self.chunk.clone(),
            remaining: len,
        }
    }
}

async fn accept_loop(listener: TcpListener, sink: Arc<Sink>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Typically EMFILE under extreme load: back off instead of spinning.
                tracing::warn!(%error, "mock sink accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let sink = Arc::clone(&sink);
        tokio::spawn(async move {
            let service = service_fn(move |request| handle(Arc::clone(&sink), request));
            let served = http1::Builder::new()
                .timer(TokioTimer::new())
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(error) = served {
                tracing::debug!(%error, "mock sink connection ended with an error");
            }
        });
    }
}

/// Per-request overrides read from the query string.
#[derive(Debug, Default)]
struct Overrides {
    response_size: Option<u64>,
    delay: Option<Duration>,
    status: Option<StatusCode>,
}

impl Overrides {
    fn parse(query: Option<&str>) -> Result<Self, String> {
        let mut overrides = Self::default();
        for pair in query.unwrap_or_default().split('&') {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let number = || {
                value
                    .parse::<u64>()
                    .map_err(|_| format!("query parameter {key}={value:?} is not a number\n"))
            };
            match key {
                "response_size" => overrides.response_size = Some(number()?),
                "delay" => overrides.delay = Some(Duration::from_millis(number()?)),
                "status" => {
                    let status = u16::try_from(number()?)
                        .ok()
                        .filter(|code| (100..=599).contains(code))
                        .and_then(|code| StatusCode::from_u16(code).ok())
                        .ok_or_else(|| format!("status={value} is not a valid HTTP status\n"))?;
                    overrides.status = Some(status);
                }
                _ => {}
            }
        }
        Ok(overrides)
    }
}

async fn handle(
    sink: Arc<Sink>,
    request: Request<Incoming>,
) -> Result<Response<SinkBody>, Infallible> {
    tracing::debug!(
        method = %request.method(),
        path = %request.uri().path(),
        request_id = request
            .headers()
            .get("x-request-id")
            .and_then(|value| value.to_str().ok())
            .unwrap_or("-"),
        "mock sink request"
    );
    let overrides = Overrides::parse(request.uri().query());
    let authorised = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|value| value.as_bytes() == AUTH_EXPECTED);

    let mut body = request.into_body();
    while let Some(frame) = body.frame().await {
        if frame.is_err() {
            break;
        }
    }

    let overrides = match overrides {
        Ok(overrides) => overrides,
        Err(message) => return Ok(respond(StatusCode::BAD_REQUEST, SinkBody::message(message))),
    };
    let success = overrides.status.unwrap_or(sink.status);
    let (status, extra_delay) = match sink.mode {
        SinkMode::Fixed => (success, Duration::ZERO),
        SinkMode::Timeout => std::future::pending().await,
        SinkMode::Auth => match authorised {
            None => (StatusCode::UNAUTHORIZED, Duration::ZERO),
            Some(false) => (StatusCode::FORBIDDEN, Duration::ZERO),
            Some(true) => (success, Duration::ZERO),
        },
        SinkMode::Mixed => match rand::rng().random_range(0..100u8) {
            0..80 => (StatusCode::OK, Duration::ZERO),
            80..90 => (StatusCode::OK, MIXED_SLOW_DELAY),
            _ => (StatusCode::SERVICE_UNAVAILABLE, Duration::ZERO),
        },
    };
    let delay = overrides.delay.unwrap_or_default() + extra_delay;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let len = overrides.response_size.unwrap_or(sink.body_size);
    Ok(respond(status, sink.body(len)))
}

fn respond(status: StatusCode, body: SinkBody) -> Response<SinkBody> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    response
}

/// A body of `remaining` bytes served as slices of a shared chunk (exact length known up front).
struct SinkBody {
    chunk: Bytes,
    remaining: u64,
}

impl SinkBody {
    fn message(text: String) -> Self {
        let chunk = Bytes::from(text);
        Self {
            remaining: chunk.len() as u64,
            chunk,
        }
    }
}

impl Body for SinkBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let len =
            usize::try_from(self.remaining).map_or(self.chunk.len(), |r| r.min(self.chunk.len()));
        self.remaining -= len as u64;
        Poll::Ready(Some(Ok(Frame::data(self.chunk.slice(..len)))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_parse_numbers_and_reject_garbage() {
        let parsed = Overrides::parse(Some("response_size=10&delay=5&status=503&x=y")).unwrap();
        assert_eq!(parsed.response_size, Some(10));
        assert_eq!(parsed.delay, Some(Duration::from_millis(5)));
        assert_eq!(parsed.status, Some(StatusCode::SERVICE_UNAVAILABLE));
        assert!(Overrides::parse(Some("delay=soon")).is_err());
        assert!(Overrides::parse(Some("status=42")).is_err());
        assert!(Overrides::parse(None).unwrap().status.is_none());
    }
}
