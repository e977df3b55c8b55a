//! Channels, their timeouts and the immutable snapshots of their configuration.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::clock::Micros;

/// Default body-preview size kept per direction (64 KiB).
pub const DEFAULT_PREVIEW_BYTES: u32 = 64 * 1024;
/// Largest accepted per-channel preview size (16 MiB).
pub const MAX_PREVIEW_BYTES: u32 = 16 * 1024 * 1024;

/// Per-channel timeout overrides in milliseconds; `None` means "use the global default".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timeouts {
    /// Time allowed to establish the TCP (and TLS) connection to the sink.
    pub connect_ms: Option<u64>,
    /// Time allowed from sending the request until the response head arrives.
    pub response_ms: Option<u64>,
    /// Longest pause allowed between two chunks of either body.
    pub idle_ms: Option<u64>,
}

/// A channel: the configured route from callers to one sink.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Channel {
    /// Stable identifier, part of the proxy URL.
    pub id: Uuid,
    /// Owning project.
    pub project_id: Uuid,
    /// Name, unique within the project.
    pub name: String,
    /// Base URL requests are forwarded to.
    pub sink_url: String,
    /// Disabled channels answer 404.
    pub enabled: bool,
    /// Optimistic-locking counter, bumped on every change.
    pub lock_version: i64,
    /// Source auth methods admitting callers; empty means public.
    pub source_auth_method_ids: Vec<Uuid>,
    /// Credential injected towards the sink, if any.
    pub sink_credential_id: Option<Uuid>,
    /// Timeout overrides.
    pub timeouts: Timeouts,
    /// Bytes of each body kept as a preview.
    pub preview_bytes: u32,
    /// The largest request body forwarded (none: no limit); a larger one is answered 413.
    pub max_request_bytes: Option<u64>,
    /// Creation time.
    pub created_at: Micros,
    /// Last change.
    pub updated_at: Micros,
}

/// The part of a channel that governs how a request is proxied: what a snapshot freezes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelConfig {
    /// Name at the time.
    pub name: String,
    /// Sink URL at the time.
    pub sink_url: String,
    /// Enabled flag at the time.
    pub enabled: bool,
    /// Source auth methods at the time.
    pub source_auth_method_ids: Vec<Uuid>,
    /// Sink credential at the time.
    pub sink_credential_id: Option<Uuid>,
    /// Timeout overrides at the time.
    pub timeouts: Timeouts,
    /// Preview size at the time.
    pub preview_bytes: u32,
    /// Request body limit at the time (absent in snapshots taken before there was one).
    #[serde(default)]
    pub max_request_bytes: Option<u64>,
}

impl Channel {
    /// The configuration a snapshot of this channel records.
    pub fn config(&self) -> ChannelConfig {
        ChannelConfig {
            name: self.name.clone(),
            sink_url: self.sink_url.clone(),
            enabled: self.enabled,
            source_auth_method_ids: self.source_auth_method_ids.clone(),
            sink_credential_id: self.sink_credential_id,
            timeouts: self.timeouts,
            preview_bytes: self.preview_bytes,
            max_request_bytes: self.max_request_bytes,
        }
    }
}

/// An immutable copy of a channel's configuration for one `lock_version`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Identifier referenced by requests.
    pub id: Uuid,
    /// The channel it belongs to.
    pub channel_id: Uuid,
    /// The channel's `lock_version` it captures.
    pub lock_version: i64,
    /// The frozen configuration.
    pub config: ChannelConfig,
    /// When it was first used.
    pub created_at: Micros,
}
