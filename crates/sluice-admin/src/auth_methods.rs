//! `/api/v1/auth-methods`: how callers of channels prove who they are. An api key is generated
//! here and shown once, in the create answer; only hashes are stored.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::IntoResponse;
use axum::Json;
use http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use sluice_core::access::Right;
use sluice_core::clock::now_us;
use sluice_core::source_auth::{api_key_digest, generate_api_key, AuthKind, AuthMethod};
use sluice_store::StoreError;
use uuid::Uuid;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::wire;
use crate::AdminState;

/// Body of `POST /auth-methods`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateAuthMethod {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub project_id: Option<Uuid>,
    pub username: Option<String>,
    pub password: Option<String>,
}

/// The method as the API shows it (never a secret or a hash).
pub fn auth_method_json(m: &AuthMethod) -> Value {
    json!({
        "id": m.id,
        "project_id": m.project_id,
        "name": m.name,
        "type": m.kind.as_str(),
        "username": m.username,
        "api_key_hint": m.hint,
        "created_at": wire::ts(m.created_at),
    })
}

/// `POST /api/v1/auth-methods`
pub async fn create(
    State(state): State<AdminState>,
    caller: Caller,
    body: Bytes,
) -> ApiResult<impl IntoResponse> {
    let input: CreateAuthMethod = wire::parse_body(&body)?;
    let (m, api_key) = create_auth_method(&state, &caller, input).await?;
    let mut out = auth_method_json(&m);
    if let Some(k) = api_key {
        // The only time the key is ever shown.
        out["api_key"] = Value::String(k);
    }
    Ok((StatusCode::CREATED, Json(out)))
}

/// Creates an auth method, if the caller may manage the project: the method, and for an
/// `api_key` method the generated key (shown this once, stored only as a digest).
pub async fn create_auth_method(
    state: &AdminState,
    caller: &Caller,
    input: CreateAuthMethod,
) -> ApiResult<(AuthMethod, Option<String>)> {
    let project_id = state
        .project_for(caller, Right::ManageProject, input.project_id)
        .await?;
    let mut fields = Map::new();
    if let Err(why) = wire::check_name(&input.name) {
        fields.insert("name".into(), why.into());
    }
    let kind = AuthKind::parse(&input.kind);
    let mut api_key = None;
    let (username, secret_hash, hint) = match kind {
        None => {
            fields.insert("type".into(), "must be api_key or basic".into());
            (None, String::new(), None)
        }
        Some(AuthKind::ApiKey) => {
            for f in ["username", "password"] {
                let given = if f == "username" {
                    input.username.is_some()
                } else {
                    input.password.is_some()
                };
                if given {
                    fields.insert(
                        f.into(),
                        "not used by api_key (sluice generates the key)".into(),
                    );
                }
            }
            let key = generate_api_key();
            let digest = api_key_digest(key.as_bytes());
            let hint = key[..7].to_string();
            api_key = Some(key);
            (None, digest, Some(hint))
        }
        Some(AuthKind::Basic) => {
            let user = input.username.clone().unwrap_or_default();
            if user.is_empty() || user.contains(':') || user.len() > 200 {
                fields.insert(
                    "username".into(),
                    "required: 1 to 200 characters without ':'".into(),
                );
            }
            let pw = input.password.as_deref().unwrap_or_default();
            if pw.len() < 8 || pw.len() > 1024 {
                fields.insert("password".into(), "required: 8 to 1024 characters".into());
            }
            let hash = if fields.is_empty() {
                crate::accounts::hash(pw).await?
            } else {
                String::new()
            };
            (Some(user), hash, None)
        }
    };
    if !fields.is_empty() {
        return Err(ApiError::fields(fields));
    }
    let m = AuthMethod {
        id: Uuid::now_v7(),
        project_id,
        name: input.name,
        kind: kind.expect("checked above"),
        username,
        secret_hash,
        hint,
        created_at: now_us(),
    };
    match state.store.create_auth_method(&m, caller.actor()).await {
        Ok(()) => Ok((m, api_key)),
        Err(StoreError::Conflict(_)) => Err(ApiError::field(
            "name",
            "an auth method with this name already exists in the project",
        )),
        Err(e) => Err(e.into()),
    }
}

/// `GET /api/v1/auth-methods`
pub async fn list(
    State(state): State<AdminState>,
    caller: Caller,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let (limit, after) = wire::id_page(&q)?;
    let scope = wire::list_scope(&caller, wire::uuid_query(&q, "project_id")?)?;
    let rows = state
        .store
        .list_auth_methods(scope.as_deref(), after, limit)
        .await?;
    Ok(Json(wire::page(&rows, limit, auth_method_json, |m| {
        m.id.to_string()
    })))
}

/// `DELETE /api/v1/auth-methods/{id}`: 409 while a channel lists it.
pub async fn delete(
    State(state): State<AdminState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let m = load(&state, &caller, Right::ManageProject, &id).await?;
    remove_auth_method(&state, &caller, &m).await
}

/// Loads an auth method on which the caller holds `right` (404 when it cannot see it).
pub async fn load(
    state: &AdminState,
    caller: &Caller,
    right: Right,
    id: &str,
) -> ApiResult<AuthMethod> {
    let id = Uuid::parse_str(id).map_err(|_| ApiError::not_found("auth method"))?;
    let m = state
        .store
        .get_auth_method(id)
        .await?
        .ok_or_else(|| ApiError::not_found("auth method"))?;
    caller.allow(right, Some(m.project_id), "auth method")?;
    Ok(m)
}

/// Deletes `m` (loaded with [`load`]) unless a channel lists it (409 while one does).
pub async fn remove_auth_method(
    state: &AdminState,
    caller: &Caller,
    m: &AuthMethod,
) -> ApiResult<StatusCode> {
    wire::removal(
        state.store.delete_auth_method(m.id, caller.actor()).await?,
        "auth method",
        "auth method is attached to channels; detach it first",
    )
}
