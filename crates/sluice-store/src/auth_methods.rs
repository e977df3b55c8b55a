//! Source auth methods: project-level objects attached to channels. Only hashes are stored.

use serde_json::json;
use sluice_core::source_auth::{AuthKind, AuthMethod};
use sqlx::any::AnyRow;
use sqlx::Row;
use uuid::Uuid;

use crate::audit;
use crate::changes::Change;
use crate::db::Store;
use crate::error::{Result, StoreError};
use crate::rows;

const COLUMNS: &str = "id, project_id, name, kind, username, secret_hash, hint, created_at";

fn from_row(r: &AnyRow) -> Result<AuthMethod> {
    let kind: String = r.try_get("kind")?;
    Ok(AuthMethod {
        id: rows::uuid(r, "id")?,
        project_id: rows::uuid(r, "project_id")?,
        name: r.try_get("name")?,
        kind: AuthKind::parse(&kind).ok_or_else(|| StoreError::Corrupt(format!("kind {kind}")))?,
        username: r.try_get("username")?,
        secret_hash: r.try_get("secret_hash")?,
        hint: r.try_get("hint")?,
        created_at: r.try_get("created_at")?,
    })
}

/// What an audit entry shows of a method: never its secret or hash.
fn audit_view(m: &AuthMethod) -> serde_json::Value {
    let mut fields = vec!["name", "type"];
    if m.username.is_some() {
        fields.extend(["username", "password"]);
    } else {
        fields.push("api_key");
    }
    json!({ "name": m.name, "type": m.kind.as_str(), "project_id": m.project_id, "fields": fields })
}

/// Outcome of deleting a referenced object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoveOutcome {
    /// Gone.
    Deleted,
    /// Still attached to these channels.
    InUse(Vec<Uuid>),
    /// No such object.
    NotFound,
}

impl Store {
    /// Stores a new auth method (already hashed) and its audit entry.
    pub async fn create_auth_method(&self, m: &AuthMethod, actor: &str) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(&format!(
            "INSERT INTO auth_methods ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        ))
        .bind(m.id.to_string())
        .bind(m.project_id.to_string())
        .bind(&m.name)
        .bind(m.kind.as_str())
        .bind(m.username.as_deref())
        .bind(&m.secret_hash)
        .bind(m.hint.as_deref())
        .bind(m.created_at)
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            StoreError::from_write(
                e,
                "an auth method with this name already exists in the project",
            )
        })?;
        audit::insert(
            &mut tx,
            &audit::entry(
                actor,
                "create",
                "auth_method",
                m.id,
                None,
                Some(audit_view(m)),
            )
            .in_project(m.project_id),
        )
        .await?;
        tx.commit().await?;
        self.publish(Change::AuthMethod(m.id));
        Ok(())
    }

    /// One auth method.
    pub async fn get_auth_method(&self, id: Uuid) -> Result<Option<AuthMethod>> {
        sqlx::query(&format!("SELECT {COLUMNS} FROM auth_methods WHERE id = $1"))
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?
            .map(|r| from_row(&r))
            .transpose()
    }

    /// The auth methods among `ids` that exist, in the order of `ids`.
    pub async fn auth_methods_by_ids(&self, ids: &[Uuid]) -> Result<Vec<AuthMethod>> {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(m) = self.get_auth_method(*id).await? {
                out.push(m);
            }
        }
        Ok(out)
    }

    /// Lists auth methods ordered by id, of the projects in `scope` only when given, after the id `after`.
    pub async fn list_auth_methods(
        &self,
        scope: Option<&[Uuid]>,
        after: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<AuthMethod>> {
        rows::page_by_id(
            &self.pool,
            "auth_methods",
            COLUMNS,
            "project_id",
            scope,
            after,
            limit,
        )
        .await?
        .iter()
        .map(from_row)
        .collect()
    }

    /// Deletes an auth method unless a channel still lists it.
    pub async fn delete_auth_method(&self, id: Uuid, actor: &str) -> Result<RemoveOutcome> {
        let mut tx = self.begin_write().await?;
        let Some(m) = sqlx::query(&format!("SELECT {COLUMNS} FROM auth_methods WHERE id = $1"))
            .bind(id.to_string())
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| from_row(&r))
            .transpose()?
        else {
            return Ok(RemoveOutcome::NotFound);
        };
        // Ids are stored as a JSON array of UUID strings; a quoted id cannot match by accident.
        let users =
            sqlx::query("SELECT id FROM channels WHERE source_auth_method_ids LIKE $1 ORDER BY id")
                .bind(format!("%\"{id}\"%"))
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|r| rows::uuid(r, "id"))
                .collect::<Result<Vec<_>>>()?;
        if !users.is_empty() {
            return Ok(RemoveOutcome::InUse(users));
        }
        sqlx::query("DELETE FROM auth_methods WHERE id = $1")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        audit::insert(
            &mut tx,
            &audit::entry(
                actor,
                "delete",
                "auth_method",
                id,
                Some(audit_view(&m)),
                None,
            )
            .in_project(m.project_id),
        )
        .await?;
        tx.commit().await?;
        self.publish(Change::AuthMethod(id));
        Ok(RemoveOutcome::Deleted)
    }
}
