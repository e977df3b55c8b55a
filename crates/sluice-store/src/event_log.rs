//! The event log's in-process hub: one id sequence, a ring of recent entries, a live broadcast,
//! and a background writer persisting warn and error entries.
//!
//! Ids are microsecond timestamps made strictly increasing (`max(now, last + 1)`), seeded at
//! start from the highest persisted id. Info entries get ids from the same sequence, so one id
//! orders everything a client has seen: a client reconnecting with `Last-Event-ID: n` is
//! given every retained entry above `n` — persisted ones from the ledger, info ones from the
//! ring — and then the live feed. The ring holds every severity (warn and error too, so an entry
//! whose write is still queued is not missed); lists and replays merge both and drop duplicates.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sluice_core::clock::now_us;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::db::Store;
use crate::error::Result;
use crate::log_entries::{LogEntry, LogFilter, LogPage, Severity, Source};

/// Entries kept in memory by default.
pub const DEFAULT_RING: usize = 2048;
/// Shortest time between two source-auth failure entries of one channel.
pub const AUTH_FAILURE_INTERVAL: Duration = Duration::from_secs(60);

enum Persist {
    Entry(LogEntry),
    Flush(oneshot::Sender<()>),
    /// Not sent: the writer's own wake-up to try unwritten entries again.
    Retry,
}

struct Sequence {
    last_id: i64,
    ring: VecDeque<LogEntry>,
    capacity: usize,
}

/// What throttled entries are counted by: source, channel and a kind chosen by the caller.
type ThrottleKey = (Source, Option<Uuid>, &'static str);

/// Per-key throttle state: when the last entry went out and how many were held back since.
struct Throttle {
    last: Instant,
    suppressed: u64,
}

struct Inner {
    store: Store,
    seq: Mutex<Sequence>,
    live: broadcast::Sender<LogEntry>,
    persist: mpsc::UnboundedSender<Persist>,
    closed: watch::Sender<bool>,
    throttles: Mutex<HashMap<ThrottleKey, Throttle>>,
}

/// Handle to the event log; cheap to clone.
#[derive(Clone)]
pub struct EventLog(Arc<Inner>);

impl std::fmt::Debug for EventLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventLog").finish_non_exhaustive()
    }
}

impl EventLog {
    /// Starts the hub over `store`, keeping `ring` recent entries in memory. The returned task
    /// persists warn and error entries; it ends when every handle is dropped.
    pub async fn start(store: Store, ring: usize) -> Result<(EventLog, JoinHandle<()>)> {
        let last_id = store.max_log_id().await?.unwrap_or(0);
        let (persist, rx) = mpsc::unbounded_channel();
        let (live, _) = broadcast::channel(1024);
        let (closed, _) = watch::channel(false);
        let log = EventLog(Arc::new(Inner {
            store: store.clone(),
            seq: Mutex::new(Sequence {
                last_id,
                ring: VecDeque::with_capacity(ring.min(DEFAULT_RING)),
                capacity: ring.max(1),
            }),
            live,
            persist,
            closed,
            throttles: Mutex::new(HashMap::new()),
        }));
        Ok((log, tokio::spawn(writer(store, rx))))
    }

    /// Records an entry: gives it the next id, keeps it in the ring, sends it to live
    /// subscribers and, for warn and error, queues it for the ledger. Never blocks on I/O.
    pub fn emit(
        &self,
        severity: Severity,
        source: Source,
        channel_id: Option<Uuid>,
        message: impl Into<String>,
        details: Value,
    ) -> LogEntry {
        let message = message.into();
        // A name inside the message (a channel's, say) must not start a forged log line.
        let line = one_line(&message);
        match severity {
            Severity::Info => {
                tracing::info!(source = source.as_str(), channel = ?channel_id, "{line}")
            }
            // JSON escapes control characters: the details cannot forge a line either.
            Severity::Warn => {
                tracing::warn!(source = source.as_str(), channel = ?channel_id, details = %details, "{line}")
            }
            Severity::Error => {
                tracing::error!(source = source.as_str(), channel = ?channel_id, details = %details, "{line}")
            }
        }
        let mut seq = self.0.seq.lock().expect("event sequence lock");
        let at = now_us();
        let id = at.max(seq.last_id + 1);
        seq.last_id = id;
        let entry = LogEntry {
            id,
            at,
            severity,
            source,
            channel_id,
            message,
            details,
        };
        if seq.ring.len() == seq.capacity {
            seq.ring.pop_front();
        }
        seq.ring.push_back(entry.clone());
        // Sent under the lock so subscribers and the writer see ids in order.
        if severity.is_persisted() && self.0.persist.send(Persist::Entry(entry.clone())).is_err() {
            tracing::error!(id, "event log writer stopped; entry kept in memory only");
        }
        let _ = self.0.live.send(entry.clone());
        entry
    }

