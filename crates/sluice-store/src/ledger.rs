//! Group commit: a writer turns whatever requests are queued into one transaction.
//!
//! A proxied request awaits the commit of its `pending` record before a byte goes to the sink;
//! while one transaction commits, the next requests queue up and share the following one, so
//! the cost per request falls as load rises. Nobody waits for completions: they are held back
//! for up to [`LedgerConfig::completion_delay`] (or until a batch fills) and committed together,
//! so each commit rewrites fewer pages per request.
//!
//! On SQLite, pending records and completions go to the journal (see `journal`): the requests
//! append them themselves, so a pending record never waits behind a batch of completions or
//! for a thread to wake up, and an outcome is safe from a crash once its exchange ends. A
//! history thread commits completions into the ledger file (see `sqlite_writer`); readers see
//! the requests not yet there in the journal (`InflightView`). On PostgreSQL one task writes
//! both, completions riding with the next pending commit.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{mpsc as std_mpsc, Arc};
use std::time::Instant;

use sluice_core::clock::now_us;
use sluice_core::{EventRecord, RequestRecord};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::db::Store;
use crate::error::StoreError;
use crate::event_log::EventLog;
use crate::journal::Journal;
use crate::log_entries::{Severity, Source};
use crate::requests::LedgerOp;
use crate::sqlite_writer::HistoryWriter;

/// Completions queued for the SQLite history thread past which a new request waits for it to
/// catch up, so a ledger slower than the traffic slows the traffic instead of filling memory
/// (about half a second of the fastest traffic measured).
pub const MAX_BACKLOG: i64 = 16_384;

/// Settings of the writer.
#[derive(Debug, Clone)]
pub struct LedgerConfig {
    /// This process's node id, stored with each request (for crash recovery per node).
    pub node_id: String,
    /// Most operations in one transaction.
    pub max_batch: usize,
    /// Longest time a completion waits to be batched.
    pub completion_delay: std::time::Duration,
}

/// Why a `pending` record was not made durable.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LedgerError {
    /// The database refused or failed the write.
    #[error("ledger unavailable: {0}")]
    Unavailable(String),
    /// The writer has stopped (shutdown).
    #[error("ledger closed")]
    Closed,
}

struct Job {
    op: LedgerOp,
    done: Option<oneshot::Sender<Result<(), String>>>,
}

/// A finished request and its event, as the history thread commits it.
type Finished = (RequestRecord, Option<EventRecord>);

/// What the SQLite history thread is sent.
// Nearly every message is a completion; boxing it would cost an allocation per request to
// shrink the rare `Stop`.
#[allow(clippy::large_enum_variant)]
pub(crate) enum HistoryMsg {
    /// A completion to commit.
    Complete(Finished),
    /// Every ledger handle is gone: commit what came before and stop.
    Stop,
    /// Makes the thread panic, as a bug would (tests of what the proxy sees then).
    #[cfg(test)]
    Panic,
}

/// Sends [`HistoryMsg::Stop`] when the last ledger handle is dropped.
struct StopOnDrop(std_mpsc::Sender<HistoryMsg>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        let _ = self.0.send(HistoryMsg::Stop);
    }
}

/// A store's window on the requests of its running SQLite ledger that are only in the journal
/// (in flight, or finished and not yet committed): readers read them there, without asking
/// the history thread.
#[derive(Clone, Default)]
pub(crate) struct InflightView(Arc<parking_lot::Mutex<Option<Arc<Journal>>>>);

impl InflightView {
    /// Shows the requests of `journal` to this view's readers.
    fn attach(&self, journal: Arc<Journal>) {
        *self.0.lock() = Some(journal);
    }

    /// The requests only in the journal (none without a running SQLite ledger).
    pub(crate) fn records(&self) -> Vec<RequestRecord> {
        let journal = self.0.lock().clone();
        journal.map(|j| j.in_flight()).unwrap_or_default()
    }

    /// Whether completions are being recorded (false while the SQLite ledger file refuses
    /// them, a full disk say; always true without a running SQLite ledger).
    pub(crate) fn recording(&self) -> bool {
        self.0.lock().as_ref().is_none_or(|j| !j.stuck())
    }

