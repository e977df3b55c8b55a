//! Times the history's readers on two layouts of the same requests: SQLite's row per request as
//! shipped (migrations 0001 and 0007), and one row per batch of a channel's requests (the
//! `segments_batchrows` sketch of `history`), decoded in Rust. It answers what a one-row-per-
//! batch store would cost the readers it must keep (docs/BENCHMARKS.md, session 23).
//!
//!   cargo run --release --manifest-path bench/ledger-sim/Cargo.toml --bin readers -- [requests]
//!
//! The ledger holds `requests` (default 1 000 000) over four channels, 40 µs apart, written as
//! the history thread does: 280 completions a commit, each channel's share of a commit one
//! batch. 2% of the requests fail with a 5xx and 10% carry a caller's own request id. Each query
//! runs 20 times; the median is printed. The databases go to /tmp/ledger-sim-readers-*.db.
//!
//! A simplification: here a channel's batches hold disjoint, ascending spans of start times,
//! so a listing or a window stops at the first batch that ends before it. A real batch holds
//! the requests that *completed* together, and a slow request's start can lie far behind its
//! batch-mates': a store must read every batch whose span reaches into the page or window
//! (or bound how far a span may reach), which these timings do not include.

use std::time::Instant;

use rusqlite::{params, Connection};
use uuid::{Builder, Uuid};

/// Completions per commit, as in `history`.
const COMMIT: usize = 280;
const CHANNELS: usize = 4;
/// A listing's page.
const PAGE: usize = 50;
const RUNS: usize = 20;
const T0: i64 = 1_700_000_000_000_000;

/// One request row: the columns the readers filter, sort or count by, and a few they return.
#[derive(Clone)]
struct Row {
    id: Uuid,
    request_id: String,
    channel: usize,
    state: &'static str,
    method: &'static str,
    path: String,
    started_at: i64,
    status: i64,
    latency_us: i64,
}

impl Row {
    /// The `i`-th request of the ledger.
    fn nth(i: usize) -> Self {
        let started_at = T0 + i as i64 * 40;
        // Deterministic, so that a probe rebuilt from `i` finds its row.
        let tail = (i as u128).wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835);
        let id = Builder::from_unix_timestamp_millis(
            (started_at / 1000) as u64,
            tail.to_le_bytes()[..10].try_into().unwrap(),
        )
        .into_uuid();
        let failed = i % 50 == 7;
        Row {
            id,
            request_id: if i % 10 == 3 {
                format!("caller-{:x}", tail)
            } else {
                format!("{}-sluice", id.simple())
            },
            channel: (i / (COMMIT / CHANNELS)) % CHANNELS,
            state: if failed { "error" } else { "success" },
            method: if i.is_multiple_of(3) { "GET" } else { "POST" },
            path: format!("/x/{}", i % 100),
            started_at,
            status: if failed { 502 } else { 200 },
            latency_us: 300 + (i as i64 * 7919) % 5000,
        }
    }

    fn channel_id(&self) -> String {
        channel_id(self.channel)
    }

    /// The row's bytes in a batch: length-prefixed texts, then little-endian integers.
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.id.as_bytes());
        for text in [
            self.request_id.as_str(),
            self.state,
            self.method,
            &self.path,
        ] {
            out.extend_from_slice(&(text.len() as u16).to_le_bytes());
            out.extend_from_slice(text.as_bytes());
        }
        for v in [self.started_at, self.status, self.latency_us] {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }

    /// Decodes the rows of a batch of `channel`, in the order they were written.
    fn decode_all(channel: usize, mut b: &[u8]) -> Vec<Row> {
        fn take<'a>(b: &mut &'a [u8], n: usize) -> &'a [u8] {
            let (head, rest) = b.split_at(n);
            *b = rest;
            head
        }
        fn text(b: &mut &[u8]) -> String {
            let n = u16::from_le_bytes(take(b, 2).try_into().unwrap()) as usize;
            String::from_utf8(take(b, n).to_vec()).unwrap()
        }
        fn int(b: &mut &[u8]) -> i64 {
            i64::from_le_bytes(take(b, 8).try_into().unwrap())
        }
        let known = |s: String| -> &'static str {
            ["success", "error", "GET", "POST"]
                .into_iter()
                .find(|k| *k == s)
                .unwrap()
        };
        let mut rows = Vec::new();
        while !b.is_empty() {
            let id = Uuid::from_slice(take(&mut b, 16)).unwrap();
            let request_id = text(&mut b);
            let state = known(text(&mut b));
            let method = known(text(&mut b));
            let path = text(&mut b);
            rows.push(Row {
                id,
                request_id,
                channel,
                state,
                method,
                path,
                started_at: int(&mut b),
                status: int(&mut b),
                latency_us: int(&mut b),
            });
        }
        rows
    }
}

