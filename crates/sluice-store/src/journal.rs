//! The journal of requests in flight on a SQLite ledger.
//!
//! A request's `pending` record must be durable before a byte goes to the sink. The journal
//! keeps that promise by copying the record, as one JSON line (`crate::journal_line`), into a
//! segment file mapped into memory. A request takes its place in the segment under a short
//! lock and copies its own line outside it: no system call, and no request waits for
//! another's write. When each request wrote its line with `write`, the file system's write
//! path cost about 9% of the gateway's throughput (docs/BENCHMARKS.md, step 17).
//!
//! A segment's disk blocks are reserved when it is created (`posix_fallocate`), so a copy never
//! needs new room on the disk. A full disk shows when a segment cannot be created: the
//! requests that need it are refused. The history thread creates the next segment ahead of
//! need (`Journal::prepare`), so a request rarely waits for one.
//!
//! The guarantee is the one SQLite's WAL gives with `synchronous = NORMAL`. Once the line is
//! copied, the bytes are in the operating system's page cache, so a crashed process loses
//! nothing. A power loss may lose the last moments, as it may lose the WAL's last commits.
//!
//! When the exchange ends, its completion (the finished record, without its event) is
//! appended the same way, before the caller is sent the end of the answer, so a crashed
//! process loses no outcome: the next start writes the completions it finds and closes only
//! the requests without one as `interrupted`. A segment begins with a header line naming the
//! format's version (`{"sluice_journal":2}`); a pending record is its JSON line, a completion
//! the line `{"completed":<record>}`. The event waits for the row, and so does a reader asking
//! for that one request (`Journal::until_settled`), which is never shown finished without its
//! headers. A segment without the header is a version 1 segment, of pending records only.
//!
//! A request leaves the journal when its completion has committed in the ledger file
//! (`Journal::settle`). A full segment is sealed, and once none of its requests is in flight it
//! is retired: renamed out of the segments' names, then zeroed and named again as the next
//! segment (`Journal::prepare`). The active segment is zeroed whenever none of its requests
//! is. A clean stop leaves no segment behind. A start after a crash reads what is left
//! (`leftovers`), and the store closes those requests as `interrupted`.
//!
//! `Journal::settle` and `Journal::prepare` are called by the history writer only. Readers of
//! the store call `Journal::in_flight` from any thread: a segment may be retired under it, so a
//! line read back is kept only if it is the request that was asked for.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use memmap2::{Advice, MmapOptions, MmapRaw};
use parking_lot::Mutex;
use sluice_core::RequestRecord;
use uuid::Uuid;

/// Size of a segment: its disk blocks are reserved up front, and the requests past it wait
/// for the next segment (a line longer than this gets a segment of its own size).
const SEGMENT_BYTES: u64 = 4 << 20;
/// File name extension of a segment.
const SEGMENT_EXT: &str = "jsonl";
/// Capacity a thread's line buffer keeps between appends (a longer line's is given back).
const LINE_KEPT: usize = 4 << 10;

/// The first line of every segment of this version.
const HEADER: &[u8] = b"{\"sluice_journal\":2}\n";

thread_local! {
    /// The thread's buffer a line is encoded into before it is copied into the segment. A
    /// new buffer per request cost an allocation and a reallocation (most lines pass 512
    /// bytes): ~550 instructions per request (docs/BENCHMARKS.md, step 31).
    static LINE: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(LINE_KEPT));
}

/// The journal directory beside the ledger file `main` (`sluice.db` → `sluice-journal`).
pub fn journal_dir(main: &Path) -> PathBuf {
    crate::db::beside(main, "-journal")
}

/// The journal of one running ledger.
pub(crate) struct Journal {
    active: Mutex<Active>,
    append_seconds: metrics::Histogram,
    /// Woken after each [`Journal::settle`], for readers waiting for a row to commit.
    settled: tokio::sync::Notify,
    /// The ledger file refuses completions (no room left): new requests are refused until a
    /// commit succeeds again.
    stuck: std::sync::atomic::AtomicBool,
}

