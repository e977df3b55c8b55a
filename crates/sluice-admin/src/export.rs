//! Taking requests out: one request's body as it passed (`/requests/{id}/body/…`, when the
//! ledger holds it whole), one request as a cURL command or a HAR 1.2 log
//! (`/requests/{id}/export`), a channel's filtered history as NDJSON or CSV, streamed page by
//! page so a million rows take no more memory than one page, or as HAR up to a cap
//! (`/channels/{id}/requests/export`). Exports hold what the ledger holds: redacted header
//! values stay redacted, and a body recorded only in part is said to be so, never passed off
//! as whole.

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use futures_util::stream::{self, StreamExt};
use http::header;
use serde_json::{json, Value};
use sluice_core::access::Right;
use sluice_core::{BodyObservation, EventRecord, RequestRecord};
use sluice_store::{Cursor, RequestFilter, Store};
use uuid::Uuid;

use crate::auth::Caller;
use crate::channels::load;
use crate::error::{ApiError, ApiResult};
use crate::history::{filter_from, readable_request, request_json};
use crate::wire;
use crate::AdminState;

/// Most requests in one HAR export of a history.
pub const HAR_CAP: usize = 1000;
/// Rows read per page while streaming a history.
const PAGE: i64 = 500;
/// Request headers curl writes itself from the command.
const CURL_SETS: [&str; 3] = ["host", "content-length", "transfer-encoding"];
/// The CSV export's columns, in order.
const CSV_COLUMNS: [&str; 15] = [
    "id",
    "request_id",
    "started_at",
    "completed_at",
    "state",
    "method",
    "path",
    "query",
    "response_status",
    "error",
    "latency_us",
    "ttfb_us",
    "request_body_size",
    "response_body_size",
    "client_identity",
];

/// The URL a request was forwarded to: the origin of `sink_url` (its snapshot's), then the
/// path and query it was sent with; its path alone when the snapshot is gone.
pub fn forwarded_url(sink_url: Option<&str>, r: &RequestRecord) -> String {
    let query = r
        .query
        .as_ref()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    match sink_url.and_then(|u| url::Url::parse(u).ok()) {
        Some(u) => format!("{}{}{query}", u.origin().ascii_serialization(), r.path),
        None => format!("{}{query}", r.path),
    }
}

/// The sink URL of snapshot `id` (`None` when it is gone).
async fn sink_url_of(store: &Store, id: Uuid) -> ApiResult<Option<String>> {
    Ok(store.get_snapshot(id).await?.map(|s| s.config.sink_url))
}

/// `s` quoted for a POSIX shell: single quotes, or `$'…'` with `\xHH` escapes when it holds
/// bytes a single-quoted word cannot carry (control characters, invalid UTF-8).
fn shell_quote(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) if !s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') => {
            format!("'{}'", s.replace('\'', r"'\''"))
        }
        _ => {
            let mut out = String::from("$'");
            for &b in bytes {
                match b {
                    b'\\' => out.push_str(r"\\"),
                    b'\'' => out.push_str(r"\'"),
                    0x20..=0x7e => out.push(b as char),
                    _ => out.push_str(&format!("\\x{b:02x}")),
                }
            }
            out.push('\'');
            out
        }
    }
}

/// One request as a `curl` command that sends it to the sink again: method, URL, the headers
/// as they were sent (redacted values stay redacted) and the body when it was recorded whole.
pub fn curl(r: &RequestRecord, ev: Option<&EventRecord>, url: &str) -> String {
    let mut lines = vec![format!(
        "# sluice request {} (x-request-id {}), {}",
        r.id,
        r.request_id,
        wire::ts(r.started_at)
    )];
    let body = ev.map(|e| &e.request_body).filter(|b| b.size > 0);
    if let Some(b) = body.filter(|b| b.truncated) {
        lines.push(format!(
            "# its body was recorded in part ({} of {} bytes) and is left out",
            b.preview.len(),
            b.size
        ));
    }
    let mut args = match r.method.as_str() {
        "GET" => Vec::new(),
        "HEAD" => vec!["--head".to_string()],
        m => vec![format!("-X {}", shell_quote(m.as_bytes()))],
    };
    args.push(shell_quote(url.as_bytes()));
    for (name, value) in ev.map(|e| e.request_headers.pairs()).unwrap_or_default() {
        if !CURL_SETS.contains(&name.to_ascii_lowercase().as_str()) {
            args.push(format!(
                "-H {}",
                shell_quote(format!("{name}: {value}").as_bytes())
            ));
        }
    }
    if let Some(b) = body.filter(|b| !b.truncated) {
        args.push(format!("--data-binary {}", shell_quote(&b.preview)));
    }
    lines.push(format!("curl {}", args.join(" \\\n  ")));
    lines.join("\n") + "\n"
}

