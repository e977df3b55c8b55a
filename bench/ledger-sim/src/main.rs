//! Simulates the ledger's SQLite write pattern for one design and prints CPU time, bytes and
//! write calls per request (from getrusage and /proc/self/io, which no other process disturbs).
//!
//! Each commit carries 5 new pending records, as the group-commit writer does at ~12k req/s
//! with 20 connections; completions (request row + event with 1 KiB and 256 B previews) follow
//! 120 requests later in one burst (`lag0`: in the very next commit); a PASSIVE checkpoint runs
//! every 120 commits. Designs (combinable words in the name):
//! - `A`: the layout before migration 0004 (pending rows in `requests`, completed in place);
//! - `lag0`: completions ride with the next commit;
//! - `inflight`: pending rows in a small `requests_inflight` table, moved on completion;
//! - `worowid`: `requests` as a WITHOUT ROWID table;
//! - `merged`: the event's columns on the request row instead of an `events` table;
//! - `ps<N>`: database page size N bytes (default 4096).
//!
//! The database goes to /tmp/ledger-sim-<design>.db.

use rusqlite::{params, Connection};
use uuid::Uuid;

const REQ: &str = "id TEXT PRIMARY KEY, request_id TEXT NOT NULL, channel_id TEXT NOT NULL, snapshot_id TEXT NOT NULL, node_id TEXT NOT NULL, state TEXT NOT NULL, started_at BIGINT NOT NULL, completed_at BIGINT, client_identity TEXT NOT NULL, source_auth_method_id TEXT, source_auth_type TEXT, method TEXT NOT NULL, path TEXT NOT NULL, query TEXT, response_status BIGINT, error TEXT, latency_us BIGINT, ttfb_us BIGINT, request_body_size BIGINT, response_body_size BIGINT";
const EV: &str = "request_id TEXT PRIMARY KEY, request_headers TEXT NOT NULL, response_headers TEXT NOT NULL, request_body_sha256 TEXT NOT NULL, request_body_size BIGINT NOT NULL, request_body_preview BLOB NOT NULL, request_body_truncated INTEGER NOT NULL, response_body_sha256 TEXT NOT NULL, response_body_size BIGINT NOT NULL, response_body_preview BLOB NOT NULL, response_body_truncated INTEGER NOT NULL, response_status BIGINT, latency_us BIGINT, ttfb_us BIGINT, connect_us BIGINT, send_us BIGINT, queue_us BIGINT, reused_connection INTEGER, error TEXT";
const COLS: &str = "id, request_id, channel_id, snapshot_id, node_id, state, started_at, completed_at, client_identity, source_auth_method_id, source_auth_type, method, path, query, response_status, error, latency_us, ttfb_us, request_body_size, response_body_size";

struct R {
    id: String,
    rid: String,
    started: i64,
}

fn io() -> (u64, u64) {
    let s = std::fs::read_to_string("/proc/self/io").unwrap();
    let g = |k: &str| {
        s.lines()
            .find(|l| l.starts_with(k))
            .unwrap()
            .split_whitespace()
            .nth(1)
            .unwrap()
            .parse::<u64>()
            .unwrap()
    };
    (g("wchar:"), g("syscw:"))
}
fn cpu() -> f64 {
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    (u.ru_utime.tv_sec as f64 + u.ru_utime.tv_usec as f64 / 1e6)
        + (u.ru_stime.tv_sec as f64 + u.ru_stime.tv_usec as f64 / 1e6)
}

