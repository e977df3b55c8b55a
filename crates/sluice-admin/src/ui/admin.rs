//! Administration: users (create with a one-time password, disable, reset the password),
//! projects (create, delete) and instance settings for superusers; a project's members and
//! their roles for its admins.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use sluice_core::access::{Right, Role};

use super::format;
use super::view::{is_refusal, problem_text, render, Layout, Submitted, UiResult, Viewer};
use crate::error::ApiError;
use crate::projects::{self, ProjectInput};
use crate::settings;
use crate::users::{self, CreateUser, PatchUser};
use crate::AdminState;

/// Users and projects listed on a page (an instance has a few hundred at most).
const LISTED: i64 = 1000;

struct UserRow {
    id: String,
    username: String,
    display_name: String,
    superuser: bool,
    disabled: bool,
    must_change: bool,
    last_login: String,
    is_me: bool,
}

#[derive(Template)]
#[template(path = "users.html")]
struct UsersPage {
    layout: Layout,
    rows: Vec<UserRow>,
    problem: String,
    shown_name: String,
    shown_password: String,
}

async fn users_page(state: &AdminState, viewer: &Viewer) -> UiResult<UsersPage> {
    viewer.caller.allow(Right::ManageInstance, None, "user")?;
    let mut list = state.store.list_users(None, LISTED).await?;
    list.sort_by_key(|u| u.username.to_lowercase());
    let me = viewer.caller.user.as_ref().map(|u| u.id);
    let now = sluice_core::clock::now_us();
    Ok(UsersPage {
        layout: viewer.layout("Users", "admin", viewer.pick_project(None).map(|p| p.id)),
        rows: list
            .iter()
            .map(|u| UserRow {
                id: u.id.to_string(),
                username: u.username.clone(),
                display_name: u.display_name.clone(),
                superuser: u.superuser,
                disabled: u.disabled,
                must_change: u.must_change_password(),
                last_login: u
                    .last_login_at
                    .map(|t| format::ago(t, now))
                    .unwrap_or_else(|| "never".into()),
                is_me: Some(u.id) == me,
            })
            .collect(),
        problem: String::new(),
        shown_name: String::new(),
        shown_password: String::new(),
    })
}

/// `GET /ui/admin/users`
pub async fn users(State(state): State<AdminState>, viewer: Viewer) -> UiResult<Response> {
    Ok(render(&users_page(&state, &viewer).await?)?.into_response())
}

/// Shows the users page with a one-time password, or with the problem of `e`.
async fn users_answer(
    state: &AdminState,
    viewer: &Viewer,
    outcome: Result<(String, Option<String>), ApiError>,
) -> UiResult<Response> {
    let mut page = users_page(state, viewer).await?;
    match outcome {
        Ok((name, Some(password))) => {
            page.shown_name = name;
            page.shown_password = password;
            Ok(render(&page)?.into_response())
        }
        Ok((_, None)) => Ok(Redirect::to("/ui/admin/users").into_response()),
        Err(e) if is_refusal(&e) => {
            page.problem = problem_text(&e);
            Ok((e.status(), render(&page)?).into_response())
        }
        Err(e) => Err(e.into()),
    }
}

/// `POST /ui/admin/users`: a new user with a generated one-time password, shown once.
pub async fn create_user(State(state): State<AdminState>, form: Submitted) -> UiResult<Response> {
    let viewer = &form.viewer;
    let input = CreateUser {
        username: form.get("username").unwrap_or_default().trim().to_string(),
        display_name: form.get("display_name").map(str::to_string),
        password: None,
        superuser: form.get("superuser").is_some(),
    };
    let outcome = users::create_user(&state, &viewer.caller, input)
        .await
        .map(|(u, p)| (u.username, p));
    users_answer(&state, viewer, outcome).await
}

/// `POST /ui/admin/users/{id}`: `action=disable|enable|reset`.
pub async fn change_user(
    State(state): State<AdminState>,
    Path(id): Path<String>,
    form: Submitted,
) -> UiResult<Response> {
    let viewer = &form.viewer;
    let patch = match form.get("action") {
        Some("disable") => PatchUser {
            disabled: Some(true),
            ..PatchUser::default()
        },
        Some("enable") => PatchUser {
            disabled: Some(false),
            ..PatchUser::default()
        },
        Some("reset") => PatchUser {
            reset_password: true,
            ..PatchUser::default()
        },
        _ => return Err(ApiError::field("action", "must be disable, enable or reset").into()),
    };
    let outcome = users::change_user(&state, &viewer.caller, &id, patch)
        .await
        .map(|(u, p)| (u.username, p));
    users_answer(&state, viewer, outcome).await
}

struct ProjectRow {
    id: String,
    name: String,
    created: String,
    is_default: bool,
}

