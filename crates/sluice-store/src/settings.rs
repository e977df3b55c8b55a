//! Instance settings an operator changes while sluice runs: one row of `settings` per setting
//! saved, its value a whole number; a setting without a row keeps its default, which comes from
//! the command line. Saving announces [`Change::Settings`] (on PostgreSQL to every node), and
//! the jobs read the value afresh each round.

use std::collections::BTreeMap;

use serde_json::json;
use sluice_core::clock::now_us;
use sqlx::Row;

use crate::audit;
use crate::changes::Change;
use crate::db::Store;
use crate::error::Result;

/// Seconds between two health rounds (0: no probes).
pub const HEALTH_INTERVAL_SECS: &str = "health_interval_secs";
/// Days without traffic after which an enabled channel is reported stale.
pub const STALE_THRESHOLD_DAYS: &str = "stale_threshold_days";
/// Days persisted event-log entries are kept.
pub const EVENT_RETENTION_DAYS: &str = "event_retention_days";

/// What a setting is and which whole numbers it takes.
#[derive(Debug, Clone, Copy)]
pub struct SettingSpec {
    /// Its name in the API and in the `settings` table.
    pub name: &'static str,
    /// What it is, in a few words.
    pub label: &'static str,
    /// Smallest value taken.
    pub min: u64,
    /// Largest value taken.
    pub max: u64,
}

/// Every setting, in the order pages show them.
pub const SETTINGS: [SettingSpec; 3] = [
    SettingSpec {
        name: HEALTH_INTERVAL_SECS,
        label: "Seconds between health probes of every enabled channel (0: none)",
        min: 0,
        max: 86_400,
    },
    SettingSpec {
        name: STALE_THRESHOLD_DAYS,
        label: "Days without traffic after which a channel is reported stale",
        min: 1,
        max: 3_650,
    },
    SettingSpec {
        name: EVENT_RETENTION_DAYS,
        label: "Days event-log entries are kept",
        min: 1,
        max: 3_650,
    },
];

impl Store {
    /// The saved settings (one at its default has none), by name.
    pub async fn saved_settings(&self) -> Result<BTreeMap<String, u64>> {
        sqlx::query("SELECT name, value FROM settings")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| {
                let value: i64 = r.try_get("value")?;
                Ok((r.try_get("name")?, value.max(0) as u64))
            })
            .collect()
    }

    /// One setting's saved value (`None`: at its default).
    pub async fn saved_setting(&self, name: &str) -> Result<Option<u64>> {
        let value: Option<i64> = sqlx::query_scalar("SELECT value FROM settings WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        Ok(value.map(|v| v.max(0) as u64))
    }

    /// Saves settings (`Some`) or returns them to their default (`None`) in one transaction,
    /// with an audit entry for each one that changes, and announces it. Values are checked by
    /// the caller against [`SETTINGS`].
    pub async fn save_settings(&self, changes: &[(&str, Option<u64>)], actor: &str) -> Result<()> {
        let before = self.saved_settings().await?;
        let mut tx = self.begin_write().await?;
        for (name, value) in changes {
            let old = before.get(*name).copied();
            if old == *value {
                continue;
            }
            match value {
                Some(v) => {
                    sqlx::query(
                        "INSERT INTO settings (name, value, updated_at, updated_by) \
                         VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO UPDATE SET \
                         value = excluded.value, updated_at = excluded.updated_at, \
                         updated_by = excluded.updated_by",
                    )
                    .bind(*name)
                    .bind(*v as i64)
                    .bind(now_us())
                    .bind(actor)
                    .execute(&mut *tx)
                    .await?;
                }
                None => {
                    sqlx::query("DELETE FROM settings WHERE name = $1")
                        .bind(*name)
                        .execute(&mut *tx)
                        .await?;
                }
            }
            let state = |v: Option<u64>| Some(json!({ "value": v }));
            let action = if value.is_some() { "update" } else { "reset" };
            audit::insert(
                &mut tx,
                &audit::entry(actor, action, "setting", name, state(old), state(*value)),
            )
            .await?;
        }
        tx.commit().await?;
        self.publish(Change::Settings);
        Ok(())
    }
}
