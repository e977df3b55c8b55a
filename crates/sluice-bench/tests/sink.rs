//! The mock sink over real HTTP: every mode and every query override.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use clap::Parser;
use sluice_bench::sink::{self, SinkArgs};

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    sink: SinkArgs,
}

/// Starts an in-process sink on an ephemeral port with the given extra flags.
async fn start(flags: &[&str]) -> SocketAddr {
    let argv = ["sink", "--port", "0"].iter().chain(flags);
    let (addr, _server) = sink::spawn(Cli::parse_from(argv).sink).await.unwrap();
    addr
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// Sends a request and returns (status, body length, elapsed).
async fn call(request: reqwest::RequestBuilder) -> (u16, usize, Duration) {
    let started = Instant::now();
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let body = response.bytes().await.unwrap();
    assert!(body.iter().all(|b| *b == b'x'), "bodies are filler bytes");
    (status, body.len(), started.elapsed())
}

#[tokio::test]
async fn fixed_mode_defaults_to_200_with_256_bytes() {
    let addr = start(&[]).await;
    let response = client()
        .get(format!("http://{addr}/anything"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.content_length(), Some(256));
    assert_eq!(response.bytes().await.unwrap().len(), 256);
}

#[tokio::test]
async fn fixed_mode_uses_status_and_body_size_and_drains_large_uploads() {
    let addr = start(&["--status", "201", "--body-size", "1000"]).await;
    let upload = vec![b'u'; 3 * 1024 * 1024];
    let (status, len, _) = call(client().post(format!("http://{addr}/up")).body(upload)).await;
    assert_eq!((status, len), (201, 1000));
}

#[tokio::test]
async fn query_overrides_size_status_and_delay() {
    let addr = start(&[]).await;
    let http = client();
    let url = |query: &str| format!("http://{addr}/q?{query}");

    assert_eq!(call(http.get(url("response_size=5000"))).await.1, 5000);
    assert_eq!(call(http.get(url("response_size=0"))).await.1, 0);
    // Larger than the shared 64 KiB chunk: streamed in slices, exact length.
    let big = 3 * 1024 * 1024 + 17;
    assert_eq!(
        call(http.get(url(&format!("response_size={big}")))).await.1,
        big
    );

    let (status, len, _) = call(http.post(url("status=503")).body("x")).await;
    assert_eq!((status, len), (503, 256));

    let (status, _, elapsed) = call(http.get(url("delay=300"))).await;
    assert_eq!(status, 200);
    assert!(elapsed >= Duration::from_millis(300), "{elapsed:?}");
    assert!(elapsed < Duration::from_millis(2000), "{elapsed:?}");

    let (status, len, elapsed) = call(http.get(url("delay=150&response_size=10&status=202"))).await;
    assert_eq!((status, len), (202, 10));
    assert!(elapsed >= Duration::from_millis(150));

    let fast = call(http.get(url(""))).await.2;
    assert!(fast < Duration::from_millis(150), "{fast:?}");

    let response = http.get(url("delay=soon")).send().await.unwrap();
    assert_eq!(response.status(), 400);
    let response = http.get(url("status=42")).send().await.unwrap();
    assert_eq!(response.status(), 400);
}

#[tokio::test]
async fn timeout_mode_never_answers() {
    let addr = start(&["--mode", "timeout"]).await;
    let started = Instant::now();
    let result = client()
        .post(format!("http://{addr}/t"))
        .body("payload")
        .timeout(Duration::from_secs(1))
        .send()
        .await;
    let error = result.expect_err("timeout mode must not answer");
    assert!(error.is_timeout(), "{error}");
    assert!(started.elapsed() >= Duration::from_secs(1));
}

#[tokio::test]
async fn auth_mode_checks_the_bearer_token() {
    let addr = start(&["--mode", "auth"]).await;
    let http = client();
    let url = format!("http://{addr}/secure");
    assert_eq!(call(http.get(&url)).await.0, 401);
    let wrong = http.get(&url).header("authorization", "Bearer nope");
    assert_eq!(call(wrong).await.0, 403);
    let basic = http
        .get(&url)
        .header("authorization", "Basic dGVzdC1hcGkta2V5");
    assert_eq!(call(basic).await.0, 403);
    let right = http
        .get(&url)
        .header("authorization", "Bearer test-api-key");
    assert_eq!(call(right).await.0, 200);
    let overridden = http
        .get(format!("{url}?status=204&response_size=0"))
        .header("authorization", "Bearer test-api-key");
    assert_eq!(call(overridden).await.0, 204);
}

#[tokio::test]
async fn mixed_mode_is_80_percent_fast_10_slow_10_unavailable() {
    const SAMPLES: usize = 300;
    let addr = start(&["--mode", "mixed"]).await;
    let http = client();
    let calls = (0..SAMPLES).map(|_| {
        let request = http.get(format!("http://{addr}/m"));
        tokio::spawn(call(request))
    });
    let (mut fast, mut slow, mut unavailable) = (0, 0, 0);
    for handle in calls.collect::<Vec<_>>() {
        let (status, len, elapsed) = handle.await.unwrap();
        assert_eq!(len, 256);
        match status {
            503 => {
                assert!(
                    elapsed < Duration::from_millis(1500),
                    "503s are fast: {elapsed:?}"
                );
                unavailable += 1;
            }
            200 if elapsed >= Duration::from_millis(1900) => {
                assert!(
                    elapsed < Duration::from_millis(3500),
                    "slow is ~2 s: {elapsed:?}"
                );
                slow += 1;
            }
            200 => fast += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    // Expected 240 / 30 / 30; the bounds are > 4 standard deviations wide.
    assert!(
        (190..=285).contains(&fast),
        "fast={fast} slow={slow} 503={unavailable}"
    );
    assert!(
        (10..=55).contains(&slow),
        "fast={fast} slow={slow} 503={unavailable}"
    );
    assert!(
        (10..=55).contains(&unavailable),
        "fast={fast} slow={slow} 503={unavailable}"
    );
}

#[tokio::test]
async fn answers_many_requests_on_one_keep_alive_connection() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let addr = start(&["--body-size", "10"]).await;
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    for round in 0..3 {
        stream
            .write_all(b"POST /k HTTP/1.1\r\nhost: sink\r\ncontent-length: 4\r\n\r\nbody")
            .await
            .unwrap();
        let mut received = Vec::new();
        let mut buf = [0u8; 1024];
        // A complete answer is the head plus 10 body bytes.
        while !received.windows(4).any(|w| w == b"\r\n\r\n") || !received.ends_with(b"xxxxxxxxxx") {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "connection closed after {round} answers");
            received.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8(received).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.contains("content-length: 10\r\n"), "{text}");
    }
}
