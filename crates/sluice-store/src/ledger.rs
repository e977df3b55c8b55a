//! Group commit: one writer task turns whatever requests are queued into one transaction.
//!
//! A proxied request awaits the commit of its `pending` record before a byte goes to the sink;
//! while one transaction commits, the next requests queue up and share the following one, so
//! the cost per request falls as load rises. Completions travel the same queue without anyone
//! waiting for them: they are held back for up to [`LedgerConfig::completion_delay`] (or until a
//! batch fills) and then ride along with the next commit, so the urgent pending records are not
//! slowed by the bulky event rows and each commit rewrites fewer pages per request.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
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
use crate::sqlite_writer::SqliteWriter;

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

/// Handle to the group-commit writer; cheap to clone.
#[derive(Clone)]
pub struct Ledger {
    tx: mpsc::UnboundedSender<Job>,
    depth: Arc<AtomicI64>,
}

impl Ledger {
    /// Starts the writer. On SQLite it runs on its own thread with its own write connection
    /// (blocking SQLite calls never stall the proxy's runtime); on PostgreSQL it is a task on
    /// the current runtime. It runs until every handle is dropped and the queue is drained; the
    /// returned task finishes then.
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
        let (tx, rx) = mpsc::unbounded_channel();
        let depth = Arc::new(AtomicI64::new(0));
        let handle = Ledger {
            tx,
            depth: depth.clone(),
        };
        let Some((path, busy)) = store.sqlite_file() else {
            return Ok((
                handle,
                tokio::spawn(writer(BatchWriter::Pool(store), cfg, rx, depth, events)),
            ));
        };
        let conn = SqliteWriter::open(path, busy).map_err(|e| StoreError::Sqlite(e.to_string()))?;
        let (finished, wait) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("sluice-ledger".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_time()
                    .build()
                    .expect("building the ledger writer's runtime");
                rt.block_on(writer(BatchWriter::Sqlite(conn), cfg, rx, depth, events));
                let _ = finished.send(());
            })
            .map_err(|e| StoreError::Sqlite(format!("starting the ledger thread: {e}")))?;
        Ok((
            handle,
            tokio::spawn(async move {
                let _ = wait.await;
            }),
        ))
    }

    fn enqueue(&self, job: Job) -> bool {
        let ok = self.tx.send(job).is_ok();
        if ok {
            let d = self.depth.fetch_add(1, Ordering::Relaxed) + 1;
            metrics::gauge!("sluice_ledger_queue_depth").set(d as f64);
        }
        ok
    }

    /// Makes a `pending` record durable; returns once its transaction has committed.
    pub async fn record_pending(&self, rec: RequestRecord) -> Result<(), LedgerError> {
        let (done, wait) = oneshot::channel();
        if !self.enqueue(Job {
            op: LedgerOp::Pending(rec),
            done: Some(done),
        }) {
            return Err(LedgerError::Closed);
        }
        match wait.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(LedgerError::Unavailable(e)),
            Err(_) => Err(LedgerError::Closed),
        }
    }

    /// Queues the final state (and event) of a request; nobody waits for it.
    pub fn record_completion(&self, rec: RequestRecord, event: Option<EventRecord>) {
        if !self.enqueue(Job {
            op: LedgerOp::Complete(rec, event.map(Box::new)),
            done: None,
        }) {
            tracing::error!("ledger closed: completion of a request was not recorded");
        }
    }

    /// Operations queued and not yet committed.
    pub fn queue_depth(&self) -> i64 {
        self.depth.load(Ordering::Relaxed)
    }
}

/// Where batches go: the dedicated SQLite connection, or the pool (PostgreSQL).
enum BatchWriter {
    Pool(Store),
    Sqlite(SqliteWriter),
}

impl BatchWriter {
    /// Writes `ops` in one transaction.
    async fn write(&mut self, node_id: &str, ops: &[LedgerOp]) -> Result<(), String> {
        match self {
            BatchWriter::Pool(store) => store
                .write_batch(node_id, ops)
                .await
                .map_err(|e| e.to_string()),
            BatchWriter::Sqlite(conn) => conn.write(node_id, ops).map_err(|e| e.to_string()),
        }
    }

    /// Marks one request `error` with `error`.
    async fn mark_error(&mut self, id: uuid::Uuid, error: &str) -> Result<(), String> {
        match self {
            BatchWriter::Pool(store) => store
                .mark_request_error(id, error, now_us())
                .await
                .map_err(|e| e.to_string()),
            BatchWriter::Sqlite(conn) => conn
                .mark_error(id, error, now_us())
                .map_err(|e| e.to_string()),
        }
    }
}

async fn writer(
    mut sink: BatchWriter,
    cfg: LedgerConfig,
    mut rx: mpsc::UnboundedReceiver<Job>,
    depth: Arc<AtomicI64>,
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
        let d = depth.fetch_sub(jobs.len() as i64, Ordering::Relaxed) - jobs.len() as i64;
        metrics::gauge!("sluice_ledger_queue_depth").set(d as f64);
        metrics::histogram!("sluice_ledger_batch_size").record(jobs.len() as f64);
        let started = Instant::now();
        commit(&mut sink, &cfg.node_id, jobs, events.as_ref()).await;
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
async fn commit(sink: &mut BatchWriter, node_id: &str, jobs: Vec<Job>, events: Option<&EventLog>) {
    let (ops, dones): (Vec<LedgerOp>, Vec<_>) = jobs.into_iter().map(|j| (j.op, j.done)).unzip();
    let err = match sink.write(node_id, &ops).await {
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
            LedgerOp::Complete(..) => complete_alone(sink, node_id, op, events).await,
        }
    }
    if pending_ops.is_empty() {
        return;
    }
    let res = sink.write(node_id, &pending_ops).await;
    if let Err(e) = &res {
        metrics::counter!("sluice_ledger_write_failures_total").increment(pending_ops.len() as u64);
        tracing::error!(error = %e, requests = pending_ops.len(), "could not record pending requests; refusing them");
        report_failure(
            events,
            "could not record pending requests; they were refused",
            serde_json::json!({ "error": e, "requests": pending_ops.len() }),
        );
    }
    for d in pending_dones {
        let _ = d.send(res.clone());
    }
}

async fn complete_alone(
    sink: &mut BatchWriter,
    node_id: &str,
    op: LedgerOp,
    events: Option<&EventLog>,
) {
    let LedgerOp::Complete(rec, _) = &op else {
        return;
    };
    let id = rec.id;
    if let Err(e) = sink.write(node_id, std::slice::from_ref(&op)).await {
        metrics::counter!("sluice_ledger_write_failures_total").increment(1);
        tracing::error!(request = %id, error = %e, "could not record completion; marking request error");
        report_failure(
            events,
            "could not record the completion of a request; marked error",
            serde_json::json!({ "error": e, "request": id }),
        );
        if let Err(e) = sink.mark_error(id, "persistence_failed").await {
            tracing::error!(request = %id, error = %e, "could not mark request error either");
        }
    }
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
