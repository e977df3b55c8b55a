//! The proxy path (PRODUCT.md §2) against a real sluice and a real upstream.

mod common;

use std::time::Duration;

use common::{rid, sha256, upstream, Sluice};
use reqwest::Method;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn header<'a>(echo: &'a Value, name: &str) -> Vec<&'a str> {
    echo["headers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p[0].as_str().unwrap().eq_ignore_ascii_case(name))
        .map(|p| p[1].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn every_method_reaches_the_sink_with_body_and_query_unchanged() {
    let up = upstream::start().await;
    let s = Sluice::start().await;
    let ch = s.create_channel(&up.url("/"), json!({})).await;
    let body: Vec<u8> = (0..=255u8).cycle().take(3000).collect();
    for m in ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "PURGE"] {
        let method = Method::from_bytes(m.as_bytes()).unwrap();
        let res = s
            .http()
            .request(method, s.proxy_url(&ch, "/items/7?a=1&b=%20x&c&d=%2F&a=2"))
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{m}");
        let echo: Value = res.json().await.unwrap();
        assert_eq!(echo["method"], m);
        assert_eq!(echo["path"], "/items/7");
        assert_eq!(
            echo["query"], "a=1&b=%20x&c&d=%2F&a=2",
            "query passed verbatim"
        );
        assert_eq!(echo["body_len"], 3000);
        assert_eq!(echo["body_sha256"], sha256(&body));
    }
    let head = s.http().head(s.proxy_url(&ch, "/x")).send().await.unwrap();
    assert_eq!(head.status(), 200);
    let done = s.finished_n(&ch, 8).await;
    let mut methods: Vec<&str> = done.iter().map(|r| r["method"].as_str().unwrap()).collect();
    methods.sort();
    assert_eq!(
        methods,
        ["DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PURGE", "PUT"]
    );
    assert!(done.iter().all(|r| r["state"] == "success"), "{done:?}");
}

#[tokio::test]
async fn paths_join_without_double_or_missing_slashes() {
    let up = upstream::start().await;
    let s = Sluice::start().await;
    let cases = [
        ("/", "", "/"),
        ("/", "/", "/"),
        ("/", "/a/b", "/a/b"),
        ("", "/a", "/a"),
        ("/base/", "/a", "/base/a"),
        ("/base/", "", "/base/"),
        ("/base", "", "/base"),
        ("/base", "/a/b/", "/base/a/b/"),
    ];
    for (sink_path, rest, expected) in cases {
        let ch = s.create_channel(&up.url(sink_path), json!({})).await;
        let echo: Value = s
            .http()
            .get(s.proxy_url(&ch, rest))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            echo["path"], expected,
            "sink path {sink_path:?} + rest {rest:?}"
        );
    }
}

#[tokio::test]
async fn unknown_bad_and_disabled_channels_answer_404_json() {
    let up = upstream::start().await;
    let s = Sluice::start_in(
        std::sync::Arc::new(common::TempDir::new()),
        &["--health-interval", "0"], // its probes would count as hits
    )
    .await;
    let disabled = s
        .create_channel(&up.url("/"), json!({ "enabled": false }))
        .await;
    let probes = up.hits(); // channel creation validates the sink
    for url in [
        s.url("/channels/not-a-uuid/x"),
        s.url(&format!("/channels/{}", uuid::Uuid::new_v4())),
        s.proxy_url(&disabled, "/x"),
    ] {
        let res = s.http().post(&url).body("x").send().await.unwrap();
        assert_eq!(res.status(), 404, "{url}");
        assert_eq!(res.headers()["content-type"], "application/json");
        assert_eq!(
            res.json::<Value>().await.unwrap(),
            json!({ "error": "Not Found" })
        );
    }
    assert_eq!(up.hits(), probes, "nothing was forwarded");
}