/// The segment being written, and what is in flight.
struct Active {
    dir: PathBuf,
    /// The active segment's number; with none, the number before the next one's.
    seg: u64,
    /// The active segment (none while the disk had no room for it); a copy under way holds
    /// the mapping too.
    map: Option<Arc<MmapRaw>>,
    /// Bytes of the active segment handed out.
    len: u64,
    /// Size of a new segment.
    segment_bytes: u64,
    /// Segment `seg + 1`, created ahead of need.
    spare: Option<Arc<MmapRaw>>,
    /// Requests with a line written and not yet settled (foldhash: std's SipHash cost ~160
    /// instructions per lookup, two per request).
    live: foldhash::HashMap<Uuid, Lines>,
    /// Lines per segment not yet settled.
    per_segment: BTreeMap<u64, usize>,
}

/// Where a live request's lines are.
#[derive(Clone, Copy, Default)]
struct Lines {
    pending: Option<Spot>,
    completed: Option<Spot>,
}

/// What a stopped process left in the journal for one request.
#[derive(Debug)]
pub(crate) enum Leftover {
    /// Only its pending record: it was in flight.
    Pending(RequestRecord),
    /// Its completion: the exchange had ended (its outcome, without its event).
    Completed(RequestRecord),
}

impl Leftover {
    /// The request it is about.
    pub(crate) fn record(&self) -> &RequestRecord {
        match self {
            Leftover::Pending(r) | Leftover::Completed(r) => r,
        }
    }
}

/// Where a live request's line is.
#[derive(Clone, Copy)]
struct Spot {
    seg: u64,
    offset: u64,
    len: u32,
}

impl Journal {
    /// Opens a new segment in the journal of the ledger file `main` (or, when the disk has no
    /// room for it, leaves it to the first request). Segments left by an earlier run are not
    /// touched: [`leftovers`] reads them.
    pub(crate) fn open(main: &Path) -> io::Result<Self> {
        Self::open_sized(main, SEGMENT_BYTES)
    }

