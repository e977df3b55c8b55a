//! The journal of requests in flight on a SQLite ledger.
//!
//! A request's `pending` record must be durable before a byte goes to the sink. The journal
//! keeps that promise with an append: each record is one JSON line, and the records queued
//! together are written by one `write` call. This is group commit without a writer thread:
//! whichever request finds the file free writes every queued line, and the others find theirs
//! already written. A transaction in a SQLite file of its own, committed by a thread of its
//! own, cost about a fifth of the gateway's CPU per request (docs/BENCHMARKS.md, step 13).
//!
//! The guarantee is the one SQLite's WAL gives with `synchronous = NORMAL`. Once `write`
//! returns, the bytes belong to the operating system, so a crashed process loses nothing. A
//! power loss may lose the last moments, as it may lose the WAL's last commits.
//!
//! A record leaves the journal when its completion has committed in the ledger file
//! (`Journal::settle`). The journal is a series of segment files in one directory. A segment
//! past `SEGMENT_BYTES` is sealed and deleted once none of its requests is in flight. The
//! active segment is emptied whenever nothing is in flight. A clean stop leaves no segment
//! behind. A start after a crash reads what is left (`leftovers`), and the store closes
//! those requests as `interrupted`.
//!
//! `Journal::settle` and `Journal::in_flight` are called by one thread only, the history
//! writer. Segments are deleted only there, so a segment that `in_flight` reads cannot vanish
//! under it.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use sluice_core::RequestRecord;
use uuid::Uuid;

/// Size past which the active segment is sealed and a new one begun.
const SEGMENT_BYTES: u64 = 8 << 20;
/// Refused batches remembered for the requests that queued into them.
const FAILURES_KEPT: usize = 64;
/// File name extension of a segment.
const SEGMENT_EXT: &str = "jsonl";

/// The journal directory beside the ledger file `main` (`sluice.db` → `sluice-journal`).
pub fn journal_dir(main: &Path) -> PathBuf {
    let stem = main
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "ledger".into());
    main.with_file_name(format!("{stem}-journal"))
}

/// The journal of one running ledger.
pub(crate) struct Journal {
    queue: Mutex<Queue>,
    active: Mutex<Active>,
    batch_size: metrics::Histogram,
    write_seconds: metrics::Histogram,
}

/// Lines waiting for the next write.
#[derive(Default)]
struct Queue {
    /// One JSON line per record, in ticket order.
    lines: Vec<u8>,
    /// The requests those lines belong to.
    entries: Vec<Queued>,
    /// The last ticket handed out; tickets are consecutive.
    last: u64,
}

/// A queued request: its id and the length of its line.
struct Queued {
    id: Uuid,
    len: u32,
}

/// The segment being written, and what is in flight.
struct Active {
    dir: PathBuf,
    file: File,
    seg: u64,
    len: u64,
    /// Size past which the segment is sealed.
    segment_bytes: u64,
    /// Every ticket up to this one has been written or refused.
    decided: u64,
    /// Recently refused batches: first and last ticket, and why.
    failures: VecDeque<(u64, u64, Arc<str>)>,
    /// Requests written and not yet settled.
    live: HashMap<Uuid, Spot>,
    /// Live requests per segment.
    per_segment: BTreeMap<u64, usize>,
    /// Empty buffers traded with the queue's, so a write allocates nothing.
    spare_lines: Vec<u8>,
    spare_entries: Vec<Queued>,
}

/// Where a live request's line is.
#[derive(Clone, Copy)]
struct Spot {
    seg: u64,
    offset: u64,
    len: u32,
}

impl Journal {
    /// Opens a new segment in the journal of the ledger file `main`. Segments left by an
    /// earlier run are not touched: [`leftovers`] reads them.
    pub(crate) fn open(main: &Path) -> io::Result<Self> {
        Self::open_sized(main, SEGMENT_BYTES)
    }

    /// [`Journal::open`], sealing segments at `segment_bytes`.
    fn open_sized(main: &Path, segment_bytes: u64) -> io::Result<Self> {
        let dir = journal_dir(main);
        std::fs::create_dir_all(&dir)?;
        let seg = segments(&dir)?.last().map_or(0, |(n, _)| *n) + 1;
        let file = create_segment(&dir, seg)?;
        Ok(Self {
            queue: Mutex::new(Queue::default()),
            active: Mutex::new(Active {
                dir,
                file,
                seg,
                len: 0,
                segment_bytes,
                decided: 0,
                failures: VecDeque::new(),
                live: HashMap::new(),
                per_segment: BTreeMap::new(),
                spare_lines: Vec::new(),
                spare_entries: Vec::new(),
            }),
            batch_size: metrics::histogram!("sluice_ledger_batch_size", "writer" => "journal"),
            write_seconds: metrics::histogram!("sluice_ledger_commit_seconds", "writer" => "journal"),
        })
    }

