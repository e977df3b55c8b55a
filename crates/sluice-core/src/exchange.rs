//! The records of one proxied exchange: the request row and its detailed event.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::clock::Micros;
use crate::header_list::HeaderList;

/// Lifecycle state of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RequestState {
    /// Recorded, not yet finished.
    Pending,
    /// The sink answered 2xx (or 1xx/3xx: anything that is not an error status).
    Success,
    /// The sink answered 4xx or 5xx.
    Failed,
    /// Connect or response timeout.
    Timeout,
    /// No usable answer: network, TLS, credential or caller failure.
    Error,
}

impl RequestState {
    /// All states, in display order.
    pub const ALL: [RequestState; 5] = [
        RequestState::Pending,
        RequestState::Success,
        RequestState::Failed,
        RequestState::Timeout,
        RequestState::Error,
    ];

    /// The wire and storage name.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestState::Pending => "pending",
            RequestState::Success => "success",
            RequestState::Failed => "failed",
            RequestState::Timeout => "timeout",
            RequestState::Error => "error",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// The state of an exchange whose sink answered with `status`.
    pub fn from_status(status: u16) -> Self {
        if status >= 400 {
            RequestState::Failed
        } else {
            RequestState::Success
        }
    }
}

/// One proxied exchange as stored in the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestRecord {
    /// Ledger identifier.
    pub id: Uuid,
    /// The authoritative `x-request-id` (not unique: callers may retry with the same id).
    pub request_id: String,
    /// Channel it went through.
    pub channel_id: Uuid,
    /// Configuration snapshot it ran under.
    pub snapshot_id: Uuid,
    /// Current state.
    pub state: RequestState,
    /// Arrival time.
    pub started_at: Micros,
    /// Completion time, once finished.
    pub completed_at: Option<Micros>,
    /// First `x-forwarded-for` entry or the peer address.
    pub client_identity: String,
    /// Source auth method that admitted the caller.
    pub source_auth_method_id: Option<Uuid>,
    /// Type of that method (`api_key`, `basic`).
    pub source_auth_type: Option<String>,
    /// HTTP method.
    pub method: String,
    /// Path forwarded to the sink.
    pub path: String,
    /// Query string, verbatim, without `?`.
    pub query: Option<String>,
    /// Status the sink answered with.
    pub response_status: Option<u16>,
    /// Error string for `timeout` and `error` states.
    pub error: Option<String>,
    /// Total latency.
    pub latency_us: Option<i64>,
    /// Time to the first byte of the response head.
    pub ttfb_us: Option<i64>,
    /// Size of the full request body.
    pub request_body_size: Option<i64>,
    /// Size of the full response body.
    pub response_body_size: Option<i64>,
}

/// What was observed of one body while it streamed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BodyObservation {
    /// Lowercase hex SHA-256 of every byte that passed.
    pub sha256: String,
    /// Number of bytes that passed.
    pub size: i64,
    /// The first bytes (at most the channel's preview size).
    pub preview: Vec<u8>,
    /// Whether the body was longer than the preview.
    pub truncated: bool,
}

/// Timings of an exchange, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timings {
    /// From arrival to the end of the response body.
    pub latency_us: Option<i64>,
    /// From arrival to the response head from the sink.
    pub ttfb_us: Option<i64>,
    /// Time to open a new connection (absent when a pooled one was reused).
    pub connect_us: Option<i64>,
    /// From dispatch until the request body was fully sent.
    pub send_us: Option<i64>,
    /// Time spent waiting for a connection from the pool (includes connecting).
    pub queue_us: Option<i64>,
    /// Whether a pooled connection was reused.
    pub reused_connection: Option<bool>,
}

/// The detailed record of an exchange, written at completion.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRecord {
    /// The request row it details.
    pub request_id: Uuid,
    /// Request headers as sent to the sink, redacted.
    pub request_headers: HeaderList,
    /// Response headers as received from the sink, redacted.
    pub response_headers: HeaderList,
    /// Request body observation.
    pub request_body: BodyObservation,
    /// Response body observation.
    pub response_body: BodyObservation,
    /// Status from the sink.
    pub response_status: Option<u16>,
    /// Timings.
    pub timings: Timings,
    /// Error string, if any.
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_decides_success_or_failure() {
        assert_eq!(RequestState::from_status(200), RequestState::Success);
        assert_eq!(RequestState::from_status(204), RequestState::Success);
        assert_eq!(RequestState::from_status(302), RequestState::Success);
        assert_eq!(RequestState::from_status(404), RequestState::Failed);
        assert_eq!(RequestState::from_status(503), RequestState::Failed);
    }

    #[test]
    fn state_names_round_trip() {
        for st in RequestState::ALL {
            assert_eq!(RequestState::parse(st.as_str()), Some(st));
        }
        assert_eq!(RequestState::parse("done"), None);
    }
}
