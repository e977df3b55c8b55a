//! Request records and their events: the writes of the SQL writers, history queries and
//! statistics.
//!
//! A finished request is a row of `requests` (`crate::request_row`); a request in flight is in
//! the journal (SQLite, `crate::journal`) or in `requests_inflight` (a PostgreSQL node's
//! pending records). Readers merge the finished rows with the requests in flight. Statistics
//! read the per-minute roll-ups (`crate::rollup`), never the rows.

use std::collections::{BTreeMap, HashMap, HashSet};

use futures_util::TryStreamExt;
use serde::Serialize;
use sluice_core::clock::Micros;
use sluice_core::{EventRecord, RequestRecord, RequestState};
use sqlx::{Any, Row, Transaction};
use uuid::Uuid;

use crate::db::{Backend, Store};
use crate::error::{Result, StoreError};
use crate::request_row::{self, column_list, Ids, COLUMNS, RECORD_COLUMNS};
use crate::rollup::{self, Rollup};
use crate::rows;

/// Most rows in one multi-row statement (bounded by the backends' parameter limits: 32
/// columns).
const CHUNK: usize = 128;
/// Longest a read of one finished request waits for its row to commit (the history thread
/// catches up with a full backlog, `ledger::MAX_BACKLOG`, in about half a second).
const SETTLE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// `items` in runs of powers of two up to [`CHUNK`] (37 as 32, 4 and 1): a multi-row statement
/// is prepared once per row count and reused, so a few sizes keep every one prepared.
pub(crate) fn runs<T>(mut items: &[T]) -> impl Iterator<Item = &[T]> {
    std::iter::from_fn(move || {
        if items.is_empty() {
            return None;
        }
        let n = if items.len() >= CHUNK {
            CHUNK
        } else {
            1 << items.len().ilog2()
        };
        let (run, rest) = items.split_at(n);
        items = rest;
        Some(run)
    })
}

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

/// Latency percentiles (µs) of the requests that started in one time bin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LatencyBin {
    /// The bin's start.
    pub start: Micros,
    /// Median.
    pub p50: i64,
    /// 95th percentile.
    pub p95: i64,
    /// 99th percentile.
    pub p99: i64,
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

/// `INSERT` of `rows` finished requests into `requests`; a request already there is left as it
/// is (a completion replayed from the journal). With `returning`, answers the ids inserted.
pub(crate) fn insert_requests_sql(backend: Backend, rows: usize, returning: bool) -> String {
    format!(
        "INSERT INTO requests ({}) VALUES {} ON CONFLICT (id) DO NOTHING{}",
        COLUMNS.join(", "),
        placeholders(backend, rows, COLUMNS.len()),
        if returning { " RETURNING id" } else { "" }
    )
}

/// `INSERT` of `rows` pending requests into `requests_inflight`.
fn insert_inflight_sql(backend: Backend, rows: usize) -> String {
    format!(
        "INSERT INTO requests_inflight ({}) VALUES {}",
        column_list(RECORD_COLUMNS),
        placeholders(backend, rows, RECORD_COLUMNS)
    )
}

/// `DELETE` of `rows` requests (by id) from `requests_inflight`.
fn delete_inflight_sql(backend: Backend, rows: usize) -> String {
    let list = placeholders(backend, rows, 1).replace("), (", ", ");
    format!("DELETE FROM requests_inflight WHERE id IN {list}")
}

/// Finds a channel that still exists; on PostgreSQL it also holds the channel's row until the
/// batch commits, so a purge cannot delete it between this check and the commit (on SQLite the
/// batch already holds the file's write lock).
pub(crate) fn channel_exists_sql(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "SELECT 1 FROM channels WHERE id = $1",
        Backend::Postgres => "SELECT 1 FROM channels WHERE id = $1 FOR SHARE",
    }
}

/// Removes a channel's history: its requests, finished and in flight, and its roll-ups. Run
/// by a purge, and by a batch that wrote for a channel purged while those were in flight.
pub(crate) const FORGET_PURGED_SQL: [&str; 4] = [
    "DELETE FROM requests WHERE channel_id = $1",
    "DELETE FROM requests_inflight WHERE channel_id = $1",
    "DELETE FROM request_minutes WHERE channel_id = $1",
    "DELETE FROM latency_minutes WHERE channel_id = $1",
];

