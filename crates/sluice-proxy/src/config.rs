//! Settings of the data plane.

use std::time::Duration;

use std::sync::Arc;

use sluice_core::headers::Redactor;
use sluice_core::hops::Hop;
use sluice_health::passive::HealthBoard;
use sluice_store::EventLog;

/// How the proxy behaves where a channel does not say otherwise.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Default time to connect to a sink.
    pub connect_timeout: Duration,
    /// Default time from dispatch to the response head.
    pub response_timeout: Duration,
    /// Default longest pause between two body chunks.
    pub idle_timeout: Duration,
    /// Headers whose values are never recorded.
    pub redactor: Redactor,
    /// `x-forwarded-proto` sent to sinks (`http`, or `https` when sluice terminates TLS).
    pub forwarded_proto: &'static str,
    /// Passive health: where finished requests are counted per channel (none: not counted).
    pub health: Option<Arc<HealthBoard>>,
    /// Where operational events go (lookup failures, source-auth failures, unusable
    /// credentials).
    pub events: Option<EventLog>,
    /// This node's `Via` entry, stamped on what it forwards; a request already carrying it
    /// is refused with 508.
    pub hop: Hop,
    /// Wrong credentials (or unknown channels) a client address may present to one channel in
    /// an `auth_failure_window` before it is answered 429 until the window ends; `0`: never.
    pub auth_failures: u32,
    /// The window source-auth failures are counted (and summed in the event log) over.
    pub auth_failure_window: Duration,
    /// Which sink and token-endpoint addresses may be connected to (default: any).
    pub egress: Arc<sluice_core::egress::EgressPolicy>,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(30),
            redactor: Redactor::default(),
            forwarded_proto: "http",
            health: None,
            events: None,
            hop: Hop::new(&uuid::Uuid::new_v4().to_string()),
            auth_failures: 10,
            auth_failure_window: Duration::from_secs(60),
            egress: Arc::new(sluice_core::egress::EgressPolicy::open()),
        }
    }
}
