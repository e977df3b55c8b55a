//! Wiping a recorded request: its content goes, the fact of it stays (see the migration of
//! `request_wipes`).

use serde_json::json;
use sluice_core::clock::now_us;
use sqlx::Row;
use uuid::Uuid;

use crate::audit;
use crate::db::Store;
use crate::error::Result;

/// Who wiped a request, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wipe {
    /// When (microseconds).
    pub at: i64,
    /// The actor.
    pub by: String,
}

/// What a wipe did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WipeOutcome {
    /// The request's content is gone now.
    Wiped(Wipe),
    /// It was wiped before (by this wipe's author or another).
    Already(Wipe),
    /// No finished request of that id is in the ledger (unknown, or still in flight).
    NotFinished,
}

impl Store {
    /// Wipes request `id` and records who did it, with an audit entry in `project`, in one
    /// transaction.
    pub async fn wipe_request(&self, id: Uuid, project: Uuid, actor: &str) -> Result<WipeOutcome> {
        let wipe = Wipe {
            at: now_us(),
            by: actor.to_string(),
        };
        let mut tx = self.begin_write().await?;
        // First the mark, so that of two wipes at once exactly one goes on.
        let marked = sqlx::query(
            "INSERT INTO request_wipes (request_id, wiped_at, wiped_by) VALUES ($1, $2, $3) \
             ON CONFLICT (request_id) DO NOTHING",
        )
        .bind(id.to_string())
        .bind(wipe.at)
        .bind(&wipe.by)
        .execute(&mut *tx)
        .await?;
        if marked.rows_affected() == 0 {
            drop(tx);
            return Ok(match self.request_wipe(id).await? {
                Some(done) => WipeOutcome::Already(done),
                None => WipeOutcome::NotFinished,
            });
        }
        let changed = sqlx::query(
            "UPDATE requests SET client_identity = '', path = '', query = NULL, \
             request_headers = CASE WHEN request_headers IS NULL THEN NULL ELSE '[]' END, \
             response_headers = CASE WHEN response_headers IS NULL THEN NULL ELSE '[]' END, \
             request_body_preview = NULL, response_body_preview = NULL \
             WHERE id = $1 AND state <> 'pending'",
        )
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        if changed.rows_affected() == 0 {
            return Ok(WipeOutcome::NotFinished);
        }
        let entry = audit::entry(
            actor,
            "wipe",
            "request",
            id,
            None,
            Some(json!({ "wiped": true })),
        )
        .in_project(project);
        audit::insert(&mut tx, &entry).await?;
        tx.commit().await?;
        Ok(WipeOutcome::Wiped(wipe))
    }

    /// Who wiped request `id` and when, if it was.
    pub async fn request_wipe(&self, id: Uuid) -> Result<Option<Wipe>> {
        let row = sqlx::query("SELECT wiped_at, wiped_by FROM request_wipes WHERE request_id = $1")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            Ok(Wipe {
                at: r.try_get("wiped_at")?,
                by: r.try_get("wiped_by")?,
            })
        })
        .transpose()
    }
}