/// The channels of `records`, each once.
pub(crate) fn finished_channels<'a>(
    records: impl IntoIterator<Item = &'a RequestRecord>,
) -> Vec<Uuid> {
    let mut ids: Vec<Uuid> = records.into_iter().map(|r| r.channel_id).collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Writes finished requests (with their events) and, with `count`, what they add to the
/// roll-ups; answers how many rows were new.
pub(crate) async fn write_finished(
    tx: &mut Transaction<'_, Any>,
    backend: Backend,
    node_id: &str,
    finished: &[(&RequestRecord, Option<&EventRecord>)],
    count: bool,
) -> Result<u64> {
    let mut inserted: HashSet<String> = HashSet::new();
    for chunk in runs(finished) {
        let ids: Vec<Ids> = chunk.iter().map(|(r, _)| Ids::of(r)).collect();
        let sql = insert_requests_sql(backend, chunk.len(), true);
        let mut q = sqlx::query(&sql);
        for ((r, e), ids) in chunk.iter().zip(&ids) {
            for v in request_row::values(ids, node_id, r, *e) {
                q = v.bind(q);
            }
        }
        for row in q.fetch_all(&mut **tx).await? {
            inserted.insert(row.try_get("id")?);
        }
    }
    if count {
        let mut rollup = Rollup::default();
        for (r, _) in finished {
            if inserted.contains(&r.id.to_string()) {
                rollup.add(r);
            }
        }
        rollup.write(tx).await?;
    }
    Ok(inserted.len() as u64)
}

/// Writes pending requests into `requests_inflight`.
async fn write_inflight(
    tx: &mut Transaction<'_, Any>,
    backend: Backend,
    node_id: &str,
    recs: &[&RequestRecord],
) -> Result<()> {
    for chunk in runs(recs) {
        let ids: Vec<Ids> = chunk.iter().map(|r| Ids::of(r)).collect();
        let sql = insert_inflight_sql(backend, chunk.len());
        let mut q = sqlx::query(&sql);
        for (r, ids) in chunk.iter().zip(&ids) {
            for v in &request_row::values(ids, node_id, r, None)[..RECORD_COLUMNS] {
                q = v.bind(q);
            }
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

async fn delete_inflight(
    tx: &mut Transaction<'_, Any>,
    backend: Backend,
    ids: &[Uuid],
) -> Result<()> {
    for chunk in runs(ids) {
        let sql = delete_inflight_sql(backend, chunk.len());
        let mut q = sqlx::query(&sql);
        for id in chunk {
            q = q.bind(id.to_string());
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

/// Removes what a batch wrote for channels purged while those requests were in flight.
async fn forget_purged(
    tx: &mut Transaction<'_, Any>,
    backend: Backend,
    channels: Vec<Uuid>,
) -> Result<()> {
    for channel in channels {
        let exists = sqlx::query(channel_exists_sql(backend))
            .bind(channel.to_string())
            .fetch_optional(&mut **tx)
            .await?
            .is_some();
        if !exists {
            for sql in FORGET_PURGED_SQL {
                sqlx::query(sql)
                    .bind(channel.to_string())
                    .execute(&mut **tx)
                    .await?;
            }
        }
    }
    Ok(())
}

impl RequestFilter {
    /// Whether the listing is a bounded scan: it filters on what no index holds.
    fn scanned(&self) -> bool {
        self.method.is_some() || self.path_prefix.is_some()
    }

    /// Whether a scanned row's method and path pass.
    fn scan_matches(&self, method: &str, path: &str) -> bool {
        self.method
            .as_ref()
            .is_none_or(|m| method.eq_ignore_ascii_case(m))
            && self
                .path_prefix
                .as_ref()
                .is_none_or(|p| path.starts_with(p.as_str()))
    }

    /// Whether `r` passes this filter (for requests in flight, read outside SQL).
    fn matches(&self, r: &RequestRecord) -> bool {
        self.state.is_none_or(|s| r.state == s)
            && self
                .method
                .as_ref()
                .is_none_or(|m| r.method.eq_ignore_ascii_case(m))
            && self.status.is_none_or(|s| {
                let (lo, hi) = s.range();
                r.response_status
                    .is_some_and(|st| (lo..=hi).contains(&i64::from(st)))
            })
            && self.since.is_none_or(|t| r.started_at >= t)
            && self.until.is_none_or(|t| r.started_at < t)
            && self
                .path_prefix
                .as_ref()
                .is_none_or(|p| r.path.starts_with(p.as_str()))
            && self
                .request_id
                .as_ref()
                .is_none_or(|id| &r.request_id == id)
    }
}

impl Cursor {
    /// Whether `r` comes after this position, newest first.
    fn passed_by(&self, r: &RequestRecord) -> bool {
        (r.started_at, r.id) < (self.started_at, self.id)
    }
}

/// A history listing's query on `requests` and its arguments. Each filter but the path prefix
/// has an index that keeps the channel's requests in time order (state, status class, method)
/// or finds the few rows of a request id, so the first page reads about a page of rows.
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
    // SQLite picks the index that gives the order asked for over one that narrows the rows
    // (an exact status read the channel's whole time index): name the filter's own.
    let index = match (backend, f) {
        (Backend::Sqlite, f) if f.request_id.is_none() => match (f.state, f.status) {
            (Some(_), _) => " INDEXED BY requests_channel_state",
            (None, Some(_)) => " INDEXED BY requests_channel_status",
            (None, None) => " INDEXED BY requests_channel_started",
        },
        _ => "",
    };
    let columns = match f.scanned() {
        // Matched during a bounded scan (see `Store::list_requests_page`).
        true => "id, started_at, method, path".to_string(),
        false => column_list(RECORD_COLUMNS),
    };
    let mut sql = format!("SELECT {columns} FROM requests{index} WHERE {channel} = $1");
    let mut args = vec![Arg::Text(channel_id.to_string())];
    let mut push = |sql: &mut String, clause: &str, a: Arg| {
        args.push(a);
        sql.push_str(&clause.replace("$?", &format!("${}", args.len())));
    };
    if let Some(st) = f.state {
        push(&mut sql, " AND state = $?", Arg::Text(st.as_str().into()));
    }
    match f.status {
        // The class is the status index's second column.
        Some(StatusFilter::Class(d)) => {
            push(
                &mut sql,
                " AND (response_status / 100) = $?",
                Arg::Int(i64::from(d)),
            );
        }
        Some(StatusFilter::Exact(n)) => {
            push(
                &mut sql,
                " AND (response_status / 100) = $?",
                Arg::Int(i64::from(n / 100)),
            );
            push(
                &mut sql,
                " AND response_status = $?",
                Arg::Int(i64::from(n)),
            );
        }
        None => {}
    }
    if let Some(t) = f.since {
        push(&mut sql, " AND started_at >= $?", Arg::Int(t));
    }
    if let Some(t) = f.until {
        push(&mut sql, " AND started_at < $?", Arg::Int(t));
    }
    if let Some(r) = &f.request_id {
        push(&mut sql, " AND request_id = $?", Arg::Text(r.clone()));
    }
    if let Some(c) = after {
        push(&mut sql, " AND started_at <= $?", Arg::Int(c.started_at));
        push(&mut sql, " AND (started_at < $?", Arg::Int(c.started_at));
        push(&mut sql, " OR id < $?)", Arg::Text(c.id.to_string()));
    }
    let limit = if f.scanned() { SCAN } else { limit };
    sql.push_str(&format!(" ORDER BY started_at DESC, id DESC LIMIT {limit}"));
    (sql, args)
}

/// Most requests a listing filtered by method or path prefix reads for one page: they are in
/// no index, so a rare one would otherwise read the channel's whole history. A page it does
/// not fill still carries a cursor, from which the next page reads on.
const SCAN: i64 = 5_000;

/// One page of a channel's history.
#[derive(Debug, Clone, Default)]
pub struct RequestPage {
    /// The requests, newest first.
    pub items: Vec<RequestRecord>,
    /// Where the next page starts, when there may be one: after the last item of a full page,
    /// or after the last request a bounded scan read.
    pub next: Option<Cursor>,
}

impl Store {
    /// Writes a batch of ledger operations in one transaction: all of them or none. A request
    /// whose pending record and completion share the batch is written once, finished.
    pub async fn write_batch(&self, node_id: &str, ops: &[LedgerOp]) -> Result<()> {
        let completed: HashSet<Uuid> = ops
            .iter()
            .filter_map(|op| match op {
                LedgerOp::Complete(r, _) => Some(r.id),
                LedgerOp::Pending(_) => None,
            })
            .collect();
        let mut inflight = Vec::new();
        let mut finished = Vec::with_capacity(completed.len());
        for op in ops {
            match op {
                LedgerOp::Pending(r) if completed.contains(&r.id) => {}
                LedgerOp::Pending(r) => inflight.push(r),
                LedgerOp::Complete(r, e) => finished.push((r, e.as_deref())),
            }
        }
        let b = self.backend();
        let mut tx = self.pool.begin().await?;
        write_inflight(&mut tx, b, node_id, &inflight).await?;
        write_finished(&mut tx, b, node_id, &finished, true).await?;
        let ids: Vec<Uuid> = finished.iter().map(|(r, _)| r.id).collect();
        delete_inflight(&mut tx, b, &ids).await?;
        forget_purged(
            &mut tx,
            b,
            finished_channels(finished.iter().map(|(r, _)| *r)),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Closes this node's requests left unfinished by a previous run: a completion left in the
    /// SQLite journal is written as it was (without its event); a request without one, there or in
    /// `requests_inflight`, is closed as `error`/`interrupted`. Returns how many were
    /// interrupted. Call it before starting this node's [`crate::Ledger`]; the journal's
    /// segments are deleted once their requests are written.
    pub async fn close_interrupted(&self, node_id: &str, now: Micros) -> Result<u64> {
        let (journaled, segments) = match self.sqlite_file() {
            Some((path, _)) => crate::journal::leftovers(path)
                .map_err(StoreError::io("reading the ledger journal"))?,
            None => (Vec::new(), Vec::new()),
        };
        let mut left: Vec<(RequestRecord, Option<EventRecord>)> = Vec::new();
        for l in journaled {
            left.push(match l {
                crate::journal::Leftover::Completed(r) => (r, None),
                crate::journal::Leftover::Pending(r) => (interrupted(r, now), None),
            });
        }
        let mut ids = Vec::new();
        for r in sqlx::query(&format!(
            "SELECT {} FROM requests_inflight WHERE node_id = $1",
            column_list(RECORD_COLUMNS)
        ))
        .bind(node_id)
        .fetch_all(&self.pool)
        .await?
        {
            let r = request_row::decode_record(&r)?;
            ids.push(r.id);
            left.push((interrupted(r, now), None));
        }
        let closed = left
            .iter()
            .filter(|(r, _)| r.error.as_deref() == Some(INTERRUPTED))
            .map(|(r, _)| r.id)
            .collect::<HashSet<_>>();
        let b = self.backend();
        let mut tx = self.pool.begin().await?;
        let refs: Vec<(&RequestRecord, Option<&EventRecord>)> =
            left.iter().map(|(r, e)| (r, e.as_ref())).collect();
        write_finished(&mut tx, b, node_id, &refs, true).await?;
        delete_inflight(&mut tx, b, &ids).await?;
        forget_purged(&mut tx, b, finished_channels(left.iter().map(|(r, _)| r))).await?;
        tx.commit().await?;
        for segment in segments {
            std::fs::remove_file(&segment)
                .map_err(StoreError::io(format!("removing {}", segment.display())))?;
        }
        Ok(closed.len() as u64)
    }

    /// Writes one request finished as `error` with `error` (its completion could not be
    /// written as it was).
    pub async fn mark_request_error(
        &self,
        rec: &RequestRecord,
        error: &str,
        now: Micros,
    ) -> Result<()> {
        let mut failed = rec.clone();
        failed.state = RequestState::Error;
        failed.error = Some(error.to_string());
        failed.completed_at = Some(now);
        self.write_batch("", &[LedgerOp::Complete(failed, None)])
            .await
    }

    /// The requests in flight of `channels` started since `since`: those in
    /// `requests_inflight` and, while a SQLite ledger runs here, those in its journal (a
    /// finished one whose row has not committed yet reads as its journal line says). A
    /// request whose row has committed may still be among them: readers prefer the row.
    pub(crate) async fn in_flight(
        &self,
        channels: &[Uuid],
        since: Micros,
    ) -> Result<Vec<RequestRecord>> {
        if channels.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT {} FROM requests_inflight WHERE started_at >= $1 AND channel_id IN ({})",
            column_list(RECORD_COLUMNS),
            crate::health::in_list(2, channels.len())
        );
        let mut q = sqlx::query(&sql).bind(since);
        for c in channels {
            q = q.bind(c.to_string());
        }
        let mut found = Vec::new();
        for r in q.fetch_all(&self.pool).await? {
            found.push(request_row::decode_record(&r)?);
        }
        let wanted: HashSet<&Uuid> = channels.iter().collect();
        let journaled: Vec<RequestRecord> = self
            .inflight
            .records()
            .into_iter()
            .filter(|r| wanted.contains(&r.channel_id) && r.started_at >= since)
            .collect();
        if !journaled.is_empty() {
            // A channel purged while these were in flight: they are forgotten when they finish.
            let live = self.existing_channels(channels).await?;
            found.extend(
                journaled
                    .into_iter()
                    .filter(|r| live.contains(&r.channel_id)),
            );
        }
        Ok(found)
    }

    /// The channels among `ids` that exist.
    async fn existing_channels(&self, ids: &[Uuid]) -> Result<HashSet<Uuid>> {
        let sql = format!(
            "SELECT id FROM channels WHERE id IN ({})",
            crate::health::in_list(1, ids.len())
        );
        let mut q = sqlx::query(&sql);
        for id in ids {
            q = q.bind(id.to_string());
        }
        let mut found = HashSet::new();
        for r in q.fetch_all(&self.pool).await? {
            found.insert(rows::uuid(&r, "id")?);
        }
        Ok(found)
    }

    /// The requests still in flight of `channels` since `since` ([`Store::in_flight`] without
    /// those whose row has committed), and a read transaction whose snapshot was taken after them: the
    /// rows and roll-ups it reads, with these, count every request once (a request that
    /// commits meanwhile is in one or the other, never both or neither).
    async fn unfinished_and_snapshot(
        &self,
        channels: &[Uuid],
        since: Micros,
    ) -> Result<(Vec<RequestRecord>, Transaction<'static, Any>)> {
        let found = self.in_flight(channels, since).await?;
        let mut tx = self.pool.begin().await?;
        if self.backend() == Backend::Postgres {
            // PostgreSQL's default gives each statement its own snapshot.
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                .execute(&mut *tx)
                .await?;
        }
        let ids: Vec<Uuid> = found.iter().map(|r| r.id).collect();
        let done = finished_ids_on(&mut tx, &ids).await?;
        Ok((without_committed(found, &done), tx))
    }

    /// A channel's history, newest first: finished and in-flight requests alike (at most
    /// `limit`; see [`Store::list_requests_page`] for where the next page starts).
    pub async fn list_requests(
        &self,
        channel_id: Uuid,
        f: &RequestFilter,
        after: Option<Cursor>,
        limit: i64,
    ) -> Result<Vec<RequestRecord>> {
        Ok(self
            .list_requests_page(channel_id, f, after, limit)
            .await?
            .items)
    }

    /// One page of a channel's history, newest first, with where the next one starts.
    pub async fn list_requests_page(
        &self,
        channel_id: Uuid,
        f: &RequestFilter,
        after: Option<Cursor>,
        limit: i64,
    ) -> Result<RequestPage> {
        // In flight first: one that finishes meanwhile is then found among the rows.
        let flying = self.in_flight(&[channel_id], Micros::MIN).await?;
        let (sql, args) = list_sql(self.backend(), channel_id, f, after, limit);
        let mut scanned_to = None;
        let mut out = Vec::new();
        if f.scanned() {
            // Read on until the page is full or the scan's bound is reached.
            let mut rows = bind_all(sqlx::query(&sql), args).fetch(&self.pool);
            let (mut ids, mut scanned) = (Vec::new(), 0);
            while let Some(r) = rows.try_next().await? {
                scanned += 1;
                let (method, path): (String, String) = (r.try_get("method")?, r.try_get("path")?);
                if f.scan_matches(&method, &path) {
                    ids.push(rows::uuid(&r, "id")?);
                    if ids.len() as i64 == limit {
                        break;
                    }
                }
                if scanned == SCAN {
                    scanned_to = Some(Cursor {
                        started_at: r.try_get("started_at")?,
                        id: rows::uuid(&r, "id")?,
                    });
                }
            }
            drop(rows);
            out = self.records_by_id(&ids).await?;
        } else {
            for r in bind_all(sqlx::query(&sql), args)
                .fetch_all(&self.pool)
                .await?
            {
                out.push(request_row::decode_record(&r)?);
            }
        }
        let mut seen: HashSet<Uuid> = out.iter().map(|r| r.id).collect();
        out.extend(
            flying.into_iter().filter(|r| {
                f.matches(r) && after.is_none_or(|c| c.passed_by(r)) && seen.insert(r.id)
            }),
        );
        out.sort_by_key(|r| std::cmp::Reverse((r.started_at, r.id)));
        out.truncate(usize::try_from(limit).unwrap_or(0));
        let next = match out.last() {
            Some(r) if out.len() as i64 == limit => Some(Cursor {
                started_at: r.started_at,
                id: r.id,
            }),
            _ => scanned_to,
        };
        Ok(RequestPage { items: out, next })
    }

    /// The newest requests of `channels` that did not succeed (`failed`, `timeout`, `error`)
    /// started from `since` on, at most `limit`, newest first, those only in flight included.
    /// One statement reads the newest few of each channel and state along its index, where a
    /// history read per channel and state cost a round trip each (60 for 20 channels).
    pub async fn recent_unsuccessful(
        &self,
        channels: &[Uuid],
        since: Micros,
        limit: i64,
    ) -> Result<Vec<RequestRecord>> {
        if channels.is_empty() || limit <= 0 {
            return Ok(Vec::new());
        }
        const UNSUCCESSFUL: [RequestState; 3] = [
            RequestState::Failed,
            RequestState::Timeout,
            RequestState::Error,
        ];
        let flying = self.in_flight(channels, since).await?;
        let index = match self.backend() {
            Backend::Sqlite => " INDEXED BY requests_channel_state",
            Backend::Postgres => "",
        };
        let columns = column_list(RECORD_COLUMNS);
        let mut parts = Vec::new();
        for (i, _) in channels.iter().enumerate() {
            for (j, _) in UNSUCCESSFUL.iter().enumerate() {
                let n = 3 + 2 * (i * UNSUCCESSFUL.len() + j);
                parts.push(format!(
                    "SELECT * FROM (SELECT {columns} FROM requests{index} WHERE channel_id = ${n} \
                     AND state = ${} AND started_at >= $1 ORDER BY started_at DESC LIMIT $2) AS p{n}",
                    n + 1
                ));
            }
        }
        let sql = format!(
            "SELECT * FROM ({}) AS u ORDER BY started_at DESC, id DESC LIMIT $2",
            parts.join(" UNION ALL ")
        );
        let mut q = sqlx::query(&sql).bind(since).bind(limit);
        for c in channels {
            for st in UNSUCCESSFUL {
                q = q.bind(c.to_string()).bind(st.as_str());
            }
        }
        let mut out = Vec::new();
        for r in q.fetch_all(&self.pool).await? {
            out.push(request_row::decode_record(&r)?);
        }
        let mut seen: HashSet<Uuid> = out.iter().map(|r| r.id).collect();
        out.extend(
            flying
                .into_iter()
                .filter(|r| UNSUCCESSFUL.contains(&r.state) && seen.insert(r.id)),
        );
        out.sort_by_key(|r| std::cmp::Reverse((r.started_at, r.id)));
        out.truncate(usize::try_from(limit).unwrap_or(0));
        Ok(out)
    }

    /// The finished requests `ids`.
    async fn records_by_id(&self, ids: &[Uuid]) -> Result<Vec<RequestRecord>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT {} FROM requests WHERE id IN ({})",
            column_list(RECORD_COLUMNS),
            crate::health::in_list(1, ids.len())
        );
        let mut q = sqlx::query(&sql);
        for id in ids {
            q = q.bind(id.to_string());
        }
        q.fetch_all(&self.pool)
            .await?
            .iter()
            .map(request_row::decode_record)
            .collect()
    }

    /// One request and its event (absent while pending or when the exchange never started).
    /// A request finished in the journal is read once its row, which holds the event,
    /// commits (within a group commit; `SETTLE_WAIT` at most).
    pub async fn get_request(
        &self,
        id: Uuid,
    ) -> Result<Option<(RequestRecord, Option<EventRecord>)>> {
        let flying = self.inflight.records().into_iter().find(|r| r.id == id);
        if flying
            .as_ref()
            .is_some_and(|r| r.state != RequestState::Pending)
        {
            self.inflight.until_committed(id, SETTLE_WAIT).await;
        }
        let row = sqlx::query(&format!(
            "SELECT {} FROM requests WHERE id = $1",
            COLUMNS.join(", ")
        ))
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        if let Some(r) = row {
            return request_row::decode(&r).map(Some);
        }
        if let Some(r) = flying {
            return Ok(Some((r, None)));
        }
        sqlx::query(&format!(
            "SELECT {} FROM requests_inflight WHERE id = $1",
            column_list(RECORD_COLUMNS)
        ))
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?
        .map(|r| Ok((request_row::decode_record(&r)?, None)))
        .transpose()
    }

    /// Number of requests recorded for a channel (all time, in flight included).
    pub async fn count_requests(&self, channel_id: Uuid) -> Result<i64> {
        let (flying, mut tx) = self
            .unfinished_and_snapshot(&[channel_id], Micros::MIN)
            .await?;
        let rows: i64 = sqlx::query("SELECT COUNT(*) AS n FROM requests WHERE channel_id = $1")
            .bind(channel_id.to_string())
            .fetch_one(&mut *tx)
            .await?
            .try_get("n")?;
        Ok(rows + flying.len() as i64)
    }

    /// Finished requests per state and minute of `channels` together, from the minute of
    /// `since` on, from the roll-ups: `(minute, state, count)`, oldest first, with the requests
    /// still pending.
    pub async fn per_minute_by_state(
        &self,
        channels: &[Uuid],
        since: Micros,
    ) -> Result<Vec<(Micros, String, i64)>> {
        let mut per_minute: BTreeMap<(Micros, &str), i64> = BTreeMap::new();
        if channels.is_empty() {
            return Ok(Vec::new());
        }
        let sums: String = rollup::COUNTED
            .iter()
            .map(|s| format!(", CAST(SUM({0}) AS BIGINT) AS {0}", s.as_str()))
            .collect();
        let sql = format!(
            "SELECT minute{sums} FROM request_minutes WHERE minute >= $1 AND channel_id IN ({}) \
             GROUP BY minute",
            crate::health::in_list(2, channels.len())
        );
        let (flying, mut tx) = self.unfinished_and_snapshot(channels, since).await?;
        let mut q = sqlx::query(&sql).bind(rollup::minute_start(since));
        for c in channels {
            q = q.bind(c.to_string());
        }
        for r in q.fetch_all(&mut *tx).await? {
            let minute: Micros = r.try_get("minute")?;
            for name in rollup::COUNTED.map(RequestState::as_str) {
                let n: i64 = r.try_get(name)?;
                if n > 0 {
                    *per_minute.entry((minute, name)).or_insert(0) += n;
                }
            }
        }
        // Pending, or finished with the row still to commit: counted as the roll-ups will.
        for r in flying {
            *per_minute
                .entry((rollup::minute_start(r.started_at), r.state.as_str()))
                .or_insert(0) += 1;
        }
        Ok(per_minute
            .into_iter()
            .map(|((minute, state), n)| (minute, state.to_string(), n))
            .collect())
    }

    /// Counts by state, requests per minute and latency percentiles of a channel from the
    /// minute of `since` on: finished requests from the roll-ups (whole minutes), and the
    /// requests still pending.
    pub async fn channel_stats(&self, channel_id: Uuid, since: Micros) -> Result<ChannelStats> {
        let mut stats = ChannelStats::default();
        for st in RequestState::ALL {
            stats.by_state.insert(st.as_str().to_string(), 0);
        }
        let per_minute = self.per_minute_by_state(&[channel_id], since).await?;
        let mut totals: BTreeMap<Micros, i64> = BTreeMap::new();
        for (minute, state, n) in &per_minute {
            stats.total += n;
            *stats.by_state.entry(state.clone()).or_insert(0) += n;
            *totals.entry(*minute).or_insert(0) += n;
        }
        stats.per_minute = totals.into_iter().collect();
        stats.per_minute_by_state = per_minute;
        let mut buckets: BTreeMap<i64, i64> = BTreeMap::new();
        for r in sqlx::query(
            "SELECT bucket, CAST(SUM(requests) AS BIGINT) AS n FROM latency_minutes \
             WHERE channel_id = $1 AND minute >= $2 GROUP BY bucket",
        )
        .bind(channel_id.to_string())
        .bind(rollup::minute_start(since))
        .fetch_all(&self.pool)
        .await?
        {
            buckets.insert(r.try_get("bucket")?, r.try_get("n")?);
        }
        for (name, p) in [("p50", 50.0), ("p95", 95.0), ("p99", 99.0)] {
            stats
                .latency_us
                .insert(name.to_string(), rollup::percentile(&buckets, p));
        }
        Ok(stats)
    }

    /// Latency percentiles of a channel's finished requests per time bin of `bin_us` (whole
    /// minutes) from the bin of `from` on, from the roll-ups' histograms: bins without
    /// requests are left out.
    pub async fn latency_per_bin(
        &self,
        channel_id: Uuid,
        from: Micros,
        bin_us: i64,
    ) -> Result<Vec<LatencyBin>> {
        let bin_us = bin_us.max(60_000_000);
        let from = from.div_euclid(bin_us) * bin_us;
        let mut bins: BTreeMap<Micros, BTreeMap<i64, i64>> = BTreeMap::new();
        for r in sqlx::query(
            "SELECT minute, bucket, requests FROM latency_minutes \
             WHERE channel_id = $1 AND minute >= $2",
        )
        .bind(channel_id.to_string())
        .bind(from)
        .fetch_all(&self.pool)
        .await?
        {
            let minute: Micros = r.try_get("minute")?;
            let start = from + (minute - from).div_euclid(bin_us) * bin_us;
            *bins
                .entry(start)
                .or_default()
                .entry(r.try_get("bucket")?)
                .or_insert(0) += r.try_get::<i64, _>("requests")?;
        }
        Ok(bins
            .into_iter()
            .filter_map(|(start, b)| {
                Some(LatencyBin {
                    start,
                    p50: rollup::percentile(&b, 50.0)?,
                    p95: rollup::percentile(&b, 95.0)?,
                    p99: rollup::percentile(&b, 99.0)?,
                })
            })
            .collect())
    }

    /// Requests per state of each channel started from the minute of `since` on (every state
    /// present, zeros included): the roll-ups, and the requests still pending.
    pub async fn counts_by_state_since(
        &self,
        ids: &[Uuid],
        since: Micros,
    ) -> Result<HashMap<Uuid, BTreeMap<String, i64>>> {
        let zero: BTreeMap<String, i64> = RequestState::ALL
            .iter()
            .map(|s| (s.as_str().to_string(), 0))
            .collect();
        let mut out: HashMap<Uuid, BTreeMap<String, i64>> =
            ids.iter().map(|id| (*id, zero.clone())).collect();
        if ids.is_empty() {
            return Ok(out);
        }
        let sums: String = rollup::COUNTED
            .iter()
            .map(|s| format!(", CAST(SUM({0}) AS BIGINT) AS {0}", s.as_str()))
            .collect();
        let sql = format!(
            "SELECT channel_id{sums} FROM request_minutes \
             WHERE minute >= $1 AND channel_id IN ({}) GROUP BY channel_id",
            crate::health::in_list(2, ids.len())
        );
        let (flying, mut tx) = self.unfinished_and_snapshot(ids, since).await?;
        let mut q = sqlx::query(&sql).bind(rollup::minute_start(since));
        for id in ids {
            q = q.bind(id.to_string());
        }
        for r in q.fetch_all(&mut *tx).await? {
            let states = out
                .entry(rows::uuid(&r, "channel_id")?)
                .or_insert_with(|| zero.clone());
            for name in rollup::COUNTED.map(RequestState::as_str) {
                *states.entry(name.to_string()).or_insert(0) += r.try_get::<i64, _>(name)?;
            }
        }
        for r in flying {
            let states = out.entry(r.channel_id).or_insert_with(|| zero.clone());
            *states.entry(r.state.as_str().to_string()).or_insert(0) += 1;
        }
        Ok(out)
    }
}

/// Which of `ids` have their row committed, read on `conn`.
async fn finished_ids_on(conn: &mut sqlx::AnyConnection, ids: &[Uuid]) -> Result<HashSet<Uuid>> {
    let mut found = HashSet::new();
    for chunk in runs(ids) {
        let sql = format!(
            "SELECT id FROM requests WHERE id IN ({})",
            crate::health::in_list(1, chunk.len())
        );
        let mut q = sqlx::query(&sql);
        for id in chunk {
            q = q.bind(id.to_string());
        }
        for r in q.fetch_all(&mut *conn).await? {
            found.insert(rows::uuid(&r, "id")?);
        }
    }
    Ok(found)
}

/// `found` without the requests in `done` and without repeats.
fn without_committed(mut found: Vec<RequestRecord>, done: &HashSet<Uuid>) -> Vec<RequestRecord> {
    let mut seen = HashSet::new();
    found.retain(|r| !done.contains(&r.id) && seen.insert(r.id));
    found
}

/// The error of a request closed because the process stopped while it was in flight.
const INTERRUPTED: &str = "interrupted";

/// `r`, closed at `now` as `error`/`interrupted`.
fn interrupted(mut r: RequestRecord, now: Micros) -> RequestRecord {
    r.state = RequestState::Error;
    r.error = Some(INTERRUPTED.into());
    r.completed_at = Some(now);
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::sqlite_store;

    /// The `detail` lines of SQLite's plan for a listing of `requests` with filter `f`.
    async fn sqlite_listing_plan(f: &RequestFilter) -> String {
        let (store, dir) = sqlite_store("plan").await;
        let (sql, args) = list_sql(Backend::Sqlite, Uuid::now_v7(), f, None, 50);
        let explain = format!("EXPLAIN QUERY PLAN {sql}");
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
        // A plain listing still reads the channel's index newest first, sorting only the
        // requests that started in the same microsecond by id.
        let plan = sqlite_listing_plan(&RequestFilter::default()).await;
        assert!(
            plan.contains("USING INDEX requests_channel_started")
                && !plan.contains("B-TREE FOR ORDER BY"),
            "plan: {plan}"
        );
    }

    #[tokio::test]
    async fn every_history_filter_on_sqlite_reads_an_index_in_time_order() {
        let cases = [
            (
                RequestFilter {
                    state: Some(RequestState::Failed),
                    ..Default::default()
                },
                "requests_channel_state",
            ),
            (
                RequestFilter {
                    status: Some(StatusFilter::Class(5)),
                    ..Default::default()
                },
                "requests_channel_status",
            ),
            (
                RequestFilter {
                    status: Some(StatusFilter::Exact(404)),
                    ..Default::default()
                },
                "requests_channel_status",
            ),
            (
                RequestFilter {
                    since: Some(1),
                    until: Some(2),
                    ..Default::default()
                },
                "requests_channel_started",
            ),
        ];
        for (f, index) in cases {
            let plan = sqlite_listing_plan(&f).await;
            assert!(
                plan.contains(&format!("USING INDEX {index}"))
                    && !plan.contains("B-TREE FOR ORDER BY"),
                "{f:?}: {plan}"
            );
        }
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
    fn rows_go_in_runs_of_a_few_sizes() {
        let sizes = |n: usize| runs(&vec![0; n]).map(<[_]>::len).collect::<Vec<_>>();
        assert_eq!(sizes(37), [32, 4, 1]);
        assert_eq!(sizes(300), [128, 128, 32, 8, 4]);
        assert!(sizes(0).is_empty());
    }

    #[test]
    fn placeholders_number_rows_then_columns() {
        assert_eq!(placeholders(Backend::Postgres, 2, 2), "($1, $2), ($3, $4)");
        assert_eq!(placeholders(Backend::Sqlite, 2, 2), "(?, ?), (?, ?)");
    }
}
