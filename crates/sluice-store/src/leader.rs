//! Electing the one node that runs the background jobs (PRODUCT.md §10). On PostgreSQL the
//! leader holds a session-level advisory lock on a connection of its own: when the node dies its
//! connection closes, the server releases the lock, and another node takes it at its next try
//! (within `TRY_EVERY`). On SQLite there is one node, and it always leads.

use std::time::Duration;

use sqlx::{Connection, PgConnection};
use tokio::sync::watch;

use crate::db::Store;
use crate::error::StoreError;

/// The advisory lock's key ("sluice" in ASCII).
const LOCK_KEY: i64 = 0x736c_7569_6365;
/// How often a follower tries for the lock and the leader checks its connection.
const TRY_EVERY: Duration = Duration::from_secs(1);

/// Tries for (and then holds) leadership until `shutdown`, reporting it on `lead`. Dropping the
/// connection at the end releases the lock. Its connection is the first to see a database
/// going away (within `TRY_EVERY`), which it tells `store` (see [`Store::unreachable`]).
pub(crate) async fn hold(
    store: Store,
    url: String,
    lead: watch::Sender<bool>,
    mut shutdown: watch::Receiver<bool>,
) {
    let lost = |e: sqlx::Error| {
        let e = StoreError::from(e);
        if e.is_unavailable() {
            store.unreachable();
        }
        e
    };
    let mut conn: Option<PgConnection> = None;
    while !*shutdown.borrow() {
        match conn.as_mut() {
            None => match PgConnection::connect(&url).await {
                Ok(c) => conn = Some(c),
                Err(e) => tracing::warn!(error = %lost(e), "leader election: cannot connect"),
            },
            Some(c) => {
                let leading = *lead.borrow();
                let ok = if leading {
                    // The lock lives as long as this session: check the session is alive.
                    sqlx::query("SELECT 1").execute(&mut *c).await.map(|_| true)
                } else {
                    sqlx::query_scalar::<_, bool>("SELECT pg_try_advisory_lock($1)")
                        .bind(LOCK_KEY)
                        .fetch_one(&mut *c)
                        .await
                };
                match ok {
                    Ok(now) => {
                        if now != leading {
                            tracing::info!(leading = now, "background jobs leadership");
                            lead.send_replace(now);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %lost(e), "leader election: connection lost");
                        conn = None;
                        lead.send_replace(false);
                    }
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(TRY_EVERY) => {}
            _ = shutdown.changed() => {}
        }
    }
    lead.send_replace(false);
}

/// Leadership taken once, by a one-shot command (`sluice catalog refresh`): held until dropped.
pub struct LeaderGuard {
    // The session holding the advisory lock (PostgreSQL); closing it releases the lock.
    _conn: Option<PgConnection>,
}

impl crate::db::Store {
    /// Takes leadership now if no serving node holds it (`None` when one does). On SQLite
    /// there is one node and this process may act for it.
    pub async fn try_lead_once(&self) -> crate::error::Result<Option<LeaderGuard>> {
        let Some(url) = self.pg_url() else {
            return Ok(Some(LeaderGuard { _conn: None }));
        };
        let mut conn = PgConnection::connect(url).await?;
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(LOCK_KEY)
            .fetch_one(&mut conn)
            .await?;
        Ok(got.then_some(LeaderGuard { _conn: Some(conn) }))
    }
}