/// A body's preview as HAR text: UTF-8 as it is, anything else in base64 (`encoding`).
fn har_text(b: &BodyObservation) -> (String, Option<&'static str>) {
    match std::str::from_utf8(&b.preview) {
        Ok(s) => (s.to_string(), None),
        Err(_) => (STANDARD.encode(&b.preview), Some("base64")),
    }
}

fn har_headers(list: Option<Vec<(String, String)>>) -> Value {
    list.unwrap_or_default()
        .into_iter()
        .map(|(name, value)| json!({ "name": name, "value": value }))
        .collect()
}

fn header_of(list: &[(String, String)], name: &str) -> Option<String> {
    list.iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.clone())
}

/// Milliseconds (HAR's unit) of a microsecond count; `-1` where it was not measured.
fn ms(us: Option<i64>) -> f64 {
    us.map_or(-1.0, |us| us as f64 / 1000.0)
}

/// One request as a HAR 1.2 entry.
fn har_entry(r: &RequestRecord, ev: Option<&EventRecord>, url: &str) -> Value {
    let req_headers = ev.map(|e| e.request_headers.pairs());
    let res_headers = ev.map(|e| e.response_headers.pairs());
    let query: Vec<Value> =
        url::form_urlencoded::parse(r.query.as_deref().unwrap_or("").as_bytes())
            .map(|(n, v)| json!({ "name": n, "value": v }))
            .collect();
    let mut request = json!({
        "method": r.method,
        "url": url,
        "httpVersion": "HTTP/1.1",
        "cookies": [],
        "headers": har_headers(req_headers.clone()),
        "queryString": query,
        "headersSize": -1,
        "bodySize": r.request_body_size.unwrap_or(-1),
    });
    if let Some(b) = ev.map(|e| &e.request_body).filter(|b| b.size > 0) {
        let (text, encoding) = har_text(b);
        let mime = req_headers
            .as_deref()
            .and_then(|h| header_of(h, "content-type"))
            .unwrap_or_else(|| "application/octet-stream".into());
        let mut post = json!({ "mimeType": mime, "text": text });
        if let Some(enc) = encoding {
            post["_encoding"] = json!(enc);
        }
        if b.truncated {
            post["comment"] = json!(format!(
                "recorded in part: {} of {} bytes",
                b.preview.len(),
                b.size
            ));
        }
        request["postData"] = post;
    }
    let mut content = json!({
        "size": r.response_body_size.unwrap_or(0),
        "mimeType": res_headers
            .as_deref()
            .and_then(|h| header_of(h, "content-type"))
            .unwrap_or_default(),
    });
    if let Some(b) = ev.map(|e| &e.response_body) {
        let (text, encoding) = har_text(b);
        content["text"] = json!(text);
        if let Some(enc) = encoding {
            content["encoding"] = json!(enc);
        }
        if b.truncated {
            content["comment"] = json!(format!(
                "recorded in part: {} of {} bytes",
                b.preview.len(),
                b.size
            ));
        }
    }
    let t = ev.map(|e| e.timings).unwrap_or_default();
    let (queue, connect, send) = (t.queue_us, t.connect_us, t.send_us);
    let wait = t
        .ttfb_us
        .map(|ttfb| ttfb - queue.unwrap_or(0) - connect.unwrap_or(0) - send.unwrap_or(0));
    let receive = t.latency_us.zip(t.ttfb_us).map(|(l, f)| l - f);
    let mut entry = json!({
        "startedDateTime": wire::ts(r.started_at),
        "time": ms(r.latency_us).max(0.0),
        "request": request,
        "response": {
            "status": r.response_status.unwrap_or(0),
            "statusText": "",
            "httpVersion": "HTTP/1.1",
            "cookies": [],
            "headers": har_headers(res_headers),
            "content": content,
            "redirectURL": "",
            "headersSize": -1,
            "bodySize": r.response_body_size.unwrap_or(-1),
        },
        "cache": {},
        "timings": {
            "blocked": ms(queue),
            "dns": -1,
            "connect": ms(connect),
            "send": ms(send).max(0.0),
            "wait": ms(wait).max(0.0),
            "receive": ms(receive).max(0.0),
        },
        "_sluice": { "id": r.id, "request_id": r.request_id, "state": r.state, "error": r.error },
    });
    if r.error.is_some() {
        entry["comment"] = json!(format!(
            "{}: {}",
            r.state.as_str(),
            r.error.as_deref().unwrap_or("")
        ));
    }
    entry
}

