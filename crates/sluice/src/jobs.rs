//! The background jobs of `serve`: the health monitor, the reporter of flips caused by traffic,
//! the stale-channel check and event-log retention. Each stops when `shutdown` turns `true`.

use std::sync::Arc;
use std::time::Duration;

use sluice_health::clock::{Clock, SystemClock};
use sluice_health::flips::FlipReporter;
use sluice_health::monitor::{HealthMonitor, MonitorConfig};
use sluice_health::passive::{Flip, HealthBoard};
use sluice_health::retention::Retention;
use sluice_health::stale::StaleDetector;
use sluice_health::webhooks::{Notifier, WebhookConfig};
use sluice_health::Validator;
use sluice_store::{EventLog, Store};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::cli::ServeArgs;

/// How often stale channels are looked for.
const STALE_CHECK_EVERY: Duration = Duration::from_secs(600);
/// How often old event-log entries are pruned.
const RETENTION_EVERY: Duration = Duration::from_secs(3600);
/// Entries deleted per pruning statement.
const RETENTION_BATCH: i64 = 1000;
const DAY: Duration = Duration::from_secs(86_400);

/// Starts every job; the handles finish after `shutdown`.
pub fn spawn(
    args: &ServeArgs,
    store: &Store,
    events: &EventLog,
    validator: Validator,
    board: Option<(Arc<HealthBoard>, mpsc::UnboundedReceiver<Flip>)>,
    shutdown: &watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let notifier = Notifier::new(WebhookConfig {
        urls: args.webhook_urls.clone(),
        ..WebhookConfig::default()
    });
    let reporter = FlipReporter::new(store.clone(), events.clone(), notifier, clock.clone());
    // Without passive health the board still decides the monitor's flips; nothing feeds it.
    let (board, flips) = board.unwrap_or_else(|| HealthBoard::new(u32::MAX));
    let mut tasks = vec![tokio::spawn(reporter.clone().run(flips, shutdown.clone()))];
    let monitor = HealthMonitor::new(
        store.clone(),
        validator,
        board,
        reporter,
        clock.clone(),
        MonitorConfig {
            interval: args.health_interval,
            concurrency: args.health_concurrency.max(1),
        },
    );
    tasks.push(tokio::spawn(monitor.run(shutdown.clone())));
    let stale = StaleDetector::new(
        store.clone(),
        events.clone(),
        clock.clone(),
        DAY * args.stale_threshold_days,
    );
    tasks.push(tokio::spawn(stale.run(STALE_CHECK_EVERY, shutdown.clone())));
    let retention = Retention::new(
        store.clone(),
        clock,
        DAY * args.event_retention_days,
        RETENTION_BATCH,
    );
    tasks.push(tokio::spawn(
        retention.run(RETENTION_EVERY, shutdown.clone()),
    ));
    tasks
}
