//! A project's sink credentials: the list, a type picker, and a form generated from the type's
//! schema in the schema's own field order. Secret fields are write-only: the form says whether
//! one is set and takes a replacement, never shows it.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use http::StatusCode;
use serde_json::{Map, Value};
use sluice_core::access::Right;
use sluice_store::Credential;
use uuid::Uuid;

use super::view::{is_refusal, render, Layout, Submitted, UiResult, Viewer};
use crate::credentials::{self, CreateCredential, PatchCredential};
use crate::error::ApiError;
use crate::schemas::CredentialSchema;
use crate::{wire, AdminState};

/// A credential as listed.
struct Row {
    id: String,
    name: String,
    schema: String,
    shown: String,
    secrets: String,
}

#[derive(Template)]
#[template(path = "credentials.html")]
struct IndexPage {
    layout: Layout,
    rows: Vec<Row>,
    /// Each credential type and its icon's address (empty without one).
    schemas: Vec<(String, String)>,
    can_manage: bool,
    problem: String,
}

/// One field of a schema form.
struct FieldView {
    name: String,
    title: String,
    description: String,
    input_type: &'static str,
    required: bool,
    secret: bool,
    value: String,
    is_set: bool,
    problem: String,
}

#[derive(Template)]
#[template(path = "credential_form.html")]
struct FormPage {
    layout: Layout,
    heading: String,
    action: String,
    schema: String,
    name: String,
    name_problem: String,
    fields: Vec<FieldView>,
    problem: String,
}

/// `GET /ui/credentials?project=`
pub async fn index(
    State(state): State<AdminState>,
    viewer: Viewer,
    Query(q): Query<HashMap<String, String>>,
) -> UiResult<Response> {
    let project = viewer.project_in(&q)?;
    let page = index_page(&state, &viewer, project, String::new()).await?;
    Ok(render(&page)?.into_response())
}

async fn index_page(
    state: &AdminState,
    viewer: &Viewer,
    project: Uuid,
    problem: String,
) -> UiResult<IndexPage> {
    let mut list = state
        .store
        .list_credentials(Some(&[project]), None, wire::MAX_LIMIT)
        .await?;
    list.sort_by_key(|c| c.name.to_lowercase());
    // The picker offers the catalogue's types once it has loaded; until then (or if it
    // cannot), the seed's.
    let _ = state.catalog.loaded().await;
    let schemas = state
        .catalog
        .credential_types()
        .into_iter()
        .map(|(name, icon)| (name, icon.unwrap_or_default()))
        .collect();
    Ok(IndexPage {
        layout: viewer.layout("Credentials", "credentials", Some(project)),
        rows: list.iter().map(|c| row(state, c)).collect(),
        schemas,
        can_manage: viewer.may(Right::ManageProject, project),
        problem,
    })
}

fn row(state: &AdminState, c: &Credential) -> Row {
    let json = credentials::credential_json(credentials::schema_of(state, &c.schema).as_deref(), c);
    let shown = json["body"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    format!(
                        "{k}: {}",
                        v.as_str().map_or_else(|| v.to_string(), str::to_string)
                    )
                })
                .collect::<Vec<_>>()
                .join(" · ")
        })
        .unwrap_or_default();
    let secrets = json["secret_fields"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(|f| format!("{f}: set"))
                .collect::<Vec<_>>()
                .join(" · ")
        })
        .unwrap_or_default();
    Row {
        id: c.id.to_string(),
        name: c.name.clone(),
        schema: c.schema.clone(),
        shown,
        secrets,
    }
}

