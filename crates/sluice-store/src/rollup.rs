//! Per-channel, per-minute roll-ups of finished requests: counts by state (`request_minutes`)
//! and a latency histogram (`latency_minutes`). The ledger writer adds each commit's requests
//! in the same transaction as their rows, so the statistics, the channel list and the charts
//! read at most a row per channel and minute, never the requests themselves.

use std::collections::BTreeMap;

use sluice_core::clock::Micros;
use sluice_core::{RequestRecord, RequestState};
use uuid::Uuid;

use crate::request_row::Value;

/// Eighth octaves: bucket `b` holds latencies in `[2^(b/8), 2^((b+1)/8))` µs, 9% wide, so a
/// percentile read back (placed in its bucket by its rank there) is within 10% of the one
/// measured. A busy channel's minute fills a dozen or so buckets.
const BUCKETS_PER_OCTAVE: f64 = 8.0;

/// The states `request_minutes` counts, each a column of its name, in this order (a pending
/// request is counted nowhere: it is not finished).
pub(crate) const COUNTED: [RequestState; 4] = [
    RequestState::Success,
    RequestState::Failed,
    RequestState::Timeout,
    RequestState::Error,
];

/// The start of the minute (µs) of time `t`.
pub(crate) fn minute_start(t: Micros) -> Micros {
    t.div_euclid(60_000_000) * 60_000_000
}

/// The histogram bucket of a latency of `us` microseconds.
pub(crate) fn bucket(us: i64) -> i64 {
    ((us.max(1) as f64).log2() * BUCKETS_PER_OCTAVE).floor() as i64
}

/// The lower bound (µs) of bucket `b`.
fn bucket_floor(b: i64) -> f64 {
    (b as f64 / BUCKETS_PER_OCTAVE).exp2()
}

/// The `p`th percentile (nearest rank) of the latencies counted in `buckets` (bucket → count),
/// placed within its bucket by its rank there; `None` without latencies.
pub(crate) fn percentile(buckets: &BTreeMap<i64, i64>, p: f64) -> Option<i64> {
    let n: i64 = buckets.values().sum();
    if n == 0 {
        return None;
    }
    let rank = ((p / 100.0) * n as f64).ceil().clamp(1.0, n as f64) as i64;
    let mut before = 0;
    for (&b, &k) in buckets {
        if before + k >= rank {
            let (lo, hi) = (bucket_floor(b), bucket_floor(b + 1));
            let within = (rank - before) as f64 / k as f64;
            return Some((lo + (hi - lo) * within).round() as i64);
        }
        before += k;
    }
    None
}

/// What one commit adds to the roll-ups.
#[derive(Default)]
pub(crate) struct Rollup {
    /// (channel, minute) → finished requests by state (success, failed, timeout, error).
    states: BTreeMap<(Uuid, Micros), [i64; 4]>,
    /// (channel, minute, bucket) → requests.
    latencies: BTreeMap<(Uuid, Micros, i64), i64>,
    /// Each channel's id as the text the rows hold, made once per commit.
    names: BTreeMap<Uuid, String>,
}

/// Adds a commit's counts by state for one channel and minute.
pub(crate) const UPSERT_STATES_SQL: &str =
    "INSERT INTO request_minutes (channel_id, minute, success, failed, timeout, error) \
     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (channel_id, minute) DO UPDATE SET \
     success = request_minutes.success + excluded.success, \
     failed = request_minutes.failed + excluded.failed, \
     timeout = request_minutes.timeout + excluded.timeout, \
     error = request_minutes.error + excluded.error";

/// Adds a commit's requests to one latency bucket of a channel and minute.
pub(crate) const UPSERT_LATENCY_SQL: &str =
    "INSERT INTO latency_minutes (channel_id, minute, bucket, requests) VALUES ($1, $2, $3, $4) \
     ON CONFLICT (channel_id, minute, bucket) DO UPDATE SET \
     requests = latency_minutes.requests + excluded.requests";

impl Rollup {
    /// Counts a finished request (a pending one counts nowhere).
    pub(crate) fn add(&mut self, r: &RequestRecord) {
        self.add_parts(r.channel_id, r.started_at, r.state, r.latency_us);
    }

