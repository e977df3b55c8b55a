//! The management API (PRODUCT.md §4) over real HTTP.

mod common;

use common::{rid, upstream, Sluice};
use reqwest::Method;
use serde_json::{json, Value};

async fn send(s: &Sluice, m: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = s.api(m, path);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let text = res.text().await.unwrap();
    (
        status,
        if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap()
        },
    )
}

#[tokio::test]
async fn the_api_requires_a_valid_bearer_token() {
    let s = Sluice::start().await;
    let anon = s
        .http()
        .get(s.url("/api/v1/channels"))
        .send()
        .await
        .unwrap();
    assert_eq!(anon.status(), 401);
    assert!(anon.json::<Value>().await.unwrap()["error"].is_string());
    let wrong = s
        .http()
        .get(s.url("/api/v1/channels"))
        .bearer_auth("slc_nope")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);

    let dir = s.data.path().to_str().unwrap().to_string();
    let out = common::run(&[
        "token",
        "create",
        "--name",
        "reader",
        "--role",
        "viewer",
        "--data-dir",
        &dir,
    ]);
    let viewer = out.lines().last().unwrap().to_string();
    let ok = s
        .http()
        .get(s.url("/api/v1/channels"))
        .bearer_auth(&viewer)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let denied = s
        .http()
        .post(s.url("/api/v1/channels"))
        .bearer_auth(&viewer)
        .json(&json!({ "name": "x", "sink_url": "http://127.0.0.1:1/" }))
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 403);
}

#[tokio::test]
async fn channel_lifecycle_with_locking_audit_and_purge() {
    let up = upstream::start().await;
    let s = Sluice::start().await;
    let (st, ch) = send(
        &s,
        Method::POST,
        "/channels",
        Some(json!({ "name": "orders", "sink_url": up.url("/") })),
    )
    .await;
    assert_eq!(st, 201, "{ch}");
    for f in [
        "id",
        "project_id",
        "name",
        "sink_url",
        "enabled",
        "lock_version",
        "proxy_url",
        "source_auth_method_ids",
        "sink_credential_id",
        "timeouts",
        "preview_bytes",
        "created_at",
        "updated_at",
    ] {
        assert!(ch.get(f).is_some(), "channel lacks {f}");
    }
    assert_eq!(ch["lock_version"], 1);
    assert_eq!(
        ch["validation"]["ok"], true,
        "the sink was validated on create"
    );
    let id = ch["id"].as_str().unwrap().to_string();
    assert_eq!(ch["proxy_url"], format!("{}/channels/{id}", s.base));
    assert!(ch["created_at"].as_str().unwrap().ends_with('Z'));

    let (st, got) = send(&s, Method::GET, &format!("/channels/{id}"), None).await;
    assert_eq!((st, got["name"].clone()), (200, json!("orders")));

    let (st, patched) = send(
        &s,
        Method::PATCH,
        &format!("/channels/{id}"),
        Some(json!({ "lock_version": 1, "name": "orders-v2", "timeouts": { "connect_ms": 1000 } })),
    )
    .await;
    assert_eq!(st, 200, "{patched}");
    assert_eq!(patched["lock_version"], 2);
    assert_eq!(patched["timeouts"]["connect_ms"], 1000);

    let (st, stale) = send(
        &s,
        Method::PATCH,
        &format!("/channels/{id}"),
        Some(json!({ "lock_version": 1, "enabled": false })),
    )
    .await;
    assert_eq!(st, 409);
    assert_eq!(stale["details"]["current_lock_version"], 2);

    let (st, missing) = send(
        &s,
        Method::PATCH,
        &format!("/channels/{id}"),
        Some(json!({ "enabled": false })),
    )
    .await;
    assert_eq!(st, 422);
    assert!(
        missing["details"]["fields"]["lock_version"].is_string(),
        "{missing}"
    );

    let rid = rid();
    s.http()
        .get(format!("{}/channels/{id}/x", s.base))
        .header("x-request-id", &rid)
        .send()
        .await
        .unwrap();
    s.finished(&patched, &rid).await;
    let (st, refused) = send(&s, Method::DELETE, &format!("/channels/{id}"), None).await;
    assert_eq!(st, 409, "history protects the channel");
    assert_eq!(refused["details"]["requests"], 1);
    let (st, _) = send(
        &s,
        Method::DELETE,
        &format!("/channels/{id}?purge=true"),
        None,
    )
    .await;
    assert_eq!(st, 204);
    let (st, _) = send(&s, Method::GET, &format!("/channels/{id}"), None).await;
    assert_eq!(st, 404);

    let (_, audit) = send(
        &s,
        Method::GET,
        &format!("/audit?resource_type=channel&resource_id={id}"),
        None,
    )
    .await;
    let actions: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["delete", "update", "create"]);
    let update = &audit["items"][1];
    assert_eq!(update["actor"], "token:tests");
    assert_eq!(update["before"]["name"], "orders");
    assert_eq!(update["after"]["name"], "orders-v2");
}

