//! The event log: the latest entries the viewer may see, filtered by severity and source, and
//! live: the page listens to the API's own stream (`/api/v1/events/stream`) with the same
//! filters, so what it adds is exactly what the API would send.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use sluice_store::{LogPage, Severity, Source};

use super::format;
use super::view::{render, Layout, UiResult, Viewer};
use crate::events::filter_for;
use crate::AdminState;

/// Entries on the page.
const SHOWN: i64 = 100;

struct EntryView {
    id: i64,
    at: String,
    severity: &'static str,
    source: &'static str,
    message: String,
    channel: String,
}

#[derive(Template)]
#[template(path = "events.html")]
struct EventsPage {
    layout: Layout,
    entries: Vec<EntryView>,
    severities: Vec<(&'static str, bool)>,
    sources: Vec<(&'static str, bool)>,
    live_url: String,
}

/// `GET /ui/events?severity=&source=`
pub async fn page(
    State(state): State<AdminState>,
    viewer: Viewer,
    Query(q): Query<HashMap<String, String>>,
) -> UiResult<Response> {
    let q: HashMap<String, String> = q
        .into_iter()
        .filter(|(k, v)| (k == "severity" || k == "source") && !v.is_empty())
        .collect();
    let filter = filter_for(&state, &viewer.caller, &q).await?;
    let entries = state
        .events
        .query(&filter, LogPage::Before(None), SHOWN)
        .await?;
    let chosen = |k: &str| q.get(k).cloned().unwrap_or_default();
    let mut live = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in &q {
        live.append_pair(k, v);
    }
    let project = viewer.pick_project(None).map(|p| p.id);
    let page = EventsPage {
        layout: viewer.layout("Event log", "events", project),
        entries: entries
            .iter()
            .map(|e| EntryView {
                id: e.id,
                at: format::when(e.at),
                severity: e.severity.as_str(),
                source: e.source.as_str(),
                message: e.message.clone(),
                channel: e.channel_id.map(|c| c.to_string()).unwrap_or_default(),
            })
            .collect(),
        severities: [Severity::Info, Severity::Warn, Severity::Error]
            .iter()
            .map(|s| (s.as_str(), chosen("severity") == s.as_str()))
            .collect(),
        sources: [
            Source::Proxy,
            Source::Health,
            Source::Auth,
            Source::Catalog,
            Source::System,
        ]
        .iter()
        .map(|s| (s.as_str(), chosen("source") == s.as_str()))
        .collect(),
        live_url: format!("/api/v1/events/stream?{}", live.finish()),
    };
    Ok(render(&page)?.into_response())
}
