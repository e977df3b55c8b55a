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
use crate::requests::LedgerOp;
use crate::sqlite_writer::SqliteWriter;

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
    /// Starts the writer task. It runs until every handle is dropped and the queue is drained.
    pub fn start(store: Store, cfg: LedgerConfig) -> Result<(Ledger, JoinHandle<()>), StoreError> {
        let sink = match store.sqlite_file() {
            Some((path, busy)) => BatchWriter::Sqlite(Arc::new(std::sync::Mutex::new(
                SqliteWriter::open(path, busy).map_err(|e| StoreError::Sqlite(e.to_string()))?,
            ))),
            None => BatchWriter::Pool(store.clone()),
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let depth = Arc::new(AtomicI64::new(0));
        let task = tokio::spawn(writer(store, sink, cfg, rx, depth.clone()));
        Ok((Ledger { tx, depth }, task))
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
#[derive(Clone)]
enum BatchWriter {
    Pool(Store),
    Sqlite(Arc<std::sync::Mutex<SqliteWriter>>),
}

impl BatchWriter {
    /// Writes `ops` in one transaction; hands them back for a retry of their parts.
    async fn write(
        &self,
        node_id: &Arc<str>,
        ops: Vec<LedgerOp>,
    ) -> (Vec<LedgerOp>, Result<(), String>) {
        match self {
            BatchWriter::Pool(store) => {
                let res = store
                    .write_batch(node_id, &ops)
                    .await
                    .map_err(|e| e.to_string());
                (ops, res)
            }
            BatchWriter::Sqlite(conn) => {
                let (conn, node_id) = (conn.clone(), node_id.clone());
                tokio::task::spawn_blocking(move || {
                    let mut conn = conn.lock().unwrap_or_else(|p| p.into_inner());
                    let res = conn.write(&node_id, &ops).map_err(|e| e.to_string());
                    (ops, res)
                })
                .await
                .expect("ledger write panicked")
            }
        }
    }
}

async fn writer(
    store: Store,
    sink: BatchWriter,
    cfg: LedgerConfig,
    mut rx: mpsc::UnboundedReceiver<Job>,
    depth: Arc<AtomicI64>,
) {
    let mut pending: Vec<Job> = Vec::with_capacity(cfg.max_batch);
    let mut completions: Vec<Job> = Vec::with_capacity(cfg.max_batch);
    let mut oldest_completion: Option<tokio::time::Instant> = None;
    let mut open = true;
    let node_id: Arc<str> = cfg.node_id.as_str().into();
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
            jobs.append(&mut completions);
            oldest_completion = None;
        }
        let d = depth.fetch_sub(jobs.len() as i64, Ordering::Relaxed) - jobs.len() as i64;
        metrics::gauge!("sluice_ledger_queue_depth").set(d as f64);
        metrics::histogram!("sluice_ledger_batch_size").record(jobs.len() as f64);
        let started = Instant::now();
        commit(&store, &sink, &node_id, jobs).await;
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
async fn commit(store: &Store, sink: &BatchWriter, node_id: &Arc<str>, jobs: Vec<Job>) {
    let (ops, dones): (Vec<LedgerOp>, Vec<_>) = jobs.into_iter().map(|j| (j.op, j.done)).unzip();
    let (ops, res) = sink.write(node_id, ops).await;
    let err = match res {
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
            LedgerOp::Complete(..) => complete_alone(store, sink, node_id, op).await,
        }
    }
    if pending_ops.is_empty() {
        return;
    }
    let n = pending_ops.len();
    let (_, res) = sink.write(node_id, pending_ops).await;
    if let Err(e) = &res {
        metrics::counter!("sluice_ledger_write_failures_total").increment(n as u64);
        tracing::error!(error = %e, requests = n, "could not record pending requests; refusing them");
    }
    for d in pending_dones {
        let _ = d.send(res.clone());
    }
}

async fn complete_alone(store: &Store, sink: &BatchWriter, node_id: &Arc<str>, op: LedgerOp) {
    let LedgerOp::Complete(rec, _) = &op else {
        return;
    };
    let id = rec.id;
    if let (_, Err(e)) = sink.write(node_id, vec![op]).await {
        metrics::counter!("sluice_ledger_write_failures_total").increment(1);
        tracing::error!(request = %id, error = %e, "could not record completion; marking request error");
        if let Err(e) = store
            .mark_request_error(id, "persistence_failed", now_us())
            .await
        {
            tracing::error!(request = %id, error = %e, "could not mark request error either");
        }
    }
}
