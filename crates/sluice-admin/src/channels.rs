//! `/api/v1/channels`: create, list, read, change and delete channels.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::IntoResponse;
use axum::Json;
use http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use sluice_core::access::Right;
use sluice_core::channel::{DEFAULT_PREVIEW_BYTES, MAX_PREVIEW_BYTES};
use sluice_core::clock::now_us;
use sluice_core::url_join::parse_sink_url;
use sluice_core::{Channel, Timeouts};
use sluice_store::channels::DeleteOutcome;
use uuid::Uuid;

use crate::auth::Caller;
use crate::channel_health;
use crate::error::{ApiError, ApiResult};
use crate::wire::{self, double_option};
use crate::AdminState;

/// Longest accepted timeout (one hour).
const MAX_TIMEOUT_MS: u64 = 3_600_000;

/// Body of `POST /channels`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateChannel {
    pub name: String,
    pub sink_url: String,
    pub project_id: Option<Uuid>,
    pub enabled: Option<bool>,
    #[serde(default)]
    pub source_auth_method_ids: Vec<Uuid>,
    pub sink_credential_id: Option<Uuid>,
    pub timeouts: Option<Timeouts>,
    pub preview_bytes: Option<u32>,
    pub max_request_bytes: Option<u64>,
}

/// Body of `PATCH /channels/{id}`: what to change, and the `lock_version` the change was
/// made against.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchChannel {
    pub lock_version: i64,
    #[serde(default, deserialize_with = "wire::non_null")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "wire::non_null")]
    pub sink_url: Option<String>,
    #[serde(default, deserialize_with = "wire::non_null")]
    pub enabled: Option<bool>,
    #[serde(default, deserialize_with = "wire::non_null")]
    pub source_auth_method_ids: Option<Vec<Uuid>>,
    #[serde(default, deserialize_with = "double_option")]
    pub sink_credential_id: Option<Option<Uuid>>,
    #[serde(default, deserialize_with = "wire::non_null")]
    pub timeouts: Option<Timeouts>,
    #[serde(default, deserialize_with = "wire::non_null")]
    pub preview_bytes: Option<u32>,
    /// `null` removes the limit.
    #[serde(default, deserialize_with = "double_option")]
    pub max_request_bytes: Option<Option<u64>>,
}

/// The channel resource as the API shows it.
pub fn channel_json(state: &AdminState, ch: &Channel) -> Value {
    json!({
        "id": ch.id,
        "project_id": ch.project_id,
        "name": ch.name,
        "sink_url": ch.sink_url,
        "enabled": ch.enabled,
        "lock_version": ch.lock_version,
        "proxy_url": format!("{}/channels/{}", state.public_url, ch.id),
        "source_auth_method_ids": ch.source_auth_method_ids,
        "sink_credential_id": ch.sink_credential_id,
        "timeouts": ch.timeouts,
        "preview_bytes": ch.preview_bytes,
        "max_request_bytes": ch.max_request_bytes,
        "created_at": wire::ts(ch.created_at),
        "updated_at": wire::ts(ch.updated_at),
    })
}

/// Checks every rule a stored channel must satisfy, collecting all field errors at once.
async fn validate(state: &AdminState, ch: &Channel) -> Result<(), ApiError> {
    let mut fields = check_references(state, ch).await?;
    check_fields(ch, &mut fields);
    if parse_sink_url(&ch.sink_url).is_ok_and(|u| state.own_addresses.is_own(&u)) {
        fields.insert(
            "sink_url".into(),
            "names this sluice's own proxy: requests would loop back into it".into(),
        );
    }
    if !fields.contains_key("sink_url") {
        if let Err(denied) = state.validator.egress_check(&ch.sink_url).await {
            fields.insert("sink_url".into(), denied.to_string().into());
        }
    }
    if fields.is_empty() {
        Ok(())
    } else {
        Err(ApiError::fields(fields))
    }
}

