//! Users: people who sign in. Passwords are stored as argon2id PHC strings (hashed by the
//! caller, never here); names are unique whatever their case.

use serde::Serialize;
use serde_json::{json, Value};
use sluice_core::clock::{now_us, Micros};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};
use uuid::Uuid;

use crate::audit::{self, AuditEntry};
use crate::db::{Backend, Store};
use crate::error::{Result, StoreError};
use crate::rows;

/// Where a user's password stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PasswordState {
    /// Chosen by the user.
    Set,
    /// Generated and shown once: it admits one sign-in, whose session may only change it.
    OneTime,
    /// A one-time password already used to sign in: refused until changed or reset.
    OneTimeUsed,
}

impl PasswordState {
    fn as_str(self) -> &'static str {
        match self {
            PasswordState::Set => "set",
            PasswordState::OneTime => "one_time",
            PasswordState::OneTimeUsed => "one_time_used",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [Self::Set, Self::OneTime, Self::OneTimeUsed]
            .into_iter()
            .find(|v| v.as_str() == s)
    }
}

/// A user as stored (the password hash stays in [`UserRecord`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    /// Identifier.
    pub id: Uuid,
    /// Sign-in name, as first written.
    pub username: String,
    /// Name shown to people.
    pub display_name: String,
    /// Manages users, projects and settings; admin of every project.
    pub superuser: bool,
    /// A disabled user cannot sign in, and their sessions and tokens stop working.
    pub disabled: bool,
    /// Where the password stands.
    pub password_state: PasswordState,
    /// Creation time.
    pub created_at: Micros,
    /// Last successful sign-in.
    pub last_login_at: Option<Micros>,
}

impl User {
    /// Whether the user must choose a new password before doing anything else.
    pub fn must_change_password(&self) -> bool {
        self.password_state != PasswordState::Set
    }
}

/// A user with the hash of their password, for signing in.
#[derive(Debug, Clone)]
pub struct UserRecord {
    /// The user.
    pub user: User,
    /// argon2id PHC string.
    pub password_hash: String,
}

/// A new user.
#[derive(Debug, Clone)]
pub struct NewUser {
    /// Sign-in name.
    pub username: String,
    /// Name shown to people (the username when empty).
    pub display_name: String,
    /// argon2id PHC string of the password.
    pub password_hash: String,
    /// `Set` for a chosen password, `OneTime` for a generated one.
    pub password_state: PasswordState,
    /// Instance rights.
    pub superuser: bool,
}

/// A change to a user; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct UserPatch {
    /// New display name.
    pub display_name: Option<String>,
    /// Grant or take instance rights.
    pub superuser: Option<bool>,
    /// Disable or enable.
    pub disabled: Option<bool>,
    /// A new password hash and its state.
    pub password: Option<(String, PasswordState)>,
}

const COLUMNS: &str = "id, username, display_name, password_hash, password_state, superuser, \
                       disabled, created_at, last_login_at";

fn record_from_row(r: &AnyRow) -> Result<UserRecord> {
    let state: String = r.try_get("password_state")?;
    Ok(UserRecord {
        user: User {
            id: rows::uuid(r, "id")?,
            username: r.try_get("username")?,
            display_name: r.try_get("display_name")?,
            superuser: rows::flag(r, "superuser")?,
            disabled: rows::flag(r, "disabled")?,
            password_state: PasswordState::parse(&state)
                .ok_or_else(|| StoreError::Corrupt(format!("password_state {state:?}")))?,
            created_at: r.try_get("created_at")?,
            last_login_at: r.try_get("last_login_at")?,
        },
        password_hash: r.try_get("password_hash")?,
    })
}

/// The audit view of a user (never the hash).
fn audit_view(u: &User) -> Value {
    json!({
        "username": u.username,
        "display_name": u.display_name,
        "superuser": u.superuser,
        "disabled": u.disabled,
    })
}

/// An audit entry about a user.
pub(crate) fn user_audit(
    actor: &str,
    action: &str,
    id: Uuid,
    before: Option<Value>,
    after: Option<Value>,
) -> AuditEntry {
    audit::entry(actor, action, "user", id, before, after)
}

async fn record_by_id(tx: &mut Transaction<'_, Any>, id: Uuid) -> Result<Option<UserRecord>> {
    sqlx::query(&format!("SELECT {COLUMNS} FROM users WHERE id = $1"))
        .bind(id.to_string())
        .fetch_optional(&mut **tx)
        .await?
        .map(|r| record_from_row(&r))
        .transpose()
}

