//! The proxy path of PRODUCT.md §2: route, record, forward, stream back, finish.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::Request;
use http::header::{HeaderName, HOST};
use http::{HeaderValue, Response, StatusCode, Uri};
use parking_lot::Mutex;
use sluice_core::clock::now_us;
use sluice_core::headers::{
    append_forwarded_for, first_forwarded_for, is_valid_request_id, strip_hop_by_hop,
};
use sluice_core::reflected::Reflected;
use sluice_core::url_join::{climbs_above_base, join_path_and_query};
use sluice_core::{ExchangeError, RequestRecord, RequestState};
use sluice_store::{Severity, Source};
use uuid::Uuid;

use crate::exchange::{Exchange, Outcome};
use crate::reply;
use crate::source_auth::{self, Verdict};
use crate::tap::{Tap, TapState};
use crate::Proxy;

/// Shortest time between two lookup-failure entries of one channel in the event log.
const LOOKUP_FAILURE_EVENT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);
/// At most one event-log entry per channel this often for an unusable sink credential.
const CREDENTIAL_FAILURE_EVENT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// Splits `/channels/{id}[/rest]` into the id text and the rest (with its leading slash).
fn split_channel_path(path: &str) -> Option<(&str, &str)> {
    let tail = path.strip_prefix("/channels/")?;
    Some(match tail.find('/') {
        Some(i) => (&tail[..i], &tail[i..]),
        None => (tail, ""),
    })
}

/// Most of a refused request's body read (and dropped) before the refusal is sent: past what
/// the sockets' buffers hold (a few MiB on loopback), an unread body resets the connection.
const DRAIN_BYTES: usize = 32 << 20;
/// Longest wait for it.
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(1);

/// Reads what the caller is still sending of a body that will not be forwarded (a bounded
/// amount, for a bounded time) before the refusal is answered: closing a connection with
/// unread bytes resets it, and the caller would lose the answer to a reset.
async fn drain(body: Body) {
    let mut body = body.into_data_stream();
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        let mut read = 0;
        while let Some(Ok(chunk)) = futures_util::StreamExt::next(&mut body).await {
            read += chunk.len();
            if read > DRAIN_BYTES {
                break;
            }
        }
    })
    .await;
}

/// `res`, once the body the caller is still sending has been drained (see [`drain`]).
async fn refuse(body: Body, res: Response<Body>) -> Response<Body> {
    drain(body).await;
    res
}

fn with_request_id(mut res: Response<Body>, id: &HeaderValue) -> Response<Body> {
    res.headers_mut().insert(X_REQUEST_ID.clone(), id.clone());
    res
}