    /// Returns once request `id`, finished, has its row committed (at most `limit`): its
    /// outcome is journaled as the exchange ends, its event only comes with the row.
    pub(crate) async fn until_committed(&self, id: uuid::Uuid, limit: std::time::Duration) {
        let journal = self.0.lock().clone();
        if let Some(j) = journal {
            j.until_settled(id, limit).await;
        }
    }
}

/// Where a handle sends its work.
#[derive(Clone)]
enum Queues {
    /// PostgreSQL: one writer task takes pending records and completions; the store says
    /// whether the database is known to be unreachable.
    Task {
        jobs: mpsc::UnboundedSender<Job>,
        store: Store,
        events: Option<EventLog>,
    },
    /// SQLite: pending records into the journal, completions to the history thread.
    Journal {
        journal: Arc<Journal>,
        completions: std_mpsc::Sender<HistoryMsg>,
        events: Option<EventLog>,
        _stop: Arc<StopOnDrop>,
    },
}

/// Handle to the group-commit writer; cheap to clone.
#[derive(Clone)]
pub struct Ledger {
    queues: Queues,
    depth: Arc<QueueDepth>,
}

/// Operations queued and not yet committed, mirrored into the `sluice_ledger_queue_depth` gauge
/// through a handle registered once (a `gauge!` lookup per request cost a registry hash each),
/// and the batch-size histogram.
struct QueueDepth {
    n: AtomicI64,
    gauge: metrics::Gauge,
    batch_size: metrics::Histogram,
    /// Woken whenever a batch is taken off the queue, and when the history thread ends.
    taken: tokio::sync::Notify,
    /// The SQLite history thread has ended (normally only at shutdown; early if it panicked).
    history_gone: std::sync::atomic::AtomicBool,
}

