//! Signing in and out, and the password change a first sign-in requires.

use std::collections::HashMap;
use std::net::SocketAddr;

use askama::Template;
use axum::extract::{ConnectInfo, Form, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use http::{header, StatusCode};

use super::assets;
use super::view::{check_form, csrf_of, render, safe_next, SignedIn, Submitted, UiResult};
use crate::auth::Caller;
use crate::{session, AdminState};

#[derive(Template)]
#[template(path = "sign_in.html")]
struct SignInPage {
    css: String,
    next: String,
    username: String,
    problem: String,
}

#[derive(Template)]
#[template(path = "password.html")]
struct PasswordPage {
    css: String,
    csrf: String,
    forced: bool,
    problem: String,
}

/// `GET /ui/sign-in`
pub async fn form(Query(q): Query<HashMap<String, String>>) -> UiResult<Response> {
    let page = SignInPage {
        css: assets::css_url(),
        next: safe_next(q.get("next").map(String::as_str)),
        username: String::new(),
        problem: String::new(),
    };
    Ok(render(&page)?.into_response())
}

/// `POST /ui/sign-in`: the same checks, throttling and audit as `POST /api/v1/session`.
pub async fn submit(
    State(state): State<AdminState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Form(f): Form<HashMap<String, String>>,
) -> UiResult<Response> {
    let field = |k: &str| f.get(k).cloned().unwrap_or_default();
    let next = safe_next(f.get("next").map(String::as_str));
    match session::open(&state, &field("username"), &field("password"), &peer).await {
        Ok((caller, secret)) => {
            let to = if caller
                .user
                .as_ref()
                .is_some_and(|u| u.must_change_password())
            {
                "/ui/password".to_string()
            } else {
                next
            };
            let mut response = Redirect::to(&to).into_response();
            response
                .headers_mut()
                .insert(header::SET_COOKIE, session::session_cookie(&state, &secret));
            Ok(response)
        }
        Err(e) => {
            let problem = if e.status() == StatusCode::UNAUTHORIZED {
                "Wrong username or password.".to_string()
            } else {
                e.message().to_string()
            };
            let page = SignInPage {
                css: assets::css_url(),
                next,
                username: field("username"),
                problem,
            };
            Ok((e.status(), render(&page)?).into_response())
        }
    }
}

/// `POST /ui/sign-out`
pub async fn sign_out(State(state): State<AdminState>, form: Submitted) -> UiResult<Response> {
    session::close(&state, &form.viewer.caller).await?;
    let mut response = Redirect::to("/ui/sign-in").into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, session::expired_cookie(&state));
    Ok(response)
}

/// The password form of `caller`, with `problem` (empty: none).
fn password_page(caller: &Caller, problem: String) -> PasswordPage {
    PasswordPage {
        css: assets::css_url(),
        csrf: csrf_of(caller),
        forced: caller
            .user
            .as_ref()
            .is_some_and(|u| u.must_change_password()),
        problem,
    }
}

/// `GET /ui/password`
pub async fn password_form(SignedIn(caller): SignedIn) -> UiResult<Response> {
    let page = password_page(&caller, String::new());
    Ok(render(&page)?.into_response())
}

/// `POST /ui/password`: as `POST /api/v1/session/password`.
pub async fn password_submit(
    State(state): State<AdminState>,
    SignedIn(caller): SignedIn,
    Form(fields): Form<Vec<(String, String)>>,
) -> UiResult<Response> {
    check_form(&caller, &fields)?;
    let field = |k: &str| {
        fields
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let problem = if field("new_password") != field("repeat_password") {
        Some("The new passwords differ.".to_string())
    } else {
        match session::set_own_password(
            &state,
            &caller,
            &field("current_password"),
            &field("new_password"),
        )
        .await
        {
            Ok(()) => None,
            Err(e) => Some(match e.field_problems().first() {
                Some((name, why)) => format!("{}: {why}.", name.replace('_', " ")),
                None => e.message().to_string(),
            }),
        }
    };
    match problem {
        None => Ok(Redirect::to("/ui/").into_response()),
        Some(problem) => {
            let page = password_page(&caller, problem);
            Ok((StatusCode::UNPROCESSABLE_ENTITY, render(&page)?).into_response())
        }
    }
}