/// Handles any method on `/channels/{id}` and `/channels/{id}/{*rest}` from the caller at the
/// address `peer_ip`.
pub async fn proxy(proxy: Arc<Proxy>, peer_ip: Arc<str>, req: Request) -> Response<Body> {
    let started = Instant::now();
    let started_at = now_us();
    let (mut parts, body) = req.into_parts();

    let Some((id_text, rest)) = split_channel_path(parts.uri.path()) else {
        return refuse(body, reply::error(StatusCode::NOT_FOUND)).await;
    };
    let Ok(channel_id) = Uuid::parse_str(id_text) else {
        return refuse(body, reply::error(StatusCode::NOT_FOUND)).await;
    };
    if let Some(seconds) = proxy.auth_failures.retry_after(&peer_ip, channel_id) {
        return reply::too_many_failures(seconds);
    }
    // The slow paths (a route to load, credentials to check or fetch) are boxed: inline they
    // would make every request's future several KiB larger, copied when it is boxed.
    let looked = match proxy.routes.cached(channel_id) {
        Some(r) => Ok(Some(r)),
        None => Box::pin(proxy.routes.get(channel_id)).await,
    };
    let route = match looked {
        Ok(Some(r)) if r.channel.enabled => r,
        Ok(_) => {
            proxy.auth_failures.failed(&peer_ip, channel_id, None);
            return refuse(body, reply::error(StatusCode::NOT_FOUND)).await;
        }
        Err(e) => {
            tracing::error!(error = %e, "channel lookup failed");
            if let Some(ev) = &proxy.cfg.events {
                ev.emit_throttled(
                    "channel_lookup_failure",
                    LOOKUP_FAILURE_EVENT_INTERVAL,
                    Severity::Error,
                    Source::Proxy,
                    Some(channel_id),
                    "channel lookup failed; callers get 503",
                    serde_json::json!({ "error": e.to_string() }),
                );
            }
            return reply::error(StatusCode::SERVICE_UNAVAILABLE);
        }
    };
    proxy.metrics.lookup.record(started.elapsed().as_secs_f64());

    let verdict = if route.auth_methods.is_empty() {
        Verdict::Public
    } else {
        Box::pin(proxy.gate.check(&route.auth_methods, &parts.headers)).await
    };
    let admitted = match verdict {
        Verdict::Public => None,
        Verdict::Admitted(id, kind) => Some((id, kind)),
        Verdict::Unauthorized => return refuse(body, reply::unauthorized()).await,
        Verdict::Hidden => {
            let presented = source_auth::presented_kinds(&parts.headers);
            proxy
                .auth_failures
                .failed(&peer_ip, channel_id, Some(&presented));
            return refuse(body, reply::error(StatusCode::NOT_FOUND)).await;
        }
    };
    // After the verdict: a caller who may not see the channel learns nothing from it.
    if proxy.cfg.hop.passed_here(&parts.headers) {
        return reply::refused(
            StatusCode::LOOP_DETECTED,
            "this request already passed through this sluice: the channel's sink URL leads \
             back to it",
        );
    }

    // Time-ordered, as is the request id made from it, so both indexes grow at their right edge.
    let id = Uuid::now_v7();
    let request_id = match parts
        .headers
        .get(&X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
    {
        Some(v) if is_valid_request_id(v) => v.to_string(),
        // The record's own id: one UUID per request to make rather than two.
        _ => {
            let mut text = String::with_capacity(39);
            text.push_str(id.simple().encode_lower(&mut Uuid::encode_buffer()));
            text.push_str("-sluice");
            text
        }
    };
    let request_id_header = HeaderValue::from_str(&request_id).expect("request id is header-safe");
    if let Some(max) = route.max_request_bytes {
        let declared = parts
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|n| n > max) {
            let res = reply::refused(
                StatusCode::PAYLOAD_TOO_LARGE,
                "the request body is larger than this channel forwards",
            );
            return refuse(body, with_request_id(res, &request_id_header)).await;
        }
    }
    if climbs_above_base(rest) {
        let res = reply::refused(
            StatusCode::BAD_REQUEST,
            "the path climbs above the sink URL's path (a '..' segment)",
        );
        return refuse(body, with_request_id(res, &request_id_header)).await;
    }
    let path_and_query = join_path_and_query(
        &route.base_path,
        route.base_query.as_deref(),
        rest,
        parts.uri.query(),
    );
    let (fwd_path, fwd_query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p.to_string(), Some(q.to_string())),
        None => (path_and_query.clone(), None),
    };
    let record = Arc::new(RequestRecord {
        id,
        request_id,
        channel_id,
        snapshot_id: route.snapshot_id,
        state: RequestState::Pending,
        started_at,
        completed_at: None,
        // A metadata-only project keeps none of what the caller sent or who it was.
        client_identity: match route.metadata_only {
            true => String::new(),
            false => first_forwarded_for(parts.headers.get(&X_FORWARDED_FOR))
                .unwrap_or_else(|| peer_ip.to_string()),
        },
        source_auth_method_id: admitted.map(|(id, _)| id),
        source_auth_type: admitted.map(|(_, kind)| kind.as_str().to_string()),
        method: parts.method.as_str().to_string(),
        path: if route.metadata_only {
            String::new()
        } else {
            fwd_path
        },
        query: fwd_query.filter(|_| !route.metadata_only),
        response_status: None,
        error: None,
        latency_us: None,
        ttfb_us: None,
        request_body_size: None,
        response_body_size: None,
    });

    // The exchange exists before the pending write is awaited: if the caller goes away during
    // that wait, dropping it records the request as `client_disconnected`.
    let request_tap = Arc::new(Mutex::new(
        TapState::new(route.kept_preview()).with_limit(route.max_request_bytes),
    ));
    let mut exchange = Exchange::new(
        proxy.ledger.clone(),
        proxy.metrics.clone(),
        route.clone(),
        record.clone(),
        started,
        request_tap.clone(),
    );
    let ledger_wait = Instant::now();
    if let Err(e) = proxy.ledger.record_pending(record).await {
        exchange.abandon();
        // The ledger logs why, and tells the event log (at most once per interval); another
        // error line here per refused request would only double the log under load.
        tracing::debug!(error = %e, channel = %channel_id, "pending record not durable; refusing request");
        let res = reply::error(StatusCode::SERVICE_UNAVAILABLE);
        return refuse(body, with_request_id(res, &request_id_header)).await;
    }
    proxy
        .metrics
        .ledger
        .record(ledger_wait.elapsed().as_secs_f64());

    let sink_authorization = match route.channel.sink_credential_id {
        Some(id) => match Box::pin(proxy.sink_credentials.authorization(id)).await {
            Ok(v) => Some(v),
            Err(err) => {
                tracing::debug!(channel = %channel_id, code = %err, "sink credential unusable");
                if let Some(ev) = &proxy.cfg.events {
                    ev.emit_throttled(
                        "sink_credential_failure",
                        CREDENTIAL_FAILURE_EVENT_INTERVAL,
                        Severity::Error,
                        Source::Auth,
                        Some(channel_id),
                        "the sink credential is unusable; callers get 502 (403 for a token \
                         endpoint the egress policy refuses)",
                        serde_json::json!({ "credential_id": id, "error": err.to_string() }),
                    );
                }
                let status =
                    StatusCode::from_u16(err.http_status()).unwrap_or(StatusCode::BAD_GATEWAY);
                exchange.finish(Outcome::Failed(err));
                return with_request_id(reply::error(status), &request_id_header);
            }
        },
        None => None,
    };

    // Outbound head.
    let headers = &mut parts.headers;
    strip_hop_by_hop(headers);
    let mut secrets = Reflected::default();
    source_auth::scrub(headers, &route.auth_methods, &mut secrets);
    if let Some(v) = sink_authorization {
        secrets.add_header(&v);
        headers.insert(http::header::AUTHORIZATION, v);
    }
    let original_host = headers.remove(HOST);
    headers.insert(HOST, route.host.clone());
    headers.insert(X_REQUEST_ID.clone(), request_id_header.clone());
    let xff = append_forwarded_for(headers.get(&X_FORWARDED_FOR), &peer_ip);
    headers.insert(
        X_FORWARDED_FOR.clone(),
        HeaderValue::from_str(&xff).unwrap_or_else(|_| HeaderValue::from_static("unknown")),
    );
    if let Some(h) = original_host {
        headers.insert(X_FORWARDED_HOST.clone(), h);
    }
    headers.insert(
        X_FORWARDED_PROTO.clone(),
        HeaderValue::from_static(proxy.cfg.forwarded_proto),
    );
    proxy.cfg.hop.stamp(headers);
    // Origin form: the sink's scheme and authority pick the connection.
    parts.uri = match Uri::builder().path_and_query(path_and_query).build() {
        Ok(u) => u,
        Err(_) => {
            return with_request_id(reply::error(StatusCode::BAD_REQUEST), &request_id_header)
        }
    };
    parts.version = http::Version::HTTP_11;

    exchange.dispatched(proxy.cfg.redactor.record(&parts.headers), secrets);
    let outbound =
        http::Request::from_parts(parts, Tap::new(body, request_tap, route.idle_timeout, None));

    let sent = tokio::time::timeout(
        route.head_timeout,
        proxy.upstream.send(
            &route.scheme,
            &route.authority,
            route.connect_timeout,
            outbound,
        ),
    )
    .await;
    let sent = match sent {
        Ok(Ok(sent)) => sent,
        Ok(Err(e)) => {
            let err = exchange
                .request_body_fault()
                .unwrap_or_else(|| e.classify());
            tracing::debug!(error = %e, code = %err, "upstream request failed");
            let status = StatusCode::from_u16(err.http_status()).expect("an error status");
            exchange.finish(Outcome::Failed(err));
            return with_request_id(reply::error(status), &request_id_header);
        }
        Err(_) => {
            // A caller still uploading when the sink's time is up made the sink wait.
            let fault = exchange.request_body_fault().or_else(|| {
                exchange
                    .request_body_unfinished()
                    .then_some(ExchangeError::ClientTimeout)
            });
            if let Some(fault) = fault {
                let status = StatusCode::from_u16(fault.http_status()).expect("an error status");
                exchange.finish(Outcome::Failed(fault));
                return with_request_id(reply::error(status), &request_id_header);
            }
            exchange.finish(Outcome::Failed(ExchangeError::ResponseTimeout));
            return with_request_id(
                reply::error(StatusCode::GATEWAY_TIMEOUT),
                &request_id_header,
            );
        }
    };

    let (mut head, incoming) = sent.response.into_parts();
    let response_tap = Arc::new(Mutex::new(TapState::new(route.kept_preview())));
    exchange.answered(
        head.status.as_u16(),
        proxy.cfg.redactor.record(&head.headers),
        sent.connect_us,
        response_tap.clone(),
    );
    strip_hop_by_hop(&mut head.headers);
    head.headers.insert(X_REQUEST_ID.clone(), request_id_header);
    let body = Tap::new(
        incoming,
        response_tap,
        route.idle_timeout,
        Some(Box::new(move |how, failure| {
            exchange.finish_body(how, failure)
        })),
    );
    Response::from_parts(head, Body::new(body))
}

#[cfg(test)]
mod tests {
    use super::split_channel_path;

    #[test]
    fn splits_id_and_rest() {
        assert_eq!(split_channel_path("/channels/abc"), Some(("abc", "")));
        assert_eq!(split_channel_path("/channels/abc/"), Some(("abc", "/")));
        assert_eq!(
            split_channel_path("/channels/abc/x/y"),
            Some(("abc", "/x/y"))
        );
        assert_eq!(split_channel_path("/api/x"), None);
    }
}
