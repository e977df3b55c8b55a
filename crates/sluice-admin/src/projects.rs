//! `/api/v1/projects` and their members. Superusers create, rename and delete projects (a
//! project that still owns channels, credentials or auth methods cannot be deleted); a project's
//! admins manage its members, and it always keeps at least one admin.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::IntoResponse;
use axum::Json;
use http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};
use sluice_core::access::{Right, Role};
use sluice_store::projects::Recording;
use sluice_store::{Member, Project, ProjectRemoval, StoreError};
use uuid::Uuid;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::wire;
use crate::AdminState;

/// Body of `POST /projects` and `PATCH /projects/{id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectInput {
    pub name: String,
}

/// Body of `PUT /projects/{id}/members/{user_id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberInput {
    role: String,
}

/// The project as the API shows it.
pub fn project_json(p: &Project) -> Value {
    json!({ "id": p.id, "name": p.name, "created_at": wire::ts(p.created_at) })
}

fn member_json(m: &Member) -> Value {
    json!({
        "project_id": m.project_id,
        "user_id": m.user_id,
        "username": m.username,
        "role": m.role,
        "created_at": wire::ts(m.created_at),
    })
}

fn checked_name(input: ProjectInput) -> ApiResult<String> {
    wire::check_name(&input.name).map_err(|why| ApiError::field("name", why))?;
    Ok(input.name)
}

fn duplicate() -> ApiError {
    ApiError::field("name", "a project with this name already exists")
}

/// Loads a project the caller may read, or answers 404.
pub async fn load(state: &AdminState, caller: &Caller, id: &str) -> ApiResult<Project> {
    let id = Uuid::parse_str(id).map_err(|_| ApiError::not_found("project"))?;
    caller.allow(Right::Read, Some(id), "project")?;
    state
        .store
        .get_project(id)
        .await?
        .ok_or_else(|| ApiError::not_found("project"))
}

/// `GET /api/v1/projects`: the projects the caller may read.
pub async fn list(
    State(state): State<AdminState>,
    caller: Caller,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let (limit, after) = wire::id_page(&q)?;
    let scope = caller.readable_projects();
    let rows = state
        .store
        .list_projects(scope.as_deref(), after, limit)
        .await?;
    Ok(Json(wire::page(&rows, limit, project_json, |p| {
        p.id.to_string()
    })))
}

/// `POST /api/v1/projects`: the signed-in creator becomes its admin.
pub async fn create(
    State(state): State<AdminState>,
    caller: Caller,
    body: Bytes,
) -> ApiResult<impl IntoResponse> {
    caller.allow(Right::ManageInstance, None, "project")?;
    let p = create_project(&state, &caller, wire::parse_body(&body)?).await?;
    Ok((StatusCode::CREATED, Json(project_json(&p))))
}

/// Creates a project (superusers only); a signed-in creator becomes its admin.
pub async fn create_project(
    state: &AdminState,
    caller: &Caller,
    input: ProjectInput,
) -> ApiResult<Project> {
    caller.allow(Right::ManageInstance, None, "project")?;
    let name = checked_name(input)?;
    let admin = caller.user.as_ref().map(|u| u.id);
    match state
        .store
        .create_project(&name, admin, caller.actor())
        .await
    {
        Ok(p) => Ok(p),
        Err(StoreError::Conflict(_)) => Err(duplicate()),
        Err(e) => Err(e.into()),
    }
}

/// `GET /api/v1/projects/{id}`
pub async fn get(
    State(state): State<AdminState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let p = load(&state, &caller, &id).await?;
    Ok(Json(project_view(&state, &p).await?))
}

/// A project with how its requests are recorded.
async fn project_view(state: &AdminState, p: &Project) -> ApiResult<Value> {
    let mut body = project_json(p);
    body["recording"] = state.store.project_recording(p.id).await?.as_str().into();
    Ok(body)
}

/// Body of `PATCH /projects/{id}`: each field optional.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectPatch {
    /// A new name (superusers).
    name: Option<String>,
    /// `full` or `metadata` (the project's admins).
    recording: Option<String>,
}

/// `PATCH /api/v1/projects/{id}`: renames it (superusers), or sets how its requests are
/// recorded (`"recording": "full" | "metadata"`, its admins).
pub async fn patch(
    State(state): State<AdminState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let mut p = load(&state, &caller, &id).await?;
    let input: ProjectPatch = wire::parse_body(&body)?;
    let recording = match input.recording.as_deref() {
        None => None,
        Some(mode) => Some(recording_change(&caller, &p, mode)?),
    };
    if let Some(name) = input.name {
        caller.allow(Right::ManageInstance, Some(p.id), "project")?;
        let name = checked_name(ProjectInput { name })?;
        p = match state
            .store
            .rename_project(p.id, &name, caller.actor())
            .await
        {
            Ok(p) => p,
            Err(StoreError::Conflict(_)) => return Err(duplicate()),
            Err(e) => return Err(e.into()),
        };
    }
    if let Some(mode) = recording {
        state
            .store
            .set_project_recording(p.id, mode, caller.actor())
            .await?;
    }
    Ok(Json(project_view(&state, &p).await?))
}

