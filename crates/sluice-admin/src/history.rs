//! Request history: `/channels/{id}/requests`, `/requests/{id}`, `/channels/{id}/stats`.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::Json;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Value};
use sluice_core::access::Right;
use sluice_core::clock::now_us;
use sluice_core::{BodyObservation, EventRecord, RequestRecord, RequestState};
use sluice_store::wipes::{Wipe, WipeOutcome};
use sluice_store::{Cursor, RequestFilter, StatusFilter};
use uuid::Uuid;

use crate::auth::Caller;
use crate::channels::load;
use crate::error::{ApiError, ApiResult};
use crate::wire;
use crate::AdminState;

/// A request as listed.
pub fn request_json(r: &RequestRecord) -> Value {
    json!({
        "id": r.id,
        "request_id": r.request_id,
        "channel_id": r.channel_id,
        "snapshot_id": r.snapshot_id,
        "state": r.state,
        "method": r.method,
        "path": r.path,
        "query": r.query,
        "response_status": r.response_status,
        "error": r.error,
        "client_identity": r.client_identity,
        "source_auth_method_id": r.source_auth_method_id,
        "source_auth_type": r.source_auth_type,
        "started_at": wire::ts(r.started_at),
        "completed_at": r.completed_at.map(wire::ts),
        "latency_us": r.latency_us,
        "ttfb_us": r.ttfb_us,
        "request_body_size": r.request_body_size,
        "response_body_size": r.response_body_size,
    })
}

/// A preview as `{"encoding", "data", "truncated"}`: UTF-8 text when it is text (a character
/// cut by the preview limit is dropped), base64 otherwise.
pub fn preview_json(b: &BodyObservation) -> Value {
    let text = match std::str::from_utf8(&b.preview) {
        Ok(s) => Some(s),
        Err(e) if b.truncated && e.error_len().is_none() => {
            std::str::from_utf8(&b.preview[..e.valid_up_to()]).ok()
        }
        Err(_) => None,
    };
    match text {
        Some(s) => json!({ "encoding": "utf8", "data": s, "truncated": b.truncated }),
        None => {
            json!({ "encoding": "base64", "data": STANDARD.encode(&b.preview), "truncated": b.truncated })
        }
    }
}

fn event_json(e: &EventRecord) -> Value {
    let t = &e.timings;
    json!({
        "request_headers": e.request_headers,
        "response_headers": e.response_headers,
        "request_body_sha256": e.request_body.sha256,
        "response_body_sha256": e.response_body.sha256,
        "request_body_size": e.request_body.size,
        "response_body_size": e.response_body.size,
        "request_body_preview": preview_json(&e.request_body),
        "response_body_preview": preview_json(&e.response_body),
        "response_status": e.response_status,
        "error": e.error,
        "latency_us": t.latency_us,
        "ttfb_us": t.ttfb_us,
        "connect_us": t.connect_us,
        "send_us": t.send_us,
        "queue_us": t.queue_us,
        "reused_connection": t.reused_connection,
    })
}

pub(crate) fn filter_from(q: &HashMap<String, String>) -> ApiResult<RequestFilter> {
    let get = |k: &str| q.get(k).map(String::as_str).filter(|s| !s.is_empty());
    Ok(RequestFilter {
        state: get("state")
            .map(|s| {
                RequestState::parse(s).ok_or_else(|| {
                    ApiError::bad_query(
                        "state",
                        "must be one of pending, success, failed, timeout, error",
                    )
                })
            })
            .transpose()?,
        method: get("method").map(str::to_string),
        status: get("status")
            .map(|s| {
                StatusFilter::parse(s).ok_or_else(|| {
                    ApiError::bad_query("status", "must be a status like 404 or a class like 5xx")
                })
            })
            .transpose()?,
        since: wire::time("since", get("since"))?,
        until: wire::time("until", get("until"))?,
        path_prefix: get("path_prefix").map(str::to_string),
        request_id: get("request_id").map(str::to_string),
    })
}

/// The API's cursor for a position in a channel's history.
pub(crate) fn encode_request_cursor(c: &Cursor) -> String {
    wire::encode_cursor(&format!("{}:{}", c.started_at, c.id))
}

pub(crate) fn decode_request_cursor(raw: &str) -> ApiResult<Cursor> {
    let (started_at, id) = wire::decode_pair_cursor(raw)?;
    Ok(Cursor {
        started_at,
        id: Uuid::parse_str(&id)
            .map_err(|_| ApiError::bad_query("cursor", "not a cursor returned by this API"))?,
    })
}

/// `GET /api/v1/channels/{id}/requests`
pub async fn list(
    State(state): State<AdminState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let ch = load(&state, &caller, Right::Read, &id).await?;
    let filter = filter_from(&q)?;
    let limit = wire::limit(q.get("limit").map(String::as_str))?;
    let after = q
        .get("cursor")
        .map(|c| decode_request_cursor(c))
        .transpose()?;
    let page = state
        .store
        .list_requests_page(ch.id, &filter, after, limit)
        .await?;
    Ok(Json(json!({
        "items": page.items.iter().map(request_json).collect::<Vec<_>>(),
        "next_cursor": page.next.map(|c| encode_request_cursor(&c)),
    })))
}