fn main() {
    let design = std::env::args().nth(1).unwrap();
    let n: usize = std::env::args()
        .nth(2)
        .map(|s| s.parse().unwrap())
        .unwrap_or(30000);
    let k = 5usize; // pendings per commit
    let lag: usize = if design.contains("lag0") { 0 } else { 120 }; // completions delayed by this many requests
    let inflight = design.contains("inflight");
    let worowid = design.contains("worowid");
    let merged = design.contains("merged");
    let path = format!("/tmp/ledger-sim-{design}.db");
    for s in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{path}{s}"));
    }
    let c = Connection::open(&path).unwrap();
    if let Some(ps) = design.split('_').find_map(|w| w.strip_prefix("ps")) {
        c.pragma_update(None, "page_size", ps.parse::<i64>().unwrap())
            .unwrap();
    }
    c.pragma_update(None, "journal_mode", "WAL").unwrap();
    c.pragma_update(None, "synchronous", "NORMAL").unwrap();
    c.pragma_update(None, "cache_size", -8192).unwrap();
    c.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
    let ev_cols = if merged {
        ", request_headers TEXT, response_headers TEXT, request_body_sha256 TEXT, request_body_preview BLOB, request_body_truncated INTEGER, response_body_sha256 TEXT, response_body_preview BLOB, response_body_truncated INTEGER, connect_us BIGINT, send_us BIGINT, queue_us BIGINT, reused_connection INTEGER".to_string()
    } else {
        String::new()
    };
    let wr = if worowid { " WITHOUT ROWID" } else { "" };
    c.execute_batch(&format!(
        "CREATE TABLE requests ({REQ}{ev_cols}){wr};
        CREATE INDEX requests_channel_started ON requests (channel_id, started_at DESC, id DESC);
        CREATE INDEX requests_request_id ON requests (request_id);
        CREATE INDEX requests_pending ON requests (node_id) WHERE state = 'pending';
        CREATE TABLE events ({EV});
        CREATE TABLE inflight ({REQ}) WITHOUT ROWID;"
    ))
    .unwrap();
    let ch = Uuid::now_v7().to_string();
    let snap = Uuid::now_v7().to_string();
    let hdrs = r#"[["host","127.0.0.1:4400"],["user-agent","wrk"],["content-length","1024"],["content-type","application/octet-stream"],["x-request-id","019ab0c0c0c0c0c0c0c0c0c0c0c0c0c0-sluice"],["x-forwarded-for","127.0.0.1"]]"#;
    let rhdrs = r#"[["content-type","application/json"],["content-length","256"],["date","Tue, 24 Nov 2026 06:00:00 GMT"]]"#;
    let preq: Vec<u8> = (0..1024).map(|i| (i * 7 % 251) as u8).collect();
    let pres: Vec<u8> = (0..256).map(|i| (i * 13 % 251) as u8).collect();
    let sha = "a".repeat(64);
    let pend_sql = format!("INSERT INTO {} ({COLS}) VALUES (?1,?2,?3,?4,'node',?5,?6,NULL,'127.0.0.1',NULL,NULL,'POST','/x',NULL,NULL,NULL,NULL,NULL,NULL,NULL)", if inflight { "inflight" } else { "requests" });
    let comp_sql = format!("INSERT INTO requests ({COLS}) VALUES (?1,?2,?3,?4,'node','success',?5,?6,'127.0.0.1',NULL,NULL,'POST','/x',NULL,200,NULL,900,800,1024,256) ON CONFLICT (id) DO UPDATE SET state=excluded.state, completed_at=excluded.completed_at, response_status=excluded.response_status, latency_us=excluded.latency_us, ttfb_us=excluded.ttfb_us, request_body_size=excluded.request_body_size, response_body_size=excluded.response_body_size");
    let merged_sql = "UPDATE requests SET state='success', completed_at=?2, response_status=200, latency_us=900, ttfb_us=800, request_body_size=1024, response_body_size=256, request_headers=?3, response_headers=?4, request_body_sha256=?5, request_body_preview=?6, request_body_truncated=0, response_body_sha256=?5, response_body_preview=?7, response_body_truncated=0, connect_us=10, send_us=5, queue_us=0, reused_connection=1 WHERE id=?1".to_string();
    let ev_sql = "INSERT INTO events VALUES (?1,?2,?3,?4,1024,?5,0,?4,256,?6,0,200,900,800,10,5,0,1,NULL) ON CONFLICT (request_id) DO NOTHING";
    let del_sql = "DELETE FROM inflight WHERE id = ?1";
    let mut reqs: Vec<R> = Vec::new();
    let mut completed = 0usize;
    let (w0, s0) = io();
    let c0 = cpu();
    let t0 = std::time::Instant::now();
    let mut i = 0usize;
    let mut commits = 0;
    let (mut tp, mut np, mut tc, mut nc) = (0f64, 0usize, 0f64, 0usize);
    while i < n {
        let ts = std::time::Instant::now();
        let mut had = false;
        let tx = c.unchecked_transaction().unwrap();
        {
            let mut p = tx.prepare_cached(&pend_sql).unwrap();
            for _ in 0..k {
                let id = Uuid::now_v7().to_string();
                let rid = Uuid::now_v7().simple().to_string() + "-sluice";
                let started = 1_700_000_000_000_000i64 + i as i64 * 80;
                p.execute(params![id, rid, ch, snap, "pending", started])
                    .unwrap();
                reqs.push(R { id, rid, started });
                i += 1;
            }
            // completions due: everything older than `lag`, in bursts when lag > 0
            let due = i.saturating_sub(lag + k);
            if due > completed && (lag == 0 || due - completed >= lag) {
                for r in &reqs[completed..due] {
                    if merged {
                        tx.prepare_cached(&merged_sql)
                            .unwrap()
                            .execute(params![r.id, r.started + 900, hdrs, rhdrs, sha, preq, pres])
                            .unwrap();
                    } else {
                        tx.prepare_cached(&comp_sql)
                            .unwrap()
                            .execute(params![r.id, r.rid, ch, snap, r.started, r.started + 900])
                            .unwrap();
                        tx.prepare_cached(ev_sql)
                            .unwrap()
                            .execute(params![r.id, hdrs, rhdrs, sha, preq, pres])
                            .unwrap();
                    }
                    if inflight {
                        tx.prepare_cached(del_sql)
                            .unwrap()
                            .execute(params![r.id])
                            .unwrap();
                    }
                }
                completed = due;
                had = true;
            }
        }
        tx.commit().unwrap();
        let e = ts.elapsed().as_secs_f64();
        if had {
            tc += e;
            nc += 1
        } else {
            tp += e;
            np += 1
        }
        commits += 1;
        if commits % 120 == 0 {
            c.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                .unwrap();
        }
    }
    let el = t0.elapsed().as_secs_f64();
    let c1 = cpu();
    let (w1, s1) = io();
    let size = std::fs::metadata(&path).unwrap().len();
    println!("{design:28} cpu_us/req={:6.1} wall_us/req={:6.1} wchar/req={:6} writes/req={:4.1} db/req={} pend_commit_us={:.0} burst_commit_us={:.0}", (c1 - c0) * 1e6 / n as f64, el * 1e6 / n as f64, (w1 - w0) / n as u64, (s1 - s0) as f64 / n as f64, size / completed.max(1) as u64, tp*1e6/np.max(1) as f64, tc*1e6/nc.max(1) as f64);
}
