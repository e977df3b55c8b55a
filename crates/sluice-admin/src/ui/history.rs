//! A channel's history (the API's filters as a bookmarkable form, cursor pages, and a live mode
//! over Server-Sent Events) and the detail of one request.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::time::Duration;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use futures_util::stream::{self, Stream};
use serde_json::json;
use sluice_core::access::Right;
use sluice_core::clock::{now_us, Micros};
use sluice_core::{RequestRecord, RequestState};
use sluice_store::RequestFilter;
use uuid::Uuid;

use super::channels::Window;
use super::view::{problem_text, render, Layout, Submitted, UiError, UiResult, Viewer};
use super::{charts, format};
use crate::channels::load;
use crate::error::ApiError;
use crate::history::{decode_request_cursor, encode_request_cursor, filter_from};
use crate::AdminState;

/// Rows on a page of history.
const PAGE: i64 = 50;
/// How often a live view looks for new requests. Polling the ledger (rather than a feed from
/// this node's writer) shows the traffic of every node sharing the database.
const LIVE_POLL: Duration = Duration::from_secs(1);
/// The filter fields of the history form, in the API's names.
const FILTERS: [&str; 7] = [
    "state",
    "method",
    "status",
    "since",
    "until",
    "path_prefix",
    "request_id",
];

/// A request as a history row.
pub struct RowView {
    pub id: String,
    pub started: String,
    pub state: &'static str,
    pub method: String,
    pub target: String,
    pub status: String,
    pub error: String,
    pub latency: String,
    pub sizes: String,
    pub channel: String,
}

/// The row of `r`.
pub fn row_view(r: &RequestRecord) -> RowView {
    let target = match &r.query {
        Some(q) => format!("{}?{q}", r.path),
        None => r.path.clone(),
    };
    RowView {
        id: r.id.to_string(),
        started: format::when(r.started_at),
        state: r.state.as_str(),
        method: r.method.clone(),
        target,
        status: r.response_status.map(|s| s.to_string()).unwrap_or_default(),
        error: r.error.clone().unwrap_or_default(),
        latency: r.latency_us.map(format::duration).unwrap_or_default(),
        sizes: format!(
            "{} / {}",
            r.request_body_size
                .map(format::bytes)
                .unwrap_or_else(|| "–".into()),
            r.response_body_size
                .map(format::bytes)
                .unwrap_or_else(|| "–".into())
        ),
        channel: String::new(),
    }
}

#[derive(Template)]
#[template(path = "history_row.html")]
struct RowTemplate {
    row: RowView,
}

/// A filter form field and its current value.
pub struct FilterValue {
    pub name: &'static str,
    pub value: String,
}

#[derive(Template)]
#[template(path = "history.html")]
struct HistoryPage {
    layout: Layout,
    channel_id: String,
    channel_name: String,
    proxy_url: String,
    can_edit: bool,
    filters: Vec<FilterValue>,
    states: Vec<(&'static str, bool)>,
    problem: String,
    rows: Vec<RowView>,
    newer: String,
    older: String,
    live_url: String,
    chart: String,
    latency_chart: String,
    /// The export's address with the form's filters (a `format` is added).
    export_url: String,
    window_title: &'static str,
    day_url: String,
    hour_url: String,
    day: bool,
    total_in_window: String,
    p50: String,
    p95: String,
    p99: String,
}

impl HistoryPage {
    fn value(&self, name: &str) -> &str {
        self.filters
            .iter()
            .find(|f| f.name == name)
            .map_or("", |f| f.value.as_str())
    }
}

/// The history form's values as the API takes them: a `datetime-local` time (no zone) is read
/// as UTC, the zone every page shows.
fn api_query(q: &HashMap<String, String>) -> HashMap<String, String> {
    FILTERS
        .iter()
        .filter_map(|k| q.get(*k).map(|v| (k, v.trim())))
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| {
            let local =
                (*k == "since" || *k == "until") && v.len() == 16 && v.as_bytes()[10] == b'T';
            let v = if local {
                format!("{v}:00Z")
            } else {
                v.to_string()
            };
            (k.to_string(), v)
        })
        .collect()
}

/// The history export's address for channel `id` with the form's filters as the API takes them.
fn export_url(id: Uuid, q: &HashMap<String, String>) -> String {
    let mut filters: Vec<(String, String)> = api_query(q).into_iter().collect();
    filters.sort();
    let mut out = url::form_urlencoded::Serializer::new(String::new());
    out.extend_pairs(filters);
    format!("/api/v1/channels/{id}/requests/export?{}", out.finish())
}