/// Auth methods and the sink credential must exist in the channel's project, and the
/// credential's schema must have an injection rule.
async fn check_references(
    state: &AdminState,
    ch: &Channel,
) -> Result<Map<String, Value>, ApiError> {
    let mut fields = Map::new();
    let found = state
        .store
        .auth_methods_by_ids(&ch.source_auth_method_ids)
        .await?;
    let unknown: Vec<String> = ch
        .source_auth_method_ids
        .iter()
        .filter(|id| {
            !found
                .iter()
                .any(|m| m.id == **id && m.project_id == ch.project_id)
        })
        .map(Uuid::to_string)
        .collect();
    if !unknown.is_empty() {
        fields.insert(
            "source_auth_method_ids".into(),
            format!(
                "unknown auth method in this project: {}",
                unknown.join(", ")
            )
            .into(),
        );
    }
    if let Some(id) = ch.sink_credential_id {
        match state.store.credential_schema(id).await? {
            Some((project, _)) if project != ch.project_id => {
                fields.insert(
                    "sink_credential_id".into(),
                    "unknown credential in this project".into(),
                );
            }
            None => {
                fields.insert("sink_credential_id".into(), "unknown credential".into());
            }
            Some((_, schema)) => {
                let supported = state
                    .catalog
                    .schema(&schema)
                    .is_some_and(|s| s.has_injection_rule());
                if !supported {
                    fields.insert(
                        "sink_credential_id".into(),
                        format!("unsupported_credential_schema: sluice has no rule to inject {schema} credentials").into(),
                    );
                }
            }
        }
    }
    Ok(fields)
}

/// The rules a channel's own fields must satisfy.
fn check_fields(ch: &Channel, fields: &mut Map<String, Value>) {
    if let Err(why) = wire::check_name(&ch.name) {
        fields.insert("name".into(), why.into());
    }
    if ch.sink_url.len() > wire::MAX_URL {
        fields.insert(
            "sink_url".into(),
            format!("must be at most {} bytes", wire::MAX_URL).into(),
        );
    } else if let Err(why) = parse_sink_url(&ch.sink_url) {
        fields.insert("sink_url".into(), why.into());
    }
    let t = ch.timeouts;
    for (name, v) in [
        ("timeouts.connect_ms", t.connect_ms),
        ("timeouts.response_ms", t.response_ms),
        ("timeouts.idle_ms", t.idle_ms),
    ] {
        if v.is_some_and(|ms| ms == 0 || ms > MAX_TIMEOUT_MS) {
            fields.insert(
                name.into(),
                format!("must be from 1 to {MAX_TIMEOUT_MS} ms").into(),
            );
        }
    }
    if ch.max_request_bytes == Some(0) {
        fields.insert(
            "max_request_bytes".into(),
            "must be at least 1 (or null for no limit)".into(),
        );
    }
    if ch.preview_bytes > MAX_PREVIEW_BYTES {
        fields.insert(
            "preview_bytes".into(),
            format!("must be at most {MAX_PREVIEW_BYTES}").into(),
        );
    }
}

fn duplicate_name() -> ApiError {
    ApiError::field(
        "name",
        "a channel with this name already exists in the project",
    )
}

/// `POST /api/v1/channels`
pub async fn create(
    State(state): State<AdminState>,
    caller: Caller,
    body: Bytes,
) -> ApiResult<impl IntoResponse> {
    let input: CreateChannel = wire::parse_body(&body)?;
    let ch = create_channel(&state, &caller, input).await?;
    let mut body = channel_json(&state, &ch);
    channel_health::decorate(
        &state,
        std::slice::from_ref(&ch),
        std::slice::from_mut(&mut body),
    )
    .await?;
    body["validation"] =
        serde_json::to_value(state.validator.validate(&ch.sink_url).await).unwrap_or(Value::Null);
    Ok((StatusCode::CREATED, Json(body)))
}

