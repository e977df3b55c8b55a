//! Event-log entries: their types, their filter, and the persisted (warn and error) half.
//!
//! The in-process half — id sequence, in-memory ring of recent entries, live broadcast — is
//! [`crate::event_log::EventLog`].

use std::collections::HashSet;
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;
use sluice_core::clock::Micros;
pub use sluice_core::event_kind::{Severity, Source};
use sqlx::any::AnyRow;
use sqlx::Row;
use uuid::Uuid;

use crate::db::Store;
use crate::error::{Result, StoreError};
use crate::rows;

/// One operational event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LogEntry {
    /// Position in the event sequence: strictly increasing, also the SSE event id.
    pub id: i64,
    /// When it happened.
    pub at: Micros,
    /// How serious it is.
    pub severity: Severity,
    /// What produced it.
    pub source: Source,
    /// The channel it concerns, if any.
    pub channel_id: Option<Uuid>,
    /// One line for humans.
    pub message: String,
    /// Structured particulars.
    pub details: Value,
}

/// Which entries to show; empty lists mean "any".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogFilter {
    /// Only these severities.
    pub severities: Vec<Severity>,
    /// Only these sources.
    pub sources: Vec<Source>,
    /// Only entries of this channel.
    pub channel_id: Option<Uuid>,
    /// Only entries the reader may see (`None`: every entry).
    pub scope: Option<ChannelScope>,
}

/// The entries a reader who is not a superuser may see: those of channels in their projects.
#[derive(Debug, Clone, PartialEq)]
pub enum ChannelScope {
    /// Entries of any channel (none instance-wide).
    AnyChannel,
    /// Entries of these channels only.
    Channels(Arc<HashSet<Uuid>>),
}

impl ChannelScope {
    fn allows(&self, channel: Option<Uuid>) -> bool {
        match (self, channel) {
            (_, None) => false,
            (ChannelScope::AnyChannel, Some(_)) => true,
            (ChannelScope::Channels(set), Some(c)) => set.contains(&c),
        }
    }
}

impl LogFilter {
    /// Whether `e` passes the filter.
    pub fn matches(&self, e: &LogEntry) -> bool {
        (self.severities.is_empty() || self.severities.contains(&e.severity))
            && (self.sources.is_empty() || self.sources.contains(&e.source))
            && (self.channel_id.is_none() || self.channel_id == e.channel_id)
            && self.scope.as_ref().is_none_or(|s| s.allows(e.channel_id))
    }
}

/// A window of the id sequence, and which end of it to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogPage {
    /// Newest first, ids below `before` (all when `None`).
    Before(Option<i64>),
    /// Oldest first, ids above the given one (for replaying what a client missed).
    After(i64),
}

fn entry_from_row(r: &AnyRow) -> Result<LogEntry> {
    let severity: String = r.try_get("severity")?;
    let source: String = r.try_get("source")?;
    Ok(LogEntry {
        id: r.try_get("id")?,
        at: r.try_get("at")?,
        severity: Severity::parse(&severity)
            .ok_or_else(|| StoreError::Corrupt(format!("severity {severity:?}")))?,
        source: Source::parse(&source)
            .ok_or_else(|| StoreError::Corrupt(format!("source {source:?}")))?,
        channel_id: rows::opt_uuid(r, "channel_id")?,
        message: r.try_get("message")?,
        details: rows::json(r, "details")?,
    })
}

/// `$from, $from+1, …` for `n` values.
fn params(from: usize, n: usize) -> String {
    (from..from + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Store {
    /// Writes entries (an entry already stored is left as it is).
    pub async fn insert_log_entries(&self, entries: &[LogEntry]) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        for e in entries {
            sqlx::query(
                "INSERT INTO event_log (id, at, severity, source, channel_id, message, details) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING",
            )
            .bind(e.id)
            .bind(e.at)
            .bind(e.severity.as_str())
            .bind(e.source.as_str())
            .bind(e.channel_id.map(|c| c.to_string()))
            .bind(&e.message)
            .bind(rows::to_json(&e.details))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Persisted entries passing `filter` in the window `page`, at most `limit`.
    pub async fn list_log_entries(
        &self,
        filter: &LogFilter,
        page: LogPage,
        limit: i64,
    ) -> Result<Vec<LogEntry>> {
        let (cmp, bound, order) = match page {
            LogPage::Before(b) => ("<", b.unwrap_or(i64::MAX), "DESC"),
            LogPage::After(a) => (">", a, "ASC"),
        };
        let mut sql = format!(
            "SELECT id, at, severity, source, channel_id, message, details FROM event_log \
             WHERE id {cmp} $1 AND ($2 = '' OR channel_id = $2)"
        );
        let mut next = 3;
        if !filter.severities.is_empty() {
            sql += &format!(
                " AND severity IN ({})",
                params(next, filter.severities.len())
            );
            next += filter.severities.len();
        }
        if !filter.sources.is_empty() {
            sql += &format!(" AND source IN ({})", params(next, filter.sources.len()));
            next += filter.sources.len();
        }
        let scoped: Vec<String> = match &filter.scope {
            None => Vec::new(),
            Some(ChannelScope::AnyChannel) => {
                sql += " AND channel_id IS NOT NULL";
                Vec::new()
            }
            Some(ChannelScope::Channels(set)) if set.is_empty() => return Ok(Vec::new()),
            Some(ChannelScope::Channels(set)) => {
                sql += &format!(" AND channel_id IN ({})", params(next, set.len()));
                next += set.len();
                set.iter().map(Uuid::to_string).collect()
            }
        };
        sql += &format!(" ORDER BY id {order} LIMIT ${next}");
        let mut q = sqlx::query(&sql)
            .bind(bound)
            .bind(filter.channel_id.map(|c| c.to_string()).unwrap_or_default());
        for s in &filter.severities {
            q = q.bind(s.as_str());
        }
        for s in &filter.sources {
            q = q.bind(s.as_str());
        }
        for c in &scoped {
            q = q.bind(c);
        }
        q.bind(limit)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(entry_from_row)
            .collect()
    }

    /// The highest persisted entry id.
    pub async fn max_log_id(&self) -> Result<Option<i64>> {
        let r = sqlx::query("SELECT MAX(id) AS m FROM event_log")
            .fetch_one(&self.pool)
            .await?;
        Ok(r.try_get("m")?)
    }

    /// Deletes up to `batch` persisted entries older than `before`; returns how many went.
    pub async fn prune_log_entries(&self, before: Micros, batch: i64) -> Result<u64> {
        let done = sqlx::query(
            "DELETE FROM event_log WHERE id IN \
             (SELECT id FROM event_log WHERE at < $1 ORDER BY at LIMIT $2)",
        )
        .bind(before)
        .bind(batch)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }
}
