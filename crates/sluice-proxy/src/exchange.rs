//! The record of one exchange in flight, and how it is finished exactly once.

use std::sync::Arc;
use std::time::Instant;

use sluice_core::clock::now_us;
use sluice_core::outcome::BodyFailure;
use sluice_core::reflected::Reflected;
use sluice_core::{EventRecord, ExchangeError, HeaderList, RequestRecord, RequestState};
use sluice_store::Ledger;

use crate::metrics::ProxyMetrics;
use crate::routes::Route;
use crate::tap::{SharedTap, TapEnd};

/// How an exchange ended.
pub enum Outcome {
    /// The sink answered with this status and the whole response passed.
    Answered,
    /// No usable answer: the error says why.
    Failed(ExchangeError),
}

struct Inner {
    ledger: Ledger,
    metrics: Arc<ProxyMetrics>,
    route: Arc<Route>,
    /// Shared with the ledger until the pending record has committed; unique afterwards.
    record: Arc<RequestRecord>,
    event: EventRecord,
    started: Instant,
    dispatched: Option<Instant>,
    request_tap: SharedTap,
    response_tap: Option<SharedTap>,
    /// Header secrets an echoing sink may put in the previews.
    secrets: Reflected,
}

/// A request whose `pending` record is durable and whose completion is still to be written.
///
/// Dropping it unfinished (the caller went away while the sink was being asked) records the
/// request as `client_disconnected`, so no record is left dangling.
pub struct Exchange(Option<Inner>);

impl Exchange {
    /// Starts tracking `record` (already durable as pending).
    pub fn new(
        ledger: Ledger,
        metrics: Arc<ProxyMetrics>,
        route: Arc<Route>,
        record: Arc<RequestRecord>,
        started: Instant,
        request_tap: SharedTap,
    ) -> Self {
        let event = EventRecord {
            request_id: record.id,
            ..EventRecord::default()
        };
        Self(Some(Inner {
            ledger,
            metrics,
            route,
            record,
            event,
            started,
            dispatched: None,
            request_tap,
            response_tap: None,
            secrets: Reflected::default(),
        }))
    }

    fn inner(&mut self) -> &mut Inner {
        self.0.as_mut().expect("exchange used after finishing")
    }

    /// Notes the request headers as sent (already redacted), the secrets they carried and the
    /// dispatch time.
    pub fn dispatched(&mut self, headers: HeaderList, secrets: Reflected) {
        let i = self.inner();
        if !i.route.metadata_only {
            i.event.request_headers = headers;
        }
        i.secrets = secrets;
        i.dispatched = Some(Instant::now());
    }

    /// Notes the response head: status, headers (redacted), and the time spent opening the
    /// connection (`None`: a pooled one was reused).
    pub fn answered(
        &mut self,
        status: u16,
        headers: HeaderList,
        connect_us: Option<i64>,
        response_tap: SharedTap,
    ) {
        let i = self.inner();
        let now = Instant::now();
        let ttfb = now.duration_since(i.started).as_micros() as i64;
        let r = Arc::make_mut(&mut i.record);
        r.response_status = Some(status);
        r.ttfb_us = Some(ttfb);
        i.event.response_status = Some(status);
        if !i.route.metadata_only {
            i.event.response_headers = headers;
        }
        i.event.timings.ttfb_us = Some(ttfb);
        i.event.timings.connect_us = connect_us;
        i.event.timings.reused_connection = Some(connect_us.is_none());
        if let Some(d) = i.dispatched {
            i.metrics
                .upstream
                .record(now.duration_since(d).as_secs_f64());
        }
        i.response_tap = Some(response_tap);
    }

    /// The caller's fault, if the request body failed: malformed (`client_error`), paused
    /// past the idle timeout (`client_timeout`), or cut off (`client_disconnected`).
    pub fn request_body_fault(&self) -> Option<ExchangeError> {
        let i = self.0.as_ref()?;
        let tap = i.request_tap.lock();
        match (tap.end, tap.failure) {
            (TapEnd::Idle, _) => Some(ExchangeError::ClientTimeout),
            (TapEnd::SourceError, Some(BodyFailure::Malformed)) => Some(ExchangeError::ClientError),
            (TapEnd::SourceError, Some(BodyFailure::TooLarge)) => {
                Some(ExchangeError::RequestTooLarge)
            }
            (TapEnd::SourceError, _) => Some(ExchangeError::ClientDisconnected),
            _ => None,
        }
    }

    /// Whether the caller is still sending the request body.
    pub fn request_body_unfinished(&self) -> bool {
        self.0
            .as_ref()
            .is_some_and(|i| i.request_tap.lock().end == TapEnd::Open)
    }

    /// Forgets the exchange without recording anything (its pending record was refused).
    pub fn abandon(&mut self) {
        self.0 = None;
    }

    /// Writes the final record. Later calls (and the drop) do nothing.
    pub fn finish(&mut self, outcome: Outcome) {
        let Some(mut i) = self.0.take() else { return };
        let now = Instant::now();
        let latency = now.duration_since(i.started).as_micros() as i64;
        let (state, error) = match outcome {
            Outcome::Answered => (
                RequestState::from_status(i.record.response_status.unwrap_or(502)),
                None,
            ),
            Outcome::Failed(e) => (e.state(), Some(e.code())),
        };
        let req = {
            let mut t = i.request_tap.lock();
            let ended = t.ended_at;
            (t.observation(), ended)
        };
        let (request_body, request_ended) = req;
        if let (Some(d), Some(e)) = (i.dispatched, request_ended) {
            i.event.timings.send_us = Some(e.saturating_duration_since(d).as_micros() as i64);
        }
        let mut request_body = request_body;
        let mut response_body = i.response_tap.as_ref().map(|t| t.lock().observation());
        for body in std::iter::once(&mut request_body).chain(response_body.as_mut()) {
            i.secrets.scrub(&mut body.preview, body.truncated);
        }
        let r = Arc::make_mut(&mut i.record);
        r.state = state;
        r.error = error.clone();
        r.completed_at = Some(now_us());
        r.latency_us = Some(latency);
        r.request_body_size = Some(request_body.size);
        r.response_body_size = response_body.as_ref().map(|b| b.size);
        let ev = &mut i.event;
        ev.error = error;
        ev.timings.latency_us = Some(latency);
        ev.request_body = request_body;
        ev.response_body = response_body.unwrap_or_default();
        i.metrics.finished(&i.route.counters, &i.record);
        if let Some(p) = &i.route.passive {
            let r = &i.record;
            p.observe(r.state, r.response_status, r.error.as_deref());
        }
        i.ledger
            .record_completion(Arc::unwrap_or_clone(i.record), Some(i.event));
    }

    /// Finishes after the response body ended as `how` (and, for a failed sink, `failure`).
    pub fn finish_body(&mut self, how: TapEnd, failure: Option<BodyFailure>) {
        let outcome = match how {
            TapEnd::Complete => Outcome::Answered,
            TapEnd::Open => Outcome::Failed(ExchangeError::ClientDisconnected),
            TapEnd::SourceError if failure == Some(BodyFailure::Reset) => {
                Outcome::Failed(ExchangeError::Econnreset)
            }
            TapEnd::SourceError => Outcome::Failed(ExchangeError::Closed),
            TapEnd::Idle => Outcome::Failed(ExchangeError::IdleTimeout),
        };
        self.finish(outcome);
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        if self.0.is_some() {
            self.finish(Outcome::Failed(ExchangeError::ClientDisconnected));
        }
    }
}
