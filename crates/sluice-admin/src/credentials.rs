//! `/api/v1/credentials`: sink credentials. Bodies are validated against their schema; secret
//! fields are accepted but never returned (the answer lists which ones are set).

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::IntoResponse;
use axum::Json;
use http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use sluice_core::access::Right;
use sluice_core::clock::now_us;
use sluice_store::{Credential, StoreError};
use uuid::Uuid;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::schemas::CredentialSchema;
use crate::wire;
use crate::AdminState;

/// Body of `POST /credentials`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateCredential {
    pub name: String,
    pub schema: String,
    pub project_id: Option<Uuid>,
    pub body: Map<String, Value>,
}

/// Body of `PATCH /credentials/{id}`: `body` is a merge patch (a `null` removes a field,
/// absent fields, secrets included, are kept).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchCredential {
    #[serde(default, deserialize_with = "wire::non_null")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "wire::non_null")]
    pub body: Option<Map<String, Value>>,
}

/// The credential as the API shows it: non-secret fields with values, secret ones by name.
pub fn credential_json(schema: Option<&CredentialSchema>, c: &Credential) -> Value {
    let is_secret = |f: &str| match schema {
        Some(s) => s.is_secret(f),
        None => crate::schemas::secret_by_name(f),
    };
    let mut shown = Map::new();
    let mut secret = Vec::new();
    if let Some(m) = c.body.as_object() {
        for (k, v) in m {
            if is_secret(k) {
                secret.push(k.clone());
            } else {
                shown.insert(k.clone(), v.clone());
            }
        }
    }
    json!({
        "id": c.id,
        "project_id": c.project_id,
        "name": c.name,
        "schema": c.schema,
        "body": shown,
        "secret_fields": secret,
        "version": c.version,
        "created_at": wire::ts(c.created_at),
        "updated_at": wire::ts(c.updated_at),
    })
}

fn check_name(name: &str, fields: &mut Map<String, Value>) {
    if let Err(why) = wire::check_name(name) {
        fields.insert("name".into(), why.into());
    }
}

fn duplicate_name() -> ApiError {
    ApiError::field(
        "name",
        "a credential with this name already exists in the project",
    )
}

/// The schema of a credential type as known now (see [`crate::catalog::Catalog::schema`]).
pub fn schema_of(state: &AdminState, name: &str) -> Option<std::sync::Arc<CredentialSchema>> {
    state.catalog.schema(name)
}

/// `POST /api/v1/credentials`
pub async fn create(
    State(state): State<AdminState>,
    caller: Caller,
    body: Bytes,
) -> ApiResult<impl IntoResponse> {
    let input: CreateCredential = wire::parse_body(&body)?;
    let stored = create_credential(&state, &caller, input).await?;
    let schema = schema_of(&state, &stored.schema);
    Ok((
        StatusCode::CREATED,
        Json(credential_json(schema.as_deref(), &stored)),
    ))
}

/// Creates a credential, if the caller may manage the project and the body fits its schema.
pub async fn create_credential(
    state: &AdminState,
    caller: &Caller,
    input: CreateCredential,
) -> ApiResult<Credential> {
    let project_id = state
        .project_for(caller, Right::ManageProject, input.project_id)
        .await?;
    let mut fields = Map::new();
    check_name(&input.name, &mut fields);
    let body = Value::Object(input.body);
    // A type the seed lacks may wait (a bounded time) for the catalogue's first load.
    let (schema, unloaded) = match state.catalog.credential_schema(&input.schema).await {
        Ok(schema) => (schema, None),
        Err(e) => (None, Some(e)),
    };
    match &schema {
        Some(s) => {
            fields.extend(s.errors(&body));
            if let (true, Some(why)) = (fields.is_empty(), s.unusable(&body)) {
                fields.insert("body".into(), why.into());
            }
        }
        None => {
            let known: Vec<String> = state
                .catalog
                .credential_types()
                .into_iter()
                .map(|(name, _)| name)
                .collect();
            let why = unloaded.map(|e| format!(" ({e})")).unwrap_or_default();
            fields.insert(
                "schema".into(),
                format!(
                    "unknown credential schema{why}; known: {}",
                    known.join(", ")
                )
                .into(),
            );
        }
    }
    if !fields.is_empty() {
        return Err(ApiError::fields(fields));
    }
    let now = now_us();
    let c = Credential {
        id: Uuid::now_v7(),
        project_id,
        name: input.name,
        // One spelling whatever the caller used (`@openfn/language-dhis2` is `dhis2`).
        schema: schema.as_ref().map_or(input.schema, |s| s.name.clone()),
        body,
        key_id: String::new(),
        version: 1,
        created_at: now,
        updated_at: now,
    };
    match state.store.create_credential(&c, caller.actor()).await {
        Ok(s) => Ok(s),
        Err(StoreError::Conflict(_)) => Err(duplicate_name()),
        Err(e) => Err(e.into()),
    }
}

