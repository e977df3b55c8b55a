//! Creating, changing and deleting a channel: one form with every setting, a **Test** button
//! that runs the validation pipeline on the sink URL before anything is saved, the
//! `lock_version` conflict in words, and deletion with the history guard explained.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use http::StatusCode;
use sluice_core::access::Right;
use sluice_core::{Channel, Timeouts};
use sluice_health::{StepStatus, ValidationReport};
use uuid::Uuid;

use super::view::{is_refusal, render, Choice, Layout, Submitted, UiError, UiResult, Viewer};
use crate::channels::{self, CreateChannel, PatchChannel};
use crate::error::ApiError;
use crate::{ops, wire, AdminState};

/// What the form holds, as typed.
#[derive(Default)]
struct Values {
    name: String,
    sink_url: String,
    enabled: bool,
    auth_ids: Vec<String>,
    credential: String,
    connect_ms: String,
    response_ms: String,
    idle_ms: String,
    preview_bytes: String,
    max_request_bytes: String,
    lock_version: String,
}

impl Values {
    fn of(ch: &Channel) -> Self {
        let ms = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_default();
        Values {
            name: ch.name.clone(),
            sink_url: ch.sink_url.clone(),
            enabled: ch.enabled,
            auth_ids: ch
                .source_auth_method_ids
                .iter()
                .map(Uuid::to_string)
                .collect(),
            credential: ch
                .sink_credential_id
                .map(|c| c.to_string())
                .unwrap_or_default(),
            connect_ms: ms(ch.timeouts.connect_ms),
            response_ms: ms(ch.timeouts.response_ms),
            idle_ms: ms(ch.timeouts.idle_ms),
            preview_bytes: ch.preview_bytes.to_string(),
            max_request_bytes: ms(ch.max_request_bytes),
            lock_version: ch.lock_version.to_string(),
        }
    }

    fn from_form(f: &Submitted) -> Self {
        let get = |k: &str| f.get(k).unwrap_or_default().trim().to_string();
        Values {
            name: f.get("name").unwrap_or_default().to_string(),
            sink_url: get("sink_url"),
            enabled: f.get("enabled").is_some(),
            auth_ids: f
                .fields
                .iter()
                .filter(|(k, _)| k == "auth")
                .map(|(_, v)| v.clone())
                .collect(),
            credential: get("credential"),
            connect_ms: get("connect_ms"),
            response_ms: get("response_ms"),
            idle_ms: get("idle_ms"),
            preview_bytes: get("preview_bytes"),
            max_request_bytes: get("max_request_bytes"),
            lock_version: get("lock_version"),
        }
    }

    /// The typed settings, or a 422 naming each field that does not parse.
    fn parse(&self) -> Result<Parsed, ApiError> {
        let mut problems = serde_json::Map::new();
        let mut number = |name: &str, raw: &str| -> Option<u64> {
            if raw.is_empty() {
                return None;
            }
            raw.parse().map(Some).unwrap_or_else(|_| {
                problems.insert(name.to_string(), "must be a whole number".into());
                None
            })
        };
        let timeouts = Timeouts {
            connect_ms: number("timeouts.connect_ms", &self.connect_ms),
            response_ms: number("timeouts.response_ms", &self.response_ms),
            idle_ms: number("timeouts.idle_ms", &self.idle_ms),
        };
        let preview = number("preview_bytes", &self.preview_bytes)
            .map(|n| u32::try_from(n).unwrap_or(u32::MAX));
        let max_request_bytes = number("max_request_bytes", &self.max_request_bytes);
        let auth: Vec<Uuid> = self
            .auth_ids
            .iter()
            .filter_map(|a| a.parse().ok())
            .collect();
        let credential = self.credential.parse::<Uuid>().ok();
        if problems.is_empty() {
            Ok(Parsed {
                timeouts,
                preview,
                max_request_bytes,
                auth,
                credential,
            })
        } else {
            Err(ApiError::fields(problems))
        }
    }
}

struct Parsed {
    timeouts: Timeouts,
    preview: Option<u32>,
    max_request_bytes: Option<u64>,
    auth: Vec<Uuid>,
    credential: Option<Uuid>,
}

/// A step of a **Test** as shown.
struct StepView {
    name: &'static str,
    status: &'static str,
    detail: String,
    hint: String,
}

/// A box to tick, for auth methods.
struct Tick {
    value: String,
    label: String,
    checked: bool,
}