/// The form fields of `schema`, in its order, filled from `body` and `typed`.
fn fields_of(
    schema: &CredentialSchema,
    body: Option<&Map<String, Value>>,
    typed: &HashMap<String, String>,
    problems: &[(String, String)],
) -> Vec<FieldView> {
    let required: Vec<&str> = schema
        .document
        .get("required")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    schema
        .properties()
        .into_iter()
        .map(|name| {
            let prop = &schema.document["properties"][name];
            let secret = schema.is_secret(name);
            let stored = body.and_then(|b| b.get(name)).filter(|v| !v.is_null());
            let value = match typed.get(name) {
                Some(t) if !secret => t.clone(),
                _ if secret => String::new(),
                _ => stored
                    .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
                    .unwrap_or_default(),
            };
            let input_type = if secret {
                "password"
            } else if prop["format"] == "uri" {
                "url"
            } else if prop["type"] == "integer" || prop["type"] == "number" {
                "number"
            } else {
                "text"
            };
            FieldView {
                name: name.to_string(),
                title: prop["title"].as_str().unwrap_or(name).to_string(),
                description: prop["description"].as_str().unwrap_or_default().to_string(),
                input_type,
                required: required.contains(&name),
                secret,
                value,
                is_set: secret && stored.is_some(),
                problem: problems
                    .iter()
                    .find(|(k, _)| k == &format!("body.{name}"))
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default(),
            }
        })
        .collect()
}

/// A typed value as the schema's property wants it.
fn typed_value(schema: &CredentialSchema, name: &str, raw: &str) -> Value {
    let prop = &schema.document["properties"][name];
    match prop["type"].as_str() {
        Some("integer") => raw
            .parse::<i64>()
            .map_or_else(|_| Value::String(raw.into()), Value::from),
        Some("number") => raw
            .parse::<f64>()
            .map_or_else(|_| Value::String(raw.into()), Value::from),
        Some("boolean") => match raw {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => Value::String(raw.into()),
        },
        _ => Value::String(raw.into()),
    }
}

fn schema_named(state: &AdminState, name: &str) -> UiResult<std::sync::Arc<CredentialSchema>> {
    Ok(
        credentials::schema_of(state, name)
            .ok_or_else(|| ApiError::not_found("credential type"))?,
    )
}

/// The form's typed fields (`field.<name>`), by name.
fn typed_fields(form: &Submitted) -> HashMap<String, String> {
    form.fields
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("field.")?.to_string(), v.trim().to_string())))
        .collect()
}

/// `GET /ui/credentials/new?project=&schema=`
pub async fn new_form(
    State(state): State<AdminState>,
    viewer: Viewer,
    Query(q): Query<HashMap<String, String>>,
) -> UiResult<Response> {
    let project = viewer.project_in(&q)?;
    viewer
        .caller
        .allow(Right::ManageProject, Some(project), "project")?;
    let schema = schema_named(&state, q.get("schema").map_or("", String::as_str))?;
    let page = FormPage {
        layout: viewer.layout("New credential", "credentials", Some(project)),
        heading: format!("New {} credential", schema.name),
        action: format!(
            "/ui/credentials/new?project={project}&schema={}",
            schema.name
        ),
        schema: schema.name.clone(),
        name: String::new(),
        name_problem: String::new(),
        fields: fields_of(&schema, None, &HashMap::new(), &[]),
        problem: String::new(),
    };
    Ok(render(&page)?.into_response())
}

/// Shows the form again with the problems of `e`.
fn refused(
    mut page: FormPage,
    schema: &CredentialSchema,
    body: Option<&Map<String, Value>>,
    typed: &HashMap<String, String>,
    e: ApiError,
) -> UiResult<Response> {
    let problems = e.field_problems();
    page.fields = fields_of(schema, body, typed, &problems);
    page.name_problem = problems
        .iter()
        .find(|(k, _)| k == "name")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    page.problem = if problems.is_empty() {
        e.message().to_string()
    } else {
        "Some fields need another look.".into()
    };
    Ok((e.status(), render(&page)?).into_response())
}

/// `POST /ui/credentials/new?project=&schema=`
pub async fn create(
    State(state): State<AdminState>,
    Query(q): Query<HashMap<String, String>>,
    form: Submitted,
) -> UiResult<Response> {
    let viewer = &form.viewer;
    let project = viewer.project_in(&q)?;
    let schema = schema_named(&state, q.get("schema").map_or("", String::as_str))?;
    let typed = typed_fields(&form);
    let body: Map<String, Value> = schema
        .properties()
        .into_iter()
        .filter_map(|p| {
            let raw = typed.get(p).filter(|v| !v.is_empty())?;
            Some((p.to_string(), typed_value(&schema, p, raw)))
        })
        .collect();
    let name = form.get("name").unwrap_or_default().to_string();
    let input = CreateCredential {
        name: name.clone(),
        schema: schema.name.clone(),
        project_id: Some(project),
        body,
    };
    match credentials::create_credential(&state, &viewer.caller, input).await {
        Ok(_) => Ok(Redirect::to(&format!("/ui/credentials?project={project}")).into_response()),
        Err(e) if e.status() == StatusCode::UNPROCESSABLE_ENTITY => {
            let page = FormPage {
                layout: viewer.layout("New credential", "credentials", Some(project)),
                heading: format!("New {} credential", schema.name),
                action: format!(
                    "/ui/credentials/new?project={project}&schema={}",
                    schema.name
                ),
                schema: schema.name.clone(),
                name,
                name_problem: String::new(),
                fields: Vec::new(),
                problem: String::new(),
            };
            refused(page, &schema, None, &typed, e)
        }
        Err(e) => Err(e.into()),
    }
}

