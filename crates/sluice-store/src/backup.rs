//! `sluice backup`: a copy of a SQLite ledger taken while another process serves from it.
//!
//! A SQLite ledger is two things: the ledger file (`sluice.db`), whose rows of `requests` are
//! the finished requests, and the journal beside it (`sluice-journal/`), which holds the
//! pending record of every request in flight and the completion of every request whose row
//! has not committed yet (`crate::journal`). A request's completion is in the journal before
//! its caller gets the end of the answer, and it leaves the journal only once its row has
//! committed. So a copy holds every request that completed before the backup began when it is
//! taken in this order:
//!
//! 1. the journal's segment files, each read whole;
//! 2. then the ledger file, with `VACUUM INTO` on a connection of its own: SQLite's WAL gives
//!    that statement one consistent snapshot while the server keeps writing.
//!
//! A request that completed before step 1 either had its row committed before its segment was
//! read (then the row is in the snapshot of step 2, which is later, and rows are never
//! removed) or its completion was still in the segment when it was read. A start on the copy
//! (`Store::close_interrupted`) writes the completions it finds in the journal as rows (a row
//! already there wins) and closes the requests that have only a pending record as
//! `interrupted`: they were in flight when the backup was taken.
//!
//! The key file (`secret.key`, which seals the credentials in the ledger) is copied after the
//! ledger: a key rotation meanwhile adds a key and keeps the older ones, so a later key file
//! opens everything an earlier snapshot holds.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::journal::{journal_dir, Leftover};
use crate::secrets::KEY_FILE;

/// Name of the ledger file in a backup: the default of `sluice serve --data-dir`.
pub const LEDGER_FILE: &str = "sluice.db";
/// Name of the node id file, in the data directory and in a backup.
pub const NODE_ID_FILE: &str = "node.id";
/// How long the copy waits for a lock of the live ledger (a WAL reader rarely waits at all).
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a backup was not taken.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The target directory holds files already.
    #[error("{} is not empty: a backup goes into a new or empty directory", .0.display())]
    NotEmpty(PathBuf),
    /// The target exists and is not a directory.
    #[error("{} exists and is not a directory", .0.display())]
    NotADirectory(PathBuf),
    /// There is no ledger file to copy.
    #[error("no SQLite ledger at {}", .0.display())]
    NoLedger(PathBuf),
    /// The ledger still has the files of an older layout, which a backup does not copy.
    #[error(
        "the ledger at {} still has files of an older layout ({}): upgrade it first (`sluice \
         migrate`, or start `sluice serve` of this version once)",
        .0.display(), .1.display()
    )]
    OldLayout(PathBuf, PathBuf),
    /// A file could not be read or written.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: io::Error,
    },
    /// SQLite failed.
    #[error("SQLite ({}): {source}", .path.display())]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// What failed.
        source: rusqlite::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn sqlite_err(path: &Path) -> impl FnOnce(rusqlite::Error) -> BackupError + '_ {
    move |source| BackupError::Sqlite {
        path: path.to_path_buf(),
        source,
    }
}

/// What a backup wrote.
#[derive(Debug, Clone)]
pub struct SqliteBackup {
    /// The backup directory.
    pub dir: PathBuf,
    /// The copy of the ledger file.
    pub ledger: PathBuf,
    /// Rows of `requests` (finished requests) in the copy.
    pub request_rows: u64,
    /// The copy of the journal directory.
    pub journal: PathBuf,
    /// Segment files copied into it.
    pub segments: usize,
    /// Requests whose completion is in the copied journal and whose row is not in the copied
    /// ledger: a start on the backup writes them as rows.
    pub journaled_completions: usize,
    /// Requests in flight when the journal was copied and not finished in the copied ledger:
    /// a start on the backup closes them as `error`/`interrupted`.
    pub in_flight: usize,
    /// The copied key file, if the data directory had one (credentials are sealed with it).
    pub secret_key: Option<PathBuf>,
    /// The copied node id file, if the data directory had one.
    pub node_id: Option<PathBuf>,
}

/// The file of a `sqlite:` database URL, read as `Store::connect` reads it (`sqlite://PATH`,
/// `sqlite:PATH`, options after `?`); `None` for another scheme.
pub fn sqlite_file(url: &str) -> Option<PathBuf> {
    let rest = url.strip_prefix("sqlite:")?;
    let rest = rest.trim_start_matches("//");
    Some(PathBuf::from(rest.split('?').next().unwrap_or(rest)))
}

