//! What every page stands on: the signed-in viewer, the layout around each page, the CSRF check
//! of every form, and the answer to a refusal (a redirect to sign in, or an error page).

use askama::Template;
use axum::extract::{Form, FromRequest, FromRequestParts, Request};
use axum::response::{Html, IntoResponse, Redirect, Response};
use http::request::Parts;
use http::{StatusCode, Uri};
use sluice_core::access::{Right, Role};
use uuid::Uuid;

use super::assets;
use crate::auth::{self, Caller, Credentials};
use crate::error::ApiError;
use crate::{session, AdminState};

/// Name of the hidden form field that carries the CSRF token.
pub const CSRF_FIELD: &str = "csrf_token";

/// A project the viewer may read, with their role there.
#[derive(Debug, Clone)]
pub struct ProjectRole {
    /// The project.
    pub id: Uuid,
    /// Its name.
    pub name: String,
    /// The viewer's role there.
    pub role: Role,
}

/// The signed-in person looking at a page.
pub struct Viewer {
    /// Their rights, checked by the same rule as the API's.
    pub caller: Caller,
    /// The CSRF token every form of the page carries.
    pub csrf: String,
    /// The projects they may read, by name.
    pub projects: Vec<ProjectRole>,
}

impl Viewer {
    /// Whether the viewer holds `right` on `project`.
    pub fn may(&self, right: Right, project: Uuid) -> bool {
        self.caller.principal.check(right, Some(project)).is_ok()
    }

    /// The project a page shows: the one asked for if the viewer may read it, else their first.
    pub fn pick_project(&self, requested: Option<&str>) -> Option<&ProjectRole> {
        let wanted = requested.and_then(|r| Uuid::parse_str(r).ok());
        wanted
            .and_then(|id| self.projects.iter().find(|p| p.id == id))
            .or_else(|| self.projects.first())
    }

    /// The project of a page's `project` parameter (see [`Viewer::pick_project`]); 404 when the
    /// viewer belongs to no project.
    pub fn project_in(&self, q: &std::collections::HashMap<String, String>) -> UiResult<Uuid> {
        Ok(self
            .pick_project(q.get("project").map(String::as_str))
            .map(|p| p.id)
            .ok_or_else(|| ApiError::not_found("project"))?)
    }

    /// The frame of a page in `section`, with `project` selected in the switcher.
    pub fn layout(
        &self,
        title: impl Into<String>,
        section: &'static str,
        project: Option<Uuid>,
    ) -> Layout {
        Layout {
            title: title.into(),
            section,
            switch_to: match section {
                "dashboard" => "/ui/",
                "credentials" => "/ui/credentials",
                "auth-methods" => "/ui/auth-methods",
                _ => "/ui/channels",
            },
            css: assets::css_url(),
            js: assets::js_url(),
            csrf: self.csrf.clone(),
            username: self
                .caller
                .user
                .as_ref()
                .map(|u| u.username.clone())
                .unwrap_or_default(),
            project: project.map(|p| p.to_string()).unwrap_or_default(),
            superuser: self.caller.is_superuser(),
            project_admin: project.is_some_and(|p| self.may(Right::ManageProject, p)),
            role: if self.caller.is_superuser() {
                "superuser".into()
            } else {
                self.projects
                    .iter()
                    .find(|p| Some(p.id) == project)
                    .map(|p| p.role.as_str().to_string())
                    .unwrap_or_default()
            },
            projects: self
                .projects
                .iter()
                .map(|p| Choice {
                    value: p.id.to_string(),
                    label: p.name.clone(),
                    selected: Some(p.id) == project,
                })
                .collect(),
        }
    }
}

/// An option of a `<select>`.
pub struct Choice {
    /// Submitted value.
    pub value: String,
    /// Shown text.
    pub label: String,
    /// Whether it is the current one.
    pub selected: bool,
}

/// The frame every signed-in page shares: header, navigation, project switcher, sign-out.
pub struct Layout {
    /// The page's title.
    pub title: String,
    /// Which navigation entry is current.
    pub section: &'static str,
    /// Where the project switcher leads: the same section in the chosen project.
    pub switch_to: &'static str,
    /// Stylesheet address.
    pub css: String,
    /// Script address.
    pub js: String,
    /// CSRF token for the forms of the page.
    pub csrf: String,
    /// Who is signed in.
    pub username: String,
    /// The selected project (empty: none).
    pub project: String,
    /// The viewer's role there.
    pub role: String,
    /// Whether the viewer is a superuser (the administration pages).
    pub superuser: bool,
    /// Whether the viewer administers the selected project (its members page).
    pub project_admin: bool,
    /// The project switcher's options.
    pub projects: Vec<Choice>,
}

/// Why a page is not shown.
pub enum UiError {
    /// Not signed in: to the sign-in page, then back to this address.
    SignIn(String),
    /// The password must be changed first.
    ChangePassword,
    /// Refused or failed, as the API would answer it.
    Api(ApiError),
}

impl From<ApiError> for UiError {
    fn from(e: ApiError) -> Self {
        UiError::Api(e)
    }
}

impl From<sluice_store::StoreError> for UiError {
    fn from(e: sluice_store::StoreError) -> Self {
        UiError::Api(e.into())
    }
}

/// Result of a page handler.
pub type UiResult<T> = Result<T, UiError>;

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    css: String,
    status: u16,
    reason: String,
    message: String,
}

