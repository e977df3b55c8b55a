//! One configuration snapshot of a channel: the settings a request ran under, and what has
//! changed in the channel since.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};

use super::audit::{diff, Change};
use super::format;
use super::view::{render, Layout, UiResult, Viewer};
use crate::config_history::load_snapshot;
use crate::AdminState;

#[derive(Template)]
#[template(path = "snapshot.html")]
struct SnapshotPage {
    layout: Layout,
    channel_id: String,
    channel_name: String,
    version: i64,
    current_version: i64,
    taken: String,
    settings: Vec<Change>,
    changes: Vec<Change>,
}

/// `GET /ui/snapshots/{id}`
pub async fn page(
    State(state): State<AdminState>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> UiResult<Response> {
    let (s, ch) = load_snapshot(&state, &viewer.caller, &id).await?;
    let then = serde_json::to_value(&s.config).unwrap_or_default();
    let now = serde_json::to_value(ch.config()).unwrap_or_default();
    let page = SnapshotPage {
        layout: viewer.layout(
            format!("{} version {}", ch.name, s.lock_version),
            "channels",
            Some(ch.project_id),
        ),
        channel_id: ch.id.to_string(),
        channel_name: ch.name.clone(),
        version: s.lock_version,
        current_version: ch.lock_version,
        taken: format::when(s.created_at),
        // Every setting of the snapshot, as the difference from nothing.
        settings: diff(None, Some(&then)),
        changes: diff(Some(&then), Some(&now)),
    };
    Ok(render(&page)?.into_response())
}
