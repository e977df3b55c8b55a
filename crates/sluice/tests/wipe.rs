//! Wiping a recorded request: its content goes (headers, previews, path, query, client address),
//! the fact of it stays (state, status, sizes, timings, hashes), marked and audited; on both
//! backends.

mod common;

use std::sync::Arc;

use common::postgres::TestDatabase;
use common::{upstream, Sluice, TempDir};
use reqwest::Method;
use serde_json::{json, Value};

async fn wipe(s: &Sluice, id: &str) -> (u16, Value) {
    let res = s
        .api(Method::POST, &format!("/requests/{id}/wipe"))
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.json().await.unwrap())
}

async fn wipes_content_and_keeps_the_fact(s: &Sluice) {
    let up = upstream::start().await;
    let ch = s.create_channel(&up.url("/"), json!({})).await;
    let res = s
        .http()
        .post(s.proxy_url(&ch, "/orders/secret-path?customer=ann"))
        .header("x-customer", "ann@example.org")
        .body(r#"{"card": "4111 1111 1111 1111"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let history = s.history(&ch, "").await;
    let id = history[0]["id"].as_str().unwrap().to_string();
    let mut before = s.get_json(&format!("/requests/{id}")).await;
    for _ in 0..100 {
        if before["state"] != "pending" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        before = s.get_json(&format!("/requests/{id}")).await;
    }
    assert_eq!(before["wiped"], Value::Null);

    let (status, after) = wipe(s, &id).await;
    assert_eq!(status, 200, "{after}");
    let text = after.to_string();
    for gone in [
        "secret-path",
        "customer=ann",
        "ann@example.org",
        "4111",
        "127.0.0.1",
    ] {
        assert!(!text.contains(gone), "{gone} still in {after}");
    }
    for kept in [
        "state",
        "response_status",
        "request_body_size",
        "latency_us",
        "method",
    ] {
        assert_eq!(after[kept], before[kept], "{kept}");
    }
    let hashes = |v: &Value| {
        (
            v["event"]["request_body_sha256"].clone(),
            v["event"]["response_body_sha256"].clone(),
        )
    };
    assert_eq!(
        hashes(&after),
        hashes(&before),
        "the hashes prove what passed"
    );
    assert_eq!(
        after["event"]["request_body_sha256"].as_str().map(str::len),
        Some(64),
        "{after}"
    );
    assert_eq!(after["wiped"]["by"], "token:tests", "{after}");
    assert!(after["wiped"]["at"].is_string());

    // Again: the same answer, one audit entry.
    let (status, again) = wipe(s, &id).await;
    assert_eq!(status, 200);
    assert_eq!(again["wiped"], after["wiped"]);
    let audit = s
        .get_json(&format!("/audit?resource_type=request&resource_id={id}"))
        .await;
    let entries = audit["items"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{audit}");
    assert_eq!(entries[0]["action"], "wipe");

    // The history and the export hold nothing of it either.
    let listed = s.history(&ch, "").await;
    assert_eq!(listed[0]["path"], "");
    let har = s
        .api(Method::GET, &format!("/requests/{id}/export?format=curl"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !har.contains("4111") && !har.contains("secret-path"),
        "{har}"
    );
}

#[tokio::test]
async fn a_wiped_request_keeps_its_fact_and_loses_its_content_on_sqlite() {
    let s = Sluice::start().await;
    wipes_content_and_keeps_the_fact(&s).await;
}

#[tokio::test]
async fn a_wiped_request_keeps_its_fact_and_loses_its_content_on_postgres() {
    let Some(db) = TestDatabase::create("sluice_wipe").await else {
        return;
    };
    let s = Sluice::start_on(Arc::new(TempDir::new()), Some(&db.url), &[]).await;
    wipes_content_and_keeps_the_fact(&s).await;
    drop(s);
    db.drop().await;
}

#[tokio::test]
async fn wiping_an_unknown_request_is_404() {
    let s = Sluice::start().await;
    let (status, body) = wipe(&s, "01a2519d-962a-70d3-8b62-4ad6ad8e01ea").await;
    assert_eq!(status, 404, "{body}");
}

/// A project that records metadata only: its requests keep their fact and nothing of their
/// content, and read as wiped by the policy; switched back, requests are recorded whole.
async fn metadata_only_records_the_fact_alone(s: &Sluice) {
    let up = upstream::start().await;
    let ch = s.create_channel(&up.url("/"), json!({})).await;
    let project = ch["project_id"].as_str().unwrap();
    let set = |mode: &'static str| {
        s.api(Method::PATCH, &format!("/projects/{project}"))
            .json(&json!({ "recording": mode }))
            .send()
    };
    let res = set("everything").await.unwrap();
    assert_eq!(res.status(), 422, "an unknown mode is named");
    let res = set("metadata").await.unwrap();
    assert_eq!(res.status(), 200);
    let shown: Value = res.json().await.unwrap();
    assert_eq!(shown["recording"], "metadata");

    let send = |rid: &'static str| {
        s.http()
            .post(s.proxy_url(&ch, "/orders/secret-path?customer=ann"))
            .header("x-request-id", rid)
            .header("x-customer", "ann@example.org")
            .body(r#"{"card": "4111 1111 1111 1111"}"#)
            .send()
    };
    let res = send("metadata-only-request-000001").await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(
        res.text().await.unwrap().contains("secret-path"),
        "the sink got the request whole"
    );
    let rec = s.finished(&ch, "metadata-only-request-000001").await;
    let id = rec["id"].as_str().unwrap();
    let detail = s.get_json(&format!("/requests/{id}")).await;
    let text = detail.to_string();
    for gone in [
        "secret-path",
        "customer=ann",
        "ann@example.org",
        "4111",
        "127.0.0.1",
    ] {
        assert!(!text.contains(gone), "{gone} recorded: {detail}");
    }
    assert_eq!(detail["state"], "success");
    assert_eq!(detail["response_status"], 200);
    let body = br#"{"card": "4111 1111 1111 1111"}"#;
    assert_eq!(detail["request_body_size"], body.len());
    let sha = detail["event"]["request_body_sha256"].as_str().unwrap();
    assert_eq!(sha, common::sha256(body));
    assert_eq!(detail["wiped"]["by"], "policy:metadata-only", "{detail}");

    // Back to full recording: the next request is recorded whole.
    assert_eq!(set("full").await.unwrap().status(), 200);
    assert_eq!(
        send("metadata-only-request-000002").await.unwrap().status(),
        200
    );
    let rec = s.finished(&ch, "metadata-only-request-000002").await;
    assert_eq!(rec["path"], "/orders/secret-path");
    let detail = s
        .get_json(&format!("/requests/{}", rec["id"].as_str().unwrap()))
        .await;
    assert_eq!(detail["wiped"], Value::Null);
    let audit = s
        .get_json(&format!(
            "/audit?resource_type=project&resource_id={project}"
        ))
        .await;
    assert!(audit.to_string().contains("metadata"), "{audit}");
}

#[tokio::test]
async fn a_metadata_only_project_records_the_fact_alone_on_sqlite() {
    let s = Sluice::start().await;
    metadata_only_records_the_fact_alone(&s).await;
}

#[tokio::test]
async fn a_metadata_only_project_records_the_fact_alone_on_postgres() {
    let Some(db) = TestDatabase::create("sluice_metadata_only").await else {
        return;
    };
    let s = Sluice::start_on(Arc::new(TempDir::new()), Some(&db.url), &[]).await;
    metadata_only_records_the_fact_alone(&s).await;
    drop(s);
    db.drop().await;
}