/// Backs up the SQLite ledger file `ledger` (its journal beside it) and the key and node id
/// files of `data_dir` into `dest`, which must not exist or be empty; safe while another
/// process serves from the ledger. See the module's documentation for why the order of the
/// steps makes the copy hold every request that completed before the call.
pub async fn backup_sqlite(
    ledger: &Path,
    data_dir: &Path,
    dest: &Path,
) -> Result<SqliteBackup, BackupError> {
    let (ledger, data_dir, dest) = (
        ledger.to_path_buf(),
        data_dir.to_path_buf(),
        dest.to_path_buf(),
    );
    tokio::task::spawn_blocking(move || backup_blocking(&ledger, &data_dir, &dest))
        .await
        .map_err(|e| BackupError::Io {
            path: PathBuf::new(),
            source: io::Error::other(e),
        })?
}

fn backup_blocking(
    ledger: &Path,
    data_dir: &Path,
    dest: &Path,
) -> Result<SqliteBackup, BackupError> {
    if !ledger.is_file() {
        return Err(BackupError::NoLedger(ledger.to_path_buf()));
    }
    for old in [
        crate::db::inflight_file(ledger),
        crate::legacy::events_dir(ledger),
    ] {
        if old.exists() {
            return Err(BackupError::OldLayout(ledger.to_path_buf(), old));
        }
    }
    let created = prepare_dest(dest)?;
    match copy_all(ledger, data_dir, dest) {
        Ok(done) => Ok(done),
        Err(e) => {
            // Leave the directory as it was: a half-written backup is no backup.
            let cleaned = if created {
                std::fs::remove_dir_all(dest)
            } else {
                remove_contents(dest)
            };
            if let Err(c) = cleaned {
                tracing::warn!(error = %c, dir = %dest.display(), "could not remove a failed backup");
            }
            Err(e)
        }
    }
}

/// The steps of a backup into the empty directory `dest`.
fn copy_all(ledger: &Path, data_dir: &Path, dest: &Path) -> Result<SqliteBackup, BackupError> {
    // 1. The journal first: see the module's documentation.
    let copy = dest.join(LEDGER_FILE);
    let journal = journal_dir(&copy);
    std::fs::create_dir(&journal).map_err(io_err(&journal))?;
    let segments = copy_segments(&journal_dir(ledger), &journal)?;
    sync_dir(&journal)?;

    // 2. Then a snapshot of the ledger file.
    vacuum_into(ledger, &copy)?;

    // 3. The key file after the ledger: a rotation only ever adds keys.
    let secret_key = copy_if_present(&data_dir.join(KEY_FILE), &dest.join(KEY_FILE), 0o600)?;
    let node_id = copy_if_present(
        &data_dir.join(NODE_ID_FILE),
        &dest.join(NODE_ID_FILE),
        0o644,
    )?;
    sync_dir(dest)?;

    let (request_rows, journaled_completions, in_flight) = count(&copy)?;
    Ok(SqliteBackup {
        dir: dest.to_path_buf(),
        ledger: copy,
        request_rows,
        journal,
        segments,
        journaled_completions,
        in_flight,
        secret_key,
        node_id,
    })
}

/// Removes everything in `dir`.
fn remove_contents(dir: &Path) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            std::fs::remove_dir_all(&path)?;
        } else {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}

/// Creates `dest` (returns true), or checks that it is an empty directory (false).
fn prepare_dest(dest: &Path) -> Result<bool, BackupError> {
    match std::fs::metadata(dest) {
        Ok(m) if !m.is_dir() => Err(BackupError::NotADirectory(dest.to_path_buf())),
        Ok(_) => {
            let mut entries = std::fs::read_dir(dest).map_err(io_err(dest))?;
            match entries.next() {
                None => Ok(false),
                Some(_) => Err(BackupError::NotEmpty(dest.to_path_buf())),
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dest).map_err(io_err(dest))?;
            Ok(true)
        }
        Err(e) => Err(io_err(dest)(e)),
    }
}

