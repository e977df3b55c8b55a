//! Request records and their events: batched writes, history queries, statistics.

use std::collections::{BTreeMap, HashSet};

use serde::Serialize;
use sluice_core::clock::Micros;
use sluice_core::{BodyObservation, EventRecord, RequestRecord, RequestState, Timings};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};
use uuid::Uuid;

use crate::db::{Backend, Store};
use crate::error::{Result, StoreError};
use crate::event_files::{self, EventSpot};
use crate::rows;

/// Rows per multi-row statement (bounded by the backends' parameter limits).
const CHUNK: usize = 400;

const REQUEST_COLUMNS: &str =
    "id, request_id, channel_id, snapshot_id, node_id, state, started_at, \
     completed_at, client_identity, source_auth_method_id, source_auth_type, method, path, query, \
     response_status, error, latency_us, ttfb_us, request_body_size, response_body_size";
const REQUEST_COLUMN_COUNT: usize = 20;

const EVENT_COLUMNS: &str = "request_id, request_headers, response_headers, \
     request_body_sha256, request_body_size, request_body_preview, request_body_truncated, \
     response_body_sha256, response_body_size, response_body_preview, response_body_truncated, \
     response_status, latency_us, ttfb_us, connect_us, send_us, queue_us, reused_connection, error";
const EVENT_COLUMN_COUNT: usize = 19;

/// Condition on `requests_inflight` rows: not finished yet. (On SQLite a request's finished
/// row commits before its in-flight row is removed, in another file; see `sqlite_writer`.)
macro_rules! unsettled {
    () => {
        "NOT EXISTS (SELECT 1 FROM requests s WHERE s.id = requests_inflight.id)"
    };
}
const UNSETTLED: &str = unsettled!();

/// One write handed to the group-commit writer.
#[derive(Debug, Clone)]
pub enum LedgerOp {
    /// A new request in state `pending`.
    Pending(RequestRecord),
    /// A finished request and, when the exchange got that far, its event.
    Complete(RequestRecord, Option<Box<EventRecord>>),
}

impl LedgerOp {
    /// The request this operation writes.
    pub fn record(&self) -> &RequestRecord {
        match self {
            LedgerOp::Pending(r) | LedgerOp::Complete(r, _) => r,
        }
    }
}

/// Status filter of the history: an exact code or a class such as `5xx`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusFilter {
    /// Exactly this status.
    Exact(u16),
    /// Any status of this hundred (`5` for `5xx`).
    Class(u16),
}

impl StatusFilter {
    /// Parses `404` or `5xx`.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim().to_ascii_lowercase();
        if let Some(d) = s.strip_suffix("xx") {
            let d: u16 = d.parse().ok()?;
            return (1..=5).contains(&d).then_some(StatusFilter::Class(d));
        }
        let n: u16 = s.parse().ok()?;
        (100..=599).contains(&n).then_some(StatusFilter::Exact(n))
    }

    pub(crate) fn range(self) -> (i64, i64) {
        match self {
            StatusFilter::Exact(n) => (i64::from(n), i64::from(n)),
            StatusFilter::Class(d) => (i64::from(d) * 100, i64::from(d) * 100 + 99),
        }
    }
}

/// Position in the history: continue strictly after this `(started_at, id)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    /// Start time of the last row seen.
    pub started_at: Micros,
    /// Id of the last row seen.
    pub id: Uuid,
}

/// Filters of the request history.
#[derive(Debug, Clone, Default)]
pub struct RequestFilter {
    /// Only these states.
    pub state: Option<RequestState>,
    /// Only this method.
    pub method: Option<String>,
    /// Only these statuses.
    pub status: Option<StatusFilter>,
    /// Started at or after.
    pub since: Option<Micros>,
    /// Started before.
    pub until: Option<Micros>,
    /// Forwarded path starts with.
    pub path_prefix: Option<String>,
    /// This `x-request-id`.
    pub request_id: Option<String>,
}

/// Counts and latency percentiles of a channel over a window.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ChannelStats {
    /// Requests in the window.
    pub total: i64,
    /// Requests per state.
    pub by_state: BTreeMap<String, i64>,
    /// Latency percentiles (µs) of finished requests.
    pub latency_us: BTreeMap<String, Option<i64>>,
    /// Requests per minute: `(minute start in µs, count)`, oldest first.
    pub per_minute: Vec<(Micros, i64)>,
    /// Requests per minute and state: `(minute start in µs, state, count)`, oldest first.
    pub per_minute_by_state: Vec<(Micros, String, i64)>,
}

