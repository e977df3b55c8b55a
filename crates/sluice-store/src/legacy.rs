//! Reading the SQLite ledger formats before the plain ledger, for the upgrade that imports
//! them (`crate::upgrade`): request batches (many finished requests to a row of
//! `request_batches`, migration 0008) and event files (`<ledger>-events/<channel>/<n>.events`,
//! a frame of `crate::event_codec` per event, migration 0006).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use sluice_core::{EventRecord, RequestRecord};
use uuid::Uuid;

use crate::error::{Result, StoreError};

/// Bytes of a batch entry's fixed header: id, start, state, status, latency, event spot, the
/// lengths of its method and path (which follow it), and where its record is in the batch's
/// `records` (offset and length).
const HEADER_LEN: usize = 16 + 8 + 1 + 2 + 8 + 3 * 8 + 4 + 4 + 4 + 4;

/// The event directory beside the ledger file `main` (`sluice.db` → `sluice-events`).
pub(crate) fn events_dir(main: &Path) -> PathBuf {
    crate::db::beside(main, "-events")
}

/// Where an event's frame is in its channel's files.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EventSpot {
    pub seg: i64,
    pub offset: i64,
    pub len: i64,
}

/// The requests of a batch row, each with where its event is: its `heads` are fixed headers
/// (the record's place in `records`, a journal line, at bytes 67..75; the event's spot at
/// 35..59, a negative segment for none), each followed by its method and path.
pub(crate) fn batch_requests(
    mut heads: &[u8],
    records: &[u8],
) -> Result<Vec<(RequestRecord, Option<EventSpot>)>> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("a request batch: {what}"));
    let mut out = Vec::new();
    while !heads.is_empty() {
        if heads.len() < HEADER_LEN {
            return Err(corrupt("ends inside an entry"));
        }
        let (head, rest) = heads.split_at(HEADER_LEN);
        let i64_at = |at: usize| i64::from_le_bytes(head[at..at + 8].try_into().expect("8"));
        let u32_at = |at: usize| u32::from_le_bytes(head[at..at + 4].try_into().expect("4"));
        let texts = u32_at(59) as usize + u32_at(63) as usize;
        let (offset, len) = (u32_at(67) as usize, u32_at(71) as usize);
        heads = rest
            .get(texts..)
            .ok_or_else(|| corrupt("ends inside a path"))?;
        let line = records
            .get(offset..offset + len)
            .ok_or_else(|| corrupt("a record is cut short"))?;
        let rec: RequestRecord =
            serde_json::from_slice(line).map_err(|e| corrupt(&e.to_string()))?;
        let seg = i64_at(35);
        let spot = (seg >= 0).then(|| EventSpot {
            seg,
            offset: i64_at(43),
            len: i64_at(51),
        });
        out.push((rec, spot));
    }
    Ok(out)
}

/// Reads the event at `spot` among `channel`'s files in `dir` (an [`events_dir`]).
pub(crate) fn read_event(dir: &Path, channel: Uuid, spot: EventSpot) -> io::Result<EventRecord> {
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "negative event spot");
    let offset = u64::try_from(spot.offset).map_err(|_| bad())?;
    let len = usize::try_from(spot.len).map_err(|_| bad())?;
    let seg = u64::try_from(spot.seg).map_err(|_| bad())?;
    let path = dir
        .join(channel.to_string())
        .join(format!("{seg:010}.events"));
    let mut frame = vec![0; len];
    File::open(path)?.read_exact_at(&mut frame, offset)?;
    crate::event_codec::decode(&frame)
}
