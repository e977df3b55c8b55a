//! The health monitor: probes every enabled channel's sink on an interval with bounded
//! concurrency, stores each verdict, and reports flips.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use sluice_core::Channel;
use sluice_store::settings::HEALTH_INTERVAL_SECS;
use sluice_store::{Change, HealthStatus, HealthUpdate, Store, StoreError};
use tokio::sync::watch;

use crate::clock::Clock;
use crate::flips::FlipReporter;
use crate::passive::HealthBoard;
use crate::pipeline::Validator;
use crate::schedule;

/// Channels read per page while listing.
const PAGE: i64 = 500;

/// How the monitor runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonitorConfig {
    /// Time between two rounds of probes (default 5 minutes).
    pub interval: Duration,
    /// Probes in flight at once (default 8).
    pub concurrency: usize,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(300),
            concurrency: 8,
        }
    }
}

/// The periodic prober.
pub struct HealthMonitor {
    store: Store,
    validator: Validator,
    board: Arc<HealthBoard>,
    reporter: FlipReporter,
    clock: Arc<dyn Clock>,
    cfg: MonitorConfig,
}

impl HealthMonitor {
    /// A monitor probing with `validator`, deciding flips on `board`, reporting through
    /// `reporter`.
    pub fn new(
        store: Store,
        validator: Validator,
        board: Arc<HealthBoard>,
        reporter: FlipReporter,
        clock: Arc<dyn Clock>,
        cfg: MonitorConfig,
    ) -> Self {
        Self {
            store,
            validator,
            board,
            reporter,
            clock,
            cfg,
        }
    }

    /// Loads stored verdicts onto the board, so a restart does not report flips again.
    pub async fn seed(&self) -> Result<(), StoreError> {
        let mut after = None;
        loop {
            let page = self.store.list_channel_health(after, PAGE).await?;
            for h in &page {
                if h.status != HealthStatus::Unknown {
                    self.board.seed(h.channel_id, h.status);
                }
            }
            match page.last() {
                Some(last) if page.len() as i64 == PAGE => after = Some(last.channel_id),
                _ => return Ok(()),
            }
        }
    }

    async fn enabled_channels(&self) -> Result<Vec<Channel>, StoreError> {
        let mut out = Vec::new();
        let mut after = None;
        loop {
            let page = self.store.list_channels(None, after, PAGE).await?;
            let full = page.len() as i64 == PAGE;
            after = page.last().map(|c| c.id);
            out.extend(page.into_iter().filter(|c| c.enabled));
            if !full {
                return Ok(out);
            }
        }
    }

    async fn probe(&self, ch: &Channel) {
        let outcome = self.validator.probe(&ch.sink_url).await;
        let update = HealthUpdate {
            status: if outcome.healthy {
                HealthStatus::Healthy
            } else {
                HealthStatus::Unhealthy
            },
            checked_at: Some(self.clock.now_us()),
            failure: (!outcome.healthy).then(|| outcome.detail.clone()),
            hint: outcome.hint.clone(),
        };
        match self.store.set_channel_health(ch.id, &update).await {
            Ok(true) => {}
            Ok(false) => {
                // Deleted meanwhile.
                self.board.forget(ch.id);
                return;
            }
            Err(e) => {
                tracing::error!(channel = %ch.id, error = %e, "could not store a probe verdict")
            }
        }
        if let Some(flip) = self.board.probed(ch.id, &outcome) {
            self.reporter.report(&flip).await;
        }
    }

    /// Probes every enabled channel once; returns how many were probed.
    pub async fn probe_all(&self) -> Result<usize, StoreError> {
        let channels = self.enabled_channels().await?;
        let n = channels.len();
        futures_util::stream::iter(channels.iter())
            .for_each_concurrent(self.cfg.concurrency.max(1), |ch| self.probe(ch))
            .await;
        Ok(n)
    }

    /// Seeds the board, then probes a round every interval until `shutdown`: the saved
    /// `health_interval_secs` setting, or the configured one (zero: no rounds; passive health
    /// still starts from the stored verdicts). Saving settings starts a new round at once, on
    /// the new interval.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        if let Err(e) = self.seed().await {
            tracing::error!(error = %e, "could not load stored health verdicts");
        }
        let mut changes = self.store.subscribe();
        let mut period = self.cfg.interval;
        loop {
            match self.store.saved_setting(HEALTH_INTERVAL_SECS).await {
                Ok(saved) => period = saved.map_or(self.cfg.interval, Duration::from_secs),
                // Keeps the last interval it knew.
                Err(e) => tracing::warn!(error = %e, "could not read the health interval"),
            }
            let round = async {
                if period.is_zero() {
                    return std::future::pending().await;
                }
                let mut ticks = tokio::time::interval(period);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    ticks.tick().await;
                    if let Err(e) = self.probe_all().await {
                        tracing::error!(error = %e, "health round failed");
                    }
                }
            };
            tokio::select! {
                () = round => {}
                () = settings_saved(&mut changes) => {}
                () = schedule::stopped(&mut shutdown) => return,
            }
        }
    }
}

/// Resolves at the next saved setting (or when changes may have been missed).
async fn settings_saved(changes: &mut tokio::sync::broadcast::Receiver<Change>) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        match changes.recv().await {
            Ok(Change::Settings | Change::Unknown) | Err(RecvError::Lagged(_)) => return,
            Ok(_) => {}
            Err(RecvError::Closed) => std::future::pending().await,
        }
    }
}