    /// [`Journal::open`], with segments of `segment_bytes`.
    fn open_sized(main: &Path, segment_bytes: u64) -> io::Result<Self> {
        let dir = journal_dir(main);
        std::fs::create_dir_all(&dir)?;
        let seg = segments(&dir)?.last().map_or(0, |(n, _)| *n) + 1;
        let (seg, map) = match create_segment(&dir, seg, segment_bytes) {
            Ok(map) => (seg, Some(map)),
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => {
                tracing::warn!(error = %e, "no room for the ledger journal yet");
                (seg - 1, None)
            }
            Err(e) => return Err(e),
        };
        Ok(Self {
            active: Mutex::new(Active {
                dir,
                seg,
                map,
                len: 0,
                segment_bytes,
                spare: None,
                live: foldhash::HashMap::default(),
                per_segment: BTreeMap::new(),
            }),
            append_seconds: metrics::histogram!("sluice_ledger_commit_seconds", "writer" => "journal"),
            settled: tokio::sync::Notify::new(),
            stuck: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Appends `rec`, a pending record; returns once its line is in the journal, or why it
    /// cannot be (no segment could be created for it).
    pub(crate) fn append(&self, rec: &RequestRecord) -> Result<(), String> {
        self.append_line(rec.id, false, |line| crate::journal_line::encode(rec, line))
    }

    /// Appends the completion of `rec` (finished): its outcome. The event (headers, previews,
    /// digests) is not journaled: copying it cost a proxy thread about a third more time per
    /// request (docs/BENCHMARKS.md, "The plain ledger"), so a crash before the row commits
    /// keeps the request's outcome and loses its event.
    pub(crate) fn append_completion(&self, rec: &RequestRecord) -> Result<(), String> {
        self.append_line(rec.id, true, |line| {
            line.extend_from_slice(b"{\"completed\":");
            crate::journal_line::encode(rec, line);
            line.push(b'}');
        })
    }

    /// Encodes a line of request `id` with `encode` and copies it into the journal.
    fn append_line(
        &self,
        id: Uuid,
        completed: bool,
        encode: impl FnOnce(&mut Vec<u8>),
    ) -> Result<(), String> {
        let started = Instant::now();
        let spot = LINE.with_borrow_mut(|line| {
            line.clear();
            encode(line);
            line.push(b'\n');
            let (seg, map, offset) = self.active.lock().reserve(line.len() as u64)?;
            // SAFETY: `reserve` handed `offset..offset + line.len()` of this mapping to this
            // call alone, inside the mapping's length, and `map` keeps the mapping alive.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    line.as_ptr(),
                    map.as_mut_ptr().add(offset as usize),
                    line.len(),
                );
            }
            let len = line.len() as u32;
            line.shrink_to(LINE_KEPT);
            Ok::<_, String>(Spot { seg, offset, len })
        })?;
        let mut a = self.active.lock();
        let lines = a.live.entry(id).or_default();
        let replaced = if completed {
            lines.completed.replace(spot)
        } else {
            lines.pending.replace(spot)
        };
        if let Some(old) = replaced {
            a.release(old);
        }
        drop(a);
        self.append_seconds.record(started.elapsed().as_secs_f64());
        Ok(())
    }

    /// Creates the next segment if it is not there yet, so that requests find it ready.
    ///
    /// Creating one (reserving its blocks, mapping it, faulting its pages in) takes a few
    /// hundred µs, so it is done outside the lock that every append takes, under a name that
    /// is not a segment's; only the rename to its number happens under the lock. A request
    /// that rotates meanwhile creates its own next segment, and the staged one becomes the one
    /// after it.
    pub(crate) fn prepare(&self) {
        let (dir, segment_bytes) = {
            let a = self.active.lock();
            if a.spare.is_some() {
                return;
            }
            (a.dir.clone(), a.segment_bytes)
        };
        let staged = staged_path(&dir);
        // One a crash left there.
        let _ = std::fs::remove_file(&staged);
        let recycled = reuse_retired(&dir, &staged, segment_bytes);
        let created = match recycled.map_or_else(|| map_new_file(&staged, segment_bytes), Ok) {
            Ok(map) => map,
            // The request that needs it tries again, and is refused if it fails too.
            Err(e) => {
                tracing::debug!(error = %e, "could not create the next journal segment");
                return;
            }
        };
        let mut a = self.active.lock();
        match std::fs::rename(&staged, segment_path(&dir, a.seg + 1)) {
            Ok(()) => a.spare = Some(created),
            Err(e) => {
                drop(a);
                tracing::debug!(error = %e, "could not name the next journal segment");
                let _ = std::fs::remove_file(&staged);
            }
        }
    }

    /// Forgets requests whose completion has committed, deleting sealed segments left with
    /// no line in use and zeroing the active one when none of its lines is.
    pub(crate) fn settle(&self, ids: impl IntoIterator<Item = Uuid>) {
        self.settle_lines(ids);
        self.settled.notify_waiters();
    }

    /// Whether the ledger file refuses completions.
    pub(crate) fn stuck(&self) -> bool {
        self.stuck.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Notes whether the ledger file refuses completions; returns what was noted before.
    pub(crate) fn set_stuck(&self, stuck: bool) -> bool {
        self.stuck.swap(stuck, std::sync::atomic::Ordering::Relaxed)
    }

    /// Returns once request `id` has no line in the journal (its row has committed), or
    /// after `limit`.
    pub(crate) async fn until_settled(&self, id: Uuid, limit: std::time::Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.settled.notified();
            tokio::pin!(notified);
            // Registered before the check, so a settle between the two still wakes it.
            notified.as_mut().enable();
            if !self.active.lock().live.contains_key(&id) {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return;
            }
        }
    }

    /// [`Journal::settle`]'s bookkeeping.
    fn settle_lines(&self, ids: impl IntoIterator<Item = Uuid>) {
        let mut a = self.active.lock();
        for id in ids {
            let Some(lines) = a.live.remove(&id) else {
                continue;
            };
            for spot in [lines.pending, lines.completed].into_iter().flatten() {
                a.release(spot);
            }
        }
        if a.len > 0 && !a.per_segment.contains_key(&a.seg) {
            if let Some(map) = &a.map {
                // SAFETY: no line of the active segment is in use, so no copy into it is
                // under way, and none starts while the lock is held.
                unsafe { std::ptr::write_bytes(map.as_mut_ptr(), 0, a.len as usize) };
                a.len = 0;
            }
        }
    }

    /// The requests with a line in the journal, as their latest line says (finished ones whose
    /// row is not committed yet among them), read back from their segments.
    pub(crate) fn in_flight(&self) -> Vec<RequestRecord> {
        let (dir, mut spots): (PathBuf, Vec<(Uuid, Spot, bool)>) = {
            let a = self.active.lock();
            let spots = a
                .live
                .iter()
                .filter_map(|(id, l)| match (l.completed, l.pending) {
                    (Some(c), _) => Some((*id, c, true)),
                    (None, Some(p)) => Some((*id, p, false)),
                    (None, None) => None,
                })
                .collect();
            (a.dir.clone(), spots)
        };
        spots.sort_unstable_by_key(|(_, s, _)| (s.seg, s.offset));
        let mut out = Vec::with_capacity(spots.len());
        let mut open: Option<(u64, File)> = None;
        for (id, s, completed) in spots {
            if open.as_ref().map(|(seg, _)| *seg) != Some(s.seg) {
                // A segment retired meanwhile holds no line still in use.
                open = File::open(segment_path(&dir, s.seg))
                    .ok()
                    .map(|f| (s.seg, f));
            }
            let Some((_, file)) = &open else { continue };
            let mut line = vec![0; s.len as usize];
            if file.read_exact_at(&mut line, s.offset).is_err() {
                continue;
            }
            let rec = if completed {
                serde_json::from_slice::<CompletedLine>(&line).map(|l| l.completed)
            } else {
                serde_json::from_slice::<RequestRecord>(&line)
            };
            match rec {
                // A line settled and overwritten since the spots were taken is another's.
                Ok(rec) if rec.id == id => out.push(rec),
                _ => {}
            }
        }
        out
    }
}

/// A completion line as read back.
#[derive(serde::Deserialize)]
struct CompletedLine {
    completed: RequestRecord,
}

impl Active {
    /// Hands out `n` bytes of the active segment (sealing it for the next if it has not that
    /// many left): the segment's number, its mapping and the offset.
    fn reserve(&mut self, n: u64) -> Result<(u64, Arc<MmapRaw>, u64), String> {
        let map = match &self.map {
            Some(map) if self.len + n <= map.len() as u64 => map.clone(),
            _ => self.rotate(n + HEADER.len() as u64)?,
        };
        if self.len == 0 {
            // SAFETY: an empty segment has no line in use, and the lock is held.
            unsafe {
                std::ptr::copy_nonoverlapping(HEADER.as_ptr(), map.as_mut_ptr(), HEADER.len())
            };
            self.len = HEADER.len() as u64;
        }
        let offset = self.len;
        self.len += n;
        *self.per_segment.entry(self.seg).or_default() += 1;
        Ok((self.seg, map, offset))
    }

