//! The ledger's dedicated SQLite write connections.
//!
//! sqlx drives SQLite from a worker thread and hands every statement across threads; on a busy
//! machine those handoffs, not SQLite, dominated the commit time of the group-commit writer.
//! These connections (rusqlite, on the same bundled SQLite) run a whole batch with cached
//! prepared statements in one blocking call: one handoff per batch.
//!
//! The requests in flight are in the journal (`crate::journal`), which makes each pending
//! record durable. Readers see them in a SQLite file of their own ([`crate::db::inflight_file`],
//! attached to every reader as `live`): the [`HistoryWriter`] publishes the requests in flight
//! there when a reader asks (`crate::ledger::InflightView`), and removes each in the commit of
//! its completion. Until then readers prefer the finished row, and a start after a crash closes
//! only the rows that never finished.
//!
//! A finished request's event goes to the event files (`crate::event_files`) before the
//! commit of its row, which holds where it is: the event's bytes never pass through the WAL.
//!
//! Checkpoints (copying the WAL back into the database file, with an fsync) do not run inside
//! the writers' commits, where they stalled every request waiting for its pending record: a
//! [`Checkpointer`] thread per file with its own connection runs passive checkpoints, which
//! never take the writer's lock, and a blocking one only when the WAL has grown past
//! [`WAL_RESTART_FRAMES`].

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::types::ToSql;
use rusqlite::{params, params_from_iter, CachedStatement, Connection};
use sluice_core::{RequestRecord, RequestState};
use uuid::Uuid;

use crate::batch_codec::Batches;
use crate::batches::{FORGET_CHANNEL_SQL, INSERT_BATCH_SQL, INSERT_KEY_SQL};
use crate::completion::Completion;
use crate::db::Backend;
use crate::event_files::{EventFiles, EventSync};
use crate::requests::{
    channel_exists_sql, delete_inflight_sql, finished_channels, recover_inflight_sql,
    upsert_requests_sql, FORGET_PURGED_SQL,
};

/// The in-flight table, created in the `live` file when the ledger is opened.
pub(crate) const INFLIGHT_SCHEMA: &str = "CREATE TABLE IF NOT EXISTS live.requests_inflight (
    id TEXT PRIMARY KEY,
    request_id TEXT NOT NULL,
    channel_id TEXT NOT NULL,
    snapshot_id TEXT NOT NULL,
    node_id TEXT NOT NULL,
    state TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    completed_at BIGINT,
    client_identity TEXT NOT NULL,
    source_auth_method_id TEXT,
    source_auth_type TEXT,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    query TEXT,
    response_status BIGINT,
    error TEXT,
    latency_us BIGINT,
    ttfb_us BIGINT,
    request_body_size BIGINT,
    response_body_size BIGINT
) WITHOUT ROWID";

/// How often the checkpointer runs. Each run syncs the event files and copies the WAL's new
/// pages, so rarer runs cost less per request (1.3–1.5 µs of CPU every 250 ms against
/// 2.0–2.4 every 50 ms, no further gain at 500 ms; docs/BENCHMARKS.md, tuning step 28), while
/// a power loss may lose the history committed since the last run. Builds before the event
/// files stalled the writer on larger checkpoints (a p99 of 27 ms every 200 ms, against 15).
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);
/// Requests the history writer encodes between two offers of its core. A commit of a few
/// hundred requests took a millisecond or two of CPU as rows; on a machine with as many busy threads as cores, a
/// proxy thread woken meanwhile would otherwise wait for the scheduler to end the batch's
/// slice (in ten alternating `wrk -c20` pairs the machine's idle time fell from 13–15% to 5–9%
/// and req/s rose 5%; every 4 rows made the p99 worse).
const ROWS_PER_YIELD: usize = 16;
/// WAL size past which the checkpointer also restarts the WAL, briefly waiting for the writer,
/// so the file cannot grow without bound under constant load.
const WAL_RESTART_BYTES: i64 = 64 << 20;

