//! Hostile callers and careless configurations: connections that send nothing, heads that
//! never end, idle keep-alive connections, more connections than the process has file
//! descriptors for, and channels whose sink leads back into sluice.

mod common;

use std::time::{Duration, Instant};

use common::{upstream, Sluice, TempDir};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Creates an API token with `args` (`--name`, `--role`, …) on `s`'s data directory.
fn token(s: &Sluice, args: &[&str]) -> String {
    let dir = s.data.path().to_str().unwrap();
    let out = common::run(&[&["token", "create"], args, &["--data-dir", dir]].concat());
    out.lines().last().unwrap().trim().to_string()
}

/// `GET /metrics` with `token`: the status and the text.
async fn metrics_with(s: &Sluice, token: &str) -> (u16, String) {
    let res = s
        .http()
        .get(s.url("/metrics"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

/// The `host:port` of a running sluice.
fn addr(base: &str) -> String {
    base.trim_start_matches("http://").to_string()
}

/// Reads until the peer closes the connection, at most `limit`; returns how long that took, or
/// `None` if it stayed open.
async fn closed_within(tcp: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at((start + limit).into(), tcp.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(start.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

/// Sends one `GET /healthz` on `tcp` and reads its whole answer (the body is short).
async fn healthz_on(tcp: &mut TcpStream) -> String {
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nhost: sluice\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf))
        .await
        .expect("an answer")
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).to_string()
}

#[tokio::test]
async fn a_connection_that_sends_no_head_or_half_of_one_is_closed_after_the_header_read_timeout() {
    let data = TempDir::new();
    let s = common::serve_logged(&data, &["--header-read-timeout", "1s"]).await;
    let mut silent = TcpStream::connect(addr(&s.base)).await.unwrap();
    let mut slow = TcpStream::connect(addr(&s.base)).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    let dripping = tokio::spawn(async move {
        // One header byte every 200 ms: the head never ends in time.
        for b in b"x-drip: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".iter() {
            if slow.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        slow
    });
    let took = closed_within(&mut silent, Duration::from_secs(5)).await;
    assert!(took.is_some(), "a silent connection stayed open");
    assert!(took.unwrap() >= Duration::from_millis(900), "{took:?}");
    let mut slow = dripping.await.unwrap();
    assert!(
        closed_within(&mut slow, Duration::from_secs(3))
            .await
            .is_some(),
        "a head sent a byte at a time kept its connection"
    );
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_but_never_one_waiting_for_its_answer() {
    let up = upstream::start().await;
    let s = Sluice::start_in(
        std::sync::Arc::new(TempDir::new()),
        &["--keep-alive-timeout", "1s", "--header-read-timeout", "10s"],
    )
    .await;
    // A caller that pauses less than the keep-alive timeout keeps its connection.
    let mut tcp = TcpStream::connect(addr(&s.base)).await.unwrap();
    assert!(healthz_on(&mut tcp).await.starts_with("HTTP/1.1 200"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(healthz_on(&mut tcp).await.starts_with("HTTP/1.1 200"));
    // Idle past it, the connection is closed.
    let took = closed_within(&mut tcp, Duration::from_secs(5)).await;
    assert!(took.is_some(), "an idle connection stayed open");
    // An exchange slower than the keep-alive timeout still gets its answer.
    let ch = s.create_channel(&up.url("/"), json!({})).await;
    let res = s
        .http()
        .get(s.proxy_url(&ch, "/delay/2500"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().contains("/delay/2500"));
}

#[tokio::test]
async fn healthz_answers_while_hundreds_of_silent_connections_hold_a_256_descriptor_process() {
    let data = TempDir::new();
    let s = common::serve_logged_under(
        &["prlimit", "--nofile=256"],
        &data,
        &["--header-read-timeout", "1s"],
    )
    .await;
    let mut silent = Vec::new();
    for _ in 0..300 {
        silent.push(TcpStream::connect(addr(&s.base)).await.unwrap());
    }
    let http = reqwest::Client::new();
    let start = Instant::now();
    let res = http
        .get(format!("{}/healthz", s.base))
        .timeout(Duration::from_secs(15))
        .send()
        .await;
    assert!(
        matches!(&res, Ok(r) if r.status() == 200),
        "/healthz after {:?}: {res:?}",
        start.elapsed()
    );
    let log = s.stderr.lock().unwrap().clone();
    assert!(
        log.contains("connection limit reached"),
        "the cap was reached without a word:\n{log}"
    );
    assert!(!log.contains("Too many open files"), "{log}");
    drop(silent);
}

/// Relays every connection to 127.0.0.1:`to`, byte for byte; returns the relay's port (a sink
/// address that is sluice without saying so).
async fn relay_to(to: u16) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            tokio::spawn(async move {
                if let Ok(mut outbound) = TcpStream::connect(("127.0.0.1", to)).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    port
}

#[tokio::test]
async fn a_sink_naming_sluice_is_refused_and_a_hidden_loop_stops_after_one_pass() {
    let up = upstream::start().await;
    let s = Sluice::start().await;
    let res = s
        .api(reqwest::Method::POST, "/channels")
        .json(&json!({"name": "self", "sink_url": s.url("/channels/x/")}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 422);
    let body: Value = res.json().await.unwrap();
    assert!(
        body["details"]["fields"]["sink_url"]
            .as_str()
            .is_some_and(|m| m.contains("loop")),
        "{body}"
    );

    // Through a relay sluice cannot recognise, the channel's sink is its own proxy URL.
    let ch = s.create_channel(&up.url("/"), json!({})).await;
    let id = ch["id"].as_str().unwrap();
    let port: u16 = s.base.rsplit(':').next().unwrap().parse().unwrap();
    let relay = relay_to(port).await;
    let res = s
        .api(reqwest::Method::PATCH, &format!("/channels/{id}"))
        .json(&json!({
            "sink_url": format!("http://127.0.0.1:{relay}/channels/{id}/"),
            "lock_version": ch["lock_version"],
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    let res = s
        .http()
        .get(s.proxy_url(&ch, "/again"))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 508);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "Loop Detected", "{body}");
    // (The PATCH's validation probe of the new sink URL passed through once too.)
    let again = || async {
        let all = s.history(&ch, "").await;
        all.into_iter()
            .filter(|r| r["path"].as_str().unwrap().ends_with("/again"))
            .collect::<Vec<_>>()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while again().await.iter().any(|r| r["state"] == "pending") {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let recorded = again().await;
    assert_eq!(recorded.len(), 1, "one exchange recorded: {recorded:?}");
    assert_eq!(recorded[0]["response_status"], 508);
}

/// Sends `GET <path>` exactly as written (an HTTP client would resolve the dot segments) and
/// returns the status line and the body.
async fn raw_get(base: &str, path: &str) -> (String, String) {
    let mut tcp = TcpStream::connect(addr(base)).await.unwrap();
    tcp.write_all(
        format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut answer))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&answer).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (
        head.lines().next().unwrap_or("").to_string(),
        body.to_string(),
    )
}

#[tokio::test]
async fn dot_segments_climbing_above_the_sink_path_are_refused_however_spelled() {
    let up = upstream::start().await;
    let s = Sluice::start().await;
    let ch = s.create_channel(&up.url("/base/only/"), json!({})).await;
    let id = ch["id"].as_str().unwrap();
    for path in [
        "/../../../secret",
        "/%2e%2e/%2E%2E/secret",
        "/a/..%2f..%2f..%2fsecret",
    ] {
        let (status, body) = raw_get(&s.base, &format!("/channels/{id}{path}")).await;
        assert!(status.contains(" 400 "), "{path}: {status} {body}");
        let body: Value = serde_json::from_str(&body).unwrap();
        assert!(
            body["detail"].as_str().unwrap().contains("climbs above"),
            "{body}"
        );
    }
    // Within the sink's path they pass as sent.
    let (status, body) = raw_get(&s.base, &format!("/channels/{id}/a/../b")).await;
    assert!(status.contains(" 200 "), "{status} {body}");
    assert!(body.contains("/base/only/a/../b"), "{body}");
    let recorded = s.finished_n(&ch, 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(s.history(&ch, "").await.len(), 1, "{recorded:?}");
}

#[tokio::test]
async fn metrics_naming_every_channel_need_an_instance_wide_reader_unless_made_public() {
    let s = Sluice::start().await;
    let ch = s.create_channel("http://127.0.0.1:9/", json!({})).await;
    let id = ch["id"].as_str().unwrap();
    let _ = s.http().get(s.proxy_url(&ch, "/")).send().await.unwrap();
    let anonymous = s.http().get(s.url("/metrics")).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let body: Value = anonymous.json().await.unwrap();
    assert!(body["error"].is_string(), "{body}");

    let dir = s.data.path().to_str().unwrap();
    common::run(&["user", "create", "--username", "vera", "--data-dir", dir]);
    let user_token = token(&s, &["--name", "v", "--user", "vera", "--role", "viewer"]);
    let (status, text) = metrics_with(&s, &user_token).await;
    assert_eq!(
        status, 403,
        "a user who sees no project reads no channel id"
    );
    assert!(!text.contains(id));
    let scraper = token(&s, &["--name", "prometheus", "--role", "viewer"]);
    let (status, text) = metrics_with(&s, &scraper).await;
    assert_eq!(status, 200);
    assert!(text.contains(id));

    let data = TempDir::new();
    let open = common::serve_logged(&data, &["--public-metrics"]).await;
    let res = reqwest::get(format!("{}/metrics", open.base))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().contains("sluice_"));
}

/// Sends `body` (raw bytes) to the API with `method` at `path`; returns the status, the
/// headers and the body, which must be JSON.
async fn api_raw(
    s: &Sluice,
    method: reqwest::Method,
    path: &str,
    body: impl Into<reqwest::Body>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let res = s
        .api(method, path)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let (status, headers) = (res.status().as_u16(), res.headers().clone());
    let text = res.text().await.unwrap();
    let json = serde_json::from_str(&text)
        .unwrap_or_else(|_| panic!("{path}: {status} answered without JSON: {text}"));
    (status, headers, json)
}

/// The problem the API named for `field`.
fn problem<'a>(body: &'a Value, field: &str) -> &'a str {
    body["details"]["fields"][field]
        .as_str()
        .unwrap_or_else(|| panic!("no problem named for {field}: {body}"))
}

#[tokio::test]
async fn the_api_refuses_malformed_bodies_and_answers_every_refusal_in_json() {
    use reqwest::Method;
    let s = Sluice::start().await;
    let ok_url = "http://127.0.0.1:9/";
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (json!(["n", ok_url]).to_string().into_bytes(), "body"),
        (
            format!(r#"{{"name":"n","sink_url":"{ok_url}"}} trailing"#).into_bytes(),
            "body",
        ),
        (
            json!({"name": "a\u{0}b", "sink_url": ok_url})
                .to_string()
                .into_bytes(),
            "name",
        ),
        (
            json!({"name": "two\nlines", "sink_url": ok_url})
                .to_string()
                .into_bytes(),
            "name",
        ),
        (
            json!({"name": "long", "sink_url": format!("http://h/{}", "a".repeat(3000))})
                .to_string()
                .into_bytes(),
            "sink_url",
        ),
    ];
    for (body, field) in cases {
        let (status, _, answer) = api_raw(&s, Method::POST, "/channels", body).await;
        assert_eq!(status, 422, "{answer}");
        problem(&answer, field);
    }
    let (_, _, list) = api_raw(&s, Method::GET, "/channels", "").await;
    assert!(list["items"].as_array().unwrap().is_empty(), "{list}");

    // A credential with nothing sluice could inject, and one with a flood in a field.
    let (status, _, answer) = api_raw(
        &s,
        Method::POST,
        "/credentials",
        json!({"name": "c", "schema": "http", "body": {"username": "u"}}).to_string(),
    )
    .await;
    assert_eq!(status, 422);
    assert!(
        problem(&answer, "body").contains("no usable auth field"),
        "{answer}"
    );
    let (status, _, answer) = api_raw(
        &s,
        Method::POST,
        "/credentials",
        json!({"name": "c", "schema": "http", "body": {"access_token": "x".repeat(20_000)}})
            .to_string(),
    )
    .await;
    assert_eq!(status, 422);
    problem(&answer, "body.access_token");
    // A field the schema does not declare is never shown.
    let (status, _, c) = api_raw(
        &s,
        Method::POST,
        "/credentials",
        json!({"name": "c", "schema": "http", "body": {"access_token": "t", "note": "private"}})
            .to_string(),
    )
    .await;
    assert_eq!(status, 201, "{c}");
    assert!(!c.to_string().contains("private"), "{c}");

    // `null` for a value that must be there is refused, not read as "unchanged".
    let ch = s.create_channel(ok_url, json!({})).await;
    let id = ch["id"].as_str().unwrap();
    let (status, _, answer) = api_raw(
        &s,
        Method::PATCH,
        &format!("/channels/{id}"),
        json!({"name": null, "lock_version": ch["lock_version"]}).to_string(),
    )
    .await;
    assert_eq!(status, 422);
    problem(&answer, "name");

    // The router's and extractors' own refusals are JSON too.
    let (status, _, answer) = api_raw(
        &s,
        Method::DELETE,
        &format!("/channels/{id}?purge=maybe"),
        "",
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    let (status, headers, answer) = api_raw(&s, Method::PUT, "/channels", "{}").await;
    assert_eq!(status, 405, "{answer}");
    assert!(headers.contains_key("allow"));
    let (status, _, answer) = api_raw(&s, Method::POST, "/channels", vec![b' '; 3 << 20]).await;
    assert_eq!(status, 413, "{answer}");
    assert!(answer["error"].is_string());
}

#[tokio::test]
async fn an_editor_cannot_point_a_credential_at_a_sink_of_their_choosing() {
    let up = upstream::start().await;
    let s = Sluice::start().await;
    let res = s
        .api(reqwest::Method::POST, "/credentials")
        .json(&json!({"name": "c", "schema": "http", "body": {"access_token": "admin-only-token"}}))
        .send()
        .await
        .unwrap();
    let cred: Value = res.json().await.unwrap();
    let ch = s
        .create_channel(&up.url("/"), json!({"sink_credential_id": cred["id"]}))
        .await;
    let id = ch["id"].as_str().unwrap();
    let editor = token(&s, &["--name", "ed", "--role", "editor"]);
    let patch = |body: Value| {
        s.http()
            .patch(s.url(&format!("/api/v1/channels/{id}")))
            .bearer_auth(&editor)
            .json(&body)
            .send()
    };
    let echo = format!("{}/echo-elsewhere", up.url(""));
    let res = patch(json!({"sink_url": echo, "lock_version": ch["lock_version"]}))
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        403,
        "the credential would go to the editor's sink"
    );
    let res = s
        .http()
        .post(s.url("/api/v1/channels"))
        .bearer_auth(&editor)
        .json(&json!({"name": "mine", "sink_url": up.url("/"), "sink_credential_id": cred["id"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let res = patch(json!({"name": "renamed", "lock_version": ch["lock_version"]}))
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        200,
        "what does not move the credential stays the editor's"
    );
}

#[tokio::test]
async fn password_guessing_is_refused_with_429_and_counted_in_the_event_log() {
    let up = upstream::start().await;
    let s = Sluice::start_in(
        std::sync::Arc::new(TempDir::new()),
        &["--source-auth-failures", "5", "--source-auth-window", "2s"],
    )
    .await;
    let res = s
        .api(reqwest::Method::POST, "/auth-methods")
        .json(&json!({"name": "b", "type": "basic", "username": "shop", "password": "right-password"}))
        .send()
        .await
        .unwrap();
    let method: Value = res.json().await.unwrap();
    let ch = s
        .create_channel(
            &up.url("/"),
            json!({"source_auth_method_ids": [method["id"]]}),
        )
        .await;
    let guess = |password: String| {
        s.http()
            .get(s.proxy_url(&ch, "/"))
            .basic_auth("shop", Some(password))
            .send()
    };
    let mut statuses = Vec::new();
    for i in 0..20 {
        let res = guess(format!("guess-{i}")).await.unwrap();
        statuses.push(res.status().as_u16());
        if res.status() == 429 {
            let wait: u64 = res.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!((1..=2).contains(&wait), "{wait}");
            let body: Value = res.json().await.unwrap();
            assert!(body["detail"].is_string(), "{body}");
        }
    }
    assert_eq!(statuses[..5], [404; 5]);
    assert_eq!(statuses[5..], [429; 15]);
    let res = guess("right-password".into()).await.unwrap();
    assert_eq!(res.status(), 429, "no check at all while refused");

    // Unknown channels count the same: a 429 says nothing about which channels exist.
    let nowhere = format!("{}/channels/{}/x", s.base, uuid::Uuid::now_v7());
    for i in 0..6 {
        let st = s.http().get(&nowhere).send().await.unwrap().status();
        assert_eq!(st, if i < 5 { 404 } else { 429 });
    }

    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(guess("right-password".into()).await.unwrap().status(), 200);
    let events = s.get_json("/events?source=auth").await;
    let items = events["items"].as_array().unwrap();
    let summary = items
        .iter()
        .find(|e| e["details"]["failures"].is_number())
        .unwrap_or_else(|| panic!("no summary of the window: {events}"));
    assert_eq!(summary["details"]["failures"], 5, "{summary}");
    assert_eq!(summary["details"]["by_type"]["basic"], 5, "{summary}");
    assert_eq!(summary["details"]["refused_429"], 16, "{summary}");
    assert_eq!(summary["details"]["clients"], json!(["127.0.0.1"]));
    assert!(!events.to_string().contains("guess-"));
}

#[tokio::test]
async fn the_data_directory_and_its_files_are_the_users_alone() {
    use std::os::unix::fs::PermissionsExt;
    let s = Sluice::start().await;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let dir = s.data.path();
    assert_eq!(mode(dir), 0o700, "the data directory");
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let want = if path.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(mode(&path), want, "{}", path.display());
    }
}

/// Sends `head` and then `body` on a raw connection to sluice and reads the status line
/// (within 10 s) while the connection is still open on the caller's side.
async fn raw_exchange(base: &str, head: &str, body: &[u8]) -> (String, TcpStream) {
    let mut tcp = TcpStream::connect(addr(base)).await.unwrap();
    tcp.write_all(head.as_bytes()).await.unwrap();
    tcp.write_all(body).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut buf))
        .await
        .expect("an answer while the caller is still connected")
        .unwrap();
    let text = String::from_utf8_lossy(&buf[..n]).to_string();
    (text.lines().next().unwrap_or("").to_string(), tcp)
}

/// A sink that answers a head and half its body, then resets the connection.
async fn resetting_sink() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let _ = tcp.read(&mut buf).await;
                let _ = tcp
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nhalf")
                    .await;
                tokio::time::sleep(Duration::from_millis(100)).await;
                let _ = tcp.set_zero_linger();
                drop(tcp);
            });
        }
    });
    url
}

#[tokio::test]
async fn caller_faults_are_the_callers_and_sink_faults_are_named_exactly() {
    let up = upstream::start().await;
    let s = Sluice::start().await;
    let ch = s
        .create_channel(&up.url("/"), json!({"timeouts": {"idle_ms": 400}}))
        .await;
    let path = format!("/channels/{}/upload", ch["id"].as_str().unwrap());

    // A chunked body whose chunk size is not hexadecimal.
    let bad = common::rid();
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: x\r\nx-request-id: {bad}\r\ntransfer-encoding: chunked\r\n\r\n"
    );
    let (status, _tcp) = raw_exchange(&s.base, &head, b"5\r\nhello\r\nzz\r\n").await;
    assert!(status.contains(" 400 "), "{status}");
    let rec = s.finished(&ch, &bad).await;
    assert_eq!(
        (rec["state"].as_str(), rec["error"].as_str()),
        (Some("error"), Some("client_error")),
        "{rec}"
    );

    // An upload that stops halfway while the caller stays connected.
    let slow = common::rid();
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: x\r\nx-request-id: {slow}\r\ncontent-length: 1000\r\n\r\n"
    );
    let (status, _tcp) = raw_exchange(&s.base, &head, &[b'a'; 10]).await;
    assert!(status.contains(" 408 "), "{status}");
    let rec = s.finished(&ch, &slow).await;
    assert_eq!(rec["error"], "client_timeout", "{rec}");

    // A sink that resets the connection in the middle of its body.
    let reset = s.create_channel(&resetting_sink().await, json!({})).await;
    let id = common::rid();
    let res = s
        .http()
        .get(s.proxy_url(&reset, "/"))
        .header("x-request-id", &id)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.bytes().await.is_err(), "the body is cut");
    let rec = s.finished(&reset, &id).await;
    assert_eq!(rec["error"], "econnreset", "{rec}");
}

