//! `/api/v1/tokens`: API tokens owned by a user. A token carries its owner's rights, optionally
//! narrowed to one project and capped at a lower role, with an optional expiry; its secret is
//! shown once. Nobody makes a token with more rights than they hold.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::IntoResponse;
use axum::Json;
use http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};
use sluice_core::access::{Right, Role};
use sluice_core::clock::{now_us, parse_rfc3339};
use sluice_store::{ApiToken, NewToken};
use uuid::Uuid;

use crate::auth::{Caller, Credentials};
use crate::error::{ApiError, ApiResult};
use crate::wire;
use crate::AdminState;

/// Body of `POST /tokens`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    name: String,
    project_id: Option<Uuid>,
    role: Option<String>,
    expires_at: Option<String>,
    /// Superusers may make a token for another user.
    user_id: Option<Uuid>,
}

/// The token as the API shows it (never the secret, which only the create answer carries).
pub fn token_json(t: &ApiToken) -> Value {
    json!({
        "id": t.id,
        "name": t.name,
        "user_id": t.user_id,
        "project_id": t.project_id,
        "role": t.role,
        "expires_at": t.expires_at.map(wire::ts),
        "created_at": wire::ts(t.created_at),
    })
}

/// `GET /api/v1/tokens`: the caller's own tokens; a superuser sees every token (or one
/// user's, with `?user_id=`).
pub async fn list(
    State(state): State<AdminState>,
    caller: Caller,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let (limit, after) = wire::id_page(&q)?;
    let asked = wire::uuid_query(&q, "user_id")?;
    let owner = if caller.is_superuser() {
        asked
    } else {
        match &caller.user {
            Some(u) if asked.is_none_or(|a| a == u.id) => Some(u.id),
            Some(_) => {
                return Err(crate::auth::denial(
                    sluice_core::access::Denial::Missing(Right::ManageInstance),
                    "token",
                ))
            }
            None => return Ok(Json(json!({ "items": [], "next_cursor": null }))),
        }
    };
    let rows = state.store.list_tokens(owner, after, limit).await?;
    Ok(Json(wire::page(&rows, limit, token_json, |t| {
        t.id.to_string()
    })))
}

/// Whether a token of `scope` stays within what the calling token may do.
fn within_caller_token(caller: &Caller, project: Option<Uuid>, role: Role) -> bool {
    match &caller.credentials {
        Credentials::Token(t) => t.project_id.is_none_or(|p| project == Some(p)) && role <= t.role,
        Credentials::Session { .. } => true,
    }
}

/// `POST /api/v1/tokens`: the answer's `token` is the secret, shown this once.
pub async fn create(
    State(state): State<AdminState>,
    caller: Caller,
    body: Bytes,
) -> ApiResult<impl IntoResponse> {
    let input: CreateToken = wire::parse_body(&body)?;
    wire::check_name(&input.name).map_err(|why| ApiError::field("name", why))?;
    let role = match input.role.as_deref() {
        None => Role::Superuser,
        Some(r) => Role::parse(r)
            .ok_or_else(|| ApiError::field("role", "must be viewer, editor, admin or superuser"))?,
    };
    let expires_at = input
        .expires_at
        .as_deref()
        .map(|s| match parse_rfc3339(s) {
            Some(t) if t > now_us() => Ok(t),
            Some(_) => Err(ApiError::field("expires_at", "must be in the future")),
            None => Err(ApiError::field("expires_at", "must be an RFC 3339 time")),
        })
        .transpose()?;
    let owner = match (input.user_id, caller.user.as_ref().map(|u| u.id)) {
        (Some(other), me) if me != Some(other) => {
            caller.allow(Right::ManageInstance, None, "user")?;
            state
                .store
                .get_user(other)
                .await?
                .ok_or_else(|| ApiError::field("user_id", "unknown user"))?
                .id
        }
        (_, Some(me)) => me,
        (_, None) => {
            return Err(ApiError::field(
                "user_id",
                "required: an instance token has no user to own the new token",
            ))
        }
    };
    if let Some(p) = input.project_id {
        caller.allow(Right::Read, Some(p), "project")?;
    }
    if !caller.is_superuser() && !within_caller_token(&caller, input.project_id, role) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "a token may only make tokens narrower than itself",
        ));
    }
    let new = NewToken {
        name: input.name,
        role,
        user_id: Some(owner),
        project_id: input.project_id,
        expires_at,
    };
    let (token, secret) = state.store.create_token(&new, caller.actor()).await?;
    let mut out = token_json(&token);
    out["token"] = Value::String(secret);
    Ok((StatusCode::CREATED, Json(out)))
}

/// `DELETE /api/v1/tokens/{id}`: one's own token, or any for a superuser.
pub async fn delete(
    State(state): State<AdminState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let id = Uuid::parse_str(&id).map_err(|_| ApiError::not_found("token"))?;
    let token = state
        .store
        .get_token(id)
        .await?
        .ok_or_else(|| ApiError::not_found("token"))?;
    let own = caller
        .user
        .as_ref()
        .is_some_and(|u| token.user_id == Some(u.id));
    if !own && !caller.is_superuser() {
        return Err(ApiError::not_found("token"));
    }
    state.store.delete_token(id, caller.actor()).await?;
    Ok(StatusCode::NO_CONTENT)
}
