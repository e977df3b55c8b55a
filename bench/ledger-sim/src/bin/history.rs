//! Simulates the SQLite history thread of today's ledger (steps 13–19: pending records in the
//! journal, completions only in SQLite) and prints its CPU time per request, split into the
//! writer's commits and the checkpoints, with the bytes written per request.
//!
//!   cargo run --release --manifest-path bench/ledger-sim/Cargo.toml --bin history -- current
//!
//! Each transaction writes 280 completions (the batch size seen at ~23k req/s), each a request
//! row (upsert, as `sqlite_writer.rs`) and its event with 1 KiB and 256 B previews; a PASSIVE
//! checkpoint from a second connection follows every 4th commit (~50 ms of that traffic). The
//! schema is migration 0001's `requests` and `events` with 8 KiB pages. Designs:
//! - `current`: as shipped;
//! - `nopreview`: empty previews (what the bytes cost);
//! - `noindex`: without the two secondary indexes of `requests` (what they cost);
//! - `worowid`: `requests` as a WITHOUT ROWID table (one B-tree fewer);
//! - `persist`: a rollback journal (`journal_mode = PERSIST`) instead of the WAL, so each page
//!   is written once; no checkpoints;
//! - `segments`: the event's bytes (headers, digests, previews) appended to a file of their
//!   own with one `write` per batch, before the commit, and only the request row in SQLite: a
//!   sketch of a cheaper history store;
//! - `multi`: with `segments`, the request rows 16 at a time in multi-row upserts;
//! - `batchblob`: the same bytes as one blob row per batch in SQLite (`event_batches`), each
//!   request row pointing at its slice (batch, offset, length);
//! - `segments_batchrows`: with `segments`, the batch's request rows encoded into one blob row
//!   (`request_batches`: channel, first and last start, the rows) instead of a row each: a
//!   sketch of a history store with one SQLite row per batch (listings read a channel's
//!   batches by start; a lookup by id would use the UUIDv7's time);
//! - `segments_batchrows_idindex`: the same, plus one narrow row per request (its 16-byte id
//!   and its batch, WITHOUT ROWID) for lookups by id.
//!
//! The database goes to /tmp/ledger-sim-history-<design>.db.

use rusqlite::types::ToSql;
use rusqlite::{params, params_from_iter, Connection};
use uuid::Uuid;

const REQ: &str = "request_id TEXT NOT NULL, channel_id TEXT NOT NULL, snapshot_id TEXT NOT NULL, node_id TEXT NOT NULL, state TEXT NOT NULL, started_at BIGINT NOT NULL, completed_at BIGINT, client_identity TEXT NOT NULL, source_auth_method_id TEXT, source_auth_type TEXT, method TEXT NOT NULL, path TEXT NOT NULL, query TEXT, response_status BIGINT, error TEXT, latency_us BIGINT, ttfb_us BIGINT, request_body_size BIGINT, response_body_size BIGINT";
const EV: &str = "request_id TEXT PRIMARY KEY, request_headers TEXT NOT NULL, response_headers TEXT NOT NULL, request_body_sha256 TEXT NOT NULL, request_body_size BIGINT NOT NULL, request_body_preview BLOB NOT NULL, request_body_truncated INTEGER NOT NULL, response_body_sha256 TEXT NOT NULL, response_body_size BIGINT NOT NULL, response_body_preview BLOB NOT NULL, response_body_truncated INTEGER NOT NULL, response_status BIGINT, latency_us BIGINT, ttfb_us BIGINT, connect_us BIGINT, send_us BIGINT, queue_us BIGINT, reused_connection INTEGER, error TEXT";
const COLS: &str = "id, request_id, channel_id, snapshot_id, node_id, state, started_at, completed_at, client_identity, source_auth_method_id, source_auth_type, method, path, query, response_status, error, latency_us, ttfb_us, request_body_size, response_body_size";
const BATCH: usize = 280;
const CHECKPOINT_EVERY_COMMITS: usize = 4;
/// Rows per statement in the `multi` design.
const MULTI: usize = 16;