    /// Appends `rec`; returns once its line (and whatever else was queued) is written.
    /// When a write fails, the request that made it calls `refused` with the error and the
    /// number of requests refused with it, and every one of them gets the error.
    pub(crate) fn append(
        &self,
        rec: &RequestRecord,
        refused: impl FnOnce(&str, usize),
    ) -> Result<(), Arc<str>> {
        let ticket = {
            let mut q = self.queue.lock();
            let start = q.lines.len();
            if let Err(e) = serde_json::to_writer(&mut q.lines, rec) {
                q.lines.truncate(start);
                return Err(format!("encoding the pending record: {e}").into());
            }
            q.lines.push(b'\n');
            let len = (q.lines.len() - start) as u32;
            q.entries.push(Queued { id: rec.id, len });
            q.last += 1;
            q.last
        };
        let mut a = self.active.lock();
        if a.decided < ticket {
            let started = Instant::now();
            let a = &mut *a;
            // Take every queued line, leaving the emptied buffers of the last write in place.
            let (mut lines, mut entries, last) = {
                let mut q = self.queue.lock();
                let lines = std::mem::replace(&mut q.lines, std::mem::take(&mut a.spare_lines));
                let entries =
                    std::mem::replace(&mut q.entries, std::mem::take(&mut a.spare_entries));
                (lines, entries, q.last)
            };
            let n = entries.len();
            if let Err(e) = a.write(&lines, &entries) {
                refused(&e, n);
                a.failures.push_back((last + 1 - n as u64, last, e.into()));
                if a.failures.len() > FAILURES_KEPT {
                    a.failures.pop_front();
                }
            }
            a.decided = last;
            lines.clear();
            entries.clear();
            a.spare_lines = lines;
            a.spare_entries = entries;
            self.batch_size.record(n as f64);
            self.write_seconds.record(started.elapsed().as_secs_f64());
        }
        match a
            .failures
            .iter()
            .rev()
            .find(|(first, last, _)| (*first..=*last).contains(&ticket))
        {
            Some((_, _, e)) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// Forgets requests whose completion has committed, deleting segments left with none.
    pub(crate) fn settle(&self, ids: impl IntoIterator<Item = Uuid>) {
        let mut a = self.active.lock();
        for id in ids {
            let Some(spot) = a.live.remove(&id) else {
                continue;
            };
            let left = a.per_segment.get_mut(&spot.seg).map(|n| {
                *n -= 1;
                *n
            });
            if left == Some(0) {
                a.per_segment.remove(&spot.seg);
                if spot.seg != a.seg {
                    remove_segment(&a.dir, spot.seg);
                }
            }
        }
        if a.live.is_empty() && a.len > 0 {
            // Nothing in flight: the active segment starts over, so an idle journal is empty.
            match a.file.set_len(0) {
                Ok(()) => a.len = 0,
                Err(e) => tracing::warn!(error = %e, "could not empty the journal segment"),
            }
        }
    }

    /// The requests in flight that are not in `skip`, read back from their segments.
    pub(crate) fn in_flight(&self, skip: &HashSet<Uuid>) -> Vec<RequestRecord> {
        let (dir, mut spots): (PathBuf, Vec<Spot>) = {
            let a = self.active.lock();
            let spots = a
                .live
                .iter()
                .filter(|(id, _)| !skip.contains(*id))
                .map(|(_, s)| *s)
                .collect();
            (a.dir.clone(), spots)
        };
        spots.sort_unstable_by_key(|s| (s.seg, s.offset));
        let mut out = Vec::with_capacity(spots.len());
        let mut open: Option<(u64, File)> = None;
        for s in spots {
            if open.as_ref().map(|(seg, _)| *seg) != Some(s.seg) {
                open = match File::open(segment_path(&dir, s.seg)) {
                    Ok(f) => Some((s.seg, f)),
                    Err(e) => {
                        tracing::warn!(error = %e, "could not open a journal segment");
                        None
                    }
                };
            }
            let Some((_, file)) = &open else { continue };
            let mut line = vec![0; s.len as usize];
            let read = file.read_exact_at(&mut line, s.offset);
            match read.map(|()| serde_json::from_slice::<RequestRecord>(&line)) {
                Ok(Ok(rec)) => out.push(rec),
                Ok(Err(e)) => tracing::warn!(error = %e, "unreadable line in the journal"),
                Err(e) => tracing::warn!(error = %e, "could not read the journal"),
            }
        }
        out
    }
}

impl Active {
    /// Writes one batch of lines and registers its requests; on failure cuts the segment back
    /// to where it was, so the next batch starts on a line of its own.
    fn write(&mut self, lines: &[u8], entries: &[Queued]) -> Result<(), String> {
        if let Err(e) = self.file.write_all(lines) {
            if let Err(cut) = self.file.set_len(self.len) {
                tracing::warn!(error = %cut, "could not cut a failed journal write back");
            }
            return Err(format!("writing the journal: {e}"));
        }
        let mut offset = self.len;
        for q in entries {
            self.live.insert(
                q.id,
                Spot {
                    seg: self.seg,
                    offset,
                    len: q.len,
                },
            );
            offset += u64::from(q.len);
        }
        *self.per_segment.entry(self.seg).or_default() += entries.len();
        self.len = offset;
        if self.len >= self.segment_bytes {
            self.rotate();
        }
        Ok(())
    }

    /// Seals the active segment and begins the next; a full segment with nothing in flight
    /// is deleted at once. If the next cannot be created, writing goes on in this one.
    fn rotate(&mut self) {
        let next = self.seg + 1;
        match create_segment(&self.dir, next) {
            Ok(file) => {
                let sealed = std::mem::replace(&mut self.seg, next);
                self.file = file;
                self.len = 0;
                if !self.per_segment.contains_key(&sealed) {
                    remove_segment(&self.dir, sealed);
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not begin a new journal segment"),
        }
    }
}

impl Drop for Journal {
    /// A journal with nothing in flight (a clean stop) removes its segments.
    fn drop(&mut self) {
        let a = self.active.get_mut();
        if a.live.is_empty() {
            remove_segment(&a.dir, a.seg);
        }
    }
}

fn segment_path(dir: &Path, seg: u64) -> PathBuf {
    dir.join(format!("{seg:020}.{SEGMENT_EXT}"))
}

fn create_segment(dir: &Path, seg: u64) -> io::Result<File> {
    OpenOptions::new()
        .append(true)
        .create_new(true)
        .open(segment_path(dir, seg))
}

fn remove_segment(dir: &Path, seg: u64) {
    if let Err(e) = std::fs::remove_file(segment_path(dir, seg)) {
        tracing::warn!(error = %e, segment = seg, "could not remove a journal segment");
    }
}

/// The segments in `dir`, by number.
fn segments(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) != Some(SEGMENT_EXT) {
            continue;
        }
        if let Some(n) = path
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| s.parse().ok())
        {
            found.push((n, path));
        }
    }
    found.sort();
    Ok(found)
}

/// What a stopped process left in the journal of the ledger file `main`: the records of every
/// segment (a request may appear although it finished: the ledger file decides), and the
/// segment files, to delete once those requests are closed. A line cut short by the crash is
/// skipped.
pub(crate) fn leftovers(main: &Path) -> io::Result<(Vec<RequestRecord>, Vec<PathBuf>)> {
    let dir = journal_dir(main);
    if !dir.is_dir() {
        return Ok((Vec::new(), Vec::new()));
    }
    let mut records = Vec::new();
    let mut files = Vec::new();
    for (_, path) in segments(&dir)? {
        let text = std::fs::read(&path)?;
        for line in text.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            match serde_json::from_slice(line) {
                Ok(rec) => records.push(rec),
                Err(e) => {
                    tracing::warn!(error = %e, file = %path.display(), "skipped a cut-off journal line")
                }
            }
        }
        files.push(path);
    }
    Ok((records, files))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::RequestState;