    /// Counts a finished request of `channel` from its columns.
    pub(crate) fn add_parts(
        &mut self,
        channel: Uuid,
        started_at: Micros,
        state: RequestState,
        latency_us: Option<i64>,
    ) {
        let Some(state) = COUNTED.iter().position(|s| *s == state) else {
            return;
        };
        let minute = minute_start(started_at);
        if let Some(l) = latency_us {
            *self
                .latencies
                .entry((channel, minute, bucket(l)))
                .or_default() += 1;
        }
        self.states.entry((channel, minute)).or_default()[state] += 1;
        self.names
            .entry(channel)
            .or_insert_with(|| channel.to_string());
    }

    /// How many (channel, minute) rows it adds to.
    pub(crate) fn len(&self) -> usize {
        self.states.len()
    }

    /// Each upsert to run, with its values, in key order (two writers on PostgreSQL then lock
    /// the same rows in the same order and cannot deadlock).
    pub(crate) fn upserts(&self) -> Vec<(&'static str, Vec<Value<'_>>)> {
        let name = |c: &Uuid| self.names[c].as_str();
        let states = self.states.iter().map(|((c, m), n)| {
            let mut v = vec![Value::Text(Some(name(c))), Value::Int(Some(*m))];
            v.extend(n.iter().map(|k| Value::Int(Some(*k))));
            (UPSERT_STATES_SQL, v)
        });
        let latencies = self.latencies.iter().map(|((c, m, b), n)| {
            let v = vec![
                Value::Text(Some(name(c))),
                Value::Int(Some(*m)),
                Value::Int(Some(*b)),
                Value::Int(Some(*n)),
            ];
            (UPSERT_LATENCY_SQL, v)
        });
        states.chain(latencies).collect()
    }
}

impl Rollup {
    /// Writes the upserts in `tx`, many rows to a statement.
    pub(crate) async fn write(
        self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    ) -> crate::error::Result<()> {
        let upserts = self.upserts();
        for sql in [UPSERT_STATES_SQL, UPSERT_LATENCY_SQL] {
            let rows: Vec<&Vec<Value<'_>>> = upserts
                .iter()
                .filter(|(s, _)| *s == sql)
                .map(|(_, v)| v)
                .collect();
            for run in crate::requests::runs(&rows) {
                let mut q_sql = String::new();
                let mut q_args = Vec::new();
                multi_row(sql, run, &mut q_sql, &mut q_args);
                let mut q = sqlx::query(&q_sql);
                for v in q_args {
                    q = v.bind(q);
                }
                q.execute(&mut **tx).await?;
            }
        }
        Ok(())
    }
}

/// `sql` (a one-row upsert with `$1…$n`) rewritten for every row of `rows`, numbered on.
fn multi_row<'a>(sql: &str, rows: &[&Vec<Value<'a>>], out: &mut String, args: &mut Vec<Value<'a>>) {
    let (head, tail) = sql.split_once(" VALUES ").expect("an INSERT");
    let (_, tail) = tail.split_once(") ").expect("a row of values");
    out.push_str(head);
    out.push_str(" VALUES ");
    for (i, row) in rows.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push('(');
        for j in 0..row.len() {
            if j > 0 {
                out.push_str(", ");
            }
            out.push_str(&format!("${}", args.len() + j + 1));
        }
        out.push(')');
        args.extend(row.iter().copied());
    }
    out.push(' ');
    out.push_str(tail);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_from_buckets_stay_within_a_tenth_of_the_latencies() {
        let latencies: Vec<i64> = (1..=1000).map(|i| i * 137).collect();
        let mut buckets = BTreeMap::new();
        for l in &latencies {
            *buckets.entry(bucket(*l)).or_insert(0) += 1;
        }
        for (p, exact) in [(50.0, 500 * 137), (95.0, 950 * 137), (99.0, 990 * 137)] {
            let got = percentile(&buckets, p).unwrap() as f64;
            let off = (got - exact as f64).abs() / exact as f64;
            assert!(off <= 0.1, "p{p}: {got} against {exact}");
        }
        assert_eq!(percentile(&BTreeMap::new(), 50.0), None);
    }

    #[test]
    fn a_bucket_holds_what_its_bounds_say() {
        for us in [1, 2, 3, 100, 1_000, 999_999, 60_000_000] {
            let b = bucket(us);
            assert!(bucket_floor(b) <= us as f64 + 1e-6 && (us as f64) < bucket_floor(b + 1));
        }
    }
}
