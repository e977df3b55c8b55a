//! Who is calling: a bearer token or a session cookie, resolved to a [`Principal`] whose rights
//! every route checks through [`Caller::allow`] — the one place an API decision is mapped to
//! HTTP (401 unknown caller, 403 missing right, 404 a project the caller cannot see).

use axum::extract::FromRequestParts;
use http::request::Parts;
use http::{Method, StatusCode};
use serde_json::json;
use sha2::{Digest, Sha256};
use sluice_core::access::{Denial, Principal, Right, TokenScope};
use sluice_core::clock::now_us;
use sluice_store::{ApiToken, User};
use uuid::Uuid;

use crate::error::{ApiError, ApiResult};
use crate::AdminState;

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "sluice_session";
/// Header carrying the CSRF token on state-changing requests made with the session cookie.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// How the caller authenticated.
#[derive(Debug, Clone)]
pub enum Credentials {
    /// `Authorization: Bearer …`.
    Token(ApiToken),
    /// The session cookie, with its secret (to sign out and to derive the CSRF token).
    Session {
        /// The cookie's secret.
        secret: String,
    },
}

/// An authenticated caller of an API route.
#[derive(Debug, Clone)]
pub struct Caller {
    /// What the caller may do.
    pub principal: Principal,
    /// The signed-in user or the token's owner (none for an instance token).
    pub user: Option<User>,
    /// Token or session.
    pub credentials: Credentials,
}

impl Caller {
    /// Refuses unless the caller holds `right` (on `project`, when the action concerns one):
    /// 404 naming `resource` for a project the caller cannot see, 403 naming the missing right.
    pub fn allow(&self, right: Right, project: Option<Uuid>, resource: &str) -> ApiResult<()> {
        self.principal
            .check(right, project)
            .map_err(|d| denial(d, resource))
    }

    /// The name recorded as the actor of audit entries.
    pub fn actor(&self) -> &str {
        &self.principal.actor
    }

    /// The projects whose contents the caller may read (`None`: all of them).
    pub fn readable_projects(&self) -> Option<Vec<Uuid>> {
        self.principal.readable_projects()
    }

    /// Whether the caller holds instance rights.
    pub fn is_superuser(&self) -> bool {
        self.principal.superuser
    }
}

/// The HTTP answer to a refusal.
pub fn denial(d: Denial, resource: &str) -> ApiError {
    match d {
        Denial::Hidden => ApiError::not_found(resource),
        Denial::Missing(right) => ApiError::new(
            StatusCode::FORBIDDEN,
            format!("this needs the {}", right.describe()),
        )
        .with_details(json!({ "missing_right": right.describe() })),
    }
}

/// The CSRF token of a session: derived from its secret, so it needs no storage, and readable
/// only by whoever can read the session (the cookie itself is `HttpOnly`).
pub fn csrf_token(session_secret: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"sluice-csrf\0");
    h.update(session_secret.as_bytes());
    hex::encode(h.finalize())
}

/// The session secret in the request's cookies, if any.
pub fn session_cookie(parts: &Parts) -> Option<String> {
    parts
        .headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == SESSION_COOKIE)
        .map(|(_, v)| v.to_string())
        .filter(|v| !v.is_empty())
}

fn unauthorized() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "sign in or present a bearer token",
    )
}

/// The bearer token of the request, if it names the scheme (in any case).
fn bearer(parts: &Parts) -> Option<&str> {
    let v = parts
        .headers
        .get(http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

async fn token_caller(state: &AdminState, secret: &str) -> ApiResult<Caller> {
    let token = state
        .store
        .authenticate_token(secret, now_us())
        .await?
        .ok_or_else(unauthorized)?;
    let actor = format!("token:{}", token.name);
    let (principal, user) = match token.user_id {
        None => (Principal::instance_token(actor, token.role), None),
        Some(owner) => {
            let user = state
                .store
                .get_user(owner)
                .await?
                .ok_or_else(unauthorized)?;
            let rights = user_principal(state, &user, actor).await?;
            let scope = TokenScope {
                project: token.project_id,
                cap: token.role,
            };
            (rights.narrowed(scope), Some(user))
        }
    };
    Ok(Caller {
        principal,
        user,
        credentials: Credentials::Token(token),
    })
}

/// A user's own rights, recorded under `actor`.
pub async fn user_principal(
    state: &AdminState,
    user: &User,
    actor: String,
) -> ApiResult<Principal> {
    let memberships = if user.superuser {
        Default::default()
    } else {
        state.store.user_memberships(user.id).await?
    };
    Ok(Principal::user(actor, user.id, user.superuser, memberships))
}

async fn session_caller(state: &AdminState, parts: &Parts, secret: String) -> ApiResult<Caller> {
    let caller = signed_in(state, secret.clone()).await?;
    let safe = matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
    if !safe {
        let sent = parts
            .headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        check_csrf(&secret, sent).map_err(|e| e.with_details(json!({ "header": CSRF_HEADER })))?;
    }
    Ok(caller)
}

/// Refuses with 403 unless `sent` is the CSRF token of the session `secret`.
pub fn check_csrf(secret: &str, sent: &str) -> ApiResult<()> {
    let expected = csrf_token(secret);
    let matches: bool = subtle::ConstantTimeEq::ct_eq(sent.as_bytes(), expected.as_bytes()).into();
    if matches {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "missing or wrong CSRF token",
        ))
    }
}

/// The caller signed in with the session `secret` (401 when it is unknown or has expired). The
/// CSRF token is the caller's to check.
pub async fn signed_in(state: &AdminState, secret: String) -> ApiResult<Caller> {
    let user = state
        .store
        .session_user(&secret, now_us(), state.auth.session_limits)
        .await?
        .ok_or_else(unauthorized)?;
    let principal = user_principal(state, &user, format!("user:{}", user.username)).await?;
    Ok(Caller {
        principal,
        user: Some(user),
        credentials: Credentials::Session { secret },
    })
}

/// Resolves the caller of a request: a bearer token first, else the session cookie.
pub async fn resolve(state: &AdminState, parts: &Parts) -> ApiResult<Caller> {
    if let Some(token) = bearer(parts) {
        return token_caller(state, token).await;
    }
    match session_cookie(parts) {
        Some(secret) => session_caller(state, parts, secret).await,
        None => Err(unauthorized()),
    }
}

/// A caller who may still have to change their password: only the session routes take it.
pub struct SessionCaller(pub Caller);

impl FromRequestParts<AdminState> for SessionCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AdminState) -> ApiResult<Self> {
        resolve(state, parts).await.map(SessionCaller)
    }
}

impl FromRequestParts<AdminState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AdminState) -> ApiResult<Self> {
        let caller = resolve(state, parts).await?;
        let signed_in = matches!(caller.credentials, Credentials::Session { .. });
        if signed_in && caller.user.as_ref().is_some_and(User::must_change_password) {
            return Err(
                ApiError::new(StatusCode::FORBIDDEN, "password change required")
                    .with_details(json!({ "change_password": "POST /api/v1/session/password" })),
            );
        }
        Ok(caller)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csrf_tokens_differ_per_session() {
        assert_ne!(csrf_token("a"), csrf_token("b"));
        assert_eq!(csrf_token("a"), csrf_token("a"));
        assert_eq!(csrf_token("a").len(), 64);
    }
}
