//! Projects, the namespaces that own channels, credentials and auth methods, and their
//! members: a role per user per project.

use std::collections::HashMap;

use serde::Serialize;
use serde_json::{json, Value};
use sluice_core::access::Role;
use sluice_core::clock::{now_us, Micros};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};
use uuid::Uuid;

use crate::audit::{self, AuditEntry};
use crate::changes::Change;
use crate::db::{Backend, Store};
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

/// How a project's requests are recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recording {
    /// Everything the contract records.
    Full,
    /// The fact of each request only: headers, body previews, path, query and client address
    /// are never stored (state, status, method, sizes, timings and hashes are).
    Metadata,
}

impl Recording {
    /// Its name in the API and the `projects` table.
    pub fn as_str(self) -> &'static str {
        match self {
            Recording::Full => "full",
            Recording::Metadata => "metadata",
        }
    }

    /// The mode called `s`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "full" => Some(Recording::Full),
            "metadata" => Some(Recording::Metadata),
            _ => None,
        }
    }
}

impl Store {
    /// How project `id`'s requests are recorded (`Full` for an unknown project).
    pub async fn project_recording(&self, id: Uuid) -> Result<Recording> {
        let mode: Option<String> =
            sqlx::query_scalar("SELECT recording FROM projects WHERE id = $1")
                .bind(id.to_string())
                .fetch_optional(&self.pool)
                .await?;
        Ok(mode
            .as_deref()
            .and_then(Recording::parse)
            .unwrap_or(Recording::Full))
    }

    /// Sets how project `id`'s requests are recorded, with an audit entry, and tells every
    /// node's route table.
    pub async fn set_project_recording(
        &self,
        id: Uuid,
        mode: Recording,
        actor: &str,
    ) -> Result<()> {
        let before = self.project_recording(id).await?;
        if before == mode {
            return Ok(());
        }
        let mut tx = self.begin_write().await?;
        sqlx::query("UPDATE projects SET recording = $2 WHERE id = $1")
            .bind(id.to_string())
            .bind(mode.as_str())
            .execute(&mut *tx)
            .await?;
        let state = |m: Recording| Some(json!({ "recording": m.as_str() }));
        let entry =
            audit::entry(actor, "update", "project", id, state(before), state(mode)).in_project(id);
        audit::insert(&mut tx, &entry).await?;
        tx.commit().await?;
        self.publish(Change::Project(id));
        Ok(())
    }

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
        row.map(|r| project_from_row(&r)).transpose()
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

/// Outcome of deleting a project.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProjectRemoval {
    /// The project and its memberships are gone.
    Deleted,
    /// It still owns channels, credentials or auth methods.
    NotEmpty,
    /// No such project.
    NotFound,
}

/// A user's role in a project.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Member {
    /// The project.
    pub project_id: Uuid,
    /// The user.
    pub user_id: Uuid,
    /// The user's name.
    pub username: String,
    /// The role held.
    pub role: Role,
    /// Since when.
    pub created_at: Micros,
}

fn project_from_row(r: &AnyRow) -> Result<Project> {
    Ok(Project {
        id: rows::uuid(r, "id")?,
        name: r.try_get("name")?,
        created_at: r.try_get("created_at")?,
    })
}

fn role_of(r: &AnyRow) -> Result<Role> {
    let role: String = r.try_get("role")?;
    Role::parse(&role).ok_or_else(|| StoreError::Corrupt(format!("role {role:?}")))
}

fn project_audit(
    actor: &str,
    action: &str,
    p: &Project,
    before: Option<Value>,
    after: Option<Value>,
) -> AuditEntry {
    audit::entry(actor, action, "project", p.id, before, after).in_project(p.id)
}

fn member_view(user_id: Uuid, role: Role) -> Value {
    json!({ "user_id": user_id, "role": role })
}

