//! The dashboard of a project: channel health, the last day's traffic and errors, requests per
//! minute over the last hour, the latest failures and the latest warnings.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use askama::Template;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use sluice_core::clock::now_us;
use sluice_store::{ChannelScope, LogFilter, LogPage, Severity};
use uuid::Uuid;

use super::channels::{project_channels, totals, ChannelRow, Totals, Window};
use super::history::{row_view, RowView};
use super::view::{render, Layout, UiResult, Viewer};
use super::{charts, format};
use crate::AdminState;

/// Failures listed on the dashboard.
const RECENT_FAILURES: usize = 10;
/// Warnings and errors listed on the dashboard.
const RECENT_EVENTS: i64 = 8;

/// Counts of channels by health.
struct HealthCounts {
    healthy: usize,
    unhealthy: usize,
    unknown: usize,
    stale: usize,
}

/// An event-log entry as listed.
pub struct EventView {
    pub at: String,
    pub severity: &'static str,
    pub source: &'static str,
    pub message: String,
    pub channel: String,
}

#[derive(Template)]
#[template(path = "dashboard.html")]
struct DashboardPage {
    layout: Layout,
    project_name: String,
    no_project: bool,
    health: HealthCounts,
    totals: Totals,
    chart: String,
    window_title: &'static str,
    day: bool,
    failures: Vec<RowView>,
    events: Vec<EventView>,
    unhealthy: Vec<ChannelRow>,
}

/// `GET /ui/?project=`
pub async fn page(
    State(state): State<AdminState>,
    viewer: Viewer,
    Query(q): Query<HashMap<String, String>>,
) -> UiResult<Response> {
    let project = viewer
        .pick_project(q.get("project").map(String::as_str))
        .cloned();
    let rows = match &project {
        Some(p) => project_channels(&state, p.id).await?,
        None => Vec::new(),
    };
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    let names: HashMap<Uuid, String> = rows.iter().map(|r| (r.id, r.name.clone())).collect();
    let health = HealthCounts {
        healthy: rows.iter().filter(|r| r.health == "healthy").count(),
        unhealthy: rows.iter().filter(|r| r.health == "unhealthy").count(),
        unknown: rows.iter().filter(|r| r.health == "unknown").count(),
        stale: rows.iter().filter(|r| r.stale).count(),
    };
    let now = now_us();
    let window = Window::from_query(&q);
    let (from, to, bin) = window.span(now);
    let minutes = state.store.per_minute_by_state(&ids, from).await?;
    let chart = charts::bars(&minutes, from, to, bin, "requests by state over time");
    let failures = recent_failures(&state, &ids, &names, now - super::channels::DAY_US).await?;
    let events = latest_events(&state, &ids, &names).await?;
    let page = DashboardPage {
        layout: viewer.layout("Dashboard", "dashboard", project.as_ref().map(|p| p.id)),
        project_name: project.as_ref().map(|p| p.name.clone()).unwrap_or_default(),
        no_project: project.is_none(),
        health,
        totals: totals(&rows),
        chart,
        window_title: window.title(),
        day: window == Window::Day,
        failures,
        events,
        unhealthy: rows
            .into_iter()
            .filter(|r| r.health == "unhealthy")
            .collect(),
    };
    Ok(render(&page)?.into_response())
}

/// The newest requests of `channels` started since `since` that did not succeed (bounded by
/// `since`: a state that never occurs would otherwise read each channel's whole history).
async fn recent_failures(
    state: &AdminState,
    channels: &[Uuid],
    names: &HashMap<Uuid, String>,
    since: sluice_core::clock::Micros,
) -> UiResult<Vec<RowView>> {
    let found = state
        .store
        .recent_unsuccessful(channels, since, RECENT_FAILURES as i64)
        .await?;
    Ok(found
        .iter()
        .map(|r| {
            let mut v = row_view(r);
            v.channel = names.get(&r.channel_id).cloned().unwrap_or_default();
            v
        })
        .collect())
}

/// The newest warnings and errors about `channels`.
async fn latest_events(
    state: &AdminState,
    channels: &[Uuid],
    names: &HashMap<Uuid, String>,
) -> UiResult<Vec<EventView>> {
    let filter = LogFilter {
        severities: vec![Severity::Warn, Severity::Error],
        scope: Some(ChannelScope::Channels(Arc::new(
            channels.iter().copied().collect::<HashSet<_>>(),
        ))),
        ..LogFilter::default()
    };
    let entries = state
        .events
        .query(&filter, LogPage::Before(None), RECENT_EVENTS)
        .await?;
    Ok(entries
        .iter()
        .map(|e| EventView {
            at: format::when(e.at),
            severity: e.severity.as_str(),
            source: e.source.as_str(),
            message: e.message.clone(),
            channel: e
                .channel_id
                .and_then(|c| names.get(&c).cloned())
                .unwrap_or_default(),
        })
        .collect())
}
