//! What kind of operational event an entry of the event log is: how serious, and which part of
//! sluice produced it. Stored by name in the ledger, sent by name on the wire.

use serde::Serialize;

/// How serious an event-log entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Kept in memory only (live stream and recent list).
    Info,
    /// Persisted.
    Warn,
    /// Persisted.
    Error,
}

impl Severity {
    /// All severities.
    pub const ALL: [Severity; 3] = [Severity::Info, Severity::Warn, Severity::Error];

    /// The wire and storage name.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warn => "warn",
            Severity::Error => "error",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// Whether entries of this severity are written to the ledger.
    pub fn is_persisted(self) -> bool {
        self != Severity::Info
    }
}

/// Which part of sluice produced an event-log entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The data plane.
    Proxy,
    /// Health monitoring, passive health, stale channels.
    Health,
    /// Source authentication and sink credentials.
    Auth,
    /// The adaptor catalogue.
    Catalog,
    /// Process lifecycle, the ledger, background jobs.
    System,
}

impl Source {
    /// All sources.
    pub const ALL: [Source; 5] = [
        Source::Proxy,
        Source::Health,
        Source::Auth,
        Source::Catalog,
        Source::System,
    ];

    /// The wire and storage name.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Proxy => "proxy",
            Source::Health => "health",
            Source::Auth => "auth",
            Source::Catalog => "catalog",
            Source::System => "system",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}