/// Heap the process's SQLite connections may use before their page caches recycle pages
/// rather than allocate more: the writer's 8 MiB, the eight readers' 1 MiB each, and 8 MiB
/// for everything else. The bundled SQLite is built with `SQLITE_ENABLE_MEMORY_MANAGEMENT`,
/// so all connections' caches share one pool, as large as all their `cache_size`s together
/// (with every attached file's default 2 MiB): readers' scans filled it, ~50 MiB after a
/// few dozen channel listings of a busy ledger; with this limit, ~15 MiB (docs/BENCHMARKS.md,
/// session 19). Shrinking the unused caches instead made each scan evict the pages it was
/// about to reread, and a listing three times slower.
const SOFT_HEAP_LIMIT: i64 = 24 << 20;

/// Opens `path` for writing with the ledger's pragmas.
fn open(path: &Path, busy_timeout: Duration) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(busy_timeout)?;
    // Process-wide; set here, where every SQLite ledger is opened.
    conn.pragma_update(None, "soft_heap_limit", SOFT_HEAP_LIMIT)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    // 8 MiB of page cache keeps the hot index pages of the request tables in memory.
    conn.pragma_update(None, "cache_size", -8192)?;
    conn.set_prepared_statement_cache_capacity(16);
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    Ok(conn)
}

/// The write connection to the ledger file, for finished requests, with the event files that
/// take their events.
pub(crate) struct HistoryWriter {
    conn: Connection,
    files: EventFiles,
    upsert: String,
    publish: String,
    unpublish: String,
    _checkpointer: Checkpointer,
    _live_checkpointer: Checkpointer,
}

impl HistoryWriter {
    /// Opens the ledger file `path`, with its in-flight file attached as `live`.
    pub(crate) fn open(path: &Path, busy_timeout: Duration) -> rusqlite::Result<Self> {
        let conn = open(path, busy_timeout)?;
        let live = crate::db::inflight_file(path);
        conn.execute(
            "ATTACH DATABASE ?1 AS live",
            params![live.display().to_string()],
        )?;
        let files = EventFiles::new(path);
        let sync = files.syncer();
        Ok(Self {
            conn,
            upsert: upsert_requests_sql(Backend::Sqlite, 1),
            publish: recover_inflight_sql(Backend::Sqlite, 1),
            unpublish: delete_inflight_sql(Backend::Sqlite, 1),
            _checkpointer: Checkpointer::start(path.to_path_buf(), busy_timeout, Some(sync))?,
            _live_checkpointer: Checkpointer::start(live, busy_timeout, None)?,
            files,
        })
    }

    /// Shows `records`, still in flight, to readers (in the in-flight file).
    pub(crate) fn publish(
        &mut self,
        node_id: &str,
        records: &[RequestRecord],
    ) -> rusqlite::Result<()> {
        let tx = self.conn.transaction()?;
        {
            let mut insert = tx.prepare_cached(&self.publish)?;
            for r in records {
                write_request(&mut insert, node_id, r, &[])?;
            }
        }
        tx.commit()
    }

    /// Writes `rec` finished as `error` with `error` (its completion could not be written),
    /// and removes it from the in-flight file.
    pub(crate) fn write_failed(
        &mut self,
        node_id: &str,
        rec: &RequestRecord,
        error: &str,
        now: i64,
    ) -> rusqlite::Result<()> {
        let mut failed = rec.clone();
        failed.state = RequestState::Error;
        failed.error = Some(error.to_string());
        failed.completed_at = Some(now);
        let tx = self.conn.transaction()?;
        write_request(&mut tx.prepare_cached(&self.upsert)?, node_id, &failed, &[])?;
        delete_ids(&mut tx.prepare_cached(&self.unpublish)?, &[rec.id])?;
        tx.commit()
    }

