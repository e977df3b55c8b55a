//! The health verdict on a channel's sink, as the monitor writes it and the API shows it.

use serde::Serialize;

/// The health verdict on a channel's sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    /// Not checked yet.
    Unknown,
    /// The last probe (or proxied request) found the sink working.
    Healthy,
    /// A probe failed, or several proxied requests in a row failed because of the sink.
    Unhealthy,
}

impl HealthStatus {
    /// The wire and storage name.
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Unknown => "unknown",
            HealthStatus::Healthy => "healthy",
            HealthStatus::Unhealthy => "unhealthy",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        [
            HealthStatus::Unknown,
            HealthStatus::Healthy,
            HealthStatus::Unhealthy,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }
}
