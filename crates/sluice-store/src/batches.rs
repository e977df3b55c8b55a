//! Finished requests on SQLite, many to a row.
//!
//! A row per request (twenty bound values, the table and three index B-trees, the WAL pages
//! they dirty) was the largest part of the history writer's work and of the proxy's tail
//! latency (docs/BENCHMARKS.md, sessions 22–24). The history writer now stores the requests of
//! one channel that complete in one commit as one row of `request_batches`: their entries'
//! headers one after another (what the listings' filters and order, the counts and the
//! statistics need: id, start, state, status, latency, where the event is, method, path, and
//! where the record is), then, in a column of their own, their records as journal lines.
//!
//! A batch only holds requests whose start times share a [`SPAN_US`] bucket and whose ids
//! share an id bucket (`batch_codec`), so a reader knows which batches can hold a request from its
//! start time or its id alone. The buckets are narrow (10 ms) because a listing reads one
//! bucket's width of batches past its page. A caller's own request id gets a narrow row of
//! `request_keys`; a generated one names its record ([`generated_id`]).
//!
//! `requests` keeps the rows of older ledgers and of the rare writes (a completion that could
//! not be written, a request closed as interrupted); readers see both, and PostgreSQL keeps a
//! row per request.

use std::collections::HashMap;

use futures_util::TryStreamExt;
use sluice_core::{RequestRecord, RequestState};
use sqlx::Row;
use uuid::Uuid;

use crate::batch_codec::{decode, entries, generated_id, id_bucket, Entry, SPAN_US};
use crate::db::{Backend, Store};
use crate::error::Result;
use crate::event_files::EventSpot;
use crate::requests::{minute_start, Cursor, RequestFilter};

/// Batches a listing reads in its first query, newest first; each further query reads twice
/// as many as the one before, up to [`LISTING_CHUNK_MAX`] (a filter that matches little reads
/// the whole channel, in few queries).
const LISTING_CHUNK: i64 = 16;
/// The most batches one query of a listing reads.
const LISTING_CHUNK_MAX: i64 = 128;

/// `INSERT` of one batch row: its entries' headers, then their records (a scan of the headers
/// never loads the records, stored after them).
pub(crate) const INSERT_BATCH_SQL: &str = "INSERT INTO request_batches (channel_id, node_id, \
     first_started, last_started, id_bucket, min_id, max_id, n, n_pending, n_success, n_failed, \
     n_timeout, n_error, heads, records) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, \
     ?13, ?14, ?15)";
/// `INSERT` of a caller's request id naming the batch that holds its request.
pub(crate) const INSERT_KEY_SQL: &str =
    "INSERT INTO request_keys (request_id, batch) VALUES (?1, ?2)";
/// Removes a channel's batches and their keys.
pub(crate) const FORGET_CHANNEL_SQL: [&str; 2] = [
    "DELETE FROM request_keys WHERE batch IN (SELECT id FROM request_batches WHERE channel_id = $1)",
    "DELETE FROM request_batches WHERE channel_id = $1",
];

/// What a listing's filters look at in a request.
struct Head<'a> {
    id: Uuid,
    started_at: i64,
    state: RequestState,
    status: Option<u16>,
    method: &'a str,
    path: &'a str,
}

impl<'a> From<&Entry<'a>> for Head<'a> {
    fn from(e: &Entry<'a>) -> Self {
        Head {
            id: e.id,
            started_at: e.started_at,
            state: e.state,
            status: e.status,
            method: e.method,
            path: e.path,
        }
    }
}

impl<'a> From<&'a RequestRecord> for Head<'a> {
    fn from(r: &'a RequestRecord) -> Self {
        Head {
            id: r.id,
            started_at: r.started_at,
            state: r.state,
            status: r.response_status,
            method: &r.method,
            path: &r.path,
        }
    }
}

/// Whether a request passes every filter but the request id: the ones an entry's header
/// answers.
fn head_matches(f: &RequestFilter, after: Option<Cursor>, h: Head<'_>) -> bool {
    f.state.is_none_or(|s| s == h.state)
        && f.status.is_none_or(|s| {
            let (lo, hi) = s.range();
            h.status.is_some_and(|st| (lo..=hi).contains(&i64::from(st)))
        })
        && f.since.is_none_or(|t| h.started_at >= t)
        && f.until.is_none_or(|t| h.started_at < t)
        && after.is_none_or(|c| (h.started_at, h.id) < (c.started_at, c.id))
        // The filter's method in upper case, as the SQL readers compare it.
        && f.method.as_ref().is_none_or(|m| {
            m.len() == h.method.len()
                && m.bytes().zip(h.method.bytes()).all(|(a, b)| a.to_ascii_uppercase() == b)
        })
        && f.path_prefix.as_ref().is_none_or(|p| h.path.starts_with(p.as_str()))
}

