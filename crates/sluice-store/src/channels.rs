//! Channels and their snapshots.

use serde_json::Value;
use sluice_core::clock::{now_us, Micros};
use sluice_core::{Channel, ChannelConfig, Snapshot, Timeouts};
use sqlx::any::AnyRow;
use sqlx::Row;
use uuid::Uuid;

use crate::audit::{self, AuditEntry};
use crate::changes::Change;
use crate::db::Store;
use crate::error::{Result, StoreError};
use crate::rows;

const CHANNEL_COLUMNS: &str = "id, project_id, name, sink_url, enabled, lock_version, \
     source_auth_method_ids, sink_credential_id, timeouts, preview_bytes, max_request_bytes, \
     created_at, updated_at";

fn channel_from_row(r: &AnyRow) -> Result<Channel> {
    let preview: i64 = r.try_get("preview_bytes")?;
    let limit: Option<i64> = r.try_get("max_request_bytes")?;
    Ok(Channel {
        id: rows::uuid(r, "id")?,
        project_id: rows::uuid(r, "project_id")?,
        name: r.try_get("name")?,
        sink_url: r.try_get("sink_url")?,
        enabled: rows::flag(r, "enabled")?,
        lock_version: r.try_get("lock_version")?,
        source_auth_method_ids: rows::json(r, "source_auth_method_ids")?,
        sink_credential_id: rows::opt_uuid(r, "sink_credential_id")?,
        timeouts: rows::json::<Timeouts>(r, "timeouts")?,
        preview_bytes: u32::try_from(preview).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        max_request_bytes: limit
            .map(u64::try_from)
            .transpose()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

fn snapshot_from_row(r: &AnyRow) -> Result<Snapshot> {
    Ok(Snapshot {
        id: rows::uuid(r, "id")?,
        channel_id: rows::uuid(r, "channel_id")?,
        lock_version: r.try_get("lock_version")?,
        config: rows::json::<ChannelConfig>(r, "config")?,
        created_at: r.try_get("created_at")?,
    })
}

/// Reads one channel through `executor` (the pool, or an open transaction).
async fn channel_by_id<'e, E>(executor: E, id: Uuid) -> Result<Option<Channel>>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    sqlx::query(&format!(
        "SELECT {CHANNEL_COLUMNS} FROM channels WHERE id = $1"
    ))
    .bind(id.to_string())
    .fetch_optional(executor)
    .await?
    .map(|r| channel_from_row(&r))
    .transpose()
}

/// Outcome of deleting a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteOutcome {
    /// The channel (and, when purged, its history) is gone.
    Deleted,
    /// The channel has recorded requests and `purge` was not asked for.
    HasHistory,
    /// No such channel.
    NotFound,
}

fn audit_entry(
    actor: &str,
    action: &str,
    project: Uuid,
    id: Uuid,
    before: Option<Value>,
    after: Option<Value>,
) -> AuditEntry {
    AuditEntry {
        id: Uuid::now_v7(),
        at: now_us(),
        actor: actor.to_string(),
        action: action.to_string(),
        resource_type: "channel".to_string(),
        resource_id: id.to_string(),
        before,
        after,
        project_id: Some(project),
    }
}

fn as_value(ch: &Channel) -> Value {
    serde_json::to_value(ch).expect("channel serialises")
}