fn channel_id(c: usize) -> String {
    format!("00000000-0000-7000-8000-00000000000{c}")
}

fn open(name: &str) -> Connection {
    let path = format!("/tmp/ledger-sim-readers-{name}.db");
    for s in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{path}{s}"));
    }
    let c = Connection::open(&path).unwrap();
    c.pragma_update(None, "page_size", 8192).unwrap();
    c.pragma_update(None, "journal_mode", "WAL").unwrap();
    c.pragma_update(None, "synchronous", "NORMAL").unwrap();
    // A reader's cache, as `db.rs` gives each reader connection.
    c.pragma_update(None, "cache_size", -1024).unwrap();
    c
}

/// Writes `n` requests in both layouts.
fn fill(rows_db: &Connection, batch_db: &Connection, n: usize) {
    rows_db
        .execute_batch(
            "CREATE TABLE requests (id TEXT PRIMARY KEY, request_id TEXT NOT NULL,
               channel_id TEXT NOT NULL, state TEXT NOT NULL, method TEXT NOT NULL,
               path TEXT NOT NULL, started_at BIGINT NOT NULL, response_status BIGINT,
               latency_us BIGINT);
             CREATE INDEX requests_channel_started ON requests (channel_id, started_at, id);
             CREATE INDEX requests_request_id ON requests (request_id);",
        )
        .unwrap();
    batch_db
        .execute_batch(
            "CREATE TABLE request_batches (id INTEGER PRIMARY KEY, channel_id TEXT NOT NULL,
               first_started BIGINT NOT NULL, last_started BIGINT NOT NULL,
               n BIGINT NOT NULL, rows BLOB NOT NULL);
             CREATE INDEX request_batches_channel ON request_batches (channel_id, first_started);
             CREATE INDEX request_batches_started ON request_batches (first_started);",
        )
        .unwrap();
    for start in (0..n).step_by(COMMIT) {
        let rows: Vec<Row> = (start..(start + COMMIT).min(n)).map(Row::nth).collect();
        let tx = rows_db.unchecked_transaction().unwrap();
        {
            let mut insert = tx
                .prepare_cached("INSERT INTO requests VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9)")
                .unwrap();
            for r in &rows {
                insert
                    .execute(params![
                        r.id.to_string(),
                        r.request_id,
                        r.channel_id(),
                        r.state,
                        r.method,
                        r.path,
                        r.started_at,
                        r.status,
                        r.latency_us
                    ])
                    .unwrap();
            }
        }
        tx.commit().unwrap();
        let tx = batch_db.unchecked_transaction().unwrap();
        for c in 0..CHANNELS {
            let mine: Vec<&Row> = rows.iter().filter(|r| r.channel == c).collect();
            let (Some(first), Some(last)) = (mine.first(), mine.last()) else {
                continue;
            };
            let mut blob = Vec::with_capacity(mine.len() * 96);
            for r in &mine {
                r.encode(&mut blob);
            }
            tx.execute(
                "INSERT INTO request_batches (channel_id, first_started, last_started, n, rows)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    channel_id(c),
                    first.started_at,
                    last.started_at,
                    mine.len() as i64,
                    blob
                ],
            )
            .unwrap();
        }
        tx.commit().unwrap();
    }
}

