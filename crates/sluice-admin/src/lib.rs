//! The sluice control plane: the JSON management API under `/api/v1`, the web UI under `/ui`,
//! liveness, readiness and the Prometheus endpoint.

pub mod accounts;
pub mod auth;
pub mod auth_methods;
pub mod catalog;
pub mod channel_health;
pub mod channels;
pub mod config_history;
pub mod credentials;
pub mod error;
pub mod events;
pub mod export;
pub mod history;
pub mod ops;
pub mod projects;
pub mod prometheus;
pub mod schemas;
pub mod session;
pub mod settings;
pub mod throttle;
pub mod tokens;
pub mod ui;
pub mod users;
pub mod wire;

use std::sync::Arc;

use axum::routing::{delete, get, patch, post, put, MethodRouter};
use axum::Router;
use http::Method;
use sluice_health::Validator;
use sluice_store::{EventLog, SessionLimits, Store};
use uuid::Uuid;

/// How sign-in sessions behave.
#[derive(Debug, Clone, Copy)]
pub struct AuthSettings {
    /// Idle and absolute expiry.
    pub session_limits: SessionLimits,
    /// Mark the cookie `Secure` (the public URL is https).
    pub secure_cookie: bool,
    /// `/metrics` answers anyone (else only callers who may read every project: it names
    /// every channel).
    pub public_metrics: bool,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            session_limits: SessionLimits {
                idle_us: 12 * 3600 * 1_000_000,
                absolute_us: 7 * 86_400 * 1_000_000,
            },
            secure_cookie: false,
            public_metrics: false,
        }
    }
}

/// Shared state of every API handler.
#[derive(Clone)]
pub struct AdminState {
    /// The ledger.
    pub store: Store,
    /// Base URL of proxy links (`proxy_url`), without a trailing slash.
    pub public_url: Arc<str>,
    /// Where callers reach this sluice: a sink URL naming it is refused (a loop).
    pub own_addresses: Arc<sluice_core::hops::OwnAddresses>,
    /// Project used when a channel is created without one.
    pub default_project: Uuid,
    /// Renders `/metrics`.
    pub metrics: prometheus::Metrics,
    /// The destination validation pipeline.
    pub validator: Validator,
    /// The event log (list, live stream).
    pub events: EventLog,
    /// The command line's instance settings, which saved ones override.
    pub setting_defaults: settings::SettingDefaults,
    /// The adaptor catalogue: credential types, their schemas and icons.
    pub catalog: Arc<catalog::Catalog>,
    /// Session settings.
    pub auth: AuthSettings,
    /// Failed sign-ins remembered for throttling.
    pub throttle: throttle::SignInThrottle,
}

impl AdminState {
    /// The project a new resource goes to — the one named, or the default project — once the
    /// caller is known to hold `right` there (404 for a project it cannot see; 422 naming
    /// `project_id` for one that does not exist).
    pub async fn project_for(
        &self,
        caller: &auth::Caller,
        right: sluice_core::access::Right,
        requested: Option<Uuid>,
    ) -> error::ApiResult<Uuid> {
        let project = requested.unwrap_or(self.default_project);
        caller.allow(right, Some(project), "project")?;
        if requested.is_some() && !self.store.project_exists(project).await? {
            return Err(error::ApiError::field("project_id", "unknown project"));
        }
        Ok(project)
    }
}

