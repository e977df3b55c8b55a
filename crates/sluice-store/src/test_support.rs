//! What the crate's unit tests share.

use sluice_core::{RequestRecord, RequestState};
use uuid::Uuid;

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
