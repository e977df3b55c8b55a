//! Sign-in sessions. The cookie carries a random secret; the ledger keeps only its SHA-256, so
//! a copy of the database signs nobody in. Times are passed in, so expiry is testable.

use sluice_core::clock::Micros;
use sqlx::Row;
use uuid::Uuid;

use crate::db::Store;
use crate::error::Result;
use crate::tokens::token_digest;
use crate::users::User;

/// A session's last-seen time is written at most this often (µs), not on every call, and at
/// least ten times per idle timeout.
const TOUCH_EVERY_US: Micros = 60 * 1_000_000;

/// How long sessions live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimits {
    /// Ended after this long without a call (µs).
    pub idle_us: Micros,
    /// Ended this long after sign-in, whatever happens (µs).
    pub absolute_us: Micros,
}

impl Store {
    /// Starts a session for `user_id` known by `secret` at `now`.
    pub async fn create_session(
        &self,
        user_id: Uuid,
        secret: &str,
        now: Micros,
        limits: SessionLimits,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO sessions (id_hash, user_id, created_at, last_seen_at, expires_at) \
             VALUES ($1, $2, $3, $3, $4)",
        )
        .bind(token_digest(secret))
        .bind(user_id.to_string())
        .bind(now)
        .bind(now + limits.absolute_us)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The enabled user of the live session `secret` at `now`, noting the call; `None` when
    /// the session is unknown, ended, idle too long or past its absolute expiry.
    pub async fn session_user(
        &self,
        secret: &str,
        now: Micros,
        limits: SessionLimits,
    ) -> Result<Option<User>> {
        let digest = token_digest(secret);
        let Some(row) = sqlx::query(
            "SELECT user_id, last_seen_at, expires_at FROM sessions WHERE id_hash = $1",
        )
        .bind(&digest)
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let last_seen: Micros = row.try_get("last_seen_at")?;
        let expires: Micros = row.try_get("expires_at")?;
        if now >= expires || now >= last_seen + limits.idle_us {
            self.end_session(secret).await?;
            return Ok(None);
        }
        if now - last_seen >= TOUCH_EVERY_US.min(limits.idle_us / 10) {
            sqlx::query("UPDATE sessions SET last_seen_at = $2 WHERE id_hash = $1")
                .bind(&digest)
                .bind(now)
                .execute(&self.pool)
                .await?;
        }
        let user_id: String = row.try_get("user_id")?;
        let user = match Uuid::parse_str(&user_id) {
            Ok(id) => self.get_user(id).await?,
            Err(_) => None,
        };
        Ok(user.filter(|u| !u.disabled))
    }

    /// Ends the session `secret` (signing out); an unknown one is already ended.
    pub async fn end_session(&self, secret: &str) -> Result<()> {
        sqlx::query("DELETE FROM sessions WHERE id_hash = $1")
            .bind(token_digest(secret))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Deletes sessions ended before `now` (idle or absolute); returns how many went.
    pub async fn prune_sessions(&self, now: Micros, limits: SessionLimits) -> Result<u64> {
        let done = sqlx::query("DELETE FROM sessions WHERE expires_at <= $1 OR last_seen_at <= $2")
            .bind(now)
            .bind(now - limits.idle_us)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}
