//! The in-memory route table: channels as the hot path needs them, loaded on first use and
//! dropped when the ledger's change feed says they changed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::uri::{Authority, Scheme};
use http::HeaderValue;
use parking_lot::RwLock;
use sluice_core::source_auth::AuthMethod;
use sluice_core::url_join::parse_sink_url;
use sluice_core::Channel;
use sluice_health::passive::PassiveHealth;
use sluice_store::{Change, Store, StoreError};
use uuid::Uuid;

use crate::config::ProxyConfig;
use crate::metrics::ChannelCounters;

/// A channel ready to proxy: parsed sink, resolved timeouts and its snapshot.
pub struct Route {
    /// The channel as loaded.
    pub channel: Channel,
    /// Snapshot of the channel's current `lock_version`.
    pub snapshot_id: Uuid,
    /// Sink scheme.
    pub scheme: Scheme,
    /// Sink host and port.
    pub authority: Authority,
    /// `host` header sent to the sink.
    pub host: HeaderValue,
    /// Sink URL path.
    pub base_path: String,
    /// Sink URL query, if any.
    pub base_query: Option<String>,
    /// Time allowed from dispatch (connecting included) to the response head.
    pub head_timeout: Duration,
    /// Idle allowance between body chunks.
    pub idle_timeout: Duration,
    /// Preview bytes kept per body.
    pub preview_bytes: usize,
    /// The largest request body forwarded (none: no limit).
    pub max_request_bytes: Option<u64>,
    /// Time allowed to open a connection to the sink (TCP and TLS).
    pub connect_timeout: Duration,
    /// Request counters of this channel.
    pub counters: ChannelCounters,
    /// This channel's passive-health cell, when passive health is on.
    pub passive: Option<PassiveHealth>,
    /// Source auth methods admitting callers (empty: public).
    pub auth_methods: Vec<AuthMethod>,
    /// The channel's project records metadata only: no headers, body previews, path, query or
    /// client address are stored.
    pub metadata_only: bool,
}

impl Route {
    /// Bytes of each body kept as its preview: none in a metadata-only project.
    pub fn kept_preview(&self) -> usize {
        if self.metadata_only {
            0
        } else {
            self.preview_bytes
        }
    }
}

/// Routes by channel id.
pub struct Routes {
    store: Store,
    cfg: Arc<ProxyConfig>,
    /// Hashed with foldhash: looked up for every request.
    map: RwLock<foldhash::HashMap<Uuid, Arc<Route>>>,
    generation: AtomicU64,
}

impl Routes {
    /// An empty table over `store`.
    pub fn new(store: Store, cfg: Arc<ProxyConfig>) -> Arc<Self> {
        let routes = Arc::new(Self {
            store,
            cfg,
            map: RwLock::new(foldhash::HashMap::default()),
            generation: AtomicU64::new(0),
        });
        routes.store.on_change(&routes, invalidate_on_change);
        routes
    }

    /// The route of channel `id` if it is loaded already.
    pub fn cached(&self, id: Uuid) -> Option<Arc<Route>> {
        self.map.read().get(&id).cloned()
    }

    /// The route of channel `id`, or `None` when it does not exist.
    pub async fn get(&self, id: Uuid) -> Result<Option<Arc<Route>>, StoreError> {
        if let Some(r) = self.cached(id) {
            return Ok(Some(r));
        }
        let generation = self.generation.load(Ordering::Acquire);
        let Some(channel) = self.store.get_channel(id).await? else {
            return Ok(None);
        };
        let snapshot = self.store.snapshot_for(&channel).await?;
        let methods = self
            .store
            .auth_methods_by_ids(&channel.source_auth_method_ids)
            .await?;
        let recording = self.store.project_recording(channel.project_id).await?;
        let metadata_only = recording == sluice_store::projects::Recording::Metadata;
        let Some(route) = self.build(channel, snapshot.id, methods, metadata_only) else {
            return Ok(None);
        };
        let route = Arc::new(route);
        let mut map = self.map.write();
        // A change that arrived while loading makes this copy stale: serve it, don't keep it.
        if self.generation.load(Ordering::Acquire) == generation {
            map.insert(id, route.clone());
        }
        Ok(Some(route))
    }

    fn build(
        &self,
        channel: Channel,
        snapshot_id: Uuid,
        auth_methods: Vec<AuthMethod>,
        metadata_only: bool,
    ) -> Option<Route> {
        let url = match parse_sink_url(&channel.sink_url) {
            Ok(u) => u,
            Err(why) => {
                tracing::error!(channel = %channel.id, why, "stored sink URL is unusable");
                return None;
            }
        };
        let authority: Authority = url[url::Position::BeforeHost..url::Position::AfterPort]
            .parse()
            .ok()?;
        let scheme = if url.scheme() == "https" {
            Scheme::HTTPS
        } else {
            Scheme::HTTP
        };
        let t = channel.timeouts;
        let connect = t
            .connect_ms
            .map_or(self.cfg.connect_timeout, Duration::from_millis);
        let response = t
            .response_ms
            .map_or(self.cfg.response_timeout, Duration::from_millis);
        let idle = t
            .idle_ms
            .map_or(self.cfg.idle_timeout, Duration::from_millis);
        Some(Route {
            snapshot_id,
            host: HeaderValue::from_str(authority.as_str()).ok()?,
            scheme,
            base_path: url.path().to_string(),
            base_query: url.query().map(str::to_string),
            head_timeout: response,
            idle_timeout: idle,
            preview_bytes: channel.preview_bytes as usize,
            max_request_bytes: channel.max_request_bytes,
            connect_timeout: connect,
            counters: ChannelCounters::new(channel.id),
            passive: self.cfg.health.as_ref().map(|b| b.handle(channel.id)),
            auth_methods,
            metadata_only,
            authority,
            channel,
        })
    }

    /// Forgets channel `id`.
    pub fn invalidate(&self, id: Uuid) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.map.write().remove(&id);
    }

    /// Forgets every channel that lists auth method `id`.
    pub fn invalidate_auth_method(&self, id: Uuid) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.map
            .write()
            .retain(|_, r| !r.channel.source_auth_method_ids.contains(&id));
    }

    /// Forgets every channel.
    pub fn clear(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.map.write().clear();
    }
}

/// Drops the routes a configuration change makes stale.
fn invalidate_on_change(routes: &Routes, change: Change) {
    match change {
        Change::Channel(id) => routes.invalidate(id),
        Change::AuthMethod(id) => routes.invalidate_auth_method(id),
        // A project's recording mode changed, which its channels' routes carry.
        Change::Project(_) => routes.clear(),
        Change::Credential(_) | Change::Settings | Change::Catalog => {}
        Change::Unknown => routes.clear(),
    }
}
