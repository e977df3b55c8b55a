//! What the crate's unit tests share.

use std::path::PathBuf;

use sluice_core::{RequestRecord, RequestState};
use uuid::Uuid;

use crate::db::{Store, StoreOptions};

/// A migrated SQLite ledger in a fresh directory (`sluice-<name>-<uuid>` under the system's
/// temporary one), and that directory, for the test to remove.
pub(crate) async fn sqlite_store(name: &str) -> (Store, PathBuf) {
    let dir = std::env::temp_dir().join(format!("sluice-{name}-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}/sluice.db", dir.display());
    let store = Store::connect(&url, &StoreOptions::default())
        .await
        .unwrap();
    store.migrate().await.unwrap();
    (store, dir)
}

/// A fresh `pending` POST to `path` (query `a=1`) on a channel of its own.
pub(crate) fn pending_record(path: &str) -> RequestRecord {
    RequestRecord {
        id: Uuid::now_v7(),
        request_id: format!("req-{}", Uuid::new_v4().simple()),
        channel_id: Uuid::now_v7(),
        snapshot_id: Uuid::now_v7(),
        state: RequestState::Pending,
        started_at: 1_700_000_000_000_000,
        completed_at: None,
        client_identity: "127.0.0.1".into(),
        source_auth_method_id: None,
        source_auth_type: None,
        method: "POST".into(),
        path: path.into(),
        query: Some("a=1".into()),
        response_status: None,
        error: None,
        latency_us: None,
        ttfb_us: None,
        request_body_size: None,
        response_body_size: None,
    }
}