impl QueueDepth {
    fn new() -> Self {
        Self {
            n: AtomicI64::new(0),
            gauge: metrics::gauge!("sluice_ledger_queue_depth"),
            batch_size: metrics::histogram!("sluice_ledger_batch_size"),
            taken: tokio::sync::Notify::new(),
            history_gone: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn add(&self, n: i64) {
        let d = self.n.fetch_add(n, Ordering::Relaxed) + n;
        self.gauge.set(d as f64);
    }

    /// Takes a batch of `n` operations off the queue and records its size.
    fn batch(&self, n: usize) {
        self.add(-(n as i64));
        self.batch_size.record(n as f64);
        self.taken.notify_waiters();
    }

    /// Returns once at most [`MAX_BACKLOG`] operations are queued; refuses once the history
    /// thread has ended, since nothing would record the request's completion.
    async fn admit(&self) -> Result<(), String> {
        loop {
            if self.history_gone.load(Ordering::Acquire) {
                return Err("the ledger's history writer has stopped".into());
            }
            if self.n.load(Ordering::Relaxed) <= MAX_BACKLOG {
                return Ok(());
            }
            // Registered before the checks are made again, so no wake-up is missed between.
            let mut taken = std::pin::pin!(self.taken.notified());
            taken.as_mut().enable();
            if self.history_gone.load(Ordering::Acquire)
                || self.n.load(Ordering::Relaxed) <= MAX_BACKLOG
            {
                continue;
            }
            taken.await;
        }
    }

    /// Marks the history thread ended and wakes every request waiting in [`Self::admit`].
    fn history_ended(&self) {
        self.history_gone.store(true, Ordering::Release);
        self.taken.notify_waiters();
    }
}

/// Held by the history thread: when it ends, by returning or by a panic, new requests are
/// refused instead of waiting for a writer that is gone.
struct HistoryAlive(Arc<QueueDepth>);

impl Drop for HistoryAlive {
    fn drop(&mut self) {
        if std::thread::panicking() {
            tracing::error!("the ledger's history writer panicked; refusing new requests");
        }
        self.0.history_ended();
    }
}

impl Ledger {
    /// Starts the writer. On SQLite it opens a new journal segment and runs the history
    /// thread with its own write connection (blocking SQLite calls never stall the proxy's
    /// runtime); call [`Store::close_interrupted`] first, which reads what an earlier run left
    /// in the journal. On PostgreSQL it is a task on the current runtime. It runs until every
    /// handle is dropped and the queues are drained; the returned task finishes then.
    pub fn start(store: Store, cfg: LedgerConfig) -> Result<(Ledger, JoinHandle<()>), StoreError> {
        Self::start_with_events(store, cfg, None)
    }

    /// Like [`Ledger::start`], also reporting write failures to the event log (`error`,
    /// source `system`, at most one entry per [`FAILURE_EVENT_INTERVAL`]).
    pub fn start_with_events(
        store: Store,
        cfg: LedgerConfig,
        events: Option<EventLog>,
    ) -> Result<(Ledger, JoinHandle<()>), StoreError> {
        let depth = Arc::new(QueueDepth::new());
        let Some((path, busy)) = store.sqlite_file() else {
            let (tx, rx) = mpsc::unbounded_channel();
            let handle = Ledger {
                queues: Queues::Task {
                    jobs: tx,
                    store: store.clone(),
                    events: events.clone(),
                },
                depth: depth.clone(),
            };
            let task = tokio::spawn(writer(store, cfg, rx, depth, events));
            return Ok((handle, task));
        };
        let journal =
            Arc::new(Journal::open(path).map_err(StoreError::io("opening the ledger journal"))?);
        let history = HistoryWriter::open(path, busy)?;
        let (completions, completions_rx) = std_mpsc::channel();
        let (finished, wait) = oneshot::channel::<()>();
        let (history_journal, history_depth, history_events) =
            (journal.clone(), depth.clone(), events.clone());
        std::thread::Builder::new()
            .name("sluice-history".into())
            .spawn(move || {
                let alive = HistoryAlive(history_depth);
                history_writer(
                    history,
                    &cfg,
                    completions_rx,
                    history_journal,
                    &alive.0,
                    history_events,
                );
                let _ = finished.send(());
            })
            .map_err(StoreError::io("starting the ledger's history thread"))?;
        store.inflight.attach(journal.clone());
        let handle = Ledger {
            queues: Queues::Journal {
                journal,
                completions: completions.clone(),
                events,
                _stop: Arc::new(StopOnDrop(completions)),
            },
            depth,
        };
        Ok((
            handle,
            tokio::spawn(async move {
                let _ = wait.await;
            }),
        ))
    }

    /// Counts one more queued operation.
    fn queued(&self) {
        self.depth.add(1);
    }

    /// Makes a `pending` record durable; returns once it is committed (PostgreSQL) or written
    /// to the journal (SQLite). On SQLite a request waits first while the history thread is
    /// more than [`MAX_BACKLOG`] completions behind.
    ///
    /// The record may be shared with the caller (who finishes the request with it later): on
    /// SQLite the journal only reads it, so no copy is made there.
    pub async fn record_pending(
        &self,
        rec: impl Into<Arc<RequestRecord>>,
    ) -> Result<(), LedgerError> {
        let rec = rec.into();
        let tx = match &self.queues {
            Queues::Task {
                jobs,
                store,
                events,
            } => {
                if store.is_unreachable() {
                    // Known to fail: answered at once rather than after the pool's timeout.
                    refused(events.as_ref(), crate::db::UNREACHABLE, 1);
                    return Err(LedgerError::Unavailable(crate::db::UNREACHABLE.into()));
                }
                jobs
            }
            Queues::Journal {
                journal, events, ..
            } => {
                // The append below never waits on the runtime: give other tasks their turn.
                tokio::task::coop::consume_budget().await;
                if journal.stuck() {
                    // Its outcome could not be recorded: nothing goes to the sink.
                    return Err(LedgerError::Unavailable(STUCK.into()));
                }
                return self
                    .depth
                    .admit()
                    .await
                    .and_then(|()| journal.append(&rec))
                    .map_err(|e| {
                        refused(events.as_ref(), &e, 1);
                        LedgerError::Unavailable(e)
                    });
            }
        };
        let (done, wait) = oneshot::channel();
        let sent = tx
            .send(Job {
                op: LedgerOp::Pending(Arc::unwrap_or_clone(rec)),
                done: Some(done),
            })
            .is_ok();
        if !sent {
            return Err(LedgerError::Closed);
        }
        self.queued();
        match wait.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(LedgerError::Unavailable(e)),
            Err(_) => Err(LedgerError::Closed),
        }
    }

    /// Queues the final state (and event) of a request; nobody waits for it to commit. On
    /// SQLite its outcome is in the journal when this returns, safe from a crash of the
    /// process (its event is not: see `Journal::append_completion`).
    pub fn record_completion(&self, rec: RequestRecord, event: Option<EventRecord>) {
        let sent = match &self.queues {
            Queues::Task { jobs, .. } => {
                let op = LedgerOp::Complete(rec, event.map(Box::new));
                jobs.send(Job { op, done: None }).is_ok()
            }
            Queues::Journal {
                journal,
                completions,
                ..
            } => {
                if let Err(e) = journal.append_completion(&rec) {
                    // Still committed shortly; only a crash before then would lose it.
                    tracing::warn!(request = %rec.id, error = %e, "completion not journaled");
                }
                completions.send(HistoryMsg::Complete((rec, event))).is_ok()
            }
        };
        if sent {
            self.queued();
        } else {
            tracing::error!("ledger closed: completion of a request was not recorded");
        }
    }

    /// Operations queued and not yet committed.
    pub fn queue_depth(&self) -> i64 {
        self.depth.n.load(Ordering::Relaxed)
    }
}

/// Commits of pending records that may run at once on PostgreSQL. The server merges the WAL
/// flushes of concurrent commits, so while one commit waits for the disk the next batch of
/// waiting requests is already on its way (one writer at a time made every request wait for
/// the commit before its batch's as well).
const PENDING_WRITERS: usize = 4;

/// The PostgreSQL writer task: takes pending records and completions from one queue; commits
/// pending records in batches, up to [`PENDING_WRITERS`] at once, and hands completions to a
/// single completion writer, whose larger, later commits nobody waits for (it alone updates
/// the roll-ups, whose rows concurrent commits would queue on).
async fn writer(
    store: Store,
    cfg: LedgerConfig,
    mut rx: mpsc::UnboundedReceiver<Job>,
    depth: Arc<QueueDepth>,
    events: Option<EventLog>,
) {
    let (finished, finished_rx) = mpsc::unbounded_channel();
    let completer = tokio::spawn(completion_writer(
        store.clone(),
        cfg.clone(),
        finished_rx,
        depth.clone(),
        events.clone(),
    ));
    let writers = Arc::new(tokio::sync::Semaphore::new(PENDING_WRITERS));
    let mut pending: Vec<Job> = Vec::with_capacity(cfg.max_batch);
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some(job) = next.take() {
            match job.op {
                LedgerOp::Pending(_) => pending.push(job),
                LedgerOp::Complete(..) => {
                    let _ = finished.send(job);
                }
            }
            if pending.len() < cfg.max_batch {
                next = rx.try_recv().ok();
            }
        }
        if pending.is_empty() {
            continue;
        }
        // Waiting for a free writer lets more pending records join this batch.
        let permit = writers.clone().acquire_owned().await.expect("never closed");
        while pending.len() < cfg.max_batch {
            match rx.try_recv() {
                Ok(job) if matches!(job.op, LedgerOp::Pending(_)) => pending.push(job),
                Ok(job) => {
                    let _ = finished.send(job);
                }
                Err(_) => break,
            }
        }
        let jobs = std::mem::replace(&mut pending, Vec::with_capacity(cfg.max_batch));
        depth.batch(jobs.len());
        let (store, node_id, events) = (store.clone(), cfg.node_id.clone(), events.clone());
        tokio::spawn(async move {
            let started = Instant::now();
            commit(&store, &node_id, jobs, events.as_ref()).await;
            metrics::histogram!("sluice_ledger_commit_seconds")
                .record(started.elapsed().as_secs_f64());
            drop(permit);
        });
    }
    let _ = writers.acquire_many(PENDING_WRITERS as u32).await;
    drop(finished);
    let _ = completer.await;
    tracing::debug!("ledger writer drained and stopped");
}

