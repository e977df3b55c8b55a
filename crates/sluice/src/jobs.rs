//! The background jobs of `serve`: the health monitor, the reporter of flips caused by traffic,
//! the stale-channel check, event-log retention and the adaptor catalogue's refresh. Each stops when `shutdown` turns `true`.
//!
//! The reporter runs on every node (it reports what this node's traffic saw); the monitor, the
//! stale check, retention and the catalogue refresh run only while this node leads (one node of a cluster, see
//! `sluice_store::leader`), and move to another node when it stops leading.

use std::sync::Arc;
use std::time::Duration;

use sluice_admin::catalog::Catalog;
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
#[allow(clippy::too_many_arguments)]
pub fn spawn(
    args: &ServeArgs,
    store: &Store,
    events: &EventLog,
    leading: watch::Receiver<bool>,
    catalog: Arc<Catalog>,
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
    let (store, events) = (store.clone(), events.clone());
    let monitor_cfg = MonitorConfig {
        interval: args.health_interval,
        concurrency: args.health_concurrency.max(1),
    };
    let catalog_every = args.catalog.catalog_refresh_interval;
    let (stale_after, retain) = (
        DAY * args.stale_threshold_days,
        DAY * args.event_retention_days,
    );
    let start_term = move |term: watch::Receiver<bool>| {
        let monitor = HealthMonitor::new(
            store.clone(),
            validator.clone(),
            board.clone(),
            reporter.clone(),
            clock.clone(),
            monitor_cfg.clone(),
        );
        let stale = StaleDetector::new(store.clone(), events.clone(), clock.clone(), stale_after);
        let retention = Retention::new(store.clone(), clock.clone(), retain, RETENTION_BATCH);
        let mut jobs = vec![
            tokio::spawn(monitor.run(term.clone())),
            tokio::spawn(stale.run(STALE_CHECK_EVERY, term.clone())),
        ];
        if !catalog_every.is_zero() {
            jobs.push(tokio::spawn(
                catalog.clone().run(catalog_every, term.clone()),
            ));
        }
        jobs.push(tokio::spawn(retention.run(RETENTION_EVERY, term)));
        jobs
    };
    tasks.push(tokio::spawn(while_leading(
        leading,
        shutdown.clone(),
        start_term,
    )));
    tasks
}

/// Runs the jobs `start` spawns for as long as this node leads, each term until leadership is
/// lost or `shutdown`; then waits for them to stop.
async fn while_leading<F>(
    mut leading: watch::Receiver<bool>,
    mut shutdown: watch::Receiver<bool>,
    start: F,
) where
    F: Fn(watch::Receiver<bool>) -> Vec<JoinHandle<()>>,
{
    loop {
        metrics::gauge!("sluice_background_jobs_leader").set(0.0);
        tokio::select! {
            // A feed that closed without this node leading never will.
            led = leading.wait_for(|l| *l) => if led.is_err() { return },
            _ = shutdown.wait_for(|s| *s) => return,
        }
        metrics::gauge!("sluice_background_jobs_leader").set(1.0);
        let (end_term, term) = watch::channel(false);
        let jobs = start(term);
        let mut stop = shutdown.clone();
        let lost = tokio::select! {
            lost = leading.wait_for(|l| !*l) => lost.is_ok(),
            _ = shutdown.wait_for(|s| *s) => true,
        };
        if !lost {
            // A feed that closed while this node leads (SQLite) leads until shutdown.
            let _ = stop.wait_for(|s| *s).await;
        }
        let _ = end_term.send(true);
        for job in jobs {
            let _ = job.await;
        }
    }
}
