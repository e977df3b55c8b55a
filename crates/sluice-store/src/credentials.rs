//! Sink credentials: typed secret bodies sealed at rest (see [`crate::secrets`]).

use serde::Serialize;
use serde_json::{json, Value};
use sluice_core::clock::{now_us, Micros};
use sluice_core::keyring::Sealed;
use sqlx::any::AnyRow;
use sqlx::Row;
use uuid::Uuid;

use crate::audit;
use crate::auth_methods::RemoveOutcome;
use crate::changes::Change;
use crate::db::Store;
use crate::error::{Result, StoreError};
use crate::rows;
use crate::secrets::Secrets;

const COLUMNS: &str =
    "id, project_id, name, schema_name, key_id, sealed_body, version, created_at, updated_at";

/// A credential with its body opened.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Credential {
    /// Identifier.
    pub id: Uuid,
    /// Owning project.
    pub project_id: Uuid,
    /// Name, unique within the project.
    pub name: String,
    /// Schema (adaptor) name: `http`, `dhis2`, `oauth`, …
    pub schema: String,
    /// The fields, secrets included: never log or return this as a whole.
    #[serde(skip)]
    pub body: Value,
    /// Id of the key the body is sealed under.
    pub key_id: String,
    /// Bumped on every change, token refreshes included.
    pub version: i64,
    /// Creation time.
    pub created_at: Micros,
    /// Last change.
    pub updated_at: Micros,
}