    /// Releases a line that is no longer in use; a sealed segment left with none is retired.
    fn release(&mut self, spot: Spot) {
        let left = self.per_segment.get_mut(&spot.seg).map(|n| {
            *n -= 1;
            *n
        });
        if left == Some(0) {
            self.per_segment.remove(&spot.seg);
            if spot.seg != self.seg {
                retire_segment(&self.dir, spot.seg);
            }
        }
    }

    /// Seals the active segment (if any) and begins the next, of at least `need` bytes, and
    /// returns it; a sealed segment with nothing in flight is deleted at once.
    fn rotate(&mut self, need: u64) -> Result<Arc<MmapRaw>, String> {
        let next = self.seg + 1;
        let map = match self.spare.take() {
            Some(spare) if spare.len() as u64 >= need => spare,
            spare => {
                if spare.is_some() {
                    remove_segment(&self.dir, next);
                }
                create_segment(&self.dir, next, self.segment_bytes.max(need))
                    .map_err(|e| format!("writing the journal: {e}"))?
            }
        };
        let sealed = std::mem::replace(&mut self.seg, next);
        let had_one = self.map.replace(map.clone()).is_some();
        self.len = 0;
        if had_one && !self.per_segment.contains_key(&sealed) {
            retire_segment(&self.dir, sealed);
        }
        Ok(map)
    }
}

impl Drop for Journal {
    /// A journal with nothing in flight (a clean stop) removes its segments.
    fn drop(&mut self) {
        let a = self.active.get_mut();
        if a.spare.take().is_some() {
            remove_segment(&a.dir, a.seg + 1);
        }
        if a.map.is_some() && a.per_segment.is_empty() {
            remove_segment(&a.dir, a.seg);
        }
        let _ = std::fs::remove_file(recycled_path(&a.dir));
    }
}

fn segment_path(dir: &Path, seg: u64) -> PathBuf {
    dir.join(format!("{seg:020}.{SEGMENT_EXT}"))
}

/// Where [`Journal::prepare`] creates the next segment before naming it: not a segment's
/// name, so a start after a crash never reads it, and one name, so a file left there by a
/// crash is removed before the next one.
fn staged_path(dir: &Path) -> PathBuf {
    dir.join("next.staged")
}

/// Creates segment `seg` of `size` bytes, its disk blocks reserved, and maps it.
fn create_segment(dir: &Path, seg: u64, size: u64) -> io::Result<Arc<MmapRaw>> {
    map_new_file(&segment_path(dir, seg), size)
}

/// Creates the file at `path`, which must not exist, with `size` bytes of disk reserved, and
/// maps it, its pages faulted in for writing.
fn map_new_file(path: &Path, size: u64) -> io::Result<Arc<MmapRaw>> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path)?;
    let mapped = allocate(&file, size).and_then(|()| MmapOptions::new().map_raw(&file));
    let map = match mapped {
        Ok(map) => map,
        Err(e) => {
            let _ = std::fs::remove_file(path);
            return Err(e);
        }
    };
    // Fault the pages in for writing now, so the requests' copies do not (Linux 5.14 and
    // later; elsewhere each page faults on its first copy).
    let _ = map.advise(Advice::PopulateWrite);
    Ok(Arc::new(map))
}