#[derive(Clone)]
enum Arg {
    Text(String),
    Int(i64),
}

/// `q` with `args` bound, in order.
fn bind_all<'q>(
    mut q: sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>>,
    args: Vec<Arg>,
) -> sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>> {
    for a in args {
        q = match a {
            Arg::Text(s) => q.bind(s),
            Arg::Int(i) => q.bind(i),
        };
    }
    q
}

fn request_from_row(r: &AnyRow) -> Result<RequestRecord> {
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

fn event_from_row(r: &AnyRow) -> Result<EventRecord> {
    let status: Option<i64> = r.try_get("response_status")?;
    Ok(EventRecord {
        request_id: rows::uuid(r, "request_id")?,
        request_headers: rows::header_list(r, "request_headers")?,
        response_headers: rows::header_list(r, "response_headers")?,
        request_body: BodyObservation {
            sha256: r.try_get("request_body_sha256")?,
            size: r.try_get("request_body_size")?,
            preview: r.try_get("request_body_preview")?,
            truncated: rows::flag(r, "request_body_truncated")?,
        },
        response_body: BodyObservation {
            sha256: r.try_get("response_body_sha256")?,
            size: r.try_get("response_body_size")?,
            preview: r.try_get("response_body_preview")?,
            truncated: rows::flag(r, "response_body_truncated")?,
        },
        response_status: status.map(|s| s as u16),
        timings: Timings {
            latency_us: r.try_get("latency_us")?,
            ttfb_us: r.try_get("ttfb_us")?,
            connect_us: r.try_get("connect_us")?,
            send_us: r.try_get("send_us")?,
            queue_us: r.try_get("queue_us")?,
            reused_connection: rows::opt_flag(r, "reused_connection")?,
        },
        error: r.try_get("error")?,
    })
}

/// `($1, $2, …), ($n+1, …)` for `rows` rows of `cols` columns; on SQLite anonymous `?`
/// (bound in order), because sqlx resolves each numbered SQLite parameter by name, which SQLite
/// answers with a linear scan: quadratic in the row count of a multi-row insert.
fn placeholders(backend: Backend, rows: usize, cols: usize) -> String {
    let mut s = String::with_capacity(rows * cols * 5);
    for r in 0..rows {
        if r > 0 {
            s.push_str(", ");
        }
        s.push('(');
        for c in 0..cols {
            if c > 0 {
                s.push_str(", ");
            }
            match backend {
                Backend::Sqlite => s.push('?'),
                Backend::Postgres => {
                    s.push('$');
                    s.push_str(&(r * cols + c + 1).to_string());
                }
            }
        }
        s.push(')');
    }
    s
}

/// `INSERT` of `rows` new (pending) request rows into `requests_inflight`.
pub(crate) fn insert_inflight_sql(backend: Backend, rows: usize) -> String {
    format!(
        "INSERT INTO requests_inflight ({REQUEST_COLUMNS}) VALUES {}",
        placeholders(backend, rows, REQUEST_COLUMN_COUNT)
    )
}

/// `INSERT` of `rows` request rows from the SQLite journal into `requests_inflight`, skipping
/// those already there.
pub(crate) fn recover_inflight_sql(backend: Backend, rows: usize) -> String {
    insert_inflight_sql(backend, rows).replacen("INSERT", "INSERT OR IGNORE", 1)
}

/// `DELETE` of `rows` requests (by id) from `requests_inflight`.
pub(crate) fn delete_inflight_sql(backend: Backend, rows: usize) -> String {
    let list = placeholders(backend, rows, 1).replace("), (", ", ");
    format!("DELETE FROM requests_inflight WHERE id IN {list}")
}

/// `INSERT … ON CONFLICT (id) DO UPDATE` of `rows` request rows.
pub(crate) fn upsert_requests_sql(backend: Backend, rows: usize) -> String {
    format!(
        "INSERT INTO requests ({REQUEST_COLUMNS}) VALUES {} ON CONFLICT (id) DO UPDATE SET \
         state = excluded.state, completed_at = excluded.completed_at, \
         response_status = excluded.response_status, error = excluded.error, \
         latency_us = excluded.latency_us, ttfb_us = excluded.ttfb_us, \
         request_body_size = excluded.request_body_size, \
         response_body_size = excluded.response_body_size",
        placeholders(backend, rows, REQUEST_COLUMN_COUNT)
    )
}

/// The columns of a SQLite request row that say where its event is in the event files
/// (`crate::event_files::EventSpot`); empty for rows whose event is in `events`. Rows written
/// before request batches have them.
const EVENT_SPOT_COLUMNS: [&str; 3] = ["event_seg", "event_offset", "event_len"];

/// Finds a channel that still exists; on PostgreSQL it also holds the channel's row until the
/// batch commits, so a purge cannot delete it between this check and the commit (on SQLite the
/// batch already holds the file's write lock).
pub(crate) fn channel_exists_sql(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "SELECT 1 FROM channels WHERE id = $1",
        Backend::Postgres => "SELECT 1 FROM channels WHERE id = $1 FOR SHARE",
    }
}