impl Store {
    /// Creates a project, making `admin` (when given) its first admin, in one transaction.
    pub async fn create_project(
        &self,
        name: &str,
        admin: Option<Uuid>,
        actor: &str,
    ) -> Result<Project> {
        let p = Project {
            id: Uuid::now_v7(),
            name: name.to_string(),
            created_at: now_us(),
        };
        let mut tx = self.begin_write().await?;
        sqlx::query("INSERT INTO projects (id, name, created_at) VALUES ($1, $2, $3)")
            .bind(p.id.to_string())
            .bind(&p.name)
            .bind(p.created_at)
            .execute(&mut *tx)
            .await
            .map_err(|e| StoreError::from_write(e, "a project with this name already exists"))?;
        audit::insert(
            &mut tx,
            &project_audit(actor, "create", &p, None, Some(json!({ "name": p.name }))),
        )
        .await?;
        if let Some(user) = admin {
            insert_member(&mut tx, p.id, user, Role::Admin, actor).await?;
        }
        tx.commit().await?;
        Ok(p)
    }

    /// One project.
    pub async fn get_project(&self, id: Uuid) -> Result<Option<Project>> {
        sqlx::query("SELECT id, name, created_at FROM projects WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?
            .map(|r| project_from_row(&r))
            .transpose()
    }

    /// One page of projects ordered by id, of `scope` only when given.
    pub async fn list_projects(
        &self,
        scope: Option<&[Uuid]>,
        after: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<Project>> {
        rows::page_by_id(
            &self.pool,
            "projects",
            "id, name, created_at",
            "id",
            scope,
            after,
            limit,
        )
        .await?
        .iter()
        .map(project_from_row)
        .collect()
    }

    /// Renames a project.
    pub async fn rename_project(&self, id: Uuid, name: &str, actor: &str) -> Result<Project> {
        let mut tx = self.begin_write().await?;
        let before = sqlx::query("SELECT id, name, created_at FROM projects WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| project_from_row(&r))
            .transpose()?
            .ok_or(StoreError::NotFound)?;
        sqlx::query("UPDATE projects SET name = $2 WHERE id = $1")
            .bind(id.to_string())
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(|e| StoreError::from_write(e, "a project with this name already exists"))?;
        let after = Project {
            name: name.to_string(),
            ..before.clone()
        };
        audit::insert(
            &mut tx,
            &project_audit(
                actor,
                "update",
                &after,
                Some(json!({ "name": before.name })),
                Some(json!({ "name": name })),
            ),
        )
        .await?;
        tx.commit().await?;
        Ok(after)
    }

    /// Deletes a project and its memberships, unless it still owns channels, credentials or
    /// auth methods.
    pub async fn delete_project(&self, id: Uuid, actor: &str) -> Result<ProjectRemoval> {
        let mut tx = self.begin_write().await?;
        let Some(p) = sqlx::query("SELECT id, name, created_at FROM projects WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| project_from_row(&r))
            .transpose()?
        else {
            return Ok(ProjectRemoval::NotFound);
        };
        let owned: i64 = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM channels WHERE project_id = $1) \
             + (SELECT COUNT(*) FROM credentials WHERE project_id = $1) \
             + (SELECT COUNT(*) FROM auth_methods WHERE project_id = $1) AS n",
        )
        .bind(id.to_string())
        .fetch_one(&mut *tx)
        .await?
        .try_get("n")?;
        if owned > 0 {
            return Ok(ProjectRemoval::NotEmpty);
        }
        for sql in [
            "DELETE FROM memberships WHERE project_id = $1",
            "DELETE FROM api_tokens WHERE project_id = $1",
            "DELETE FROM projects WHERE id = $1",
        ] {
            sqlx::query(sql)
                .bind(id.to_string())
                .execute(&mut *tx)
                .await?;
        }
        audit::insert(
            &mut tx,
            &project_audit(actor, "delete", &p, Some(json!({ "name": p.name })), None),
        )
        .await?;
        tx.commit().await?;
        Ok(ProjectRemoval::Deleted)
    }

    /// The projects `user_id` is a member of, with the role held in each.
    pub async fn user_memberships(&self, user_id: Uuid) -> Result<HashMap<Uuid, Role>> {
        sqlx::query("SELECT project_id, role FROM memberships WHERE user_id = $1")
            .bind(user_id.to_string())
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| Ok((rows::uuid(r, "project_id")?, role_of(r)?)))
            .collect()
    }

    /// The members of a project, by user id.
    pub async fn list_members(&self, project_id: Uuid) -> Result<Vec<Member>> {
        sqlx::query(
            "SELECT m.project_id, m.user_id, u.username, m.role, m.created_at \
             FROM memberships m JOIN users u ON u.id = m.user_id \
             WHERE m.project_id = $1 ORDER BY m.user_id",
        )
        .bind(project_id.to_string())
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| {
            Ok(Member {
                project_id: rows::uuid(r, "project_id")?,
                user_id: rows::uuid(r, "user_id")?,
                username: r.try_get("username")?,
                role: role_of(r)?,
                created_at: r.try_get("created_at")?,
            })
        })
        .collect()
    }