#[tokio::test]
async fn a_separate_admin_listener_keeps_the_api_and_the_proxy_apart() {
    let up = upstream::start().await;
    let admin = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let s = Sluice::start_in(
        std::sync::Arc::new(common::TempDir::new()),
        &["--admin-listen", &admin],
    )
    .await;
    let res = s
        .http()
        .post(format!("http://{admin}/api/v1/channels"))
        .bearer_auth(&s.token)
        .json(&json!({ "name": "split", "sink_url": up.url("/") }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201, "the API answers on the admin listener");
    let ch: Value = res.json().await.unwrap();

    let res = s
        .http()
        .post(s.proxy_url(&ch, "/x"))
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        200,
        "the channel is proxied on the main listener"
    );
    assert_eq!(res.json::<Value>().await.unwrap()["body_len"], 5);

    let res = s.api(Method::GET, "/channels").send().await.unwrap();
    assert_eq!(res.status(), 404, "no API on the proxy listener");
    assert_eq!(res.headers()["content-type"], "application/json");
    assert_eq!(
        res.json::<Value>().await.unwrap(),
        json!({ "error": "Not Found" })
    );

    let hits = up.hits();
    let res = s
        .http()
        .post(format!(
            "http://{admin}/channels/{}/x",
            ch["id"].as_str().unwrap()
        ))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404, "no proxying on the admin listener");
    assert_eq!(
        up.hits(),
        hits,
        "nothing was forwarded from the admin listener"
    );
}

#[tokio::test]
async fn hop_by_hop_headers_are_stripped_both_ways() {
    let up = upstream::start().await;
    let s = Sluice::start().await;
    let ch = s.create_channel(&up.url("/"), json!({})).await;
    let res = s
        .http()
        .get(s.proxy_url(&ch, "/hop"))
        .header("connection", "keep-alive, x-private")
        .header("x-private", "1")
        .header("keep-alive", "timeout=5")
        .header("proxy-authorization", "Basic abc")
        .header("te", "trailers")
        .header("x-end-to-end", "yes")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let h = res.headers().clone();
    assert!(
        h.get("x-hop-only").is_none(),
        "listed in the sink's Connection header"
    );
    assert!(h.get("keep-alive").is_none());
    assert!(h.get("proxy-authenticate").is_none());
    assert_eq!(h["x-end-to-end"], "kept");
    let echo: Value = res.json().await.unwrap();
    for name in [
        "x-private",
        "keep-alive",
        "proxy-authorization",
        "te",
        "upgrade",
        "trailer",
    ] {
        assert!(
            header(&echo, name).is_empty(),
            "{name} reached the sink: {echo}"
        );
    }
    assert_eq!(header(&echo, "x-end-to-end"), ["yes"]);
}

#[tokio::test]
async fn request_id_forwarded_headers_and_host() {
    let up = upstream::start().await;
    let s = Sluice::start().await;
    let ch = s.create_channel(&up.url("/"), json!({})).await;

    let keep = rid();
    let res = s
        .http()
        .get(s.proxy_url(&ch, "/who"))
        .header("x-request-id", &keep)
        .header("x-forwarded-for", "203.0.113.9")
        .header("host", "gateway.example")
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.headers()["x-request-id"],
        keep.as_str(),
        "valid id kept and returned"
    );
    let echo: Value = res.json().await.unwrap();
    assert_eq!(header(&echo, "x-request-id"), [keep.as_str()]);
    assert_eq!(header(&echo, "x-forwarded-for"), ["203.0.113.9, 127.0.0.1"]);
    assert_eq!(header(&echo, "x-forwarded-host"), ["gateway.example"]);
    assert_eq!(header(&echo, "x-forwarded-proto"), ["http"]);
    assert_eq!(header(&echo, "host"), [up.addr.to_string().as_str()]);
    let rec = s.finished(&ch, &keep).await;
    assert_eq!(rec["client_identity"], "203.0.113.9");

    for bad in ["short", "has spaces in it, twenty+ chars", &"x".repeat(201)] {
        let res = s
            .http()
            .get(s.proxy_url(&ch, "/"))
            .header("x-request-id", bad)
            .send()
            .await
            .unwrap();
        let returned = res.headers()["x-request-id"].to_str().unwrap().to_string();
        assert_ne!(returned, bad);
        assert!((20..=200).contains(&returned.len()));
        let echo: Value = res.json().await.unwrap();
        assert_eq!(
            header(&echo, "x-request-id"),
            [returned.as_str()],
            "the sink sees the same id"
        );
        let rec = s.finished(&ch, &returned).await;
        assert_eq!(
            returned,
            format!("{}-sluice", rec["id"].as_str().unwrap().replace('-', "")),
            "a generated id names the request's record"
        );
    }
    let res = s.http().get(s.proxy_url(&ch, "/")).send().await.unwrap();
    assert!(
        res.headers().contains_key("x-request-id"),
        "generated when absent"
    );
}

