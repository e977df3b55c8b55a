//! The upgrades a migration leaves to code, listed in `ledger_upgrades` and each done once, in
//! one transaction with the removal of its name: importing what an older SQLite ledger kept
//! outside plain rows (request batches, event files, the in-flight file), and computing the
//! per-minute roll-ups of the requests already recorded.

use futures_util::TryStreamExt;
use sluice_core::RequestState;
use sqlx::{Any, Executor, Row, Transaction};

use crate::db::{Backend, Store};
use crate::error::{Result, StoreError};
use crate::legacy::{self, EventSpot};
use crate::request_row::{self, Ids, RECORD_COLUMNS};
use crate::rollup::Rollup;
use crate::rows;

/// Batches read at a time while importing.
const BATCHES_PER_READ: i64 = 256;
/// (channel, minute) rows of roll-ups gathered before they are written.
const ROLLUP_ROWS_PER_WRITE: usize = 10_000;

/// Runs the upgrades still listed, in name order.
pub(crate) async fn run(store: &Store) -> Result<()> {
    let names: Vec<String> = sqlx::query("SELECT name FROM ledger_upgrades ORDER BY name")
        .fetch_all(&store.pool)
        .await?
        .iter()
        .map(|r| r.try_get("name"))
        .collect::<std::result::Result<_, _>>()?;
    for name in names {
        tracing::info!(upgrade = %name, "upgrading the ledger");
        match name.as_str() {
            "import_batched_requests" => import_batched(store).await?,
            "rebuild_rollups" => rebuild_rollups(store).await?,
            other => {
                return Err(StoreError::Corrupt(format!(
                    "unknown ledger upgrade {other}"
                )))
            }
        }
    }
    Ok(())
}

async fn done(tx: &mut Transaction<'_, Any>, name: &str) -> Result<()> {
    sqlx::query("DELETE FROM ledger_upgrades WHERE name = $1")
        .bind(name)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// SQLite: writes the requests of `request_batches` as rows, moves the events of the event
/// files into their rows, takes in what the in-flight file held, then removes all three.
async fn import_batched(store: &Store) -> Result<()> {
    let Some((path, _)) = store.sqlite_file() else {
        return Err(StoreError::Corrupt("a batch import on PostgreSQL".into()));
    };
    let events = legacy::events_dir(path);
    let inflight = crate::db::inflight_file(path);
    let mut conn = store.pool.acquire().await?;
    let attached = inflight.exists();
    if attached {
        let file = inflight.display().to_string().replace('\'', "''");
        conn.execute(format!("ATTACH DATABASE '{file}' AS live").as_str())
            .await?;
    }
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    if attached {
        let cols = request_row::column_list(RECORD_COLUMNS);
        let copy = format!(
            "INSERT OR IGNORE INTO main.requests_inflight ({cols}) \
             SELECT {cols} FROM live.requests_inflight \
             WHERE id NOT IN (SELECT id FROM main.requests)"
        );
        // An in-flight file never opened by its version has no table.
        let has_table =
            sqlx::query("SELECT 1 FROM live.sqlite_master WHERE name = 'requests_inflight'")
                .fetch_optional(&mut *tx)
                .await?
                .is_some();
        if has_table {
            tx.execute(copy.as_str()).await?;
        }
    }
    move_spotted_events(&mut tx, &events).await?;
    import_batches(&mut tx, &events).await?;
    for sql in [
        "DROP TABLE request_batches",
        "DROP TABLE request_keys",
        "ALTER TABLE requests DROP COLUMN event_seg",
        "ALTER TABLE requests DROP COLUMN event_offset",
        "ALTER TABLE requests DROP COLUMN event_len",
    ] {
        tx.execute(sql).await?;
    }
    done(&mut tx, "import_batched_requests").await?;
    tx.commit().await?;
    if attached {
        conn.execute("DETACH DATABASE live").await?;
        for suffix in ["", "-wal", "-shm"] {
            let mut f = inflight.clone().into_os_string();
            f.push(suffix);
            let _ = std::fs::remove_file(f);
        }
    }
    match std::fs::remove_dir_all(&events) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            tracing::warn!(error = %e, dir = %events.display(), "could not remove the old event files")
        }
        _ => {}
    }
    Ok(())
}

