//! Operational endpoints: liveness, readiness, metrics, validation.

use axum::body::Bytes;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::Json;
use http::{header, StatusCode};
use serde::Deserialize;
use serde_json::json;

use sluice_core::access::Right;
use sluice_health::ValidationReport;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::wire;
use crate::AdminState;

/// `GET /healthz`: the process is up.
pub async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

/// `GET /readyz`: the ledger answers and records what passes.
pub async fn readyz(State(state): State<AdminState>) -> impl IntoResponse {
    if let Some(why) = state.store.not_recording() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "unavailable", "error": why })),
        );
    }
    match state.store.ping().await {
        Ok(()) => (StatusCode::OK, Json(json!({ "status": "ready" }))),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "status": "unavailable", "error": "database unreachable" })),
            )
        }
    }
}

/// `GET /metrics`: Prometheus text format. It names every channel, so it is for callers who
/// may read every project (an instance token, a superuser), unless made public.
pub async fn metrics(
    State(state): State<AdminState>,
    parts: http::request::Parts,
) -> ApiResult<impl IntoResponse> {
    if !state.auth.public_metrics {
        let caller = crate::auth::resolve(&state, &parts).await?;
        if caller.readable_projects().is_some() {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "metrics name every channel: they need an instance token or a superuser",
            ));
        }
    }
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    ))
}

/// Body of `POST /validate`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidateInput {
    url: String,
}

/// `POST /api/v1/validate`: runs the validation pipeline, changes nothing. It dials what it is
/// given, so it is for those who may edit channels somewhere.
pub async fn validate(
    State(state): State<AdminState>,
    caller: Caller,
    body: Bytes,
) -> ApiResult<impl IntoResponse> {
    caller.allow(Right::EditChannels, None, "project")?;
    let input: ValidateInput = wire::parse_body(&body)?;
    Ok(Json(test_destination(&state, &caller, &input.url).await?))
}

/// Runs the validation pipeline on `url` for a caller who may edit channels somewhere.
pub async fn test_destination(
    state: &AdminState,
    caller: &Caller,
    url: &str,
) -> ApiResult<ValidationReport> {
    caller.allow(Right::EditChannels, None, "project")?;
    if url.trim().is_empty() {
        return Err(ApiError::field("url", "must not be empty"));
    }
    Ok(state.validator.validate(url).await)
}