/// Creates a channel in the project `input` names (or the default one), if the caller may edit
/// channels there (and manage it, to attach a sink credential) and every rule holds.
pub async fn create_channel(
    state: &AdminState,
    caller: &Caller,
    input: CreateChannel,
) -> ApiResult<Channel> {
    let project_id = state
        .project_for(caller, Right::EditChannels, input.project_id)
        .await?;
    if input.sink_credential_id.is_some() {
        // Whoever attaches a sink credential could read it back through an echoing sink.
        caller.allow(Right::ManageProject, Some(project_id), "project")?;
    }
    let now = now_us();
    let ch = Channel {
        id: Uuid::now_v7(),
        project_id,
        name: input.name,
        sink_url: input.sink_url,
        enabled: input.enabled.unwrap_or(true),
        lock_version: 1,
        source_auth_method_ids: input.source_auth_method_ids,
        sink_credential_id: input.sink_credential_id,
        timeouts: input.timeouts.unwrap_or_default(),
        preview_bytes: input.preview_bytes.unwrap_or(DEFAULT_PREVIEW_BYTES),
        max_request_bytes: input.max_request_bytes,
        created_at: now,
        updated_at: now,
    };
    validate(state, &ch).await?;
    match state.store.create_channel(&ch, caller.actor()).await {
        Ok(()) => Ok(ch),
        Err(sluice_store::StoreError::Conflict(_)) => Err(duplicate_name()),
        Err(e) => Err(e.into()),
    }
}

/// `GET /api/v1/channels`: of `project_id`, or of every project the caller may read.
pub async fn list(
    State(state): State<AdminState>,
    caller: Caller,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let limit = wire::limit(q.get("limit").map(String::as_str))?;
    let project = q
        .get("project_id")
        .map(|p| {
            Uuid::parse_str(p).map_err(|_| ApiError::bad_query("project_id", "must be a UUID"))
        })
        .transpose()?;
    let after = q
        .get("cursor")
        .map(|c| {
            Uuid::parse_str(&wire::decode_cursor(c)?)
                .map_err(|_| ApiError::bad_query("cursor", "not a cursor returned by this API"))
        })
        .transpose()?;
    let scope = wire::list_scope(&caller, project)?;
    let rows = state
        .store
        .list_channels(scope.as_deref(), after, limit)
        .await?;
    let mut body = wire::page(
        &rows,
        limit,
        |c| channel_json(&state, c),
        |c| c.id.to_string(),
    );
    if let Some(Value::Array(items)) = body.get_mut("items") {
        channel_health::decorate(&state, &rows, items).await?;
    }
    Ok(Json(body))
}

/// Loads a channel on which the caller holds `right`, or answers 404 (no such channel, or one
/// in a project the caller cannot see) or 403.
pub async fn load(
    state: &AdminState,
    caller: &Caller,
    right: Right,
    id: &str,
) -> ApiResult<Channel> {
    let id = Uuid::parse_str(id).map_err(|_| ApiError::not_found("channel"))?;
    let ch = state
        .store
        .get_channel(id)
        .await?
        .ok_or_else(|| ApiError::not_found("channel"))?;
    caller.allow(right, Some(ch.project_id), "channel")?;
    Ok(ch)
}

/// `GET /api/v1/channels/{id}`
pub async fn get(
    State(state): State<AdminState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let ch = load(&state, &caller, Right::Read, &id).await?;
    let mut body = channel_json(&state, &ch);
    channel_health::decorate(
        &state,
        std::slice::from_ref(&ch),
        std::slice::from_mut(&mut body),
    )
    .await?;
    Ok(Json(body))
}

/// `PATCH /api/v1/channels/{id}`
pub async fn patch(
    State(state): State<AdminState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    // A channel the caller cannot edit answers 404 or 403 before its body is read.
    let current = load(&state, &caller, Right::EditChannels, &id).await?;
    let input: PatchChannel = wire::parse_body(&body)?;
    let (stored, sink_changed) = change(&state, &caller, current, input).await?;
    let mut body = channel_json(&state, &stored);
    channel_health::decorate(
        &state,
        std::slice::from_ref(&stored),
        std::slice::from_mut(&mut body),
    )
    .await?;
    if sink_changed {
        body["validation"] = serde_json::to_value(state.validator.validate(&stored.sink_url).await)
            .unwrap_or(Value::Null);
    }
    Ok(Json(body))
}

