//! The channels index: stats cards and a row per channel with its health, proxy URL, last
//! activity and traffic, and the enabled switch for those who may edit.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use sluice_core::access::Right;
use sluice_core::clock::{now_us, Micros};
use sluice_health::stale::is_stale;
use uuid::Uuid;

use super::format;
use super::view::{render, Layout, Submitted, UiResult, Viewer};
use crate::channels::{self, PatchChannel};
use crate::{wire, AdminState};

/// The window of the "last 24 h" figures.
pub const DAY_US: i64 = 24 * 3600 * 1_000_000;

/// A channel as the index and the dashboard show it.
pub struct ChannelRow {
    /// Channel id.
    pub id: Uuid,
    /// Name.
    pub name: String,
    /// Whether it forwards traffic.
    pub enabled: bool,
    /// `healthy`, `unhealthy` or `unknown`.
    pub health: &'static str,
    /// What failed, when unhealthy.
    pub failure: String,
    /// What to do about it.
    pub hint: String,
    /// No traffic for longer than the stale threshold.
    pub stale: bool,
    /// Last request (or creation), as "… ago".
    pub last_activity: String,
    /// Requests in the last 24 h.
    pub requests_24h: i64,
    /// Of those, not successful.
    pub errors_24h: i64,
    /// Where callers send its traffic.
    pub proxy_url: String,
    /// The lock version a toggle must name.
    pub lock_version: i64,
}

/// The channels of `project` with their health and last day's counts, by name: three queries
/// for the whole project.
pub async fn project_channels(state: &AdminState, project: Uuid) -> UiResult<Vec<ChannelRow>> {
    let mut list = state
        .store
        .list_channels(Some(&[project]), None, wire::MAX_LIMIT)
        .await?;
    list.sort_by_key(|c| c.name.to_lowercase());
    let ids: Vec<Uuid> = list.iter().map(|c| c.id).collect();
    let now = now_us();
    let health = state.store.channel_health(&ids).await?;
    let threshold = state.stale_threshold().await?;
    let counts = state
        .store
        .counts_by_state_since(&ids, now - DAY_US)
        .await?;
    Ok(list
        .iter()
        .map(|ch| {
            let h = health.get(&ch.id);
            let by_state = counts.get(&ch.id);
            let total = by_state.map_or(0, |m| m.values().sum());
            let ok = by_state
                .and_then(|m| m.get("success"))
                .copied()
                .unwrap_or(0)
                + by_state
                    .and_then(|m| m.get("pending"))
                    .copied()
                    .unwrap_or(0);
            ChannelRow {
                id: ch.id,
                name: ch.name.clone(),
                enabled: ch.enabled,
                health: h.map_or("unknown", |h| h.status.as_str()),
                failure: h.and_then(|h| h.failure.clone()).unwrap_or_default(),
                hint: h.and_then(|h| h.hint.clone()).unwrap_or_default(),
                stale: h.is_some_and(|h| is_stale(h, now, threshold)),
                last_activity: h
                    .map(|h| format::ago(h.last_activity(), now))
                    .unwrap_or_default(),
                requests_24h: total,
                errors_24h: total - ok,
                proxy_url: format!("{}/channels/{}", state.public_url, ch.id),
                lock_version: ch.lock_version,
            }
        })
        .collect())
}

/// Totals over a project's channels.
pub struct Totals {
    /// Channels.
    pub channels: usize,
    /// Requests in the last 24 h.
    pub requests: String,
    /// Not successful in the last 24 h.
    pub errors: String,
    /// Errors as a share of requests.
    pub error_rate: String,
}

/// Sums the rows' figures.
pub fn totals(rows: &[ChannelRow]) -> Totals {
    let requests: i64 = rows.iter().map(|r| r.requests_24h).sum();
    let errors: i64 = rows.iter().map(|r| r.errors_24h).sum();
    Totals {
        channels: rows.len(),
        requests: format::count(requests),
        errors: format::count(errors),
        error_rate: if requests == 0 {
            "–".into()
        } else {
            format!("{:.1} %", errors as f64 * 100.0 / requests as f64)
        },
    }
}

#[derive(Template)]
#[template(path = "channels.html")]
struct IndexPage {
    layout: Layout,
    rows: Vec<ChannelRow>,
    totals: Totals,
    can_edit: bool,
    no_project: bool,
}

/// `GET /ui/channels?project=`
pub async fn index(
    State(state): State<AdminState>,
    viewer: Viewer,
    Query(q): Query<HashMap<String, String>>,
) -> UiResult<Response> {
    let project = viewer
        .pick_project(q.get("project").map(String::as_str))
        .map(|p| p.id);
    let rows = match project {
        Some(p) => project_channels(&state, p).await?,
        None => Vec::new(),
    };
    let page = IndexPage {
        layout: viewer.layout("Channels", "channels", project),
        totals: totals(&rows),
        rows,
        can_edit: project.is_some_and(|p| viewer.may(Right::EditChannels, p)),
        no_project: project.is_none(),
    };
    Ok(render(&page)?.into_response())
}

/// `POST /ui/channels/{id}/enabled`: `enabled=true|false` and the `lock_version` the viewer saw;
/// the same rules and audit as `PATCH /api/v1/channels/{id}`.
pub async fn set_enabled(
    State(state): State<AdminState>,
    Path(id): Path<String>,
    form: Submitted,
) -> UiResult<Response> {
    let enabled = form.get("enabled") == Some("true");
    let lock_version: i64 = form
        .get("lock_version")
        .and_then(|v| v.parse().ok())
        .unwrap_or(-1);
    let patch = PatchChannel {
        lock_version,
        enabled: Some(enabled),
        ..PatchChannel::default()
    };
    let caller = &form.viewer.caller;
    let current = channels::load(&state, caller, Right::EditChannels, &id).await?;
    let (ch, _) = channels::change(&state, caller, current, patch).await?;
    Ok(Redirect::to(&format!("/ui/channels?project={}", ch.project_id)).into_response())
}

/// The span a chart covers: the last hour by minute, or the last day by quarter hour.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// 60 bars of one minute.
    Hour,
    /// 96 bars of fifteen minutes.
    Day,
}

impl Window {
    /// The window a page's `window` parameter names (`24h`, else the last hour).
    pub fn from_query(q: &std::collections::HashMap<String, String>) -> Self {
        if q.get("window").map(String::as_str) == Some("24h") {
            Window::Day
        } else {
            Window::Hour
        }
    }

    /// `(from, to, bin)` in µs, aligned to whole bins ending after `now`.
    pub fn span(self, now: Micros) -> (Micros, Micros, i64) {
        let (bins, bin) = match self {
            Window::Hour => (60, 60_000_000),
            Window::Day => (96, 15 * 60_000_000),
        };
        let to = (now / bin + 1) * bin;
        (to - bins * bin, to, bin)
    }

    /// How the chart's heading names it.
    pub fn title(self) -> &'static str {
        match self {
            Window::Hour => "last hour, per minute",
            Window::Day => "last 24 h, per quarter hour",
        }
    }
}
