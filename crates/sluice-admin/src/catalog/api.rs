//! `/api/v1/catalog…` and `/adaptors/icons/…`: the catalogue as JSON, schemas byte for byte,
//! icons cached for good, and refresh on demand.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::{header, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};
use sluice_catalog::IconShape;
use sluice_core::access::Right;

use super::icons::IconAnswer;
use super::{short, Adaptor, Cause, RefreshError, SchemaRead, Snapshot, Unavailable};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::{wire, AdminState};

impl From<Unavailable> for ApiError {
    fn from(e: Unavailable) -> Self {
        match e {
            Unavailable::Store(e) => e.into(),
            e => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        }
    }
}

/// One adaptor in a listing.
pub fn adaptor_json(snapshot: &Snapshot, a: &Adaptor) -> Value {
    let icon = |shape| snapshot.icon_url(&a.short, shape);
    json!({
        "name": a.row.name,
        "type": a.short,
        "latest": a.row.latest,
        "description": a.row.description,
        "deprecated": a.row.deprecated,
        "hidden": a.row.hidden_at.is_some(),
        "has_schema": a.has_schema,
        "icons": { "square": icon(IconShape::Square), "rectangle": icon(IconShape::Rectangle) },
        "checked_at": wire::ts(a.row.checked_at),
        "changed_at": wire::ts(a.row.changed_at),
    })
}

/// Query of the listing.
#[derive(Deserialize)]
pub struct ListQuery {
    /// Include adaptors upstream no longer lists.
    #[serde(default)]
    hidden: bool,
}

/// `GET /api/v1/catalog/adaptors[?hidden=true]`: every adaptor upstream lists (waiting a
/// bounded time for the first load).
pub async fn list(
    State(state): State<AdminState>,
    _caller: Caller,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    let snapshot = state.catalog.loaded().await?;
    let items: Vec<Value> = snapshot
        .adaptors
        .iter()
        .filter(|a| q.hidden || a.row.hidden_at.is_none())
        .map(|a| adaptor_json(&snapshot, a))
        .collect();
    Ok(Json(json!({ "items": items })))
}

/// `GET /api/v1/catalog/adaptors/{name}`: one adaptor (short or package name) with its versions.
pub async fn get(
    State(state): State<AdminState>,
    _caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    let snapshot = state.catalog.loaded().await?;
    let a = snapshot
        .adaptor(&name)
        .ok_or_else(|| ApiError::not_found("adaptor"))?;
    let versions: Vec<Value> = state
        .store
        .catalog_versions(&a.row.name)
        .await?
        .into_iter()
        .map(|v| {
            json!({
                "version": v.version,
                "published": v.published,
                "deprecated": v.deprecated,
                "integrity": v.integrity,
                "tarball": v.tarball,
                "unpacked_size": v.unpacked_size,
                "dependencies": serde_json::from_str::<Value>(&v.dependencies).unwrap_or_default(),
                "schema": match v.schema_state {
                    sluice_store::catalog::SchemaState::Unfetched => "unfetched",
                    sluice_store::catalog::SchemaState::Present => "present",
                    sluice_store::catalog::SchemaState::Absent => "absent",
                },
            })
        })
        .collect();
    let mut body = adaptor_json(&snapshot, a);
    body["versions"] = versions.into();
    Ok(Json(body))
}

/// Query of the schema read.
#[derive(Deserialize)]
pub struct SchemaQuery {
    version: Option<String>,
}

/// `GET /api/v1/catalog/adaptors/{name}/schema[?version=]`: `configuration-schema.json` of a
/// version (default: the latest), byte for byte as published.
pub async fn schema(
    State(state): State<AdminState>,
    _caller: Caller,
    Path(name): Path<String>,
    Query(q): Query<SchemaQuery>,
) -> ApiResult<Response> {
    let snapshot = state.catalog.loaded().await?;
    let a = snapshot
        .adaptor(&name)
        .ok_or_else(|| ApiError::not_found("adaptor"))?;
    let version = q.version.unwrap_or_else(|| a.row.latest.clone());
    if state
        .store
        .catalog_version(&a.row.name, &version)
        .await?
        .is_none()
    {
        return Err(ApiError::not_found("version"));
    }
    match state.catalog.schema_text(&a.row.name, &version).await? {
        SchemaRead::Found(text) => Ok((
            [(header::CONTENT_TYPE, "application/json")],
            text.to_string(),
        )
            .into_response()),
        SchemaRead::Missing => Err(ApiError::not_found("schema")),
    }
}

/// Body of a refresh request.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    /// One adaptor to refresh (short or package name); all when absent.
    package: Option<String>,
}

/// `POST /api/v1/catalog/refresh` (superuser), optionally `{"package": "dhis2"}`: refreshes now
/// and answers what changed. Only the node that runs background jobs refreshes: another one
/// answers 409.
pub async fn refresh(
    State(state): State<AdminState>,
    caller: Caller,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    caller.allow(Right::ManageInstance, None, "catalog")?;
    let input: RefreshRequest = match body.is_empty() {
        true => RefreshRequest::default(),
        false => wire::parse_body(&body)?,
    };
    if !state.catalog.leads() {
        return Err(ApiError::conflict(
            "this node does not refresh the catalogue: the elected node does (try again there)",
            json!({ "leader": false }),
        ));
    }
    match state
        .catalog
        .refresh(Cause::Api, input.package.as_deref())
        .await
    {
        Ok(report) => Ok(Json(json!(report))),
        Err(RefreshError::UnknownPackage(name)) => Err(ApiError::field(
            "package",
            format!("no such adaptor upstream: {name}"),
        )),
        Err(RefreshError::Store(e)) => Err(e.into()),
        Err(e) => Err(ApiError::new(StatusCode::BAD_GATEWAY, e.to_string())),
    }
}

/// `GET /api/v1/catalog` (superuser): the catalogue's state — where it reads from, what it
/// holds, and its recent refreshes.
pub async fn status(State(state): State<AdminState>, caller: Caller) -> ApiResult<Json<Value>> {
    caller.allow(Right::ManageInstance, None, "catalog")?;
    Ok(Json(state.catalog.status().await?))
}

/// `GET /adaptors/icons/{name}/{shape}-{sha8}.{ext}`: an adaptor's icon, cached for good (its
/// file name changes with its content); an older file name answers 302 to the current one.
pub async fn icon(
    State(state): State<AdminState>,
    Path((name, file)): Path<(String, String)>,
) -> ApiResult<Response> {
    let answer = state.catalog.icon(short(&name), &file).await;
    match answer.map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e))? {
        IconAnswer::Unknown => Err(ApiError::not_found("icon")),
        IconAnswer::Moved(current) => {
            let to = format!("/adaptors/icons/{}/{current}", short(&name));
            Ok((StatusCode::FOUND, [(header::LOCATION, to)]).into_response())
        }
        IconAnswer::Current(bytes, content_type) => Ok((
            [
                (header::CONTENT_TYPE, content_type),
                (
                    header::CACHE_CONTROL,
                    "public, max-age=31536000, immutable".to_string(),
                ),
            ],
            bytes,
        )
            .into_response()),
    }
}