    /// A ledger path in a fresh temporary directory, removed on drop.
    struct Scratch(PathBuf);
    impl Scratch {
        fn new() -> Self {
            let dir = std::env::temp_dir().join(format!("sluice-journal-{}", Uuid::new_v4()));
            std::fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }
        fn main(&self) -> PathBuf {
            self.0.join("sluice.db")
        }
        fn segment_files(&self) -> Vec<PathBuf> {
            segments(&journal_dir(&self.main()))
                .unwrap()
                .into_iter()
                .map(|(_, p)| p)
                .collect()
        }
    }
    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn record(path: &str) -> RequestRecord {
        RequestRecord {
            id: Uuid::now_v7(),
            request_id: format!("req-{}", Uuid::new_v4().simple()),
            channel_id: Uuid::now_v7(),
            snapshot_id: Uuid::now_v7(),
            state: RequestState::Pending,
            started_at: 1_700_000_000_000_000,
            completed_at: None,
            client_identity: "127.0.0.1".into(),
            source_auth_method_id: None,
            source_auth_type: None,
            method: "POST".into(),
            path: path.into(),
            query: Some("a=1".into()),
            response_status: None,
            error: None,
            latency_us: None,
            ttfb_us: None,
            request_body_size: None,
            response_body_size: None,
        }
    }

