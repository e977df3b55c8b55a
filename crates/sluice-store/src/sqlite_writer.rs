//! The ledger's dedicated SQLite write connection.
//!
//! sqlx drives SQLite from a worker thread and hands every statement across threads; on a busy
//! machine those handoffs, not SQLite, dominated the commit time of the group-commit writer.
//! This connection (rusqlite, on the same bundled SQLite) runs a whole batch with cached
//! prepared statements in one blocking call: one handoff per batch.
//!
//! The requests in flight are in the journal (`crate::journal`), which makes each pending
//! record and each completion durable; the [`HistoryWriter`] writes finished requests as rows
//! of `requests` (`crate::request_row`) with the roll-ups they add (`crate::rollup`), in one
//! transaction per batch.
//!
//! Checkpoints (copying the WAL back into the database file, with an fsync) do not run inside
//! the writer's commits, where they stalled every request waiting for its pending record: a
//! [`Checkpointer`] thread with its own connection runs passive checkpoints, which never take
//! the writer's lock, and a blocking one only when the WAL has grown past
//! [`WAL_RESTART_BYTES`].

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::{params, params_from_iter, Connection, Transaction};
use sluice_core::{EventRecord, RequestRecord, RequestState};

use crate::db::Backend;
use crate::request_row::{self, Ids};
use crate::requests::{
    channel_exists_sql, finished_channels, insert_requests_sql, FORGET_PURGED_SQL,
};
use crate::rollup::Rollup;

/// How often the checkpointer runs: rarer runs cost less per request (1.3–1.5 µs of CPU every
/// 250 ms against 2.0–2.4 every 50 ms, no further gain at 500 ms; docs/tuning-log.md), while a
/// power loss may lose the history committed since the last run.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);
/// Requests the history writer writes between two offers of its core: on a machine with as
/// many busy threads as cores, a proxy thread woken meanwhile would otherwise wait for the
/// scheduler to end the batch's slice (docs/tuning-log.md).
const ROWS_PER_YIELD: usize = 16;
/// Longest a checkpoint waits for a lock.
const CHECKPOINT_BUSY: Duration = Duration::from_millis(20);
/// WAL size past which the checkpointer also restarts the WAL, briefly waiting for the writer,
/// so the file cannot grow without bound under constant load.
const WAL_RESTART_BYTES: i64 = 64 << 20;

/// Heap the process's SQLite connections may use before their page caches recycle pages
/// rather than allocate more: the writer's 8 MiB, the eight readers' 1 MiB each, and 8 MiB
/// for everything else. The bundled SQLite is built with `SQLITE_ENABLE_MEMORY_MANAGEMENT`,
/// so all connections' caches share one pool, which readers' scans otherwise grow to the sum
/// of every `cache_size` (docs/tuning-log.md).
const SOFT_HEAP_LIMIT: i64 = 24 << 20;

/// Opens `path` for writing with the ledger's pragmas.
fn open(path: &Path, busy_timeout: Duration) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(busy_timeout)?;
    // Process-wide; set here, where every SQLite ledger is opened.
    conn.pragma_update(None, "soft_heap_limit", SOFT_HEAP_LIMIT)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    // 8 MiB of page cache keeps the hot index pages of the request table in memory.
    conn.pragma_update(None, "cache_size", -8192)?;
    conn.set_prepared_statement_cache_capacity(16);
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    Ok(conn)
}

/// The write connection to the ledger file, for finished requests.
pub(crate) struct HistoryWriter {
    conn: Connection,
    insert: String,
    _checkpointer: Checkpointer,
}

impl HistoryWriter {
    /// Opens the ledger file `path`.
    pub(crate) fn open(path: &Path, busy_timeout: Duration) -> rusqlite::Result<Self> {
        Ok(Self {
            conn: open(path, busy_timeout)?,
            insert: insert_requests_sql(Backend::Sqlite, 1, false),
            _checkpointer: Checkpointer::start(path.to_path_buf(), busy_timeout)?,
        })
    }

    /// Writes `rec` finished as `error` with `error` (its completion could not be written).
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
        self.write(node_id, &[(failed, None)])
    }

    /// Writes `completions` and what they add to the roll-ups in one transaction. A request
    /// already written (a completion replayed from the journal after its row committed) is
    /// left as it is and not counted again.
    pub(crate) fn write(
        &mut self,
        node_id: &str,
        completions: &[(RequestRecord, Option<EventRecord>)],
    ) -> rusqlite::Result<()> {
        let tx = self.conn.transaction()?;
        let mut rollup = Rollup::default();
        {
            let mut insert = tx.prepare_cached(&self.insert)?;
            for (i, (r, e)) in completions.iter().enumerate() {
                if i % ROWS_PER_YIELD == ROWS_PER_YIELD - 1 {
                    std::thread::yield_now();
                }
                let ids = Ids::of(r);
                let values = request_row::values(&ids, node_id, r, e.as_ref());
                if insert.execute(params_from_iter(values.iter()))? > 0 {
                    rollup.add(r);
                }
            }
        }
        for (sql, values) in rollup.upserts() {
            tx.prepare_cached(sql)?
                .execute(params_from_iter(values.iter()))?;
        }
        forget_purged(&tx, completions)?;
        tx.commit()
    }
}

/// Removes what this transaction wrote for channels purged while those requests were in
/// flight. It runs after the writes, which hold the file's write lock: a purge either
/// committed before them (the channel is gone) or waits until this commit.
fn forget_purged(
    tx: &Transaction<'_>,
    completions: &[(RequestRecord, Option<EventRecord>)],
) -> rusqlite::Result<()> {
    let mut exists = tx.prepare_cached(channel_exists_sql(Backend::Sqlite))?;
    for channel in finished_channels(completions.iter().map(|(r, _)| r)) {
        let id = channel.to_string();
        if !exists.exists(params![id])? {
            for sql in FORGET_PURGED_SQL {
                tx.execute(sql, params![id])?;
            }
        }
    }
    Ok(())
}

/// The background checkpoint thread; stops (after a final truncating checkpoint) when dropped.
struct Checkpointer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts checkpointing `path`.
    fn start(path: PathBuf, busy_timeout: Duration) -> rusqlite::Result<Self> {
        let conn = Connection::open(&path)?;
        // A RESTART checkpoint holds the writer's lock while it waits for readers (a long
        // backup's `VACUUM INTO`): it waits briefly and tries again at the next run instead of
        // stalling every commit for the busy timeout.
        conn.busy_timeout(CHECKPOINT_BUSY.min(busy_timeout))?;
        // A WAL frame holds one page.
        let page_size: i64 = conn.query_row("PRAGMA page_size", [], |row| row.get(0))?;
        let restart_frames = WAL_RESTART_BYTES / page_size.max(512);
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("sluice-checkpoint".into())
            .spawn(move || {
                while !flag.load(Ordering::Acquire) {
                    std::thread::park_timeout(CHECKPOINT_EVERY);
                    match checkpoint(&conn, "PASSIVE") {
                        Ok(frames) if frames > restart_frames => {
                            if let Err(e) = checkpoint(&conn, "RESTART") {
                                tracing::warn!(error = %e, "WAL restart checkpoint failed");
                            }
                        }
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed"),
                    }
                }
                if let Err(e) = checkpoint(&conn, "TRUNCATE") {
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