#[derive(Template)]
#[template(path = "projects.html")]
struct ProjectsPage {
    layout: Layout,
    rows: Vec<ProjectRow>,
    problem: String,
}

async fn projects_page(
    state: &AdminState,
    viewer: &Viewer,
    problem: String,
) -> UiResult<ProjectsPage> {
    viewer
        .caller
        .allow(Right::ManageInstance, None, "project")?;
    let mut list = state.store.list_projects(None, None, LISTED).await?;
    list.sort_by_key(|p| p.name.to_lowercase());
    Ok(ProjectsPage {
        layout: viewer.layout("Projects", "admin", viewer.pick_project(None).map(|p| p.id)),
        rows: list
            .iter()
            .map(|p| ProjectRow {
                id: p.id.to_string(),
                name: p.name.clone(),
                created: format::when(p.created_at),
                is_default: p.id == state.default_project,
            })
            .collect(),
        problem,
    })
}

/// `GET /ui/admin/projects`
pub async fn projects(State(state): State<AdminState>, viewer: Viewer) -> UiResult<Response> {
    Ok(render(&projects_page(&state, &viewer, String::new()).await?)?.into_response())
}

/// Shows the projects page again with what went wrong.
async fn projects_refused(state: &AdminState, viewer: &Viewer, e: ApiError) -> UiResult<Response> {
    if !is_refusal(&e) {
        return Err(e.into());
    }
    let page = projects_page(state, viewer, problem_text(&e)).await?;
    Ok((e.status(), render(&page)?).into_response())
}

/// `POST /ui/admin/projects`
pub async fn create_project(
    State(state): State<AdminState>,
    form: Submitted,
) -> UiResult<Response> {
    let viewer = &form.viewer;
    let input = ProjectInput {
        name: form.get("name").unwrap_or_default().to_string(),
    };
    match projects::create_project(&state, &viewer.caller, input).await {
        Ok(p) => Ok(Redirect::to(&format!("/ui/projects/{}/members", p.id)).into_response()),
        Err(e) => projects_refused(&state, viewer, e).await,
    }
}

/// `POST /ui/admin/projects/{id}/delete`
pub async fn delete_project(
    State(state): State<AdminState>,
    Path(id): Path<String>,
    form: Submitted,
) -> UiResult<Response> {
    let viewer = &form.viewer;
    match projects::remove_project(&state, &viewer.caller, &id).await {
        Ok(()) => Ok(Redirect::to("/ui/admin/projects").into_response()),
        Err(e) => projects_refused(&state, viewer, e).await,
    }
}

