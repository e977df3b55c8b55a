//! The proxy's Prometheus series, registered once and recorded on the hot path.

use metrics::{counter, histogram, Counter, Histogram};
use sluice_core::{RequestRecord, RequestState};
use uuid::Uuid;

/// `sluice_proxy_requests_total{channel, state}` of one channel, one handle per state,
/// registered when the route is built so the hot path does no label lookup.
pub struct ChannelCounters([Counter; 5]);

impl ChannelCounters {
    /// Registers the counters of `channel`.
    pub fn new(channel: Uuid) -> Self {
        let id = channel.to_string();
        Self(RequestState::ALL.map(|st| {
            counter!("sluice_proxy_requests_total", "channel" => id.clone(), "state" => st.as_str())
        }))
    }

    fn get(&self, state: RequestState) -> &Counter {
        let i = RequestState::ALL
            .iter()
            .position(|s| *s == state)
            .expect("every state is listed");
        &self.0[i]
    }
}

/// Pre-registered handles of the proxy's metrics.
pub struct ProxyMetrics {
    /// `sluice_proxy_phase_seconds{phase="lookup"}`: channel lookup.
    pub lookup: Histogram,
    /// `sluice_proxy_phase_seconds{phase="ledger"}`: waiting for the durable pending record.
    pub ledger: Histogram,
    /// `sluice_proxy_phase_seconds{phase="upstream"}`: dispatch until the response head.
    pub upstream: Histogram,
    latency: Histogram,
    ttfb: Histogram,
}

impl Default for ProxyMetrics {
    fn default() -> Self {
        Self {
            lookup: histogram!("sluice_proxy_phase_seconds", "phase" => "lookup"),
            ledger: histogram!("sluice_proxy_phase_seconds", "phase" => "ledger"),
            upstream: histogram!("sluice_proxy_phase_seconds", "phase" => "upstream"),
            latency: histogram!("sluice_proxy_latency_seconds"),
            ttfb: histogram!("sluice_proxy_ttfb_seconds"),
        }
    }
}

impl ProxyMetrics {
    /// Records a finished request.
    pub fn finished(&self, counters: &ChannelCounters, r: &RequestRecord) {
        counters.get(r.state).increment(1);
        if let Some(l) = r.latency_us {
            self.latency.record(l as f64 / 1e6);
        }
        if let Some(t) = r.ttfb_us {
            self.ttfb.record(t as f64 / 1e6);
        }
    }
}