/// The batched requests a listing has found that pass its filters. A listing filtered by
/// request id decodes each as it finds it; any other keeps where each record is and decodes
/// only the page's, once the page is known (a listing reads whole batches' headers).
struct Found<'f> {
    f: &'f RequestFilter,
    after: Option<Cursor>,
    decoded: Vec<RequestRecord>,
    located: Vec<Located>,
}

/// A request a listing found but has not decoded.
struct Located {
    /// Its start and id: its place in the listing.
    key: (i64, Uuid),
    /// The batch that holds it.
    batch: i64,
    /// Where its record is in the batch's `records`.
    at: (usize, usize),
}

impl<'f> Found<'f> {
    fn new(f: &'f RequestFilter, after: Option<Cursor>) -> Self {
        Self {
            f,
            after,
            decoded: Vec::new(),
            located: Vec::new(),
        }
    }

    /// Notes where the passing requests of batch `batch`'s `heads` are.
    fn add_heads(&mut self, batch: i64, heads: &[u8]) -> Result<()> {
        for e in entries(heads) {
            let e = e?;
            if head_matches(self.f, self.after, Head::from(&e)) {
                self.located.push(Located {
                    key: (e.started_at, e.id),
                    batch,
                    at: e.record_at,
                });
            }
        }
        Ok(())
    }

    /// Decodes and adds the passing requests of a batch.
    fn add_batch(&mut self, heads: &[u8], records: &[u8]) -> Result<()> {
        for e in entries(heads) {
            let e = e?;
            if head_matches(self.f, self.after, Head::from(&e)) {
                self.add_record(e.record(records)?);
            }
        }
        Ok(())
    }

    /// Adds `r` if it passes the filter and is not there yet.
    fn add_record(&mut self, r: RequestRecord) {
        let passes = head_matches(self.f, self.after, Head::from(&r))
            && self
                .f
                .request_id
                .as_ref()
                .is_none_or(|id| r.request_id == *id);
        if passes && !self.decoded.iter().any(|o| o.id == r.id) {
            self.decoded.push(r);
        }
    }

    /// How many started at or after `t`.
    fn since(&self, t: i64) -> usize {
        self.decoded.iter().filter(|r| r.started_at >= t).count()
            + self.located.iter().filter(|l| l.key.0 >= t).count()
    }

    /// The newest `limit`, newest first, reading the records of those located from `store`.
    async fn into_page(mut self, store: &Store, limit: i64) -> Result<Vec<RequestRecord>> {
        let limit = usize::try_from(limit).unwrap_or(0);
        self.located.sort_by_key(|l| std::cmp::Reverse(l.key));
        self.located.truncate(limit);
        let mut batches: Vec<i64> = self.located.iter().map(|l| l.batch).collect();
        batches.sort_unstable();
        batches.dedup();
        let mut records: HashMap<i64, Vec<u8>> = HashMap::new();
        if !batches.is_empty() {
            let sql = format!(
                "SELECT id, records FROM request_batches WHERE id IN ({})",
                crate::health::in_list(1, batches.len())
            );
            let mut q = sqlx::query(&sql);
            for b in &batches {
                q = q.bind(*b);
            }
            for row in q.fetch_all(&store.pool).await? {
                records.insert(row.try_get("id")?, row.try_get("records")?);
            }
        }
        for l in self.located {
            // A batch purged since its headers were read leaves its requests out.
            if let Some(recs) = records.get(&l.batch) {
                self.decoded.push(decode(l.key.1, recs, l.at)?);
            }
        }
        self.decoded
            .sort_by_key(|r| std::cmp::Reverse((r.started_at, r.id)));
        self.decoded.truncate(limit);
        Ok(self.decoded)
    }
}

/// What a channel's batches add to its statistics over a window.
#[derive(Default)]
pub(crate) struct WindowCounts {
    /// Requests per state.
    pub by_state: HashMap<RequestState, i64>,
    /// Requests per minute start (µs) and state.
    pub per_minute: HashMap<(i64, RequestState), i64>,
    /// Number of requests per latency (µs).
    pub latencies: HashMap<i64, i64>,
}

impl Store {
    fn batched(&self) -> bool {
        self.backend() == Backend::Sqlite
    }

