//! Event-log retention: persisted entries older than the retention period are deleted in
//! bounded batches, so pruning never holds the ledger for long.

use std::sync::Arc;
use std::time::Duration;

use sluice_store::settings::EVENT_RETENTION_DAYS;
use sluice_store::{Store, StoreError};
use tokio::sync::watch;

use crate::clock::Clock;
use crate::schedule;

/// The periodic pruning job.
pub struct Retention {
    store: Store,
    clock: Arc<dyn Clock>,
    max_age: Duration,
    batch: i64,
}

impl Retention {
    /// Prunes entries older than `max_age` (unless an operator saved another,
    /// `event_retention_days`), `batch` rows per statement.
    pub fn new(store: Store, clock: Arc<dyn Clock>, max_age: Duration, batch: i64) -> Self {
        Self {
            store,
            clock,
            max_age,
            batch: batch.max(1),
        }
    }

    /// Deletes every entry past the retention period, batch by batch (yielding between
    /// batches); returns how many went.
    pub async fn prune(&self) -> Result<u64, StoreError> {
        let max_age = match self.store.saved_setting(EVENT_RETENTION_DAYS).await? {
            Some(days) => Duration::from_secs(86_400 * days),
            None => self.max_age,
        };
        let cutoff = self.clock.now_us() - max_age.as_micros() as i64;
        let mut total = 0;
        loop {
            let n = self.store.prune_log_entries(cutoff, self.batch).await?;
            total += n;
            if n < self.batch as u64 {
                return Ok(total);
            }
            tokio::task::yield_now().await;
        }
    }

    /// Prunes every `period` until `shutdown`.
    pub async fn run(self, period: Duration, shutdown: watch::Receiver<bool>) {
        schedule::every(period, shutdown, || async {
            match self.prune().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(entries = n, "pruned old event-log entries"),
                Err(e) => tracing::error!(error = %e, "event-log retention failed"),
            }
        })
        .await;
    }
}
