//! The SQLite ledger's event files: each finished request's event (its headers, body digests
//! and previews, timings) appended to a file of its channel, beside the ledger file.
//!
//! In the ledger file an event cost its bytes twice (the WAL, then the checkpoint) plus a
//! B-tree insert; the history thread spent about as much CPU recording a request as a proxy
//! thread spent proxying it. Here a batch's events cost one `write` per channel (per 256 KiB),
//! and the request row holds where its event is ([`EventSpot`]); the simulation of the history
//! thread spent half the CPU per request (docs/BENCHMARKS.md, tuning step 21).
//!
//! Layout: `<stem>-events/<channel id>/<segment>.events`, a segment growing to
//! [`SEGMENT_BYTES`] before the next is started; each start of the ledger begins a new segment
//! per channel, so a torn tail is never written after. Purging a channel removes its
//! directory. Frames are written before the commit of the rows that point to them, and synced
//! before each checkpoint copies those rows to the ledger file ([`EventSync`]), so after a
//! power loss a row finds its event; frames whose rows never committed are never read.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use sluice_core::EventRecord;
use uuid::Uuid;

use crate::event_codec;

/// Size past which a channel's segment is closed and the next one started.
const SEGMENT_BYTES: u64 = 64 << 20;
/// Staged bytes of one channel past which they are written before the batch ends, so a batch
/// of large previews is not held twice in memory.
const FLUSH_BYTES: usize = 256 << 10;
/// Staging buffers kept between batches, so a batch does not grow fresh ones (every batch
/// grew a new 64 KiB buffer to 256 KiB: reallocations, and page faults where the allocator had
/// returned the memory to the OS).
const SPARE_BUFFERS: usize = 2;
/// Capacity past which a staging buffer (grown by one large frame) is not kept.
const SPARE_MAX_BYTES: usize = 2 * FLUSH_BYTES;
/// File name extension of a segment.
const SEGMENT_EXT: &str = "events";

/// The event directory beside the ledger file `main` (`sluice.db` → `sluice-events`).
pub fn events_dir(main: &Path) -> PathBuf {
    crate::db::beside(main, "-events")
}

/// Where an event's frame is in its channel's files; kept in the request row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EventSpot {
    /// Segment number.
    pub seg: i64,
    /// Offset of the frame in the segment.
    pub offset: i64,
    /// Length of the frame.
    pub len: i64,
}

/// The appending side, owned by the history thread.
pub(crate) struct EventFiles {
    dir: PathBuf,
    segment_bytes: u64,
    open: foldhash::HashMap<Uuid, Segment>,
    unsynced: Unsynced,
    spare: Vec<Vec<u8>>,
}

/// A channel's segment being appended to.
struct Segment {
    file: Arc<File>,
    seg: u64,
    len: u64,
}

/// Segments written to since their last sync.
type Unsynced = Arc<Mutex<HashMap<(Uuid, u64), Arc<File>>>>;

impl EventFiles {
    /// The event files of the ledger file `main`.
    pub(crate) fn new(main: &Path) -> Self {
        Self::sized(main, SEGMENT_BYTES)
    }

    /// Like [`EventFiles::new`], starting a new segment past `segment_bytes`.
    fn sized(main: &Path, segment_bytes: u64) -> Self {
        Self {
            dir: events_dir(main),
            segment_bytes,
            open: foldhash::HashMap::default(),
            spare: Vec::new(),
            unsynced: Arc::default(),
        }
    }

    /// A handle that syncs what was appended, for the checkpoint thread.
    pub(crate) fn syncer(&self) -> EventSync {
        EventSync(self.unsynced.clone())
    }

