//! Group commit: a writer turns whatever requests are queued into one transaction.
//!
//! A proxied request awaits the commit of its `pending` record before a byte goes to the sink;
//! while one transaction commits, the next requests queue up and share the following one, so
//! the cost per request falls as load rises. Nobody waits for completions: they are held back
//! for up to [`LedgerConfig::completion_delay`] (or until a batch fills) and committed together,
//! so each commit rewrites fewer pages per request.
//!
//! On SQLite, two threads write two files (see `sqlite_writer`): pending records into the
//! in-flight file, completions into the ledger file, so a pending record never waits behind a
//! batch of completions. On PostgreSQL one task writes both, completions riding with the next
//! pending commit.

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
use crate::log_entries::{Severity, Source};
use crate::requests::LedgerOp;
use crate::sqlite_writer::{HistoryWriter, InflightWriter};

/// Most completions committed together with waiting pending records (a 120-completion commit
/// took 1.1–1.9 ms in the ledger simulation of docs/BENCHMARKS.md, stalling every request that
/// arrived meanwhile).
const COMPLETIONS_BESIDE_PENDING: usize = 32;

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

/// Work of the SQLite in-flight writer. Nearly every job is a pending record: boxing it would
/// cost an allocation per request to shrink the rare `Settled`.
#[allow(clippy::large_enum_variant)]
enum LiveJob {
    /// A pending record, and who waits for its commit.
    Pending(Arc<RequestRecord>, oneshot::Sender<Result<(), String>>),
    /// Requests whose completion has committed: their in-flight rows go.
    Settled(Vec<uuid::Uuid>),
}

