//! What is recorded (PRODUCT.md §3): hashes, sizes, previews, headers, redaction, snapshots.

mod common;

use common::{rid, sha256, upstream, Sluice};
use serde_json::{json, Value};

fn preview_bytes(p: &Value) -> Vec<u8> {
    use base64::Engine;
    let data = p["data"].as_str().unwrap();
    match p["encoding"].as_str().unwrap() {
        "utf8" => data.as_bytes().to_vec(),
        "base64" => base64::engine::general_purpose::STANDARD
            .decode(data)
            .unwrap(),
        other => panic!("unknown encoding {other}"),
    }
}

#[tokio::test]
async fn hashes_sizes_and_previews_match_the_bytes_that_passed() {
    let up = upstream::start().await;
    let s = Sluice::start().await;
    let preview = 65536usize;
    let ch = s.create_channel(&up.url("/"), json!({})).await;
    assert_eq!(ch["preview_bytes"], preview);
    for size in [
        0usize,
        1,
        preview - 1,
        preview,
        preview + 1,
        10 * 1024 * 1024,
    ] {
        let body = upstream::pattern(size);
        let id = rid();
        // echo-body sends the request body back: both directions carry the same bytes
        let res = s
            .http()
            .post(s.proxy_url(&ch, "/echo-body"))
            .header("x-request-id", &id)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let got = res.bytes().await.unwrap();
        assert_eq!(got.len(), size, "response streamed back whole");
        let rec = s.finished(&ch, &id).await;
        let ev = &rec["event"];
        for dir in ["request", "response"] {
            assert_eq!(
                ev[format!("{dir}_body_sha256")],
                sha256(&body),
                "{dir} hash for {size} B"
            );
            assert_eq!(ev[format!("{dir}_body_size")], size);
            assert_eq!(rec[format!("{dir}_body_size")], size);
            let p = &ev[format!("{dir}_body_preview")];
            assert_eq!(
                p["truncated"],
                size > preview,
                "{dir} truncated flag for {size} B"
            );
            assert_eq!(
                preview_bytes(p),
                body[..size.min(preview)],
                "{dir} preview for {size} B"
            );
        }
    }
}

/// Operators watch requests live: one waiting on its sink is in the history, its detail and the
/// channel's stats as `pending` (on SQLite its record is in the journal until a reader asks).
#[tokio::test]
async fn a_request_in_flight_is_visible_as_pending_until_it_finishes() {
    let up = upstream::start().await;
    let s = Sluice::start().await;
    let ch = s.create_channel(&up.url("/"), json!({})).await;
    let id = rid();
    let call = s
        .http()
        .post(s.proxy_url(&ch, "/delay/3000/slow"))
        .header("x-request-id", &id)
        .body("in flight")
        .send();
    let call = tokio::spawn(call);
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(2500);
    let row = loop {
        let items = s.history(&ch, &format!("request_id={id}")).await;
        if let Some(r) = items.first() {
            break r.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the request in flight never showed in the history"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(row["state"], "pending", "{row}");
    let detail = s
        .get_json(&format!("/requests/{}", row["id"].as_str().unwrap()))
        .await;
    assert_eq!(detail["state"], "pending", "{detail}");
    assert_eq!(detail["path"], "/delay/3000/slow");
    let cid = ch["id"].as_str().unwrap();
    let stats = s
        .get_json(&format!("/channels/{cid}/stats?since=2000-01-01T00:00:00Z"))
        .await;
    assert_eq!(stats["by_state"]["pending"], 1, "{stats}");

    assert_eq!(call.await.unwrap().unwrap().status(), 200);
    let done = s.finished(&ch, &id).await;
    assert_eq!(done["state"], "success");
    assert_eq!(done["id"], row["id"], "the same record, finished");
    let stats = s
        .get_json(&format!("/channels/{cid}/stats?since=2000-01-01T00:00:00Z"))
        .await;
    assert_eq!(stats["by_state"]["pending"], 0, "{stats}");
    assert_eq!(stats["total"], 1, "counted once");
}

#[tokio::test]
async fn preview_size_is_per_channel() {
    let up = upstream::start().await;
    let s = Sluice::start().await;
    let ch = s
        .create_channel(&up.url("/"), json!({ "preview_bytes": 10 }))
        .await;
    let id = rid();
    s.http()
        .post(s.proxy_url(&ch, "/echo-body"))
        .header("x-request-id", &id)
        .body("0123456789abcdef")
        .send()
        .await
        .unwrap();
    let rec = s.finished(&ch, &id).await;
    let p = &rec["event"]["request_body_preview"];
    assert_eq!(p["data"], "0123456789");
    assert_eq!(p["encoding"], "utf8");
    assert_eq!(p["truncated"], true);
    assert_eq!(
        rec["event"]["request_body_sha256"],
        sha256(b"0123456789abcdef")
    );
}

#[tokio::test]
async fn headers_are_recorded_in_order_with_secrets_redacted_and_never_stored_in_clear() {
    let up = upstream::start().await;
    let s = Sluice::start().await;
    let ch = s.create_channel(&up.url("/"), json!({})).await;
    let id = rid();
    s.http()
        .get(s.proxy_url(&ch, "/status/200")) // does not echo headers into its body
        .header("x-request-id", &id)
        .header("authorization", "Bearer caller-token-secret")
        .header("x-api-key", "caller-api-key-secret")
        .header("cookie", "sid=caller-cookie-secret")
        .header("x-trace", "one")
        .header("x-trace", "two")
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let rec = s.finished(&ch, &id).await;
    let ev = &rec["event"];
    let req: Vec<(String, String)> = serde_json::from_value(ev["request_headers"].clone()).unwrap();
    let res: Vec<(String, String)> =
        serde_json::from_value(ev["response_headers"].clone()).unwrap();
    let value = |h: &[(String, String)], n: &str| -> Vec<String> {
        h.iter()
            .filter(|(k, _)| k == n)
            .map(|(_, v)| v.clone())
            .collect()
    };
    for n in ["authorization", "x-api-key", "cookie"] {
        assert_eq!(value(&req, n), ["[REDACTED]"], "{n}");
    }
    assert_eq!(value(&res, "set-cookie"), ["[REDACTED]"]);
    assert_eq!(
        value(&req, "x-trace"),
        ["one", "two"],
        "duplicates kept in order"
    );
    assert_eq!(value(&req, "x-request-id"), std::slice::from_ref(&id));
    assert_eq!(value(&res, "content-type"), ["text/plain"]);

    // Nothing secret anywhere in the ledger files (database, WAL, journal).
    let mut bytes = Vec::new();
    let mut dirs = vec![s.data.path().to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                bytes.extend(std::fs::read(path).unwrap());
            }
        }
    }
    let text = String::from_utf8_lossy(&bytes);
    assert!(
        text.contains(&id),
        "the scan does see the ledger's contents"
    );
    for secret in [
        "caller-token-secret",
        "caller-api-key-secret",
        "caller-cookie-secret",
        "upstream-cookie-secret",
    ] {
        assert!(!text.contains(secret), "{secret} stored in clear");
    }
}