/// Commits completions on PostgreSQL in batches of up to `max_batch`, gathered for up to
/// `completion_delay`.
async fn completion_writer(
    store: Store,
    cfg: LedgerConfig,
    mut rx: mpsc::UnboundedReceiver<Job>,
    depth: Arc<QueueDepth>,
    events: Option<EventLog>,
) {
    let mut open = true;
    while open {
        let Some(first) = rx.recv().await else { break };
        let mut jobs = vec![first];
        let deadline = tokio::time::Instant::now() + cfg.completion_delay;
        while jobs.len() < cfg.max_batch {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(job)) => jobs.push(job),
                Ok(None) => {
                    open = false;
                    break;
                }
                Err(_) => break,
            }
        }
        depth.batch(jobs.len());
        let ops: Vec<LedgerOp> = jobs.into_iter().map(|j| j.op).collect();
        commit_completions(&store, &cfg.node_id, ops, events.as_ref(), &rx).await;
    }
}

/// Longest a stopping process keeps trying to write completions to an unreachable database;
/// requests it could not write stay `pending`, and the next start closes them as interrupted.
const STOP_PATIENCE: std::time::Duration = std::time::Duration::from_secs(5);

/// Commits completions on PostgreSQL. While the database is unreachable it keeps them and
/// tries again every [`OUTAGE_RETRY`] until it answers (at a stop, for [`STOP_PATIENCE`]); a
/// batch the database refuses is written one by one, so one bad row cannot fail the others.
async fn commit_completions(
    store: &Store,
    node_id: &str,
    ops: Vec<LedgerOp>,
    events: Option<&EventLog>,
    queue: &mpsc::UnboundedReceiver<Job>,
) {
    let mut stopping_since = None;
    loop {
        let started = Instant::now();
        let res = store.write_batch(node_id, &ops).await;
        metrics::histogram!("sluice_ledger_commit_seconds").record(started.elapsed().as_secs_f64());
        let err = match res {
            Ok(()) => return,
            Err(e) if e.is_unavailable() => e,
            Err(e) => {
                tracing::warn!(error = %e, batch = ops.len(), "ledger batch failed; retrying its parts");
                for op in ops {
                    complete_alone(store, node_id, op, events).await;
                }
                return;
            }
        };
        store.unreachable();
        if queue.is_closed() {
            let since = *stopping_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= STOP_PATIENCE {
                tracing::error!(error = %err, requests = ops.len(),
                    "stopping with completions the database did not take; the next start marks them interrupted");
                return;
            }
        }
        tokio::time::sleep(OUTAGE_RETRY).await;
    }
}