#[tokio::test]
async fn bad_input_gets_422_naming_the_field_and_writes_nothing() {
    let s = Sluice::start().await;
    let cases = [
        (json!({ "name": "a", "sink_url": "ftp://x" }), "sink_url"),
        (json!({ "name": "a", "sink_url": "not a url" }), "sink_url"),
        (json!({ "name": "a", "sink_url": "http://" }), "sink_url"),
        (
            json!({ "name": "", "sink_url": "http://127.0.0.1:1/" }),
            "name",
        ),
        (json!({ "sink_url": "http://127.0.0.1:1/" }), "name"),
        (
            json!({ "name": "a", "sink_url": "http://127.0.0.1:1/", "colour": "red" }),
            "colour",
        ),
        (
            json!({ "name": "a", "sink_url": "http://127.0.0.1:1/", "enabled": "yes" }),
            "enabled",
        ),
        (
            json!({ "name": "a", "sink_url": "http://127.0.0.1:1/", "timeouts": { "connect_ms": 0 } }),
            "timeouts.connect_ms",
        ),
        (
            json!({ "name": "a", "sink_url": "http://127.0.0.1:1/", "timeouts": { "bogus_ms": 5 } }),
            "bogus_ms",
        ),
        (
            json!({ "name": "a", "sink_url": "http://127.0.0.1:1/", "project_id": uuid::Uuid::new_v4() }),
            "project_id",
        ),
    ];
    for (body, field) in cases {
        let (st, err) = send(&s, Method::POST, "/channels", Some(body.clone())).await;
        assert_eq!(st, 422, "{body} -> {err}");
        assert!(err["error"].is_string());
        assert!(
            err["details"]["fields"][field].is_string(),
            "{body} should name {field}: {err}"
        );
    }
    let not_json = s
        .api(Method::POST, "/channels")
        .body("{oops")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), 422);
    let (_, list) = send(&s, Method::GET, "/channels", None).await;
    assert_eq!(
        list["items"].as_array().unwrap().len(),
        0,
        "nothing half-written"
    );

    let (st, _) = send(
        &s,
        Method::POST,
        "/channels",
        Some(json!({ "name": "dup", "sink_url": "http://127.0.0.1:1/" })),
    )
    .await;
    assert_eq!(st, 201);
    let (st, err) = send(
        &s,
        Method::POST,
        "/channels",
        Some(json!({ "name": "dup", "sink_url": "http://127.0.0.1:1/" })),
    )
    .await;
    assert_eq!(st, 422);
    assert!(err["details"]["fields"]["name"]
        .as_str()
        .unwrap()
        .contains("already exists"));
    let (st, err) = send(&s, Method::GET, "/channels?limit=9999", None).await;
    assert_eq!(st, 400);
    assert!(err["details"]["fields"]["limit"].is_string());
}

