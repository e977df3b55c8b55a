//! Secrets at rest: a copy of the database alone reveals no secret (SQLite file and WAL bytes,
//! PostgreSQL rows), and `sluice secrets rotate` re-seals every credential under a new key while
//! sluice keeps serving.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::postgres::TestDatabase;
use common::{token_server, upstream, Sluice, TempDir};
use reqwest::Method;
use serde_json::{json, Value};
use sqlx::{Connection, Row};

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

async fn post(s: &Sluice, path: &str, body: Value) -> Value {
    let res = s.api(Method::POST, path).json(&body).send().await.unwrap();
    let status = res.status();
    let body: Value = res.json().await.unwrap();
    assert_eq!(status, 201, "POST {path}: {body}");
    body
}

/// Value of `authorization` the upstream received for a GET through `ch` with `headers`.
async fn sent_authorization(s: &Sluice, ch: &Value, headers: &[(&str, &str)]) -> String {
    // built from this process's address: the channel may have been created by an earlier one
    let url = s.url(&format!("/channels/{}/echo", ch["id"].as_str().unwrap()));
    let mut req = s.http().get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = req.send().await.unwrap();
    assert_eq!(res.status(), 200);
    let doc: Value = res.json().await.unwrap();
    doc["headers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h[0] == "authorization")
        .map(|h| h[1].as_str().unwrap().to_string())
        .unwrap_or_default()
}

/// Creates one of every kind of secret, uses them through the proxy (an OAuth refresh stores
/// a new token), and returns every secret value sluice was given or obtained.
async fn store_every_kind_of_secret(s: &Sluice) -> Vec<String> {
    let up = upstream::start().await;
    let fresh = unique("fresh-access-token");
    let tokens = token_server::start(
        200,
        json!({"access_token": fresh, "refresh_token": unique("rotated-refresh"), "expires_in": 3600}),
        Duration::ZERO,
    )
    .await;
    let basic_pw = unique("basic-password");
    let key = post(s, "/auth-methods", json!({"name": "k", "type": "api_key"})).await;
    let api_key = key["api_key"].as_str().unwrap().to_string();
    let basic = post(
        s,
        "/auth-methods",
        json!({"name": "b", "type": "basic", "username": "ann", "password": basic_pw}),
    )
    .await;
    let (http_pw, http_token, pat, client_secret, refresh, stale) = (
        unique("http-password"),
        unique("http-access-token"),
        unique("d2pat"),
        unique("client-secret"),
        unique("refresh-token"),
        unique("stale-access-token"),
    );
    let http = post(s, "/credentials", json!({"name": "h", "schema": "http", "body": {"username": "u", "password": http_pw, "access_token": http_token}})).await;
    let dhis2 = post(s, "/credentials", json!({"name": "d", "schema": "dhis2", "body": {"hostUrl": "https://play.dhis2.org", "pat": pat}})).await;
    let oauth = post(
        s,
        "/credentials",
        json!({"name": "o", "schema": "oauth", "body": {
        "access_token": stale, "expires_at": 1, "refresh_token": refresh, "token_url": tokens.url(),
        "client_id": "sluice", "client_secret": client_secret}}),
    )
    .await;
    let methods = json!([key["id"], basic["id"]]);
    for (cred, expected) in [
        (&http, format!("Bearer {http_token}")),
        (&dhis2, format!("ApiToken {pat}")),
        (&oauth, format!("Bearer {fresh}")),
    ] {
        let ch = s
            .create_channel(
                &up.url("/"),
                // The echo upstream answers with the headers it received: keep no body preview,
                // so what is scanned is what sluice stores of its own accord.
                json!({"sink_credential_id": cred["id"], "source_auth_method_ids": methods, "preview_bytes": 0}),
            )
            .await;
        assert_eq!(
            sent_authorization(s, &ch, &[("x-api-key", &api_key)]).await,
            expected
        );
        let basic_header = format!(
            "Basic {}",
            base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                format!("ann:{basic_pw}")
            )
        );
        assert_eq!(
            sent_authorization(s, &ch, &[("authorization", &basic_header)]).await,
            expected
        );
    }
    assert_eq!(tokens.calls(), 1);
    let (password, session, user_token) = sign_in_secrets(s).await;
    vec![
        password,
        session,
        user_token,
        api_key,
        basic_pw,
        http_pw,
        http_token,
        pat,
        client_secret,
        refresh,
        stale,
        fresh,
        s.token.clone(),
    ]
}