/// Reads an event of an older ledger, or leaves the request without one (logged) when its
/// file is gone or damaged, as readers of that ledger did.
fn old_event(
    dir: &std::path::Path,
    rec: &sluice_core::RequestRecord,
    spot: Option<EventSpot>,
) -> Option<sluice_core::EventRecord> {
    let spot = spot?;
    match legacy::read_event(dir, rec.channel_id, spot) {
        Ok(e) => Some(e),
        Err(e) => {
            tracing::warn!(request = %rec.id, error = %e, "an event of the old ledger is unreadable");
            None
        }
    }
}

/// Moves the events of rows written between migrations 0006 and 0008 from the files into
/// the rows.
async fn move_spotted_events(tx: &mut Transaction<'_, Any>, dir: &std::path::Path) -> Result<()> {
    let spotted = sqlx::query(&format!(
        "SELECT {}, event_seg, event_offset, event_len FROM requests WHERE event_seg IS NOT NULL",
        request_row::column_list(RECORD_COLUMNS)
    ))
    .fetch_all(&mut **tx)
    .await?;
    let set = request_row::COLUMNS[RECORD_COLUMNS..]
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{c} = ${}", i + 2))
        .collect::<Vec<_>>()
        .join(", ");
    let update = format!("UPDATE requests SET {set} WHERE id = $1");
    for row in spotted {
        let rec = request_row::decode_record(&row)?;
        let spot = EventSpot {
            seg: row.try_get("event_seg")?,
            offset: row.try_get("event_offset")?,
            len: row.try_get("event_len")?,
        };
        let Some(event) = old_event(dir, &rec, Some(spot)) else {
            continue;
        };
        let ids = Ids::of(&rec);
        let values = request_row::values(&ids, "", &rec, Some(&event));
        let mut q = sqlx::query(&update).bind(rec.id.to_string());
        for v in &values[RECORD_COLUMNS..] {
            q = v.bind(q);
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

/// Writes every request of `request_batches` as a row with its event.
async fn import_batches(tx: &mut Transaction<'_, Any>, dir: &std::path::Path) -> Result<()> {
    let mut after = i64::MIN;
    loop {
        let batches = sqlx::query(
            "SELECT id, node_id, heads, records FROM request_batches WHERE id > $1 \
             ORDER BY id LIMIT $2",
        )
        .bind(after)
        .bind(BATCHES_PER_READ)
        .fetch_all(&mut **tx)
        .await?;
        let Some(last) = batches.last() else {
            return Ok(());
        };
        after = last.try_get("id")?;
        for b in &batches {
            let node: String = b.try_get("node_id")?;
            let heads: Vec<u8> = b.try_get("heads")?;
            let records: Vec<u8> = b.try_get("records")?;
            let found: Vec<_> = legacy::batch_requests(&heads, &records)?
                .into_iter()
                .map(|(rec, spot)| {
                    let event = old_event(dir, &rec, spot);
                    (rec, event)
                })
                .collect();
            let refs: Vec<_> = found.iter().map(|(r, e)| (r, e.as_ref())).collect();
            crate::requests::write_finished(tx, Backend::Sqlite, &node, &refs, false).await?;
        }
    }
}

/// Computes the roll-ups of every finished request from its row.
async fn rebuild_rollups(store: &Store) -> Result<()> {
    let mut tx = store.pool.begin().await?;
    tx.execute("DELETE FROM request_minutes").await?;
    tx.execute("DELETE FROM latency_minutes").await?;
    let mut pending = Rollup::default();
    {
        let mut rows = sqlx::query(
            "SELECT channel_id, started_at, state, latency_us FROM requests \
             ORDER BY channel_id, started_at",
        )
        .fetch(&store.pool);
        while let Some(r) = rows.try_next().await? {
            let state: String = r.try_get("state")?;
            let state = RequestState::parse(&state)
                .ok_or_else(|| StoreError::Corrupt(format!("state {state}")))?;
            pending.add_parts(
                rows::uuid(&r, "channel_id")?,
                r.try_get("started_at")?,
                state,
                r.try_get("latency_us")?,
            );
            if pending.len() >= ROLLUP_ROWS_PER_WRITE {
                std::mem::take(&mut pending).write(&mut tx).await?;
            }
        }
    }
    pending.write(&mut tx).await?;
    done(&mut tx, "rebuild_rollups").await?;
    tx.commit().await?;
    Ok(())
}