    fn append(j: &Journal, rec: &RequestRecord) {
        j.append(rec, |e, _| panic!("refused: {e}")).unwrap();
    }

    fn paths(mut recs: Vec<RequestRecord>) -> Vec<String> {
        recs.sort_by_key(|r| r.id);
        recs.into_iter().map(|r| r.path).collect()
    }

    #[test]
    fn appended_records_read_back_until_settled_and_a_clean_stop_leaves_nothing() {
        let s = Scratch::new();
        let j = Journal::open(&s.main()).unwrap();
        let (a, b) = (record("/a"), record("/b"));
        append(&j, &a);
        append(&j, &b);
        assert_eq!(paths(j.in_flight(&HashSet::new())), ["/a", "/b"]);
        assert_eq!(
            paths(j.in_flight(&HashSet::from([a.id]))),
            ["/b"],
            "skipped ids are not read"
        );
        j.settle([a.id]);
        assert_eq!(paths(j.in_flight(&HashSet::new())), ["/b"]);
        j.settle([b.id]);
        assert!(j.in_flight(&HashSet::new()).is_empty());
        let files = s.segment_files();
        assert_eq!(files.len(), 1);
        assert_eq!(
            std::fs::metadata(&files[0]).unwrap().len(),
            0,
            "an idle journal is empty"
        );
        drop(j);
        assert!(
            s.segment_files().is_empty(),
            "a clean stop removes the segment"
        );
    }

    #[test]
    fn full_segments_are_sealed_and_removed_once_nothing_in_them_is_in_flight() {
        let s = Scratch::new();
        let j = Journal::open_sized(&s.main(), 1_000).unwrap();
        let recs: Vec<RequestRecord> = (0..12).map(|i| record(&format!("/{i:02}"))).collect();
        for r in &recs {
            append(&j, r);
        }
        let sealed = s.segment_files().len();
        assert!(
            sealed >= 3,
            "12 records of ~400 bytes fill several segments: {sealed}"
        );
        // Settle all but the last record: only the segment holding it (and the active one) stay.
        j.settle(recs[..11].iter().map(|r| r.id));
        assert!(s.segment_files().len() <= 2, "{:?}", s.segment_files());
        assert_eq!(paths(j.in_flight(&HashSet::new())), ["/11"]);
        // The process stops with /11 in flight: its segment stays for the next start.
        drop(j);
        let (left, files) = leftovers(&s.main()).unwrap();
        assert!(left.iter().any(|r| r.id == recs[11].id));
        assert!(
            left.iter().all(|r| r.id != recs[0].id),
            "settled segments are gone"
        );
        assert_eq!(files, s.segment_files());
    }

    #[test]
    fn a_line_cut_off_by_a_crash_is_skipped_and_a_new_run_starts_a_new_segment() {
        let s = Scratch::new();
        let j = Journal::open(&s.main()).unwrap();
        let kept = record("/kept");
        append(&j, &kept);
        std::mem::forget(j); // a crash: nothing runs on the way out
        let files = s.segment_files();
        assert_eq!(files.len(), 1);
        let mut f = OpenOptions::new().append(true).open(&files[0]).unwrap();
        f.write_all(br#"{"id":"0190"#).unwrap();
        let j = Journal::open(&s.main()).unwrap();
        assert_eq!(s.segment_files().len(), 2, "the old segment is left alone");
        let (left, files) = leftovers(&s.main()).unwrap();
        assert_eq!(paths(left), ["/kept"]);
        assert_eq!(files.len(), 2);
        drop(j);
    }

    #[test]
    fn concurrent_appends_are_all_written_once() {
        let s = Scratch::new();
        let j = Arc::new(Journal::open(&s.main()).unwrap());
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let j = j.clone();
                std::thread::spawn(move || {
                    (0..200)
                        .map(|i| {
                            let r = record(&format!("/{t}/{i}"));
                            append(&j, &r);
                            r.id
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let ids: HashSet<Uuid> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        let back = j.in_flight(&HashSet::new());
        assert_eq!(back.len(), 1600);
        assert_eq!(back.iter().map(|r| r.id).collect::<HashSet<_>>(), ids);
        let text = std::fs::read_to_string(&s.segment_files()[0]).unwrap();
        assert_eq!(text.lines().count(), 1600, "one line per record, none torn");
    }
}