#[tokio::test]
async fn sink_statuses_decide_success_or_failed_and_pass_through() {
    let up = upstream::start().await;
    let s = Sluice::start().await;
    let ch = s.create_channel(&up.url("/"), json!({})).await;
    for (code, state) in [
        (200, "success"),
        (201, "success"),
        (404, "failed"),
        (422, "failed"),
        (503, "failed"),
    ] {
        let id = rid();
        let res = s
            .http()
            .get(s.proxy_url(&ch, &format!("/status/{code}")))
            .header("x-request-id", &id)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), code);
        assert_eq!(res.headers()["x-upstream"], "yes");
        assert_eq!(
            res.text().await.unwrap(),
            format!("status {code}"),
            "body passed through"
        );
        let rec = s.finished(&ch, &id).await;
        assert_eq!(rec["state"], state);
        assert_eq!(rec["response_status"], code);
        assert_eq!(rec["error"], Value::Null);
    }
}

async fn expect_failure(s: &Sluice, ch: &Value, status: u16, state: &str, error: &str) {
    let id = rid();
    let res = s
        .http()
        .get(s.proxy_url(ch, "/hang"))
        .header("x-request-id", &id)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), status);
    assert_eq!(res.headers()["content-type"], "application/json");
    assert_eq!(res.headers()["x-request-id"], id.as_str());
    let body: Value = res.json().await.unwrap();
    let expected = if status == 504 {
        "Gateway Timeout"
    } else {
        "Bad Gateway"
    };
    assert_eq!(body, json!({ "error": expected }));
    let rec = s.finished(ch, &id).await;
    assert_eq!(rec["state"], state, "{rec}");
    assert_eq!(rec["error"], error, "{rec}");
}

#[tokio::test]
async fn network_failures_are_classified() {
    let s = Sluice::start().await;
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let refused = s
        .create_channel(&format!("http://127.0.0.1:{closed}/"), json!({}))
        .await;
    expect_failure(&s, &refused, 502, "error", "econnrefused").await;

    let nxdomain = s
        .create_channel("http://no-such-host.invalid/", json!({}))
        .await;
    expect_failure(&s, &nxdomain, 502, "error", "nxdomain").await;

    let up = upstream::start().await;
    let silent = s
        .create_channel(&up.url("/"), json!({ "timeouts": { "response_ms": 300 } }))
        .await;
    let started = std::time::Instant::now();
    expect_failure(&s, &silent, 504, "timeout", "response_timeout").await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the channel's timeout applied"
    );
}

#[tokio::test]
async fn a_stalled_response_body_hits_the_idle_timeout() {
    let up = upstream::start().await;
    let s = Sluice::start().await;
    let ch = s
        .create_channel(&up.url("/"), json!({ "timeouts": { "idle_ms": 300 } }))
        .await;
    let id = rid();
    let res = s
        .http()
        .get(s.proxy_url(&ch, "/stall"))
        .header("x-request-id", &id)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.bytes().await.is_err(), "the body is cut, not completed");
    let rec = s.finished(&ch, &id).await;
    assert_eq!(rec["state"], "timeout");
    assert_eq!(
        rec["error"], "idle_timeout",
        "the head came in time; the body stalled"
    );
    assert_eq!(rec["event"]["response_body_preview"]["data"], "first");
}