/// This process's CPU time (user + system) in seconds.
fn cpu() -> f64 {
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}

/// Bytes this process has passed to write calls.
fn wchar() -> u64 {
    let s = std::fs::read_to_string("/proc/self/io").unwrap();
    let line = s.lines().find(|l| l.starts_with("wchar:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn main() {
    let design = std::env::args()
        .nth(1)
        .expect("design: current, nopreview, noindex, worowid, persist, segments, multi, batchblob, segments_batchrows[_idindex]");
    let n: usize = std::env::args()
        .nth(2)
        .map_or(200_000, |s| s.parse().unwrap());
    let wal = !design.contains("persist");
    let path = format!("/tmp/ledger-sim-history-{design}.db");
    let segments = design.contains("segments");
    let batchblob = design.contains("batchblob");
    let mut segment_file =
        segments.then(|| std::fs::File::create(format!("{path}-events")).unwrap());
    let mut staged: Vec<u8> = Vec::with_capacity(BATCH * 2048);
    for s in ["", "-wal", "-shm", "-journal"] {
        let _ = std::fs::remove_file(format!("{path}{s}"));
    }
    let c = Connection::open(&path).unwrap();
    c.pragma_update(None, "page_size", 8192).unwrap();
    c.pragma_update(None, "journal_mode", if wal { "WAL" } else { "PERSIST" })
        .unwrap();
    c.pragma_update(None, "synchronous", "NORMAL").unwrap();
    c.pragma_update(None, "cache_size", -8192).unwrap();
    c.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
    let rowid = if design.contains("worowid") {
        " WITHOUT ROWID"
    } else {
        ""
    };
    let order = if design.contains("asc") { "" } else { " DESC" };
    let indexes = if design.contains("noindex") {
        String::new()
    } else if design.contains("noreqidx") {
        format!("CREATE INDEX requests_channel_started ON requests (channel_id, started_at{order}, id{order});")
    } else {
        format!("CREATE INDEX requests_channel_started ON requests (channel_id, started_at{order}, id{order});
         CREATE INDEX requests_request_id ON requests (request_id);")
    };
    let pointer = if batchblob {
        ", event_batch INTEGER, event_offset INTEGER, event_len INTEGER"
    } else {
        ""
    };
    c.execute_batch(&format!(
        "CREATE TABLE requests (id TEXT PRIMARY KEY, {REQ}{pointer}){rowid}; {indexes} CREATE TABLE events ({EV});
         CREATE TABLE event_batches (id INTEGER PRIMARY KEY, channel_id TEXT NOT NULL, data BLOB NOT NULL);
         CREATE TABLE request_batches (id INTEGER PRIMARY KEY, channel_id TEXT NOT NULL, first_started BIGINT NOT NULL, last_started BIGINT NOT NULL, rows BLOB NOT NULL);
         CREATE INDEX request_batches_channel ON request_batches (channel_id, first_started);
         CREATE TABLE request_ids (id BLOB PRIMARY KEY, batch INTEGER NOT NULL) WITHOUT ROWID;"
    ))
    .unwrap();
    let checkpointer = Connection::open(&path).unwrap();

    let (channel, snapshot) = (Uuid::now_v7().to_string(), Uuid::now_v7().to_string());
    let headers = r#"[["host","127.0.0.1:4400"],["user-agent","wrk"],["content-length","1024"],["content-type","application/octet-stream"],["x-request-id","019ab0c0c0c0c0c0c0c0c0c0c0c0c0c0-sluice"],["x-forwarded-for","127.0.0.1"]]"#;
    let response_headers = r#"[["content-type","application/json"],["content-length","256"],["date","Tue, 24 Nov 2026 06:00:00 GMT"]]"#;
    let previews = !design.contains("nopreview");
    let request_preview: Vec<u8> = (0..if previews { 1024 } else { 0 })
        .map(|i| (i * 7 % 251) as u8)
        .collect();
    let response_preview: Vec<u8> = (0..if previews { 256 } else { 0 })
        .map(|i| (i * 13 % 251) as u8)
        .collect();
    let sha = "a".repeat(64);
    let upsert = format!(
        "INSERT INTO requests ({COLS}) VALUES (?1,?2,?3,?4,'node','success',?5,?6,'127.0.0.1:5555',NULL,NULL,'POST','/x',NULL,200,NULL,900,800,1024,256) \
         ON CONFLICT (id) DO UPDATE SET state = excluded.state, completed_at = excluded.completed_at, \
         response_status = excluded.response_status, error = excluded.error, latency_us = excluded.latency_us, \
         ttfb_us = excluded.ttfb_us, request_body_size = excluded.request_body_size, response_body_size = excluded.response_body_size"
    );
    let upsert_pointed = upsert
        .replacen(
            ") VALUES (",
            ", event_batch, event_offset, event_len) VALUES (",
            1,
        )
        .replacen("256)", "256,?7,?8,?9)", 1);
    let multi = design.contains("multi");
    let batchrows = design.contains("batchrows");
    let idindex = design.contains("idindex");
    let tuple = "(?,?,?,?,'node','success',?,?,'127.0.0.1:5555',NULL,NULL,'POST','/x',NULL,200,NULL,900,800,1024,256)";
    let multi_sql = format!(
        "INSERT INTO requests ({COLS}) VALUES {} ON CONFLICT{}",
        vec![tuple; MULTI].join(","),
        upsert.split_once(" ON CONFLICT").unwrap().1
    );
    let insert_event = "INSERT INTO events VALUES (?1,?2,?3,?4,1024,?5,0,?4,256,?6,0,200,900,800,10,5,0,1,NULL) ON CONFLICT (request_id) DO NOTHING";

    // One request row, the `extra` values after its own.
    // The request id, start and completion of the `done`-th row.
    let row_values = |done: usize| {
        let started = 1_700_000_000_000_000i64 + done as i64 * 40;
        (
            format!("{}-sluice", Uuid::now_v7().simple()),
            started,
            started + 900,
        )
    };
    let insert_row =
        |stmt: &mut rusqlite::CachedStatement<'_>, id: &str, done: usize, extra: &[i64]| {
            let (request_id, started, completed) = row_values(done);
            let row: [&dyn ToSql; 6] =
                [&id, &request_id, &channel, &snapshot, &started, &completed];
            let extra = extra.iter().map(|v| v as &dyn ToSql);
            stmt.execute(params_from_iter(row.iter().copied().chain(extra)))
                .unwrap();
        };
    // The event's bytes as the file designs keep them.
    let stage = |staged: &mut Vec<u8>, id: &str| {
        for part in [
            headers.as_bytes(),
            response_headers.as_bytes(),
            sha.as_bytes(),
            sha.as_bytes(),
            &request_preview,
            &response_preview,
            id.as_bytes(),
        ] {
            staged.extend_from_slice(part);
        }
    };
    let (w0, c0) = (wchar(), cpu());
    let mut checkpoint_cpu = 0.0;
    let (mut done, mut commits) = (0usize, 0usize);
    while done < n {
        let tx = c.unchecked_transaction().unwrap();
        if batchblob {
            // Encode the batch first: the blob's rowid goes into every request row.
            let mut slices = Vec::with_capacity(BATCH);
            let mut ids = Vec::with_capacity(BATCH);
            for _ in 0..BATCH {
                let id = Uuid::now_v7().to_string();
                let start = staged.len();
                stage(&mut staged, &id);
                slices.push((start as i64, (staged.len() - start) as i64));
                ids.push(id);
            }
            tx.execute(
                "INSERT INTO event_batches (channel_id, data) VALUES (?1, ?2)",
                params![channel, staged],
            )
            .unwrap();
            let batch = tx.last_insert_rowid();
            staged.clear();
            let mut request = tx.prepare_cached(&upsert_pointed).unwrap();
            for (id, (offset, len)) in ids.iter().zip(slices) {
                insert_row(&mut request, id, done, &[batch, offset, len]);
                done += 1;
            }
        } else if batchrows {
            // The rows' values, length-prefixed, in one buffer: about the bytes of the rows.
            let mut rows: Vec<u8> = Vec::with_capacity(BATCH * 320);
            let mut ids = Vec::with_capacity(BATCH);
            let (mut first, mut last) = (None, 0);
            for i in 0..BATCH {
                let id = Uuid::now_v7();
                let id_text = id.to_string();
                stage(&mut staged, &id_text);
                let (request_id, started, completed) = row_values(done + i);
                first.get_or_insert(started);
                last = started;
                for text in [
                    id_text.as_str(),
                    &request_id,
                    &channel,
                    &snapshot,
                    "node",
                    "success",
                    "127.0.0.1:5555",
                    "POST",
                    "/x",
                ] {
                    rows.extend_from_slice(&(text.len() as u32).to_le_bytes());
                    rows.extend_from_slice(text.as_bytes());
                }
                for v in [started, completed, 200, 900, 800, 1024, 256] {
                    rows.extend_from_slice(&v.to_le_bytes());
                }
                ids.push(id);
            }
            tx.execute(
                "INSERT INTO request_batches (channel_id, first_started, last_started, rows) VALUES (?1, ?2, ?3, ?4)",
                params![channel, first.expect("a batch has rows"), last, rows],
            )
            .unwrap();
            if idindex {
                let batch = tx.last_insert_rowid();
                let mut index = tx
                    .prepare_cached("INSERT INTO request_ids (id, batch) VALUES (?1, ?2)")
                    .unwrap();
                for id in &ids {
                    index.execute(params![&id.as_bytes()[..], batch]).unwrap();
                }
            }
            done += BATCH;
        } else if multi {
            // Rows MULTI at a time in one multi-row upsert, the rest one by one.
            let mut many = tx.prepare_cached(&multi_sql).unwrap();
            let mut request = tx.prepare_cached(&upsert).unwrap();
            let mut values: Vec<rusqlite::types::Value> = Vec::with_capacity(MULTI * 6);
            for i in 0..BATCH {
                let id = Uuid::now_v7().to_string();
                stage(&mut staged, &id);
                if BATCH - i <= BATCH % MULTI {
                    insert_row(&mut request, &id, done, &[]);
                    done += 1;
                    continue;
                }
                let (request_id, started, completed) = row_values(done);
                values.extend([
                    id.into(),
                    request_id.into(),
                    channel.clone().into(),
                    snapshot.clone().into(),
                    started.into(),
                    completed.into(),
                ]);
                done += 1;
                if values.len() == MULTI * 6 {
                    many.execute(params_from_iter(values.drain(..))).unwrap();
                }
            }
        } else {
            let mut request = tx.prepare_cached(&upsert).unwrap();
            let mut event = tx.prepare_cached(insert_event).unwrap();
            for _ in 0..BATCH {
                let id = Uuid::now_v7().to_string();
                insert_row(&mut request, &id, done, &[]);
                if segments {
                    stage(&mut staged, &id);
                    done += 1;
                    continue;
                }
                event
                    .execute(params![
                        id,
                        headers,
                        response_headers,
                        sha,
                        request_preview,
                        response_preview
                    ])
                    .unwrap();
                done += 1;
            }
        }
        if let Some(file) = &mut segment_file {
            std::io::Write::write_all(file, &staged).unwrap();
            staged.clear();
        }
        tx.commit().unwrap();
        commits += 1;
        if wal && commits % CHECKPOINT_EVERY_COMMITS == 0 {
            let t = cpu();
            checkpointer
                .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                .unwrap();
            checkpoint_cpu += cpu() - t;
        }
    }
    let total = cpu() - c0;
    println!(
        "{design:10} writer {:5.2} µs/req  checkpoint {:5.2} µs/req  written {:5} B/req  file {:5} B/req",
        (total - checkpoint_cpu) * 1e6 / n as f64,
        checkpoint_cpu * 1e6 / n as f64,
        (wchar() - w0) / n as u64,
        std::fs::metadata(&path).unwrap().len() / n as u64,
    );
}
