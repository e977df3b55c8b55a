//! The row of `requests`: a request and its event, declared once for every writer and reader.
//!
//! [`COLUMNS`] names the columns in the order [`values`] gives them and [`decode`] reads them;
//! the migrations create them (`0010_plain_ledger.sql` on SQLite, `0006` on PostgreSQL). The
//! event's status, latency, time to first byte, sizes and error are the request's own columns;
//! its other fields are NULL when the exchange never got far enough to have an event.

use sluice_core::{BodyObservation, EventRecord, RequestRecord, RequestState, Timings};
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::error::{Result, StoreError};
use crate::rows;

/// The columns of a `requests` row, in the order of [`values`].
pub(crate) const COLUMNS: [&str; 32] = [
    "id",
    "request_id",
    "channel_id",
    "snapshot_id",
    "node_id",
    "state",
    "started_at",
    "completed_at",
    "client_identity",
    "source_auth_method_id",
    "source_auth_type",
    "method",
    "path",
    "query",
    "response_status",
    "error",
    "latency_us",
    "ttfb_us",
    "request_body_size",
    "response_body_size",
    "request_headers",
    "response_headers",
    "request_body_sha256",
    "request_body_preview",
    "request_body_truncated",
    "response_body_sha256",
    "response_body_preview",
    "response_body_truncated",
    "connect_us",
    "send_us",
    "queue_us",
    "reused_connection",
];

/// The request's own columns (the first of [`COLUMNS`]), for reads that need no event.
pub(crate) const RECORD_COLUMNS: usize = 20;

/// One value of a row, borrowed from the record it describes. A NULL keeps its type:
/// PostgreSQL refuses a NULL bound as a number into a text column.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Value<'a> {
    Int(Option<i64>),
    Text(Option<&'a str>),
    Bytes(Option<&'a [u8]>),
    Bool(Option<bool>),
}

impl<'a> Value<'a> {
    /// Binds this value as the next parameter of `q`.
    pub(crate) fn bind<'q>(
        self,
        q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    ) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>
    where
        'a: 'q,
    {
        match self {
            Value::Int(v) => q.bind(v),
            Value::Text(v) => q.bind(v),
            Value::Bytes(v) => q.bind(v),
            Value::Bool(v) => q.bind(v),
        }
    }
}

impl rusqlite::ToSql for Value<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match *self {
            Value::Int(Some(i)) => ValueRef::Integer(i),
            Value::Bool(Some(b)) => ValueRef::Integer(i64::from(b)),
            Value::Text(Some(s)) => ValueRef::Text(s.as_bytes()),
            Value::Bytes(Some(b)) => ValueRef::Blob(b),
            _ => ValueRef::Null,
        }))
    }
}

/// Text ids of a record, encoded on the stack (no allocation per row) and kept beside it while
/// its values are bound.
pub(crate) struct Ids {
    id: [u8; 36],
    channel_id: [u8; 36],
    snapshot_id: [u8; 36],
    source_auth_method_id: Option<[u8; 36]>,
}

/// `id` as its 36 hyphenated lowercase characters.
fn text(id: uuid::Uuid) -> [u8; 36] {
    let mut buf = [0u8; 36];
    id.hyphenated().encode_lower(&mut buf);
    buf
}

/// The text of an id [`text`] encoded.
fn as_str(buf: &[u8; 36]) -> &str {
    std::str::from_utf8(buf).expect("a hyphenated UUID is ASCII")
}

impl Ids {
    /// The record's ids as the text the rows hold.
    pub(crate) fn of(r: &RequestRecord) -> Self {
        Self {
            id: text(r.id),
            channel_id: text(r.channel_id),
            snapshot_id: text(r.snapshot_id),
            source_auth_method_id: r.source_auth_method_id.map(text),
        }
    }
}

