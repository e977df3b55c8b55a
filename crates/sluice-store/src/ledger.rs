//! Group commit: one writer task turns whatever requests are queued into one transaction.
//!
//! A proxied request awaits the commit of its `pending` record before a byte goes to the sink;
//! while one transaction commits, the next requests queue up and share the following one, so
//! the cost per request falls as load rises. Completions travel the same queue without anyone
//! waiting for them.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use sluice_core::clock::now_us;
use sluice_core::{EventRecord, RequestRecord};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::db::Store;
use crate::requests::LedgerOp;

/// Settings of the writer.
#[derive(Debug, Clone)]
pub struct LedgerConfig {
    /// This process's node id, stored with each request (for crash recovery per node).
    pub node_id: String,
    /// Most operations in one transaction.
    pub max_batch: usize,
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
    pub fn start(store: Store, cfg: LedgerConfig) -> (Ledger, JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let depth = Arc::new(AtomicI64::new(0));
        let task = tokio::spawn(writer(store, cfg, rx, depth.clone()));
        (Ledger { tx, depth }, task)
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
            op: LedgerOp::Complete(rec, event),
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

async fn writer(
    store: Store,
    cfg: LedgerConfig,
    mut rx: mpsc::UnboundedReceiver<Job>,
    depth: Arc<AtomicI64>,
) {
    let mut jobs: Vec<Job> = Vec::with_capacity(cfg.max_batch);
    while let Some(first) = rx.recv().await {
        jobs.push(first);
        while jobs.len() < cfg.max_batch {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let d = depth.fetch_sub(jobs.len() as i64, Ordering::Relaxed) - jobs.len() as i64;
        metrics::gauge!("sluice_ledger_queue_depth").set(d as f64);
        metrics::histogram!("sluice_ledger_batch_size").record(jobs.len() as f64);
        let started = Instant::now();
        commit(&store, &cfg.node_id, std::mem::take(&mut jobs)).await;
        metrics::histogram!("sluice_ledger_commit_seconds").record(started.elapsed().as_secs_f64());
    }
    tracing::debug!("ledger writer drained and stopped");
}

/// Commits a batch; on failure retries pending records together and completions one by one,
/// so one bad row cannot fail its neighbours.
async fn commit(store: &Store, node_id: &str, jobs: Vec<Job>) {
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
            LedgerOp::Complete(rec, ev) => complete_alone(store, node_id, rec, ev).await,
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
        metrics::counter!("sluice_ledger_write_failures_total").increment(pending_ops.len() as u64);
        tracing::error!(error = %e, requests = pending_ops.len(), "could not record pending requests; refusing them");
    }
    for d in pending_dones {
        let _ = d.send(res.clone());
    }
}

async fn complete_alone(store: &Store, node_id: &str, rec: RequestRecord, ev: Option<EventRecord>) {
    let id = rec.id;
    let op = [LedgerOp::Complete(rec, ev)];
    if let Err(e) = store.write_batch(node_id, &op).await {
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
