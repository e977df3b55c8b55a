//! The egress policy: sinks on loopback, private, link-local, CGNAT or unspecified addresses are
//! refused at save, at validation and when connecting (recorded `egress_denied`, 403 to the
//! caller), unless an allow list or `--egress-allow-private` opens them.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{upstream, Sluice, TempDir};
use reqwest::Method;
use serde_json::{json, Value};

/// Sluice with its default policy: nothing special allowed (a network the tests do not use is
/// allowed so the harness's loopback allowance is replaced).
async fn strict(data: Arc<TempDir>) -> Sluice {
    Sluice::start_in(data, &["--egress-allow", "192.0.2.0/24"]).await
}

/// POSTs `body` through `channel` to `s` (whichever sluice created the channel).
async fn post(s: &Sluice, channel: &Value, body: &'static str) -> u16 {
    let id = channel["id"].as_str().unwrap();
    s.http()
        .post(format!("{}/channels/{id}/x", s.base))
        .body(body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn create_channel(s: &Sluice, sink_url: &str) -> (u16, Value) {
    let res = s
        .api(Method::POST, "/channels")
        .json(&json!({ "name": format!("c-{}", uuid::Uuid::new_v4().simple()), "sink_url": sink_url }))
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.json().await.unwrap())
}

#[tokio::test]
async fn special_addresses_are_refused_at_save_and_validation_naming_the_address() {
    let s = strict(Arc::new(TempDir::new())).await;
    for (url, kind) in [
        ("http://127.0.0.1:9/", "loopback"),
        ("http://localhost:9/", "loopback"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://10.0.0.5:8080/", "private"),
        ("http://10.0.0.1/", "private"),
        ("http://100.64.1.1/", "CGNAT"),
        ("http://[::1]:9/", "loopback"),
        ("http://0.0.0.0:9/", "unspecified"),
    ] {
        let (status, body) = create_channel(&s, url).await;
        assert_eq!(status, 422, "{url}: {body}");
        let why = body["details"]["fields"]["sink_url"].as_str().unwrap();
        assert!(
            why.contains("egress_denied") && why.contains(kind),
            "{url}: {why}"
        );
    }
    // Validation (the form's Test, the health monitor) says so and how to allow it.
    let res = s
        .api(Method::POST, "/validate")
        .json(&json!({ "url": "http://169.254.169.254/" }))
        .send()
        .await
        .unwrap();
    let report: Value = res.json().await.unwrap();
    assert_eq!(report["ok"], false, "{report}");
    let dns = &report["steps"][1];
    assert!(
        dns["detail"].as_str().unwrap().contains("link-local"),
        "{report}"
    );
    assert!(
        dns["hint"].as_str().unwrap().contains("--egress-allow"),
        "{report}"
    );
    // An address allowed by the list passes.
    let (status, body) = create_channel(&s, "http://192.0.2.10/").await;
    assert_eq!(status, 201, "{body}");
}

#[tokio::test]
async fn a_sink_that_became_private_is_refused_when_connecting_403_and_recorded() {
    let up = upstream::start().await;
    let data = Arc::new(TempDir::new());
    // Saved while loopback was allowed (as a name whose address later turns private would be).
    let open = Sluice::start_in(data.clone(), &[]).await;
    let by_ip = open.create_channel(&up.url("/"), json!({})).await;
    let port = up.port();
    let by_name = open
        .create_channel(&format!("http://localhost:{port}/"), json!({}))
        .await;
    assert_eq!(post(&open, &by_ip, "hello").await, 200);
    drop(open);
    let reached = up.hits();

    let s = strict(data).await;
    for channel in [&by_ip, &by_name] {
        assert_eq!(
            post(&s, channel, "hello").await,
            403,
            "{}",
            channel["sink_url"]
        );
        let id = channel["id"].as_str().unwrap();
        let mut recorded = Value::Null;
        for _ in 0..50 {
            recorded = s.get_json(&format!("/channels/{id}/requests")).await;
            if recorded["items"][0]["state"] != "pending" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let newest = &recorded["items"][0];
        assert_eq!(newest["state"], "error", "{recorded}");
        assert_eq!(newest["error"], "egress_denied", "{recorded}");
    }
    assert_eq!(up.hits(), reached, "nothing reached the sink once refused");
}

#[tokio::test]
async fn an_allowed_host_name_or_allow_private_opens_the_way() {
    let up = upstream::start().await;
    let port = up.port();
    let s = Sluice::start_in(Arc::new(TempDir::new()), &["--egress-allow", "localhost"]).await;
    let (status, body) = create_channel(&s, &format!("http://localhost:{port}/")).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(post(&s, &body, "hi").await, 200);
    let (status, _) = create_channel(&s, &up.url("/")).await;
    assert_eq!(status, 422, "127.0.0.1 by address is not the allowed name");

    let s = Sluice::start_in(Arc::new(TempDir::new()), &["--egress-allow-private"]).await;
    let (status, body) = create_channel(&s, &up.url("/")).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(post(&s, &body, "hi").await, 200);
}

#[tokio::test]
async fn an_oauth_token_endpoint_on_a_refused_address_is_not_called() {
    let up = upstream::start().await;
    let tokens = common::token_server::start(
        200,
        json!({"access_token": "t", "expires_in": 3600}),
        Duration::ZERO,
    )
    .await;
    let port = up.port();
    // The sink is allowed by name; the token endpoint, 127.0.0.1 by address, is not.
    let s = Sluice::start_in(Arc::new(TempDir::new()), &["--egress-allow", "localhost"]).await;
    let res = s
        .api(Method::POST, "/credentials")
        .json(&json!({"name": "o", "schema": "oauth", "body": {
            "token_url": tokens.url(), "client_id": "id", "client_secret": "secret"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let cred: Value = res.json().await.unwrap();
    let (status, ch) = create_channel(&s, &format!("http://localhost:{port}/")).await;
    assert_eq!(status, 201, "{ch}");
    let id = ch["id"].as_str().unwrap();
    let res = s
        .api(Method::PATCH, &format!("/channels/{id}"))
        .json(&json!({"lock_version": ch["lock_version"], "sink_credential_id": cred["id"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    assert_eq!(post(&s, &ch, "hi").await, 403);
    assert_eq!(tokens.calls(), 0, "the token endpoint was not called");
}
