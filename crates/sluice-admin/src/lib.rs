//! The sluice control plane: the JSON management API under `/api/v1`, liveness, readiness and
//! the Prometheus endpoint.

pub mod auth;
pub mod auth_methods;
pub mod channel_health;
pub mod channels;
pub mod config_history;
pub mod credentials;
pub mod error;
pub mod events;
pub mod history;
pub mod ops;
pub mod prometheus;
pub mod schemas;
pub mod wire;

use std::sync::Arc;
use std::time::Duration;

use axum::routing::{delete, get, post};
use axum::Router;
use sluice_health::Validator;
use sluice_store::{EventLog, Store};
use uuid::Uuid;

/// Shared state of every API handler.
#[derive(Clone)]
pub struct AdminState {
    /// The ledger.
    pub store: Store,
    /// Base URL of proxy links (`proxy_url`), without a trailing slash.
    pub public_url: Arc<str>,
    /// Project used when a channel is created without one.
    pub default_project: Uuid,
    /// Renders `/metrics`.
    pub metrics: prometheus::Metrics,
    /// The destination validation pipeline.
    pub validator: Validator,
    /// The event log (list, live stream).
    pub events: EventLog,
    /// A channel without traffic for longer than this is reported `stale`.
    pub stale_threshold: Duration,
    /// Credential schemas by name.
    pub schemas: Arc<dyn schemas::SchemaSource>,
}

impl AdminState {
    /// The project a new resource goes to: the one named (422 naming `project_id` if unknown)
    /// or the default project.
    pub async fn project_for(&self, requested: Option<Uuid>) -> error::ApiResult<Uuid> {
        match requested {
            Some(p) if self.store.project_exists(p).await? => Ok(p),
            Some(_) => Err(error::ApiError::field("project_id", "unknown project")),
            None => Ok(self.default_project),
        }
    }
}

/// The API, health and metrics routes.
pub fn router(state: AdminState) -> Router {
    let api = Router::new()
        .route("/channels", get(channels::list).post(channels::create))
        .route(
            "/channels/{id}",
            get(channels::get)
                .patch(channels::patch)
                .delete(channels::delete),
        )
        .route("/channels/{id}/requests", get(history::list))
        .route("/channels/{id}/stats", get(history::stats))
        .route(
            "/channels/{id}/snapshots",
            get(config_history::list_snapshots),
        )
        .route("/snapshots/{id}", get(config_history::get_snapshot))
        .route("/requests/{id}", get(history::get))
        .route("/audit", get(config_history::list_audit))
        .route(
            "/credentials",
            get(credentials::list).post(credentials::create),
        )
        .route(
            "/credentials/{id}",
            get(credentials::get)
                .patch(credentials::patch)
                .delete(credentials::delete),
        )
        .route(
            "/auth-methods",
            get(auth_methods::list).post(auth_methods::create),
        )
        .route("/auth-methods/{id}", delete(auth_methods::delete))
        .route("/validate", post(ops::validate))
        .route("/events", get(events::list_events))
        .route("/events/stream", get(events::stream_events))
        .fallback(|| async { error::ApiError::not_found("route") });
    Router::new()
        .nest("/api/v1", api)
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .with_state(state)
}