    /// Batched requests with the given ids, with where their events are.
    pub(crate) async fn batched_by_id(
        &self,
        ids: &[Uuid],
    ) -> Result<HashMap<Uuid, (RequestRecord, Option<EventSpot>)>> {
        let mut found = HashMap::new();
        if !self.batched() || ids.is_empty() {
            return Ok(found);
        }
        let mut buckets: HashMap<i64, (Uuid, Uuid)> = HashMap::new();
        for id in ids {
            let b = buckets.entry(id_bucket(*id)).or_insert((*id, *id));
            b.0 = b.0.min(*id);
            b.1 = b.1.max(*id);
        }
        for (bucket, (least, greatest)) in buckets {
            let rows = sqlx::query(
                "SELECT heads, records FROM request_batches WHERE id_bucket = $1 AND min_id <= $2 \
                 AND max_id >= $3",
            )
            .bind(bucket)
            .bind(greatest.as_bytes().to_vec())
            .bind(least.as_bytes().to_vec())
            .fetch_all(&self.pool)
            .await?;
            for row in rows {
                let heads: Vec<u8> = row.try_get("heads")?;
                let records: Vec<u8> = row.try_get("records")?;
                for e in entries(&heads) {
                    let e = e?;
                    if ids.contains(&e.id) {
                        found.insert(e.id, (e.record(&records)?, e.spot));
                    }
                }
            }
        }
        Ok(found)
    }

    /// `recs` (requests read in flight) without those already finished in a batch.
    pub(crate) async fn unsettled(&self, recs: Vec<RequestRecord>) -> Result<Vec<RequestRecord>> {
        let ids: Vec<Uuid> = recs.iter().map(|r| r.id).collect();
        let settled = self.batched_by_id(&ids).await?;
        Ok(recs
            .into_iter()
            .filter(|r| !settled.contains_key(&r.id))
            .collect())
    }

    /// The newest `limit` batched requests of a channel that pass `f`, after `after`.
    pub(crate) async fn batched_page(
        &self,
        channel_id: Uuid,
        f: &RequestFilter,
        after: Option<Cursor>,
        limit: i64,
    ) -> Result<Vec<RequestRecord>> {
        let mut found = Found::new(f, after);
        if self.batched() {
            match &f.request_id {
                Some(rid) => {
                    self.batched_by_request_id(channel_id, rid, &mut found)
                        .await?
                }
                None => self.batched_newest(channel_id, limit, &mut found).await?,
            }
        }
        found.into_page(self, limit).await
    }

    /// Adds to `found` the channel's batched requests with request id `rid`.
    async fn batched_by_request_id(
        &self,
        channel_id: Uuid,
        rid: &str,
        found: &mut Found<'_>,
    ) -> Result<()> {
        let keyed = sqlx::query(
            "SELECT b.heads AS heads, b.records AS records FROM request_keys k \
             JOIN request_batches b ON b.id = k.batch \
             WHERE k.request_id = $1 AND b.channel_id = $2",
        )
        .bind(rid)
        .bind(channel_id.to_string())
        .fetch_all(&self.pool)
        .await?;
        for row in keyed {
            found.add_batch(
                &row.try_get::<Vec<u8>, _>("heads")?,
                &row.try_get::<Vec<u8>, _>("records")?,
            )?;
        }
        if let Some(id) = generated_id(rid) {
            if let Some((r, _)) = self.batched_by_id(&[id]).await?.remove(&id) {
                if r.channel_id == channel_id {
                    found.add_record(r);
                }
            }
        }
        Ok(())
    }