/// Time between two attempts to write completions to a database that did not answer.
const OUTAGE_RETRY: std::time::Duration = std::time::Duration::from_millis(500);

/// Commits a batch of pending records, answering each waiting request; a failed batch is
/// tried once more unless the database is unreachable.
async fn commit(store: &Store, node_id: &str, jobs: Vec<Job>, events: Option<&EventLog>) {
    let (ops, dones): (Vec<LedgerOp>, Vec<_>) = jobs.into_iter().map(|j| (j.op, j.done)).unzip();
    let mut res = store.write_batch(node_id, &ops).await;
    if let Err(e) = &res {
        if e.is_unavailable() {
            store.unreachable();
        } else {
            tracing::warn!(error = %e, batch = ops.len(), "ledger batch failed; trying it again");
            res = store.write_batch(node_id, &ops).await;
        }
    }
    let res = res.map_err(|e| e.to_string());
    if let Err(e) = &res {
        refused(events, e, ops.len());
    }
    for d in dones.into_iter().flatten() {
        let _ = d.send(res.clone());
    }
}

async fn complete_alone(store: &Store, node_id: &str, op: LedgerOp, events: Option<&EventLog>) {
    let LedgerOp::Complete(rec, _) = &op else {
        return;
    };
    let id = rec.id;
    if let Err(e) = store.write_batch(node_id, std::slice::from_ref(&op)).await {
        let marked = store
            .mark_request_error(rec, PERSISTENCE_FAILED, now_us())
            .await;
        unrecorded(
            events,
            id,
            &e.to_string(),
            marked.map_err(|e| e.to_string()),
        );
    }
}

/// The error a request gets when its completion could not be written.
const PERSISTENCE_FAILED: &str = "persistence_failed";

/// Reports pending records that could not be made durable (their callers are refused).
fn refused(events: Option<&EventLog>, error: &str, requests: usize) {
    metrics::counter!("sluice_ledger_write_failures_total").increment(requests as u64);
    report_failure(
        events,
        "could not record pending requests; they were refused",
        serde_json::json!({ "error": error, "requests": requests }),
    );
}

