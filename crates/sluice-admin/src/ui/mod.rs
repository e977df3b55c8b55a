//! The web UI: server-rendered pages under `/ui`, over the same store and the same access rule
//! as the API. Page handlers call the API's use-case functions (`session::open`,
//! `channels::load`, `Caller::allow`, …) and render askama templates; no rule is written twice.

mod admin;
mod assets;
mod audit;
mod auth_methods;
mod catalog;
mod channel_form;
mod channels;
mod charts;
mod credentials;
mod dashboard;
mod events;
mod format;
mod history;
mod sign_in;
mod snapshot;
mod view;

use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::{Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use http::{header, HeaderValue};

use crate::AdminState;

/// What every page may load: only its own origin; no inline script or style, no framing.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; \
     frame-ancestors 'none'; base-uri 'none'";

/// The UI's routes (and `/`, which leads to it).
pub fn routes() -> Router<AdminState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui/") }))
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route("/ui/", get(dashboard::page))
        .route("/ui/sign-in", get(sign_in::form).post(sign_in::submit))
        .route("/ui/sign-out", post(sign_in::sign_out))
        .route(
            "/ui/password",
            get(sign_in::password_form).post(sign_in::password_submit),
        )
        .route("/ui/channels", get(channels::index))
        .route(
            "/ui/channels/new",
            get(channel_form::new_form).post(channel_form::create),
        )
        .route(
            "/ui/channels/{id}/edit",
            get(channel_form::edit_form).post(channel_form::update),
        )
        .route("/ui/channels/{id}/delete", post(channel_form::delete))
        .route("/ui/channels/{id}/enabled", post(channels::set_enabled))
        .route("/ui/channels/{id}", get(history::page))
        .route("/ui/channels/{id}/live", get(history::live))
        .route("/ui/requests/{id}", get(history::detail))
        .route("/ui/requests/{id}/wipe", post(history::wipe))
        .route("/ui/snapshots/{id}", get(snapshot::page))
        .route("/ui/credentials", get(credentials::index))
        .route(
            "/ui/credentials/new",
            get(credentials::new_form).post(credentials::create),
        )
        .route(
            "/ui/credentials/{id}/edit",
            get(credentials::edit_form).post(credentials::update),
        )
        .route("/ui/credentials/{id}/delete", post(credentials::delete))
        .route(
            "/ui/auth-methods",
            get(auth_methods::index).post(auth_methods::create),
        )
        .route("/ui/auth-methods/{id}/delete", post(auth_methods::delete))
        .route("/ui/events", get(events::page))
        .route("/ui/audit", get(audit::page))
        .route(
            "/ui/admin/users",
            get(admin::users).post(admin::create_user),
        )
        .route("/ui/admin/users/{id}", post(admin::change_user))
        .route(
            "/ui/admin/settings",
            get(admin::settings_form).post(admin::save_settings),
        )
        .route(
            "/ui/admin/projects",
            get(admin::projects).post(admin::create_project),
        )
        .route("/ui/admin/catalog", get(catalog::show))
        .route("/ui/admin/catalog/refresh", post(catalog::refresh))
        .route(
            "/ui/admin/projects/{id}/delete",
            post(admin::delete_project),
        )
        .route(
            "/ui/projects/{id}/members",
            get(admin::members).post(admin::change_members),
        )
        .route("/ui/projects/{id}/recording", post(admin::change_recording))
        .route("/ui/assets/{version}/{file}", get(assets::serve))
        .route("/ui/{*rest}", get(view::not_found))
        .layer(middleware::from_fn(security_headers))
}

/// Adds the headers that keep pages from being framed, leaking their address or loading
/// anything from elsewhere.
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}