/// The median time of `RUNS` runs of `f`, in ms; `f` returns a count that both layouts must
/// agree on.
fn time(f: &mut dyn FnMut() -> usize) -> (f64, usize) {
    let mut times = Vec::with_capacity(RUNS);
    let mut answer = 0;
    for _ in 0..RUNS {
        let t = Instant::now();
        answer = f();
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    (times[RUNS / 2], answer)
}

/// A channel's rows newest first, batch by batch, from before `before` (exclusive), keeping
/// those `keep` accepts, until `limit` are kept.
fn batch_page(
    db: &Connection,
    channel: usize,
    before: i64,
    limit: usize,
    keep: &dyn Fn(&Row) -> bool,
) -> Vec<Row> {
    let mut stmt = db
        .prepare_cached(
            "SELECT rows FROM request_batches WHERE channel_id = ?1 AND first_started < ?2
             ORDER BY first_started DESC",
        )
        .unwrap();
    let mut out = Vec::with_capacity(limit);
    let mut batches = stmt.query(params![channel_id(channel), before]).unwrap();
    while let Some(b) = batches.next().unwrap() {
        let blob: &[u8] = b.get_ref(0).unwrap().as_blob().unwrap();
        for r in Row::decode_all(channel, blob).into_iter().rev() {
            if r.started_at < before && keep(&r) {
                out.push(r);
                if out.len() == limit {
                    return out;
                }
            }
        }
    }
    out
}

/// The same page from the row layout, with `filter` as extra SQL on `requests`. Given a
/// request id the channel's term is written `+channel_id`, as `list_sql` in `requests.rs`
/// writes it, so that SQLite looks the id up in its index.
fn rows_page(db: &Connection, channel: usize, before: i64, limit: usize, filter: &str) -> usize {
    let column = if filter.contains("request_id") {
        "+channel_id"
    } else {
        "channel_id"
    };
    let mut stmt = db
        .prepare_cached(&format!(
            "SELECT id, request_id, state, method, path, started_at, response_status, latency_us
             FROM requests WHERE {column} = ?1 AND started_at < ?2{filter}
             ORDER BY started_at DESC, id DESC LIMIT {limit}"
        ))
        .unwrap();
    stmt.query_map(params![channel_id(channel), before], |_| Ok(()))
        .unwrap()
        .count()
}

/// The batch holding the request `id`: its UUIDv7 millisecond bounds its start.
fn batch_get(db: &Connection, id: Uuid) -> Option<Row> {
    let (secs, nanos) = id.get_timestamp().unwrap().to_unix();
    let ms = secs as i64 * 1000 + i64::from(nanos / 1_000_000);
    let mut stmt = db
        .prepare_cached(
            "SELECT channel_id, rows FROM request_batches
             WHERE first_started < ?1 AND first_started >= ?2 AND last_started >= ?3",
        )
        .unwrap();
    // A batch here spans at most one commit's starts (`COMMIT` requests, 40 µs apart).
    let (from, to) = (ms * 1000, (ms + 1) * 1000);
    let span = COMMIT as i64 * 40;
    let mut batches = stmt.query(params![to, from - span, from]).unwrap();
    while let Some(b) = batches.next().unwrap() {
        let channel: String = b.get(0).unwrap();
        let channel = (0..CHANNELS).find(|c| channel_id(*c) == channel).unwrap();
        let blob: &[u8] = b.get_ref(1).unwrap().as_blob().unwrap();
        if let Some(r) = Row::decode_all(channel, blob)
            .into_iter()
            .find(|r| r.id == id)
        {
            return Some(r);
        }
    }
    None
}

/// The number `sql` (one parameter, a channel's id) gives for channel 0.
fn channel_count(db: &Connection, sql: &str) -> usize {
    db.query_row(sql, [channel_id(0)], |row| row.get::<_, i64>(0))
        .unwrap() as usize
}

/// Counts by state, per minute and the latency percentiles of `channel` since `since`.
fn batch_stats(db: &Connection, channel: usize, since: i64) -> usize {
    let mut stmt = db
        .prepare_cached(
            "SELECT rows, last_started FROM request_batches WHERE channel_id = ?1
             ORDER BY first_started DESC",
        )
        .unwrap();
    let mut latencies = Vec::new();
    let (mut errors, mut minutes) = (0, std::collections::BTreeMap::<i64, usize>::new());
    let mut batches = stmt.query(params![channel_id(channel)]).unwrap();
    while let Some(b) = batches.next().unwrap() {
        if b.get::<_, i64>(1).unwrap() < since {
            break;
        }
        let blob: &[u8] = b.get_ref(0).unwrap().as_blob().unwrap();
        for r in Row::decode_all(channel, blob) {
            if r.started_at >= since {
                errors += usize::from(r.state == "error");
                *minutes.entry(r.started_at / 60_000_000).or_default() += 1;
                latencies.push(r.latency_us);
            }
        }
    }
    latencies.sort_unstable();
    let rank = |p: usize| latencies.get(latencies.len() * p / 100).copied();
    std::hint::black_box((errors, minutes, rank(50), rank(95), rank(99)));
    latencies.len()
}

/// The same statistics from the row layout, as `channel_stats` queries them.
fn rows_stats(db: &Connection, channel: usize, since: i64) -> usize {
    let ch = channel_id(channel);
    let mut by_state = db
        .prepare_cached(
            "SELECT state, COUNT(*) FROM requests WHERE channel_id = ?1 AND started_at >= ?2
             GROUP BY state",
        )
        .unwrap();
    let total: i64 = by_state
        .query_map(params![ch, since], |r| r.get::<_, i64>(1))
        .unwrap()
        .map(Result::unwrap)
        .sum();
    let mut per_minute = db
        .prepare_cached(
            "SELECT started_at / 60000000, COUNT(*) FROM requests
             WHERE channel_id = ?1 AND started_at >= ?2 GROUP BY started_at / 60000000",
        )
        .unwrap();
    let _ = per_minute
        .query_map(params![ch, since], |_| Ok(()))
        .unwrap()
        .count();
    let mut rank = db
        .prepare_cached(
            "SELECT latency_us FROM requests WHERE channel_id = ?1 AND started_at >= ?2
             AND latency_us IS NOT NULL ORDER BY latency_us LIMIT 1 OFFSET ?3",
        )
        .unwrap();
    for p in [50, 95, 99] {
        let _: Option<i64> = rank
            .query_row(params![ch, since, total * p / 100], |r| r.get(0))
            .ok();
    }
    total as usize
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map_or(1_000_000, |s| s.parse().unwrap());
    let (rows_db, batch_db) = (open("rows"), open("batches"));
    let t = Instant::now();
    fill(&rows_db, &batch_db, n);
    println!("{n} requests written in {:.1} s", t.elapsed().as_secs_f64());
    let size = |name: &str| {
        std::fs::metadata(format!("/tmp/ledger-sim-readers-{name}.db-wal")).map_or(0, |m| m.len())
            + std::fs::metadata(format!("/tmp/ledger-sim-readers-{name}.db"))
                .unwrap()
                .len()
    };
    println!(
        "bytes per request: rows {}, batches {}",
        size("rows") / n as u64,
        size("batches") / n as u64
    );
    let end = T0 + n as i64 * 40;
    let middle = T0 + n as i64 * 20;
    let second_ago = end - 1_000_000;
    // Requests to look up: spread over the ledger, each with a caller's request id.
    let probe: Vec<Row> = (0..RUNS).map(|k| Row::nth(n / RUNS * k + 3)).collect();
    // Each side runs every probe once (`RUNS` of them).
    let next = std::cell::Cell::new(0);
    let pick = || {
        next.set((next.get() + 1) % RUNS);
        probe[next.get()].clone()
    };
    let pick = &pick;
    type Case<'a> = (
        &'a str,
        Box<dyn FnMut() -> usize + 'a>,
        Box<dyn FnMut() -> usize + 'a>,
    );
    let (r, b) = (&rows_db, &batch_db);
    let mut cases: Vec<Case> = vec![
        (
            "newest page of a channel",
            Box::new(|| rows_page(r, 0, i64::MAX, PAGE, "")),
            Box::new(|| batch_page(b, 0, i64::MAX, PAGE, &|_| true).len()),
        ),
        (
            "a page from the middle (cursor)",
            Box::new(|| rows_page(r, 0, middle, PAGE, "")),
            Box::new(|| batch_page(b, 0, middle, PAGE, &|_| true).len()),
        ),
        (
            "newest page of 5xx (2% of requests)",
            Box::new(|| rows_page(r, 0, i64::MAX, PAGE, " AND response_status >= 500")),
            Box::new(|| batch_page(b, 0, i64::MAX, PAGE, &|r| r.status >= 500).len()),
        ),
        (
            "page with path prefix /x/42",
            Box::new(|| rows_page(r, 0, i64::MAX, PAGE, " AND substr(path, 1, 5) = '/x/42'")),
            Box::new(|| batch_page(b, 0, i64::MAX, PAGE, &|r| r.path.starts_with("/x/42")).len()),
        ),
        (
            "request by id",
            Box::new(|| {
                let p = pick();
                r.query_row(
                    "SELECT started_at FROM requests WHERE id = ?1",
                    [p.id.to_string()],
                    |_| Ok(()),
                )
                .map_or(0, |()| 1)
            }),
            Box::new(|| usize::from(batch_get(b, pick().id).is_some())),
        ),
        (
            "a caller's request id, one channel",
            Box::new(|| {
                let p = pick();
                rows_page(
                    r,
                    p.channel,
                    i64::MAX,
                    PAGE,
                    &format!(" AND request_id = '{}'", p.request_id),
                )
            }),
            Box::new(|| {
                let p = pick();
                batch_page(b, p.channel, i64::MAX, PAGE, &|r| {
                    r.request_id == p.request_id
                })
                .len()
            }),
        ),
        (
            "count of a channel",
            Box::new(|| channel_count(r, "SELECT COUNT(*) FROM requests WHERE channel_id = ?1")),
            Box::new(|| {
                channel_count(
                    b,
                    "SELECT SUM(n) FROM request_batches WHERE channel_id = ?1",
                )
            }),
        ),
        (
            "stats over the last second",
            Box::new(|| rows_stats(r, 0, second_ago)),
            Box::new(|| batch_stats(b, 0, second_ago)),
        ),
        (
            "stats over the whole channel",
            Box::new(|| rows_stats(r, 0, T0)),
            Box::new(|| batch_stats(b, 0, T0)),
        ),
    ];
    println!(
        "{:38} {:>12} {:>12}  answer",
        "query (median of 20)", "rows ms", "batches ms"
    );
    for (name, rows, batches) in &mut cases {
        let (tr, ar) = time(rows.as_mut());
        let (tb, ab) = time(batches.as_mut());
        let agree = if ar == ab { "" } else { "  (answers differ)" };
        println!("{name:38} {tr:12.3} {tb:12.3}  {ab}{agree}");
    }
}