impl Store {
    /// Inserts a new channel and its audit entry in one transaction.
    pub async fn create_channel(&self, ch: &Channel, actor: &str) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(&format!(
            "INSERT INTO channels ({CHANNEL_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
        ))
        .bind(ch.id.to_string())
        .bind(ch.project_id.to_string())
        .bind(&ch.name)
        .bind(&ch.sink_url)
        .bind(ch.enabled)
        .bind(ch.lock_version)
        .bind(rows::to_json(&ch.source_auth_method_ids))
        .bind(ch.sink_credential_id.map(|u| u.to_string()))
        .bind(rows::to_json(&ch.timeouts))
        .bind(i64::from(ch.preview_bytes))
        .bind(ch.max_request_bytes.map(|n| n.min(i64::MAX as u64) as i64))
        .bind(ch.created_at)
        .bind(ch.updated_at)
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            StoreError::from_write(e, "a channel with this name already exists in the project")
        })?;
        audit::insert(
            &mut tx,
            &audit_entry(
                actor,
                "create",
                ch.project_id,
                ch.id,
                None,
                Some(as_value(ch)),
            ),
        )
        .await?;
        tx.commit().await?;
        self.publish(Change::Channel(ch.id));
        Ok(())
    }

    /// Replaces a channel whose stored `lock_version` is `expected`; the new row carries
    /// `expected + 1`. Returns the stored channel.
    pub async fn update_channel(
        &self,
        ch: &Channel,
        expected: i64,
        actor: &str,
    ) -> Result<Channel> {
        let mut tx = self.begin_write().await?;
        let before = channel_by_id(&mut *tx, ch.id)
            .await?
            .ok_or(StoreError::NotFound)?;
        let mut next = ch.clone();
        next.lock_version = expected + 1;
        next.updated_at = now_us();
        let done = sqlx::query(
            "UPDATE channels SET name = $1, sink_url = $2, enabled = $3, lock_version = $4, \
             source_auth_method_ids = $5, sink_credential_id = $6, timeouts = $7, \
             preview_bytes = $8, max_request_bytes = $9, updated_at = $10 \
             WHERE id = $11 AND lock_version = $12",
        )
        .bind(&next.name)
        .bind(&next.sink_url)
        .bind(next.enabled)
        .bind(next.lock_version)
        .bind(rows::to_json(&next.source_auth_method_ids))
        .bind(next.sink_credential_id.map(|u| u.to_string()))
        .bind(rows::to_json(&next.timeouts))
        .bind(i64::from(next.preview_bytes))
        .bind(
            next.max_request_bytes
                .map(|n| n.min(i64::MAX as u64) as i64),
        )
        .bind(next.updated_at)
        .bind(next.id.to_string())
        .bind(expected)
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            StoreError::from_write(e, "a channel with this name already exists in the project")
        })?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Stale);
        }
        audit::insert(
            &mut tx,
            &audit_entry(
                actor,
                "update",
                ch.project_id,
                ch.id,
                Some(as_value(&before)),
                Some(as_value(&next)),
            ),
        )
        .await?;
        tx.commit().await?;
        self.publish(Change::Channel(ch.id));
        Ok(next)
    }

    /// Deletes a channel; with history only when `purge` (which removes the history too).
    pub async fn delete_channel(
        &self,
        id: Uuid,
        purge: bool,
        actor: &str,
    ) -> Result<DeleteOutcome> {
        let journaled = !self.in_flight(&[id], Micros::MIN).await?.is_empty();
        let mut tx = self.begin_write().await?;
        let Some(before) = channel_by_id(&mut *tx, id).await? else {
            return Ok(DeleteOutcome::NotFound);
        };
        let id_s = id.to_string();
        let has_history = journaled
            || sqlx::query(
                "SELECT 1 AS one FROM requests WHERE channel_id = $1 \
                 UNION ALL SELECT 1 AS one FROM requests_inflight WHERE channel_id = $1 LIMIT 1",
            )
            .bind(&id_s)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        if has_history && !purge {
            return Ok(DeleteOutcome::HasHistory);
        }
        let purge_history = crate::requests::FORGET_PURGED_SQL.iter();
        for sql in purge_history.chain(&[
            "DELETE FROM snapshots WHERE channel_id = $1",
            "DELETE FROM channels WHERE id = $1",
        ]) {
            sqlx::query(sql).bind(&id_s).execute(&mut *tx).await?;
        }
        audit::insert(
            &mut tx,
            &audit_entry(
                actor,
                "delete",
                before.project_id,
                id,
                Some(as_value(&before)),
                None,
            ),
        )
        .await?;
        tx.commit().await?;
        self.publish(Change::Channel(id));
        Ok(DeleteOutcome::Deleted)
    }

    /// Reads one channel.
    pub async fn get_channel(&self, id: Uuid) -> Result<Option<Channel>> {
        channel_by_id(&self.pool, id).await
    }

    /// Lists channels ordered by id, of the projects in `scope` only when given, after the id `after`.
    pub async fn list_channels(
        &self,
        scope: Option<&[Uuid]>,
        after: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<Channel>> {
        rows::page_by_id(
            &self.pool,
            "channels",
            CHANNEL_COLUMNS,
            "project_id",
            scope,
            after,
            limit,
        )
        .await?
        .iter()
        .map(channel_from_row)
        .collect()
    }

    /// The snapshot of `ch` at its current `lock_version`, created on first use. Concurrent
    /// callers (on any node) all get the same row.
    pub async fn snapshot_for(&self, ch: &Channel) -> Result<Snapshot> {
        let find = "SELECT id, channel_id, lock_version, config, created_at FROM snapshots \
                    WHERE channel_id = $1 AND lock_version = $2";
        if let Some(r) = sqlx::query(find)
            .bind(ch.id.to_string())
            .bind(ch.lock_version)
            .fetch_optional(&self.pool)
            .await?
        {
            return snapshot_from_row(&r);
        }
        sqlx::query(
            "INSERT INTO snapshots (id, channel_id, lock_version, config, created_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (channel_id, lock_version) DO NOTHING",
        )
        .bind(Uuid::now_v7().to_string())
        .bind(ch.id.to_string())
        .bind(ch.lock_version)
        .bind(rows::to_json(&ch.config()))
        .bind(now_us())
        .execute(&self.pool)
        .await?;
        let r = sqlx::query(find)
            .bind(ch.id.to_string())
            .bind(ch.lock_version)
            .fetch_one(&self.pool)
            .await?;
        snapshot_from_row(&r)
    }

    /// Snapshots of a channel, newest `lock_version` first.
    pub async fn list_snapshots(
        &self,
        channel_id: Uuid,
        before_version: Option<i64>,
        limit: i64,
    ) -> Result<Vec<Snapshot>> {
        sqlx::query(
            "SELECT id, channel_id, lock_version, config, created_at FROM snapshots \
             WHERE channel_id = $1 AND lock_version < $2 ORDER BY lock_version DESC LIMIT $3",
        )
        .bind(channel_id.to_string())
        .bind(before_version.unwrap_or(i64::MAX))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(snapshot_from_row)
        .collect()
    }

    /// One snapshot.
    pub async fn get_snapshot(&self, id: Uuid) -> Result<Option<Snapshot>> {
        sqlx::query(
            "SELECT id, channel_id, lock_version, config, created_at FROM snapshots WHERE id = $1",
        )
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?
        .map(|r| snapshot_from_row(&r))
        .transpose()
    }

    /// Time of the most recent request of a channel.
    pub async fn last_request_at(&self, channel_id: Uuid) -> Result<Option<Micros>> {
        let flying = self.in_flight(&[channel_id], Micros::MIN).await?;
        let r = sqlx::query(
            "SELECT MAX(t) AS last FROM ( \
             SELECT MAX(started_at) AS t FROM requests WHERE channel_id = $1 \
             UNION ALL SELECT MAX(started_at) AS t FROM requests_inflight WHERE channel_id = $1\
             ) AS u",
        )
        .bind(channel_id.to_string())
        .fetch_one(&self.pool)
        .await?;
        let last: Option<Micros> = r.try_get("last")?;
        Ok(flying.iter().map(|r| r.started_at).chain(last).max())
    }
}