    /// Adds to `found` at least the channel's newest `limit` batched requests that pass its
    /// filter, reading the batches newest first until no older batch can hold a newer one.
    async fn batched_newest(
        &self,
        channel_id: Uuid,
        limit: i64,
        found: &mut Found<'_>,
    ) -> Result<()> {
        let (f, after) = (found.f, found.after);
        // A request started before `upper` is in a batch that started before it.
        let upper = match (f.until, after) {
            (Some(u), Some(c)) => Some(u.min(c.started_at + 1)),
            (u, c) => u.or(c.map(|c| c.started_at + 1)),
        };
        let (mut next, mut chunk): (Option<(i64, i64)>, i64) = (None, LISTING_CHUNK);
        loop {
            let mut sql = String::from(
                "SELECT id, first_started, heads FROM request_batches WHERE channel_id = $1",
            );
            let mut args: Vec<i64> = Vec::new();
            let mut arg = |sql: &mut String, clause: &str, v: i64| {
                args.push(v);
                sql.push_str(&clause.replace("$?", &format!("${}", args.len() + 1)));
            };
            if let Some(u) = upper {
                arg(&mut sql, " AND first_started < $?", u);
            }
            if let Some(s) = f.since {
                arg(&mut sql, " AND last_started >= $?", s);
            }
            if let Some((started, id)) = next {
                arg(&mut sql, " AND (first_started < $?", started);
                arg(&mut sql, " OR (first_started = $?", started);
                arg(&mut sql, " AND id < $?))", id);
            }
            sql.push_str(&format!(
                " ORDER BY first_started DESC, id DESC LIMIT {chunk}"
            ));
            let mut q = sqlx::query(&sql).bind(channel_id.to_string());
            for a in args {
                q = q.bind(a);
            }
            let rows = q.fetch_all(&self.pool).await?;
            for row in &rows {
                found.add_heads(row.try_get("id")?, &row.try_get::<Vec<u8>, _>("heads")?)?;
                next = Some((row.try_get("first_started")?, row.try_get("id")?));
            }
            let Some((oldest, _)) = next else {
                return Ok(());
            };
            // Every request started at or after `oldest + SPAN_US` has been read: it is in a
            // batch of its own start bucket, which began after `oldest`.
            let settled = found.since(oldest + SPAN_US);
            if (rows.len() as i64) < chunk || settled as i64 >= limit {
                return Ok(());
            }
            chunk = (chunk * 2).min(LISTING_CHUNK_MAX);
        }
    }

    /// The number of a channel's batched requests.
    pub(crate) async fn batched_count(&self, channel_id: Uuid) -> Result<i64> {
        if !self.batched() {
            return Ok(0);
        }
        Ok(sqlx::query(
            "SELECT COALESCE(SUM(n), 0) AS n FROM request_batches WHERE channel_id = $1",
        )
        .bind(channel_id.to_string())
        .fetch_one(&self.pool)
        .await?
        .try_get("n")?)
    }

    /// What a channel's batched requests started since `since` add to its statistics.
    pub(crate) async fn batched_window(
        &self,
        channel_id: Uuid,
        since: i64,
    ) -> Result<WindowCounts> {
        let mut w = WindowCounts::default();
        if !self.batched() {
            return Ok(w);
        }
        // A batch at a time: the window may be long.
        let mut rows = sqlx::query(
            "SELECT heads FROM request_batches WHERE channel_id = $1 AND last_started >= $2",
        )
        .bind(channel_id.to_string())
        .bind(since)
        .fetch(&self.pool);
        while let Some(row) = rows.try_next().await? {
            let heads: Vec<u8> = row.try_get("heads")?;
            for e in entries(&heads) {
                let e = e?;
                if e.started_at < since {
                    continue;
                }
                *w.by_state.entry(e.state).or_insert(0) += 1;
                *w.per_minute
                    .entry((minute_start(e.started_at), e.state))
                    .or_insert(0) += 1;
                if let Some(l) = e.latency_us {
                    *w.latencies.entry(l).or_insert(0) += 1;
                }
            }
        }
        Ok(w)
    }

    /// Batched requests per state of each of `ids` started since `since`, added to `out`.
    pub(crate) async fn batched_counts_since(
        &self,
        ids: &[Uuid],
        since: i64,
        out: &mut HashMap<Uuid, std::collections::BTreeMap<String, i64>>,
    ) -> Result<()> {
        if !self.batched() || ids.is_empty() {
            return Ok(());
        }
        let list = crate::health::in_list(2, ids.len());
        let sums: String = RequestState::ALL
            .iter()
            .map(|s| format!(", COALESCE(SUM(n_{}), 0)", s.as_str()))
            .collect();
        // Batches wholly inside the window answer from their counts.
        let inside = format!(
            "SELECT channel_id{sums} FROM request_batches \
             WHERE first_started >= $1 AND channel_id IN ({list}) GROUP BY channel_id"
        );
        // Those across its start, entry by entry.
        let across = format!(
            "SELECT channel_id, heads FROM request_batches \
             WHERE first_started < $1 AND last_started >= $1 AND channel_id IN ({list})"
        );
        let fetch = |sql| {
            let mut q = sqlx::query(sql).bind(since);
            for id in ids {
                q = q.bind(id.to_string());
            }
            q.fetch_all(&self.pool)
        };
        for r in fetch(&inside).await? {
            crate::health::add_state_counts(out, &r)?;
        }
        for r in fetch(&across).await? {
            let states = out.entry(crate::rows::uuid(&r, "channel_id")?).or_default();
            let heads: Vec<u8> = r.try_get("heads")?;
            for e in entries(&heads) {
                let e = e?;
                if e.started_at >= since {
                    *states.entry(e.state.as_str().to_string()).or_insert(0) += 1;
                }
            }
        }
        Ok(())
    }
}

