//! The health part of the channel resource: `health_status`, `health_checked_at`,
//! `health_failure`, `health_hint`, `last_request_at`, `stale` and `requests_24h`.

use serde_json::{json, Value};
use sluice_core::clock::now_us;
use sluice_core::Channel;
use sluice_health::stale::is_stale;

use crate::error::ApiResult;
use crate::wire;
use crate::AdminState;

/// The window of `requests_24h`.
const DAY_US: i64 = 24 * 3600 * 1_000_000;

/// Adds the health fields to each channel JSON in `items` (same order as `channels`), with
/// two queries for the whole page.
pub async fn decorate(
    state: &AdminState,
    channels: &[Channel],
    items: &mut [Value],
) -> ApiResult<()> {
    let ids: Vec<_> = channels.iter().map(|c| c.id).collect();
    let now = now_us();
    let health = state.store.channel_health(&ids).await?;
    let threshold = state.stale_threshold().await?;
    let counts = state
        .store
        .counts_by_state_since(&ids, now - DAY_US)
        .await?;
    for (ch, item) in channels.iter().zip(items.iter_mut()) {
        let Some(h) = health.get(&ch.id) else {
            continue;
        };
        item["health_status"] = json!(h.status);
        item["health_checked_at"] = json!(h.checked_at.map(wire::ts));
        item["health_failure"] = json!(h.failure);
        item["health_hint"] = json!(h.hint);
        item["last_request_at"] = json!(h.last_request_at.map(wire::ts));
        item["stale"] = json!(is_stale(h, now, threshold));
        item["requests_24h"] = json!(counts.get(&ch.id));
    }
    Ok(())
}
