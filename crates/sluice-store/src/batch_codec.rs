//! The layout of a row of `request_batches` (see `crate::batches`): which requests share a
//! batch, and each request's entry, a fixed header in the batch's `heads` with its record, a
//! journal line, in the batch's `records`.

use sluice_core::{RequestRecord, RequestState};
use uuid::Uuid;

use crate::error::{Result, StoreError};
use crate::event_files::EventSpot;

/// Width of a batch's start-time bucket (µs): its requests started in the same one.
pub(crate) const SPAN_US: i64 = 10_000;
/// Width of a batch's id bucket, in units of an id's leading 48 bits (a UUIDv7's milliseconds).
const ID_SPAN: u64 = 10;
/// Suffix of a request id that sluice generated from its record's id (`sluice-proxy`'s handler).
const GENERATED_SUFFIX: &str = "-sluice";
/// Bytes of an entry's fixed header: id, start, state, status, latency, event spot, the
/// lengths of its method and path (which follow it), and where its record is in the batch's
/// `records` (offset and length).
const HEADER_LEN: usize = 16 + 8 + 1 + 2 + 8 + 3 * 8 + 4 + 4 + 4 + 4;

/// The id bucket of `id`.
pub(crate) fn id_bucket(id: Uuid) -> i64 {
    let b = id.as_bytes();
    let lead = u64::from_be_bytes([0, 0, b[0], b[1], b[2], b[3], b[4], b[5]]);
    (lead / ID_SPAN) as i64
}

/// The record id a request id names when sluice generated it (`<id in hex>-sluice`).
pub(crate) fn generated_id(request_id: &str) -> Option<Uuid> {
    let hex = request_id.strip_suffix(GENERATED_SUFFIX)?;
    (hex.len() == 32)
        .then(|| Uuid::try_parse(hex).ok())
        .flatten()
}

/// Whether `rec`'s request id is one sluice generated for it (it needs no key row).
fn is_generated(rec: &RequestRecord) -> bool {
    generated_id(&rec.request_id) == Some(rec.id)
}

/// Index of `state` in [`RequestState::ALL`], the order of the batch's count columns.
fn state_index(state: RequestState) -> usize {
    RequestState::ALL
        .iter()
        .position(|s| *s == state)
        .expect("every state is in ALL")
}

/// Appends `rec` with its event's `spot` to a batch's entry headers `out` and its records.
fn push_entry(
    out: &mut Vec<u8>,
    records: &mut Vec<u8>,
    rec: &RequestRecord,
    spot: Option<EventSpot>,
) {
    out.extend_from_slice(rec.id.as_bytes());
    out.extend_from_slice(&rec.started_at.to_le_bytes());
    out.push(state_index(rec.state) as u8);
    out.extend_from_slice(&rec.response_status.unwrap_or(0).to_le_bytes());
    out.extend_from_slice(&rec.latency_us.unwrap_or(i64::MIN).to_le_bytes());
    let spot = spot.unwrap_or(EventSpot {
        seg: -1,
        offset: 0,
        len: 0,
    });
    for v in [spot.seg, spot.offset, spot.len] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    // A request head is far under 4 GiB (hyper's buffer limit), as is a batch of records.
    let method_len = u32::try_from(rec.method.len()).expect("a method under 4 GiB");
    let path_len = u32::try_from(rec.path.len()).expect("a path under 4 GiB");
    out.extend_from_slice(&method_len.to_le_bytes());
    out.extend_from_slice(&path_len.to_le_bytes());
    let at = records.len();
    crate::journal_line::encode(rec, records);
    let offset = u32::try_from(at).expect("a batch under 4 GiB");
    let len = u32::try_from(records.len() - at).expect("a batch under 4 GiB");
    out.extend_from_slice(&offset.to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(rec.method.as_bytes());
    out.extend_from_slice(rec.path.as_bytes());
}

/// One request of a batch, read in place from its header; its record stays encoded in the
/// batch's `records`.
pub(crate) struct Entry<'a> {
    /// The record's id.
    pub id: Uuid,
    /// When it started.
    pub started_at: i64,
    /// Its outcome.
    pub state: RequestState,
    /// The sink's status, if any.
    pub status: Option<u16>,
    /// Its latency, if measured.
    pub latency_us: Option<i64>,
    /// Where its event is, if it has one.
    pub spot: Option<EventSpot>,
    /// Its method.
    pub method: &'a str,
    /// Its forwarded path.
    pub path: &'a str,
    /// Where its record is in the batch's `records`.
    pub record_at: (usize, usize),
}

impl Entry<'_> {
    /// The whole record, from the batch's `records`.
    pub fn record(&self, records: &[u8]) -> Result<RequestRecord> {
        decode(self.id, records, self.record_at)
    }
}

