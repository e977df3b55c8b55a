//! Taking requests out: one as cURL (run by `curl` against the sink) or HAR 1.2 (checked
//! against the HAR schema), a filtered history as NDJSON, CSV or HAR; redacted values stay
//! redacted in every format.

mod common;

use common::{rid, upstream, Sluice};
use reqwest::Method;
use serde_json::{json, Value};
use tokio::process::Command;

/// A sluice without the health monitor, whose probes of the sink would count as its hits.
async fn quiet_sluice() -> Sluice {
    Sluice::start_in(
        std::sync::Arc::new(common::TempDir::new()),
        &["--health-interval", "0"],
    )
    .await
}

async fn export(s: &Sluice, path: &str) -> (u16, String, String) {
    let res = s.api(Method::GET, path).send().await.unwrap();
    let status = res.status().as_u16();
    let kind = res
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, kind, res.text().await.unwrap())
}

/// Sends a JSON POST with a query and an API key through a channel; returns the sink's echo
/// of what it received and the recorded request's ledger id.
async fn send_one(s: &Sluice, up: &upstream::Upstream) -> (Value, String, String) {
    let res = s
        .api(Method::POST, "/auth-methods")
        .json(&json!({ "name": "caller-key", "type": "api_key" }))
        .send()
        .await
        .unwrap();
    let key: Value = res.json().await.unwrap();
    let secret = key["api_key"].as_str().unwrap().to_string();
    let ch = s
        .create_channel(
            &up.url("/base/"),
            json!({ "source_auth_method_ids": [key["id"]] }),
        )
        .await;
    let id = rid();
    let body = r#"{"event":"it's here","values":[1,2,3]}"#;
    let res = s
        .http()
        .post(s.proxy_url(&ch, "/api/events?page=2&tag=a%20b"))
        .header("x-api-key", &secret)
        .header("x-request-id", &id)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let echo: Value = res.json().await.unwrap();
    let rec = s.finished(&ch, &id).await;
    (echo, rec["id"].as_str().unwrap().to_string(), secret)
}

#[tokio::test]
async fn a_curl_export_run_by_curl_reaches_the_sink_as_the_original_did() {
    let up = upstream::start().await;
    let s = quiet_sluice().await;
    let (echo, id, secret) = send_one(&s, &up).await;
    let (status, kind, command) = export(&s, &format!("/requests/{id}/export?format=curl")).await;
    assert_eq!(status, 200, "{command}");
    assert!(kind.starts_with("text/plain"), "{kind}");
    assert!(!command.contains(&secret), "the caller's key is not in it");
    let hits = up.hits();
    // Not a blocking wait: the sink runs on this test's runtime.
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!("{} --silent --show-error", command.trim_end()))
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{command}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(up.hits(), hits + 1, "curl went to the sink itself");
    let again: Value = serde_json::from_slice(&out.stdout).unwrap();
    for field in ["method", "path", "query", "body_len", "body_sha256"] {
        assert_eq!(again[field], echo[field], "{field}: {command}");
    }
}