#[derive(Template)]
#[template(path = "channel_form.html")]
struct FormPage {
    layout: Layout,
    action: String,
    heading: String,
    values: Values,
    problem: String,
    field_problems: Vec<(String, String)>,
    auth_methods: Vec<Tick>,
    credentials: Vec<Choice>,
    may_attach: bool,
    test: Vec<StepView>,
    test_ok: bool,
    tested: bool,
    channel_id: String,
    requests: i64,
}

impl FormPage {
    fn problem_of(&self, field: &str) -> &str {
        self.field_problems
            .iter()
            .find(|(k, _)| k == field)
            .map_or("", |(_, v)| v.as_str())
    }
}

/// The form for `project`, filled with `values`.
async fn form_page(
    state: &AdminState,
    viewer: &Viewer,
    project: Uuid,
    existing: Option<&Channel>,
    values: Values,
) -> UiResult<FormPage> {
    let methods = state
        .store
        .list_auth_methods(Some(&[project]), None, wire::MAX_LIMIT)
        .await?;
    let creds = state
        .store
        .list_credentials(Some(&[project]), None, wire::MAX_LIMIT)
        .await?;
    let (heading, action, channel_id, requests) = match existing {
        Some(ch) => (
            format!("Edit {}", ch.name),
            format!("/ui/channels/{}/edit", ch.id),
            ch.id.to_string(),
            state.store.count_requests(ch.id).await?,
        ),
        None => (
            "New channel".to_string(),
            format!("/ui/channels/new?project={project}"),
            String::new(),
            0,
        ),
    };
    Ok(FormPage {
        layout: viewer.layout(heading.clone(), "channels", Some(project)),
        action,
        heading,
        auth_methods: methods
            .iter()
            .map(|m| Tick {
                value: m.id.to_string(),
                label: format!("{} ({})", m.name, m.kind.as_str()),
                checked: values.auth_ids.contains(&m.id.to_string()),
            })
            .collect(),
        credentials: creds
            .iter()
            .map(|c| Choice {
                value: c.id.to_string(),
                label: format!("{} — {}", c.name, c.schema),
                selected: values.credential == c.id.to_string(),
            })
            .collect(),
        may_attach: viewer.may(Right::ManageProject, project),
        values,
        problem: String::new(),
        field_problems: Vec::new(),
        test: Vec::new(),
        test_ok: false,
        tested: false,
        channel_id,
        requests,
    })
}

/// `GET /ui/channels/new?project=`
pub async fn new_form(
    State(state): State<AdminState>,
    viewer: Viewer,
    Query(q): Query<HashMap<String, String>>,
) -> UiResult<Response> {
    let project = viewer.project_in(&q)?;
    viewer
        .caller
        .allow(Right::EditChannels, Some(project), "project")?;
    let values = Values {
        enabled: true,
        ..Values::default()
    };
    let page = form_page(&state, &viewer, project, None, values).await?;
    Ok(render(&page)?.into_response())
}