    /// Writes `completions` in one transaction, their events first to the event files,
    /// removing the requests among them that were published (`unpublish`) from the in-flight
    /// file: all or nothing (a frame whose row did not commit is never read).
    pub(crate) fn write(
        &mut self,
        node_id: &str,
        completions: &[Completion],
        unpublish: &[Uuid],
    ) -> rusqlite::Result<()> {
        let spots = self
            .files
            .append(
                completions
                    .iter()
                    .filter_map(|c| Some((c.record.channel_id, c.frame()?))),
            )
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        let mut spots = spots.into_iter();
        let mut batches = Batches::default();
        for (i, c) in completions.iter().enumerate() {
            if i % ROWS_PER_YIELD == ROWS_PER_YIELD - 1 {
                std::thread::yield_now();
            }
            let spot = c.frame().map(|_| spots.next().expect("one spot per event"));
            batches.push(&c.record, spot);
        }
        let tx = self.conn.transaction()?;
        {
            let mut insert = tx.prepare_cached(INSERT_BATCH_SQL)?;
            let mut key = tx.prepare_cached(INSERT_KEY_SQL)?;
            for b in batches.into_vec() {
                let [pending, success, failed, timeout, error] = b.counts;
                insert.execute(params![
                    &*b.channel_id
                        .hyphenated()
                        .encode_lower(&mut Uuid::encode_buffer()),
                    node_id,
                    b.first_started,
                    b.last_started,
                    b.id_bucket,
                    &b.min_id.as_bytes()[..],
                    &b.max_id.as_bytes()[..],
                    b.len(),
                    pending,
                    success,
                    failed,
                    timeout,
                    error,
                    b.heads,
                    b.records,
                ])?;
                let batch = tx.last_insert_rowid();
                for request_id in b.keys {
                    key.execute(params![request_id, batch])?;
                }
            }
            // After the writes, which hold the file's write lock: a purge either committed
            // before them (the channel is gone) or waits until this commit.
            let mut exists = tx.prepare_cached(channel_exists_sql(Backend::Sqlite))?;
            for channel in finished_channels(completions.iter().map(|c| &c.record)) {
                let id = channel.to_string();
                if !exists.exists(params![id])? {
                    for sql in FORGET_PURGED_SQL.iter().chain(&FORGET_CHANNEL_SQL) {
                        tx.execute(sql, params![id])?;
                    }
                    if let Err(e) = self.files.forget(channel) {
                        tracing::warn!(%channel, error = %e, "could not remove a purged channel's events");
                    }
                }
            }
            // The in-flight file last: every writer locks the ledger file before it, so two
            // transactions never hold one each while waiting for the other.
            delete_ids(&mut tx.prepare_cached(&self.unpublish)?, unpublish)?;
        }
        tx.commit()
    }
}

/// Runs `stmt` (a delete by id) for each of `ids`.
fn delete_ids(stmt: &mut CachedStatement<'_>, ids: &[Uuid]) -> rusqlite::Result<()> {
    let mut buf = Uuid::encode_buffer();
    for id in ids {
        stmt.execute(params![&*id.hyphenated().encode_lower(&mut buf)])?;
    }
    Ok(())
}

/// Runs `stmt` (the in-flight insert or an upsert) for one request row, followed by `extra`.
fn write_request(
    stmt: &mut CachedStatement<'_>,
    node_id: &str,
    r: &RequestRecord,
    extra: &[&dyn ToSql],
) -> rusqlite::Result<()> {
    // The ids as text, encoded on the stack rather than in three allocations per row.
    let (mut id, mut channel, mut snapshot) = (
        Uuid::encode_buffer(),
        Uuid::encode_buffer(),
        Uuid::encode_buffer(),
    );
    let source_auth_method_id = r.source_auth_method_id.map(|u| u.to_string());
    let row = params![
        &*r.id.hyphenated().encode_lower(&mut id),
        r.request_id,
        &*r.channel_id.hyphenated().encode_lower(&mut channel),
        &*r.snapshot_id.hyphenated().encode_lower(&mut snapshot),
        node_id,
        r.state.as_str(),
        r.started_at,
        r.completed_at,
        r.client_identity,
        source_auth_method_id,
        r.source_auth_type,
        r.method,
        r.path,
        r.query,
        r.response_status.map(i64::from),
        r.error,
        r.latency_us,
        r.ttfb_us,
        r.request_body_size,
        r.response_body_size,
    ];
    stmt.execute(params_from_iter(row.iter().chain(extra)))?;
    Ok(())
}