/// Reserves `size` bytes of disk for `file` (written as zeros where the file system cannot
/// reserve), so writing into them later cannot fail for want of room.
fn allocate(file: &File, size: u64) -> io::Result<()> {
    let len = libc::off_t::try_from(size).map_err(io::Error::other)?;
    // SAFETY: a plain system call on a descriptor that `file` keeps open.
    match unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) } {
        0 => Ok(()),
        errno => Err(io::Error::from_raw_os_error(errno)),
    }
}

/// Where a sealed segment with nothing left in flight waits to become a later one (see
/// [`reuse_retired`]): not a segment's name, so a start after a crash never reads it.
fn recycled_path(dir: &Path) -> PathBuf {
    dir.join("recycled.staged")
}

/// Retires sealed segment `seg`, none of whose requests is in flight, for reuse (replacing any
/// retired before it); removes it if it cannot be renamed.
fn retire_segment(dir: &Path, seg: u64) {
    if std::fs::rename(segment_path(dir, seg), recycled_path(dir)).is_err() {
        remove_segment(dir, seg);
    }
}

/// The retired segment, if there is one of `size` bytes, moved to `staged`, mapped and
/// zeroed.
///
/// Reusing it keeps its disk blocks and its pages in the page cache. A new segment took ~500
/// fresh pages of memory about every 500 requests, and its file system calls; on a VM that
/// returns freed memory to its host, each fresh page faults there (docs/BENCHMARKS.md, step
/// 26).
fn reuse_retired(dir: &Path, staged: &Path, size: u64) -> Option<Arc<MmapRaw>> {
    std::fs::rename(recycled_path(dir), staged).ok()?;
    let opened = OpenOptions::new().read(true).write(true).open(staged);
    let map = opened.and_then(|file| {
        if file.metadata()?.len() != size {
            return Err(io::Error::other("a retired segment of another size"));
        }
        MmapOptions::new().map_raw(&file)
    });
    match map {
        Ok(map) => {
            // SAFETY: the mapping is this function's alone: the file was renamed to a name
            // only `Journal::prepare` uses, and nothing else maps it.
            unsafe { std::ptr::write_bytes(map.as_mut_ptr(), 0, map.len()) };
            Some(Arc::new(map))
        }
        Err(_) => {
            let _ = std::fs::remove_file(staged);
            None
        }
    }
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

/// What a stopped process left in the journal of the ledger file `main`: each request's
/// latest line (its completion, when the exchange had ended; a request may appear although
/// its row committed: the ledger file decides), and the segment files, to delete once those
/// requests are written. Lines end at a newline; the unwritten rest of a segment is zeros
/// (JSON text never holds a zero byte). A line cut short by the crash is skipped.
pub(crate) fn leftovers(main: &Path) -> io::Result<(Vec<Leftover>, Vec<PathBuf>)> {
    let dir = journal_dir(main);
    if !dir.is_dir() {
        return Ok((Vec::new(), Vec::new()));
    }
    let mut found: foldhash::HashMap<Uuid, Leftover> = Default::default();
    let mut files = Vec::new();
    for (_, path) in segments(&dir)? {
        let text = std::fs::read(&path)?;
        for line in text
            .split(|b| *b == b'\n' || *b == 0)
            .filter(|l| !l.is_empty() && *l != &HEADER[..HEADER.len() - 1])
        {
            match read_line(line) {
                Ok(left) => {
                    let id = left.record().id;
                    if matches!(left, Leftover::Completed(_))
                        || !matches!(found.get(&id), Some(Leftover::Completed(_)))
                    {
                        found.insert(id, left);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, file = %path.display(), "skipped a cut-off journal line")
                }
            }
        }
        files.push(path);
    }
    let mut left: Vec<Leftover> = found.into_values().collect();
    left.sort_by_key(|l| (l.record().started_at, l.record().id));
    Ok((left, files))
}

/// One line of a segment: a pending record (both versions) or a completion (version 2).
fn read_line(line: &[u8]) -> io::Result<Leftover> {
    if !line.starts_with(b"{\"completed\":") {
        return Ok(Leftover::Pending(serde_json::from_slice(line)?));
    }
    let l: CompletedLine = serde_json::from_slice(line)?;
    Ok(Leftover::Completed(l.completed))
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::test_support::pending_record as record;

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

    fn append(j: &Journal, rec: &RequestRecord) {
        j.append(rec).unwrap();
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
        assert_eq!(paths(j.in_flight()), ["/a", "/b"]);
        let mut done = a.clone();
        done.state = sluice_core::RequestState::Success;
        j.append_completion(&done).unwrap();
        let states: Vec<_> = j
            .in_flight()
            .into_iter()
            .map(|r| (r.path, r.state))
            .collect();
        assert!(
            states.contains(&("/a".into(), sluice_core::RequestState::Success)),
            "a completion not yet committed reads back finished: {states:?}"
        );
        j.settle([a.id]);
        assert_eq!(paths(j.in_flight()), ["/b"]);
        j.settle([b.id]);
        assert!(j.in_flight().is_empty());
        let files = s.segment_files();
        assert_eq!(files.len(), 1);
        assert!(
            std::fs::read(&files[0]).unwrap().iter().all(|b| *b == 0),
            "an idle journal holds no line"
        );
        let c = record("/c");
        append(&j, &c);
        assert_eq!(
            paths(j.in_flight()),
            ["/c"],
            "a zeroed segment is written from its start again"
        );
        j.settle([c.id]);
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
        assert_eq!(paths(j.in_flight()), ["/11"]);
        // The process stops with /11 in flight: its segment stays for the next start.
        drop(j);
        let (left, files) = leftovers(&s.main()).unwrap();
        assert!(left.iter().any(|r| r.record().id == recs[11].id));
        assert!(
            left.iter().all(|r| r.record().id != recs[0].id),
            "settled segments are gone"
        );
        assert_eq!(files, s.segment_files());
    }

    #[test]
    fn a_settled_segment_is_reused_for_a_later_one_without_its_old_lines() {
        let s = Scratch::new();
        let dir = journal_dir(&s.main());
        let j = Journal::open_sized(&s.main(), 1_000).unwrap();
        // ~500-byte lines: the first segment holds one, and the second seals it.
        let old = [record("/old-0"), record("/old-1")];
        append(&j, &old[0]);
        let first = s.segment_files()[0].clone();
        append(&j, &old[1]);
        j.settle(old.iter().map(|r| r.id));
        assert!(
            !first.exists(),
            "the settled, sealed segment is no segment any more"
        );
        assert!(recycled_path(&dir).exists(), "it waits to be reused");
        j.prepare();
        assert!(
            !recycled_path(&dir).exists(),
            "the next segment is the retired file"
        );
        let new: Vec<RequestRecord> = (0..3).map(|i| record(&format!("/new-{i}"))).collect();
        for r in &new {
            append(&j, r);
        }
        std::mem::forget(j); // a crash: what is on the disk is all a new start sees
        let (left, _) = leftovers(&s.main()).unwrap();
        assert_eq!(
            paths(left.into_iter().map(|l| l.record().clone()).collect()),
            ["/new-0", "/new-1", "/new-2"]
        );
        // A clean stop leaves neither segments nor a retired file behind.
        let _ = std::fs::remove_dir_all(&dir);
        let j = Journal::open_sized(&s.main(), 1_000).unwrap();
        let recs = [record("/a"), record("/b")];
        for r in &recs {
            append(&j, r);
        }
        j.settle(recs.iter().map(|r| r.id));
        drop(j);
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    }

    #[test]
    fn a_segment_staged_when_a_crash_struck_is_never_read_back_and_the_next_replaces_it() {
        let s = Scratch::new();
        let dir = journal_dir(&s.main());
        std::fs::create_dir_all(&dir).unwrap();
        // What a crash during `prepare` could leave: a staged file with lines in it, twice as
        // long as a segment.
        let mut stale = Vec::new();
        for _ in 0..4 {
            serde_json::to_writer(&mut stale, &record("/stale")).unwrap();
            stale.push(b'\n');
        }
        std::fs::write(staged_path(&dir), &stale).unwrap();
        let (left, _) = leftovers(&s.main()).unwrap();
        assert!(left.is_empty(), "a staged file is not a segment");

        let j = Journal::open_sized(&s.main(), 1_000).unwrap();
        j.prepare();
        assert!(!staged_path(&dir).exists(), "the staged segment was named");
        assert_eq!(s.segment_files().len(), 2, "{:?}", s.segment_files());
        // ~500-byte lines: the active segment takes one, the prepared one the rest, and it
        // started empty.
        let recs: Vec<RequestRecord> = (0..4).map(|i| record(&format!("/{i}"))).collect();
        for r in &recs {
            append(&j, r);
        }
        assert_eq!(paths(j.in_flight()), ["/0", "/1", "/2", "/3"]);
        drop(j);
        let (left, _) = leftovers(&s.main()).unwrap();
        assert_eq!(
            paths(left.into_iter().map(|l| l.record().clone()).collect()),
            ["/0", "/1", "/2", "/3"]
        );
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
        // The crash cut the next line short: the rest of the segment is still zeros.
        let written = std::fs::read(&files[0]).unwrap();
        let end = written.iter().position(|b| *b == 0).unwrap();
        let f = OpenOptions::new().write(true).open(&files[0]).unwrap();
        f.write_all_at(br#"{"id":"0190"#, end as u64).unwrap();
        let j = Journal::open(&s.main()).unwrap();
        assert_eq!(s.segment_files().len(), 2, "the old segment is left alone");
        let (left, files) = leftovers(&s.main()).unwrap();
        assert_eq!(
            paths(left.into_iter().map(|l| l.record().clone()).collect()),
            ["/kept"]
        );
        assert_eq!(files.len(), 2);
        drop(j);
    }

    #[test]
    fn a_line_longer_than_a_segment_gets_a_segment_of_its_own_size() {
        let s = Scratch::new();
        let j = Journal::open_sized(&s.main(), 1_000).unwrap();
        let small = record("/small");
        append(&j, &small);
        let long_path = format!("/{}", "x".repeat(5_000));
        let long = record(&long_path);
        append(&j, &long);
        append(&j, &record("/after"));
        let back = j.in_flight();
        assert_eq!(back.len(), 3);
        assert!(back.iter().any(|r| r.path == long_path));
        std::mem::forget(j); // a crash: the next start reads the long line back too
        let (left, _) = leftovers(&s.main()).unwrap();
        assert_eq!(
            paths(left.into_iter().map(|l| l.record().clone()).collect()),
            ["/small", long_path.as_str(), "/after"]
        );
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
        let back = j.in_flight();
        assert_eq!(back.len(), 1600);
        assert_eq!(back.iter().map(|r| r.id).collect::<HashSet<_>>(), ids);
        let lines: usize = s
            .segment_files()
            .iter()
            .map(|f| {
                let text = std::fs::read(f).unwrap();
                text.split(|b| *b == b'\n' || *b == 0)
                    .filter(|l| !l.is_empty() && !l.starts_with(b"{\"sluice_journal\""))
                    .inspect(|l| {
                        serde_json::from_slice::<RequestRecord>(l).expect("no torn line");
                    })
                    .count()
            })
            .sum();
        assert_eq!(lines, 1600, "one line per record");
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// Whatever bytes a crash left in a segment, reading them back answers, and a
            /// line cut short is refused rather than read as another record.
            #[test]
            fn fuzz_a_segment_line_is_read_or_refused(
                bytes in proptest::collection::vec(any::<u8>(), 0..300),
                cut in any::<proptest::sample::Index>(),
                completed in any::<bool>(),
            ) {
                let _ = read_line(&bytes);
                let rec = record("/fuzz");
                let mut line = Vec::new();
                if completed {
                    line.extend_from_slice(b"{\"completed\":");
                    crate::journal_line::encode(&rec, &mut line);
                    line.push(b'}');
                } else {
                    crate::journal_line::encode(&rec, &mut line);
                }
                let whole = read_line(&line).unwrap();
                prop_assert_eq!(whole.record(), &rec);
                let cut = cut.index(line.len());
                prop_assert!(read_line(&line[..cut]).is_err());
            }
        }
    }
}