/// Where a handle sends its work.
#[derive(Clone)]
enum Queues {
    /// PostgreSQL: one writer task takes pending records and completions.
    Task(mpsc::UnboundedSender<Job>),
    /// SQLite: pending records to the in-flight thread, completions to the history thread.
    Threads {
        pending: std_mpsc::Sender<LiveJob>,
        completions: std_mpsc::Sender<Job>,
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
}

impl QueueDepth {
    fn new() -> Self {
        Self {
            n: AtomicI64::new(0),
            gauge: metrics::gauge!("sluice_ledger_queue_depth"),
            batch_size: metrics::histogram!("sluice_ledger_batch_size"),
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
    }
}

impl Ledger {
    /// Starts the writer. On SQLite it runs on two threads of its own with their own write
    /// connections (blocking SQLite calls never stall the proxy's runtime); on PostgreSQL it is
    /// a task on the current runtime. It runs until every handle is dropped and the queues are
    /// drained; the returned task finishes then.
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
                queues: Queues::Task(tx),
                depth: depth.clone(),
            };
            let task = tokio::spawn(writer(store, cfg, rx, depth, events));
            return Ok((handle, task));
        };
        let sqlite = |e: rusqlite::Error| StoreError::Sqlite(e.to_string());
        let live = InflightWriter::open(path, busy).map_err(sqlite)?;
        let history = HistoryWriter::open(path, busy).map_err(sqlite)?;
        let (pending, pending_rx) = std_mpsc::channel();
        let (completions, completions_rx) = std_mpsc::channel();
        let settle = pending.clone();
        let (finished, wait) = oneshot::channel::<()>();
        let spawn_err = |e: std::io::Error| StoreError::Sqlite(format!("starting the ledger: {e}"));
        let (node, max_batch, live_depth, live_events) = (
            cfg.node_id.clone(),
            cfg.max_batch,
            depth.clone(),
            events.clone(),
        );
        // The in-flight thread stops last: the history thread holds a sender of its queue.
        std::thread::Builder::new()
            .name("sluice-ledger".into())
            .spawn(move || {
                inflight_writer(live, &node, max_batch, pending_rx, &live_depth, live_events);
                let _ = finished.send(());
            })
            .map_err(spawn_err)?;
        let history_depth = depth.clone();
        std::thread::Builder::new()
            .name("sluice-history".into())
            .spawn(move || {
                history_writer(
                    history,
                    &cfg,
                    completions_rx,
                    settle,
                    &history_depth,
                    events,
                )
            })
            .map_err(spawn_err)?;
        let handle = Ledger {
            queues: Queues::Threads {
                pending,
                completions,
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

    /// Makes a `pending` record durable; returns once its transaction has committed.
    ///
    /// The record may be shared with the caller (who finishes the request with it later): the
    /// SQLite writer drops its reference before it wakes the caller, so no copy is made there.
    pub async fn record_pending(
        &self,
        rec: impl Into<Arc<RequestRecord>>,
    ) -> Result<(), LedgerError> {
        let rec = rec.into();
        let (done, wait) = oneshot::channel();
        let sent = match &self.queues {
            Queues::Task(tx) => tx
                .send(Job {
                    op: LedgerOp::Pending(Arc::unwrap_or_clone(rec)),
                    done: Some(done),
                })
                .is_ok(),
            Queues::Threads { pending, .. } => pending.send(LiveJob::Pending(rec, done)).is_ok(),
        };
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

    /// Queues the final state (and event) of a request; nobody waits for it.
    pub fn record_completion(&self, rec: RequestRecord, event: Option<EventRecord>) {
        let job = Job {
            op: LedgerOp::Complete(rec, event.map(Box::new)),
            done: None,
        };
        let sent = match &self.queues {
            Queues::Task(tx) => tx.send(job).is_ok(),
            Queues::Threads { completions, .. } => completions.send(job).is_ok(),
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

/// The PostgreSQL writer task: pending records and completions through one queue.
async fn writer(
    store: Store,
    cfg: LedgerConfig,
    mut rx: mpsc::UnboundedReceiver<Job>,
    depth: Arc<QueueDepth>,
    events: Option<EventLog>,
) {
    let mut pending: Vec<Job> = Vec::with_capacity(cfg.max_batch);
    let mut completions: Vec<Job> = Vec::with_capacity(cfg.max_batch);
    let mut oldest_completion: Option<tokio::time::Instant> = None;
    let mut open = true;
    while open || !pending.is_empty() || !completions.is_empty() {
        if open && pending.is_empty() {
            let deadline = oldest_completion.map(|t| t + cfg.completion_delay);
            let next = match deadline {
                Some(d) => match tokio::time::timeout_at(d, rx.recv()).await {
                    Ok(j) => j.map(Some).unwrap_or_else(|| {
                        open = false;
                        None
                    }),
                    Err(_) => None,
                },
                None => rx.recv().await.or_else(|| {
                    open = false;
                    None
                }),
            };
            if let Some(j) = next {
                sort(j, &mut pending, &mut completions, &mut oldest_completion);
            }
        }
        while pending.len() + completions.len() < 2 * cfg.max_batch {
            match rx.try_recv() {
                Ok(j) => sort(j, &mut pending, &mut completions, &mut oldest_completion),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    open = false;
                    break;
                }
            }
        }
        let completions_due = !completions.is_empty()
            && (!open
                || completions.len() >= cfg.max_batch
                || oldest_completion.is_some_and(|t| t.elapsed() >= cfg.completion_delay));
        if pending.is_empty() && !completions_due {
            continue;
        }
        let mut jobs: Vec<Job> = pending.drain(..pending.len().min(cfg.max_batch)).collect();
        if completions_due {
            // Waiting pending records ride with a bounded share of completions, so no commit
            // they wait for grows with the backlog; the rest follow in the next commits.
            let share = if jobs.is_empty() {
                cfg.max_batch
            } else {
                COMPLETIONS_BESIDE_PENDING
            };
            jobs.extend(completions.drain(..completions.len().min(share)));
            if completions.is_empty() {
                oldest_completion = None;
            }
        }
        depth.batch(jobs.len());
        let started = Instant::now();
        commit(&store, &cfg.node_id, jobs, events.as_ref()).await;
        metrics::histogram!("sluice_ledger_commit_seconds").record(started.elapsed().as_secs_f64());
    }
    tracing::debug!("ledger writer drained and stopped");
}

fn sort(
    job: Job,
    pending: &mut Vec<Job>,
    completions: &mut Vec<Job>,
    oldest: &mut Option<tokio::time::Instant>,
) {
    match job.op {
        LedgerOp::Pending(_) => pending.push(job),
        LedgerOp::Complete(..) => {
            oldest.get_or_insert_with(tokio::time::Instant::now);
            completions.push(job);
        }
    }
}

/// Commits a batch; on failure retries pending records together and completions one by one,
/// so one bad row cannot fail its neighbours.
async fn commit(store: &Store, node_id: &str, jobs: Vec<Job>, events: Option<&EventLog>) {
    let (ops, dones): (Vec<LedgerOp>, Vec<_>) = jobs.into_iter().map(|j| (j.op, j.done)).unzip();
    let err = match store.write_batch(node_id, &ops).await {
        Ok(()) => {
            for d in dones.into_iter().flatten() {
                let _ = d.send(Ok(()));
            }
            return;
        }
        Err(e) => e,
    };
    tracing::warn!(error = %err, batch = ops.len(), "ledger batch failed; retrying its parts");
    let mut pending_ops = Vec::new();
    let mut pending_dones = Vec::new();
    for (op, done) in ops.into_iter().zip(dones) {
        match op {
            LedgerOp::Pending(_) => {
                pending_ops.push(op);
                pending_dones.extend(done);
            }
            LedgerOp::Complete(..) => complete_alone(store, node_id, op, events).await,
        }
    }
    if pending_ops.is_empty() {
        return;
    }
    let res = store
        .write_batch(node_id, &pending_ops)
        .await
        .map_err(|e| e.to_string());
    if let Err(e) = &res {
        refused(events, e, pending_ops.len());
    }
    for d in pending_dones {
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
            .mark_request_error(id, PERSISTENCE_FAILED, now_us())
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
    tracing::error!(error = %error, requests, "could not record pending requests; refusing them");
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
    tracing::error!(request = %id, error = %error, "could not record completion; marking request error");
    report_failure(
        events,
        "could not record the completion of a request; marked error",
        serde_json::json!({ "error": error, "request": id }),
    );
    if let Err(e) = marked {
        tracing::error!(request = %id, error = %e, "could not mark request error either");
    }
}

/// The SQLite in-flight thread: commits every queued pending record (and deletes settled
/// rows) in one transaction, then wakes the waiters.
fn inflight_writer(
    mut conn: InflightWriter,
    node_id: &str,
    max_batch: usize,
    rx: std_mpsc::Receiver<LiveJob>,
    depth: &QueueDepth,
    events: Option<EventLog>,
) {
    let mut records = Vec::with_capacity(max_batch);
    let mut dones = Vec::with_capacity(max_batch);
    let mut settled = Vec::new();
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        while let Some(job) = next {
            match job {
                LiveJob::Pending(rec, done) => {
                    records.push(rec);
                    dones.push(done);
                }
                LiveJob::Settled(ids) => settled.extend(ids),
            }
            next = (records.len() < max_batch)
                .then(|| rx.try_recv().ok())
                .flatten();
        }
        depth.batch(records.len());
        let started = Instant::now();
        let mut res = conn.write(node_id, &records, &settled);
        if res.is_err() && !settled.is_empty() {
            // Settled rows must not take the waiting pending records down with them; left
            // behind, they are hidden by their finished rows and removed at the next start.
            res = conn.write(node_id, &records, &[]);
            if let Err(e) = conn.write(node_id, &[], &settled) {
                tracing::warn!(error = %e, "could not remove finished requests from the in-flight file");
            }
        }
        let res = res.map_err(|e| e.to_string());
        if let Err(e) = &res {
            refused(events.as_ref(), e, records.len());
        }
        // Dropped before the waiters wake, so each holds the only reference to its record.
        records.clear();
        for d in dones.drain(..) {
            let _ = d.send(res.clone());
        }
        metrics::histogram!("sluice_ledger_commit_seconds").record(started.elapsed().as_secs_f64());
        settled.clear();
    }
    tracing::debug!("ledger in-flight writer drained and stopped");
}

/// The SQLite history thread: commits completions in batches of up to `max_batch`, gathered
/// for up to `completion_delay`, then hands their ids to the in-flight thread.
fn history_writer(
    mut conn: HistoryWriter,
    cfg: &LedgerConfig,
    rx: std_mpsc::Receiver<Job>,
    settle: std_mpsc::Sender<LiveJob>,
    depth: &QueueDepth,
    events: Option<EventLog>,
) {
    let mut ops = Vec::with_capacity(cfg.max_batch);
    while let Ok(first) = rx.recv() {
        ops.push(first.op);
        drain(&rx, &mut ops, cfg.max_batch);
        if ops.len() < cfg.max_batch {
            // Keeping up: gather more by sleeping, not by waiting on the queue, so the
            // completions arriving meanwhile do not wake the thread one by one.
            std::thread::sleep(cfg.completion_delay);
            drain(&rx, &mut ops, cfg.max_batch);
        }
        depth.batch(ops.len());
        let settled = commit_history(&mut conn, &cfg.node_id, &mut ops, events.as_ref());
        if !settled.is_empty() {
            let _ = settle.send(LiveJob::Settled(settled));
        }
    }
    tracing::debug!("ledger history writer drained and stopped");
}

/// Moves queued completions into `ops` until it holds `max` or the queue is empty.
fn drain(rx: &std_mpsc::Receiver<Job>, ops: &mut Vec<LedgerOp>, max: usize) {
    while ops.len() < max {
        match rx.try_recv() {
            Ok(job) => ops.push(job.op),
            Err(_) => break,
        }
    }
}

/// Commits completions (emptying `ops`); on failure retries them one by one, so one bad row
/// cannot fail its neighbours. Returns the ids now finished in the ledger file.
fn commit_history(
    conn: &mut HistoryWriter,
    node_id: &str,
    ops: &mut Vec<LedgerOp>,
    events: Option<&EventLog>,
) -> Vec<uuid::Uuid> {
    let started = Instant::now();
    let res = conn.write(node_id, ops);
    metrics::histogram!("sluice_ledger_commit_seconds").record(started.elapsed().as_secs_f64());
    match res {
        Ok(()) => return ops.drain(..).map(|op| op.record().id).collect(),
        Err(e) => {
            tracing::warn!(error = %e, batch = ops.len(), "ledger batch failed; retrying its parts")
        }
    }
    let mut settled = Vec::with_capacity(ops.len());
    for op in ops.drain(..) {
        let id = op.record().id;
        match conn.write(node_id, std::slice::from_ref(&op)) {
            Ok(()) => settled.push(id),
            Err(e) => {
                let marked = conn
                    .mark_error(id, PERSISTENCE_FAILED, now_us())
                    .map_err(|e| e.to_string());
                unrecorded(events, id, &e.to_string(), marked);
            }
        }
    }
    settled
}

/// Shortest time between two ledger-failure entries in the event log.
pub const FAILURE_EVENT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

fn report_failure(events: Option<&EventLog>, message: &str, details: serde_json::Value) {
    if let Some(ev) = events {
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
}
