//! Bearer-token authentication of API calls.

use axum::extract::FromRequestParts;
use http::request::Parts;
use http::StatusCode;
use sluice_store::{ApiToken, Role};

use crate::error::ApiError;
use crate::AdminState;

/// The authenticated caller of an API route.
pub struct Caller(pub ApiToken);

impl Caller {
    /// Fails with 403 unless the caller may change configuration.
    pub fn require_editor(&self) -> Result<(), ApiError> {
        if self.0.role.can_edit() {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "role may not change configuration",
            ))
        }
    }

    /// Fails with 403 unless the caller may manage credentials and auth methods.
    pub fn require_admin(&self) -> Result<(), ApiError> {
        if matches!(self.0.role, Role::Admin | Role::Superuser) {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "role may not manage credentials or auth methods",
            ))
        }
    }

    /// The name recorded as the actor of audit entries.
    pub fn actor(&self) -> String {
        format!("token:{}", self.0.name)
    }

    /// Whether this caller is an instance superuser.
    pub fn is_superuser(&self) -> bool {
        self.0.role == Role::Superuser
    }
}

impl FromRequestParts<AdminState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AdminState) -> Result<Self, ApiError> {
        let unauthorized =
            || ApiError::new(StatusCode::UNAUTHORIZED, "missing or invalid bearer token");
        let header = parts
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(unauthorized)?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or_else(unauthorized)?;
        match state.store.authenticate_token(token.trim()).await? {
            Some(t) => Ok(Caller(t)),
            None => Err(unauthorized()),
        }
    }
}
