//! The error type of the upstream strategies.

use std::path::PathBuf;
use std::time::Duration;

/// Why a strategy could not answer. Every variant names the URL or path it was reading, so an
/// operator can tell a misconfigured mirror from a bad package.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// A setting is unusable (a base URL that does not parse, a zero concurrency limit, …).
    #[error("setting {setting}: {reason}")]
    Config {
        setting: &'static str,
        reason: String,
    },
    /// The name is not an `@openfn/language-*` package name this catalogue can look up.
    #[error("not an adaptor package name: {0:?}")]
    BadName(String),
    /// Upstream does not have this package (npm answered 404, or no local directory holds it).
    #[error("unknown package {0}")]
    UnknownPackage(String),
    /// The package exists but not in this version.
    #[error("unknown version {version} of {name}")]
    UnknownVersion { name: String, version: String },
    /// Upstream took longer than the configured `timeout`.
    #[error("{url}: no answer within {timeout:?}")]
    Timeout { url: String, timeout: Duration },
    /// The request failed before a status arrived (connection refused or reset, TLS, …).
    #[error("{url}: {}", chain(.source))]
    Http { url: String, source: reqwest::Error },
    /// Upstream answered with a status this request cannot use.
    #[error("{url}: HTTP {status}")]
    Status { url: String, status: u16 },
    /// A document at a URL or path is not the JSON it should be.
    #[error("{at}: bad JSON: {source}")]
    Json {
        at: String,
        source: serde_json::Error,
    },
    /// A document parsed but lacks something required (e.g. a packument without `dist-tags.latest`).
    #[error("{at}: {reason}")]
    Malformed { at: String, reason: String },
    /// A tarball does not match the packument's `dist.integrity`, or has no usable integrity.
    #[error("{url}: integrity: {reason}")]
    Integrity { url: String, reason: String },
    /// A tarball that passed its integrity check could not be unpacked.
    #[error("{url}: bad tarball: {source}")]
    Tarball { url: String, source: std::io::Error },
    /// A local file or directory could not be read.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl CatalogError {
    pub(crate) fn config(setting: &'static str, reason: impl ToString) -> Self {
        let reason = reason.to_string();
        CatalogError::Config { setting, reason }
    }

    pub(crate) fn malformed(at: impl ToString, reason: impl ToString) -> Self {
        let (at, reason) = (at.to_string(), reason.to_string());
        CatalogError::Malformed { at, reason }
    }

    pub(crate) fn json(at: impl ToString, source: serde_json::Error) -> Self {
        let at = at.to_string();
        CatalogError::Json { at, source }
    }
}

/// An error and its causes, `: `-separated (reqwest's own text names none of them, so
/// "connection refused" or a TLS failure would be lost).
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}