/// `a=1&b=2` of the form's non-empty filters.
fn encode(q: &HashMap<String, String>, extra: &[(&str, String)]) -> String {
    let mut out = url::form_urlencoded::Serializer::new(String::new());
    for k in FILTERS {
        if let Some(v) = q.get(k).filter(|v| !v.trim().is_empty()) {
            out.append_pair(k, v.trim());
        }
    }
    for (k, v) in extra {
        out.append_pair(k, v);
    }
    out.finish()
}

/// `GET /ui/channels/{id}?state=&method=&status=&since=&until=&path_prefix=&request_id=&cursor=`
pub async fn page(
    State(state): State<AdminState>,
    viewer: Viewer,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> UiResult<Response> {
    let ch = load(&state, &viewer.caller, Right::Read, &id).await?;
    let (filter, problem) = match filter_from(&api_query(&q)) {
        Ok(f) => (Some(f), String::new()),
        Err(e) => (None, problem_text(&e)),
    };
    let after = match q.get("cursor").filter(|c| !c.is_empty()) {
        Some(c) => Some(decode_request_cursor(c)?),
        None => None,
    };
    let page = match &filter {
        Some(f) => {
            state
                .store
                .list_requests_page(ch.id, f, after, PAGE)
                .await?
        }
        None => Default::default(),
    };
    let rows = page.items;
    let base = format!("/ui/channels/{}", ch.id);
    let older = match page.next {
        Some(c) => format!(
            "{base}?{}",
            encode(&q, &[("cursor", encode_request_cursor(&c))])
        ),
        None => String::new(),
    };
    let newer = if after.is_some() {
        format!("{base}?{}", encode(&q, &[]))
    } else {
        String::new()
    };
    let now = now_us();
    let live_url = if after.is_none() && filter.is_some() {
        format!("{base}/live?{}", encode(&q, &[("from", now.to_string())]))
    } else {
        String::new()
    };
    let window = Window::from_query(&q);
    let (from, to, bin) = window.span(now);
    let stats = state.store.channel_stats(ch.id, from).await?;
    let latencies = state.store.latency_per_bin(ch.id, from, bin).await?;
    let latency = |p: &str| {
        stats
            .latency_us
            .get(p)
            .copied()
            .flatten()
            .map(format::duration)
            .unwrap_or_else(|| "–".into())
    };
    let chosen_state = q.get("state").cloned().unwrap_or_default();
    let page = HistoryPage {
        layout: viewer.layout(ch.name.clone(), "channels", Some(ch.project_id)),
        channel_id: ch.id.to_string(),
        channel_name: ch.name.clone(),
        proxy_url: format!("{}/channels/{}", state.public_url, ch.id),
        can_edit: viewer.may(Right::EditChannels, ch.project_id),
        filters: FILTERS
            .iter()
            .map(|k| FilterValue {
                name: k,
                value: q.get(*k).cloned().unwrap_or_default(),
            })
            .collect(),
        states: RequestState::ALL
            .iter()
            .map(|s| (s.as_str(), s.as_str() == chosen_state))
            .collect(),
        problem,
        rows: rows.iter().map(row_view).collect(),
        newer,
        older,
        live_url,
        chart: charts::bars(
            &stats.per_minute_by_state,
            from,
            to,
            bin,
            "requests by state over time",
        ),
        export_url: export_url(ch.id, &q),
        latency_chart: charts::latency_lines(
            &latencies,
            from,
            to,
            bin,
            "latency percentiles over time",
        ),
        window_title: window.title(),
        day_url: format!("{base}?{}", encode(&q, &[("window", "24h".into())])),
        hour_url: format!("{base}?{}", encode(&q, &[])),
        day: window == Window::Day,
        total_in_window: format::count(stats.total),
        p50: latency("p50"),
        p95: latency("p95"),
        p99: latency("p99"),
    };
    Ok(render(&page)?.into_response())
}

/// What a live view has shown: each request's state when last sent.
struct LiveState {
    state: AdminState,
    channel: Uuid,
    filter: RequestFilter,
    /// Requests started before this were on the page when it was drawn.
    page_drawn: Micros,
    seen: HashMap<Uuid, RequestState>,
    first: bool,
    backlog: VecDeque<Event>,
    closed: tokio::sync::watch::Receiver<bool>,
}

impl LiveState {
    /// Looks for requests that finished (or appeared) since the last look.
    async fn poll(&mut self) -> Result<(), ApiError> {
        let mut rows = self
            .state
            .store
            .list_requests(self.channel, &self.filter, None, PAGE)
            .await?;
        rows.reverse();
        let mut seen = HashMap::with_capacity(rows.len());
        for r in rows {
            let known = self.seen.get(&r.id).copied();
            let drawn = self.first && r.started_at < self.page_drawn;
            let changed = known != Some(r.state) && r.state != RequestState::Pending;
            if changed && !drawn {
                let id = r.id.to_string();
                let html = RowTemplate { row: row_view(&r) }
                    .render()
                    .unwrap_or_default();
                self.backlog.push_back(
                    Event::default()
                        .event("request")
                        .data(json!({ "id": id, "html": html }).to_string()),
                );
            }
            seen.insert(r.id, r.state);
        }
        self.seen = seen;
        self.first = false;
        Ok(())
    }
}

/// `GET /ui/channels/{id}/live?<filters>&from=`: each request of the channel that finishes after
/// the page was drawn, as a `request` event whose data is `{"id", "html"}` (the history row).
pub async fn live(
    State(state): State<AdminState>,
    viewer: Viewer,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> UiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let ch = load(&state, &viewer.caller, Right::Read, &id).await?;
    let filter = filter_from(&api_query(&q)).map_err(UiError::Api)?;
    let page_drawn = q
        .get("from")
        .and_then(|f| f.parse().ok())
        .unwrap_or_else(now_us);
    let closed = state.events.closed();
    let live = LiveState {
        state,
        channel: ch.id,
        filter,
        page_drawn,
        seen: HashMap::new(),
        first: true,
        backlog: VecDeque::new(),
        closed,
    };
    let events = stream::unfold(live, |mut live| async move {
        loop {
            if let Some(e) = live.backlog.pop_front() {
                return Some((Ok(e), live));
            }
            if !live.first {
                let mut closed = live.closed.clone();
                tokio::select! {
                    _ = tokio::time::sleep(LIVE_POLL) => {}
                    _ = sluice_health::schedule::stopped(&mut closed) => return None,
                }
            }
            if let Err(e) = live.poll().await {
                tracing::warn!(error = ?e.message(), "live history could not read the ledger");
                live.first = false;
            }
        }
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

/// One header line of a request or response.
pub struct HeaderView {
    pub name: String,
    pub value: String,
}

/// A body as the detail shows it.
pub struct BodyView {
    pub sha256: String,
    pub size: String,
    pub preview: format::Preview,
}

#[derive(Template)]
#[template(path = "request.html")]
struct DetailPage {
    layout: Layout,
    channel_id: String,
    channel_name: String,
    row: RowView,
    request_id: String,
    error_text: String,
    forwarded_url: String,
    /// The request as a `curl` command ("Copy as cURL").
    curl: String,
    client: String,
    auth: String,
    completed: String,
    snapshot_id: String,
    snapshot_note: String,
    request_headers: Vec<HeaderView>,
    response_headers: Vec<HeaderView>,
    request_body: Option<BodyView>,
    response_body: Option<BodyView>,
    timing: String,
    segments: Vec<(&'static str, &'static str, String)>,
    reused: String,
    has_event: bool,
    /// Who wiped the request and when, in words; empty if no one did.
    wiped: String,
    /// The viewer may wipe it (an admin of its project, the request finished and not wiped).
    can_wipe: bool,
}

/// `GET /ui/requests/{id}`
pub async fn detail(
    State(state): State<AdminState>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> UiResult<Response> {
    let id = Uuid::parse_str(&id).map_err(|_| ApiError::not_found("request"))?;
    let (req, ev) = state
        .store
        .get_request(id)
        .await?
        .ok_or_else(|| ApiError::not_found("request"))?;
    let ch = load(
        &state,
        &viewer.caller,
        Right::Read,
        &req.channel_id.to_string(),
    )
    .await
    .map_err(|_| ApiError::not_found("request"))?;
    let snapshot = state.store.get_snapshot(req.snapshot_id).await?;
    let wiped = crate::history::wiped(&state, &req).await?;
    let can_wipe = wiped.is_none()
        && req.state != RequestState::Pending
        && viewer.may(Right::ManageProject, ch.project_id);
    let wiped = wiped
        .map(|w| format!("Wiped by {} on {}: its headers, body previews, path, query and client address are gone; its status, sizes, timings and hashes remain.", w.by, format::when(w.at)))
        .unwrap_or_default();
    let forwarded_url =
        crate::export::forwarded_url(snapshot.as_ref().map(|s| s.config.sink_url.as_str()), &req);
    let curl = crate::export::curl(&req, ev.as_ref(), &forwarded_url);
    let snapshot_note = match &snapshot {
        Some(s) if s.lock_version != ch.lock_version => format!(
            "The channel has changed since: this request ran under version {}, the channel is now at version {}.",
            s.lock_version, ch.lock_version
        ),
        Some(_) => "This is the channel's current configuration.".into(),
        None => "The snapshot is no longer stored.".into(),
    };
    let headers = |list: &sluice_core::header_list::HeaderList| {
        list.pairs()
            .into_iter()
            .map(|(name, value)| HeaderView { name, value })
            .collect::<Vec<_>>()
    };
    let content_type = |list: &[HeaderView]| {
        list.iter()
            .find(|h| h.name.eq_ignore_ascii_case("content-type"))
            .map(|h| h.value.clone())
    };
    let (request_headers, response_headers) = ev
        .as_ref()
        .map(|e| (headers(&e.request_headers), headers(&e.response_headers)))
        .unwrap_or_default();
    let body = |b: &sluice_core::BodyObservation, ct: Option<String>| BodyView {
        sha256: b.sha256.clone(),
        size: format::bytes(b.size),
        preview: format::preview(b, ct.as_deref()),
    };
    let request_body = ev
        .as_ref()
        .map(|e| body(&e.request_body, content_type(&request_headers)));
    let response_body = ev
        .as_ref()
        .map(|e| body(&e.response_body, content_type(&response_headers)));
    let segs = ev
        .as_ref()
        .map(|e| segments(&e.timings))
        .unwrap_or_default();
    let page = DetailPage {
        layout: viewer.layout(
            format!("{} {}", req.method, req.path),
            "channels",
            Some(ch.project_id),
        ),
        channel_id: ch.id.to_string(),
        channel_name: ch.name.clone(),
        row: row_view(&req),
        request_id: req.request_id.clone(),
        error_text: req
            .error
            .as_deref()
            .map(format::explain_error)
            .unwrap_or_default(),
        forwarded_url,
        curl,
        client: req.client_identity.clone(),
        auth: match (&req.source_auth_type, req.source_auth_method_id) {
            (Some(kind), Some(id)) => format!("{kind} ({id})"),
            (Some(kind), None) => kind.clone(),
            _ => "none (the channel is open)".into(),
        },
        completed: req.completed_at.map(format::when).unwrap_or_default(),
        snapshot_id: req.snapshot_id.to_string(),
        snapshot_note,
        request_headers,
        response_headers,
        request_body,
        response_body,
        timing: charts::timing_bar(&segs),
        segments: segs
            .iter()
            .map(|(class, name, us)| (*class, *name, format::duration(*us)))
            .collect(),
        reused: match ev.as_ref().and_then(|e| e.timings.reused_connection) {
            Some(true) => "reused a pooled connection".into(),
            Some(false) => "opened a new connection".into(),
            None => String::new(),
        },
        has_event: ev.is_some(),
        wiped,
        can_wipe,
    };
    Ok(render(&page)?.into_response())
}

/// The phases of an exchange from its timings: queue, connect, send, wait for the first byte,
/// download. Phases that were not measured are left out.
fn segments(t: &sluice_core::exchange::Timings) -> charts::Segments {
    let queue = t.queue_us.unwrap_or(0).max(0);
    let connect = t.connect_us.unwrap_or(0).max(0);
    let send = t.send_us.unwrap_or(0).max(0);
    let mut out: charts::Segments = vec![
        ("queue", "queue", queue),
        ("connect", "connect", connect),
        ("send", "send", send),
    ];
    if let Some(ttfb) = t.ttfb_us {
        out.push((
            "wait",
            "time to first byte",
            (ttfb - queue - connect - send).max(0),
        ));
        if let Some(total) = t.latency_us {
            out.push(("download", "download", (total - ttfb).max(0)));
        }
    }
    out.retain(|s| s.2 > 0);
    out
}

/// `POST /ui/requests/{id}/wipe`: wipes the request (see `history::wipe`) and shows it again.
pub async fn wipe(
    State(state): State<AdminState>,
    Path(id): Path<String>,
    form: Submitted,
) -> UiResult<Response> {
    crate::history::wipe_request(&state, &form.viewer.caller, &id).await?;
    Ok(Redirect::to(&format!("/ui/requests/{id}")).into_response())
}