/// Reports a completion that could not be written, and whether marking the request `error`
/// worked instead.
fn unrecorded(events: Option<&EventLog>, id: uuid::Uuid, error: &str, marked: Result<(), String>) {
    metrics::counter!("sluice_ledger_write_failures_total").increment(1);
    report_failure(
        events,
        "could not record the completion of a request; marked error",
        serde_json::json!({ "error": error, "request": id }),
    );
    if let Err(e) = marked {
        tracing::error!(request = %id, error = %e, "could not mark request error either");
    }
}

/// Why requests are refused while the ledger file refuses completions.
pub(crate) const STUCK: &str = "the ledger cannot record completions (is its disk full?)";
/// Time between two attempts to commit completions the ledger file refused for want of room.
const STUCK_RETRY: std::time::Duration = std::time::Duration::from_millis(500);

/// The SQLite history thread: commits completions in batches of up to `max_batch`, gathered
/// for up to `completion_delay`, and settles them in the journal. While the ledger file has no
/// room for them it keeps them, marks the journal stuck (new requests are refused) and tries
/// again every [`STUCK_RETRY`] until a commit succeeds; at a stop they stay in the journal,
/// and the next start writes them.
fn history_writer(
    mut conn: HistoryWriter,
    cfg: &LedgerConfig,
    rx: std_mpsc::Receiver<HistoryMsg>,
    journal: Arc<Journal>,
    depth: &QueueDepth,
    events: Option<EventLog>,
) {
    let mut batch = Batch {
        ops: Vec::with_capacity(cfg.max_batch),
        open: true,
    };
    loop {
        let stuck = journal.stuck();
        if batch.ops.is_empty() {
            if !batch.open {
                break;
            }
            let Ok(first) = rx.recv() else { break };
            batch.take(first);
        } else if !batch.open {
            break; // stuck at a stop: the journal keeps them for the next start
        }
        batch.drain(&rx, cfg.max_batch);
        if batch.open && batch.ops.len() < cfg.max_batch {
            // Keeping up: gather more by sleeping, not by waiting on the queue, so the
            // completions arriving meanwhile do not wake the thread one by one.
            std::thread::sleep(if stuck {
                STUCK_RETRY
            } else {
                cfg.completion_delay
            });
            batch.drain(&rx, cfg.max_batch);
        }
        if batch.ops.is_empty() {
            continue;
        }
        let taken = batch.ops.len();
        match commit_history(&mut conn, &cfg.node_id, &mut batch.ops, events.as_ref()) {
            Ok(settled) => {
                depth.batch(taken);
                journal.settle(settled);
                journal.prepare();
                if journal.set_stuck(false) {
                    tracing::info!("the ledger records completions again");
                }
            }
            Err(e) => {
                if !journal.set_stuck(true) {
                    tracing::error!(error = %e, "{STUCK}; refusing requests until it can");
                    if let Some(ev) = events.as_ref() {
                        ev.emit(
                            Severity::Error,
                            Source::System,
                            None,
                            format!("{STUCK}: callers get 503 until it can"),
                            serde_json::json!({ "error": e.to_string() }),
                        );
                    }
                }
            }
        }
    }
    tracing::debug!("ledger history writer drained and stopped");
}

/// What the history thread gathered for one commit.
struct Batch {
    ops: Vec<Finished>,
    /// No [`HistoryMsg::Stop`] yet.
    open: bool,
}

impl Batch {
    fn take(&mut self, msg: HistoryMsg) {
        match msg {
            HistoryMsg::Complete(done) => self.ops.push(done),
            HistoryMsg::Stop => self.open = false,
            #[cfg(test)]
            HistoryMsg::Panic => panic!("history thread panic asked for by a test"),
        }
    }

    /// Takes queued messages until `max` completions are gathered, the queue is empty or the
    /// ledger stops.
    fn drain(&mut self, rx: &std_mpsc::Receiver<HistoryMsg>, max: usize) {
        while self.open && self.ops.len() < max {
            match rx.try_recv() {
                Ok(msg) => self.take(msg),
                Err(_) => break,
            }
        }
    }
}

