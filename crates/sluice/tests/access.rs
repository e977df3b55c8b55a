//! Who may call what: every `/api/v1` route (the router's own list, so a new route without a
//! row here fails) for every kind of caller — nobody, a viewer, an editor and an admin of
//! project P, a member of another project only, a superuser — each with a bearer token and with
//! a session cookie, on SQLite and on PostgreSQL. Each cell's status is asserted, and list
//! answers to the outsider must not mention anything of P.

mod common;

use std::collections::HashMap;

use common::postgres::TestDatabase;
use common::{upstream, Sluice, TempDir};
use reqwest::Method;
use serde_json::{json, Value};

const PASSWORD: &str = "correct-horse-1";
const PASSWORD_2: &str = "correct-horse-2";

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Need {
    /// Anyone (signing in).
    Nobody,
    /// Any authenticated caller.
    Anyone,
    /// The superuser.
    Superuser,
    /// A role in P.
    Read,
    Edit,
    Manage,
    /// The superuser, on P (the outsider gets 404, P's members 403).
    SuperuserOnP,
    /// The editor role in some project.
    EditorSomewhere,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Who {
    Nobody,
    Viewer,
    Editor,
    Admin,
    Outsider,
    Superuser,
}

impl Who {
    fn username(self) -> &'static str {
        match self {
            Who::Nobody => "",
            Who::Viewer => "viewer",
            Who::Editor => "editor",
            Who::Admin => "admin-p",
            Who::Outsider => "outsider",
            Who::Superuser => "root",
        }
    }
}

/// The status class a caller must get.
fn expected(need: Need, who: Who) -> u16 {
    use Who::*;
    if who == Nobody {
        return if need == Need::Nobody { 200 } else { 401 };
    }
    let role = match who {
        Viewer => 1,
        Editor => 2,
        Admin | Superuser => 3,
        Nobody | Outsider => 0,
    };
    match need {
        Need::Nobody | Need::Anyone => 200,
        Need::Superuser => {
            if who == Superuser {
                200
            } else {
                403
            }
        }
        Need::SuperuserOnP => match who {
            Superuser => 200,
            Outsider => 404,
            _ => 403,
        },
        Need::EditorSomewhere => {
            if who == Viewer {
                403
            } else {
                200
            }
        }
        Need::Read | Need::Edit | Need::Manage => {
            let needed = match need {
                Need::Read => 1,
                Need::Edit => 2,
                _ => 3,
            };
            if who == Outsider {
                404
            } else if role >= needed {
                200
            } else {
                403
            }
        }
    }
}

/// How a caller authenticates.
#[derive(Debug, Clone)]
enum Auth {
    None,
    Token(String),
    Cookie { session: String, csrf: String },
}

struct World {
    s: Sluice,
    p: String,
    channel: Value,
    credential: String,
    request: String,
    snapshot: String,
    users: HashMap<&'static str, String>,
    /// Everything of P an outsider must never see.
    markers: Vec<String>,
    sink: String,
}

