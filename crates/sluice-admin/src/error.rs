//! The API's error type and its one mapping to HTTP.

use axum::response::{IntoResponse, Response};
use axum::Json;
use http::{header, HeaderValue, StatusCode};
use serde_json::{json, Map, Value};
use sluice_store::StoreError;

/// An API failure: a status, a short text, and optional details (field errors).
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    error: String,
    details: Option<Value>,
    /// Seconds a refused caller should wait (`Retry-After`).
    retry_after: Option<u64>,
}

impl ApiError {
    /// A failure with a status and a short text.
    pub fn new(status: StatusCode, error: impl Into<String>) -> Self {
        Self {
            status,
            error: error.into(),
            details: None,
            retry_after: None,
        }
    }

    /// This failure with `details`.
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    /// 429: try again in `seconds`.
    pub fn too_many(error: impl Into<String>, seconds: u64) -> Self {
        let mut e = Self::new(StatusCode::TOO_MANY_REQUESTS, error);
        e.details = Some(json!({ "retry_after_s": seconds }));
        e.retry_after = Some(seconds);
        e
    }

    /// 404 for a resource that does not exist (or that the caller may not see).
    pub fn not_found(what: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, format!("{what} not found"))
    }

    /// 422 naming one field and its problem.
    pub fn field(name: &str, problem: impl Into<String>) -> Self {
        let mut fields = Map::new();
        fields.insert(name.to_string(), Value::String(problem.into()));
        Self::fields(fields)
    }

    /// 422 naming several fields and their problems.
    pub fn fields(fields: Map<String, Value>) -> Self {
        Self {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            error: "invalid input".into(),
            details: Some(json!({ "fields": fields })),
            retry_after: None,
        }
    }

    /// 400 for a malformed query parameter.
    pub fn bad_query(name: &str, problem: impl Into<String>) -> Self {
        let mut e = Self::field(name, problem);
        e.status = StatusCode::BAD_REQUEST;
        e.error = "invalid query parameter".into();
        e
    }

    /// The HTTP status of this failure.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The short text of this failure.
    pub fn message(&self) -> &str {
        &self.error
    }

    /// The problem with each named field, for a 422 (empty otherwise).
    pub fn field_problems(&self) -> Vec<(String, String)> {
        self.details
            .as_ref()
            .and_then(|d| d.get("fields"))
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// 409 with details.
    pub fn conflict(error: impl Into<String>, details: Value) -> Self {
        Self {
            status: StatusCode::CONFLICT,
            error: error.into(),
            details: Some(details),
            retry_after: None,
        }
    }
}

/// Turns the plain-text rejections of axum's extractors and router (a malformed query 400, a
/// body too large 413, a method not allowed 405, …) into the API's JSON error, keeping their
/// text and headers (`Allow`).
pub async fn json_rejections(res: Response) -> Response {
    let status = res.status();
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return res;
    }
    let (mut parts, body) = res.into_parts();
    let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let error = match text.trim() {
        "" => status.canonical_reason().unwrap_or("error").to_lowercase(),
        t => t.to_string(),
    };
    let json = ApiError::new(status, error).into_response();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.extend(json.headers().clone());
    Response::from_parts(parts, json.into_body())
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => ApiError::not_found("resource"),
            StoreError::Conflict(what) => ApiError::conflict(what, json!({})),
            StoreError::Stale => ApiError::conflict("stale lock_version", json!({})),
            other => {
                tracing::error!(error = %other, "storage failure in API");
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "storage unavailable")
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "error": self.error });
        if let Some(d) = self.details {
            body["details"] = d;
        }
        let mut response = (self.status, Json(body)).into_response();
        let headers = response.headers_mut();
        if self.status == StatusCode::UNAUTHORIZED {
            // RFC 7235: a 401 names the scheme it wants.
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"sluice\""),
            );
        }
        if let Some(s) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        response
    }
}

/// Result alias of API handlers.
pub type ApiResult<T> = Result<T, ApiError>;