/// The SQL term giving the start of channel `{c}`'s newest batched request: the newest
/// batch's bucket bounds where to look.
pub(crate) fn last_started_sql(channel: &str) -> String {
    format!(
        "SELECT MAX(b.last_started) AS t FROM request_batches b WHERE b.channel_id = {channel} \
         AND b.first_started >= (SELECT MAX(m.first_started) FROM request_batches m \
         WHERE m.channel_id = {channel}) - {SPAN_US}"
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use sluice_core::{Channel, EventRecord, Timeouts};

    use super::*;
    use crate::completion::Packed;
    use crate::event_files::EventFiles;
    use crate::requests::RequestFilter;
    use crate::sqlite_writer::HistoryWriter;
    use crate::test_support::{pending_record, sqlite_store};

    /// A finished copy of `rec`, started at `started_at`, and its event.
    fn finished(rec: &RequestRecord, started_at: i64) -> (RequestRecord, EventRecord) {
        let mut r = rec.clone();
        r.started_at = started_at;
        r.state = RequestState::Success;
        r.response_status = Some(200);
        r.completed_at = Some(started_at + 900);
        r.latency_us = Some(900);
        let mut ev = EventRecord {
            request_id: r.id,
            ..Default::default()
        };
        ev.request_body.preview = b"hello".to_vec();
        ev.response_status = Some(200);
        (r, ev)
    }

    #[tokio::test]
    async fn rows_written_before_batches_read_back_beside_them_with_their_events() {
        let (store, dir) = sqlite_store("legacy").await;
        let main = dir.join("sluice.db");
        let project = store.ensure_default_project().await.unwrap();
        let channel = Channel {
            id: Uuid::now_v7(),
            project_id: project.id,
            name: "legacy".into(),
            sink_url: "http://127.0.0.1:9/".into(),
            enabled: true,
            lock_version: 1,
            source_auth_method_ids: vec![],
            sink_credential_id: None,
            timeouts: Timeouts::default(),
            preview_bytes: 1024,
            created_at: 0,
            updated_at: 0,
        };
        store.create_channel(&channel, "t").await.unwrap();
        let mut rec = pending_record("/old");
        rec.channel_id = channel.id;
        let (old, old_event) = finished(&rec, 1_700_000_000_000_000);
        let (new, new_event) = finished(&pending_record("/new"), 1_700_000_001_000_000);
        let new = RequestRecord {
            channel_id: channel.id,
            ..new
        };
        // As the previous version wrote it: a row of `requests` saying where its event is.
        let mut frame = Vec::new();
        crate::event_codec::encode(&old_event, &mut frame);
        let spot = EventFiles::new(&main)
            .append([(channel.id, frame.as_slice())])
            .unwrap()[0];
        sqlx::query(
            "INSERT INTO requests (id, request_id, channel_id, snapshot_id, node_id, state, \
             started_at, completed_at, client_identity, method, path, query, response_status, \
             latency_us, event_seg, event_offset, event_len) \
             VALUES ($1, $2, $3, $4, 'n', 'success', $5, $6, $7, $8, $9, $10, 200, 900, $11, $12, $13)",
        )
        .bind(old.id.to_string())
        .bind(&old.request_id)
        .bind(old.channel_id.to_string())
        .bind(old.snapshot_id.to_string())
        .bind(old.started_at)
        .bind(old.completed_at)
        .bind(&old.client_identity)
        .bind(&old.method)
        .bind(&old.path)
        .bind(old.query.as_deref())
        .bind(spot.seg)
        .bind(spot.offset)
        .bind(spot.len)
        .execute(&store.pool)
        .await
        .unwrap();
        // And one this version writes: an entry of a batch.
        let mut writer = HistoryWriter::open(&main, Duration::from_secs(5)).unwrap();
        let done = Packed::new(new.clone(), Some(new_event.clone())).unpack();
        writer.write("n", &[done], &[]).unwrap();
        drop(writer);

        let listed = store
            .list_requests(channel.id, &RequestFilter::default(), None, 10)
            .await
            .unwrap();
        assert_eq!(listed, vec![new.clone(), old.clone()]);
        assert_eq!(store.count_requests(channel.id).await.unwrap(), 2);
        assert_eq!(
            store.get_request(old.id).await.unwrap(),
            Some((old, Some(old_event)))
        );
        assert_eq!(
            store.get_request(new.id).await.unwrap(),
            Some((new, Some(new_event)))
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