async fn call(
    s: &Sluice,
    auth: &Auth,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut rb = s.http().request(method, s.url(&format!("/api/v1{path}")));
    match auth {
        Auth::None => {}
        Auth::Token(t) => rb = rb.bearer_auth(t),
        Auth::Cookie { session, csrf } => {
            rb = rb
                .header("cookie", format!("sluice_session={session}"))
                .header("x-csrf-token", csrf)
        }
    }
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let res = rb.send().await.unwrap();
    let status = res.status().as_u16();
    if path.starts_with("/events/stream") && (200..300).contains(&status) {
        return (status, Value::Null);
    }
    let text = res.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Signs `username` in; returns the cookie's session secret and the CSRF token.
async fn sign_in(s: &Sluice, username: &str, password: &str) -> Auth {
    let res = s
        .http()
        .post(s.url("/api/v1/session"))
        .json(&json!({ "username": username, "password": password }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "sign in {username}");
    let cookie = res.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    let session = cookie
        .split(';')
        .next()
        .unwrap()
        .strip_prefix("sluice_session=")
        .unwrap()
        .to_string();
    let body: Value = res.json().await.unwrap();
    Auth::Cookie {
        session,
        csrf: body["csrf_token"].as_str().unwrap().to_string(),
    }
}

async fn su(s: &Sluice, method: Method, path: &str, body: Value) -> Value {
    let (st, b) = call(
        s,
        &Auth::Token(s.token.clone()),
        method.clone(),
        path,
        Some(body),
    )
    .await;
    assert!((200..300).contains(&st), "{method} {path}: {st} {b}");
    b
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

async fn world(database_url: Option<&str>) -> World {
    let up = upstream::start().await;
    let sink = up.url("/");
    std::mem::forget(up);
    // A local adaptor catalogue, so its reads answer.
    let adaptors =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/adaptors");
    let adaptors = [adaptors, "/work/shared/fixtures/adaptors".into()]
        .into_iter()
        .find(|p| p.join("README.md").exists())
        .expect("adaptor fixtures not found beside the repository nor in /work/shared");
    let catalog = ["--catalog-dir", adaptors.to_str().unwrap()];
    let s = Sluice::start_on(std::sync::Arc::new(TempDir::new()), database_url, &catalog).await;
    let p = su(&s, Method::POST, "/projects", json!({ "name": "p" })).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let q = su(&s, Method::POST, "/projects", json!({ "name": "q" })).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut users = HashMap::new();
    for who in [
        Who::Viewer,
        Who::Editor,
        Who::Admin,
        Who::Outsider,
        Who::Superuser,
    ] {
        let body = json!({
            "username": who.username(),
            "password": PASSWORD,
            "superuser": who == Who::Superuser,
        });
        let u = su(&s, Method::POST, "/users", body).await;
        users.insert(who.username(), u["id"].as_str().unwrap().to_string());
    }
    for (who, project, role) in [
        (Who::Viewer, &p, "viewer"),
        (Who::Editor, &p, "editor"),
        (Who::Admin, &p, "admin"),
        (Who::Outsider, &q, "admin"),
    ] {
        let path = format!("/projects/{project}/members/{}", users[who.username()]);
        su(&s, Method::PUT, &path, json!({ "role": role })).await;
    }
    let method = su(
        &s,
        Method::POST,
        "/auth-methods",
        json!({ "project_id": p, "name": "callers", "type": "api_key" }),
    )
    .await;
    let credential = su(
        &s,
        Method::POST,
        "/credentials",
        json!({ "project_id": p, "name": "sink", "schema": "http", "body": { "access_token": "t0ken-of-p" } }),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let channel = su(
        &s,
        Method::POST,
        "/channels",
        json!({ "project_id": p, "name": "orders", "sink_url": sink }),
    )
    .await;
    // One recorded request, and one refused caller (an `auth` event of P's channel).
    let (status, rid) = s.post_with_id(&channel, "/x").await;
    assert_eq!(status, 200);
    let detail = s.finished(&channel, &rid).await;
    let guarded = su(
        &s,
        Method::POST,
        "/channels",
        json!({ "project_id": p, "name": "guarded", "sink_url": sink,
                "source_auth_method_ids": [method["id"]] }),
    )
    .await;
    let res = s
        .http()
        .get(s.proxy_url(&guarded, "/"))
        .header("x-api-key", "wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let markers = vec![
        p.clone(),
        channel["id"].as_str().unwrap().to_string(),
        guarded["id"].as_str().unwrap().to_string(),
        credential.clone(),
        method["id"].as_str().unwrap().to_string(),
        detail["id"].as_str().unwrap().to_string(),
    ];
    World {
        p,
        credential,
        request: detail["id"].as_str().unwrap().to_string(),
        snapshot: detail["snapshot_id"].as_str().unwrap().to_string(),
        channel,
        users,
        markers,
        sink,
        s,
    }
}

/// A channel, credential, auth method or user made for one cell (a cell may delete it).
async fn fresh(w: &World, kind: &str) -> String {
    let s = &w.s;
    let body = match kind {
        "channel" => json!({ "project_id": w.p, "name": unique("c"), "sink_url": w.sink }),
        "credential" => json!({ "project_id": w.p, "name": unique("cr"), "schema": "http",
                                "body": { "access_token": "x" } }),
        "auth-method" => json!({ "project_id": w.p, "name": unique("m"), "type": "api_key" }),
        "user" => json!({ "username": unique("u"), "password": PASSWORD }),
        _ => unreachable!(),
    };
    let path = match kind {
        "auth-method" => "/auth-methods".to_string(),
        k => format!("/{k}s"),
    };
    su(s, Method::POST, &path, body).await["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// What a route needs, and the path and body of one call to it by `who`.
async fn cell(w: &World, method: &Method, route: &str, who: Who) -> (Need, String, Option<Value>) {
    let ch = w.channel["id"].as_str().unwrap();
    let me = w.users.get(who.username()).cloned().unwrap_or_default();
    let viewer = &w.users["viewer"];
    let p = &w.p;
    let m = method.as_str();
    let fill = |path: &str, id: &str| path.replace("{id}", id);
    match (m, route) {
        ("POST", "/session") => (
            Need::Nobody,
            route.into(),
            Some(json!({ "username": "viewer", "password": PASSWORD })),
        ),
        ("GET", "/session") | ("DELETE", "/session") => (Need::Anyone, route.into(), None),
        ("POST", "/session/password") => (
            Need::Anyone,
            route.into(),
            Some(json!({ "current_password": PASSWORD, "new_password": PASSWORD_2 })),
        ),
        ("GET", "/users") => (Need::Superuser, route.into(), None),
        ("POST", "/users") => (
            Need::Superuser,
            route.into(),
            Some(json!({ "username": unique("new") })),
        ),
        ("PATCH", "/users/{id}") => (
            Need::Superuser,
            fill(route, &fresh(w, "user").await),
            Some(json!({ "display_name": "Someone" })),
        ),
        ("GET", "/tokens") => (Need::Anyone, route.into(), None),
        ("POST", "/tokens") => (
            Need::Anyone,
            route.into(),
            Some(json!({ "name": unique("t") })),
        ),
        ("DELETE", "/tokens/{id}") => {
            let owner = if me.is_empty() { viewer.clone() } else { me };
            let t = su(
                &w.s,
                Method::POST,
                "/tokens",
                json!({ "name": unique("t"), "user_id": owner }),
            )
            .await;
            (Need::Anyone, fill(route, t["id"].as_str().unwrap()), None)
        }
        ("GET", "/projects") => (Need::Anyone, route.into(), None),
        ("POST", "/projects") => (
            Need::Superuser,
            route.into(),
            Some(json!({ "name": unique("p") })),
        ),
        ("GET", "/projects/{id}") => (Need::Read, fill(route, p), None),
        ("PATCH", "/projects/{id}") => (
            Need::SuperuserOnP,
            fill(route, p),
            Some(json!({ "name": unique("p") })),
        ),
        ("DELETE", "/projects/{id}") => {
            // An empty project where P's members hold their P roles.
            let x = su(
                &w.s,
                Method::POST,
                "/projects",
                json!({ "name": unique("x") }),
            )
            .await;
            let x = x["id"].as_str().unwrap().to_string();
            for (name, role) in [
                ("viewer", "viewer"),
                ("editor", "editor"),
                ("admin-p", "admin"),
            ] {
                let path = format!("/projects/{x}/members/{}", w.users[name]);
                su(&w.s, Method::PUT, &path, json!({ "role": role })).await;
            }
            (Need::SuperuserOnP, fill(route, &x), None)
        }
        ("GET", "/projects/{id}/members") => (Need::Read, fill(route, p), None),
        ("GET", "/projects/{id}/members/{user_id}") => (
            Need::Read,
            fill(route, p).replace("{user_id}", viewer),
            None,
        ),
        ("PUT", "/projects/{id}/members/{user_id}") => (
            Need::Manage,
            fill(route, p).replace("{user_id}", &fresh(w, "user").await),
            Some(json!({ "role": "viewer" })),
        ),
        ("DELETE", "/projects/{id}/members/{user_id}") => {
            let u = fresh(w, "user").await;
            su(
                &w.s,
                Method::PUT,
                &format!("/projects/{p}/members/{u}"),
                json!({ "role": "viewer" }),
            )
            .await;
            (Need::Manage, fill(route, p).replace("{user_id}", &u), None)
        }
        ("GET", "/channels") => (Need::Anyone, route.into(), None),
        ("POST", "/channels") => (
            Need::Edit,
            route.into(),
            Some(json!({ "project_id": p, "name": unique("c"), "sink_url": w.sink })),
        ),
        ("GET", "/channels/{id}") => (Need::Read, fill(route, ch), None),
        ("PATCH", "/channels/{id}") => (
            Need::Edit,
            fill(route, &fresh(w, "channel").await),
            Some(json!({ "lock_version": 1, "enabled": false })),
        ),
        ("DELETE", "/channels/{id}") => (Need::Edit, fill(route, &fresh(w, "channel").await), None),
        ("GET", "/channels/{id}/requests")
        | ("GET", "/channels/{id}/stats")
        | ("GET", "/channels/{id}/snapshots") => (Need::Read, fill(route, ch), None),
        ("GET", "/snapshots/{id}") => (Need::Read, fill(route, &w.snapshot), None),
        ("GET", "/requests/{id}") => (Need::Read, fill(route, &w.request), None),
        ("GET", "/requests/{id}/body/{which}") => (
            Need::Read,
            fill(route, &w.request).replace("{which}", "response"),
            None,
        ),
        // Wiping again changes nothing and answers the same: the shared request will do.
        ("POST", "/requests/{id}/wipe") => (Need::Manage, fill(route, &w.request), None),
        ("GET", "/requests/{id}/export") => (
            Need::Read,
            format!("{}?format=har", fill(route, &w.request)),
            None,
        ),
        ("GET", "/channels/{id}/requests/export") => (
            Need::Read,
            format!("{}?format=ndjson", fill(route, ch)),
            None,
        ),
        ("GET", "/audit") => (Need::Anyone, route.into(), None),
        ("GET", "/credentials") => (Need::Anyone, route.into(), None),
        ("POST", "/credentials") => (
            Need::Manage,
            route.into(),
            Some(
                json!({ "project_id": p, "name": unique("cr"), "schema": "http",
                         "body": { "access_token": "x" } }),
            ),
        ),
        ("GET", "/credentials/{id}") => (Need::Read, fill(route, &w.credential), None),
        ("PATCH", "/credentials/{id}") => (
            Need::Manage,
            fill(route, &fresh(w, "credential").await),
            Some(json!({ "name": unique("cr") })),
        ),
        ("DELETE", "/credentials/{id}") => (
            Need::Manage,
            fill(route, &fresh(w, "credential").await),
            None,
        ),
        ("GET", "/auth-methods") => (Need::Anyone, route.into(), None),
        ("POST", "/auth-methods") => (
            Need::Manage,
            route.into(),
            Some(json!({ "project_id": p, "name": unique("m"), "type": "api_key" })),
        ),
        ("DELETE", "/auth-methods/{id}") => (
            Need::Manage,
            fill(route, &fresh(w, "auth-method").await),
            None,
        ),
        ("GET", "/settings") => (Need::Superuser, route.into(), None),
        ("PATCH", "/settings") => (
            Need::Superuser,
            route.into(),
            Some(json!({ "stale_threshold_days": 8 })),
        ),
        ("GET", "/catalog") => (Need::Superuser, route.into(), None),
        ("GET", "/catalog/adaptors") => (Need::Anyone, route.into(), None),
        ("GET", "/catalog/adaptors/{name}") | ("GET", "/catalog/adaptors/{name}/schema") => {
            (Need::Anyone, route.replace("{name}", "http"), None)
        }
        ("POST", "/catalog/refresh") => (
            Need::Superuser,
            route.into(),
            Some(json!({ "package": "http" })),
        ),
        ("POST", "/validate") => (
            Need::EditorSomewhere,
            route.into(),
            Some(json!({ "url": w.sink })),
        ),
        ("GET", "/events") | ("GET", "/events/stream") => (Need::Anyone, route.into(), None),
        _ => panic!("no row for {m} {route}: add one to this test"),
    }
}

/// Each caller's credentials: a token owned by the user, or a fresh session.
async fn auth_of(w: &World, who: Who, cookie: bool) -> Auth {
    if who == Who::Nobody {
        return Auth::None;
    }
    if cookie {
        return sign_in(&w.s, who.username(), PASSWORD).await;
    }
    let t = su(
        &w.s,
        Method::POST,
        "/tokens",
        json!({ "name": unique("t"), "user_id": w.users[who.username()] }),
    )
    .await;
    Auth::Token(t["token"].as_str().unwrap().to_string())
}

async fn matrix(database_url: Option<&str>) {
    let w = world(database_url).await;
    let routes = sluice_admin::api_route_list();
    assert!(routes.len() >= 40, "the router lists its routes");
    let whos = [
        Who::Nobody,
        Who::Viewer,
        Who::Editor,
        Who::Admin,
        Who::Outsider,
        Who::Superuser,
    ];
    let mut failures = Vec::new();
    for cookie in [false, true] {
        let mut auths = HashMap::new();
        for who in whos {
            auths.insert(who.username(), auth_of(&w, who, cookie).await);
        }
        for (method, route) in &routes {
            let method = Method::from_bytes(method.as_str().as_bytes()).unwrap();
            for who in whos {
                if cookie && who == Who::Nobody {
                    continue;
                }
                let (need, path, body) = cell(&w, &method, route, who).await;
                // Signing out or changing the password must not spend the session of later cells.
                let spends = matches!(
                    (method.as_str(), *route),
                    ("DELETE", "/session") | ("POST", "/session/password")
                );
                let auth = if spends && cookie {
                    sign_in(&w.s, who.username(), PASSWORD).await
                } else {
                    auths[who.username()].clone()
                };
                let (status, answer) = call(&w.s, &auth, method.clone(), &path, body).await;
                let want = expected(need, who);
                let ok = if want == 200 {
                    (200..300).contains(&status)
                } else {
                    status == want
                };
                if !ok {
                    failures.push(format!(
                        "{method} {path} as {who:?} ({}): {status}, expected {want}: {answer}",
                        if cookie { "cookie" } else { "token" }
                    ));
                }
                if (400..500).contains(&status) {
                    assert!(
                        answer.get("error").is_some(),
                        "{method} {path}: a JSON error: {answer}"
                    );
                }
                if who == Who::Outsider && method == Method::GET && (200..300).contains(&status) {
                    let text = answer.to_string();
                    for m in &w.markers {
                        if text.contains(m.as_str()) {
                            failures
                                .push(format!("GET {path} shows P's {m} to an outsider: {text}"));
                        }
                    }
                }
                if route == &"/session/password" && (200..300).contains(&status) {
                    let back = json!({ "current_password": PASSWORD_2, "new_password": PASSWORD });
                    let (st, b) = call(&w.s, &auth, Method::POST, &path, Some(back)).await;
                    assert_eq!(st, 204, "changing the password back: {b}");
                    if cookie {
                        // A password change ends the user's other sessions.
                        auths.insert(
                            who.username(),
                            sign_in(&w.s, who.username(), PASSWORD).await,
                        );
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} cells wrong:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test]
async fn every_route_answers_each_caller_by_role_on_sqlite() {
    matrix(None).await;
}

#[tokio::test]
async fn every_route_answers_each_caller_by_role_on_postgres() {
    let Some(db) = TestDatabase::create("sluice_access").await else {
        return;
    };
    matrix(Some(&db.url)).await;
    db.drop().await;
}
