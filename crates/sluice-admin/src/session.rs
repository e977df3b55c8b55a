//! `/api/v1/session`: sign in (a cookie), who am I (with the CSRF token), change my password,
//! sign out. Failed sign-ins are throttled per username and client address, logged (`auth`,
//! rate-limited) and audited, and never tell whether the username exists.

use std::net::SocketAddr;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::{header, HeaderValue, StatusCode};
use rand::RngCore;
use serde::Deserialize;
use serde_json::{json, Value};
use sluice_core::access::{ProjectRoles, Role};
use sluice_core::clock::now_us;
use sluice_store::event_log::AUTH_FAILURE_INTERVAL;
use sluice_store::{PasswordState, Project, Severity, Source, User, UserPatch};
use uuid::Uuid;

use crate::accounts;
use crate::auth::{csrf_token, Caller, Credentials, SessionCaller, SESSION_COOKIE};
use crate::error::{ApiError, ApiResult};
use crate::users::user_json;
use crate::wire;
use crate::AdminState;

/// Body of `POST /session`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignIn {
    username: String,
    password: String,
}

/// Body of `POST /session/password`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangePassword {
    current_password: String,
    new_password: String,
}

/// The projects the caller may read, each with the caller's role there, by name.
pub async fn projects_of(state: &AdminState, caller: &Caller) -> ApiResult<Vec<(Project, Role)>> {
    let mut out: Vec<(Project, Role)> = match &caller.principal.projects {
        ProjectRoles::All(role) => state
            .store
            .list_projects(None, None, wire::MAX_LIMIT)
            .await?
            .into_iter()
            .map(|p| (p, *role))
            .collect(),
        ProjectRoles::Each(roles) => {
            let ids: Vec<Uuid> = roles.keys().copied().collect();
            state
                .store
                .list_projects(Some(&ids), None, wire::MAX_LIMIT)
                .await?
                .into_iter()
                .map(|p| {
                    let role = roles[&p.id];
                    (p, role)
                })
                .collect()
        }
    };
    out.sort_by_key(|a| a.0.name.to_lowercase());
    Ok(out)
}

/// Who the caller is, their projects and roles, and (for a session) the CSRF token.
async fn whoami(state: &AdminState, caller: &Caller, csrf: Option<String>) -> ApiResult<Value> {
    let projects: Vec<Value> = projects_of(state, caller)
        .await?
        .iter()
        .map(|(p, role)| json!({ "id": p.id, "name": p.name, "role": role }))
        .collect();
    Ok(json!({
        "actor": caller.actor(),
        "user": caller.user.as_ref().map(user_json),
        "superuser": caller.is_superuser(),
        "must_change_password": caller.user.as_ref().is_some_and(User::must_change_password)
            && matches!(caller.credentials, Credentials::Session { .. }),
        "projects": projects,
        "csrf_token": csrf,
    }))
}

fn cookie(state: &AdminState, value: &str, max_age_s: i64) -> HeaderValue {
    let secure = if state.auth.secure_cookie {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age_s}{secure}"
    ))
    .expect("cookie text is ASCII")
}

/// The throttle keys of an attempt.
fn keys(username: &str, peer: &SocketAddr) -> Vec<String> {
    vec![
        format!("user:{}", username.to_lowercase()),
        format!("addr:{}", peer.ip()),
    ]
}

/// Writes a refused sign-in to the event log, rate-limited like the proxy's source-auth failures
/// (one entry a minute, the rest counted in `details.suppressed`).
fn log_refusal(state: &AdminState, details: Value) {
    state.events.emit_throttled(
        "sign_in_failure",
        AUTH_FAILURE_INTERVAL,
        Severity::Warn,
        Source::Auth,
        None,
        "sign-ins are failing",
        details,
    );
}

/// Notes a wrong password or unknown user: throttle, event log, audit.
async fn refused(state: &AdminState, username: &str, peer: &SocketAddr) -> ApiError {
    let keys = keys(username, peer);
    state.throttle.failed(&keys, Instant::now());
    let details = json!({ "username": username, "client": peer.ip().to_string() });
    log_refusal(state, details.clone());
    if let Err(e) = state
        .store
        .audit_event(
            "anonymous",
            "sign_in_failed",
            "session",
            Uuid::nil(),
            details,
        )
        .await
    {
        tracing::warn!(error = %e, "could not audit a failed sign-in");
    }
    ApiError::new(StatusCode::UNAUTHORIZED, "wrong username or password")
}