/// The record `id` from its journal line at `(offset, len)` in a batch's `records`.
pub(crate) fn decode(
    id: Uuid,
    records: &[u8],
    (offset, len): (usize, usize),
) -> Result<RequestRecord> {
    let json = records
        .get(offset..offset + len)
        .ok_or_else(|| StoreError::Corrupt(format!("a batched request {id} is cut short")))?;
    serde_json::from_slice(json)
        .map_err(|e| StoreError::Corrupt(format!("a batched request {id}: {e}")))
}

/// The entries of a batch's `heads`.
pub(crate) fn entries(mut rows: &[u8]) -> impl Iterator<Item = Result<Entry<'_>>> {
    std::iter::from_fn(move || {
        if rows.is_empty() {
            return None;
        }
        let entry = read_entry(&mut rows);
        if entry.is_err() {
            rows = &[];
        }
        Some(entry)
    })
}

/// Reads the entry at the front of `rows` and moves past it.
fn read_entry<'a>(rows: &mut &'a [u8]) -> Result<Entry<'a>> {
    let corrupt = || StoreError::Corrupt("a request batch ends inside an entry".into());
    if rows.len() < HEADER_LEN {
        return Err(corrupt());
    }
    let (head, rest) = rows.split_at(HEADER_LEN);
    let i64_at = |at: usize| i64::from_le_bytes(head[at..at + 8].try_into().expect("8 bytes"));
    let state = *RequestState::ALL
        .get(usize::from(head[24]))
        .ok_or_else(|| StoreError::Corrupt(format!("a batched state {}", head[24])))?;
    let status = u16::from_le_bytes([head[25], head[26]]);
    let latency = i64_at(27);
    let seg = i64_at(35);
    let u32_at = |at: usize| u32::from_le_bytes(head[at..at + 4].try_into().expect("4 bytes"));
    let (method_len, path_len) = (u32_at(59) as usize, u32_at(63) as usize);
    let record_at = (u32_at(67) as usize, u32_at(71) as usize);
    if rest.len() < method_len + path_len {
        return Err(corrupt());
    }
    let (method, rest) = rest.split_at(method_len);
    let (path, rest) = rest.split_at(path_len);
    *rows = rest;
    let text = |b| {
        std::str::from_utf8(b)
            .map_err(|_| StoreError::Corrupt("a batched text is not UTF-8".into()))
    };
    Ok(Entry {
        id: Uuid::from_slice(&head[..16]).expect("16 bytes"),
        started_at: i64_at(16),
        state,
        status: (status != 0).then_some(status),
        latency_us: (latency != i64::MIN).then_some(latency),
        spot: (seg >= 0).then(|| EventSpot {
            seg,
            offset: i64_at(43),
            len: i64_at(51),
        }),
        method: text(method)?,
        path: text(path)?,
        record_at,
    })
}

/// One batch row being built by the history writer.
pub(crate) struct Batch<'a> {
    /// The channel of its requests.
    pub channel_id: Uuid,
    start_bucket: i64,
    /// The id bucket of its requests.
    pub id_bucket: i64,
    /// Earliest start among its requests.
    pub first_started: i64,
    /// Latest start among its requests.
    pub last_started: i64,
    /// Least id among its requests.
    pub min_id: Uuid,
    /// Greatest id among its requests.
    pub max_id: Uuid,
    /// Its requests per state, in the order of [`RequestState::ALL`].
    pub counts: [i64; 5],
    /// Its entries' headers.
    pub heads: Vec<u8>,
    /// Its entries' records.
    pub records: Vec<u8>,
    /// The callers' own request ids among its requests.
    pub keys: Vec<&'a str>,
}

impl Batch<'_> {
    /// Its number of requests.
    pub fn len(&self) -> i64 {
        self.counts.iter().sum()
    }
}

/// The batches of one commit, grouped by channel and buckets.
#[derive(Default)]
pub(crate) struct Batches<'a> {
    batches: Vec<Batch<'a>>,
}

impl<'a> Batches<'a> {
    /// Adds a finished request and its event's spot.
    pub fn push(&mut self, rec: &'a RequestRecord, spot: Option<EventSpot>) {
        let (start_bucket, ids) = (rec.started_at.div_euclid(SPAN_US), id_bucket(rec.id));
        // Most requests of a commit share their channel's newest batch: look from the end.
        let at = self.batches.iter().rposition(|b| {
            b.channel_id == rec.channel_id && b.start_bucket == start_bucket && b.id_bucket == ids
        });
        let b = match at {
            Some(i) => &mut self.batches[i],
            None => {
                self.batches.push(Batch {
                    channel_id: rec.channel_id,
                    start_bucket,
                    id_bucket: ids,
                    first_started: rec.started_at,
                    last_started: rec.started_at,
                    min_id: rec.id,
                    max_id: rec.id,
                    counts: [0; 5],
                    heads: Vec::with_capacity(128),
                    records: Vec::with_capacity(512),
                    keys: Vec::new(),
                });
                self.batches.last_mut().expect("just pushed")
            }
        };
        b.first_started = b.first_started.min(rec.started_at);
        b.last_started = b.last_started.max(rec.started_at);
        b.min_id = b.min_id.min(rec.id);
        b.max_id = b.max_id.max(rec.id);
        b.counts[state_index(rec.state)] += 1;
        push_entry(&mut b.heads, &mut b.records, rec, spot);
        if !is_generated(rec) {
            b.keys.push(&rec.request_id);
        }
    }