#[tokio::test]
async fn history_filters_paginate_and_details_and_stats() {
    let up = upstream::start().await;
    let s = Sluice::start().await;
    let ch = s.create_channel(&up.url("/"), json!({})).await;
    let id = ch["id"].as_str().unwrap();
    let plan = [
        ("GET", "/status/200"),
        ("POST", "/status/404"),
        ("PUT", "/status/503"),
        ("GET", "/api/ok"),
    ];
    for i in 0..12 {
        let (m, p) = plan[i % plan.len()];
        s.http()
            .request(
                Method::from_bytes(m.as_bytes()).unwrap(),
                s.proxy_url(&ch, p),
            )
            .send()
            .await
            .unwrap();
    }
    s.finished_n(&ch, 12).await;
    let count = |q: &str| {
        let q = q.to_string();
        let s = &s;
        let ch = &ch;
        async move { s.history(ch, &q).await.len() }
    };
    assert_eq!(count("state=success").await, 6);
    assert_eq!(count("state=failed").await, 6);
    assert_eq!(count("method=PUT").await, 3);
    assert_eq!(count("status=5xx").await, 3);
    assert_eq!(count("status=404").await, 3);
    assert_eq!(count("path_prefix=/api/").await, 3);
    assert_eq!(count("since=2000-01-01T00:00:00Z").await, 12);
    assert_eq!(count("until=2000-01-01T00:00:00Z").await, 0);
    let (st, err) = send(
        &s,
        Method::GET,
        &format!("/channels/{id}/requests?state=bogus"),
        None,
    )
    .await;
    assert_eq!(st, 400);
    assert!(err["details"]["fields"]["state"].is_string());

    let mut seen = std::collections::HashSet::new();
    let mut cursor: Option<String> = None;
    let mut last_started = String::from("9999");
    loop {
        let q = cursor
            .as_ref()
            .map(|c| format!("&cursor={c}"))
            .unwrap_or_default();
        let page = s
            .get_json(&format!("/channels/{id}/requests?limit=5{q}"))
            .await;
        for r in page["items"].as_array().unwrap() {
            assert!(seen.insert(r["id"].as_str().unwrap().to_string()));
            let started = r["started_at"].as_str().unwrap().to_string();
            assert!(started <= last_started, "newest first");
            last_started = started;
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 12);

    let one = s.history(&ch, "status=503").await[0].clone();
    let detail = s
        .get_json(&format!("/requests/{}", one["id"].as_str().unwrap()))
        .await;
    for f in [
        "request_headers",
        "response_headers",
        "request_body_sha256",
        "response_body_sha256",
        "request_body_preview",
        "response_body_preview",
        "latency_us",
        "ttfb_us",
    ] {
        assert!(detail["event"].get(f).is_some(), "event lacks {f}");
    }
    assert_eq!(
        detail["event"]["response_body_preview"]["data"],
        "status 503"
    );

    let stats = s.get_json(&format!("/channels/{id}/stats")).await;
    assert_eq!(stats["total"], 12);
    assert_eq!(stats["by_state"]["success"], 6);
    assert_eq!(stats["by_state"]["failed"], 6);
    let p50 = stats["latency_us"]["p50"].as_i64().unwrap();
    let p99 = stats["latency_us"]["p99"].as_i64().unwrap();
    assert!(p50 > 0 && p50 <= p99);
    // Each minute's count, and the same split by state, add up to the totals.
    let minutes = stats["requests_per_minute"].as_array().unwrap();
    let sum = |f: &dyn Fn(&Value) -> i64| minutes.iter().map(f).sum::<i64>();
    assert_eq!(sum(&|m| m["count"].as_i64().unwrap()), 12);
    for state in ["success", "failed"] {
        let per_minute = sum(&|m| m["by_state"][state].as_i64().unwrap_or(0));
        assert_eq!(per_minute, 6, "{state}");
    }
    let (st, _) = send(
        &s,
        Method::GET,
        &format!("/requests/{}", uuid::Uuid::new_v4()),
        None,
    )
    .await;
    assert_eq!(st, 404);
}

#[tokio::test]
async fn health_readiness_and_cli_channel_list() {
    let up = upstream::start().await;
    let s = Sluice::start().await;
    assert_eq!(
        s.http()
            .get(s.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        s.http()
            .get(s.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let ch = s.create_channel(&up.url("/listed"), json!({})).await;
    let out = common::run(&[
        "channel",
        "list",
        "--data-dir",
        s.data.path().to_str().unwrap(),
    ]);
    assert!(
        out.contains(ch["id"].as_str().unwrap()) && out.contains("/listed"),
        "{out}"
    );
}

#[tokio::test]
async fn instance_settings_are_saved_checked_audited_and_returned_to_their_default() {
    let s = Sluice::start_in(
        std::sync::Arc::new(common::TempDir::new()),
        &["--stale-threshold-days", "9"],
    )
    .await;
    let item = |page: &Value, name: &str| {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["name"] == name)
            .cloned()
            .unwrap()
    };
    let (status, page) = send(&s, Method::GET, "/settings", None).await;
    assert_eq!(status, 200);
    let stale = item(&page, "stale_threshold_days");
    assert_eq!(
        (&stale["value"], &stale["default"], &stale["saved"]),
        (&json!(9), &json!(9), &json!(false)),
        "the command line's value is the default: {stale}"
    );
    assert_eq!(item(&page, "event_retention_days")["value"], 30);

    let (status, page) = send(
        &s,
        Method::PATCH,
        "/settings",
        Some(json!({ "stale_threshold_days": 2 })),
    )
    .await;
    assert_eq!(status, 200, "{page}");
    let stale = item(&page, "stale_threshold_days");
    assert_eq!(
        (&stale["value"], &stale["saved"]),
        (&json!(2), &json!(true))
    );
    let (_, again) = send(&s, Method::GET, "/settings", None).await;
    assert_eq!(item(&again, "stale_threshold_days")["value"], 2, "kept");

    for (body, field) in [
        (json!({ "stale_threshold_days": 0 }), "stale_threshold_days"),
        (
            json!({ "health_interval_secs": -1 }),
            "health_interval_secs",
        ),
        (
            json!({ "event_retention_days": "ten" }),
            "event_retention_days",
        ),
        (json!({ "no_such_thing": 1 }), "no_such_thing"),
    ] {
        let (status, problem) = send(&s, Method::PATCH, "/settings", Some(body)).await;
        assert_eq!(status, 422, "{problem}");
        assert!(
            problem["details"]["fields"][field].is_string(),
            "names {field}: {problem}"
        );
    }
    let (_, unchanged) = send(&s, Method::GET, "/settings", None).await;
    assert_eq!(
        item(&unchanged, "stale_threshold_days")["value"],
        2,
        "refusals change nothing"
    );

    let (_, audit) = send(&s, Method::GET, "/audit?resource_type=setting", None).await;
    let entries = audit["items"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{audit}");
    assert_eq!(entries[0]["resource_id"], "stale_threshold_days");
    assert_eq!(entries[0]["before"], json!({ "value": null }));
    assert_eq!(entries[0]["after"], json!({ "value": 2 }));

    let (_, page) = send(
        &s,
        Method::PATCH,
        "/settings",
        Some(json!({ "stale_threshold_days": null })),
    )
    .await;
    let stale = item(&page, "stale_threshold_days");
    assert_eq!(
        (&stale["value"], &stale["saved"]),
        (&json!(9), &json!(false))
    );
}