/// Removes what a batch wrote for a channel purged while those requests were in flight: their
/// events, then the requests (the purge took everything else).
pub(crate) const FORGET_PURGED_SQL: [&str; 2] = [
    "DELETE FROM events WHERE request_id IN (SELECT id FROM requests WHERE channel_id = $1)",
    "DELETE FROM requests WHERE channel_id = $1",
];

/// The channels of the finished requests among `records`, each once.
pub(crate) fn finished_channels<'a>(
    records: impl IntoIterator<Item = &'a RequestRecord>,
) -> Vec<Uuid> {
    let mut ids: Vec<Uuid> = records.into_iter().map(|r| r.channel_id).collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// `INSERT` of `rows` event rows (a repeated completion is ignored).
pub(crate) fn insert_events_sql(backend: Backend, rows: usize) -> String {
    format!(
        "INSERT INTO events ({EVENT_COLUMNS}) VALUES {} ON CONFLICT (request_id) DO NOTHING",
        placeholders(backend, rows, EVENT_COLUMN_COUNT)
    )
}

/// The rows one batch writes.
pub(crate) struct BatchRows<'a> {
    /// New requests, still pending: inserted into `requests_inflight`.
    pub inflight: Vec<&'a RequestRecord>,
    /// Finished requests: upserted into `requests`, removed from `requests_inflight`.
    pub finished: Vec<&'a RequestRecord>,
    /// The finished requests' events.
    pub events: Vec<&'a EventRecord>,
}

/// Sorts a batch into its rows; a pending record whose completion shares the batch is folded
/// into it (written once, finished).
pub(crate) fn batch_rows(ops: &[LedgerOp]) -> BatchRows<'_> {
    let completed: HashSet<Uuid> = ops
        .iter()
        .filter_map(|op| match op {
            LedgerOp::Complete(r, _) => Some(r.id),
            LedgerOp::Pending(_) => None,
        })
        .collect();
    let mut rows = BatchRows {
        inflight: Vec::new(),
        finished: Vec::with_capacity(completed.len()),
        events: Vec::with_capacity(completed.len()),
    };
    for op in ops {
        match op {
            LedgerOp::Pending(r) if completed.contains(&r.id) => {}
            LedgerOp::Pending(r) => rows.inflight.push(r),
            LedgerOp::Complete(r, e) => {
                rows.finished.push(r);
                rows.events.extend(e.as_deref());
            }
        }
    }
    rows
}

