//! Source authentication, sink credentials and secrets at rest (PRODUCT.md §2 steps 2, 4, 6;
//! §3 redaction; §4 `/auth-methods`, `/credentials`), against a real sluice, a real upstream
//! that echoes the headers it receives, and a real token endpoint.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use common::{rid, token_server, upstream, Sluice};
use reqwest::Method;
use serde_json::{json, Value};

fn basic(user: &str, pw: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"))
    )
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Values of header `name` the upstream received, from its echo document.
fn received(doc: &Value, name: &str) -> Vec<String> {
    doc["headers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h[0].as_str().unwrap().eq_ignore_ascii_case(name))
        .map(|h| h[1].as_str().unwrap().to_string())
        .collect()
}

async fn post(s: &Sluice, path: &str, body: Value) -> (u16, Value) {
    let res = s.api(Method::POST, path).json(&body).send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn api_key_method(s: &Sluice, name: &str) -> (String, String) {
    let (st, m) = post(s, "/auth-methods", json!({"name": name, "type": "api_key"})).await;
    assert_eq!(st, 201, "{m}");
    (
        m["id"].as_str().unwrap().to_string(),
        m["api_key"].as_str().unwrap().to_string(),
    )
}

async fn basic_method(s: &Sluice, name: &str, user: &str, pw: &str) -> String {
    let (st, m) = post(
        s,
        "/auth-methods",
        json!({"name": name, "type": "basic", "username": user, "password": pw}),
    )
    .await;
    assert_eq!(st, 201, "{m}");
    assert!(m.get("api_key").is_none());
    m["id"].as_str().unwrap().to_string()
}

async fn credential(s: &Sluice, schema: &str, body: Value) -> String {
    let (st, c) = post(
        s,
        "/credentials",
        json!({"name": format!("c-{}", uuid::Uuid::new_v4().simple()), "schema": schema, "body": body}),
    )
    .await;
    assert_eq!(st, 201, "{c}");
    c["id"].as_str().unwrap().to_string()
}

/// Sends GET `/echo` through `ch` with `headers`; returns status, x-request-id and the body.
async fn call(s: &Sluice, ch: &Value, headers: &[(&str, &str)]) -> (u16, String, Value) {
    let id = rid();
    let mut req = s
        .http()
        .get(s.proxy_url(ch, "/echo"))
        .header("x-request-id", &id);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    if status == 401 {
        assert_eq!(
            res.headers()["www-authenticate"],
            "Basic realm=\"sluice\"",
            "401 challenges for Basic"
        );
    }
    let body: Value = res.json().await.unwrap();
    (status, id, body)
}

#[tokio::test]
async fn api_key_correct_wrong_missing() {
    let up = upstream::start().await;
    let s = Sluice::start_in(
        std::sync::Arc::new(common::TempDir::new()),
        &["--health-interval", "0"], // its probes would count as hits
    )
    .await;
    let (method, key) = api_key_method(&s, "shop").await;
    assert!(key.len() >= 40, "high-entropy key: {key}");
    let ch = s
        .create_channel(&up.url("/"), json!({"source_auth_method_ids": [method]}))
        .await;
    assert_eq!(ch["source_auth_method_ids"], json!([method]));

    let hits = up.hits(); // creating the channel probed the sink
    let (st, id, doc) = call(&s, &ch, &[("x-api-key", &key)]).await;
    assert_eq!(st, 200);
    assert!(
        received(&doc, "x-api-key").is_empty(),
        "the sink never sees x-api-key"
    );
    let rec = s.finished(&ch, &id).await;
    assert_eq!(rec["source_auth_method_id"], json!(method));
    assert_eq!(rec["source_auth_type"], "api_key");

    let (st, _, body) = call(&s, &ch, &[("x-api-key", "sk_wrong")]).await;
    assert_eq!((st, body), (404, json!({"error": "Not Found"})));
    // The failure is in the event log, saying what kind was presented, never the value; a
    // second failure right after is held back (rate-limited per channel).
    let (st, _, _) = call(&s, &ch, &[("x-api-key", "sk_wrong_again")]).await;
    assert_eq!(st, 404);
    let events = s.get_json("/events?source=auth").await;
    let items = events["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{events}");
    assert_eq!(items[0]["severity"], "warn");
    assert_eq!(items[0]["channel_id"], ch["id"]);
    assert_eq!(items[0]["details"]["presented"], json!(["api_key"]));
    assert!(!events.to_string().contains("sk_wrong"));
    let (st, _, body) = call(&s, &ch, &[]).await;
    assert_eq!((st, body), (401, json!({"error": "Unauthorized"})));
    assert_eq!(up.hits(), hits + 1, "rejected callers never reach the sink");
    // the key is shown once: listing shows only its hint
    let list = s.get_json("/auth-methods").await;
    assert!(!list.to_string().contains(&key));
    assert_eq!(list["items"][0]["api_key_hint"], json!(&key[..7]));
}

/// argon2 verifications sluice ran so far (`sluice_source_auth_password_checks_total`).
async fn password_checks(s: &Sluice) -> u64 {
    s.metric_sum("sluice_source_auth_password_checks_total")
        .await as u64
}

#[tokio::test]
async fn basic_correct_wrong_missing_and_cached() {
    let up = upstream::start().await;
    let s = Sluice::start().await;
    let method = basic_method(&s, "partner", "ann", "correct horse").await;
    let ch = s
        .create_channel(&up.url("/"), json!({"source_auth_method_ids": [method]}))
        .await;
    let good = basic("ann", "correct horse");
    for _ in 0..3 {
        let (st, id, doc) = call(&s, &ch, &[("authorization", &good)]).await;
        assert_eq!(st, 200);
        assert!(
            received(&doc, "authorization").is_empty(),
            "the source authorization never reaches the sink"
        );
        let rec = s.finished(&ch, &id).await;
        assert_eq!(rec["source_auth_type"], "basic");
        assert_eq!(rec["source_auth_method_id"], json!(method));
    }
    assert_eq!(
        password_checks(&s).await,
        1,
        "one argon2 run for three admissions"
    );
    for wrong in [basic("ann", "wrong"), basic("bob", "correct horse")] {
        let (st, _, body) = call(&s, &ch, &[("authorization", &wrong)]).await;
        assert_eq!((st, body), (404, json!({"error": "Not Found"})));
    }
    assert_eq!(password_checks(&s).await, 3);
    // A caller retrying the same wrong credential is answered from memory, not by argon2.
    for _ in 0..3 {
        for wrong in [basic("ann", "wrong"), basic("bob", "correct horse")] {
            let (st, _, _) = call(&s, &ch, &[("authorization", &wrong)]).await;
            assert_eq!(st, 404);
        }
    }
    assert_eq!(password_checks(&s).await, 3, "refusals are remembered");
    let (st, _, _) = call(&s, &ch, &[("authorization", &good)]).await;
    assert_eq!(st, 200, "the right password still admits");
    let (st, _, _) = call(
        &s,
        &ch,
        &[("authorization", "Bearer not-a-source-credential")],
    )
    .await;
    assert_eq!(st, 401, "a Bearer is not a source credential");
    let (st, _, _) = call(&s, &ch, &[]).await;
    assert_eq!(st, 401);

    // Deleting a method in use is refused; detaching it makes the channel public again.
    let res = s
        .api(Method::DELETE, &format!("/auth-methods/{method}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 409);
    let res = s
        .api(
            Method::PATCH,
            &format!("/channels/{}", ch["id"].as_str().unwrap()),
        )
        .json(&json!({"lock_version": ch["lock_version"], "source_auth_method_ids": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = s
        .api(Method::DELETE, &format!("/auth-methods/{method}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let (st, _, _) = call(&s, &ch, &[]).await;
    assert_eq!(st, 200);
}

#[tokio::test]
async fn either_of_two_methods_admits_with_mixed_types() {
    let up = upstream::start().await;
    let s = Sluice::start().await;
    let (key_method, key) = api_key_method(&s, "k").await;
    let b1 = basic_method(&s, "b1", "ann", "password-one").await;
    let b2 = basic_method(&s, "b2", "bob", "password-two").await;
    let mixed = s
        .create_channel(
            &up.url("/"),
            json!({"source_auth_method_ids": [key_method, b1]}),
        )
        .await;
    let two_basic = s
        .create_channel(&up.url("/"), json!({"source_auth_method_ids": [b1, b2]}))
        .await;

    let ann = basic("ann", "password-one");
    let bob = basic("bob", "password-two");
    let (st, id, doc) = call(&s, &mixed, &[("x-api-key", &key)]).await;
    assert_eq!(st, 200);
    assert_eq!(s.finished(&mixed, &id).await["source_auth_type"], "api_key");
    assert!(received(&doc, "x-api-key").is_empty());
    let (st, id, doc) = call(&s, &mixed, &[("authorization", &ann)]).await;
    assert_eq!(st, 200);
    assert_eq!(s.finished(&mixed, &id).await["source_auth_type"], "basic");
    assert!(received(&doc, "authorization").is_empty());
    // a wrong key beside a right password still admits; both sent are both removed
    let (st, id, doc) = call(
        &s,
        &mixed,
        &[("x-api-key", "sk_nope"), ("authorization", &ann)],
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(
        s.finished(&mixed, &id).await["source_auth_method_id"],
        json!(b1)
    );
    assert!(received(&doc, "x-api-key").is_empty() && received(&doc, "authorization").is_empty());
    let (st, _, _) = call(
        &s,
        &mixed,
        &[("x-api-key", "sk_nope"), ("authorization", &bob)],
    )
    .await;
    assert_eq!(st, 404);

    for (who, method) in [(&ann, &b1), (&bob, &b2)] {
        let (st, id, _) = call(&s, &two_basic, &[("authorization", who)]).await;
        assert_eq!(st, 200);
        assert_eq!(
            s.finished(&two_basic, &id).await["source_auth_method_id"],
            json!(method)
        );
    }
    let (st, _, _) = call(&s, &two_basic, &[("x-api-key", &key)]).await;
    assert_eq!(st, 404, "a key of a method the channel does not list");

    // two methods may share a username: each password admits through its own method
    let b3 = basic_method(&s, "b3", "ann", "password-three").await;
    let shared = s
        .create_channel(&up.url("/"), json!({"source_auth_method_ids": [b1, b3]}))
        .await;
    for (pw, method) in [("password-one", &b1), ("password-three", &b3)] {
        let (st, id, _) = call(&s, &shared, &[("authorization", &basic("ann", pw))]).await;
        assert_eq!(st, 200);
        assert_eq!(
            s.finished(&shared, &id).await["source_auth_method_id"],
            json!(method)
        );
    }
}

#[tokio::test]
async fn sink_credentials_follow_the_priority_rules() {
    let up = upstream::start().await;
    let s = Sluice::start().await;
    let cases = [
        (
            "http",
            json!({"username": "u", "password": "p", "access_token": "http-token"}),
            "Bearer http-token",
        ),
        (
            "http",
            json!({"username": "u", "password": "p"}),
            &basic("u", "p") as &str,
        ),
        (
            "dhis2",
            json!({"hostUrl": "https://play.dhis2.org", "username": "u", "password": "p", "pat": "d2pat_x"}),
            "ApiToken d2pat_x",
        ),
        (
            "dhis2",
            json!({"hostUrl": "https://play.dhis2.org", "username": "u", "password": "p"}),
            &basic("u", "p"),
        ),
        (
            "oauth",
            json!({"access_token": "valid-token", "expires_at": unix_now() + 3600}),
            "Bearer valid-token",
        ),
    ];
    let (key_method, key) = api_key_method(&s, "k").await;
    let basic_m = basic_method(&s, "b", "ann", "password-one").await;
    for (schema, body, expected) in cases {
        let cred = credential(&s, schema, body).await;
        let ch = s
            .create_channel(&up.url("/"), json!({"sink_credential_id": cred}))
            .await;
        // a caller's own authorization is replaced by the sink credential
        let (st, _, doc) = call(&s, &ch, &[("authorization", "Bearer caller-token")]).await;
        assert_eq!(st, 200);
        assert_eq!(received(&doc, "authorization"), [expected], "{schema}");
        // behind source auth as well
        let guarded = s
            .create_channel(
                &up.url("/"),
                json!({"sink_credential_id": cred, "source_auth_method_ids": [key_method, basic_m]}),
            )
            .await;
        let (st, _, doc) = call(
            &s,
            &guarded,
            &[("authorization", &basic("ann", "password-one"))],
        )
        .await;
        assert_eq!(st, 200);
        assert_eq!(
            received(&doc, "authorization"),
            [expected],
            "{schema} behind Basic"
        );
        assert!(received(&doc, "x-api-key").is_empty());
    }

    // Without a sink credential an unused caller authorization passes through unchanged.
    let public = s.create_channel(&up.url("/"), json!({})).await;
    let (_, _, doc) = call(&s, &public, &[("authorization", "Bearer caller-token")]).await;
    assert_eq!(received(&doc, "authorization"), ["Bearer caller-token"]);
    let keyed = s
        .create_channel(
            &up.url("/"),
            json!({"source_auth_method_ids": [key_method]}),
        )
        .await;
    let (st, _, doc) = call(
        &s,
        &keyed,
        &[
            ("x-api-key", &key),
            ("authorization", "Bearer caller-token"),
        ],
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(received(&doc, "authorization"), ["Bearer caller-token"]);
    assert!(received(&doc, "x-api-key").is_empty());
}

#[tokio::test]
async fn recorded_events_redact_every_secret_header() {
    let up = upstream::start().await;
    let s = Sluice::start().await;
    let (method, key) = api_key_method(&s, "k").await;
    let cred = credential(&s, "http", json!({"access_token": "sink-secret-token"})).await;
    let ch = s
        .create_channel(
            &up.url("/"),
            json!({"sink_credential_id": cred, "source_auth_method_ids": [method]}),
        )
        .await;
    let (st, id, doc) = call(
        &s,
        &ch,
        &[
            ("x-api-key", &key),
            ("cookie", "session=caller-cookie-secret"),
        ],
    )
    .await;
    assert_eq!(st, 200);
    let rec = s.finished(&ch, &id).await;
    let ev = &rec["event"];
    let value = |dir: &str, name: &str| -> Vec<Value> {
        ev[format!("{dir}_headers")]
            .as_array()
            .unwrap()
            .iter()
            .filter(|h| h[0] == name)
            .map(|h| h[1].clone())
            .collect()
    };
    assert_eq!(value("request", "authorization"), [json!("[REDACTED]")]);
    assert_eq!(value("request", "cookie"), [json!("[REDACTED]")]);
    assert_eq!(value("response", "set-cookie"), [json!("[REDACTED]")]);
    assert!(
        value("request", "x-api-key").is_empty(),
        "removed before it was sent"
    );
    // The echoing sink's body quoted the injected token and the caller's key (the caller got
    // it as sent); the stored preview did not keep them, nor the headers.
    assert!(received(&doc, "authorization") == ["Bearer sink-secret-token"]);
    let text = ev.to_string();
    for secret in [key.as_str(), "sink-secret-token"] {
        assert!(!text.contains(secret), "{secret} leaked into the record");
    }
    let headers = format!("{} {}", ev["request_headers"], ev["response_headers"]);
    for secret in ["caller-cookie-secret", "upstream-cookie-secret"] {
        assert!(
            !headers.contains(secret),
            "{secret} leaked into the headers"
        );
    }
    assert!(text.contains("[REDACTED]"));
}

#[tokio::test]
async fn oauth_expired_token_is_refreshed_once_under_50_concurrent_requests() {
    let up = upstream::start().await;
    let tokens = token_server::start(
        200,
        json!({"access_token": "fresh-token", "expires_in": 3600, "token_type": "Bearer"}),
        Duration::from_millis(300),
    )
    .await;
    let s = Sluice::start().await;
    let cred = credential(
        &s,
        "oauth",
        json!({
            "access_token": "expired-token",
            "expires_at": unix_now() - 60,
            "refresh_token": "refresh-secret",
            "token_url": tokens.url(),
            "client_id": "sluice",
            "client_secret": "client-secret-value",
        }),
    )
    .await;
    let ch = s
        .create_channel(&up.url("/"), json!({"sink_credential_id": cred}))
        .await;
    let calls = (0..50).map(|_| call(&s, &ch, &[]));
    for (st, _, doc) in futures_util::future::join_all(calls).await {
        assert_eq!(st, 200);
        assert_eq!(received(&doc, "authorization"), ["Bearer fresh-token"]);
    }
    assert_eq!(tokens.calls(), 1, "one refresh for 50 concurrent requests");
    let form = tokens.last_form();
    assert!(
        form.contains("grant_type=refresh_token") && form.contains("refresh_token=refresh-secret"),
        "{form}"
    );
    // the refreshed token is stored (sealed) and used from then on
    let stored = s.get_json(&format!("/credentials/{cred}")).await;
    assert_eq!(stored["version"], 2);
    assert!(!stored.to_string().contains("fresh-token"));
    let calls = (0..10).map(|_| call(&s, &ch, &[]));
    for (st, _, doc) in futures_util::future::join_all(calls).await {
        assert_eq!(st, 200);
        assert_eq!(received(&doc, "authorization"), ["Bearer fresh-token"]);
    }
    assert_eq!(tokens.calls(), 1);
}

#[tokio::test]
async fn oauth_client_credentials_and_refusals() {
    let up = upstream::start().await;
    let refused = token_server::start(401, json!({"error": "invalid_grant"}), Duration::ZERO).await;
    let cc = token_server::start(200, json!({"access_token": "cc-token"}), Duration::ZERO).await;
    let s = Sluice::start_in(
        std::sync::Arc::new(common::TempDir::new()),
        &["--health-interval", "0"], // its probes would count as hits
    )
    .await;

    let cred = credential(
        &s,
        "oauth",
        json!({"token_url": cc.url(), "client_id": "id", "client_secret": "sec", "scope": "read"}),
    )
    .await;
    let ch = s
        .create_channel(&up.url("/"), json!({"sink_credential_id": cred}))
        .await;
    let (st, _, doc) = call(&s, &ch, &[]).await;
    assert_eq!(st, 200);
    assert_eq!(received(&doc, "authorization"), ["Bearer cc-token"]);
    assert!(cc.last_form().contains("grant_type=client_credentials"));
    assert!(cc.last_form().contains("scope=read"));

    let cred = credential(
        &s,
        "oauth",
        json!({"access_token": "old", "expires_at": 1, "refresh_token": "revoked", "token_url": refused.url()}),
    )
    .await;
    let ch = s
        .create_channel(&up.url("/"), json!({"sink_credential_id": cred}))
        .await;
    let hits = up.hits(); // creating the channel probed the sink
    let (st, id, body) = call(&s, &ch, &[]).await;
    assert_eq!((st, body), (502, json!({"error": "Bad Gateway"})));
    let rec = s.finished(&ch, &id).await;
    assert_eq!(rec["state"], "error");
    assert_eq!(rec["error"], "oauth_reauthorization_required");
    assert_eq!(up.hits(), hits, "nothing forwarded without a credential");
    let events = s.get_json("/events?source=auth&severity=warn").await;
    let items = events["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{events}");
    assert!(items[0]["message"]
        .as_str()
        .unwrap()
        .contains("oauth_reauthorization_required"));
    assert_eq!(items[0]["details"]["credential_id"], json!(cred));
    assert_eq!(items[0]["details"]["token_endpoint_status"], 401);
    // the refusal is remembered briefly: the endpoint is not asked again at once
    let (st, _, _) = call(&s, &ch, &[]).await;
    assert_eq!(st, 502);
    assert_eq!(refused.calls(), 1);
}

#[tokio::test]
async fn a_credential_sluice_could_not_inject_is_refused_when_saved_or_changed() {
    let s = Sluice::start().await;
    let (st, e) = post(
        &s,
        "/credentials",
        json!({"name": "half", "schema": "http", "body": {"baseUrl": "https://example.org", "username": "u"}}),
    )
    .await;
    assert_eq!(st, 422, "{e}");
    assert!(
        e["details"]["fields"]["body"]
            .as_str()
            .is_some_and(|m| m.contains("username and password")),
        "{e}"
    );
    let cred = credential(&s, "http", json!({"username": "u", "password": "p"})).await;
    let res = s
        .api(reqwest::Method::PATCH, &format!("/credentials/{cred}"))
        .json(&json!({"body": {"password": null}}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        422,
        "removing the password would leave it unusable"
    );
    let res = s
        .api(reqwest::Method::PATCH, &format!("/credentials/{cred}"))
        .json(&json!({"body": {"password": null, "access_token": "t"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "a token instead is usable");
}

#[tokio::test]
async fn credential_api_validates_hides_secrets_and_audits_names_only() {
    let s = Sluice::start().await;
    // only admins manage credentials and auth methods
    let dir = s.data.path().to_str().unwrap().to_string();
    for role in ["viewer", "editor"] {
        let out = common::run(&[
            "token",
            "create",
            "--name",
            role,
            "--role",
            role,
            "--data-dir",
            &dir,
        ]);
        let token = out.lines().last().unwrap().trim().to_string();
        for (path, body) in [
            (
                "/credentials",
                json!({"name": "x", "schema": "http", "body": {}}),
            ),
            ("/auth-methods", json!({"name": "x", "type": "api_key"})),
        ] {
            let res = s
                .http()
                .post(s.url(&format!("/api/v1{path}")))
                .bearer_auth(&token)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 403, "{role} POST {path}");
        }
    }
    // 422 naming the field
    let (st, e) = post(
        &s,
        "/credentials",
        json!({"name": "d", "schema": "dhis2", "body": {"pat": "x"}}),
    )
    .await;
    assert_eq!(st, 422);
    assert!(e["details"]["fields"]["body.hostUrl"].is_string(), "{e}");
    let (st, e) = post(&s, "/credentials", json!({"name": "d", "schema": "dhis2", "body": {"hostUrl": "https://x.org", "username": 7, "password": "leak-me"}})).await;
    assert_eq!(st, 422);
    assert!(e["details"]["fields"]["body.username"].is_string(), "{e}");
    assert!(!e.to_string().contains("leak-me"));
    let (st, e) = post(
        &s,
        "/credentials",
        json!({"name": "d", "schema": "nope", "body": {}}),
    )
    .await;
    assert_eq!(st, 422);
    assert!(e["details"]["fields"]["schema"].is_string());

    let (st, c) = post(
        &s,
        "/credentials",
        json!({"name": "dhis", "schema": "dhis2", "body": {"hostUrl": "https://x.org", "username": "admin", "password": "pw-secret-1", "pat": "pat-secret-1"}}),
    )
    .await;
    assert_eq!(st, 201, "{c}");
    let id = c["id"].as_str().unwrap().to_string();
    for shown in [
        c.clone(),
        s.get_json(&format!("/credentials/{id}")).await,
        s.get_json("/credentials").await,
    ] {
        let text = shown.to_string();
        assert!(
            !text.contains("pw-secret-1") && !text.contains("pat-secret-1"),
            "{text}"
        );
    }
    assert_eq!(
        c["body"],
        json!({"hostUrl": "https://x.org", "username": "admin"})
    );
    assert_eq!(c["secret_fields"], json!(["password", "pat"]));

    // PATCH merges: secrets not sent are kept; null removes
    let res = s
        .api(Method::PATCH, &format!("/credentials/{id}"))
        .json(&json!({"body": {"username": "root", "pat": null}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let patched: Value = res.json().await.unwrap();
    assert_eq!(patched["secret_fields"], json!(["password"]));
    assert_eq!(patched["body"]["username"], "root");
    assert_eq!(patched["version"], 2);

    // channels: unknown references are 422, a used credential cannot be deleted
    let up = upstream::start().await;
    let ghost = uuid::Uuid::new_v4();
    let (st, e) = post(&s, "/channels", json!({"name": "x", "sink_url": up.url("/"), "sink_credential_id": ghost, "source_auth_method_ids": [ghost]})).await;
    assert_eq!(st, 422);
    assert!(e["details"]["fields"]["sink_credential_id"].is_string());
    assert!(e["details"]["fields"]["source_auth_method_ids"].is_string());
    let ch = s
        .create_channel(&up.url("/"), json!({"sink_credential_id": id}))
        .await;
    let del = |s: &Sluice| s.api(Method::DELETE, &format!("/credentials/{id}")).send();
    let res = del(&s).await.unwrap();
    assert_eq!(res.status(), 409);
    // the snapshot records the credential
    let (st, _, _) = call(&s, &ch, &[]).await;
    assert_eq!(st, 200);
    let snaps = s
        .get_json(&format!(
            "/channels/{}/snapshots",
            ch["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(snaps["items"][0]["config"]["sink_credential_id"], json!(id));
    let purged = s
        .api(
            Method::DELETE,
            &format!("/channels/{}?purge=true", ch["id"].as_str().unwrap()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(purged.status(), 204, "purging the channel that used it");
    assert_eq!(del(&s).await.unwrap().status(), 204);

    // audit: names of fields, never values
    let audit = s
        .get_json(&format!("/audit?resource_type=credential&resource_id={id}"))
        .await;
    let actions: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["delete", "update", "create"]);
    let update = &audit["items"][1];
    assert_eq!(
        update["after"]["changed_fields"],
        json!(["body.username", "body.pat"])
    );
    let (_, m) = post(
        &s,
        "/auth-methods",
        json!({"name": "b", "type": "basic", "username": "ann", "password": "pw-secret-2x"}),
    )
    .await;
    let audit_all = s.get_json("/audit?limit=500").await.to_string();
    for secret in ["pw-secret-1", "pat-secret-1", "pw-secret-2x"] {
        assert!(!audit_all.contains(secret), "{secret} in the audit trail");
    }
    assert!(
        audit_all.contains(m["id"].as_str().unwrap()),
        "auth method creation audited"
    );
}
