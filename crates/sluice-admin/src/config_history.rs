//! Snapshots and the audit trail: what the configuration was, and who changed it.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::Json;
use serde_json::{json, Value};
use sluice_core::access::Right;
use sluice_core::Snapshot;
use sluice_store::{AuditEntry, AuditFilter, AuditScope};
use uuid::Uuid;

use crate::auth::Caller;
use crate::channels::load;
use crate::error::{ApiError, ApiResult};
use crate::wire;
use crate::AdminState;

fn snapshot_json(s: &Snapshot) -> Value {
    json!({
        "id": s.id,
        "channel_id": s.channel_id,
        "lock_version": s.lock_version,
        "config": s.config,
        "created_at": wire::ts(s.created_at),
    })
}

fn audit_json(a: &AuditEntry) -> Value {
    json!({
        "id": a.id,
        "at": wire::ts(a.at),
        "actor": a.actor,
        "action": a.action,
        "resource_type": a.resource_type,
        "resource_id": a.resource_id,
        "before": a.before,
        "after": a.after,
        "project_id": a.project_id,
    })
}

fn audit_scope(caller: &Caller, asked: Option<Uuid>) -> ApiResult<AuditScope> {
    if asked.is_none() && caller.is_superuser() {
        return Ok(AuditScope::All);
    }
    Ok(match wire::list_scope(caller, asked)? {
        Some(projects) => AuditScope::Projects(projects),
        None => AuditScope::AnyProject,
    })
}

/// `GET /api/v1/channels/{id}/snapshots`
pub async fn list_snapshots(
    State(state): State<AdminState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let ch = load(&state, &caller, Right::Read, &id).await?;
    let limit = wire::limit(q.get("limit").map(String::as_str))?;
    let before = q
        .get("cursor")
        .map(|c| {
            wire::decode_cursor(c)?
                .parse::<i64>()
                .map_err(|_| ApiError::bad_query("cursor", "not a cursor returned by this API"))
        })
        .transpose()?;
    let rows = state.store.list_snapshots(ch.id, before, limit).await?;
    Ok(Json(wire::page(&rows, limit, snapshot_json, |s| {
        s.lock_version.to_string()
    })))
}

/// `GET /api/v1/snapshots/{id}`
pub async fn get_snapshot(
    State(state): State<AdminState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let (s, _) = load_snapshot(&state, &caller, &id).await?;
    Ok(Json(snapshot_json(&s)))
}

/// Snapshot `id` and its channel as it is now, if the caller may read the channel (404
/// otherwise, as for a snapshot that does not exist).
pub async fn load_snapshot(
    state: &AdminState,
    caller: &Caller,
    id: &str,
) -> ApiResult<(Snapshot, sluice_core::Channel)> {
    let id = Uuid::parse_str(id).map_err(|_| ApiError::not_found("snapshot"))?;
    let s = state
        .store
        .get_snapshot(id)
        .await?
        .ok_or_else(|| ApiError::not_found("snapshot"))?;
    let ch = load(state, caller, Right::Read, &s.channel_id.to_string())
        .await
        .map_err(|_| ApiError::not_found("snapshot"))?;
    Ok((s, ch))
}

/// `GET /api/v1/audit?resource_type=&resource_id=&actor=&project_id=&cursor=&limit=`: the entries of
/// the projects the caller may read; instance-wide ones (users, tokens, sign-ins) for
/// superusers only.
pub async fn list_audit(
    State(state): State<AdminState>,
    caller: Caller,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let limit = wire::limit(q.get("limit").map(String::as_str))?;
    let rows = audit_page(&state, &caller, &q, limit).await?;
    Ok(Json(wire::page(&rows, limit, audit_json, |a| {
        format!("{}:{}", a.at, a.id)
    })))
}

/// A page of the audit entries the caller may see, filtered by the query's `resource_type`,
/// `resource_id`, `actor` and `project_id`, after its `cursor`.
pub async fn audit_page(
    state: &AdminState,
    caller: &Caller,
    q: &HashMap<String, String>,
    limit: i64,
) -> ApiResult<Vec<AuditEntry>> {
    let after = q
        .get("cursor")
        .filter(|c| !c.is_empty())
        .map(|c| wire::decode_pair_cursor(c))
        .transpose()?;
    let given = |k: &str| q.get(k).filter(|v| !v.is_empty()).cloned();
    Ok(state
        .store
        .list_audit(&AuditFilter {
            resource_type: given("resource_type"),
            resource_id: given("resource_id"),
            actor: given("actor"),
            scope: audit_scope(caller, wire::uuid_query(q, "project_id")?)?,
            after,
            limit,
        })
        .await?)
}
