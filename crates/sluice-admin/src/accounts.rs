//! Accounts: passwords (hashed off the async threads), generated one-time passwords, the
//! first-start `admin`, and the rules a username and a password must meet. Shared by the API
//! and the command line.

use http::StatusCode;
use rand::distr::{Alphanumeric, SampleString};
use sluice_core::access::Role;
use sluice_core::source_auth::{hash_password, verify_password};
use sluice_store::{NewUser, PasswordState, Store, StoreError, User};
use uuid::Uuid;

use crate::error::{ApiError, ApiResult};

/// Name of the superuser created on first start.
pub const FIRST_ADMIN: &str = "admin";
/// Shortest password a person may choose.
pub const MIN_PASSWORD: usize = 10;
/// Longest password accepted (argon2 hashes any length; this bounds the work).
pub const MAX_PASSWORD: usize = 1024;

/// A fresh random password (20 letters and digits, about 119 bits).
pub fn generate_password() -> String {
    Alphanumeric.sample_string(&mut rand::rng(), 20)
}

/// The argon2id hash of `password`, computed on a blocking thread.
pub async fn hash(password: &str) -> ApiResult<String> {
    let pw = password.to_string();
    tokio::task::spawn_blocking(move || hash_password(&pw))
        .await
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "hashing failed"))
}

/// Whether `password` matches `phc`, computed on a blocking thread.
pub async fn verify(password: &str, phc: &str) -> bool {
    let (pw, phc) = (password.to_string(), phc.to_string());
    tokio::task::spawn_blocking(move || verify_password(pw.as_bytes(), &phc))
        .await
        .unwrap_or(false)
}

/// A hash no password matches, verified when the username is unknown so that a miss costs
/// the same time as a wrong password (the answer must not tell whether the user exists).
pub fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash_password(&generate_password()))
}

/// Why a chosen password is refused, if it is.
pub fn password_problem(password: &str) -> Option<String> {
    let n = password.chars().count();
    (!(MIN_PASSWORD..=MAX_PASSWORD).contains(&n))
        .then(|| format!("must be {MIN_PASSWORD} to {MAX_PASSWORD} characters"))
}

/// Why a username is refused, if it is.
pub fn username_problem(username: &str) -> Option<&'static str> {
    let ok = (1..=64).contains(&username.len())
        && username
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    (!ok).then_some("must be 1 to 64 letters, digits or . _ - @")
}

/// On first start (no user yet) creates the `admin` superuser with a one-time password, makes
/// it admin of `project`, and returns the password to show once. Another node may win the
/// race; then nothing is created here and nothing is shown.
pub async fn bootstrap_admin(store: &Store, project: Uuid) -> Result<Option<String>, StoreError> {
    if store.count_users().await? > 0 {
        return Ok(None);
    }
    let password = generate_password();
    let pw = password.clone();
    let hash = tokio::task::spawn_blocking(move || hash_password(&pw))
        .await
        .map_err(|e| StoreError::Corrupt(format!("hashing: {e}")))?;
    let created = store
        .create_user(
            &NewUser {
                username: FIRST_ADMIN.into(),
                display_name: "Administrator".into(),
                password_hash: hash,
                password_state: PasswordState::OneTime,
                superuser: true,
            },
            "system",
        )
        .await;
    let admin: User = match created {
        Ok(u) => u,
        Err(StoreError::Conflict(_)) => return Ok(None),
        Err(e) => return Err(e),
    };
    store
        .put_member(project, admin.id, Role::Admin, "system")
        .await?;
    Ok(Some(password))
}