    /// Appends `frames` (each an event as [`event_codec::encode`] encodes it, with its
    /// channel), one write per channel (or per [`FLUSH_BYTES`] of it); returns each one's
    /// spot, in order. On failure nothing returned points anywhere, and the next append to a
    /// failed channel starts a new segment.
    pub(crate) fn append<'a>(
        &mut self,
        frames: impl IntoIterator<Item = (Uuid, &'a [u8])>,
    ) -> io::Result<Vec<EventSpot>> {
        // Frames not yet written, per channel of this batch.
        let mut staged: Vec<(Uuid, Vec<u8>)> = Vec::new();
        let mut spots = Vec::new();
        for (channel, frame) in frames {
            let i = match staged.iter().position(|(c, _)| *c == channel) {
                Some(i) => i,
                None => {
                    let buf = self
                        .spare
                        .pop()
                        .unwrap_or_else(|| Vec::with_capacity(FLUSH_BYTES + (16 << 10)));
                    staged.push((channel, buf));
                    staged.len() - 1
                }
            };
            // Only a channel with nothing staged may move to a new segment.
            let seg = self.segment(channel, staged[i].1.is_empty())?;
            let (n, written) = (seg.seg, seg.len);
            let buf = &mut staged[i].1;
            spots.push(EventSpot {
                seg: n as i64,
                offset: (written + buf.len() as u64) as i64,
                len: frame.len() as i64,
            });
            buf.extend_from_slice(frame);
            if buf.len() >= FLUSH_BYTES {
                self.flush(channel, buf)?;
            }
        }
        for (channel, buf) in &mut staged {
            if !buf.is_empty() {
                self.flush(*channel, buf)?;
            }
        }
        for (_, buf) in staged {
            if self.spare.len() < SPARE_BUFFERS && buf.capacity() <= SPARE_MAX_BYTES {
                self.spare.push(buf);
            }
        }
        Ok(spots)
    }

    /// Writes `buf`, staged for `channel`'s open segment, and empties it.
    fn flush(&mut self, channel: Uuid, buf: &mut Vec<u8>) -> io::Result<()> {
        let seg = self
            .open
            .get_mut(&channel)
            .expect("staged for an open segment");
        if let Err(e) = (&*seg.file).write_all(buf) {
            self.open.remove(&channel);
            return Err(e);
        }
        seg.len += buf.len() as u64;
        let (n, file) = (seg.seg, seg.file.clone());
        self.unsynced.lock().insert((channel, n), file);
        buf.clear();
        Ok(())
    }

    /// Forgets a purged channel: removes its directory, and the segment open there.
    pub(crate) fn forget(&mut self, channel: Uuid) -> io::Result<()> {
        self.open.remove(&channel);
        self.unsynced.lock().retain(|(c, _), _| *c != channel);
        remove_channel(&self.dir, channel)
    }

    /// The channel's segment to append to: the open one, or a new one when there is none or
    /// it is full and `may_move`.
    fn segment(&mut self, channel: Uuid, may_move: bool) -> io::Result<&mut Segment> {
        let full = may_move
            && self
                .open
                .get(&channel)
                .is_some_and(|s| s.len >= self.segment_bytes);
        if full || !self.open.contains_key(&channel) {
            let dir = self.dir.join(channel.to_string());
            let next = match self.open.get(&channel) {
                Some(s) => s.seg + 1,
                None => last_segment(&dir)?.map_or(1, |n| n + 1),
            };
            std::fs::create_dir_all(&dir)?;
            let file = OpenOptions::new()
                .append(true)
                .create_new(true)
                .open(segment_path(&self.dir, channel, next))?;
            self.open.insert(
                channel,
                Segment {
                    file: Arc::new(file),
                    seg: next,
                    len: 0,
                },
            );
        }
        Ok(self.open.get_mut(&channel).expect("opened above"))
    }
}

/// Syncs the segments written since the last call, before a checkpoint copies the rows that
/// point into them to the ledger file.
#[derive(Clone)]
pub(crate) struct EventSync(Unsynced);