struct MemberRow {
    user_id: String,
    username: String,
    roles: Vec<(&'static str, bool)>,
}

#[derive(Template)]
#[template(path = "members.html")]
struct MembersPage {
    layout: Layout,
    project_id: String,
    project_name: String,
    rows: Vec<MemberRow>,
    can_manage: bool,
    problem: String,
    /// The project records metadata only.
    metadata_only: bool,
}

async fn members_page(
    state: &AdminState,
    viewer: &Viewer,
    id: &str,
    problem: String,
) -> UiResult<MembersPage> {
    let p = projects::load(state, &viewer.caller, id).await?;
    let mut members = state.store.list_members(p.id).await?;
    members.sort_by_key(|m| m.username.to_lowercase());
    let recording = state.store.project_recording(p.id).await?;
    Ok(MembersPage {
        metadata_only: recording == sluice_store::projects::Recording::Metadata,
        layout: viewer.layout(format!("Members of {}", p.name), "members", Some(p.id)),
        project_id: p.id.to_string(),
        project_name: p.name.clone(),
        rows: members
            .iter()
            .map(|m| MemberRow {
                user_id: m.user_id.to_string(),
                username: m.username.clone(),
                roles: Role::MEMBER_ROLES
                    .iter()
                    .map(|r| (r.as_str(), *r == m.role))
                    .collect(),
            })
            .collect(),
        can_manage: viewer.may(Right::ManageProject, p.id),
        problem,
    })
}

/// `GET /ui/projects/{id}/members`
pub async fn members(
    State(state): State<AdminState>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> UiResult<Response> {
    Ok(render(&members_page(&state, &viewer, &id, String::new()).await?)?.into_response())
}

/// `POST /ui/projects/{id}/recording`: `recording` = `full` or `metadata`.
pub async fn change_recording(
    State(state): State<AdminState>,
    Path(id): Path<String>,
    form: Submitted,
) -> UiResult<Response> {
    let viewer = &form.viewer;
    let mode = form.get("recording").unwrap_or_default();
    match projects::set_recording(&state, &viewer.caller, &id, mode).await {
        Ok(()) => Ok(Redirect::to(&format!("/ui/projects/{id}/members")).into_response()),
        Err(e) if is_refusal(&e) => {
            let page = members_page(&state, viewer, &id, problem_text(&e)).await?;
            Ok((e.status(), render(&page)?).into_response())
        }
        Err(e) => Err(e.into()),
    }
}

/// `POST /ui/projects/{id}/members`: `username` and `role` (a new member or a new role), or
/// `remove=<user id>`.
pub async fn change_members(
    State(state): State<AdminState>,
    Path(id): Path<String>,
    form: Submitted,
) -> UiResult<Response> {
    let viewer = &form.viewer;
    let outcome = if let Some(user) = form.get("remove") {
        projects::remove_member(&state, &viewer.caller, &id, user).await
    } else {
        let user = match form.get("user_id") {
            Some(u) => Ok(u.to_string()),
            None => {
                let name = form.get("username").unwrap_or_default().trim();
                state
                    .store
                    .user_by_name(name)
                    .await?
                    .map(|r| r.user.id.to_string())
                    .ok_or_else(|| ApiError::field("username", "no user has this name"))
            }
        };
        match user {
            Ok(user) => {
                projects::set_member(
                    &state,
                    &viewer.caller,
                    &id,
                    &user,
                    form.get("role").unwrap_or_default(),
                )
                .await
            }
            Err(e) => Err(e),
        }
    };
    match outcome {
        Ok(()) => Ok(Redirect::to(&format!("/ui/projects/{id}/members")).into_response()),
        Err(e) if is_refusal(&e) => {
            let page = members_page(&state, viewer, &id, problem_text(&e)).await?;
            Ok((e.status(), render(&page)?).into_response())
        }
        Err(e) => Err(e.into()),
    }
}

struct SettingRow {
    name: &'static str,
    label: &'static str,
    /// The saved value, empty at the default.
    saved: String,
    default: String,
    min: u64,
    max: u64,
    problem: String,
}

#[derive(Template)]
#[template(path = "settings.html")]
struct SettingsPage {
    layout: Layout,
    rows: Vec<SettingRow>,
    saved: bool,
    problem: String,
}

/// The settings page; with `entered` values (and their problems) when a form was refused.
async fn settings_page(
    state: &AdminState,
    viewer: &Viewer,
    entered: Option<(&Submitted, &ApiError)>,
) -> UiResult<SettingsPage> {
    viewer
        .caller
        .allow(Right::ManageInstance, None, "setting")?;
    let problems = entered.map(|(_, e)| e.field_problems()).unwrap_or_default();
    let rows = settings::current(state)
        .await?
        .into_iter()
        .map(|v| SettingRow {
            name: v.spec.name,
            label: v.spec.label,
            saved: match entered {
                Some((form, _)) => form.get(v.spec.name).unwrap_or_default().to_string(),
                None if v.saved => v.value.to_string(),
                None => String::new(),
            },
            default: v.default.to_string(),
            min: v.spec.min,
            max: v.spec.max,
            problem: problems
                .iter()
                .find(|(f, _)| f == v.spec.name)
                .map(|(_, p)| p.clone())
                .unwrap_or_default(),
        })
        .collect();
    Ok(SettingsPage {
        layout: viewer.layout("Settings", "admin", viewer.pick_project(None).map(|p| p.id)),
        rows,
        saved: false,
        problem: entered.map(|(_, e)| problem_text(e)).unwrap_or_default(),
    })
}

/// `GET /ui/admin/settings`
pub async fn settings_form(State(state): State<AdminState>, viewer: Viewer) -> UiResult<Response> {
    Ok(render(&settings_page(&state, &viewer, None).await?)?.into_response())
}

/// `POST /ui/admin/settings`: every setting of the form; an empty field returns one to its
/// default.
pub async fn save_settings(State(state): State<AdminState>, form: Submitted) -> UiResult<Response> {
    let viewer = &form.viewer;
    let body: serde_json::Map<String, serde_json::Value> = form
        .fields
        .iter()
        .filter(|(k, _)| k != "csrf_token")
        .map(|(k, v)| {
            let v = v.trim();
            let value = match v.parse::<u64>() {
                _ if v.is_empty() => serde_json::Value::Null,
                Ok(n) => n.into(),
                Err(_) => v.into(),
            };
            (k.clone(), value)
        })
        .collect();
    match settings::save(&state, &viewer.caller, &body).await {
        Ok(_) => {
            let mut page = settings_page(&state, viewer, None).await?;
            page.saved = true;
            Ok(render(&page)?.into_response())
        }
        Err(e) if is_refusal(&e) => {
            let page = settings_page(&state, viewer, Some((&form, &e))).await?;
            Ok((e.status(), render(&page)?).into_response())
        }
        Err(e) => Err(e.into()),
    }
}