/// A HAR 1.2 log of `entries`.
fn har(entries: Vec<Value>) -> Value {
    json!({ "log": {
        "version": "1.2",
        "creator": { "name": "sluice", "version": env!("CARGO_PKG_VERSION") },
        "entries": entries,
    }})
}

/// The `format` parameter, one of `allowed`.
fn format_of<'a>(q: &'a HashMap<String, String>, allowed: &[&str]) -> ApiResult<&'a str> {
    let f = q.get("format").map(String::as_str).unwrap_or("");
    if allowed.contains(&f) {
        Ok(f)
    } else {
        Err(ApiError::bad_query(
            "format",
            format!("must be one of {}", allowed.join(", ")),
        ))
    }
}

/// An answer to download: its content type and a file name.
fn download(content_type: &str, name: String, body: Body) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        body,
    )
        .into_response()
}

/// `GET /api/v1/requests/{id}/export?format=curl|har`
pub async fn one(
    State(state): State<AdminState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let format = format_of(&q, &["curl", "har"])?;
    let (r, ev) = readable_request(&state, &caller, &id).await?;
    let sink_url = sink_url_of(&state.store, r.snapshot_id).await?;
    let url = forwarded_url(sink_url.as_deref(), &r);
    Ok(match format {
        "curl" => (
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            curl(&r, ev.as_ref(), &url),
        )
            .into_response(),
        _ => download(
            "application/json",
            format!("request-{}.har", r.id),
            Body::from(har(vec![har_entry(&r, ev.as_ref(), &url)]).to_string()),
        ),
    })
}

/// `GET /api/v1/requests/{id}/body/{request|response}`: the body as it passed (a sink
/// credential or caller key echoed in it stays redacted), with the content type it was sent
/// with, when the ledger holds it whole (its preview took it all); 409 naming how much was
/// kept when it holds only the start.
pub async fn body(
    State(state): State<AdminState>,
    caller: Caller,
    Path((id, which)): Path<(String, String)>,
) -> ApiResult<Response> {
    let (_, ev) = readable_request(&state, &caller, &id).await?;
    let ev = ev.ok_or_else(|| ApiError::not_found("body"))?;
    let (observed, headers) = match which.as_str() {
        "request" => (&ev.request_body, &ev.request_headers),
        "response" => (&ev.response_body, &ev.response_headers),
        _ => return Err(ApiError::not_found("body")),
    };
    if observed.truncated {
        return Err(ApiError::conflict(
            "the body was recorded in part",
            json!({ "captured": false, "reason": "too_large",
                    "kept_bytes": observed.preview.len(), "size": observed.size }),
        ));
    }
    let content_type = header_of(&headers.pairs(), "content-type")
        .unwrap_or_else(|| "application/octet-stream".into());
    Ok((
        [(header::CONTENT_TYPE, content_type)],
        observed.preview.clone(),
    )
        .into_response())
}