/// The recording mode called `mode`, if the caller administers project `p`.
fn recording_change(caller: &Caller, p: &Project, mode: &str) -> ApiResult<Recording> {
    caller.allow(Right::ManageProject, Some(p.id), "project")?;
    let why = "must be full or metadata";
    Recording::parse(mode).ok_or_else(|| ApiError::field("recording", why))
}

/// Sets how project `id`'s requests are recorded (`full` or `metadata`), if the caller
/// administers it.
pub async fn set_recording(
    state: &AdminState,
    caller: &Caller,
    id: &str,
    mode: &str,
) -> ApiResult<()> {
    let p = load(state, caller, id).await?;
    let mode = recording_change(caller, &p, mode)?;
    state
        .store
        .set_project_recording(p.id, mode, caller.actor())
        .await?;
    Ok(())
}

/// `DELETE /api/v1/projects/{id}`: 409 while it owns channels, credentials or auth methods.
pub async fn delete(
    State(state): State<AdminState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    remove_project(&state, &caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Deletes an empty project other than the default one (superusers only).
pub async fn remove_project(state: &AdminState, caller: &Caller, id: &str) -> ApiResult<()> {
    let p = load(state, caller, id).await?;
    caller.allow(Right::ManageInstance, Some(p.id), "project")?;
    if p.id == state.default_project {
        return Err(ApiError::conflict(
            "the default project cannot be deleted",
            json!({}),
        ));
    }
    match state.store.delete_project(p.id, caller.actor()).await? {
        ProjectRemoval::Deleted => Ok(()),
        ProjectRemoval::NotFound => Err(ApiError::not_found("project")),
        ProjectRemoval::NotEmpty => Err(ApiError::conflict(
            "project still owns channels, credentials or auth methods; delete them first",
            json!({}),
        )),
    }
}

/// `GET /api/v1/projects/{id}/members`
pub async fn list_members(
    State(state): State<AdminState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let p = load(&state, &caller, &id).await?;
    let members = state.store.list_members(p.id).await?;
    Ok(Json(json!({
        "items": members.iter().map(member_json).collect::<Vec<_>>(),
        "next_cursor": null,
    })))
}

fn user_id(raw: &str) -> ApiResult<Uuid> {
    Uuid::parse_str(raw).map_err(|_| ApiError::not_found("member"))
}

/// `GET /api/v1/projects/{id}/members/{user_id}`
pub async fn get_member(
    State(state): State<AdminState>,
    caller: Caller,
    Path((id, user)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let p = load(&state, &caller, &id).await?;
    let user = user_id(&user)?;
    let members = state.store.list_members(p.id).await?;
    members
        .iter()
        .find(|m| m.user_id == user)
        .map(|m| Json(member_json(m)))
        .ok_or_else(|| ApiError::not_found("member"))
}

/// `PUT /api/v1/projects/{id}/members/{user_id}`: `{"role": "viewer" | "editor" | "admin"}`.
pub async fn put_member(
    State(state): State<AdminState>,
    caller: Caller,
    Path((id, user)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let p = load(&state, &caller, &id).await?;
    caller.allow(Right::ManageProject, Some(p.id), "project")?;
    user_id(&user)?;
    let input: MemberInput = wire::parse_body(&body)?;
    set_member(&state, &caller, &id, &user, &input.role).await?;
    get_member(State(state), caller, Path((id, user))).await
}

/// Gives `user` the role `role` (`viewer`, `editor` or `admin`) in project `id`, if the caller
/// may manage the project.
pub async fn set_member(
    state: &AdminState,
    caller: &Caller,
    id: &str,
    user: &str,
    role: &str,
) -> ApiResult<()> {
    let p = load(state, caller, id).await?;
    caller.allow(Right::ManageProject, Some(p.id), "project")?;
    let user = user_id(user)?;
    let role = Role::parse(role)
        .filter(|r| Role::MEMBER_ROLES.contains(r))
        .ok_or_else(|| ApiError::field("role", "must be viewer, editor or admin"))?;
    if state.store.get_user(user).await?.is_none() {
        return Err(ApiError::not_found("user"));
    }
    state
        .store
        .put_member(p.id, user, role, caller.actor())
        .await?;
    Ok(())
}

/// `DELETE /api/v1/projects/{id}/members/{user_id}`: 409 for the last admin.
pub async fn delete_member(
    State(state): State<AdminState>,
    caller: Caller,
    Path((id, user)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    remove_member(&state, &caller, &id, &user).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Removes `user` from project `id` (409 for its last admin), if the caller may manage it.
pub async fn remove_member(
    state: &AdminState,
    caller: &Caller,
    id: &str,
    user: &str,
) -> ApiResult<()> {
    let p = load(state, caller, id).await?;
    caller.allow(Right::ManageProject, Some(p.id), "project")?;
    let user = user_id(user)?;
    if state
        .store
        .delete_member(p.id, user, caller.actor())
        .await?
    {
        Ok(())
    } else {
        Err(ApiError::not_found("member"))
    }
}