/// `GET /api/v1/requests/{id}`
pub async fn get(
    State(state): State<AdminState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let (req, ev) = readable_request(&state, &caller, &id).await?;
    Ok(Json(detail_json(&state, &req, ev.as_ref()).await?))
}

/// Who "wiped" a request recorded by a metadata-only project.
pub const METADATA_ONLY: &str = "policy:metadata-only";

/// Who wiped a request and when: an operator, or its project's metadata-only recording (it
/// leaves the caller empty, which nothing else does).
pub(crate) async fn wiped(state: &AdminState, req: &RequestRecord) -> ApiResult<Option<Wipe>> {
    if let Some(w) = state.store.request_wipe(req.id).await? {
        return Ok(Some(w));
    }
    let by_policy = req.client_identity.is_empty() && req.state != RequestState::Pending;
    Ok(by_policy.then(|| Wipe {
        at: req.completed_at.unwrap_or(req.started_at),
        by: METADATA_ONLY.to_string(),
    }))
}

/// A request as its detail shows it: its row, its event, and who wiped it if anyone did.
async fn detail_json(
    state: &AdminState,
    req: &RequestRecord,
    ev: Option<&EventRecord>,
) -> ApiResult<Value> {
    let mut body = request_json(req);
    body["event"] = ev.map(event_json).unwrap_or(Value::Null);
    body["wiped"] = match wiped(state, req).await? {
        Some(w) => json!({ "at": wire::ts(w.at), "by": w.by }),
        None => Value::Null,
    };
    Ok(body)
}

/// `POST /api/v1/requests/{id}/wipe` (admin of its project): drops what the request carried
/// (headers, body previews, path, query, client address) and keeps the fact of it (state,
/// status, sizes, timings, hashes), marked with who wiped it and when, and audited. A request
/// still in flight is 409; wiping again changes nothing.
pub async fn wipe(
    State(state): State<AdminState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    wipe_request(&state, &caller, &id).await?;
    let (req, ev) = readable_request(&state, &caller, &id).await?;
    Ok(Json(detail_json(&state, &req, ev.as_ref()).await?))
}

/// Wipes request `id` if the caller administers its project (see [`wipe`]).
pub(crate) async fn wipe_request(state: &AdminState, caller: &Caller, id: &str) -> ApiResult<()> {
    let (req, _) = readable_request(state, caller, id).await?;
    let channel = req.channel_id.to_string();
    let ch = load(state, caller, Right::ManageProject, &channel).await?;
    let outcome = state
        .store
        .wipe_request(req.id, ch.project_id, caller.actor())
        .await?;
    if outcome == WipeOutcome::NotFinished {
        return Err(ApiError::conflict(
            "the request is in flight or its outcome not written yet: try again once it has finished",
            json!({ "state": req.state.as_str() }),
        ));
    }
    Ok(())
}

/// Request `id` and its event, if the caller may read its channel (404 alike for a request
/// that does not exist and for one the caller may not see).
pub(crate) async fn readable_request(
    state: &AdminState,
    caller: &Caller,
    id: &str,
) -> ApiResult<(RequestRecord, Option<EventRecord>)> {
    let id = Uuid::parse_str(id).map_err(|_| ApiError::not_found("request"))?;
    let (req, ev) = state
        .store
        .get_request(id)
        .await?
        .ok_or_else(|| ApiError::not_found("request"))?;
    load(state, caller, Right::Read, &req.channel_id.to_string())
        .await
        .map_err(|_| ApiError::not_found("request"))?;
    Ok((req, ev))
}

/// `GET /api/v1/channels/{id}/stats?since=` (default: the last 24 hours)
pub async fn stats(
    State(state): State<AdminState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let ch = load(&state, &caller, Right::Read, &id).await?;
    let since = wire::time("since", q.get("since").map(String::as_str))?
        .unwrap_or_else(|| now_us() - 24 * 3600 * 1_000_000);
    let s = state.store.channel_stats(ch.id, since).await?;
    let mut by_minute: HashMap<i64, serde_json::Map<String, Value>> = HashMap::new();
    for (minute, st, k) in &s.per_minute_by_state {
        by_minute
            .entry(*minute)
            .or_default()
            .insert(st.clone(), json!(k));
    }
    Ok(Json(json!({
        "channel_id": ch.id,
        "since": wire::ts(since),
        "total": s.total,
        "by_state": s.by_state,
        "latency_us": s.latency_us,
        "requests_per_minute": s.per_minute.iter()
            .map(|(m, n)| {
                let by_state = by_minute.remove(m).unwrap_or_default();
                json!({ "minute": wire::ts(*m), "count": n, "by_state": by_state })
            })
            .collect::<Vec<_>>(),
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn previews_are_text_or_base64() {
        let text = BodyObservation {
            preview: b"hello".to_vec(),
            ..Default::default()
        };
        assert_eq!(preview_json(&text)["encoding"], "utf8");
        let bin = BodyObservation {
            preview: vec![0xff, 0x00],
            ..Default::default()
        };
        assert_eq!(preview_json(&bin)["data"], "/wA=");
        // "é" cut in half by the preview limit stays text.
        let cut = BodyObservation {
            preview: vec![b'a', 0xc3],
            truncated: true,
            ..Default::default()
        };
        assert_eq!(preview_json(&cut)["data"], "a");
    }
}