/// `GET /api/v1/channels/{id}/requests/export?format=ndjson|csv|har` with the history's
/// filters: NDJSON and CSV stream every matching request, newest first; HAR holds at most
/// `limit` ([`HAR_CAP`] and its default) with their headers and previews.
pub async fn history(
    State(state): State<AdminState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let format = format_of(&q, &["ndjson", "csv", "har"])?;
    let ch = load(&state, &caller, Right::Read, &id).await?;
    let filter = filter_from(&q)?;
    let name = format!("{}-requests", ch.name);
    if format == "har" {
        let cap = match q.get("limit") {
            Some(l) => l
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=HAR_CAP).contains(n))
                .ok_or_else(|| ApiError::bad_query("limit", format!("must be 1 to {HAR_CAP}")))?,
            None => HAR_CAP,
        };
        let page = state
            .store
            .list_requests_page(ch.id, &filter, None, cap as i64)
            .await?;
        let mut entries = Vec::with_capacity(page.items.len());
        // A channel's requests share a few snapshots: each is read once.
        let mut sink_urls: HashMap<Uuid, Option<String>> = HashMap::new();
        for r in &page.items {
            let ev = state.store.get_request(r.id).await?.and_then(|(_, e)| e);
            let sink_url = match sink_urls.entry(r.snapshot_id) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(sink_url_of(&state.store, r.snapshot_id).await?)
                }
            };
            let url = forwarded_url(sink_url.as_deref(), r);
            entries.push(har_entry(r, ev.as_ref(), &url));
        }
        let body = Body::from(har(entries).to_string());
        return Ok(download("application/json", format!("{name}.har"), body));
    }
    let csv = format == "csv";
    let rows = pages(state.store.clone(), ch.id, filter).map(move |page| {
        page.map(|rows| {
            let mut out = String::new();
            for r in &rows {
                if csv {
                    out.push_str(&csv_row(&request_json(r)));
                } else {
                    out.push_str(&request_json(r).to_string());
                    out.push('\n');
                }
            }
            out
        })
    });
    let head = csv.then(|| Ok(CSV_COLUMNS.join(",") + "\n"));
    let body = Body::from_stream(stream::iter(head).chain(rows));
    Ok(if csv {
        download("text/csv; charset=utf-8", format!("{name}.csv"), body)
    } else {
        download("application/x-ndjson", format!("{name}.ndjson"), body)
    })
}

/// The pages of a channel's filtered history, newest first, read one at a time as the
/// answer is sent (a failed read ends the stream with its error, cutting the answer short).
fn pages(
    store: Store,
    channel: Uuid,
    filter: RequestFilter,
) -> impl futures_util::Stream<Item = Result<Vec<RequestRecord>, std::io::Error>> {
    stream::unfold(Some(None::<Cursor>), move |after| {
        let (store, filter) = (store.clone(), filter.clone());
        async move {
            let after = after?;
            match store
                .list_requests_page(channel, &filter, after, PAGE)
                .await
            {
                Ok(page) => {
                    let next = page.next.map(Some);
                    Some((Ok(page.items), next))
                }
                Err(e) => Some((Err(std::io::Error::other(e.to_string())), None)),
            }
        }
    })
    .filter(|page| std::future::ready(!matches!(page, Ok(rows) if rows.is_empty())))
}

/// One CSV line of a listed request (RFC 4180: fields with a comma, quote or line break are
/// quoted, quotes doubled).
fn csv_row(row: &Value) -> String {
    let fields: Vec<String> = CSV_COLUMNS
        .iter()
        .map(|c| match &row[*c] {
            Value::Null => String::new(),
            Value::String(s) => s.clone(),
            v => v.to_string(),
        })
        .map(|f| {
            if f.contains([',', '"', '\n', '\r']) {
                format!("\"{}\"", f.replace('"', "\"\""))
            } else {
                f
            }
        })
        .collect();
    fields.join(",") + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quoting_survives_quotes_and_bytes() {
        assert_eq!(shell_quote(b"it's"), r"'it'\''s'");
        assert_eq!(shell_quote(b"a\nb"), "'a\nb'");
        assert_eq!(shell_quote(b"\x00\xff'\\"), r"$'\x00\xff\'\\'");
    }

    #[test]
    fn csv_quotes_what_needs_it() {
        let row = json!({ "id": "x", "path": "/a,b", "query": "q=\"1\"", "latency_us": 5 });
        let line = csv_row(&row);
        assert!(
            line.starts_with("x,,,,,,\"/a,b\",\"q=\"\"1\"\"\",,,5,"),
            "{line}"
        );
    }
}