/// `GET /ui/credentials/{id}/edit`
pub async fn edit_form(
    State(state): State<AdminState>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> UiResult<Response> {
    let c = credentials::load(&state, &viewer.caller, Right::ManageProject, &id).await?;
    let schema = schema_named(&state, &c.schema)?;
    let page = edit_page(&viewer, &c, &schema, c.name.clone());
    let mut page = page;
    page.fields = fields_of(&schema, c.body.as_object(), &HashMap::new(), &[]);
    Ok(render(&page)?.into_response())
}

fn edit_page(viewer: &Viewer, c: &Credential, schema: &CredentialSchema, name: String) -> FormPage {
    FormPage {
        layout: viewer.layout(
            format!("Edit {}", c.name),
            "credentials",
            Some(c.project_id),
        ),
        heading: format!("Edit {}", c.name),
        action: format!("/ui/credentials/{}/edit", c.id),
        schema: schema.name.clone(),
        name,
        name_problem: String::new(),
        fields: Vec::new(),
        problem: String::new(),
    }
}

/// `POST /ui/credentials/{id}/edit`: a non-secret field emptied is removed; a secret field
/// left empty keeps its value, a typed one replaces it.
pub async fn update(
    State(state): State<AdminState>,
    Path(id): Path<String>,
    form: Submitted,
) -> UiResult<Response> {
    let viewer = &form.viewer;
    let c = credentials::load(&state, &viewer.caller, Right::ManageProject, &id).await?;
    let schema = schema_named(&state, &c.schema)?;
    let typed = typed_fields(&form);
    let mut patch = Map::new();
    for p in schema.properties() {
        let raw = typed.get(p).map(String::as_str).unwrap_or_default();
        if raw.is_empty() {
            if !schema.is_secret(p) {
                patch.insert(p.to_string(), Value::Null);
            }
        } else {
            patch.insert(p.to_string(), typed_value(&schema, p, raw));
        }
    }
    let name = form.get("name").unwrap_or_default().to_string();
    let input = PatchCredential {
        name: Some(name.clone()),
        body: Some(patch),
    };
    match credentials::change_credential(&state, &viewer.caller, c.clone(), input).await {
        Ok(c) => {
            Ok(Redirect::to(&format!("/ui/credentials?project={}", c.project_id)).into_response())
        }
        Err(e) if is_refusal(&e) => {
            let page = edit_page(viewer, &c, &schema, name);
            refused(page, &schema, c.body.as_object(), &typed, e)
        }
        Err(e) => Err(e.into()),
    }
}

/// `POST /ui/credentials/{id}/delete`: refused in words while a channel uses it.
pub async fn delete(
    State(state): State<AdminState>,
    Path(id): Path<String>,
    form: Submitted,
) -> UiResult<Response> {
    let viewer = &form.viewer;
    let c = credentials::load(&state, &viewer.caller, Right::ManageProject, &id).await?;
    match credentials::remove_credential(&state, &viewer.caller, &c).await {
        Ok(_) => {
            Ok(Redirect::to(&format!("/ui/credentials?project={}", c.project_id)).into_response())
        }
        Err(e) if e.status() == StatusCode::CONFLICT => {
            let page = index_page(
                &state,
                viewer,
                c.project_id,
                format!("{} is used by channels: detach it from them first.", c.name),
            )
            .await?;
            Ok((StatusCode::CONFLICT, render(&page)?).into_response())
        }
        Err(e) => Err(e.into()),
    }
}