/// Commits completions (emptying `ops`); on failure retries them one by one, so one bad row
/// cannot fail its neighbours, and writes a request whose completion fails again as `error`.
/// Returns the ids now in the ledger file (a request whose every write failed stays in the
/// journal, and the next start writes it), or, when the file has no room for any of them, the
/// error, leaving `ops` as they were.
fn commit_history(
    conn: &mut HistoryWriter,
    node_id: &str,
    ops: &mut Vec<Finished>,
    events: Option<&EventLog>,
) -> Result<Vec<uuid::Uuid>, rusqlite::Error> {
    let started = Instant::now();
    let res = conn.write(node_id, ops);
    metrics::histogram!("sluice_ledger_commit_seconds").record(started.elapsed().as_secs_f64());
    match res {
        Ok(()) => return Ok(ops.drain(..).map(|(r, _)| r.id).collect()),
        Err(e) if out_of_room(&e) => return Err(e),
        Err(e) => {
            tracing::warn!(error = %e, batch = ops.len(), "ledger batch failed; retrying its parts")
        }
    }
    let mut settled = Vec::with_capacity(ops.len());
    for done in ops.drain(..) {
        let id = done.0.id;
        match conn.write(node_id, std::slice::from_ref(&done)) {
            Ok(()) => settled.push(id),
            Err(e) => {
                let marked = conn
                    .write_failed(node_id, &done.0, PERSISTENCE_FAILED, now_us())
                    .map_err(|e| e.to_string());
                if marked.is_ok() {
                    settled.push(id);
                }
                unrecorded(events, id, &e.to_string(), marked);
            }
        }
    }
    Ok(settled)
}

/// Whether `e` says the ledger file cannot take writes at all (no room, no way to write), as
/// opposed to a problem with one row.
fn out_of_room(e: &rusqlite::Error) -> bool {
    use rusqlite::ErrorCode;
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DiskFull | ErrorCode::SystemIoFailure | ErrorCode::ReadOnly)
    )
}

/// Shortest time between two ledger-failure entries in the event log.
pub const FAILURE_EVENT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

/// Tells the event log (which writes the text log's line too), at most once per
/// [`FAILURE_EVENT_INTERVAL`]; without an event log, the text log alone.
fn report_failure(events: Option<&EventLog>, message: &str, details: serde_json::Value) {
    match events {
        Some(ev) => {
            ev.emit_throttled(
                "ledger_write_failure",
                FAILURE_EVENT_INTERVAL,
                Severity::Error,
                Source::System,
                None,
                message,
                details,
            );
        }
        None => tracing::error!(details = %details, "{message}"),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::test_support::{pending_record, sqlite_store};

    fn is_refusal(res: &Result<(), LedgerError>) -> bool {
        matches!(res, Err(LedgerError::Unavailable(e)) if e.contains("history writer"))
    }

    #[tokio::test]
    async fn a_panicked_history_thread_refuses_waiting_and_new_requests() {
        let (store, dir) = sqlite_store("ledger").await;
        let cfg = LedgerConfig {
            node_id: "n".into(),
            max_batch: 64,
            completion_delay: Duration::from_millis(1),
        };
        let (ledger, task) = Ledger::start(store, cfg).unwrap();
        ledger
            .record_pending(pending_record("/"))
            .await
            .expect("a running ledger takes a pending record");

        // A backlog past the limit: the next request waits for the history thread.
        ledger.depth.add(MAX_BACKLOG + 1);
        let waiting = tokio::spawn({
            let ledger = ledger.clone();
            async move { ledger.record_pending(pending_record("/")).await }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!waiting.is_finished(), "waits while the backlog is full");

        let Queues::Journal { completions, .. } = &ledger.queues else {
            panic!("a SQLite ledger has a history thread");
        };
        completions.send(HistoryMsg::Panic).unwrap();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("the ledger's task ends with its thread")
            .unwrap();
        let waited = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the waiting request is answered, not left waiting")
            .unwrap();
        assert!(is_refusal(&waited), "{waited:?}");

        // With the backlog gone, a new request is still refused: nothing would record it.
        ledger.depth.add(-(MAX_BACKLOG + 1));
        let fresh = ledger.record_pending(pending_record("/")).await;
        assert!(is_refusal(&fresh), "{fresh:?}");
        drop(ledger);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