fn field_names(body: &Value) -> Vec<String> {
    body.as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

/// What an audit entry shows of a credential: names of its fields, never values.
fn audit_view(c: &Credential) -> Value {
    json!({
        "name": c.name,
        "schema": c.schema,
        "project_id": c.project_id,
        "fields": field_names(&c.body),
    })
}

impl Store {
    /// Uses `secrets` to seal and open credential bodies.
    pub fn with_secrets(mut self, secrets: std::sync::Arc<Secrets>) -> Self {
        self.secrets = Some(secrets);
        self
    }

    fn secrets(&self) -> Result<&Secrets> {
        self.secrets
            .as_deref()
            .ok_or_else(|| StoreError::Secrets("no secret key configured".into()))
    }

    fn seal_body(&self, id: Uuid, body: &Value) -> Result<Sealed> {
        self.secrets()?
            .seal(rows::to_json(body).as_bytes(), id.as_bytes())
    }

    fn open_row(&self, r: &AnyRow) -> Result<Credential> {
        let id = rows::uuid(r, "id")?;
        let sealed = Sealed {
            key_id: r.try_get("key_id")?,
            data: r.try_get("sealed_body")?,
        };
        let plain = self.secrets()?.open(&sealed, id.as_bytes())?;
        Ok(Credential {
            id,
            project_id: rows::uuid(r, "project_id")?,
            name: r.try_get("name")?,
            schema: r.try_get("schema_name")?,
            body: serde_json::from_slice(&plain)
                .map_err(|e| StoreError::Corrupt(format!("credential body: {e}")))?,
            key_id: sealed.key_id,
            version: r.try_get("version")?,
            created_at: r.try_get("created_at")?,
            updated_at: r.try_get("updated_at")?,
        })
    }

    /// Stores a new credential, sealed, with its audit entry. Returns it as stored.
    pub async fn create_credential(&self, c: &Credential, actor: &str) -> Result<Credential> {
        let sealed = self.seal_body(c.id, &c.body)?;
        let mut tx = self.begin_write().await?;
        sqlx::query(&format!(
            "INSERT INTO credentials ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        ))
        .bind(c.id.to_string())
        .bind(c.project_id.to_string())
        .bind(&c.name)
        .bind(&c.schema)
        .bind(&sealed.key_id)
        .bind(&sealed.data)
        .bind(1i64)
        .bind(c.created_at)
        .bind(c.updated_at)
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            StoreError::from_write(
                e,
                "a credential with this name already exists in the project",
            )
        })?;
        let stored = Credential {
            key_id: sealed.key_id,
            version: 1,
            ..c.clone()
        };
        audit::insert(
            &mut tx,
            &audit::entry(
                actor,
                "create",
                "credential",
                c.id,
                None,
                Some(audit_view(&stored)),
            )
            .in_project(stored.project_id),
        )
        .await?;
        tx.commit().await?;
        self.publish(Change::Credential(c.id));
        Ok(stored)
    }

    /// One credential, opened.
    pub async fn get_credential(&self, id: Uuid) -> Result<Option<Credential>> {
        sqlx::query(&format!("SELECT {COLUMNS} FROM credentials WHERE id = $1"))
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?
            .map(|r| self.open_row(&r))
            .transpose()
    }

    /// Project and schema of a credential, without opening it.
    pub async fn credential_schema(&self, id: Uuid) -> Result<Option<(Uuid, String)>> {
        sqlx::query("SELECT project_id, schema_name FROM credentials WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?
            .map(|r| Ok((rows::uuid(&r, "project_id")?, r.try_get("schema_name")?)))
            .transpose()
    }

    /// Lists credentials ordered by id, of the projects in `scope` only when given, after the id `after`.
    pub async fn list_credentials(
        &self,
        scope: Option<&[Uuid]>,
        after: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<Credential>> {
        rows::page_by_id(
            &self.pool,
            "credentials",
            COLUMNS,
            "project_id",
            scope,
            after,
            limit,
        )
        .await?
        .iter()
        .map(|r| self.open_row(r))
        .collect()
    }

    /// Replaces name and body of credential `c.id` if it is still at `c.version`; the audit
    /// entry names `changed` fields only. Returns the stored credential.
    pub async fn update_credential(
        &self,
        c: &Credential,
        changed: &[String],
        actor: &str,
    ) -> Result<Credential> {
        let before = self
            .get_credential(c.id)
            .await?
            .ok_or(StoreError::NotFound)?;
        let mut tx = self.begin_write().await?;
        let stored = self.write_body(&mut tx, c).await?;
        let mut after = audit_view(&stored);
        after["changed_fields"] = json!(changed);
        audit::insert(
            &mut tx,
            &audit::entry(
                actor,
                "update",
                "credential",
                c.id,
                Some(audit_view(&before)),
                Some(after),
            )
            .in_project(before.project_id),
        )
        .await?;
        tx.commit().await?;
        self.publish(Change::Credential(c.id));
        Ok(stored)
    }

    /// Stores tokens obtained by a refresh (not a configuration change: no audit entry).
    /// Returns `false` if the credential changed meanwhile (the refresh result is dropped).
    pub async fn store_refreshed_credential(&self, c: &Credential) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let done = match self.write_body(&mut tx, c).await {
            Ok(_) => true,
            Err(StoreError::Stale) => false,
            Err(e) => return Err(e),
        };
        tx.commit().await?;
        if done {
            self.publish(Change::Credential(c.id));
        }
        Ok(done)
    }

    async fn write_body(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        c: &Credential,
    ) -> Result<Credential> {
        let sealed = self.seal_body(c.id, &c.body)?;
        let now = now_us();
        let done = sqlx::query(
            "UPDATE credentials SET name = $1, key_id = $2, sealed_body = $3, version = $4, \
             updated_at = $5 WHERE id = $6 AND version = $7",
        )
        .bind(&c.name)
        .bind(&sealed.key_id)
        .bind(&sealed.data)
        .bind(c.version + 1)
        .bind(now)
        .bind(c.id.to_string())
        .bind(c.version)
        .execute(&mut **tx)
        .await
        .map_err(|e| {
            StoreError::from_write(
                e,
                "a credential with this name already exists in the project",
            )
        })?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Stale);
        }
        Ok(Credential {
            key_id: sealed.key_id,
            version: c.version + 1,
            updated_at: now,
            ..c.clone()
        })
    }

    /// Deletes a credential unless a channel uses it.
    pub async fn delete_credential(&self, id: Uuid, actor: &str) -> Result<RemoveOutcome> {
        let Some(before) = self.get_credential(id).await? else {
            return Ok(RemoveOutcome::NotFound);
        };
        let mut tx = self.begin_write().await?;
        let users =
            sqlx::query("SELECT id FROM channels WHERE sink_credential_id = $1 ORDER BY id")
                .bind(id.to_string())
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|r| rows::uuid(r, "id"))
                .collect::<Result<Vec<_>>>()?;
        if !users.is_empty() {
            return Ok(RemoveOutcome::InUse(users));
        }
        let done = sqlx::query("DELETE FROM credentials WHERE id = $1")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Ok(RemoveOutcome::NotFound);
        }
        audit::insert(
            &mut tx,
            &audit::entry(
                actor,
                "delete",
                "credential",
                id,
                Some(audit_view(&before)),
                None,
            )
            .in_project(before.project_id),
        )
        .await?;
        tx.commit().await?;
        self.publish(Change::Credential(id));
        Ok(RemoveOutcome::Deleted)
    }

    /// Re-seals every credential not sealed under the newest key; returns how many.
    /// Each row is replaced only if it still holds what was read, so concurrent edits win.
    pub async fn reseal_credentials(&self) -> Result<usize> {
        let secrets = self.secrets()?;
        let current = secrets.keyring().current_id().to_string();
        let rows =
            sqlx::query("SELECT id, key_id, sealed_body FROM credentials WHERE key_id <> $1")
                .bind(&current)
                .fetch_all(&self.pool)
                .await?;
        let mut n = 0;
        for r in &rows {
            let id = rows::uuid(r, "id")?;
            let old = Sealed {
                key_id: r.try_get("key_id")?,
                data: r.try_get("sealed_body")?,
            };
            let plain = secrets.open(&old, id.as_bytes())?;
            let new = secrets.keyring().seal(&plain, id.as_bytes());
            let done = sqlx::query(
                "UPDATE credentials SET key_id = $1, sealed_body = $2 \
                 WHERE id = $3 AND sealed_body = $4",
            )
            .bind(&new.key_id)
            .bind(&new.data)
            .bind(id.to_string())
            .bind(&old.data)
            .execute(&self.pool)
            .await?;
            n += done.rows_affected() as usize;
        }
        Ok(n)
    }
}