    /// Like [`EventLog::emit`], but at most once per `every` for one (source, channel, kind);
    /// entries held back in between are counted in the next one's `details.suppressed`.
    #[allow(clippy::too_many_arguments)]
    pub fn emit_throttled(
        &self,
        kind: &'static str,
        every: Duration,
        severity: Severity,
        source: Source,
        channel_id: Option<Uuid>,
        message: impl Into<String>,
        mut details: Value,
    ) -> Option<LogEntry> {
        let suppressed = {
            let mut t = self.0.throttles.lock().expect("throttle lock");
            let now = Instant::now();
            match t.get_mut(&(source, channel_id, kind)) {
                Some(th) if now.duration_since(th.last) < every => {
                    th.suppressed += 1;
                    return None;
                }
                Some(th) => {
                    th.last = now;
                    std::mem::take(&mut th.suppressed)
                }
                None => {
                    t.insert(
                        (source, channel_id, kind),
                        Throttle {
                            last: now,
                            suppressed: 0,
                        },
                    );
                    0
                }
            }
        };
        if let Value::Object(m) = &mut details {
            m.insert("suppressed".into(), json!(suppressed));
        }
        Some(self.emit(severity, source, channel_id, message, details))
    }

    /// Subscribes to entries emitted from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<LogEntry> {
        self.0.live.subscribe()
    }

    /// Retained entries passing `filter` in the window `page`, at most `limit`: persisted ones
    /// merged with the ring (newest first for [`LogPage::Before`], oldest first for
    /// [`LogPage::After`]).
    pub async fn query(
        &self,
        filter: &LogFilter,
        page: LogPage,
        limit: i64,
    ) -> Result<Vec<LogEntry>> {
        let stored = self.0.store.list_log_entries(filter, page, limit).await?;
        let recent: Vec<LogEntry> = {
            let seq = self.0.seq.lock().expect("event sequence lock");
            seq.ring
                .iter()
                .filter(|e| filter.matches(e))
                .filter(|e| match page {
                    LogPage::Before(b) => b.is_none_or(|b| e.id < b),
                    LogPage::After(a) => e.id > a,
                })
                .cloned()
                .collect()
        };
        let mut all: Vec<LogEntry> = stored;
        all.extend(recent);
        all.sort_by_key(|e| e.id);
        all.dedup_by_key(|e| e.id);
        if matches!(page, LogPage::Before(_)) {
            all.reverse();
        }
        all.truncate(usize::try_from(limit).unwrap_or(0));
        Ok(all)
    }

    /// Waits until every persisted entry emitted so far is written.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.0.persist.send(Persist::Flush(done)).is_ok() {
            let _ = wait.await;
        }
    }

    /// Tells live streams to end (at shutdown, so open SSE connections do not hold it up).
    pub fn close(&self) {
        let _ = self.0.closed.send(true);
    }

    /// Becomes `true` when [`EventLog::close`] is called.
    pub fn closed(&self) -> watch::Receiver<bool> {
        self.0.closed.subscribe()
    }
}

/// Entries kept for a database that does not answer, past which the oldest are dropped.
const MAX_UNWRITTEN: usize = 10_000;
/// Time between two attempts to write entries to a database that did not answer.
const RETRY: Duration = Duration::from_millis(500);

/// Persists entries in batches. While the database is unreachable it keeps them (at most
/// [`MAX_UNWRITTEN`]) and tries again every [`RETRY`], so an outage's own error entry reaches
/// the ledger once it is back; a flush waits for one attempt, not for the database.
async fn writer(store: Store, mut rx: mpsc::UnboundedReceiver<Persist>) {
    let mut batch = Vec::new();
    let mut waiters = Vec::new();
    let mut open = true;
    while open {
        let first = if batch.is_empty() {
            rx.recv().await
        } else {
            match tokio::time::timeout(RETRY, rx.recv()).await {
                Ok(msg) => msg,
                Err(_) => Some(Persist::Retry),
            }
        };
        let first = match first {
            Some(msg) => msg,
            None if batch.is_empty() => break,
            None => {
                open = false; // one last attempt
                Persist::Retry
            }
        };
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                Persist::Entry(e) => batch.push(e),
                Persist::Flush(done) => waiters.push(done),
                Persist::Retry => {}
            }
            if batch.len() < 256 {
                next = rx.try_recv().ok();
            }
        }
        if !batch.is_empty() {
            match store.insert_log_entries(&batch).await {
                Ok(()) => batch.clear(),
                Err(e) if e.is_unavailable() && open => {
                    if batch.len() > MAX_UNWRITTEN {
                        let dropped = batch.len() - MAX_UNWRITTEN;
                        batch.drain(..dropped);
                        tracing::error!(
                            dropped,
                            "event-log entries dropped while the database does not answer"
                        );
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, entries = batch.len(), "could not persist event-log entries");
                    batch.clear();
                }
            }
        }
        for w in waiters.drain(..) {
            let _ = w.send(());
        }
    }
}
/// `text` with its control characters (newlines among them) written as escapes (`\n`).
fn one_line(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return text.into();
    }
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect::<String>()
        .into()
}

#[cfg(test)]
mod tests {
    use super::one_line;

    #[test]
    fn a_message_cannot_forge_a_second_log_line() {
        assert_eq!(
            one_line("channel a\n2026-12-07 ERROR forged is unhealthy"),
            "channel a\\n2026-12-07 ERROR forged is unhealthy"
        );
        assert_eq!(one_line("plain, ünïcode"), "plain, ünïcode");
    }
}