    /// Gives `user_id` `role` in the project (adding or changing the membership). Taking the
    /// last admin's role away is a conflict: a project always keeps one.
    pub async fn put_member(
        &self,
        project_id: Uuid,
        user_id: Uuid,
        role: Role,
        actor: &str,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let before = lock_members(self, &mut tx, project_id, user_id).await?;
        if before == Some(Role::Admin) && role != Role::Admin {
            keep_an_admin(&mut tx, project_id, user_id).await?;
        }
        sqlx::query("DELETE FROM memberships WHERE project_id = $1 AND user_id = $2")
            .bind(project_id.to_string())
            .bind(user_id.to_string())
            .execute(&mut *tx)
            .await?;
        insert_member(&mut tx, project_id, user_id, role, actor).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Removes `user_id` from the project; `false` when they were not a member. Removing the
    /// last admin is a conflict.
    pub async fn delete_member(
        &self,
        project_id: Uuid,
        user_id: Uuid,
        actor: &str,
    ) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let Some(before) = lock_members(self, &mut tx, project_id, user_id).await? else {
            return Ok(false);
        };
        if before == Role::Admin {
            keep_an_admin(&mut tx, project_id, user_id).await?;
        }
        sqlx::query("DELETE FROM memberships WHERE project_id = $1 AND user_id = $2")
            .bind(project_id.to_string())
            .bind(user_id.to_string())
            .execute(&mut *tx)
            .await?;
        audit::insert(
            &mut tx,
            &audit::entry(
                actor,
                "delete",
                "membership",
                user_id,
                Some(member_view(user_id, before)),
                None,
            )
            .in_project(project_id),
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }
}

/// Serialises membership changes of one project (PostgreSQL; SQLite's write lock already
/// does) and reads `user_id`'s current role.
async fn lock_members(
    store: &Store,
    tx: &mut Transaction<'_, Any>,
    project_id: Uuid,
    user_id: Uuid,
) -> Result<Option<Role>> {
    if store.backend() == Backend::Postgres {
        sqlx::query("SELECT id FROM projects WHERE id = $1 FOR UPDATE")
            .bind(project_id.to_string())
            .execute(&mut **tx)
            .await?;
    }
    sqlx::query("SELECT role FROM memberships WHERE project_id = $1 AND user_id = $2")
        .bind(project_id.to_string())
        .bind(user_id.to_string())
        .fetch_optional(&mut **tx)
        .await?
        .map(|r| role_of(&r))
        .transpose()
}

/// Fails unless the project has an admin besides `user_id`.
async fn keep_an_admin(
    tx: &mut Transaction<'_, Any>,
    project_id: Uuid,
    user_id: Uuid,
) -> Result<()> {
    let others: i64 = sqlx::query(
        "SELECT COUNT(*) AS n FROM memberships WHERE project_id = $1 AND role = 'admin' AND user_id <> $2",
    )
    .bind(project_id.to_string())
    .bind(user_id.to_string())
    .fetch_one(&mut **tx)
    .await?
    .try_get("n")?;
    if others == 0 {
        return Err(StoreError::Conflict(
            "a project must keep at least one admin".into(),
        ));
    }
    Ok(())
}

async fn insert_member(
    tx: &mut Transaction<'_, Any>,
    project_id: Uuid,
    user_id: Uuid,
    role: Role,
    actor: &str,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO memberships (project_id, user_id, role, created_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(project_id.to_string())
    .bind(user_id.to_string())
    .bind(role.as_str())
    .bind(now_us())
    .execute(&mut **tx)
    .await?;
    audit::insert(
        tx,
        &audit::entry(
            actor,
            "put",
            "membership",
            user_id,
            None,
            Some(member_view(user_id, role)),
        )
        .in_project(project_id),
    )
    .await
}
