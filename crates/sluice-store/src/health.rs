//! Health of channels' sinks, their recent traffic, and stale-channel bookkeeping.
//!
//! These columns belong to the health monitor, not to the configuration: writing them does
//! not bump `lock_version`, write an audit entry or announce a change (routes and snapshots
//! stay as they are).

use std::collections::HashMap;

use sluice_core::clock::Micros;
pub use sluice_core::health::HealthStatus;
use sqlx::Row;
use uuid::Uuid;

use crate::db::Store;
use crate::error::{Result, StoreError};
use crate::rows;

/// What the monitor knows about one channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelHealth {
    /// The channel.
    pub channel_id: Uuid,
    /// Whether the channel is enabled.
    pub enabled: bool,
    /// Current verdict.
    pub status: HealthStatus,
    /// When the sink was last probed.
    pub checked_at: Option<Micros>,
    /// What failed last time the sink was found unhealthy.
    pub failure: Option<String>,
    /// The operator hint for that failure.
    pub hint: Option<String>,
    /// Whether the channel's staleness has been logged (and not cleared by traffic since).
    pub stale_logged: bool,
    /// When the channel was created.
    pub created_at: Micros,
    /// When its most recent request started.
    pub last_request_at: Option<Micros>,
}

impl ChannelHealth {
    /// When the channel last saw traffic, or was created if it never did.
    pub fn last_activity(&self) -> Micros {
        self.last_request_at.unwrap_or(self.created_at)
    }
}

/// A health verdict to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthUpdate {
    /// The verdict.
    pub status: HealthStatus,
    /// Probe time; `None` keeps the stored one (a verdict from proxied traffic).
    pub checked_at: Option<Micros>,
    /// The failure, for an unhealthy verdict.
    pub failure: Option<String>,
    /// The hint, for an unhealthy verdict.
    pub hint: Option<String>,
}

/// `$from, $from+1, …`: `n` numbered parameters.
pub(crate) fn in_list(from: usize, n: usize) -> String {
    (from..from + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The columns of a channel's health, with when its newest request started: in its rows or
/// in flight (a request only in the SQLite journal is added by [`Store::channel_health`]; the
/// stale check, reading days back, does without it).
const HEALTH_COLUMNS: &str =
    "id, enabled, health_status, health_checked_at, health_failure, health_hint, \
     stale_logged, created_at, (SELECT MAX(t) FROM ( \
       SELECT MAX(r.started_at) AS t FROM requests r WHERE r.channel_id = channels.id \
       UNION ALL \
       SELECT MAX(f.started_at) AS t FROM requests_inflight f WHERE f.channel_id = channels.id\
       ) AS u) AS last_request_at";

fn health_from_row(r: &sqlx::any::AnyRow) -> Result<ChannelHealth> {
    let status: String = r.try_get("health_status")?;
    Ok(ChannelHealth {
        channel_id: rows::uuid(r, "id")?,
        enabled: rows::flag(r, "enabled")?,
        status: HealthStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("health_status {status:?}")))?,
        checked_at: r.try_get("health_checked_at")?,
        failure: r.try_get("health_failure")?,
        hint: r.try_get("health_hint")?,
        stale_logged: rows::flag(r, "stale_logged")?,
        created_at: r.try_get("created_at")?,
        last_request_at: r.try_get("last_request_at")?,
    })
}

impl Store {
    /// Stores a health verdict; returns `false` when the channel does not exist.
    pub async fn set_channel_health(&self, id: Uuid, u: &HealthUpdate) -> Result<bool> {
        let q = match u.checked_at {
            Some(at) => sqlx::query(
                "UPDATE channels SET health_status = $1, health_failure = $2, health_hint = $3, \
                 health_checked_at = $5 WHERE id = $4",
            )
            .bind(u.status.as_str())
            .bind(u.failure.clone())
            .bind(u.hint.clone())
            .bind(id.to_string())
            .bind(at),
            None => sqlx::query(
                "UPDATE channels SET health_status = $1, health_failure = $2, health_hint = $3 \
                 WHERE id = $4",
            )
            .bind(u.status.as_str())
            .bind(u.failure.clone())
            .bind(u.hint.clone())
            .bind(id.to_string()),
        };
        Ok(q.execute(&self.pool).await?.rows_affected() > 0)
    }

    /// Records whether a channel's staleness has been logged.
    pub async fn set_stale_logged(&self, id: Uuid, logged: bool) -> Result<()> {
        sqlx::query("UPDATE channels SET stale_logged = $1 WHERE id = $2")
            .bind(logged)
            .bind(id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Health of the given channels (missing ones are left out).
    pub async fn channel_health(&self, ids: &[Uuid]) -> Result<HashMap<Uuid, ChannelHealth>> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let sql = format!(
            "SELECT {} FROM channels WHERE id IN ({})",
            HEALTH_COLUMNS,
            in_list(1, ids.len())
        );
        let mut q = sqlx::query(&sql);
        for id in ids {
            q = q.bind(id.to_string());
        }
        let mut health: HashMap<Uuid, ChannelHealth> = q
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| health_from_row(r).map(|h| (h.channel_id, h)))
            .collect::<Result<_>>()?;
        // Requests only in the SQLite journal (finished, their rows not yet committed).
        for r in self.inflight.records() {
            if let Some(h) = health.get_mut(&r.channel_id) {
                h.last_request_at = h.last_request_at.max(Some(r.started_at));
            }
        }
        Ok(health)
    }

    /// Health of every channel, ordered by id, after `after`, at most `limit`.
    pub async fn list_channel_health(
        &self,
        after: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<ChannelHealth>> {
        sqlx::query(&format!(
            "SELECT {} FROM channels WHERE id > $1 ORDER BY id LIMIT $2",
            HEALTH_COLUMNS
        ))
        .bind(after.map(|a| a.to_string()).unwrap_or_default())
        .bind(limit)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(health_from_row)
        .collect()
    }
}