/// Every `/api/v1` route: its method, its path, and its handler. The router is built from this
/// list, and the access test walks it, so a route cannot be added without a row there.
fn api_routes() -> Vec<(Method, &'static str, MethodRouter<AdminState>)> {
    vec![
        (Method::GET, "/session", get(session::get)),
        (Method::POST, "/session", post(session::sign_in)),
        (Method::DELETE, "/session", delete(session::sign_out)),
        (
            Method::POST,
            "/session/password",
            post(session::change_password),
        ),
        (Method::GET, "/users", get(users::list)),
        (Method::POST, "/users", post(users::create)),
        (Method::PATCH, "/users/{id}", patch(users::patch)),
        (Method::GET, "/tokens", get(tokens::list)),
        (Method::POST, "/tokens", post(tokens::create)),
        (Method::DELETE, "/tokens/{id}", delete(tokens::delete)),
        (Method::GET, "/projects", get(projects::list)),
        (Method::POST, "/projects", post(projects::create)),
        (Method::GET, "/projects/{id}", get(projects::get)),
        (Method::PATCH, "/projects/{id}", patch(projects::patch)),
        (Method::DELETE, "/projects/{id}", delete(projects::delete)),
        (
            Method::GET,
            "/projects/{id}/members",
            get(projects::list_members),
        ),
        (
            Method::GET,
            "/projects/{id}/members/{user_id}",
            get(projects::get_member),
        ),
        (
            Method::PUT,
            "/projects/{id}/members/{user_id}",
            put(projects::put_member),
        ),
        (
            Method::DELETE,
            "/projects/{id}/members/{user_id}",
            delete(projects::delete_member),
        ),
        (Method::GET, "/channels", get(channels::list)),
        (Method::POST, "/channels", post(channels::create)),
        (Method::GET, "/channels/{id}", get(channels::get)),
        (Method::PATCH, "/channels/{id}", patch(channels::patch)),
        (Method::DELETE, "/channels/{id}", delete(channels::delete)),
        (Method::GET, "/channels/{id}/requests", get(history::list)),
        (Method::GET, "/channels/{id}/stats", get(history::stats)),
        (
            Method::GET,
            "/channels/{id}/snapshots",
            get(config_history::list_snapshots),
        ),
        (
            Method::GET,
            "/snapshots/{id}",
            get(config_history::get_snapshot),
        ),
        (Method::GET, "/requests/{id}", get(history::get)),
        (Method::GET, "/requests/{id}/export", get(export::one)),
        (Method::POST, "/requests/{id}/wipe", post(history::wipe)),
        (
            Method::GET,
            "/requests/{id}/body/{which}",
            get(export::body),
        ),
        (
            Method::GET,
            "/channels/{id}/requests/export",
            get(export::history),
        ),
        (Method::GET, "/audit", get(config_history::list_audit)),
        (Method::GET, "/credentials", get(credentials::list)),
        (Method::POST, "/credentials", post(credentials::create)),
        (Method::GET, "/credentials/{id}", get(credentials::get)),
        (
            Method::PATCH,
            "/credentials/{id}",
            patch(credentials::patch),
        ),
        (
            Method::DELETE,
            "/credentials/{id}",
            delete(credentials::delete),
        ),
        (Method::GET, "/auth-methods", get(auth_methods::list)),
        (Method::POST, "/auth-methods", post(auth_methods::create)),
        (
            Method::DELETE,
            "/auth-methods/{id}",
            delete(auth_methods::delete),
        ),
        (Method::GET, "/catalog", get(catalog::api::status)),
        (Method::GET, "/catalog/adaptors", get(catalog::api::list)),
        (
            Method::GET,
            "/catalog/adaptors/{name}",
            get(catalog::api::get),
        ),
        (
            Method::GET,
            "/catalog/adaptors/{name}/schema",
            get(catalog::api::schema),
        ),
        (
            Method::POST,
            "/catalog/refresh",
            post(catalog::api::refresh),
        ),
        (Method::GET, "/settings", get(settings::get)),
        (Method::PATCH, "/settings", patch(settings::patch)),
        (Method::POST, "/validate", post(ops::validate)),
        (Method::GET, "/events", get(events::list_events)),
        (Method::GET, "/events/stream", get(events::stream_events)),
    ]
}

/// Every `/api/v1` route as (method, path with `{param}`s), in the router's order.
pub fn api_route_list() -> Vec<(Method, &'static str)> {
    api_routes().into_iter().map(|(m, p, _)| (m, p)).collect()
}

/// The API, UI, health and metrics routes.
pub fn router(state: AdminState) -> Router {
    let api = api_routes()
        .into_iter()
        .fold(Router::new(), |r, (_, path, handler)| {
            r.route(path, handler)
        })
        .fallback(|| async { error::ApiError::not_found("route") })
        .layer(axum::middleware::map_response(error::json_rejections));
    Router::new()
        .nest("/api/v1", api)
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/adaptors/icons/{name}/{file}", get(catalog::api::icon))
        .merge(ui::routes())
        .with_state(state)
}
