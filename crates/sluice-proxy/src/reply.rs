//! The JSON answers the proxy gives on its own behalf; the one place errors become HTTP.

use axum::body::Body;
use http::{header, HeaderValue, Response, StatusCode};

/// A JSON error answer `{"error": "<reason phrase>"}` with `status`.
pub fn error(status: StatusCode) -> Response<Body> {
    let body = format!(
        "{{\"error\":\"{}\"}}",
        status.canonical_reason().unwrap_or("Error")
    );
    let mut res = Response::new(Body::from(body));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}

/// `401 {"error":"Unauthorized"}` with `WWW-Authenticate: Basic realm="sluice"`.
pub fn unauthorized() -> Response<Body> {
    let mut res = error(StatusCode::UNAUTHORIZED);
    res.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"sluice\""),
    );
    res
}

/// `508 {"error":"Loop Detected", …}`: the request already passed through this node, so the
/// channel's sink leads back to sluice.
pub fn loop_detected() -> Response<Body> {
    let mut res = error(StatusCode::LOOP_DETECTED);
    *res.body_mut() = Body::from(
        r#"{"error":"Loop Detected","detail":"this request already passed through this sluice: the channel's sink URL leads back to it"}"#,
    );
    res
}