#[tokio::test]
async fn snapshots_are_one_per_lock_version_and_requests_point_to_the_one_in_force() {
    let up = upstream::start().await;
    let s = Sluice::start().await;
    let ch = s.create_channel(&up.url("/v1"), json!({})).await;
    let cid = ch["id"].as_str().unwrap();
    let mut first_ids = Vec::new();
    for _ in 0..3 {
        let id = rid();
        s.http()
            .get(s.proxy_url(&ch, "/a"))
            .header("x-request-id", &id)
            .send()
            .await
            .unwrap();
        first_ids.push(s.finished(&ch, &id).await["snapshot_id"].clone());
    }
    assert!(
        first_ids.windows(2).all(|w| w[0] == w[1]),
        "same configuration, same snapshot"
    );

    let res = s
        .api(reqwest::Method::PATCH, &format!("/channels/{cid}"))
        .json(&json!({ "lock_version": 1, "sink_url": up.url("/v2") }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let id = rid();
    let echo: Value = s
        .http()
        .get(s.proxy_url(&ch, "/a"))
        .header("x-request-id", &id)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(echo["path"], "/v2/a", "the change took effect at once");
    let second = s.finished(&ch, &id).await["snapshot_id"].clone();
    assert_ne!(second, first_ids[0]);

    let snaps = s.get_json(&format!("/channels/{cid}/snapshots")).await;
    let items = snaps["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["id"], second);
    assert_eq!(items[0]["lock_version"], 2);
    assert_eq!(items[0]["config"]["sink_url"], up.url("/v2"));
    assert_eq!(items[1]["id"], first_ids[0]);
    assert_eq!(items[1]["config"]["sink_url"], up.url("/v1"));
    let one = s
        .get_json(&format!("/snapshots/{}", second.as_str().unwrap()))
        .await;
    assert_eq!(one["lock_version"], 2);
}

#[tokio::test]
async fn metrics_expose_requests_latency_and_ledger_series() {
    let up = upstream::start().await;
    let s = Sluice::start().await;
    let ch = s.create_channel(&up.url("/"), json!({})).await;
    let id = rid();
    s.http()
        .get(s.proxy_url(&ch, "/m"))
        .header("x-request-id", &id)
        .send()
        .await
        .unwrap();
    s.finished(&ch, &id).await;
    let text = s.metrics_text().await;
    let cid = ch["id"].as_str().unwrap();
    assert!(
        text.contains(&format!(
            "sluice_proxy_requests_total{{channel=\"{cid}\",state=\"success\"}} 1"
        )),
        "{text}"
    );
    for series in [
        "sluice_proxy_latency_seconds_bucket",
        "sluice_proxy_ttfb_seconds_bucket",
        "sluice_proxy_phase_seconds_sum{phase=\"ledger\"}",
        "sluice_ledger_batch_size_bucket",
        "sluice_ledger_commit_seconds_sum{writer=\"journal\"}",
        "sluice_ledger_queue_depth",
        "sluice_process_pid",
    ] {
        assert!(text.contains(series), "missing {series}");
    }
    assert!(text.contains(&format!("sluice_process_pid {}", s.pid())));
}