#[tokio::test]
async fn a_har_export_is_valid_har_and_holds_the_exchange() {
    let up = upstream::start().await;
    let s = quiet_sluice().await;
    let (echo, id, secret) = send_one(&s, &up).await;
    let (status, kind, text) = export(&s, &format!("/requests/{id}/export?format=har")).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(kind, "application/json");
    assert!(!text.contains(&secret), "the caller's key is not in it");
    let har: Value = serde_json::from_str(&text).unwrap();
    let schema: Value = serde_json::from_str(include_str!("fixtures/har-1.2.schema.json")).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let problems: Vec<String> = validator.iter_errors(&har).map(|e| e.to_string()).collect();
    assert!(problems.is_empty(), "{problems:?}\n{har:#}");
    let mut broken = har.clone();
    broken["log"]["entries"][0]["request"]
        .as_object_mut()
        .unwrap()
        .remove("method");
    assert!(
        !validator.is_valid(&broken),
        "the schema does check entries"
    );

    let entry = &har["log"]["entries"][0];
    assert_eq!(entry["request"]["method"], "POST");
    let url = entry["request"]["url"].as_str().unwrap();
    assert_eq!(url, up.url("/base/api/events?page=2&tag=a%20b"));
    let query = &entry["request"]["queryString"];
    assert_eq!(
        query,
        &json!([{"name": "page", "value": "2"}, {"name": "tag", "value": "a b"}])
    );
    assert_eq!(
        entry["request"]["postData"]["text"],
        r#"{"event":"it's here","values":[1,2,3]}"#
    );
    assert_eq!(entry["request"]["postData"]["mimeType"], "application/json");
    assert_eq!(entry["response"]["status"], 200);
    let answered: Value =
        serde_json::from_str(entry["response"]["content"]["text"].as_str().unwrap()).unwrap();
    assert_eq!(answered["body_sha256"], echo["body_sha256"]);
    let sent: Vec<&str> = entry["request"]["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["name"].as_str().unwrap())
        .collect();
    assert!(sent.contains(&"content-type"), "{sent:?}");
}

#[tokio::test]
async fn a_filtered_history_exports_as_ndjson_csv_and_har() {
    let up = upstream::start().await;
    let s = quiet_sluice().await;
    let ch = s
        .create_channel(&up.url("/"), json!({ "name": "many" }))
        .await;
    let cid = ch["id"].as_str().unwrap().to_string();
    // More than one page of the export's reads (500), a few of them failed.
    let mut failed = 0;
    for i in 0..520 {
        let path = if i % 100 == 7 {
            failed += 1;
            "/status/503".to_string()
        } else {
            format!("/ok,{i}")
        };
        s.http().get(s.proxy_url(&ch, &path)).send().await.unwrap();
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let all = common::every_request(&s, &cid).await;
        if all.len() == 520 && all.iter().all(|r| r["state"] != "pending") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} recorded",
            all.len()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    let (status, kind, ndjson) = export(
        &s,
        &format!("/channels/{cid}/requests/export?format=ndjson"),
    )
    .await;
    assert_eq!((status, kind.as_str()), (200, "application/x-ndjson"));
    let rows: Vec<Value> = ndjson
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 520, "every request, across pages");
    let mut ids: Vec<&str> = rows.iter().map(|r| r["id"].as_str().unwrap()).collect();
    ids.dedup();
    assert_eq!(ids.len(), 520, "each once");

    let (_, _, only_failed) = export(
        &s,
        &format!("/channels/{cid}/requests/export?format=ndjson&state=failed"),
    )
    .await;
    let rows: Vec<Value> = only_failed
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), failed);
    assert!(rows.iter().all(|r| r["response_status"] == 503));

    let (status, kind, csv) = export(
        &s,
        &format!("/channels/{cid}/requests/export?format=csv&status=2xx"),
    )
    .await;
    assert_eq!((status, kind.as_str()), (200, "text/csv; charset=utf-8"));
    let mut lines = csv.lines();
    let head = lines.next().unwrap();
    assert!(head.starts_with("id,request_id,started_at"), "{head}");
    let body: Vec<&str> = lines.collect();
    assert_eq!(body.len(), 520 - failed);
    assert!(
        body.iter().any(|l| l.contains("\"/ok,12\"")),
        "a path with a comma is quoted"
    );

    let (status, _, har) = export(
        &s,
        &format!("/channels/{cid}/requests/export?format=har&limit=3"),
    )
    .await;
    assert_eq!(status, 200);
    let har: Value = serde_json::from_str(&har).unwrap();
    assert_eq!(
        har["log"]["entries"].as_array().unwrap().len(),
        3,
        "the newest three"
    );

    let (status, _, problem) =
        export(&s, &format!("/channels/{cid}/requests/export?format=xml")).await;
    assert_eq!(status, 400, "{problem}");
    assert!(problem.contains("format"), "{problem}");
}

#[tokio::test]
async fn a_body_recorded_whole_is_served_as_it_passed_and_one_kept_in_part_is_refused() {
    let up = upstream::start().await;
    let s = quiet_sluice().await;
    let (echo, id, _) = send_one(&s, &up).await;
    let res = s
        .api(Method::GET, &format!("/requests/{id}/body/request"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/json");
    let sent = res.bytes().await.unwrap();
    assert_eq!(common::sha256(&sent), echo["body_sha256"].as_str().unwrap());
    let res = s
        .api(Method::GET, &format!("/requests/{id}/body/response"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let answered: Value = res.json().await.unwrap();
    assert_eq!(answered, echo, "the sink's answer, byte for byte");
    let res = s
        .api(Method::GET, &format!("/requests/{id}/body/other"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);

    // A channel that keeps 16 bytes of each body: a longer one is not passed off as whole.
    let ch = s
        .create_channel(&up.url("/"), json!({ "preview_bytes": 16 }))
        .await;
    let rid = rid();
    s.http()
        .post(s.proxy_url(&ch, "/long"))
        .header("x-request-id", &rid)
        .body(vec![b'a'; 100])
        .send()
        .await
        .unwrap();
    let rec = s.finished(&ch, &rid).await;
    let res = s
        .api(
            Method::GET,
            &format!("/requests/{}/body/request", rec["id"].as_str().unwrap()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 409);
    let problem: Value = res.json().await.unwrap();
    assert_eq!(problem["details"]["kept_bytes"], 16, "{problem}");
    assert_eq!(problem["details"]["size"], 100, "{problem}");
    assert_eq!(problem["details"]["reason"], "too_large", "{problem}");
}