/// `GET /api/v1/credentials`
pub async fn list(
    State(state): State<AdminState>,
    caller: Caller,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let (limit, after) = wire::id_page(&q)?;
    let scope = wire::list_scope(&caller, wire::uuid_query(&q, "project_id")?)?;
    let rows = state
        .store
        .list_credentials(scope.as_deref(), after, limit)
        .await?;
    Ok(Json(wire::page(
        &rows,
        limit,
        |c| credential_json(schema_of(&state, &c.schema).as_deref(), c),
        |c| c.id.to_string(),
    )))
}

/// Loads a credential on which the caller holds `right` (404 when it cannot see it).
pub async fn load(
    state: &AdminState,
    caller: &Caller,
    right: Right,
    id: &str,
) -> ApiResult<Credential> {
    let id = Uuid::parse_str(id).map_err(|_| ApiError::not_found("credential"))?;
    let c = state
        .store
        .get_credential(id)
        .await?
        .ok_or_else(|| ApiError::not_found("credential"))?;
    caller.allow(right, Some(c.project_id), "credential")?;
    Ok(c)
}

/// `GET /api/v1/credentials/{id}`
pub async fn get(
    State(state): State<AdminState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let c = load(&state, &caller, Right::Read, &id).await?;
    Ok(Json(credential_json(
        schema_of(&state, &c.schema).as_deref(),
        &c,
    )))
}

/// `PATCH /api/v1/credentials/{id}`
pub async fn patch(
    State(state): State<AdminState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let current = load(&state, &caller, Right::ManageProject, &id).await?;
    let input: PatchCredential = wire::parse_body(&body)?;
    let stored = change_credential(&state, &caller, current, input).await?;
    let schema = schema_of(&state, &stored.schema);
    Ok(Json(credential_json(schema.as_deref(), &stored)))
}

/// Changes `current`'s name (loaded with [`load`] for `Right::ManageProject`) and merges
/// `input.body` into its body (a `null` removes a field), if the result fits the schema.
pub async fn change_credential(
    state: &AdminState,
    caller: &Caller,
    current: Credential,
    input: PatchCredential,
) -> ApiResult<Credential> {
    let mut next = current.clone();
    let mut changed = Vec::new();
    let mut fields = Map::new();
    if let Some(name) = input.name {
        check_name(&name, &mut fields);
        if name != current.name {
            changed.push("name".to_string());
        }
        next.name = name;
    }
    if let Some(patch) = input.body {
        let obj = next
            .body
            .as_object_mut()
            .expect("stored bodies are objects");
        for (k, v) in patch {
            let before = obj.get(&k).cloned();
            if v.is_null() {
                obj.remove(&k);
            } else {
                obj.insert(k.clone(), v);
            }
            if obj.get(&k) != before.as_ref() {
                changed.push(format!("body.{k}"));
            }
        }
    }
    if let Some(s) = schema_of(state, &next.schema) {
        fields.extend(s.errors(&next.body));
        if let (true, Some(why)) = (fields.is_empty(), s.unusable(&next.body)) {
            fields.insert("body".into(), why.into());
        }
    }
    if !fields.is_empty() {
        return Err(ApiError::fields(fields));
    }
    if changed.is_empty() {
        return Ok(current);
    }
    match state
        .store
        .update_credential(&next, &changed, caller.actor())
        .await
    {
        Ok(s) => Ok(s),
        Err(StoreError::Conflict(_)) => Err(duplicate_name()),
        Err(StoreError::Stale) => Err(ApiError::conflict(
            "credential changed meanwhile; read it again",
            json!({}),
        )),
        Err(e) => Err(e.into()),
    }
}

/// `DELETE /api/v1/credentials/{id}`: 409 while a channel uses it.
pub async fn delete(
    State(state): State<AdminState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let c = load(&state, &caller, Right::ManageProject, &id).await?;
    remove_credential(&state, &caller, &c).await
}

/// Deletes `c` (loaded with [`load`]) unless a channel uses it (409 while one does).
pub async fn remove_credential(
    state: &AdminState,
    caller: &Caller,
    c: &Credential,
) -> ApiResult<StatusCode> {
    wire::removal(
        state.store.delete_credential(c.id, caller.actor()).await?,
        "credential",
        "credential is used by channels; detach it first",
    )
}