/// Whether `name` is a segment's (`<number>.jsonl`); `next.staged` and `recycled.staged` are
/// not: a segment being prepared, or retired with nothing in flight.
fn is_segment(name: &str) -> bool {
    name.strip_suffix(".jsonl")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Copies the segment files of the journal `from` into `to`; returns how many.
///
/// Each is read whole, as the server's writes through its mapping are in the page cache. A
/// segment retired between the listing and its read is skipped: a segment is retired only once
/// every request in it has its row committed, which the later snapshot holds. A line being
/// written while it is read may be cut off; a start on the copy skips it (that request had
/// not finished).
fn copy_segments(from: &Path, to: &Path) -> Result<usize, BackupError> {
    let entries = match std::fs::read_dir(from) {
        Ok(entries) => entries,
        // No journal: nothing was ever in flight, or a clean stop removed it.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io_err(from)(e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_err(from))?;
        if let Some(name) = entry.file_name().to_str().filter(|n| is_segment(n)) {
            names.push(name.to_string());
        }
    }
    names.sort();
    let mut copied = 0;
    for name in names {
        let src = from.join(&name);
        let bytes = match std::fs::read(&src) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err(&src)(e)),
        };
        write_new(&to.join(&name), &bytes, 0o644)?;
        copied += 1;
    }
    Ok(copied)
}

/// Writes a consistent copy of the ledger file `ledger` to `copy` with `VACUUM INTO`, and
/// makes it durable.
fn vacuum_into(ledger: &Path, copy: &Path) -> Result<(), BackupError> {
    // Read-write, never create: a read-only connection to a WAL database needs its shared
    // memory file to be writable anyway, and this one only reads.
    let conn = Connection::open_with_flags(
        ledger,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sqlite_err(ledger))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(sqlite_err(ledger))?;
    let target = copy.to_str().ok_or_else(|| BackupError::Io {
        path: copy.to_path_buf(),
        source: io::Error::other("the backup path is not UTF-8"),
    })?;
    conn.execute("VACUUM INTO ?1", [target])
        .map_err(sqlite_err(ledger))?;
    drop(conn);
    // VACUUM INTO does not sync the file it writes.
    File::open(copy)
        .and_then(|f| f.sync_all())
        .map_err(io_err(copy))
}

/// Copies `from` to `to` (created with `mode`) if `from` exists; returns `to` if it did.
fn copy_if_present(from: &Path, to: &Path, mode: u32) -> Result<Option<PathBuf>, BackupError> {
    match std::fs::read(from) {
        Ok(bytes) => {
            write_new(to, &bytes, mode)?;
            Ok(Some(to.to_path_buf()))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(from)(e)),
    }
}

/// Creates `path` (which must not exist) with `mode` and `bytes`, synced to the disk.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), BackupError> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(io_err(path))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(io_err(path))
}

/// Makes the names created in `dir` durable.
fn sync_dir(dir: &Path) -> Result<(), BackupError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// The copy's request rows, and what a start on it will do with its journal: completions to
/// write as rows, requests to close as interrupted (those with a row already are neither).
fn count(copy: &Path) -> Result<(u64, usize, usize), BackupError> {
    let conn = Connection::open_with_flags(copy, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(sqlite_err(copy))?;
    let rows: i64 = conn
        .query_row("SELECT count(*) FROM requests", [], |r| r.get(0))
        .map_err(sqlite_err(copy))?;
    let (left, _) = crate::journal::leftovers(copy).map_err(io_err(&journal_dir(copy)))?;
    let mut has_row = conn
        .prepare("SELECT 1 FROM requests WHERE id = ?1")
        .map_err(sqlite_err(copy))?;
    let (mut completions, mut in_flight) = (0, 0);
    for l in &left {
        if has_row
            .exists([l.record().id.to_string()])
            .map_err(sqlite_err(copy))?
        {
            continue;
        }
        match l {
            Leftover::Completed(..) => completions += 1,
            Leftover::Pending(_) => in_flight += 1,
        }
    }
    Ok((u64::try_from(rows).unwrap_or(0), completions, in_flight))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::{is_segment, sqlite_file};

    #[test]
    fn the_file_of_a_sqlite_url() {
        assert_eq!(
            sqlite_file("sqlite://./data/sluice.db"),
            Some(PathBuf::from("./data/sluice.db"))
        );
        assert_eq!(
            sqlite_file("sqlite:///var/lib/sluice/sluice.db?mode=rwc"),
            Some(PathBuf::from("/var/lib/sluice/sluice.db"))
        );
        assert_eq!(sqlite_file("postgres://localhost/sluice"), None);
    }

    #[test]
    fn only_numbered_jsonl_files_are_segments() {
        assert!(is_segment("00000000000000000001.jsonl"));
        assert!(!is_segment("next.staged"));
        assert!(!is_segment("recycled.staged"));
        assert!(!is_segment(".jsonl"));
        assert!(!is_segment("1.jsonl.tmp"));
    }
}