/// Writes request rows with `sql(backend, rows)`: the inflight insert or the upsert.
async fn write_requests(
    tx: &mut Transaction<'_, Any>,
    backend: Backend,
    sql: fn(Backend, usize) -> String,
    node_id: &str,
    recs: &[&RequestRecord],
) -> Result<()> {
    for chunk in recs.chunks(CHUNK) {
        let sql = sql(backend, chunk.len());
        let mut q = sqlx::query(&sql);
        for r in chunk {
            q = q
                .bind(r.id.to_string())
                .bind(r.request_id.as_str())
                .bind(r.channel_id.to_string())
                .bind(r.snapshot_id.to_string())
                .bind(node_id)
                .bind(r.state.as_str())
                .bind(r.started_at)
                .bind(r.completed_at)
                .bind(r.client_identity.as_str())
                .bind(r.source_auth_method_id.map(|u| u.to_string()))
                .bind(r.source_auth_type.as_deref())
                .bind(r.method.as_str())
                .bind(r.path.as_str())
                .bind(r.query.as_deref())
                .bind(r.response_status.map(i64::from))
                .bind(r.error.as_deref())
                .bind(r.latency_us)
                .bind(r.ttfb_us)
                .bind(r.request_body_size)
                .bind(r.response_body_size);
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

async fn delete_inflight(
    tx: &mut Transaction<'_, Any>,
    backend: Backend,
    recs: &[&RequestRecord],
) -> Result<()> {
    for chunk in recs.chunks(CHUNK) {
        let sql = delete_inflight_sql(backend, chunk.len());
        let mut q = sqlx::query(&sql);
        for r in chunk {
            q = q.bind(r.id.to_string());
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

async fn insert_events(
    tx: &mut Transaction<'_, Any>,
    backend: Backend,
    events: &[&EventRecord],
) -> Result<()> {
    for chunk in events.chunks(CHUNK) {
        let sql = insert_events_sql(backend, chunk.len());
        let mut q = sqlx::query(&sql);
        for e in chunk {
            let t = &e.timings;
            q = q
                .bind(e.request_id.to_string())
                .bind(e.request_headers.as_json())
                .bind(e.response_headers.as_json())
                .bind(e.request_body.sha256.as_str())
                .bind(e.request_body.size)
                .bind(e.request_body.preview.as_slice())
                .bind(e.request_body.truncated)
                .bind(e.response_body.sha256.as_str())
                .bind(e.response_body.size)
                .bind(e.response_body.preview.as_slice())
                .bind(e.response_body.truncated)
                .bind(e.response_status.map(i64::from))
                .bind(t.latency_us)
                .bind(t.ttfb_us)
                .bind(t.connect_us)
                .bind(t.send_us)
                .bind(t.queue_us)
                .bind(t.reused_connection)
                .bind(e.error.as_deref());
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

/// A history listing's query (its table left as `{table}`) and its arguments.
fn list_sql(
    backend: Backend,
    channel_id: Uuid,
    f: &RequestFilter,
    after: Option<Cursor>,
    limit: i64,
) -> (String, Vec<Arg>) {
    // Given a request id, SQLite would walk the channel's index newest first, which yields
    // the order asked for, until the id turned up: the channel's whole history for an id that
    // is in it once. The unary `+` keeps SQLite off that index, on the request id's, and it
    // sorts the few rows found. PostgreSQL plans by its statistics (and has no unary `+` on
    // text).
    let channel = match (backend, &f.request_id) {
        (Backend::Sqlite, Some(_)) => "+channel_id",
        _ => "channel_id",
    };
    let mut sql = format!("SELECT {REQUEST_COLUMNS} FROM {{table}} WHERE {channel} = $1");
    let mut args = vec![Arg::Text(channel_id.to_string())];
    let mut push = |sql: &mut String, clause: &str, a: Arg| {
        args.push(a);
        sql.push_str(&clause.replace("$?", &format!("${}", args.len())));
    };
    if let Some(st) = f.state {
        push(&mut sql, " AND state = $?", Arg::Text(st.as_str().into()));
    }
    if let Some(m) = &f.method {
        push(
            &mut sql,
            " AND method = $?",
            Arg::Text(m.to_ascii_uppercase()),
        );
    }
    if let Some(s) = f.status {
        let (lo, hi) = s.range();
        push(&mut sql, " AND response_status >= $?", Arg::Int(lo));
        push(&mut sql, " AND response_status <= $?", Arg::Int(hi));
    }
    if let Some(t) = f.since {
        push(&mut sql, " AND started_at >= $?", Arg::Int(t));
    }
    if let Some(t) = f.until {
        push(&mut sql, " AND started_at < $?", Arg::Int(t));
    }
    if let Some(p) = &f.path_prefix {
        push(
            &mut sql,
            &format!(" AND substr(path, 1, {}) = $?", p.len()),
            Arg::Text(p.clone()),
        );
    }
    if let Some(r) = &f.request_id {
        push(&mut sql, " AND request_id = $?", Arg::Text(r.clone()));
    }
    if let Some(c) = after {
        push(&mut sql, " AND (started_at < $?", Arg::Int(c.started_at));
        push(&mut sql, " OR (started_at = $?", Arg::Int(c.started_at));
        push(&mut sql, " AND id < $?))", Arg::Text(c.id.to_string()));
    }
    sql.push_str(&format!(" ORDER BY started_at DESC, id DESC LIMIT {limit}"));
    (sql, args)
}

/// `UPDATE` marking request `$3` of `table` `error` with error `$1` at `$2`.
pub(crate) fn mark_error_sql(table: &str) -> String {
    format!("UPDATE {table} SET state = 'error', error = $1, completed_at = $2 WHERE id = $3")
}

/// The 1-based nearest rank of percentile `p` among `n` values (none when `n` is 0).
fn nearest_rank(n: i64, p: f64) -> Option<i64> {
    (n > 0).then(|| (((p / 100.0) * n as f64).ceil() as i64).clamp(1, n))
}

impl Store {
    /// Writes a batch of ledger operations in one transaction: all of them or none. A request
    /// whose pending record and completion share the batch is written once, completed.
    pub async fn write_batch(&self, node_id: &str, ops: &[LedgerOp]) -> Result<()> {
        let rows = batch_rows(ops);
        let b = self.backend();
        let mut tx = self.pool.begin().await?;
        write_requests(&mut tx, b, insert_inflight_sql, node_id, &rows.inflight).await?;
        write_requests(&mut tx, b, upsert_requests_sql, node_id, &rows.finished).await?;
        insert_events(&mut tx, b, &rows.events).await?;
        delete_inflight(&mut tx, b, &rows.finished).await?;
        for channel in finished_channels(rows.finished.iter().copied()) {
            let exists = sqlx::query(channel_exists_sql(b))
                .bind(channel.to_string())
                .fetch_optional(&mut *tx)
                .await?
                .is_some();
            if !exists {
                for sql in FORGET_PURGED_SQL {
                    sqlx::query(sql)
                        .bind(channel.to_string())
                        .execute(&mut *tx)
                        .await?;
                }
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Closes this node's requests left `pending` by a previous run as `error`/`interrupted`.
    /// On SQLite these include the requests left in the journal, whose segments are deleted
    /// once they are closed; call it before starting this node's [`crate::Ledger`].
    pub async fn close_interrupted(&self, node_id: &str, now: Micros) -> Result<u64> {
        let (journaled, segments) = match self.sqlite_file() {
            Some((path, _)) => crate::journal::leftovers(path)
                .map_err(|e| StoreError::Sqlite(format!("reading the ledger journal: {e}")))?,
            None => (Vec::new(), Vec::new()),
        };
        // Those already finished in a batch are not interrupted (readers see them finished):
        // their in-flight rows go, with the rest of the node's.
        let mut ids: Vec<Uuid> = journaled.iter().map(|r| r.id).collect();
        for r in sqlx::query("SELECT id FROM requests_inflight WHERE node_id = $1")
            .bind(node_id)
            .fetch_all(&self.pool)
            .await?
        {
            ids.push(rows::uuid(&r, "id")?);
        }
        let settled = self.batched_by_id(&ids).await?;
        let mut tx = self.pool.begin().await?;
        // A journaled request may also be in the in-flight file (published) or finished.
        let journaled: Vec<&RequestRecord> = journaled
            .iter()
            .filter(|r| !settled.contains_key(&r.id))
            .collect();
        write_requests(
            &mut tx,
            self.backend(),
            recover_inflight_sql,
            node_id,
            &journaled,
        )
        .await?;
        let settled: Vec<&RequestRecord> = settled.values().map(|(r, _)| r).collect();
        delete_inflight(&mut tx, self.backend(), &settled).await?;
        let moved = sqlx::query(&format!(
            "INSERT INTO requests ({REQUEST_COLUMNS}) SELECT {} FROM requests_inflight \
             WHERE node_id = $2 AND {UNSETTLED}",
            REQUEST_COLUMNS
                .replace("state,", "'error',")
                .replace("completed_at,", "$1,")
                .replace(" error,", " 'interrupted',")
        ))
        .bind(now)
        .bind(node_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM requests_inflight WHERE node_id = $1")
            .bind(node_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        for segment in segments {
            std::fs::remove_file(&segment)
                .map_err(|e| StoreError::Sqlite(format!("removing {}: {e}", segment.display())))?;
        }
        Ok(moved.rows_affected())
    }

    /// Marks one request `error` with `error` (used when its completion could not be written),
    /// wherever it is: still in flight or already finished.
    pub async fn mark_request_error(&self, id: Uuid, error: &str, now: Micros) -> Result<()> {
        for table in ["requests_inflight", "requests"] {
            sqlx::query(&mark_error_sql(table))
                .bind(error)
                .bind(now)
                .bind(id.to_string())
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    /// A channel's history, newest first: finished and in-flight requests alike.
    pub async fn list_requests(
        &self,
        channel_id: Uuid,
        f: &RequestFilter,
        after: Option<Cursor>,
        limit: i64,
    ) -> Result<Vec<RequestRecord>> {
        self.inflight.refresh().await;
        let (sql, args) = list_sql(self.backend(), channel_id, f, after, limit);
        // The batches, the rows and the requests in flight each answer their newest `limit`;
        // the merge keeps the newest `limit` of all.
        let mut out = self.batched_page(channel_id, f, after, limit).await?;
        let mut seen: HashSet<Uuid> = out.iter().map(|r| r.id).collect();
        for table in ["requests", "requests_inflight"] {
            let sql = sql.replace("{table}", table);
            let q = bind_all(sqlx::query(&sql), args.clone());
            let mut found = Vec::new();
            for r in q.fetch_all(&self.pool).await? {
                found.push(request_from_row(&r)?);
            }
            if table == "requests_inflight" {
                // A request whose completion has just committed may still be in flight too.
                found = self.unsettled(found).await?;
            }
            out.extend(found.into_iter().filter(|r| seen.insert(r.id)));
        }
        out.sort_by_key(|r| std::cmp::Reverse((r.started_at, r.id)));
        out.truncate(usize::try_from(limit).unwrap_or(0));
        Ok(out)
    }

    /// One request and its event (absent while pending or when the exchange never started).
    pub async fn get_request(
        &self,
        id: Uuid,
    ) -> Result<Option<(RequestRecord, Option<EventRecord>)>> {
        self.inflight.refresh().await;
        let Some((req, spot)) = self.locate_request(id).await? else {
            return Ok(None);
        };
        if let Some(spot) = spot {
            let ev = self.spotted_event(&req, spot).await?;
            return Ok(Some((req, ev)));
        }
        let ev = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE request_id = $1"
        ))
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?
        .map(|r| event_from_row(&r))
        .transpose()?;
        Ok(Some((req, ev)))
    }

    /// Request `id` from its row, its batch or the requests in flight (in that order), with
    /// where its event is in the event files when its row or batch says.
    async fn locate_request(&self, id: Uuid) -> Result<Option<(RequestRecord, Option<EventSpot>)>> {
        let sqlite = self.backend() == Backend::Sqlite;
        // A finished SQLite row also says where its event is in the event files.
        let spot_columns = if sqlite {
            format!(", {}", EVENT_SPOT_COLUMNS.join(", "))
        } else {
            String::new()
        };
        let row = sqlx::query(&format!(
            "SELECT {REQUEST_COLUMNS}{spot_columns} FROM requests WHERE id = $1"
        ))
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        if let Some(r) = row {
            let spot = if sqlite { row_spot(&r)? } else { None };
            return Ok(Some((request_from_row(&r)?, spot)));
        }
        if let Some(found) = self.batched_by_id(&[id]).await?.remove(&id) {
            return Ok(Some(found));
        }
        sqlx::query(&format!(
            "SELECT {REQUEST_COLUMNS} FROM requests_inflight WHERE id = $1"
        ))
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?
        .map(|r| Ok((request_from_row(&r)?, None)))
        .transpose()
    }

    /// The event of `req` at `spot` in the event files: `None` when the frame there is missing
    /// or damaged (a power loss tore it), which is logged.
    async fn spotted_event(
        &self,
        req: &RequestRecord,
        spot: EventSpot,
    ) -> Result<Option<EventRecord>> {
        let Some((path, _)) = self.sqlite_file() else {
            return Ok(None);
        };
        let (dir, channel) = (event_files::events_dir(path), req.channel_id);
        let read = tokio::task::spawn_blocking(move || event_files::read(&dir, channel, spot))
            .await
            .map_err(|e| StoreError::Sqlite(format!("reading an event: {e}")))?;
        match read {
            Ok(ev) => Ok(Some(ev)),
            Err(e) => {
                tracing::warn!(request = %req.id, error = %e, ?spot, "event unreadable");
                Ok(None)
            }
        }
    }

    /// The requests in flight of `channels` started since `since`, without those already
    /// finished.
    pub(crate) async fn unsettled_inflight(
        &self,
        channels: &[Uuid],
        since: Micros,
    ) -> Result<Vec<RequestRecord>> {
        if channels.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT {REQUEST_COLUMNS} FROM requests_inflight \
             WHERE started_at >= $1 AND channel_id IN ({}) AND {UNSETTLED}",
            crate::health::in_list(2, channels.len())
        );
        let mut q = sqlx::query(&sql).bind(since);
        for c in channels {
            q = q.bind(c.to_string());
        }
        let mut found = Vec::new();
        for r in q.fetch_all(&self.pool).await? {
            found.push(request_from_row(&r)?);
        }
        self.unsettled(found).await
    }

    /// Number of requests recorded for a channel (all time, in flight included).
    pub async fn count_requests(&self, channel_id: Uuid) -> Result<i64> {
        self.inflight.refresh().await;
        let rows: i64 = sqlx::query("SELECT COUNT(*) AS n FROM requests WHERE channel_id = $1")
            .bind(channel_id.to_string())
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?;
        let batched = self.batched_count(channel_id).await?;
        let inflight = self.unsettled_inflight(&[channel_id], Micros::MIN).await?;
        Ok(rows + batched + inflight.len() as i64)
    }

    /// Counts by state, requests per minute and latency percentiles since `since`.
    pub async fn channel_stats(&self, channel_id: Uuid, since: Micros) -> Result<ChannelStats> {
        self.inflight.refresh().await;
        let id = channel_id.to_string();
        let mut stats = ChannelStats::default();
        for st in RequestState::ALL {
            stats.by_state.insert(st.as_str().to_string(), 0);
        }
        let mut per_minute = BTreeMap::new();
        for r in sqlx::query(
            "SELECT state, COUNT(*) AS n FROM requests \
             WHERE channel_id = $1 AND started_at >= $2 GROUP BY state",
        )
        .bind(&id)
        .bind(since)
        .fetch_all(&self.pool)
        .await?
        {
            let n: i64 = r.try_get("n")?;
            stats.total += n;
            *stats.by_state.entry(r.try_get("state")?).or_insert(0) += n;
        }
        for r in sqlx::query(
            "SELECT started_at / 60000000 AS m, state, COUNT(*) AS n FROM requests \
             WHERE channel_id = $1 AND started_at >= $2 GROUP BY started_at / 60000000, state",
        )
        .bind(&id)
        .bind(since)
        .fetch_all(&self.pool)
        .await?
        {
            let m: i64 = r.try_get("m")?;
            let state: String = r.try_get("state")?;
            *per_minute.entry((m * 60_000_000, state)).or_insert(0) += r.try_get::<i64, _>("n")?;
        }
        // Latencies as counts per distinct value: memory follows the distinct latencies, not
        // the window's length.
        let mut latencies: BTreeMap<i64, i64> = BTreeMap::new();
        for r in sqlx::query(
            "SELECT latency_us, COUNT(*) AS n FROM requests WHERE channel_id = $1 \
             AND started_at >= $2 AND latency_us IS NOT NULL GROUP BY latency_us",
        )
        .bind(&id)
        .bind(since)
        .fetch_all(&self.pool)
        .await?
        {
            *latencies.entry(r.try_get("latency_us")?).or_insert(0) += r.try_get::<i64, _>("n")?;
        }
        let batched = self.batched_window(channel_id, since).await?;
        let inflight = self.unsettled_inflight(&[channel_id], since).await?;
        let states = batched
            .by_state
            .into_iter()
            .chain(inflight.iter().map(|r| (r.state, 1)));
        for (state, n) in states {
            stats.total += n;
            *stats
                .by_state
                .entry(state.as_str().to_string())
                .or_insert(0) += n;
        }
        let minutes = batched.per_minute.into_iter().chain(
            inflight
                .iter()
                .map(|r| ((minute_start(r.started_at), r.state), 1)),
        );
        for ((minute, state), n) in minutes {
            *per_minute
                .entry((minute, state.as_str().to_string()))
                .or_insert(0) += n;
        }
        let mut totals: BTreeMap<Micros, i64> = BTreeMap::new();
        for ((minute, _), n) in &per_minute {
            *totals.entry(*minute).or_insert(0) += n;
        }
        stats.per_minute = totals.into_iter().collect();
        stats.per_minute_by_state = per_minute
            .into_iter()
            .map(|((minute, state), n)| (minute, state, n))
            .collect();
        for (latency, n) in batched.latencies {
            *latencies.entry(latency).or_insert(0) += n;
        }
        let n: i64 = latencies.values().sum();
        for (name, p) in [("p50", 50.0), ("p95", 95.0), ("p99", 99.0)] {
            let value = nearest_rank(n, p).and_then(|rank| {
                let mut seen = 0;
                latencies.iter().find_map(|(l, k)| {
                    seen += k;
                    (seen >= rank).then_some(*l)
                })
            });
            stats.latency_us.insert(name.to_string(), value);
        }
        Ok(stats)
    }
}

/// The start of the minute (µs) of time `t`, as the stats count requests per minute.
pub(crate) fn minute_start(t: Micros) -> Micros {
    t.div_euclid(60_000_000) * 60_000_000
}

/// Where the event of a SQLite request row is in the event files, when the row says.
fn row_spot(r: &AnyRow) -> Result<Option<EventSpot>> {
    let Some(seg) = r.try_get("event_seg")? else {
        return Ok(None);
    };
    Ok(Some(EventSpot {
        seg,
        offset: r.try_get("event_offset")?,
        len: r.try_get("event_len")?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::sqlite_store;

    /// The `detail` lines of SQLite's plan for a listing of `requests` with filter `f`.
    async fn sqlite_listing_plan(f: &RequestFilter) -> String {
        let (store, dir) = sqlite_store("plan").await;
        let (sql, args) = list_sql(Backend::Sqlite, Uuid::now_v7(), f, None, 50);
        let explain = format!("EXPLAIN QUERY PLAN {}", sql.replace("{table}", "requests"));
        let plan: Vec<String> = bind_all(sqlx::query(&explain), args)
            .fetch_all(&store.pool)
            .await
            .unwrap()
            .iter()
            .map(|r| r.try_get::<String, _>("detail").unwrap())
            .collect();
        let _ = std::fs::remove_dir_all(&dir);
        plan.join("; ")
    }

    #[tokio::test]
    async fn a_request_id_lookup_on_sqlite_uses_its_index_not_a_walk_of_the_channel() {
        let plan = sqlite_listing_plan(&RequestFilter {
            request_id: Some("req-1".into()),
            ..Default::default()
        })
        .await;
        assert!(
            plan.contains("USING INDEX requests_request_id"),
            "plan: {plan}"
        );
        // A plain listing still reads the channel's index newest first, with no sort.
        let plan = sqlite_listing_plan(&RequestFilter::default()).await;
        assert!(
            plan.contains("USING INDEX requests_channel_started") && !plan.contains("B-TREE"),
            "plan: {plan}"
        );
    }

    #[test]
    fn status_filters_parse() {
        assert_eq!(StatusFilter::parse("5xx"), Some(StatusFilter::Class(5)));
        assert_eq!(StatusFilter::parse("404"), Some(StatusFilter::Exact(404)));
        assert_eq!(StatusFilter::parse("9xx"), None);
        assert_eq!(StatusFilter::parse("abc"), None);
        assert_eq!(StatusFilter::Class(4).range(), (400, 499));
    }

    #[test]
    fn placeholders_number_rows_then_columns() {
        assert_eq!(placeholders(Backend::Postgres, 2, 2), "($1, $2), ($3, $4)");
        assert_eq!(placeholders(Backend::Sqlite, 2, 2), "(?, ?), (?, ?)");
    }

    #[test]
    fn nearest_rank_percentiles() {
        assert_eq!(nearest_rank(100, 50.0), Some(50));
        assert_eq!(nearest_rank(100, 99.0), Some(99));
        assert_eq!(nearest_rank(30, 50.0), Some(15));
        assert_eq!(nearest_rank(1, 99.0), Some(1));
        assert_eq!(nearest_rank(0, 50.0), None);
    }
}