/// A sink that reads a request and then writes `steps` (each after its pause), then closes the
/// connection: with a reset (zero linger) when `reset`.
async fn scripted_sink(steps: Vec<(u64, &'static [u8])>, reset: bool) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let steps = steps.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let _ = tcp.read(&mut buf).await;
                for (pause, bytes) in steps {
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                    let _ = tcp.write_all(bytes).await;
                }
                if reset {
                    let _ = tcp.set_zero_linger();
                }
                drop(tcp);
            });
        }
    });
    url
}

/// The fault suite's sinks: one that resets before answering, one that closes in the middle of
/// its body, one that drips its body slower than it could but within the idle timeout. Each
/// caller's status and each record's state and error, and nothing left pending.
#[tokio::test]
async fn sinks_that_reset_early_close_mid_body_or_drip_are_recorded_exactly() {
    let s = Sluice::start().await;
    let timeouts = json!({"timeouts": {"idle_ms": 400}});
    let send = |ch: Value| {
        let id = common::rid();
        let req = s
            .http()
            .get(s.proxy_url(&ch, "/"))
            .header("x-request-id", &id)
            .send();
        async move { (req.await.unwrap(), id) }
    };

    let reset = scripted_sink(vec![], true).await;
    let reset = s.create_channel(&reset, timeouts.clone()).await;
    let (res, id) = send(reset.clone()).await;
    assert_eq!(res.status(), 502);
    let rec = s.finished(&reset, &id).await;
    assert_eq!(
        (rec["state"].as_str(), rec["error"].as_str()),
        (Some("error"), Some("econnreset")),
        "{rec}"
    );

    let head: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nhalf";
    let closing = scripted_sink(vec![(0, head)], false).await;
    let closing = s.create_channel(&closing, timeouts.clone()).await;
    let id = common::rid();
    let answer = s
        .http()
        .get(s.proxy_url(&closing, "/"))
        .header("x-request-id", &id)
        .send()
        .await;
    // The sink's head and the end of its connection come together: the caller gets the head
    // and a cut body, or (when the cut comes before the head is written) no answer; never a
    // whole one.
    if let Ok(res) = answer {
        assert_eq!(res.status(), 200, "the head was the sink's");
        assert!(res.bytes().await.is_err(), "the caller sees the body cut");
    }
    let rec = s.finished(&closing, &id).await;
    assert_eq!(
        (rec["state"].as_str(), rec["error"].as_str()),
        (Some("error"), Some("closed")),
        "{rec}"
    );
    assert_eq!(rec["response_status"], 200);

    let mut drips: Vec<(u64, &'static [u8])> =
        vec![(0, b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n")];
    drips.extend((0..10).map(|_| (150, &b"d"[..])));
    let dripping = scripted_sink(drips, false).await;
    let dripping = s.create_channel(&dripping, timeouts).await;
    let (res, id) = send(dripping.clone()).await;
    assert_eq!(res.status(), 200);
    assert_eq!(&res.bytes().await.unwrap()[..], b"dddddddddd");
    let rec = s.finished(&dripping, &id).await;
    assert_eq!(rec["state"], "success", "{rec}");
    assert_eq!(rec["response_body_size"], 10, "{rec}");

    for ch in [reset, closing, dripping] {
        let rows = common::every_request(&s, ch["id"].as_str().unwrap()).await;
        assert!(rows.iter().all(|r| r["state"] != "pending"), "{rows:?}");
    }
}

#[tokio::test]
async fn a_body_past_the_channels_limit_answers_413_declared_or_streamed() {
    let up = upstream::start().await;
    // No health monitor: its probe of the new channel's sink would count as a hit.
    let s = Sluice::start_in(
        std::sync::Arc::new(TempDir::new()),
        &["--health-interval", "0"],
    )
    .await;
    let ch = s
        .create_channel(&up.url("/"), json!({"max_request_bytes": 1000}))
        .await;
    assert_eq!(ch["max_request_bytes"], 1000);
    let hits = up.hits();
    // Declared by content-length: refused before anything is recorded or forwarded.
    let res = s
        .http()
        .post(s.proxy_url(&ch, "/big"))
        .body(vec![b'x'; 2000])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413);
    let body: Value = res.json().await.unwrap();
    assert!(
        body["detail"].as_str().unwrap().contains("larger"),
        "{body}"
    );
    assert_eq!(up.hits(), hits, "nothing forwarded");
    // Streamed (chunked): cut at the limit, answered 413, recorded as the caller's.
    let path = format!("/channels/{}/streamed", ch["id"].as_str().unwrap());
    let id = common::rid();
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: x\r\nx-request-id: {id}\r\ntransfer-encoding: chunked\r\n\r\n"
    );
    let chunk = format!("7d0\r\n{}\r\n", "y".repeat(2000));
    let (status, _tcp) = raw_exchange(&s.base, &head, chunk.as_bytes()).await;
    assert!(status.contains(" 413 "), "{status}");
    let rec = s.finished(&ch, &id).await;
    assert_eq!(rec["error"], "request_too_large", "{rec}");
    // Within the limit it passes; the limit can be lifted.
    let res = s
        .http()
        .post(s.proxy_url(&ch, "/small"))
        .body(vec![b'x'; 1000])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let id = ch["id"].as_str().unwrap();
    let res = s
        .api(reqwest::Method::PATCH, &format!("/channels/{id}"))
        .json(&json!({"max_request_bytes": null, "lock_version": ch["lock_version"]}))
        .send()
        .await
        .unwrap();
    let lifted: Value = res.json().await.unwrap();
    assert!(lifted["max_request_bytes"].is_null(), "{lifted}");
}

/// A caller whose request is refused before anything is forwarded (unknown channel, wrong
/// credentials) still gets the refusal while it is sending a large body: the body is read (a
/// bounded amount) before answering, where closing with it unread resets the connection and
/// the caller sees a broken pipe instead of the answer.
#[tokio::test]
async fn refusals_reach_a_caller_still_sending_its_body() {
    let up = upstream::start().await;
    let s = Sluice::start().await;
    let res = s
        .api(reqwest::Method::POST, "/auth-methods")
        .json(&json!({ "name": "k", "type": "api_key" }))
        .send()
        .await
        .unwrap();
    let key: Value = res.json().await.unwrap();
    let guarded = s
        .create_channel(
            &up.url("/"),
            json!({ "source_auth_method_ids": [key["id"]] }),
        )
        .await;
    let body = vec![b'x'; 8 << 20];
    let unknown = format!("{}/channels/{}/x", s.base, uuid::Uuid::new_v4());
    for (url, status) in [(unknown, 404), (s.proxy_url(&guarded, "/x"), 401)] {
        for _ in 0..5 {
            // A client of its own each time: a fresh connection.
            let res = reqwest::Client::new()
                .post(&url)
                .body(body.clone())
                .send()
                .await
                .unwrap_or_else(|e| panic!("{url}: {e:?}"));
            assert_eq!(res.status(), status, "{url}");
        }
    }
}