    /// The batches built.
    pub fn into_vec(self) -> Vec<Batch<'a>> {
        self.batches
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::pending_record;

    fn finished(path: &str, started_at: i64, status: u16) -> RequestRecord {
        let mut r = pending_record(path);
        r.started_at = started_at;
        r.state = RequestState::from_status(status);
        r.response_status = Some(status);
        r.latency_us = Some(1_234);
        r
    }

    #[test]
    fn entries_read_back_their_headers_records_and_spots() {
        let a = finished("/a", 10, 201);
        let mut b = finished("/b \"quoted\"", 11, 503);
        b.latency_us = None;
        let spot = EventSpot {
            seg: 3,
            offset: 4096,
            len: 77,
        };
        let (mut heads, mut records) = (Vec::new(), Vec::new());
        push_entry(&mut heads, &mut records, &a, Some(spot));
        push_entry(&mut heads, &mut records, &b, None);
        let read: Vec<Entry<'_>> = entries(&heads).collect::<Result<_>>().unwrap();
        assert_eq!(read.len(), 2);
        assert_eq!(
            (
                read[0].id,
                read[0].started_at,
                read[0].state,
                read[0].status
            ),
            (a.id, 10, RequestState::Success, Some(201))
        );
        assert_eq!(
            (read[0].latency_us, read[0].spot),
            (Some(1_234), Some(spot))
        );
        assert_eq!(read[0].record(&records).unwrap(), a);
        assert_eq!(
            (read[1].state, read[1].latency_us, read[1].spot),
            (RequestState::Failed, None, None)
        );
        assert_eq!(read[1].record(&records).unwrap(), b);
        assert_eq!(
            (read[1].method, read[1].path),
            (b.method.as_str(), "/b \"quoted\"")
        );
        // A batch cut short is an error, not a silently shorter history.
        let cut = entries(&heads[..heads.len() - 1]).collect::<Result<Vec<_>>>();
        assert!(matches!(cut, Err(StoreError::Corrupt(_))));
        let short = read[1].record(&records[..records.len() - 1]);
        assert!(matches!(short, Err(StoreError::Corrupt(_))));
    }

    #[test]
    fn a_commit_splits_into_batches_by_channel_and_start_bucket() {
        let mut a = finished("/a", 5 * SPAN_US + 1, 200);
        let mut b = finished("/b", 5 * SPAN_US + 9, 500);
        b.channel_id = a.channel_id;
        let mut slow = finished("/slow", 3 * SPAN_US, 200);
        slow.channel_id = a.channel_id;
        let mut other = finished("/other", 5 * SPAN_US + 2, 200);
        other.channel_id = Uuid::now_v7();
        // Ids of one millisecond: only the channels and the start times split the commit.
        for (n, r) in [&mut a, &mut b, &mut slow, &mut other]
            .into_iter()
            .enumerate()
        {
            r.id = Uuid::from_u128((1_700_000_000_000u128 << 80) | n as u128);
        }
        let mut batches = Batches::default();
        for r in [&a, &slow, &other, &b] {
            batches.push(r, None);
        }
        let batches = batches.into_vec();
        assert_eq!(batches.len(), 3);
        let first = &batches[0];
        assert_eq!((first.channel_id, first.len()), (a.channel_id, 2));
        assert_eq!(
            (first.first_started, first.last_started),
            (a.started_at, b.started_at)
        );
        assert_eq!(first.counts[state_index(RequestState::Failed)], 1);
        assert_eq!(
            (first.min_id, first.max_id),
            (a.id.min(b.id), a.id.max(b.id))
        );
        assert_eq!(batches[1].first_started, 3 * SPAN_US);
        assert_eq!(batches[2].channel_id, other.channel_id);
    }

    #[test]
    fn generated_request_ids_name_their_record_and_callers_ids_get_keys() {
        let mut r = finished("/a", 1, 200);
        r.request_id = format!("{}-sluice", r.id.simple());
        assert_eq!(generated_id(&r.request_id), Some(r.id));
        assert!(is_generated(&r));
        let mut caller = finished("/b", 2, 200);
        caller.channel_id = r.channel_id;
        caller.request_id = format!("{}-sluice", r.id.simple());
        assert!(
            !is_generated(&caller),
            "another record's id, supplied by a caller"
        );
        assert_eq!(generated_id("order-42"), None);
        let mut batches = Batches::default();
        batches.push(&r, None);
        batches.push(&caller, None);
        let keys: Vec<&str> = batches
            .into_vec()
            .into_iter()
            .flat_map(|b| b.keys)
            .collect();
        assert_eq!(keys, vec![caller.request_id.as_str()]);
    }
}