impl EventSync {
    /// Syncs every segment written to since the last call, then drops its synced pages from
    /// the page cache.
    ///
    /// Events are written once and read rarely (one request's detail). Left cached, they fill
    /// the machine's memory at the gateway's write rate; and every new page the cache takes
    /// is memory the system must hand out afresh, which on a VM that returns freed memory to
    /// its host (free page reporting) faults in the host: there, writing the events cost the
    /// history thread up to a third of its time (docs/BENCHMARKS.md, tuning step 24).
    pub(crate) fn sync(&self) -> io::Result<()> {
        let files = std::mem::take(&mut *self.0.lock());
        for file in files.values() {
            file.sync_data()?;
            drop_cached(file);
        }
        Ok(())
    }
}

/// Asks the kernel to drop `file`'s clean pages from the page cache (advice only: pages
/// written since the last sync stay until they are on the disk).
fn drop_cached(file: &File) {
    // SAFETY: a plain system call on a descriptor that `file` keeps open.
    let errno = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    if errno != 0 {
        tracing::debug!(error = %io::Error::from_raw_os_error(errno), "could not drop cached event pages");
    }
}

/// Reads the event at `spot` among the channel's files in `dir` (an [`events_dir`]).
pub(crate) fn read(dir: &Path, channel: Uuid, spot: EventSpot) -> io::Result<EventRecord> {
    let (offset, len) = (
        u64::try_from(spot.offset).map_err(|_| bad_spot())?,
        usize::try_from(spot.len).map_err(|_| bad_spot())?,
    );
    let seg = u64::try_from(spot.seg).map_err(|_| bad_spot())?;
    let file = File::open(segment_path(dir, channel, seg))?;
    let mut frame = vec![0; len];
    file.read_exact_at(&mut frame, offset)?;
    event_codec::decode(&frame)
}

/// Removes a channel's event files from `dir` (an [`events_dir`]); none is no error.
pub(crate) fn remove_channel(dir: &Path, channel: Uuid) -> io::Result<()> {
    match std::fs::remove_dir_all(dir.join(channel.to_string())) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn bad_spot() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "negative event spot")
}

fn segment_path(dir: &Path, channel: Uuid, seg: u64) -> PathBuf {
    dir.join(channel.to_string())
        .join(format!("{seg:010}.{SEGMENT_EXT}"))
}

