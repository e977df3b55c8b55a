//! The change feed: configuration changes announced to every in-process cache, and, on
//! PostgreSQL, relayed to every other node through `NOTIFY` (PRODUCT.md §10: a change made on
//! one node takes effect on all within a second).

use std::time::Duration;

use sqlx::postgres::PgListener;
use tokio::sync::broadcast;
use uuid::Uuid;

/// The PostgreSQL notification channel of configuration changes.
pub(crate) const NOTIFY_CHANNEL: &str = "sluice_changes";

/// A configuration change that invalidates cached state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// A channel was created, changed or deleted.
    Channel(Uuid),
    /// A source auth method was created or deleted.
    AuthMethod(Uuid),
    /// A sink credential was created, changed (also by a token refresh) or deleted.
    Credential(Uuid),
    /// An instance setting was saved (see `settings`).
    Settings,
    /// A project's recording mode changed (see `projects::Recording`).
    Project(Uuid),
    /// The adaptor catalogue changed (a refresh fetched something new; see `catalog`).
    Catalog,
    /// Anything may have changed: notifications from other nodes were lost (the listening
    /// connection dropped); every cache starts afresh.
    Unknown,
}

impl Change {
    /// The notification payload: `<origin>|<kind>:<id>`.
    pub(crate) fn payload(self, origin: Uuid) -> String {
        let (kind, id) = match self {
            Change::Channel(id) => ("channel", id),
            Change::AuthMethod(id) => ("auth_method", id),
            Change::Credential(id) => ("credential", id),
            Change::Settings => ("settings", Uuid::nil()),
            Change::Project(id) => ("project", id),
            Change::Catalog => ("catalog", Uuid::nil()),
            Change::Unknown => ("unknown", Uuid::nil()),
        };
        format!("{origin}|{kind}:{id}")
    }

    /// Parses a payload into its origin and change.
    pub(crate) fn parse(payload: &str) -> Option<(Uuid, Change)> {
        let (origin, rest) = payload.split_once('|')?;
        let (kind, id) = rest.split_once(':')?;
        let id = Uuid::parse_str(id).ok()?;
        let change = match kind {
            "channel" => Change::Channel(id),
            "auth_method" => Change::AuthMethod(id),
            "credential" => Change::Credential(id),
            "settings" => Change::Settings,
            "project" => Change::Project(id),
            "catalog" => Change::Catalog,
            "unknown" => Change::Unknown,
            _ => return None,
        };
        Some((Uuid::parse_str(origin).ok()?, change))
    }
}

/// Relays other nodes' changes from PostgreSQL notifications into the local feed until the feed
/// has no sender left. A dropped connection is reported as [`Change::Unknown`] once it is back.
pub(crate) async fn relay_remote(url: String, origin: Uuid, feed: broadcast::WeakSender<Change>) {
    let mut listener: Option<PgListener> = None;
    loop {
        let Some(tx) = feed.upgrade() else {
            return;
        };
        let Some(l) = listener.as_mut() else {
            match connect(&url).await {
                Ok(l) => {
                    listener = Some(l);
                    // Whatever happened while no one listened is unknown.
                    let _ = tx.send(Change::Unknown);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for other nodes' changes; retrying");
                    drop(tx);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
            continue;
        };
        drop(tx);
        // Wake now and then to notice that the store is gone.
        match tokio::time::timeout(Duration::from_secs(1), l.try_recv()).await {
            Err(_) => {}
            Ok(Ok(Some(n))) => match Change::parse(n.payload()) {
                Some((from, change)) if from != origin => {
                    if let Some(tx) = feed.upgrade() {
                        let _ = tx.send(change);
                    }
                }
                Some(_) => {}
                None => tracing::warn!(payload = n.payload(), "unreadable change notification"),
            },
            // The connection dropped; sqlx reconnects on the next call.
            Ok(Ok(None)) => {
                if let Some(tx) = feed.upgrade() {
                    let _ = tx.send(Change::Unknown);
                }
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "change notifications interrupted; reconnecting");
                listener = None;
            }
        }
    }
}

async fn connect(url: &str) -> sqlx::Result<PgListener> {
    let mut l = PgListener::connect(url).await?;
    l.listen(NOTIFY_CHANNEL).await?;
    Ok(l)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip() {
        let origin = Uuid::now_v7();
        let id = Uuid::now_v7();
        for c in [
            Change::Channel(id),
            Change::AuthMethod(id),
            Change::Credential(id),
            Change::Settings,
            Change::Unknown,
        ] {
            assert_eq!(Change::parse(&c.payload(origin)), Some((origin, c)));
        }
        assert_eq!(Change::parse("nonsense"), None);
        assert_eq!(Change::parse(&format!("{origin}|other:{id}")), None);
    }
}