/// Checks a username and password (throttled, logged and audited when wrong) and opens a
/// session: the caller it signs in, and the session's secret (the cookie's value).
pub async fn open(
    state: &AdminState,
    username: &str,
    password: &str,
    peer: &SocketAddr,
) -> ApiResult<(Caller, String)> {
    if let Some(wait) = state.throttle.wait(&keys(username, peer), Instant::now()) {
        return Err(ApiError::too_many(
            "too many failed sign-ins; wait before trying again",
            wait.as_secs().max(1),
        ));
    }
    let record = state.store.user_by_name(username).await?;
    let hash = record
        .as_ref()
        .map_or(accounts::decoy_hash(), |r| r.password_hash.as_str());
    let matches = accounts::verify(password, hash).await;
    let user = match record {
        Some(r)
            if matches
                && !r.user.disabled
                && r.user.password_state != PasswordState::OneTimeUsed =>
        {
            r.user
        }
        _ => return Err(refused(state, username, peer).await),
    };
    state.throttle.succeeded(&keys(username, peer));
    let mut raw = [0u8; 32];
    rand::rng().fill_bytes(&mut raw);
    let secret = hex::encode(raw);
    let now = now_us();
    let limits = state.auth.session_limits;
    state.store.prune_sessions(now, limits).await?;
    state
        .store
        .create_session(user.id, &secret, now, limits)
        .await?;
    state.store.record_sign_in(user.id, now).await?;
    let actor = format!("user:{}", user.username);
    state
        .store
        .audit_event(
            &actor,
            "sign_in",
            "session",
            user.id,
            json!({ "client": peer.ip().to_string() }),
        )
        .await?;
    let user = state.store.get_user(user.id).await?.unwrap_or(user);
    let principal = crate::auth::user_principal(state, &user, actor).await?;
    let caller = Caller {
        principal,
        user: Some(user),
        credentials: Credentials::Session {
            secret: secret.clone(),
        },
    };
    Ok((caller, secret))
}

/// The `Set-Cookie` value that hands a browser the session `secret`.
pub fn session_cookie(state: &AdminState, secret: &str) -> HeaderValue {
    cookie(
        state,
        secret,
        state.auth.session_limits.absolute_us / 1_000_000,
    )
}

/// The `Set-Cookie` value that makes a browser forget its session.
pub fn expired_cookie(state: &AdminState) -> HeaderValue {
    cookie(state, "", 0)
}

/// `POST /api/v1/session`: `{"username", "password"}` → the session cookie.
pub async fn sign_in(
    State(state): State<AdminState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: Bytes,
) -> ApiResult<Response> {
    let input: SignIn = wire::parse_body(&body)?;
    let (caller, secret) = open(&state, &input.username, &input.password, &peer).await?;
    let body = whoami(&state, &caller, Some(csrf_token(&secret))).await?;
    let mut response = (StatusCode::OK, Json(body)).into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, session_cookie(&state, &secret));
    Ok(response)
}

/// `GET /api/v1/session`: who am I, my projects and roles, and the CSRF token of my session.
pub async fn get(
    State(state): State<AdminState>,
    SessionCaller(caller): SessionCaller,
) -> ApiResult<Json<Value>> {
    let csrf = match &caller.credentials {
        Credentials::Session { secret } => Some(csrf_token(secret)),
        Credentials::Token(_) => None,
    };
    Ok(Json(whoami(&state, &caller, csrf).await?))
}

/// Ends the caller's session, if they signed in with one (a bearer caller has none).
pub async fn close(state: &AdminState, caller: &Caller) -> ApiResult<bool> {
    let Credentials::Session { secret } = &caller.credentials else {
        return Ok(false);
    };
    state.store.end_session(secret).await?;
    if let Some(u) = &caller.user {
        state
            .store
            .audit_event(caller.actor(), "sign_out", "session", u.id, json!({}))
            .await?;
    }
    Ok(true)
}

/// `DELETE /api/v1/session`: signs out (a bearer caller has no session: nothing to end).
pub async fn sign_out(
    State(state): State<AdminState>,
    SessionCaller(caller): SessionCaller,
) -> ApiResult<Response> {
    let mut response = StatusCode::NO_CONTENT.into_response();
    if close(&state, &caller).await? {
        response
            .headers_mut()
            .insert(header::SET_COOKIE, expired_cookie(&state));
    }
    Ok(response)
}

/// `POST /api/v1/session/password`: `{"current_password", "new_password"}`. Ends every other
/// session of the user.
pub async fn change_password(
    State(state): State<AdminState>,
    SessionCaller(caller): SessionCaller,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let input: ChangePassword = wire::parse_body(&body)?;
    set_own_password(
        &state,
        &caller,
        &input.current_password,
        &input.new_password,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Changes the caller's own password once `current` is confirmed; every other session of the
/// user ends, the caller's own one goes on.
pub async fn set_own_password(
    state: &AdminState,
    caller: &Caller,
    current: &str,
    new: &str,
) -> ApiResult<()> {
    let Some(user) = &caller.user else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "an instance token has no password",
        ));
    };
    if let Some(p) = accounts::password_problem(new) {
        return Err(ApiError::field("new_password", p));
    }
    if new == current {
        return Err(ApiError::field(
            "new_password",
            "must differ from the current password",
        ));
    }
    let record = state
        .store
        .user_by_name(&user.username)
        .await?
        .ok_or_else(|| ApiError::not_found("user"))?;
    if !accounts::verify(current, &record.password_hash).await {
        return Err(ApiError::field("current_password", "wrong password"));
    }
    let hash = accounts::hash(new).await?;
    state
        .store
        .update_user(
            user.id,
            &UserPatch {
                password: Some((hash, PasswordState::Set)),
                ..UserPatch::default()
            },
            caller.actor(),
        )
        .await?;
    if let Credentials::Session { secret } = &caller.credentials {
        let limits = state.auth.session_limits;
        state
            .store
            .create_session(user.id, secret, now_us(), limits)
            .await?;
    }
    Ok(())
}
