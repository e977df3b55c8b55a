//! Projects: the namespaces that own channels.

use serde::Serialize;
use sluice_core::clock::{now_us, Micros};
use sqlx::Row;
use uuid::Uuid;

use crate::db::Store;
use crate::error::{Result, StoreError};
use crate::rows;

/// Name of the project created on first start.
pub const DEFAULT_PROJECT: &str = "default";

/// A namespace owning channels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Project {
    /// Identifier.
    pub id: Uuid,
    /// Unique name.
    pub name: String,
    /// Creation time.
    pub created_at: Micros,
}

impl Store {
    /// Returns the `default` project, creating it if it does not exist yet (race-safe).
    pub async fn ensure_default_project(&self) -> Result<Project> {
        sqlx::query(
            "INSERT INTO projects (id, name, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(Uuid::now_v7().to_string())
        .bind(DEFAULT_PROJECT)
        .bind(now_us())
        .execute(&self.pool)
        .await?;
        self.project_by_name(DEFAULT_PROJECT)
            .await?
            .ok_or(StoreError::NotFound)
    }

    /// Looks a project up by name.
    pub async fn project_by_name(&self, name: &str) -> Result<Option<Project>> {
        let row = sqlx::query("SELECT id, name, created_at FROM projects WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            Ok(Project {
                id: rows::uuid(&r, "id")?,
                name: r.try_get("name")?,
                created_at: r.try_get("created_at")?,
            })
        })
        .transpose()
    }

    /// Whether a project with this id exists.
    pub async fn project_exists(&self, id: Uuid) -> Result<bool> {
        let row = sqlx::query("SELECT 1 AS one FROM projects WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }
}
