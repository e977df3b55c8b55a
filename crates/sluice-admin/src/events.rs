//! The event log: `GET /events` (newest first, cursor-paginated) and `GET /events/stream`
//! (Server-Sent Events; `Last-Event-ID` replays what was missed and is still retained).

use std::collections::{HashMap, HashSet, VecDeque};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::Json;
use futures_util::stream::{self, Stream, StreamExt};
use http::HeaderMap;
use serde_json::{json, Value};
use sluice_core::access::Right;
use sluice_store::{
    ChannelScope, EventLog, LogEntry, LogFilter, LogPage, Severity, Source, StoreError,
};
use tokio::sync::broadcast::error::RecvError;
use uuid::Uuid;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::wire;
use crate::AdminState;

/// Replayed entries read per page.
const REPLAY_PAGE: i64 = 500;
/// Most entries replayed to one reconnecting client.
const REPLAY_MAX: usize = 10_000;
/// Default time between heartbeats on an idle stream.
const HEARTBEAT: Duration = Duration::from_secs(15);

/// An entry as the API shows it.
pub fn entry_json(e: &LogEntry) -> Value {
    json!({
        "id": e.id,
        "at": wire::ts(e.at),
        "severity": e.severity,
        "source": e.source,
        "channel_id": e.channel_id,
        "message": e.message,
        "details": e.details,
    })
}

/// Parses a comma list of names with `parse`, naming `field` on a bad one.
fn list<T>(
    q: &HashMap<String, String>,
    field: &str,
    parse: fn(&str) -> Option<T>,
    allowed: &str,
) -> ApiResult<Vec<T>> {
    let Some(raw) = q.get(field).filter(|s| !s.is_empty()) else {
        return Ok(Vec::new());
    };
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            parse(s).ok_or_else(|| {
                ApiError::bad_query(field, format!("unknown value {s:?}; use {allowed}"))
            })
        })
        .collect()
}

/// The filter of a query, narrowed to what the caller may see: a channel it names must be
/// readable, and a caller who is not a superuser sees only its projects' channels' entries.
pub(crate) async fn filter_for(
    state: &AdminState,
    caller: &Caller,
    q: &HashMap<String, String>,
) -> ApiResult<LogFilter> {
    let mut filter = filter_from(q)?;
    if let Some(c) = filter.channel_id {
        crate::channels::load(state, caller, Right::Read, &c.to_string()).await?;
    }
    filter.scope = if caller.is_superuser() {
        None
    } else {
        match caller.readable_projects() {
            None => Some(ChannelScope::AnyChannel),
            Some(projects) => Some(ChannelScope::Channels(Arc::new(
                channels_of(state, &projects).await?,
            ))),
        }
    };
    Ok(filter)
}

/// The ids of every channel of `projects`.
async fn channels_of(state: &AdminState, projects: &[Uuid]) -> ApiResult<HashSet<Uuid>> {
    let mut ids = HashSet::new();
    let mut after = None;
    loop {
        let page = state
            .store
            .list_channels(Some(projects), after, wire::MAX_LIMIT)
            .await?;
        ids.extend(page.iter().map(|c| c.id));
        match page.last() {
            Some(c) if page.len() as i64 == wire::MAX_LIMIT => after = Some(c.id),
            _ => return Ok(ids),
        }
    }
}

fn filter_from(q: &HashMap<String, String>) -> ApiResult<LogFilter> {
    Ok(LogFilter {
        severities: list(q, "severity", Severity::parse, "info, warn, error")?,
        sources: list(
            q,
            "source",
            Source::parse,
            "proxy, health, auth, catalog, system",
        )?,
        channel_id: q
            .get("channel_id")
            .filter(|s| !s.is_empty())
            .map(|s| {
                Uuid::parse_str(s).map_err(|_| ApiError::bad_query("channel_id", "must be a UUID"))
            })
            .transpose()?,
        scope: None,
    })
}

/// `GET /api/v1/events?severity=&source=&channel_id=&cursor=&limit=`
pub async fn list_events(
    State(state): State<AdminState>,
    caller: Caller,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let filter = filter_for(&state, &caller, &q).await?;
    let limit = wire::limit(q.get("limit").map(String::as_str))?;
    let before = q
        .get("cursor")
        .map(|c| {
            wire::decode_cursor(c)?
                .parse::<i64>()
                .map_err(|_| ApiError::bad_query("cursor", "not a cursor returned by this API"))
        })
        .transpose()?;
    let rows = state
        .events
        .query(&filter, LogPage::Before(before), limit)
        .await?;
    Ok(Json(wire::page(&rows, limit, entry_json, |e| {
        e.id.to_string()
    })))
}

