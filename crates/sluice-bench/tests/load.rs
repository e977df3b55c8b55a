//! Short load runs against an in-process mock sink (and a fake sluice for the API, `/metrics`
//! and memory parts): the report's counts add up and errors are classified by kind.

use std::{
    collections::BTreeMap,
    convert::Infallible,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::{body::Incoming, server::conn::http1, service::service_fn, Request, Response};
use hyper_util::rt::TokioIo;
use sluice_bench::{
    load::{run_load, ErrorKind, LoadArgs, LoadReport, Scenario},
    sink::{self, SinkArgs},
};

#[derive(Parser)]
struct SinkCli {
    #[command(flatten)]
    sink: SinkArgs,
}

#[derive(Parser)]
struct LoadCli {
    #[command(flatten)]
    load: LoadArgs,
}

async fn start_sink(flags: &[&str]) -> SocketAddr {
    let argv = ["sink", "--port", "0"].iter().chain(flags);
    sink::spawn(SinkCli::parse_from(argv).sink).await.unwrap().0
}

async fn load(flags: &[&str]) -> anyhow::Result<LoadReport> {
    let argv = std::iter::once("load").chain(flags.iter().copied());
    run_load(LoadCli::parse_from(argv).load).await
}

/// The invariants every report must satisfy.
fn assert_consistent(report: &LoadReport) {
    assert!(report.requests > 0, "{report}");
    assert_eq!(
        report.requests,
        report.successes + report.error_count(),
        "{report}"
    );
    let answered: u64 = report.successes
        + report
            .errors
            .iter()
            .filter(|(kind, _)| matches!(kind, ErrorKind::Status(_)))
            .map(|(_, n)| n)
            .sum::<u64>();
    assert_eq!(report.latency.count, answered, "{report}");
    let per_second: f64 = report.timeline.iter().map(|w| w.throughput_rps).sum();
    assert_eq!(per_second.round() as u64, report.requests, "{report}");
    let expected = report.requests as f64 / report.elapsed.as_secs_f64();
    assert!((report.throughput_rps - expected).abs() < 1e-6);
    assert!(report.latency.p50_us <= report.latency.p95_us);
    assert!(report.latency.p95_us <= report.latency.p99_us);
    assert!(report.latency.p99_us <= report.latency.max_us);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_sink_counts_add_up() {
    let sink = start_sink(&[]).await;
    let sink_url = format!("http://{sink}");
    let report = load(&[
        "--scenario",
        "direct_sink",
        "--sink",
        &sink_url,
        "--concurrency",
        "4",
        "--duration",
        "1500ms",
    ])
    .await
    .unwrap();
    assert_consistent(&report);
    assert!(report.errors.is_empty(), "{report}");
    assert_eq!(report.concurrency, 4);
    assert!(report.elapsed >= Duration::from_millis(1500));
    assert!(
        report.requests > 100,
        "a local sink answers far more than 66/s: {report}"
    );
    assert_eq!(report.bytes_sent, report.requests * 1024);
    assert_eq!(report.bytes_received, report.requests * 256);
    assert!(report.url.starts_with(&format!("{sink_url}/bench")));
    assert!(report.memory.is_none() && report.server.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_503s_are_classified_by_status() {
    let sink = start_sink(&["--status", "503"]).await;
    let report = load(&[
        "--scenario",
        "direct_sink",
        "--sink",
        &format!("http://{sink}"),
        "--concurrency",
        "2",
        "--duration",
        "1",
    ])
    .await
    .unwrap();
    assert_consistent(&report);
    assert_eq!(report.successes, 0);
    assert_eq!(
        report.errors,
        BTreeMap::from([(ErrorKind::Status(503), report.requests)])
    );
    assert!((report.error_rate() - 1.0).abs() < 1e-9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_sink_yields_successes_and_503s_only() {
    let sink = start_sink(&["--mode", "mixed"]).await;
    let report = load(&[
        "--scenario",
        "direct_sink",
        "--sink",
        &format!("http://{sink}"),
        "--concurrency",
        "20",
        "--duration",
        "2500ms",
    ])
    .await
    .unwrap();
    assert_consistent(&report);
    assert!(report.requests >= 100, "{report}");
    assert!(report.successes > 0, "{report}");
    assert!(
        report.errors.keys().all(|k| *k == ErrorKind::Status(503)),
        "{report}"
    );
    let rate = report.error_rate();
    assert!((0.03..0.2).contains(&rate), "~10% 503s expected: {report}");
    assert!(
        report.latency.max_us >= 2_000_000,
        "a slow 2 s answer was seen: {report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unanswered_requests_are_timeouts() {
    let sink = start_sink(&["--mode", "timeout"]).await;
    let report = load(&[
        "--raw-url",
        &format!("http://{sink}"),
        "--concurrency",
        "3",
        "--duration",
        "1",
        "--timeout",
        "300ms",
    ])
    .await
    .unwrap();
    assert_consistent_without_latency(&report);
    assert_eq!(report.successes, 0);
    assert_eq!(
        report.errors.keys().collect::<Vec<_>>(),
        [&ErrorKind::Timeout]
    );
    assert!(
        report.requests >= 9,
        "3 VUs × ≥3 timeouts of 300 ms: {report}"
    );
}

fn assert_consistent_without_latency(report: &LoadReport) {
    assert_eq!(report.requests, report.successes + report.error_count());
    assert_eq!(report.latency.count, 0, "no answer, no latency");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_target_fails_fast() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let error = load(&["--raw-url", &format!("http://{addr}"), "--duration", "1"])
        .await
        .unwrap_err();
    assert!(error.to_string().contains("cannot connect"), "{error:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_runs_against_a_raw_url() {
    let sink = start_sink(&[]).await;
    let url = format!("http://{sink}");
    for scenario in [
        Scenario::DirectSink,
        Scenario::HappyPath,
        Scenario::RampUp,
        Scenario::LargePayload,
        Scenario::LargeResponse,
        Scenario::MixedMethods,
        Scenario::SlowSink,
        Scenario::Saturation,
    ] {
        let report = load(&[
            "--raw-url",
            &url,
            "--scenario",
            scenario.name(),
            "--concurrency",
            "3",
            "--steps",
            "1,3",
            "--duration",
            "1",
        ])
        .await
        .unwrap();
        assert_consistent(&report);
        assert!(report.errors.is_empty(), "{report}");
        assert_eq!(report.scenario, scenario);
        assert_eq!(report.concurrency, 3);
        let n = report.requests;
        match scenario {
            Scenario::LargePayload => {
                assert_eq!(report.payload_size, 1 << 20);
                assert_eq!(report.bytes_sent, n << 20);
            }
            Scenario::LargeResponse => {
                assert!(
                    report.url.ends_with("?response_size=1048576"),
                    "{}",
                    report.url
                );
                assert_eq!(report.bytes_received, n << 20);
                assert_eq!(report.bytes_sent, 0, "large_response GETs");
            }
            Scenario::MixedMethods => {
                // GET and DELETE carry no body, POST/PUT/PATCH do.
                assert!(
                    report.bytes_sent > 0 && report.bytes_sent < n * 1024,
                    "{report}"
                );
            }
            Scenario::SlowSink => {
                assert!(report.url.ends_with("?delay=100"), "{}", report.url);
                assert!(report.latency.p50_us >= 100_000, "{report}");
                assert!(n <= 3 * 11, "3 VUs at ≥100 ms each: {report}");
            }
            Scenario::Saturation => {
                let levels: Vec<_> = report.steps.iter().map(|s| s.concurrency).collect();
                assert_eq!(levels, [1, 3]);
                assert_eq!(report.steps.iter().map(|s| s.requests).sum::<u64>(), n);
            }
            _ => assert_eq!(report.bytes_sent, n * 1024),
        }
        if scenario != Scenario::Saturation {
            assert!(report.steps.is_empty());
        }
    }
}

/// A stand-in for sluice: channel API, `/channels/{id}/...` and `/metrics`.
#[derive(Default)]
struct FakeSluice {
    channels: Vec<(String, String, String)>,
    proxied: u64,
}

async fn start_fake_sluice() -> (SocketAddr, Arc<Mutex<FakeSluice>>) {
    let state = Arc::new(Mutex::new(FakeSluice::default()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shared = Arc::clone(&state);
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let state = Arc::clone(&shared);
            tokio::spawn(async move {
                let service = service_fn(move |req| fake_sluice(Arc::clone(&state), req));
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, state)
}

async fn fake_sluice(
    state: Arc<Mutex<FakeSluice>>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let reply = |status: u16, body: String| {
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status.try_into().unwrap();
        Ok(response)
    };
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or_default().to_owned();
    let authorised = request
        .headers()
        .get("authorization")
        .is_some_and(|v| v == "Bearer secret-token");
    let method = request.method().clone();
    let body = request.into_body().collect().await.unwrap().to_bytes();
    let mut state = state.lock().unwrap();

    if path == "/metrics" {
        let n = state.proxied as f64;
        return reply(
            200,
            format!(
                "# TYPE sluice_process_pid gauge\nsluice_process_pid {}\n\
                 sluice_proxy_phase_seconds_sum{{phase=\"lookup\"}} {}\n\
                 sluice_proxy_phase_seconds_sum{{phase=\"ledger\"}} {}\n\
                 sluice_proxy_phase_seconds_sum{{phase=\"upstream\"}} {}\n\
                 sluice_proxy_latency_seconds_sum {}\n\
                 sluice_proxy_latency_seconds_count {n}\n",
                std::process::id(),
                n * 0.0001,
                n * 0.0002,
                n * 0.0005,
                n * 0.001,
            ),
        );
    }
    if path == "/api/v1/channels" {
        if !authorised {
            return reply(401, "{\"error\":\"unauthorised\"}".into());
        }
        if method == "POST" {
            let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
            let id = format!("ch-{}", state.channels.len() + 1);
            let name = json["name"].as_str().unwrap().to_owned();
            let sink_url = json["sink_url"].as_str().unwrap().to_owned();
            state
                .channels
                .push((id.clone(), name.clone(), sink_url.clone()));
            let channel = serde_json::json!({
                "id": id, "name": name, "sink_url": sink_url, "proxy_url": format!("/channels/{id}")
            });
            return reply(201, channel.to_string());
        }
        // Two pages: an unrelated channel first, the real ones behind a cursor.
        assert!(query.contains("limit=500"), "{query}");
        let page = if query.contains("cursor=page2") {
            let items: Vec<_> = state
                .channels
                .iter()
                .map(|(id, name, sink_url)| serde_json::json!({"id": id, "name": name, "sink_url": sink_url}))
                .collect();
            serde_json::json!({"items": items, "next_cursor": null})
        } else {
            serde_json::json!({
                "items": [{"id": "other", "name": "unrelated", "sink_url": "http://x"}],
                "next_cursor": "page2"
            })
        };
        return reply(200, page.to_string());
    }
    let known = state
        .channels
        .iter()
        .any(|(id, _, _)| path == format!("/channels/{id}/bench"));
    if known {
        state.proxied += 1;
        return reply(200, "ok".repeat(32));
    }
    reply(404, format!("no route for {path}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn happy_path_creates_its_channel_and_reports_memory_and_breakdown() {
    let (addr, state) = start_fake_sluice().await;
    let target = format!("http://{addr}");
    let dir = std::env::temp_dir().join(format!("sluice-bench-load-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let csv = dir.join("runs.csv");
    std::fs::create_dir_all(&dir).unwrap();
    let flags = [
        "--target",
        &target,
        "--sink",
        "http://sink.invalid:4001",
        "--token",
        "secret-token",
        "--concurrency",
        "2",
        "--duration",
        "1500ms",
        "--csv",
        csv.to_str().unwrap(),
        "--charts",
        dir.to_str().unwrap(),
    ];

    let report = load(&flags).await.unwrap();
    assert_consistent(&report);
    assert!(report.errors.is_empty(), "{report}");
    {
        let state = state.lock().unwrap();
        assert_eq!(
            state.channels,
            [(
                "ch-1".to_owned(),
                "bench-happy_path".to_owned(),
                "http://sink.invalid:4001".to_owned()
            )]
        );
        assert_eq!(state.proxied, report.requests);
    }
    assert!(report
        .url
        .starts_with(&format!("{target}/channels/ch-1/bench")));

    let server = report.server.expect("breakdown from /metrics");
    assert_eq!(server.requests, report.requests);
    for (got, want) in [
        (server.lookup_us, 100.0),
        (server.ledger_us, 200.0),
        (server.upstream_us, 500.0),
        (server.total_us, 1000.0),
        (server.overhead_us, 200.0),
    ] {
        assert!((got - want).abs() < 0.01, "{server:?}");
    }

    let memory = report.memory.expect("memory of the pid from /metrics");
    assert_eq!(memory.pid, std::process::id());
    assert!(memory.samples >= 5, "{memory:?}");
    assert!(memory.max_kib >= memory.start_kib && memory.max_kib >= memory.end_kib);
    assert_eq!(
        memory.delta_kib,
        memory.end_kib as i64 - memory.start_kib as i64
    );

    // A second run finds the channel instead of creating another one.
    let again = load(&flags).await.unwrap();
    assert_eq!(state.lock().unwrap().channels.len(), 1);
    assert_eq!(again.server.unwrap().requests, again.requests);

    let rows = std::fs::read_to_string(&csv).unwrap();
    assert_eq!(rows.lines().count(), 3, "header and two rows:\n{rows}");
    assert!(rows.lines().nth(1).unwrap().contains(",happy_path,"));
    for chart in ["happy_path-throughput.png", "happy_path-latency.png"] {
        let png = std::fs::read(dir.join(chart)).unwrap();
        assert!(png.starts_with(b"\x89PNG"), "{chart} is a PNG");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saturation_charts_plot_against_concurrency() {
    let sink = start_sink(&[]).await;
    let dir = std::env::temp_dir().join(format!("sluice-bench-sat-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let report = load(&[
        "--raw-url",
        &format!("http://{sink}"),
        "--scenario",
        "saturation",
        "--steps",
        "1,2,4",
        "--duration",
        "1500ms",
        "--charts",
        dir.to_str().unwrap(),
    ])
    .await
    .unwrap();
    assert_eq!(report.steps.len(), 3);
    for chart in [
        "saturation-throughput-vs-concurrency.png",
        "saturation-latency-vs-concurrency.png",
        "saturation-throughput.png",
    ] {
        let png = std::fs::read(dir.join(chart)).unwrap();
        assert!(png.len() > 1000 && png.starts_with(b"\x89PNG"), "{chart}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxied_scenarios_need_a_channel_or_token() {
    let (addr, _) = start_fake_sluice().await;
    let error = load(&["--target", &format!("http://{addr}"), "--duration", "1"])
        .await
        .unwrap_err();
    assert!(error.to_string().contains("--token"), "{error:#}");
}
