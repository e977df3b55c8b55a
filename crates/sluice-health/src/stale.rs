//! Stale channels: an enabled channel without traffic for longer than the threshold is logged
//! once (`warn`, source `health`), and not again until it has had traffic. The "logged" flag is
//! stored, so a restart does not log it again.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use sluice_core::clock::{to_rfc3339, Micros};
use sluice_store::settings::STALE_THRESHOLD_DAYS;
use sluice_store::{ChannelHealth, EventLog, Severity, Source, Store, StoreError};
use tokio::sync::watch;

use crate::clock::Clock;
use crate::schedule;

/// Channels read per page.
const PAGE: i64 = 500;
const DAY: Duration = Duration::from_secs(86_400);

/// Whether a channel counts as stale at `now` with `threshold`.
pub fn is_stale(h: &ChannelHealth, now: Micros, threshold: Duration) -> bool {
    h.enabled && now - h.last_activity() > threshold.as_micros() as i64
}

/// The periodic stale-channel check.
pub struct StaleDetector {
    store: Store,
    events: EventLog,
    clock: Arc<dyn Clock>,
    threshold: Duration,
}

impl StaleDetector {
    /// A detector calling a channel stale after `threshold` without traffic, unless an
    /// operator saved another (`stale_threshold_days`).
    pub fn new(store: Store, events: EventLog, clock: Arc<dyn Clock>, threshold: Duration) -> Self {
        Self {
            store,
            events,
            clock,
            threshold,
        }
    }

    /// Checks every channel once; returns how many became stale (and were logged).
    pub async fn check(&self) -> Result<usize, StoreError> {
        let now = self.clock.now_us();
        let threshold = match self.store.saved_setting(STALE_THRESHOLD_DAYS).await? {
            Some(days) => DAY * days as u32,
            None => self.threshold,
        };
        let mut logged = 0;
        let mut after = None;
        loop {
            let page = self.store.list_channel_health(after, PAGE).await?;
            for h in &page {
                let stale = is_stale(h, now, threshold);
                if stale && !h.stale_logged {
                    self.store.set_stale_logged(h.channel_id, true).await?;
                    let name = self
                        .store
                        .get_channel(h.channel_id)
                        .await?
                        .map(|c| c.name)
                        .unwrap_or_default();
                    let days = threshold.as_secs_f64() / 86_400.0;
                    self.events.emit(
                        Severity::Warn,
                        Source::Health,
                        Some(h.channel_id),
                        format!("channel {name} is stale: no traffic for more than {days} days"),
                        json!({
                            "last_request_at": h.last_request_at.map(to_rfc3339),
                            "last_activity": to_rfc3339(h.last_activity()),
                            "threshold_days": days,
                        }),
                    );
                    logged += 1;
                } else if !stale
                    && h.stale_logged
                    && h.last_request_at
                        .is_some_and(|t| now - t <= threshold.as_micros() as i64)
                {
                    // Traffic since it was logged: it may be logged again the next time.
                    self.store.set_stale_logged(h.channel_id, false).await?;
                }
            }
            match page.last() {
                Some(last) if page.len() as i64 == PAGE => after = Some(last.channel_id),
                _ => return Ok(logged),
            }
        }
    }

    /// Checks every `period` until `shutdown`.
    pub async fn run(self, period: Duration, shutdown: watch::Receiver<bool>) {
        schedule::every(period, shutdown, || async {
            if let Err(e) = self.check().await {
                tracing::error!(error = %e, "stale-channel check failed");
            }
        })
        .await;
    }
}
