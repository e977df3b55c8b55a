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

/// `status` with `{"error": "<reason phrase>", "detail": detail}`: a refusal the caller can act on.
pub fn refused(status: StatusCode, detail: &'static str) -> Response<Body> {
    let mut res = error(status);
    *res.body_mut() = Body::from(
        serde_json::json!({
            "error": status.canonical_reason().unwrap_or("Error"),
            "detail": detail,
        })
        .to_string(),
    );
    res
}

/// `429` with `Retry-After: seconds`: the caller's address failed authentication too often.
pub fn too_many_failures(seconds: u64) -> Response<Body> {
    let mut res = refused(
        StatusCode::TOO_MANY_REQUESTS,
        "too many failed attempts from this address; wait for Retry-After seconds",
    );
    res.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    res
}