/// The values of `r`'s row with its event `e`, in the order of [`COLUMNS`].
pub(crate) fn values<'a>(
    ids: &'a Ids,
    node_id: &'a str,
    r: &'a RequestRecord,
    e: Option<&'a EventRecord>,
) -> [Value<'a>; 32] {
    let body = |b: Option<&'a BodyObservation>| {
        (
            Value::Text(b.map(|b| b.sha256.as_str())),
            Value::Bytes(b.map(|b| b.preview.as_slice())),
            Value::Bool(b.map(|b| b.truncated)),
        )
    };
    let (req_sha, req_preview, req_cut) = body(e.map(|e| &e.request_body));
    let (resp_sha, resp_preview, resp_cut) = body(e.map(|e| &e.response_body));
    let t = e.map(|e| e.timings).unwrap_or_default();
    [
        Value::Text(Some(as_str(&ids.id))),
        Value::Text(Some(&r.request_id)),
        Value::Text(Some(as_str(&ids.channel_id))),
        Value::Text(Some(as_str(&ids.snapshot_id))),
        Value::Text(Some(node_id)),
        Value::Text(Some(r.state.as_str())),
        Value::Int(Some(r.started_at)),
        Value::Int(r.completed_at),
        Value::Text(Some(&r.client_identity)),
        Value::Text(ids.source_auth_method_id.as_ref().map(as_str)),
        Value::Text(r.source_auth_type.as_deref()),
        Value::Text(Some(&r.method)),
        Value::Text(Some(&r.path)),
        Value::Text(r.query.as_deref()),
        Value::Int(r.response_status.map(i64::from)),
        Value::Text(r.error.as_deref()),
        Value::Int(r.latency_us),
        Value::Int(r.ttfb_us),
        Value::Int(r.request_body_size),
        Value::Int(r.response_body_size),
        Value::Text(e.map(|e| e.request_headers.as_json())),
        Value::Text(e.map(|e| e.response_headers.as_json())),
        req_sha,
        req_preview,
        req_cut,
        resp_sha,
        resp_preview,
        resp_cut,
        Value::Int(t.connect_us),
        Value::Int(t.send_us),
        Value::Int(t.queue_us),
        Value::Bool(t.reused_connection),
    ]
}

/// `a, b, …` of the first `n` columns.
pub(crate) fn column_list(n: usize) -> String {
    COLUMNS[..n].join(", ")
}

/// The request of a row read with at least the first [`RECORD_COLUMNS`] columns.
pub(crate) fn decode_record(r: &AnyRow) -> Result<RequestRecord> {
    let state: String = r.try_get("state")?;
    let status: Option<i64> = r.try_get("response_status")?;
    Ok(RequestRecord {
        id: rows::uuid(r, "id")?,
        request_id: r.try_get("request_id")?,
        channel_id: rows::uuid(r, "channel_id")?,
        snapshot_id: rows::uuid(r, "snapshot_id")?,
        state: RequestState::parse(&state).ok_or_else(|| StoreError::Corrupt(state.clone()))?,
        started_at: r.try_get("started_at")?,
        completed_at: r.try_get("completed_at")?,
        client_identity: r.try_get("client_identity")?,
        source_auth_method_id: rows::opt_uuid(r, "source_auth_method_id")?,
        source_auth_type: r.try_get("source_auth_type")?,
        method: r.try_get("method")?,
        path: r.try_get("path")?,
        query: r.try_get("query")?,
        response_status: status.map(|s| s as u16),
        error: r.try_get("error")?,
        latency_us: r.try_get("latency_us")?,
        ttfb_us: r.try_get("ttfb_us")?,
        request_body_size: r.try_get("request_body_size")?,
        response_body_size: r.try_get("response_body_size")?,
    })
}

/// The request and its event (if it has one) of a row read with all [`COLUMNS`].
pub(crate) fn decode(r: &AnyRow) -> Result<(RequestRecord, Option<EventRecord>)> {
    let rec = decode_record(r)?;
    let Some(request_headers) = r.try_get::<Option<String>, _>("request_headers")? else {
        return Ok((rec, None));
    };
    let headers = |text: String, col: &str| {
        sluice_core::HeaderList::from_json(text)
            .map_err(|e| StoreError::Corrupt(format!("{col}: {e}")))
    };
    let body = |prefix: &str, size: Option<i64>| -> Result<BodyObservation> {
        Ok(BodyObservation {
            sha256: r
                .try_get::<Option<String>, _>(format!("{prefix}_sha256").as_str())?
                .unwrap_or_default(),
            size: size.unwrap_or(0),
            preview: r
                .try_get::<Option<Vec<u8>>, _>(format!("{prefix}_preview").as_str())?
                .unwrap_or_default(),
            truncated: rows::opt_flag(r, &format!("{prefix}_truncated"))?.unwrap_or(false),
        })
    };
    let event = EventRecord {
        request_id: rec.id,
        request_headers: headers(request_headers, "request_headers")?,
        response_headers: headers(
            r.try_get::<Option<String>, _>("response_headers")?
                .unwrap_or_else(|| "[]".into()),
            "response_headers",
        )?,
        request_body: body("request_body", rec.request_body_size)?,
        response_body: body("response_body", rec.response_body_size)?,
        response_status: rec.response_status,
        timings: Timings {
            latency_us: rec.latency_us,
            ttfb_us: rec.ttfb_us,
            connect_us: r.try_get("connect_us")?,
            send_us: r.try_get("send_us")?,
            queue_us: r.try_get("queue_us")?,
            reused_connection: rows::opt_flag(r, "reused_connection")?,
        },
        error: rec.error.clone(),
    };
    Ok((rec, Some(event)))
}
