//! API tokens: bearer secrets for the management API, stored only as SHA-256 digests. A token
//! belongs to a user and carries their rights, or is an instance token with a role of its own.

use rand::RngCore;
use serde::Serialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use sluice_core::clock::{now_us, Micros};
use sqlx::any::AnyRow;
use sqlx::Row;
use uuid::Uuid;

use crate::audit;
use crate::db::Store;
use crate::error::{Result, StoreError};
use crate::rows;

pub use sluice_core::access::Role;

/// A token as stored (never the secret itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiToken {
    /// Identifier.
    pub id: Uuid,
    /// Human name, used as the audit actor.
    pub name: String,
    /// For an instance token (no user), the role held on every project; for a user's token,
    /// the cap on the owner's rights (`superuser` caps nothing).
    pub role: Role,
    /// The owner, whose rights the token carries.
    pub user_id: Option<Uuid>,
    /// Only this project.
    pub project_id: Option<Uuid>,
    /// No longer accepted from then on.
    pub expires_at: Option<Micros>,
    /// Creation time.
    pub created_at: Micros,
}

/// A token to create.
#[derive(Debug, Clone)]
pub struct NewToken {
    /// Human name.
    pub name: String,
    /// See [`ApiToken::role`].
    pub role: Role,
    /// The owner (none: an instance token).
    pub user_id: Option<Uuid>,
    /// Only this project.
    pub project_id: Option<Uuid>,
    /// Expiry.
    pub expires_at: Option<Micros>,
}

/// The stored digest of a presented token.
pub fn token_digest(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

const COLUMNS: &str = "t.id, t.name, t.role, t.user_id, t.project_id, t.expires_at, t.created_at";

fn from_row(r: &AnyRow) -> Result<ApiToken> {
    let role: String = r.try_get("role")?;
    Ok(ApiToken {
        id: rows::uuid(r, "id")?,
        name: r.try_get("name")?,
        role: Role::parse(&role).ok_or_else(|| StoreError::Corrupt(role.clone()))?,
        user_id: rows::opt_uuid(r, "user_id")?,
        project_id: rows::opt_uuid(r, "project_id")?,
        expires_at: r.try_get("expires_at")?,
        created_at: r.try_get("created_at")?,
    })
}

fn audit_view(t: &ApiToken) -> Value {
    json!({
        "name": t.name,
        "role": t.role,
        "user_id": t.user_id,
        "project_id": t.project_id,
        "expires_at": t.expires_at,
    })
}

impl Store {
    /// Creates an instance token (no owner) holding `role` on every project; returns it with
    /// its secret (shown once, stored hashed).
    pub async fn create_api_token(&self, name: &str, role: Role) -> Result<(ApiToken, String)> {
        let new = NewToken {
            name: name.to_string(),
            role,
            user_id: None,
            project_id: None,
            expires_at: None,
        };
        self.create_token(&new, "cli").await
    }

    /// Creates a token and its audit entry; returns it with its secret (shown once, stored
    /// hashed).
    pub async fn create_token(&self, new: &NewToken, actor: &str) -> Result<(ApiToken, String)> {
        let mut raw = [0u8; 32];
        rand::rng().fill_bytes(&mut raw);
        let secret = format!("slc_{}", hex::encode(raw));
        let token = ApiToken {
            id: Uuid::now_v7(),
            name: new.name.clone(),
            role: new.role,
            user_id: new.user_id,
            project_id: new.project_id,
            expires_at: new.expires_at,
            created_at: now_us(),
        };
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO api_tokens (id, name, token_hash, role, user_id, project_id, expires_at, \
             created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(token.id.to_string())
        .bind(&token.name)
        .bind(token_digest(&secret))
        .bind(token.role.as_str())
        .bind(token.user_id.map(|u| u.to_string()))
        .bind(token.project_id.map(|p| p.to_string()))
        .bind(token.expires_at)
        .bind(token.created_at)
        .execute(&mut *tx)
        .await
        .map_err(|e| StoreError::from_write(e, "token"))?;
        let mut entry = audit::entry(
            actor,
            "create",
            "token",
            token.id,
            None,
            Some(audit_view(&token)),
        );
        if let Some(p) = token.project_id {
            entry = entry.in_project(p);
        }
        audit::insert(&mut tx, &entry).await?;
        tx.commit().await?;
        Ok((token, secret))
    }

    /// Finds the live token whose secret is `secret` at `now`: not expired, and its owner (if
    /// any) not disabled.
    pub async fn authenticate_token(&self, secret: &str, now: Micros) -> Result<Option<ApiToken>> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM api_tokens t LEFT JOIN users u ON u.id = t.user_id \
             WHERE t.token_hash = $1 AND (t.expires_at IS NULL OR t.expires_at > $2) \
             AND (t.user_id IS NULL OR u.disabled = $3)"
        ))
        .bind(token_digest(secret))
        .bind(now)
        .bind(false)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| from_row(&r)).transpose()
    }

    /// One token.
    pub async fn get_token(&self, id: Uuid) -> Result<Option<ApiToken>> {
        sqlx::query(&format!(
            "SELECT {COLUMNS} FROM api_tokens t WHERE t.id = $1"
        ))
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?
        .map(|r| from_row(&r))
        .transpose()
    }

    /// One page of tokens ordered by id, of one owner when given.
    pub async fn list_tokens(
        &self,
        owner: Option<Uuid>,
        after: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<ApiToken>> {
        sqlx::query(&format!(
            "SELECT {COLUMNS} FROM api_tokens t WHERE ($1 = '' OR t.user_id = $1) AND t.id > $2 \
             ORDER BY t.id LIMIT $3"
        ))
        .bind(owner.map(|u| u.to_string()).unwrap_or_default())
        .bind(after.map(|a| a.to_string()).unwrap_or_default())
        .bind(limit)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(from_row)
        .collect()
    }

    /// Revokes a token; `false` when there was none.
    pub async fn delete_token(&self, id: Uuid, actor: &str) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let Some(t) = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM api_tokens t WHERE t.id = $1"
        ))
        .bind(id.to_string())
        .fetch_optional(&mut *tx)
        .await?
        .map(|r| from_row(&r))
        .transpose()?
        else {
            return Ok(false);
        };
        sqlx::query("DELETE FROM api_tokens WHERE id = $1")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        let mut entry = audit::entry(actor, "delete", "token", id, Some(audit_view(&t)), None);
        if let Some(p) = t.project_id {
            entry = entry.in_project(p);
        }
        audit::insert(&mut tx, &entry).await?;
        tx.commit().await?;
        Ok(true)
    }
}