impl Store {
    /// Creates a user and its audit entry; a taken name (in any case) is a conflict.
    pub async fn create_user(&self, new: &NewUser, actor: &str) -> Result<User> {
        let user = User {
            id: Uuid::now_v7(),
            username: new.username.clone(),
            display_name: if new.display_name.is_empty() {
                new.username.clone()
            } else {
                new.display_name.clone()
            },
            superuser: new.superuser,
            disabled: false,
            password_state: new.password_state,
            created_at: now_us(),
            last_login_at: None,
        };
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO users (id, username, username_key, display_name, password_hash, \
             password_state, superuser, disabled, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(user.id.to_string())
        .bind(&user.username)
        .bind(user.username.to_lowercase())
        .bind(&user.display_name)
        .bind(&new.password_hash)
        .bind(new.password_state.as_str())
        .bind(user.superuser)
        .bind(false)
        .bind(user.created_at)
        .execute(&mut *tx)
        .await
        .map_err(|e| StoreError::from_write(e, "a user with this name already exists"))?;
        audit::insert(
            &mut tx,
            &user_audit(actor, "create", user.id, None, Some(audit_view(&user))),
        )
        .await?;
        tx.commit().await?;
        Ok(user)
    }

    /// Finds a user by name, whatever its case, with the password hash.
    pub async fn user_by_name(&self, username: &str) -> Result<Option<UserRecord>> {
        sqlx::query(&format!(
            "SELECT {COLUMNS} FROM users WHERE username_key = $1"
        ))
        .bind(username.to_lowercase())
        .fetch_optional(&self.pool)
        .await?
        .map(|r| record_from_row(&r))
        .transpose()
    }

    /// One user.
    pub async fn get_user(&self, id: Uuid) -> Result<Option<User>> {
        sqlx::query(&format!("SELECT {COLUMNS} FROM users WHERE id = $1"))
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?
            .map(|r| record_from_row(&r).map(|r| r.user))
            .transpose()
    }

    /// One page of users, ordered by id.
    pub async fn list_users(&self, after: Option<Uuid>, limit: i64) -> Result<Vec<User>> {
        sqlx::query(&format!(
            "SELECT {COLUMNS} FROM users WHERE id > $1 ORDER BY id LIMIT $2"
        ))
        .bind(after.map(|a| a.to_string()).unwrap_or_default())
        .bind(limit)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| record_from_row(r).map(|r| r.user))
        .collect()
    }

    /// How many users exist.
    pub async fn count_users(&self) -> Result<i64> {
        Ok(sqlx::query("SELECT COUNT(*) AS n FROM users")
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?)
    }

    /// Changes a user. Taking the last enabled superuser's rights away, or disabling them, is
    /// a conflict (someone must be able to manage the instance). Disabling a user, or changing
    /// their password, ends their sessions.
    pub async fn update_user(&self, id: Uuid, patch: &UserPatch, actor: &str) -> Result<User> {
        let mut tx = self.begin_write().await?;
        if self.backend() == Backend::Postgres {
            // Serialises changes to users, so two cannot each remove "the other" superuser.
            sqlx::query("LOCK TABLE users IN SHARE ROW EXCLUSIVE MODE")
                .execute(&mut *tx)
                .await?;
        }
        let before = record_by_id(&mut tx, id)
            .await?
            .ok_or(StoreError::NotFound)?
            .user;
        let mut after = before.clone();
        if let Some(v) = &patch.display_name {
            after.display_name = v.clone();
        }
        if let Some(v) = patch.superuser {
            after.superuser = v;
        }
        if let Some(v) = patch.disabled {
            after.disabled = v;
        }
        if let Some((_, state)) = &patch.password {
            after.password_state = *state;
        }
        let was_admin = before.superuser && !before.disabled;
        let is_admin = after.superuser && !after.disabled;
        if was_admin && !is_admin {
            let others: i64 = sqlx::query(
                "SELECT COUNT(*) AS n FROM users WHERE superuser = $1 AND disabled = $2 \
                 AND id <> $3",
            )
            .bind(true)
            .bind(false)
            .bind(id.to_string())
            .fetch_one(&mut *tx)
            .await?
            .try_get("n")?;
            if others == 0 {
                return Err(StoreError::Conflict(
                    "the last enabled superuser cannot lose that role or be disabled".into(),
                ));
            }
        }
        sqlx::query(
            "UPDATE users SET display_name = $2, superuser = $3, disabled = $4, \
             password_state = $5, password_hash = COALESCE($6, password_hash) WHERE id = $1",
        )
        .bind(id.to_string())
        .bind(&after.display_name)
        .bind(after.superuser)
        .bind(after.disabled)
        .bind(after.password_state.as_str())
        .bind(patch.password.as_ref().map(|(h, _)| h.clone()))
        .execute(&mut *tx)
        .await?;
        if after.disabled || patch.password.is_some() {
            sqlx::query("DELETE FROM sessions WHERE user_id = $1")
                .bind(id.to_string())
                .execute(&mut *tx)
                .await?;
        }
        let mut after_view = audit_view(&after);
        if patch.password.is_some() {
            after_view["password"] = json!("changed");
        }
        audit::insert(
            &mut tx,
            &user_audit(
                actor,
                "update",
                id,
                Some(audit_view(&before)),
                Some(after_view),
            ),
        )
        .await?;
        tx.commit().await?;
        Ok(after)
    }

    /// Notes a successful sign-in: the time, and a one-time password spent.
    pub async fn record_sign_in(&self, id: Uuid, at: Micros) -> Result<()> {
        sqlx::query(
            "UPDATE users SET last_login_at = $2, password_state = \
             CASE WHEN password_state = 'one_time' THEN 'one_time_used' ELSE password_state END \
             WHERE id = $1",
        )
        .bind(id.to_string())
        .bind(at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Writes an audit entry that changes nothing else (sign-in, sign-out, failed sign-in).
    pub async fn audit_event(
        &self,
        actor: &str,
        action: &str,
        resource_type: &str,
        resource_id: Uuid,
        details: Value,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        audit::insert(
            &mut tx,
            &audit::entry(
                actor,
                action,
                resource_type,
                resource_id,
                None,
                Some(details),
            ),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