#[tokio::test]
async fn caller_hanging_up_mid_response_body_is_client_disconnected() {
    let up = upstream::start().await;
    let s = Sluice::start().await;
    let ch = s.create_channel(&up.url("/"), json!({})).await;
    let id = rid();
    let mut res = s
        .http()
        .get(s.proxy_url(&ch, "/slowbody"))
        .header("x-request-id", &id)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let first = res.chunk().await.unwrap().unwrap();
    assert!(!first.is_empty());
    drop(res);
    let rec = s.finished(&ch, &id).await;
    assert_eq!(rec["state"], "error");
    assert_eq!(rec["error"], "client_disconnected");
    assert_eq!(rec["response_status"], 200);
}

#[tokio::test]
async fn caller_hanging_up_mid_request_body_is_client_disconnected() {
    let up = upstream::start().await;
    let s = Sluice::start().await;
    let ch = s.create_channel(&up.url("/"), json!({})).await;
    let id = rid();
    let addr = s.base.trim_start_matches("http://").to_string();
    let path = format!("/channels/{}/upload", ch["id"].as_str().unwrap());
    let mut tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\nx-request-id: {id}\r\ncontent-length: 1000000\r\n\r\n"
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    tcp.write_all(&[b'a'; 4096]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(tcp);
    let rec = s.finished(&ch, &id).await;
    assert_eq!(rec["state"], "error", "{rec}");
    assert_eq!(rec["error"], "client_disconnected", "{rec}");
}

#[tokio::test]
async fn https_sinks_work_with_a_trusted_ca_and_fail_as_tls_error_otherwise() {
    let pki = upstream::test_pki();
    let up = upstream::start_tls(pki.server).await;
    let ca_file = common::TempDir::new();
    let ca_path = ca_file.path().join("ca.pem");
    std::fs::write(&ca_path, &pki.ca_pem).unwrap();

    let trusting = Sluice::start_in(
        std::sync::Arc::new(common::TempDir::new()),
        &["--extra-ca-file", ca_path.to_str().unwrap()],
    )
    .await;
    let ch = trusting.create_channel(&up.url("/secure"), json!({})).await;
    let res = trusting
        .http()
        .post(trusting.proxy_url(&ch, "/x"))
        .body("over tls")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let echo: Value = res.json().await.unwrap();
    assert_eq!(echo["path"], "/secure/x");
    assert_eq!(echo["body_sha256"], sha256(b"over tls"));

    let plain = Sluice::start().await;
    let ch = plain.create_channel(&up.url("/secure"), json!({})).await;
    let id = rid();
    let res = plain
        .http()
        .get(plain.proxy_url(&ch, "/x"))
        .header("x-request-id", &id)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 502);
    let rec = plain.finished(&ch, &id).await;
    assert_eq!(rec["state"], "error");
    assert_eq!(rec["error"], "tls_error");
}

#[tokio::test]
async fn keep_alive_connections_to_the_sink_are_reused_and_timed() {
    let up = upstream::start().await;
    let s = Sluice::start().await;
    let ch = s.create_channel(&up.url("/"), json!({})).await;
    let (a, b) = (rid(), rid());
    s.http()
        .get(s.proxy_url(&ch, "/1"))
        .header("x-request-id", &a)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let first = s.finished(&ch, &a).await;
    s.http()
        .get(s.proxy_url(&ch, "/2"))
        .header("x-request-id", &b)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let second = s.finished(&ch, &b).await;
    assert_eq!(first["event"]["reused_connection"], false);
    assert!(first["event"]["connect_us"].as_i64().unwrap() > 0);
    assert_eq!(second["event"]["reused_connection"], true);
    assert_eq!(second["event"]["connect_us"], Value::Null);
    for r in [&first, &second] {
        let total = r["latency_us"].as_i64().unwrap();
        let ttfb = r["ttfb_us"].as_i64().unwrap();
        assert!(ttfb > 0 && ttfb <= total, "{r}");
    }
}

