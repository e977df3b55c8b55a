//! The loop every periodic job runs in.

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

/// Runs `tick` at once and then every `period` until `shutdown` turns `true`; a tick in
/// progress is abandoned at shutdown.
pub async fn every<F, Fut>(period: Duration, mut shutdown: watch::Receiver<bool>, mut tick: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut interval = tokio::time::interval(period.max(Duration::from_millis(1)));
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        if *shutdown.borrow() {
            return;
        }
        tokio::select! {
            _ = interval.tick() => {}
            _ = shutdown.changed() => return,
        }
        tokio::select! {
            _ = tick() => {}
            _ = stopped(&mut shutdown) => return,
        }
    }
}

/// Resolves once `shutdown` is `true` (or its sender is gone).
pub async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is dropped here, so callers' futures stay `Send`.
    let _ = shutdown.wait_for(|s| *s).await.is_ok();
}
