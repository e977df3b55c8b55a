//! API tokens: bearer secrets for the management API, stored only as SHA-256 digests.

use rand::RngCore;
use serde::Serialize;
use sha2::{Digest, Sha256};
use sluice_core::clock::{now_us, Micros};
use sqlx::Row;
use uuid::Uuid;

use crate::db::Store;
use crate::error::{Result, StoreError};
use crate::rows;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything, on every project.
    Superuser,
    /// Read-only.
    Viewer,
    /// Read and change channels.
    Editor,
    /// Editor plus credentials, auth methods, members.
    Admin,
}

impl Role {
    /// Storage and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Superuser => "superuser",
            Role::Viewer => "viewer",
            Role::Editor => "editor",
            Role::Admin => "admin",
        }
    }

    /// Parses a storage or wire name.
    pub fn parse(s: &str) -> Option<Self> {
        [Role::Superuser, Role::Viewer, Role::Editor, Role::Admin]
            .into_iter()
            .find(|r| r.as_str() == s)
    }

    /// Whether this role may change channels.
    pub fn can_edit(self) -> bool {
        !matches!(self, Role::Viewer)
    }
}

/// A token as stored (never the secret itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiToken {
    /// Identifier.
    pub id: Uuid,
    /// Human name, used as the audit actor.
    pub name: String,
    /// Granted role.
    pub role: Role,
    /// Creation time.
    pub created_at: Micros,
}

/// The stored digest of a presented token.
pub fn token_digest(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

impl Store {
    /// Creates a token and returns it with its secret (shown once, stored hashed).
    pub async fn create_api_token(&self, name: &str, role: Role) -> Result<(ApiToken, String)> {
        let mut raw = [0u8; 32];
        rand::rng().fill_bytes(&mut raw);
        let secret = format!("slc_{}", hex::encode(raw));
        let token = ApiToken {
            id: Uuid::now_v7(),
            name: name.to_string(),
            role,
            created_at: now_us(),
        };
        sqlx::query(
            "INSERT INTO api_tokens (id, name, token_hash, role, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(token.id.to_string())
        .bind(&token.name)
        .bind(token_digest(&secret))
        .bind(role.as_str())
        .bind(token.created_at)
        .execute(&self.pool)
        .await
        .map_err(|e| StoreError::from_write(e, "token"))?;
        Ok((token, secret))
    }

    /// Finds the token whose secret is `secret`.
    pub async fn authenticate_token(&self, secret: &str) -> Result<Option<ApiToken>> {
        let row =
            sqlx::query("SELECT id, name, role, created_at FROM api_tokens WHERE token_hash = $1")
                .bind(token_digest(secret))
                .fetch_optional(&self.pool)
                .await?;
        row.map(|r| {
            let role: String = r.try_get("role")?;
            Ok(ApiToken {
                id: rows::uuid(&r, "id")?,
                name: r.try_get("name")?,
                role: Role::parse(&role).ok_or_else(|| StoreError::Corrupt(role.clone()))?,
                created_at: r.try_get("created_at")?,
            })
        })
        .transpose()
    }
}