#[tokio::test]
async fn callers_on_every_proxy_thread_reuse_sink_connections() {
    let up = upstream::start().await;
    let s = Sluice::start_in(
        std::sync::Arc::new(common::TempDir::new()),
        &["--proxy-threads", "2", "--health-interval", "0"],
    )
    .await;
    let ch = s.create_channel(&up.url("/"), json!({})).await;
    // Each caller connection is served by the next thread: two callers cover both.
    for caller in 0..2 {
        let c = reqwest::Client::new();
        let mut records = Vec::new();
        for _ in 0..2 {
            let id = rid();
            let res = c
                .get(s.proxy_url(&ch, "/x"))
                .header("x-request-id", &id)
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 200);
            res.bytes().await.unwrap();
            records.push(s.finished(&ch, &id).await);
        }
        assert_eq!(
            records[1]["event"]["reused_connection"], true,
            "caller {caller}: {records:?}"
        );
    }
}

#[tokio::test]
async fn zero_proxy_threads_stop_serve_with_a_message() {
    let dir = common::TempDir::new();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--proxy-threads",
            "0",
            "--data-dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success(), "--proxy-threads 0 was accepted");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--proxy-threads"), "{err}");
}

/// A sink that answers every request on a connection with `200 ok` and then, with
/// `close_header`, says `connection: close`, or without it, hangs up just after answering
/// (as a sink whose keep-alive timeout is shorter than the pool's). Counts its connections.
async fn sink_that_closes_after_one_answer(
    close_header: bool,
) -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicU64>,
) {
    use std::sync::atomic::{AtomicU64, Ordering};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = std::sync::Arc::new(AtomicU64::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tcp.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let close = if close_header {
                    "connection: close\r\n"
                } else {
                    ""
                };
                let res = format!("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n{close}\r\nok");
                let _ = tcp.write_all(res.as_bytes()).await;
                let _ = tcp.shutdown().await;
            });
        }
    });
    (addr, accepted)
}

#[tokio::test]
async fn a_sink_connection_that_was_closed_is_never_reused() {
    for close_header in [false, true] {
        let (addr, accepted) = sink_that_closes_after_one_answer(close_header).await;
        // No health monitor: its first round of probes may come late on a busy machine and
        // open connections of its own.
        let s = Sluice::start_in(
            std::sync::Arc::new(common::TempDir::new()),
            &["--health-interval", "0"],
        )
        .await;
        let ch = s
            .create_channel(&format!("http://{addr}/"), json!({}))
            .await;
        // Creating the channel checks the sink once.
        let before = accepted.load(std::sync::atomic::Ordering::SeqCst);
        let mut records = Vec::new();
        for _ in 0..3 {
            let id = rid();
            let res = s
                .http()
                .get(s.proxy_url(&ch, "/x"))
                .header("x-request-id", &id)
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 200, "close_header={close_header}");
            assert_eq!(res.text().await.unwrap(), "ok");
            // Give the sink's hang-up time to arrive before the next request.
            tokio::time::sleep(Duration::from_millis(100)).await;
            records.push(s.finished(&ch, &id).await);
        }
        for r in &records {
            assert_eq!(r["state"], "success", "close_header={close_header}: {r}");
            assert_eq!(r["event"]["reused_connection"], false, "{r}");
        }
        assert_eq!(
            accepted.load(std::sync::atomic::Ordering::SeqCst) - before,
            3,
            "one connection per request (close_header={close_header})"
        );
    }
}

#[tokio::test]
async fn raw_http_client_sees_one_response_per_request_on_a_kept_alive_connection() {
    // Guards the framing of streamed responses: two requests on one caller connection.
    let up = upstream::start().await;
    let s = Sluice::start().await;
    let ch = s.create_channel(&up.url("/"), json!({})).await;
    let addr = s.base.trim_start_matches("http://").to_string();
    let path = format!("/channels/{}/big/1000", ch["id"].as_str().unwrap());
    let mut tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\nGET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut all = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut all))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&all);
    assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 2, "{text}");
}
