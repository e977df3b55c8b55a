//! People and their sessions: the first-start admin, signing in and out, session expiry, CSRF,
//! throttled guessing, tokens narrowed to a project, projects and members, the `sluice user`
//! and `sluice token` commands.

mod common;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::{serve_logged, Sluice, TempDir};
use reqwest::Method;
use serde_json::{json, Value};

const PASSWORD: &str = "correct-horse-1";

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// A signed-in browser: its cookie and CSRF token.
#[derive(Clone)]
struct Session {
    cookie: String,
    csrf: String,
}

async fn sign_in(
    base: &str,
    username: &str,
    password: &str,
) -> Result<(Session, Value), (u16, Value, Option<String>)> {
    let res = client()
        .post(format!("{base}/api/v1/session"))
        .json(&json!({ "username": username, "password": password }))
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let retry = res
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    let cookie = res
        .headers()
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().to_string());
    let body: Value = res.json().await.unwrap();
    if status != 200 {
        return Err((status, body, retry));
    }
    let cookie = cookie.unwrap().split(';').next().unwrap().to_string();
    let csrf = body["csrf_token"].as_str().unwrap().to_string();
    Ok((Session { cookie, csrf }, body))
}

async fn with_session(
    base: &str,
    s: &Session,
    method: Method,
    path: &str,
    body: Option<Value>,
    csrf: bool,
) -> (u16, Value) {
    let mut rb = client()
        .request(method, format!("{base}/api/v1{path}"))
        .header("cookie", &s.cookie);
    if csrf {
        rb = rb.header("x-csrf-token", &s.csrf);
    }
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let res = rb.send().await.unwrap();
    let status = res.status().as_u16();
    let text = res.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn api(s: &Sluice, method: Method, path: &str, body: Value) -> (u16, Value) {
    let res = s.api(method, path).json(&body).send().await.unwrap();
    let status = res.status().as_u16();
    let text = res.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn one_time_password(stderr: &str) -> String {
    let at = stderr
        .find("one-time password")
        .expect("the first start prints a password");
    stderr[at..].lines().nth(2).unwrap().trim().to_string()
}

#[tokio::test]
async fn the_first_admin_password_is_printed_once_works_once_and_must_be_changed() {
    let data = TempDir::new();
    let first = serve_logged(&data, &[]).await;
    let base = first.base.clone();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !first.stderr.lock().unwrap().contains("one-time password") {
        assert!(std::time::Instant::now() < deadline, "no password printed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let password = one_time_password(&first.stderr.lock().unwrap());
    assert_eq!(password.len(), 20);

    let (session, me) = sign_in(&base, "ADMIN", &password)
        .await
        .expect("the password works");
    assert_eq!(me["must_change_password"], true);
    assert_eq!(me["superuser"], true);
    assert_eq!(me["projects"][0]["name"], "default");
    // Until it is changed, nothing else is allowed.
    let (st, body) = with_session(&base, &session, Method::GET, "/channels", None, false).await;
    assert_eq!(st, 403, "{body}");
    assert_eq!(body["error"], "password change required");
    // It works once.
    let (st, _, _) = sign_in(&base, "admin", &password)
        .await
        .err()
        .expect("spent");
    assert_eq!(st, 401);
    let (st, body) = with_session(
        &base,
        &session,
        Method::POST,
        "/session/password",
        Some(json!({ "current_password": password, "new_password": "short" })),
        true,
    )
    .await;
    assert_eq!(st, 422);
    assert!(
        body["details"]["fields"]["new_password"].is_string(),
        "{body}"
    );
    let (st, _) = with_session(
        &base,
        &session,
        Method::POST,
        "/session/password",
        Some(json!({ "current_password": password, "new_password": PASSWORD })),
        true,
    )
    .await;
    assert_eq!(st, 204);
    let (st, body) = with_session(&base, &session, Method::GET, "/channels", None, false).await;
    assert_eq!(st, 200, "{body}");
    let (_, me) = sign_in(&base, "admin", PASSWORD)
        .await
        .expect("the new password works");
    assert_eq!(me["must_change_password"], false);
    drop(first);

    // A later start prints no password; the first one never appears in the log again.
    let second = serve_logged(&data, &[]).await;
    sign_in(&second.base, "admin", PASSWORD)
        .await
        .expect("still signs in");
    let log = second.stderr.lock().unwrap().clone();
    assert!(!log.contains("one-time password"), "{log}");
    assert!(!log.contains(&password));
    assert!(!log.contains(PASSWORD));
}

#[tokio::test]
async fn sessions_end_when_idle_and_at_sign_out_and_need_the_csrf_token() {
    let s = Sluice::start_in(Arc::new(TempDir::new()), &["--session-idle-timeout", "2s"]).await;
    let (st, _) = api(
        &s,
        Method::POST,
        "/users",
        json!({ "username": "ann", "password": PASSWORD }),
    )
    .await;
    assert_eq!(st, 201);
    let (session, _) = sign_in(&s.base, "ann", PASSWORD).await.unwrap();
    let (st, me) = with_session(&s.base, &session, Method::GET, "/session", None, false).await;
    assert_eq!((st, me["user"]["username"].as_str()), (200, Some("ann")));
    assert_eq!(me["csrf_token"], session.csrf.as_str());

    // State changes with the cookie need the CSRF token; a bearer token needs none.
    let body = json!({ "name": "mine" });
    let (st, e) = with_session(
        &s.base,
        &session,
        Method::POST,
        "/tokens",
        Some(body.clone()),
        false,
    )
    .await;
    assert_eq!(st, 403, "{e}");
    assert_eq!(e["details"]["header"], "x-csrf-token");
    let forged = Session {
        csrf: "0".repeat(64),
        ..session.clone()
    };
    let (st, _) = with_session(
        &s.base,
        &forged,
        Method::POST,
        "/tokens",
        Some(body.clone()),
        true,
    )
    .await;
    assert_eq!(st, 403);
    let (st, t) = with_session(&s.base, &session, Method::POST, "/tokens", Some(body), true).await;
    assert_eq!(st, 201);
    let res = client()
        .post(s.url("/api/v1/tokens"))
        .bearer_auth(t["token"].as_str().unwrap())
        .json(&json!({ "name": "another" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);

    // Idle for longer than the timeout: ended. Used within it: kept.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (st, _) = with_session(&s.base, &session, Method::GET, "/session", None, false).await;
    assert_eq!(st, 200);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (st, _) = with_session(&s.base, &session, Method::GET, "/session", None, false).await;
    assert_eq!(st, 200, "a call within the idle timeout keeps the session");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (st, e) = with_session(&s.base, &session, Method::GET, "/session", None, false).await;
    assert_eq!(st, 401, "{e}");

    let (session, _) = sign_in(&s.base, "ann", PASSWORD).await.unwrap();
    let (st, _) = with_session(&s.base, &session, Method::DELETE, "/session", None, true).await;
    assert_eq!(st, 204);
    let (st, _) = with_session(&s.base, &session, Method::GET, "/session", None, false).await;
    assert_eq!(st, 401, "signed out");
}

#[tokio::test]
async fn wrong_passwords_are_throttled_logged_and_never_tell_whether_the_user_exists() {
    let s = Sluice::start().await;
    let (st, _) = api(
        &s,
        Method::POST,
        "/users",
        json!({ "username": "ann", "password": PASSWORD }),
    )
    .await;
    assert_eq!(st, 201);
    // An unknown user and a wrong password get the same answer.
    let (_, unknown, _) = sign_in(&s.base, "nobody-here", "wrong-password")
        .await
        .err()
        .unwrap();
    let (st, wrong, _) = sign_in(&s.base, "ann", "wrong-password")
        .await
        .err()
        .unwrap();
    assert_eq!(st, 401);
    assert_eq!(unknown, wrong);
    let mut statuses = Vec::new();
    let mut retry = None;
    for _ in 0..10 {
        let (st, body, r) = sign_in(&s.base, "ann", "wrong-password")
            .await
            .err()
            .unwrap();
        assert!(body["error"].is_string());
        statuses.push(st);
        retry = retry.or(r);
    }
    assert!(statuses.contains(&429), "{statuses:?}");
    let wait: u64 = retry.expect("429 says when to retry").parse().unwrap();
    assert!(wait >= 1);
    // Even the right password waits now.
    let (st, _, _) = sign_in(&s.base, "ann", PASSWORD)
        .await
        .err()
        .expect("held back");
    assert_eq!(st, 429);
    // Logged under `auth`, rate-limited: one entry, the rest counted.
    let log = s.get_json("/events?source=auth").await;
    let entries: Vec<&Value> = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["message"] == "sign-ins are failing")
        .collect();
    assert_eq!(entries.len(), 1, "{log}");
    assert_eq!(entries[0]["severity"], "warn");
    // Audited, each wrong password.
    let audit = s.get_json("/audit?resource_type=session&limit=500").await;
    let failed = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["action"] == "sign_in_failed")
        .count();
    // Every attempt whose password was checked; the ones held back checked nothing.
    let checked = 2 + statuses.iter().filter(|s| **s == 401).count();
    assert_eq!(failed, checked, "{audit}");
    // The delay passes.
    tokio::time::sleep(Duration::from_secs(wait + 1)).await;
    let mut signed_in = false;
    for _ in 0..60 {
        match sign_in(&s.base, "ann", PASSWORD).await {
            Ok(_) => {
                signed_in = true;
                break;
            }
            Err((429, _, Some(r))) => {
                tokio::time::sleep(Duration::from_secs(r.parse::<u64>().unwrap())).await
            }
            Err(e) => panic!("{e:?}"),
        }
    }
    assert!(signed_in);
}

#[tokio::test]
async fn a_token_narrowed_to_a_project_reads_nothing_else_and_projects_guard_their_contents() {
    let s = Sluice::start().await;
    let up = common::upstream::start().await;
    let (_, ann) = api(
        &s,
        Method::POST,
        "/users",
        json!({ "username": "ann", "password": PASSWORD }),
    )
    .await;
    let (_, p) = api(&s, Method::POST, "/projects", json!({ "name": "payments" })).await;
    let (_, q) = api(&s, Method::POST, "/projects", json!({ "name": "cases" })).await;
    let (p, q, ann) = (
        p["id"].as_str().unwrap(),
        q["id"].as_str().unwrap(),
        ann["id"].as_str().unwrap(),
    );
    for project in [p, q] {
        let (st, b) = api(
            &s,
            Method::PUT,
            &format!("/projects/{project}/members/{ann}"),
            json!({ "role": "admin" }),
        )
        .await;
        assert_eq!(st, 200, "{b}");
    }
    let in_p = s
        .create_channel(&up.url("/"), json!({ "project_id": p }))
        .await;
    let in_q = s
        .create_channel(&up.url("/"), json!({ "project_id": q }))
        .await;

    let (session, _) = sign_in(&s.base, "ann", PASSWORD).await.unwrap();
    let (st, t) = with_session(
        &s.base,
        &session,
        Method::POST,
        "/tokens",
        Some(json!({ "name": "ci", "project_id": p, "role": "viewer" })),
        true,
    )
    .await;
    assert_eq!(st, 201, "{t}");
    let narrow = t["token"].as_str().unwrap().to_string();
    let get = |path: String| {
        let narrow = narrow.clone();
        let url = s.url(&format!("/api/v1{path}"));
        async move {
            let res = client().get(url).bearer_auth(narrow).send().await.unwrap();
            (res.status().as_u16(), res.json::<Value>().await.unwrap())
        }
    };
    assert_eq!(
        get(format!("/channels/{}", in_p["id"].as_str().unwrap()))
            .await
            .0,
        200
    );
    assert_eq!(
        get(format!("/channels/{}", in_q["id"].as_str().unwrap()))
            .await
            .0,
        404
    );
    assert_eq!(get(format!("/channels?project_id={q}")).await.0, 404);
    let (st, list) = get("/channels".into()).await;
    assert_eq!(st, 200);
    let ids: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![in_p["id"].as_str().unwrap()]);
    // Capped at viewer, though ann is an admin.
    let res = client()
        .post(s.url("/api/v1/channels"))
        .bearer_auth(&narrow)
        .json(&json!({ "name": "x", "sink_url": up.url("/"), "project_id": p }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    // Nor can it mint a wider token.
    let res = client()
        .post(s.url("/api/v1/tokens"))
        .bearer_auth(&narrow)
        .json(&json!({ "name": "wider" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);

    // A project with channels cannot be deleted; empty, it can.
    let (st, e) = api(&s, Method::DELETE, &format!("/projects/{q}"), json!({})).await;
    assert_eq!(st, 409, "{e}");
    let (st, _) = api(
        &s,
        Method::DELETE,
        &format!("/channels/{}", in_q["id"].as_str().unwrap()),
        json!({}),
    )
    .await;
    assert_eq!(st, 204);
    // Its last admin cannot leave it.
    let (st, e) = api(
        &s,
        Method::DELETE,
        &format!("/projects/{q}/members/{ann}"),
        json!({}),
    )
    .await;
    assert_eq!(st, 409, "{e}");
    let (st, _) = api(&s, Method::DELETE, &format!("/projects/{q}"), json!({})).await;
    assert_eq!(st, 204);

    // A disabled user's sessions and tokens stop working.
    let (st, _) = api(
        &s,
        Method::PATCH,
        &format!("/users/{ann}"),
        json!({ "disabled": true }),
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(get("/channels".into()).await.0, 401);
    let (st, _) = with_session(&s.base, &session, Method::GET, "/session", None, false).await;
    assert_eq!(st, 401);
    assert!(sign_in(&s.base, "ann", PASSWORD).await.is_err());

    // Every change above is in the audit trail with its actor.
    let audit = s.get_json("/audit?limit=500").await;
    let actions: Vec<(String, String)> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["resource_type"].as_str().unwrap().into(),
                a["action"].as_str().unwrap().into(),
            )
        })
        .collect();
    for want in [
        ("user", "create"),
        ("user", "update"),
        ("project", "create"),
        ("project", "delete"),
        ("membership", "put"),
        ("token", "create"),
        ("session", "sign_in"),
    ] {
        assert!(
            actions.iter().any(|(t, a)| t == want.0 && a == want.1),
            "{want:?} in {actions:?}"
        );
    }
    let token_entry = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["resource_type"] == "token")
        .unwrap();
    assert_eq!(token_entry["actor"], "user:ann");
}

#[tokio::test]
async fn user_and_token_commands_manage_people_from_the_shell() {
    let data = TempDir::new();
    let dir = data.path().to_str().unwrap();
    let help = common::run(&["--help"]);
    assert!(help.contains("user"), "{help}");
    let out = common::run(&["user", "create", "--username", "Bob", "--data-dir", dir]);
    let generated = out.lines().last().unwrap().trim().to_string();
    assert_eq!(generated.len(), 20, "{out}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args([
            "user",
            "create",
            "--username",
            "carol",
            "--superuser",
            "--password-stdin",
            "--data-dir",
            dir,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{PASSWORD}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert!(!String::from_utf8_lossy(&out.stdout).contains(PASSWORD));
    // Names are unique whatever their case.
    let dup = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["user", "create", "--username", "BOB", "--data-dir", dir])
        .output()
        .unwrap();
    assert!(!dup.status.success());
    let list = common::run(&["user", "list", "--data-dir", dir]);
    assert!(
        list.contains("Bob") && list.contains("carol\tsuperuser"),
        "{list}"
    );
    let token = common::run(&[
        "token",
        "create",
        "--name",
        "bobs",
        "--user",
        "bob",
        "--project",
        "default",
        "--role",
        "viewer",
        "--data-dir",
        dir,
    ]);
    let token = token.lines().last().unwrap().trim().to_string();

    let s = serve_logged(&data, &[]).await;
    let (_, me) = sign_in(&s.base, "bob", &generated)
        .await
        .expect("generated password works once");
    assert_eq!(me["must_change_password"], true);
    let (_, me) = sign_in(&s.base, "carol", PASSWORD).await.unwrap();
    assert_eq!(me["must_change_password"], false);
    // bob is in no project: his narrowed token reads nothing of `default`.
    let res = client()
        .get(format!("{}/api/v1/channels", s.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["items"], json!([]));

    let out = common::run(&["user", "reset-password", "bob", "--data-dir", dir]);
    let reset = out.lines().last().unwrap().trim().to_string();
    assert_ne!(reset, generated);
    assert!(sign_in(&s.base, "bob", &reset).await.is_ok());
    common::run(&["user", "disable", "bob", "--data-dir", dir]);
    assert!(sign_in(&s.base, "bob", &reset).await.is_err());
    let res = client()
        .get(format!("{}/api/v1/channels", s.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401, "a disabled user's token is refused");
    assert!(res.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Bearer"));
    // No password the commands printed reaches the server's log.
    let log = s.stderr.lock().unwrap().clone();
    for secret in [&generated, &reset, &token, &PASSWORD.to_string()] {
        assert!(!log.contains(secret.as_str()), "{secret} in the log");
    }
}