/// An error page with `status` and `message`.
pub fn error_page(status: StatusCode, message: &str) -> Response {
    let page = ErrorPage {
        css: assets::css_url(),
        status: status.as_u16(),
        reason: status.canonical_reason().unwrap_or("Error").to_string(),
        message: message.to_string(),
    };
    match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(_) => status.into_response(),
    }
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        match self {
            UiError::SignIn(next) => {
                let next: String = url::form_urlencoded::byte_serialize(next.as_bytes()).collect();
                Redirect::to(&format!("/ui/sign-in?next={next}")).into_response()
            }
            UiError::ChangePassword => Redirect::to("/ui/password").into_response(),
            UiError::Api(e) if e.message() == "stale lock_version" => error_page(
                e.status(),
                "Changed by someone else since you opened the page — reload to see the current version.",
            ),
            UiError::Api(e) => error_page(e.status(), e.message()),
        }
    }
}

/// Whether a failure is for the person to fix on the same form: invalid input (422) or a
/// conflict (409). Other failures become an error page.
pub fn is_refusal(e: &ApiError) -> bool {
    e.status() == StatusCode::UNPROCESSABLE_ENTITY || e.status() == StatusCode::CONFLICT
}

/// A failure in one line: the first field's problem (`field: why`), else the failure's text.
pub fn problem_text(e: &ApiError) -> String {
    match e.field_problems().first() {
        Some((field, why)) => format!("{field}: {why}"),
        None => e.message().to_string(),
    }
}

/// Renders a page template.
pub fn render(t: &impl Template) -> UiResult<Html<String>> {
    t.render().map(Html).map_err(|e| {
        tracing::error!(error = %e, "page template failed");
        UiError::Api(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the page could not be drawn",
        ))
    })
}

/// `404` for an address under `/ui` that names no page.
pub async fn not_found() -> Response {
    error_page(StatusCode::NOT_FOUND, "There is no page at this address.")
}

/// Where to return after signing in: only pages of this UI, never another site.
pub fn safe_next(next: Option<&str>) -> String {
    next.filter(|n| n.starts_with("/ui/") && !n.starts_with("//"))
        .unwrap_or("/ui/")
        .to_string()
}

fn here(uri: &Uri) -> String {
    uri.path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/ui/".into())
}

/// A signed-in person who may still have to change their password (only the password page
/// takes them).
pub struct SignedIn(pub Caller);

impl FromRequestParts<AdminState> for SignedIn {
    type Rejection = UiError;

    async fn from_request_parts(parts: &mut Parts, state: &AdminState) -> UiResult<Self> {
        let Some(secret) = auth::session_cookie(parts) else {
            return Err(UiError::SignIn(here(&parts.uri)));
        };
        match auth::signed_in(state, secret).await {
            Ok(caller) => Ok(SignedIn(caller)),
            Err(e) if e.status() == StatusCode::UNAUTHORIZED => {
                Err(UiError::SignIn(here(&parts.uri)))
            }
            Err(e) => Err(e.into()),
        }
    }
}

impl FromRequestParts<AdminState> for Viewer {
    type Rejection = UiError;

    async fn from_request_parts(parts: &mut Parts, state: &AdminState) -> UiResult<Self> {
        let SignedIn(caller) = SignedIn::from_request_parts(parts, state).await?;
        if caller
            .user
            .as_ref()
            .is_some_and(|u| u.must_change_password())
        {
            return Err(UiError::ChangePassword);
        }
        let projects = session::projects_of(state, &caller)
            .await?
            .into_iter()
            .map(|(p, role)| ProjectRole {
                id: p.id,
                name: p.name,
                role,
            })
            .collect();
        Ok(Viewer {
            csrf: csrf_of(&caller),
            caller,
            projects,
        })
    }
}

/// The CSRF token of a session caller.
pub fn csrf_of(caller: &Caller) -> String {
    match &caller.credentials {
        Credentials::Session { secret } => auth::csrf_token(secret),
        Credentials::Token(_) => String::new(),
    }
}

/// Refuses a form whose CSRF field is not the token of the caller's session.
pub fn check_form(caller: &Caller, fields: &[(String, String)]) -> UiResult<()> {
    let sent = fields
        .iter()
        .find(|(k, _)| k == CSRF_FIELD)
        .map(|(_, v)| v.as_str())
        .unwrap_or_default();
    let Credentials::Session { secret } = &caller.credentials else {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "sign in to use this form").into());
    };
    auth::check_csrf(secret, sent)?;
    Ok(())
}

/// A form posted by a signed-in viewer, accepted only with the session's CSRF token.
pub struct Submitted {
    /// Who posted it.
    pub viewer: Viewer,
    /// Its fields, in order (a name may repeat).
    pub fields: Vec<(String, String)>,
}

impl Submitted {
    /// The first value of field `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl FromRequest<AdminState> for Submitted {
    type Rejection = UiError;

    async fn from_request(req: Request, state: &AdminState) -> UiResult<Self> {
        let (mut parts, body) = req.into_parts();
        let viewer = Viewer::from_request_parts(&mut parts, state).await?;
        let req = Request::from_parts(parts, body);
        let Form(fields): Form<Vec<(String, String)>> = Form::from_request(req, state)
            .await
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
        check_form(&viewer.caller, &fields)?;
        Ok(Submitted { viewer, fields })
    }
}