/// A user's password, a session id and a user's API token, each used once.
async fn sign_in_secrets(s: &Sluice) -> (String, String, String) {
    let password = unique("user-password");
    post(
        s,
        "/users",
        json!({"username": unique("ann"), "password": password}),
    )
    .await;
    let user = post(
        s,
        "/users",
        json!({"username": unique("bob"), "password": password}),
    )
    .await;
    let res = s
        .http()
        .post(s.url("/api/v1/session"))
        .json(&json!({"username": user["username"], "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let cookie = res.headers()["set-cookie"].to_str().unwrap().to_string();
    let session = cookie.split(';').next().unwrap()["sluice_session=".len()..].to_string();
    let body: Value = res.json().await.unwrap();
    let res = s
        .http()
        .post(s.url("/api/v1/tokens"))
        .header("cookie", format!("sluice_session={session}"))
        .header("x-csrf-token", body["csrf_token"].as_str().unwrap())
        .json(&json!({"name": "mine"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let token: Value = res.json().await.unwrap();
    let token = token["token"].as_str().unwrap().to_string();
    let res = s
        .http()
        .get(s.url("/api/v1/session"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "the user's token works");
    (password, session, token)
}

fn assert_absent(haystack: &[u8], secrets: &[String], what: &str) {
    for secret in secrets {
        let found = haystack
            .windows(secret.len())
            .any(|w| w == secret.as_bytes());
        assert!(!found, "{secret} is readable in {what}");
    }
}

/// Every byte of every file in the data directory but the key file (the ledger, its WAL,
/// the in-flight file, the journal and the recorded events).
fn sqlite_bytes(dir: &std::path::Path) -> Vec<u8> {
    let mut all = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                todo.push(path);
            } else if path.file_name().is_some_and(|n| n != "secret.key") {
                all.extend(std::fs::read(&path).unwrap_or_default());
            }
        }
    }
    all
}

#[tokio::test]
async fn sqlite_file_and_wal_hold_no_secret_in_clear() {
    let mut s = Sluice::start().await;
    let secrets = store_every_kind_of_secret(&s).await;
    // while running: the WAL holds the recent writes
    assert!(s.data.path().join("sluice.db-wal").exists());
    assert_absent(
        &sqlite_bytes(s.data.path()),
        &secrets,
        "the running SQLite ledger's data directory",
    );
    s.stop().await;
    assert_absent(
        &sqlite_bytes(s.data.path()),
        &secrets,
        "the SQLite ledger at rest",
    );
    let key_file = s.data.path().join("secret.key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the key file is private");
    }
}

#[tokio::test]
async fn postgres_rows_hold_no_secret_in_clear() {
    let Some(test_db) = TestDatabase::create("sluice_it").await else {
        return;
    };
    let url = test_db.url.clone();
    let mut s = Sluice::start_on(Arc::new(TempDir::new()), Some(&url), &[]).await;
    let secrets = store_every_kind_of_secret(&s).await;
    s.stop().await;

    let mut db = sqlx::PgConnection::connect(&url).await.unwrap();
    let tables: Vec<String> = sqlx::query(
        "SELECT table_name::text AS t FROM information_schema.tables WHERE table_schema = 'public'",
    )
    .fetch_all(&mut db)
    .await
    .unwrap()
    .iter()
    .map(|r| r.get("t"))
    .collect();
    assert!(tables.iter().any(|t| t == "credentials"), "{tables:?}");
    let mut dump = String::new();
    for t in &tables {
        for r in sqlx::query(&format!("SELECT CAST(x AS TEXT) AS row FROM \"{t}\" x"))
            .fetch_all(&mut db)
            .await
            .unwrap()
        {
            dump.push_str(&r.get::<String, _>("row"));
            dump.push('\n');
        }
    }
    assert!(dump.contains("dhis2"), "the dump sees the credential rows");
    assert_absent(dump.as_bytes(), &secrets, "PostgreSQL rows");
    // BYTEA columns print as hex: look for the secrets in that form too
    let as_hex: Vec<String> = secrets.iter().map(hex::encode).collect();
    assert_absent(dump.as_bytes(), &as_hex, "PostgreSQL BYTEA columns");
    db.close().await.unwrap();
    test_db.drop().await;
}

async fn key_ids(s: &Sluice) -> Vec<String> {
    let mut db = sqlx::SqliteConnection::connect(&format!("{}?mode=ro", s.db_url()))
        .await
        .unwrap();
    let ids = sqlx::query("SELECT key_id FROM credentials ORDER BY id")
        .fetch_all(&mut db)
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<String, _>("key_id"))
        .collect();
    db.close().await.unwrap();
    ids
}

#[tokio::test]
async fn rotation_reseals_every_credential_while_serving() {
    let up = upstream::start().await;
    let mut s = Sluice::start().await;
    let token = unique("tok");
    let a = post(
        &s,
        "/credentials",
        json!({"name": "a", "schema": "http", "body": {"access_token": token}}),
    )
    .await;
    let b = post(&s, "/credentials", json!({"name": "b", "schema": "dhis2", "body": {"hostUrl": "https://x.org", "username": "u", "password": "p"}})).await;
    let ch_a = s
        .create_channel(&up.url("/"), json!({"sink_credential_id": a["id"]}))
        .await;
    let ch_b = s
        .create_channel(&up.url("/"), json!({"sink_credential_id": b["id"]}))
        .await;
    assert_eq!(
        sent_authorization(&s, &ch_a, &[]).await,
        format!("Bearer {token}")
    );
    let before = key_ids(&s).await;
    assert_eq!(before.len(), 2);
    assert_eq!(before[0], before[1]);

    let dir = s.data.path().to_str().unwrap().to_string();
    let out = common::run(&["secrets", "rotate", "--data-dir", &dir]);
    assert!(out.contains("re-sealed 2 credentials"), "{out}");
    let after = key_ids(&s).await;
    assert!(
        after.iter().all(|k| *k != before[0]),
        "{before:?} -> {after:?}"
    );
    assert!(out.trim_end().ends_with(&after[0]), "{out}");

    // The running server opens re-sealed rows (a change makes it read them again) and seals
    // new ones under the new key; the requests keep carrying the right header.
    let res = s
        .api(
            Method::PATCH,
            &format!("/credentials/{}", a["id"].as_str().unwrap()),
        )
        .json(&json!({"body": {"baseUrl": "https://example.org"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        sent_authorization(&s, &ch_a, &[]).await,
        format!("Bearer {token}")
    );
    assert_eq!(sent_authorization(&s, &ch_b, &[]).await, "Basic dTpw");
    let c = post(
        &s,
        "/credentials",
        json!({"name": "c", "schema": "http", "body": {"access_token": "t"}}),
    )
    .await;
    assert!(c["id"].is_string());
    assert!(key_ids(&s).await.iter().all(|k| *k == after[0]));

    // and after a restart, with the key file alone
    s.stop().await;
    let s = Sluice::start_in(s.data.clone(), &[]).await;
    assert_eq!(
        sent_authorization(&s, &ch_a, &[]).await,
        format!("Bearer {token}")
    );
    assert_eq!(sent_authorization(&s, &ch_b, &[]).await, "Basic dTpw");
}

#[tokio::test]
async fn a_given_secret_key_replaces_the_key_file() {
    let up = upstream::start().await;
    let key = "ab".repeat(32);
    let data = Arc::new(TempDir::new());
    let s = Sluice::start_in(data.clone(), &["--secret-key", &key]).await;
    let c = post(
        &s,
        "/credentials",
        json!({"name": "a", "schema": "http", "body": {"access_token": "given-key-token"}}),
    )
    .await;
    let ch = s
        .create_channel(&up.url("/"), json!({"sink_credential_id": c["id"]}))
        .await;
    assert_eq!(
        sent_authorization(&s, &ch, &[]).await,
        "Bearer given-key-token"
    );
    assert!(!data.path().join("secret.key").exists());
    drop(s);
    // without the key the credential cannot be opened: 502 credential_not_found, not a leak
    let s = Sluice::start_in(data.clone(), &[]).await;
    let url = s.url(&format!("/channels/{}/echo", ch["id"].as_str().unwrap()));
    let res = s.http().get(url).send().await.unwrap();
    assert_eq!(res.status(), 502);
    let id = res.headers()["x-request-id"].to_str().unwrap().to_string();
    let rec = s.finished(&ch, &id).await;
    assert_eq!(rec["error"], "credential_not_found");
}