/// The background checkpoint thread; stops (after a final truncating checkpoint) when dropped.
struct Checkpointer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts checkpointing `path`, first syncing the event files `events` fills, if any.
    fn start(
        path: PathBuf,
        busy_timeout: Duration,
        events: Option<EventSync>,
    ) -> rusqlite::Result<Self> {
        let conn = Connection::open(&path)?;
        conn.busy_timeout(busy_timeout)?;
        // A WAL frame holds one page: the ledger file's are 8 KiB, the in-flight file's 4 KiB.
        let page_size: i64 = conn.query_row("PRAGMA page_size", [], |row| row.get(0))?;
        let restart_frames = WAL_RESTART_BYTES / page_size.max(512);
        // With event files, a second connection holds a read transaction, begun before the
        // files are synced, while the passive checkpoint runs: the checkpoint copies no commit
        // newer than that snapshot, so every row it copies finds its event on the disk.
        let pin = match events {
            Some(sync) => Some((Connection::open(&path)?, sync)),
            None => None,
        };
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("sluice-checkpoint".into())
            .spawn(move || {
                while !flag.load(Ordering::Acquire) {
                    std::thread::park_timeout(CHECKPOINT_EVERY);
                    match pinned_checkpoint(&conn, pin.as_ref()) {
                        Ok(frames) if frames > restart_frames => {
                            // Rare (a WAL of 64 MiB): a commit of its last moments may reach
                            // the ledger file before its events are synced.
                            let events = pin.as_ref().map(|(_, s)| s);
                            if let Err(e) = synced_checkpoint(&conn, events, "RESTART") {
                                tracing::warn!(error = %e, "WAL restart checkpoint failed");
                            }
                        }
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed"),
                    }
                }
                // The writer has stopped: nothing is committed after this sync.
                let events = pin.as_ref().map(|(_, s)| s);
                if let Err(e) = synced_checkpoint(&conn, events, "TRUNCATE") {
                    tracing::warn!(error = %e, "final WAL checkpoint failed");
                }
            })
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }
}

/// A passive checkpoint; with `pin`, of the commits made before the event files were synced.
/// Returns the WAL's size in frames.
fn pinned_checkpoint(
    conn: &Connection,
    pin: Option<&(Connection, EventSync)>,
) -> Result<i64, String> {
    let Some((reader, events)) = pin else {
        return synced_checkpoint(conn, None, "PASSIVE");
    };
    reader.execute_batch("BEGIN").map_err(|e| e.to_string())?;
    let res = reader
        .query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(()))
        .map_err(|e| e.to_string())
        .and_then(|()| synced_checkpoint(conn, Some(events), "PASSIVE"));
    let ended = reader.execute_batch("COMMIT").map_err(|e| e.to_string());
    let frames = res?;
    ended.map(|()| frames)
}

/// Syncs the event files `events` fills, if any, then checkpoints in `mode`; returns the WAL's
/// size in frames.
fn synced_checkpoint(
    conn: &Connection,
    events: Option<&EventSync>,
    mode: &str,
) -> Result<i64, String> {
    if let Some(events) = events {
        events
            .sync()
            .map_err(|e| format!("syncing the event files: {e}"))?;
    }
    checkpoint(conn, mode).map_err(|e| e.to_string())
}

/// Runs `PRAGMA wal_checkpoint(mode)`; returns the WAL's size in frames.
fn checkpoint(conn: &Connection, mode: &str) -> rusqlite::Result<i64> {
    conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |row| {
        row.get::<_, i64>(1)
    })
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}
