//! The sluice data plane: `/channels/{id}/...` routing, the body tap, the pooled upstream
//! connections and the recording of every exchange into the ledger.

pub mod auth_failures;
pub mod config;
pub mod exchange;
pub mod handler;
pub mod metrics;
pub mod reply;
pub mod routes;
pub mod service;
pub mod sink_credentials;
pub mod source_auth;
pub mod tap;
pub mod upstream;

use std::sync::Arc;

use axum::Router;
use sluice_store::{Ledger, Store};

pub use config::ProxyConfig;
use metrics::ProxyMetrics;
use routes::Routes;
use upstream::Upstream;

/// Everything the proxy path needs, shared by all requests.
pub struct Proxy {
    routes: Arc<Routes>,
    upstream: Arc<Upstream>,
    ledger: Ledger,
    cfg: Arc<ProxyConfig>,
    metrics: Arc<ProxyMetrics>,
    gate: Arc<source_auth::Gate>,
    sink_credentials: Arc<sink_credentials::SinkCredentials>,
    auth_failures: Arc<auth_failures::AuthFailures>,
}

impl Proxy {
    /// Builds the proxy over `store` (for channel lookups) and `ledger` (for records).
    pub fn new(
        store: Store,
        ledger: Ledger,
        cfg: ProxyConfig,
        tls: rustls::ClientConfig,
    ) -> Arc<Self> {
        let cfg = Arc::new(cfg);
        Arc::new(Self {
            gate: source_auth::Gate::new(&store),
            sink_credentials: sink_credentials::SinkCredentials::new(
                store.clone(),
                cfg.events.clone(),
                cfg.egress.clone(),
            ),
            auth_failures: auth_failures::AuthFailures::new(
                cfg.auth_failures,
                cfg.auth_failure_window,
                cfg.events.clone(),
            ),
            routes: Routes::new(store, cfg.clone()),
            upstream: Upstream::new(tls, cfg.egress.clone()),
            ledger,
            cfg,
            metrics: Arc::new(ProxyMetrics::default()),
        })
    }

    /// The listener's service: `/channels/...` proxied, the rest to `fallback`
    /// (the API and UI, or [`service::not_found_router`]).
    pub fn service(self: &Arc<Self>, fallback: Router) -> service::MakeConnService {
        service::MakeConnService::new(self.clone(), fallback)
    }
}