/// Retained entries passing `filter` after id `after`, oldest first, at most [`REPLAY_MAX`].
async fn replay(
    events: &EventLog,
    filter: &LogFilter,
    mut after: i64,
) -> Result<Vec<LogEntry>, StoreError> {
    let mut out = Vec::new();
    loop {
        let page = events
            .query(filter, LogPage::After(after), REPLAY_PAGE)
            .await?;
        let full = page.len() as i64 == REPLAY_PAGE;
        after = page.last().map_or(after, |e| e.id);
        out.extend(page);
        if !full || out.len() >= REPLAY_MAX {
            return Ok(out);
        }
    }
}

fn sse_event(e: &LogEntry) -> Event {
    Event::default()
        .id(e.id.to_string())
        .data(entry_json(e).to_string())
}

/// `GET /api/v1/events/stream?severity=&source=&channel_id=&heartbeat_ms=` with an optional
/// `Last-Event-ID` header (or `last_event_id` query parameter).
pub async fn stream_events(
    State(state): State<AdminState>,
    caller: Caller,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    // The channels a stream may show are fixed when it opens (a reconnect picks up new ones).
    let filter = filter_for(&state, &caller, &q).await?;
    let last = match headers.get("last-event-id") {
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<i64>().ok())
                .ok_or_else(|| ApiError::field("Last-Event-ID", "must be an event id"))?,
        ),
        None => q
            .get("last_event_id")
            .map(|s| {
                s.parse::<i64>()
                    .map_err(|_| ApiError::bad_query("last_event_id", "must be an event id"))
            })
            .transpose()?,
    };
    let heartbeat = q
        .get("heartbeat_ms")
        .map(|s| match s.parse::<u64>() {
            Ok(ms) if (100..=300_000).contains(&ms) => Ok(Duration::from_millis(ms)),
            _ => Err(ApiError::bad_query(
                "heartbeat_ms",
                "must be an integer from 100 to 300000",
            )),
        })
        .transpose()?
        .unwrap_or(HEARTBEAT);
    // Subscribe before reading what was missed, so nothing falls between the two.
    let rx = state.events.subscribe();
    // The stream ends at shutdown (the hub is closed) so it never holds the server up.
    let closed = state.events.closed();
    let missed = match last {
        Some(after) => replay(&state.events, &filter, after).await?,
        None => Vec::new(),
    };
    let seen = missed.last().map(|e| e.id).or(last).unwrap_or(0);
    let head = stream::iter(missed.iter().map(sse_event).map(Ok).collect::<Vec<_>>());
    let events = state.events.clone();
    let live = stream::unfold(
        (rx, seen, VecDeque::new()),
        move |(mut rx, mut seen, mut backlog): (_, i64, VecDeque<LogEntry>)| {
            let filter = filter.clone();
            let events = events.clone();
            let mut closed = closed.clone();
            async move {
                loop {
                    if let Some(e) = backlog.pop_front() {
                        seen = e.id;
                        return Some((Ok(sse_event(&e)), (rx, seen, backlog)));
                    }
                    tokio::select! {
                        r = rx.recv() => match r {
                            Ok(e) if e.id > seen && filter.matches(&e) => {
                                seen = e.id;
                                return Some((Ok(sse_event(&e)), (rx, seen, backlog)));
                            }
                            Ok(_) => {}
                            // Fell behind the live feed: read what was skipped from the log.
                            Err(RecvError::Lagged(n)) => {
                                tracing::debug!(missed = n, "event stream caught up from the log");
                                match replay(&events, &filter, seen).await {
                                    Ok(missed) => backlog.extend(missed),
                                    Err(e) => {
                                        tracing::warn!(error = %e, "event stream could not catch up");
                                    }
                                }
                            }
                            Err(RecvError::Closed) => return None,
                        },
                        _ = sluice_health::schedule::stopped(&mut closed) => return None,
                    }
                }
            }
        },
    );
    Ok(Sse::new(head.chain(live)).keep_alive(KeepAlive::new().interval(heartbeat)))
}