/// The highest segment number in a channel's directory (none when it has none or is absent).
fn last_segment(dir: &Path) -> io::Result<Option<u64>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut last = None;
    for entry in entries {
        let name = entry?.file_name();
        let n = name
            .to_str()
            .and_then(|n| n.strip_suffix(SEGMENT_EXT)?.strip_suffix('.')?.parse().ok());
        last = last.max(n);
    }
    Ok(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Appends `events` as the history thread does, encoded into their frames.
    fn append<'a>(
        files: &mut EventFiles,
        events: impl IntoIterator<Item = (Uuid, &'a EventRecord)>,
    ) -> io::Result<Vec<EventSpot>> {
        let frames: Vec<_> = events
            .into_iter()
            .map(|(channel, e)| {
                let mut frame = Vec::new();
                event_codec::encode(e, &mut frame);
                (channel, frame)
            })
            .collect();
        files.append(frames.iter().map(|(c, f)| (*c, f.as_slice())))
    }

    fn event(n: u8) -> EventRecord {
        let mut e = EventRecord {
            request_id: Uuid::now_v7(),
            ..Default::default()
        };
        e.request_body.preview = vec![n; 100 * usize::from(n)];
        e.response_status = Some(200 + u16::from(n));
        e
    }

    #[test]
    fn events_of_interleaved_channels_read_back_from_their_spots() {
        let tmp = tempdir();
        let main = tmp.join("sluice.db");
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let events: Vec<_> = (1..=6).map(event).collect();
        let mut files = EventFiles::new(&main);
        let channels = [a, b, a, a, b, a];
        let first = append(&mut files, channels.iter().copied().zip(&events[..3])).unwrap();
        let second = append(&mut files, channels[3..].iter().copied().zip(&events[3..])).unwrap();
        let dir = events_dir(&main);
        for ((spot, ev), channel) in first.iter().chain(&second).zip(&events).zip(channels) {
            assert_eq!(&read(&dir, channel, *spot).unwrap(), ev);
        }
        // The second batch appended after the first in the same segment.
        assert_eq!(second[0].seg, first[0].seg);
        assert!(second[0].offset > first[2].offset);
        // A reader given the wrong channel or a shifted spot gets an error, not another event.
        assert!(read(&dir, b, first[0]).is_err());
        let shifted = EventSpot {
            offset: first[2].offset + 1,
            ..first[2]
        };
        assert!(read(&dir, a, shifted).is_err());
    }

    #[test]
    fn a_new_start_writes_a_new_segment_and_a_purge_removes_the_channel() {
        let tmp = tempdir();
        let main = tmp.join("sluice.db");
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let (e1, e2) = (event(1), event(2));
        let old = append(&mut EventFiles::new(&main), [(a, &e1)]).unwrap()[0];
        // A torn tail left by a crash is never appended to: the next start begins segment 2.
        let torn = segment_path(&events_dir(&main), a, 1);
        OpenOptions::new()
            .append(true)
            .open(&torn)
            .unwrap()
            .write_all(b"torn")
            .unwrap();
        let mut files = EventFiles::new(&main);
        let new = append(&mut files, [(a, &e2), (b, &e1)]).unwrap();
        assert_eq!((old.seg, new[0].seg), (1, 2));
        let dir = events_dir(&main);
        assert_eq!(read(&dir, a, old).unwrap(), e1);
        assert_eq!(read(&dir, a, new[0]).unwrap(), e2);
        files.syncer().sync().unwrap();

        files.forget(a).unwrap();
        assert!(!dir.join(a.to_string()).exists());
        assert_eq!(read(&dir, b, new[1]).unwrap(), e1, "other channels stay");
        // A late completion of the purged channel starts over, and can be forgotten again.
        append(&mut files, [(a, &e1)]).unwrap();
        files.forget(a).unwrap();
        assert!(!dir.join(a.to_string()).exists());
        remove_channel(&dir, a).unwrap();
    }

    #[test]
    fn a_batch_larger_than_the_flush_size_reads_back_whole() {
        let tmp = tempdir();
        let main = tmp.join("sluice.db");
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let events: Vec<_> = (0..40u8)
            .map(|n| {
                let mut e = event(1);
                e.request_body.preview = vec![n; 20 << 10];
                e
            })
            .collect();
        let channels: Vec<_> = (0..40).map(|i| if i % 3 == 0 { b } else { a }).collect();
        // Segments of 100 KiB: a full one would move, but not with bytes still staged.
        let mut files = EventFiles::sized(&main, 100 << 10);
        for _ in 0..2 {
            let spots = append(&mut files, channels.iter().copied().zip(&events)).unwrap();
            for ((spot, ev), channel) in spots.iter().zip(&events).zip(&channels) {
                assert_eq!(&read(&events_dir(&main), *channel, *spot).unwrap(), ev);
            }
        }
    }

    #[test]
    fn a_full_segment_is_followed_by_the_next() {
        let tmp = tempdir();
        let main = tmp.join("sluice.db");
        let a = Uuid::now_v7();
        let events: Vec<_> = (1..=3).map(event).collect();
        let mut files = EventFiles::sized(&main, 150);
        let spots: Vec<_> = events
            .iter()
            .map(|e| append(&mut files, [(a, e)]).unwrap()[0])
            .collect();
        // 100 B of preview and more: each event fills a segment.
        assert_eq!(spots.iter().map(|s| s.seg).collect::<Vec<_>>(), [1, 2, 3]);
        for (spot, ev) in spots.iter().zip(&events) {
            assert_eq!(spot.offset, 0);
            assert_eq!(&read(&events_dir(&main), a, *spot).unwrap(), ev);
        }
    }

    fn tempdir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("sluice-events-{}", Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
