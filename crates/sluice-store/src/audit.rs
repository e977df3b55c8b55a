//! The audit trail: who changed which configuration, when, with before and after values.

use serde::Serialize;
use serde_json::Value;
use sluice_core::clock::Micros;
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};
use uuid::Uuid;

use crate::db::Store;
use crate::error::Result;
use crate::rows;

/// One recorded configuration change.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEntry {
    /// Identifier (time-ordered).
    pub id: Uuid,
    /// When the change was made.
    pub at: Micros,
    /// Who made it (token or user name).
    pub actor: String,
    /// `create`, `update` or `delete`.
    pub action: String,
    /// Kind of resource, e.g. `channel`.
    pub resource_type: String,
    /// The resource's id.
    pub resource_id: String,
    /// The value before the change.
    pub before: Option<Value>,
    /// The value after the change.
    pub after: Option<Value>,
    /// The project the resource belongs to (none for users, tokens, sign-ins and projects'
    /// own entries are theirs): only the project's members read the entry.
    pub project_id: Option<Uuid>,
}

impl AuditEntry {
    /// This entry, belonging to `project`.
    pub(crate) fn in_project(mut self, project: Uuid) -> Self {
        self.project_id = Some(project);
        self
    }
}

/// Which audit entries a reader may see.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum AuditScope {
    /// Every entry, instance-wide ones (users, tokens, sign-ins) included.
    #[default]
    All,
    /// Entries of any project, none instance-wide.
    AnyProject,
    /// Entries of these projects only.
    Projects(Vec<Uuid>),
}

/// Which audit entries to list.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Only this resource type.
    pub resource_type: Option<String>,
    /// Only this resource id.
    pub resource_id: Option<String>,
    /// Only entries by this actor (`user:ann`, `token:deploy`, …).
    pub actor: Option<String>,
    /// Which entries the reader may see.
    pub scope: AuditScope,
    /// Continue after this `(at, id)`.
    pub after: Option<(Micros, String)>,
    /// Page size.
    pub limit: i64,
}

pub(crate) async fn insert(tx: &mut Transaction<'_, Any>, e: &AuditEntry) -> Result<()> {
    sqlx::query(
        "INSERT INTO audit_entries \
         (id, at, actor, action, resource_type, resource_id, before_value, after_value, \
          project_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(e.id.to_string())
    .bind(e.at)
    .bind(&e.actor)
    .bind(&e.action)
    .bind(&e.resource_type)
    .bind(&e.resource_id)
    .bind(e.before.as_ref().map(rows::to_json))
    .bind(e.after.as_ref().map(rows::to_json))
    .bind(e.project_id.map(|p| p.to_string()))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

fn from_row(r: &AnyRow) -> Result<AuditEntry> {
    let before: Option<String> = r.try_get("before_value")?;
    let after: Option<String> = r.try_get("after_value")?;
    Ok(AuditEntry {
        id: rows::uuid(r, "id")?,
        at: r.try_get("at")?,
        actor: r.try_get("actor")?,
        action: r.try_get("action")?,
        resource_type: r.try_get("resource_type")?,
        resource_id: r.try_get("resource_id")?,
        before: before.and_then(|s| serde_json::from_str(&s).ok()),
        after: after.and_then(|s| serde_json::from_str(&s).ok()),
        project_id: rows::opt_uuid(r, "project_id")?,
    })
}

impl Store {
    /// Lists audit entries, newest first.
    pub async fn list_audit(&self, f: &AuditFilter) -> Result<Vec<AuditEntry>> {
        let mut sql = String::from(
            "SELECT id, at, actor, action, resource_type, resource_id, before_value, after_value, \
             project_id FROM audit_entries WHERE 1 = 1",
        );
        let mut args: Vec<String> = Vec::new();
        if let Some(t) = &f.resource_type {
            args.push(t.clone());
            sql.push_str(&format!(" AND resource_type = ${}", args.len()));
        }
        if let Some(id) = &f.resource_id {
            args.push(id.clone());
            sql.push_str(&format!(" AND resource_id = ${}", args.len()));
        }
        if let Some(actor) = &f.actor {
            args.push(actor.clone());
            sql.push_str(&format!(" AND actor = ${}", args.len()));
        }
        match &f.scope {
            AuditScope::All => {}
            AuditScope::AnyProject => sql.push_str(" AND project_id IS NOT NULL"),
            AuditScope::Projects(p) if p.is_empty() => return Ok(Vec::new()),
            AuditScope::Projects(p) => {
                let first = args.len() + 1;
                args.extend(p.iter().map(Uuid::to_string));
                let list: Vec<String> = (first..=args.len()).map(|i| format!("${i}")).collect();
                sql.push_str(&format!(" AND project_id IN ({})", list.join(", ")));
            }
        }
        let mut q_after = None;
        if let Some((at, id)) = &f.after {
            args.push(id.clone());
            sql.push_str(&format!(
                " AND (at < ${n} OR (at = ${n} AND id < ${m}))",
                n = args.len() + 1,
                m = args.len()
            ));
            q_after = Some(*at);
        }
        sql.push_str(" ORDER BY at DESC, id DESC LIMIT ");
        sql.push_str(&f.limit.to_string());
        let mut q = sqlx::query(&sql);
        for a in &args {
            q = q.bind(a);
        }
        if let Some(at) = q_after {
            q = q.bind(at);
        }
        q.fetch_all(&self.pool)
            .await?
            .iter()
            .map(from_row)
            .collect()
    }
}

/// An entry for a change made now by `actor` to the resource `id` (its id, or a setting's
/// name).
pub(crate) fn entry(
    actor: &str,
    action: &str,
    resource_type: &str,
    id: impl std::fmt::Display,
    before: Option<Value>,
    after: Option<Value>,
) -> AuditEntry {
    AuditEntry {
        id: Uuid::now_v7(),
        at: sluice_core::clock::now_us(),
        actor: actor.to_string(),
        action: action.to_string(),
        resource_type: resource_type.to_string(),
        resource_id: id.to_string(),
        before,
        after,
        project_id: None,
    }
}
