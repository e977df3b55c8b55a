//! `/api/v1/users` (superusers): list, create (a generated password is shown once and must be
//! changed at first sign-in), change (display name, superuser, disabled, password reset).

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::IntoResponse;
use axum::Json;
use http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use sluice_core::access::Right;
use sluice_store::{NewUser, PasswordState, StoreError, User, UserPatch};
use uuid::Uuid;

use crate::accounts;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::wire;
use crate::AdminState;

/// Body of `POST /users`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    pub username: String,
    pub display_name: Option<String>,
    pub password: Option<String>,
    #[serde(default)]
    pub superuser: bool,
}

/// Body of `PATCH /users/{id}`; `reset_password: true` sets a new one-time password, shown once.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchUser {
    #[serde(default, deserialize_with = "wire::non_null")]
    pub display_name: Option<String>,
    #[serde(default, deserialize_with = "wire::non_null")]
    pub superuser: Option<bool>,
    #[serde(default, deserialize_with = "wire::non_null")]
    pub disabled: Option<bool>,
    #[serde(default)]
    pub reset_password: bool,
}

/// The user as the API shows it (never a password or its hash).
pub fn user_json(u: &User) -> Value {
    json!({
        "id": u.id,
        "username": u.username,
        "display_name": u.display_name,
        "superuser": u.superuser,
        "disabled": u.disabled,
        "must_change_password": u.must_change_password(),
        "created_at": wire::ts(u.created_at),
        "last_login_at": u.last_login_at.map(wire::ts),
    })
}

fn check_display_name(name: &str, fields: &mut Map<String, Value>) {
    if name.len() > 200 || name.chars().any(char::is_control) {
        fields.insert(
            "display_name".into(),
            "must be at most 200 characters, none of them control characters".into(),
        );
    }
}

/// `GET /api/v1/users`
pub async fn list(
    State(state): State<AdminState>,
    caller: Caller,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    caller.allow(Right::ManageInstance, None, "user")?;
    let (limit, after) = wire::id_page(&q)?;
    let rows = state.store.list_users(after, limit).await?;
    Ok(Json(wire::page(&rows, limit, user_json, |u| {
        u.id.to_string()
    })))
}

/// `POST /api/v1/users`: without a `password`, one is generated, returned once in
/// `one_time_password`, and must be changed at first sign-in.
pub async fn create(
    State(state): State<AdminState>,
    caller: Caller,
    body: Bytes,
) -> ApiResult<impl IntoResponse> {
    caller.allow(Right::ManageInstance, None, "user")?;
    let input: CreateUser = wire::parse_body(&body)?;
    let (user, shown) = create_user(&state, &caller, input).await?;
    let mut out = user_json(&user);
    if let Some(p) = shown {
        out["one_time_password"] = Value::String(p);
    }
    Ok((StatusCode::CREATED, Json(out)))
}

/// Creates a user (superusers only): the user, and the generated one-time password when none
/// was given (shown this once; it must be changed at first sign-in).
pub async fn create_user(
    state: &AdminState,
    caller: &Caller,
    input: CreateUser,
) -> ApiResult<(User, Option<String>)> {
    caller.allow(Right::ManageInstance, None, "user")?;
    let mut fields = Map::new();
    if let Some(p) = accounts::username_problem(&input.username) {
        fields.insert("username".into(), p.into());
    }
    if let Some(n) = &input.display_name {
        check_display_name(n, &mut fields);
    }
    if let Some(p) = input
        .password
        .as_deref()
        .and_then(accounts::password_problem)
    {
        fields.insert("password".into(), p.into());
    }
    if !fields.is_empty() {
        return Err(ApiError::fields(fields));
    }
    let (password, state_of, shown) = match input.password {
        Some(p) => (p, PasswordState::Set, None),
        None => {
            let p = accounts::generate_password();
            (p.clone(), PasswordState::OneTime, Some(p))
        }
    };
    let new = NewUser {
        username: input.username,
        display_name: input.display_name.unwrap_or_default(),
        password_hash: accounts::hash(&password).await?,
        password_state: state_of,
        superuser: input.superuser,
    };
    match state.store.create_user(&new, caller.actor()).await {
        Ok(u) => Ok((u, shown)),
        Err(StoreError::Conflict(_)) => Err(ApiError::field(
            "username",
            "a user with this name already exists",
        )),
        Err(e) => Err(e.into()),
    }
}

/// `PATCH /api/v1/users/{id}`
pub async fn patch(
    State(state): State<AdminState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    caller.allow(Right::ManageInstance, None, "user")?;
    let input: PatchUser = wire::parse_body(&body)?;
    let (user, new_password) = change_user(&state, &caller, &id, input).await?;
    let mut out = user_json(&user);
    if let Some(p) = new_password {
        out["one_time_password"] = Value::String(p);
    }
    Ok(Json(out))
}

/// Changes a user (superusers only): the user, and the new one-time password when
/// `reset_password` asked for one (shown this once).
pub async fn change_user(
    state: &AdminState,
    caller: &Caller,
    id: &str,
    input: PatchUser,
) -> ApiResult<(User, Option<String>)> {
    caller.allow(Right::ManageInstance, None, "user")?;
    let id = Uuid::parse_str(id).map_err(|_| ApiError::not_found("user"))?;
    let mut fields = Map::new();
    if let Some(n) = &input.display_name {
        check_display_name(n, &mut fields);
    }
    if !fields.is_empty() {
        return Err(ApiError::fields(fields));
    }
    let new_password = input.reset_password.then(accounts::generate_password);
    let password = match &new_password {
        Some(p) => Some((accounts::hash(p).await?, PasswordState::OneTime)),
        None => None,
    };
    let patch = UserPatch {
        display_name: input.display_name,
        superuser: input.superuser,
        disabled: input.disabled,
        password,
    };
    match state.store.update_user(id, &patch, caller.actor()).await {
        Ok(u) => Ok((u, new_password)),
        Err(StoreError::NotFound) => Err(ApiError::not_found("user")),
        Err(e) => Err(e.into()),
    }
}