/// `GET /ui/channels/{id}/edit`
pub async fn edit_form(
    State(state): State<AdminState>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> UiResult<Response> {
    let ch = channels::load(&state, &viewer.caller, Right::EditChannels, &id).await?;
    let page = form_page(&state, &viewer, ch.project_id, Some(&ch), Values::of(&ch)).await?;
    Ok(render(&page)?.into_response())
}

/// Runs **Test** on the form's sink URL and shows each step.
async fn with_test(state: &AdminState, viewer: &Viewer, mut page: FormPage) -> UiResult<Response> {
    let report: ValidationReport =
        ops::test_destination(state, &viewer.caller, &page.values.sink_url).await?;
    page.tested = true;
    page.test_ok = report.ok;
    page.test = report
        .steps
        .iter()
        .map(|s| StepView {
            name: s.step.as_str(),
            status: match s.status {
                StepStatus::Ok => "ok",
                StepStatus::Failed => "failed",
                StepStatus::Skipped => "skipped",
            },
            detail: s.detail.clone(),
            hint: s.hint.clone().unwrap_or_default(),
        })
        .collect();
    Ok(render(&page)?.into_response())
}

/// Shows the form again with what was wrong.
fn refused(mut page: FormPage, e: ApiError) -> UiResult<Response> {
    let status = e.status();
    page.field_problems = e.field_problems();
    page.problem = if e.message() == "stale lock_version" {
        "Changed by someone else since you opened this form — reload to see the current version, then make your change again.".into()
    } else if page.field_problems.is_empty() {
        e.message().to_string()
    } else {
        "Some settings need another look.".into()
    };
    Ok((status, render(&page)?).into_response())
}

/// `POST /ui/channels/new?project=`: `action=test` runs **Test**, `action=save` creates.
pub async fn create(
    State(state): State<AdminState>,
    Query(q): Query<HashMap<String, String>>,
    form: Submitted,
) -> UiResult<Response> {
    let viewer = &form.viewer;
    let project = viewer.project_in(&q)?;
    viewer
        .caller
        .allow(Right::EditChannels, Some(project), "project")?;
    let values = Values::from_form(&form);
    let parsed = values.parse();
    let page = form_page(&state, viewer, project, None, values).await?;
    if form.get("action") == Some("test") {
        return with_test(&state, viewer, page).await;
    }
    let p = match parsed {
        Ok(p) => p,
        Err(e) => return refused(page, e),
    };
    let input = CreateChannel {
        name: page.values.name.clone(),
        sink_url: page.values.sink_url.clone(),
        project_id: Some(project),
        enabled: Some(page.values.enabled),
        source_auth_method_ids: p.auth,
        sink_credential_id: p.credential,
        timeouts: Some(p.timeouts),
        preview_bytes: p.preview,
        max_request_bytes: p.max_request_bytes,
    };
    match channels::create_channel(&state, &viewer.caller, input).await {
        Ok(ch) => Ok(Redirect::to(&format!("/ui/channels/{}", ch.id)).into_response()),
        Err(e) if is_refusal(&e) => refused(page, e),
        Err(e) => Err(e.into()),
    }
}

/// `POST /ui/channels/{id}/edit`: `action=test` runs **Test**, `action=save` saves against the
/// `lock_version` the form was drawn with.
pub async fn update(
    State(state): State<AdminState>,
    Path(id): Path<String>,
    form: Submitted,
) -> UiResult<Response> {
    let viewer = &form.viewer;
    let ch = channels::load(&state, &viewer.caller, Right::EditChannels, &id).await?;
    let values = Values::from_form(&form);
    let parsed = values.parse();
    let lock_version = values.lock_version.parse().unwrap_or(-1);
    let page = form_page(&state, viewer, ch.project_id, Some(&ch), values).await?;
    if form.get("action") == Some("test") {
        return with_test(&state, viewer, page).await;
    }
    let p = match parsed {
        Ok(p) => p,
        Err(e) => return refused(page, e),
    };
    let patch = PatchChannel {
        lock_version,
        name: Some(page.values.name.clone()),
        sink_url: Some(page.values.sink_url.clone()),
        enabled: Some(page.values.enabled),
        source_auth_method_ids: Some(p.auth),
        // Only those who may attach credentials are offered the choice.
        sink_credential_id: page.may_attach.then_some(p.credential),
        timeouts: Some(p.timeouts),
        preview_bytes: p.preview,
        max_request_bytes: Some(p.max_request_bytes),
    };
    match channels::change(&state, &viewer.caller, ch, patch).await {
        Ok((ch, _)) => Ok(Redirect::to(&format!("/ui/channels/{}", ch.id)).into_response()),
        Err(e) if is_refusal(&e) => refused(page, e),
        Err(e) => Err(e.into()),
    }
}

/// `POST /ui/channels/{id}/delete`: `purge=on` also deletes the recorded history, which a
/// channel with history needs.
pub async fn delete(
    State(state): State<AdminState>,
    Path(id): Path<String>,
    form: Submitted,
) -> UiResult<Response> {
    let viewer = &form.viewer;
    let ch = channels::load(&state, &viewer.caller, Right::EditChannels, &id).await?;
    match channels::remove(&state, &viewer.caller, &ch, form.get("purge").is_some()).await {
        Ok(()) => {
            Ok(Redirect::to(&format!("/ui/channels?project={}", ch.project_id)).into_response())
        }
        Err(e) if e.status() == StatusCode::CONFLICT => {
            let page = form_page(&state, viewer, ch.project_id, Some(&ch), Values::of(&ch)).await?;
            refused(
                page,
                ApiError::conflict(
                    "This channel has recorded requests. Tick “also delete its recorded requests” to delete it with its history.",
                    serde_json::Value::Null,
                ),
            )
        }
        Err(e) => Err(UiError::Api(e)),
    }
}