/// Changes `current` (loaded with [`load`] for `Right::EditChannels`) as `input` says, if
/// `input.lock_version` is still the current one (409 with the current channel otherwise): the
/// stored channel, and whether its sink URL changed.
pub async fn change(
    state: &AdminState,
    caller: &Caller,
    current: Channel,
    input: PatchChannel,
) -> ApiResult<(Channel, bool)> {
    let sink_changed = input
        .sink_url
        .as_ref()
        .is_some_and(|u| *u != current.sink_url);
    let credential_after = input
        .sink_credential_id
        .unwrap_or(current.sink_credential_id);
    // Whoever points a credential at a sink could read it back through an echoing sink: a
    // credential newly attached, or a channel's credential sent to a new sink URL.
    if credential_after.is_some()
        && (credential_after != current.sink_credential_id || sink_changed)
    {
        caller.allow(Right::ManageProject, Some(current.project_id), "channel")?;
    }
    if input.lock_version != current.lock_version {
        return Err(stale(state, &current));
    }
    let mut next = current.clone();
    if let Some(v) = input.name {
        next.name = v;
    }
    if let Some(v) = input.sink_url {
        next.sink_url = v;
    }
    if let Some(v) = input.enabled {
        next.enabled = v;
    }
    if let Some(v) = input.source_auth_method_ids {
        next.source_auth_method_ids = v;
    }
    if let Some(v) = input.sink_credential_id {
        next.sink_credential_id = v;
    }
    if let Some(v) = input.timeouts {
        next.timeouts = v;
    }
    if let Some(v) = input.preview_bytes {
        next.preview_bytes = v;
    }
    if let Some(v) = input.max_request_bytes {
        next.max_request_bytes = v;
    }
    validate(state, &next).await?;
    match state
        .store
        .update_channel(&next, input.lock_version, caller.actor())
        .await
    {
        Ok(c) => Ok((c, sink_changed)),
        Err(sluice_store::StoreError::Stale) => {
            let fresh = load(state, caller, Right::Read, &current.id.to_string()).await?;
            Err(stale(state, &fresh))
        }
        Err(sluice_store::StoreError::Conflict(_)) => Err(duplicate_name()),
        Err(e) => Err(e.into()),
    }
}

fn stale(state: &AdminState, current: &Channel) -> ApiError {
    ApiError::conflict(
        "stale lock_version",
        json!({ "current_lock_version": current.lock_version, "current": channel_json(state, current) }),
    )
}

/// Query of `DELETE /channels/{id}`.
#[derive(Debug, Deserialize)]
pub struct DeleteQuery {
    #[serde(default)]
    purge: bool,
}

/// `DELETE /api/v1/channels/{id}`
pub async fn delete(
    State(state): State<AdminState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<DeleteQuery>,
) -> ApiResult<StatusCode> {
    let ch = load(&state, &caller, Right::EditChannels, &id).await?;
    remove(&state, &caller, &ch, q.purge).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Deletes `ch` (loaded with [`load`] for `Right::EditChannels`); one with recorded requests
/// only with `purge` (409 naming how many otherwise), which deletes its history too.
pub async fn remove(
    state: &AdminState,
    caller: &Caller,
    ch: &Channel,
    purge: bool,
) -> ApiResult<()> {
    match state
        .store
        .delete_channel(ch.id, purge, caller.actor())
        .await?
    {
        DeleteOutcome::Deleted => Ok(()),
        DeleteOutcome::NotFound => Err(ApiError::not_found("channel")),
        DeleteOutcome::HasHistory => Err(ApiError::conflict(
            "channel has recorded requests; delete with ?purge=true to remove them too",
            json!({ "requests": state.store.count_requests(ch.id).await? }),
        )),
    }
}
