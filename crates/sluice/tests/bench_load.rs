//! `sluice bench load` against a real sluice and an in-process mock sink: a short run of every
//! scenario, each on its own channel, whose report must add up with the ledger (one finished row
//! per request the loader counted, errors classified by status like the rows are).

mod common;

use std::{
    collections::{BTreeMap, HashSet},
    time::{Duration, Instant},
};

use clap::Parser;
use common::Sluice;
use serde_json::{json, Value};
use sluice_bench::{
    load::{run_load, ErrorKind, LoadArgs, LoadReport},
    sink::{self, SinkArgs},
};

/// Response body size of the mock sink unless asked otherwise.
const SINK_BODY: u64 = 256;
/// Request body size of every scenario but `large_payload`.
const PAYLOAD: u64 = 1024;
/// Body size of `large_payload` requests and `large_response` answers.
const MIB: u64 = 1 << 20;

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

/// Starts a mock sink on an ephemeral port with extra `sluice bench sink` flags; returns its URL.
async fn start_sink(flags: &[&str]) -> String {
    let argv = ["sink", "--port", "0"].iter().chain(flags);
    let (addr, _task) = sink::spawn(SinkCli::parse_from(argv).sink).await.unwrap();
    format!("http://{addr}")
}

/// Runs `sluice bench load` with these flags.
async fn load(flags: &[&str]) -> LoadReport {
    let argv = std::iter::once("load").chain(flags.iter().copied());
    run_load(LoadCli::parse_from(argv).load).await.unwrap()
}

/// The report's own invariants: every request either succeeded or is counted under one error
/// kind, and every answered one has a latency.
fn assert_adds_up(report: &LoadReport) {
    assert!(report.requests > 0, "{report}");
    assert_eq!(
        report.requests,
        report.successes + report.error_count(),
        "{report}"
    );
    let answered = report.successes
        + report
            .errors
            .iter()
            .filter(|(kind, _)| matches!(kind, ErrorKind::Status(_)))
            .map(|(_, n)| n)
            .sum::<u64>();
    assert_eq!(report.latency.count, answered, "{report}");
    let per_second: f64 = report.timeline.iter().map(|w| w.throughput_rps).sum();
    assert_eq!(per_second.round() as u64, report.requests, "{report}");
}

/// Polls the channel's stats until no row is pending (bounded), and returns them.
async fn settled_stats(s: &Sluice, channel: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stats = s
            .get_json(&format!(
                "/channels/{channel}/stats?since=2000-01-01T00:00:00Z"
            ))
            .await;
        if stats["by_state"]["pending"].as_u64().unwrap_or(0) == 0 {
            return stats;
        }
        assert!(
            Instant::now() < deadline,
            "rows still pending after 10 s: {stats}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every ledger row of the channel, following `next_cursor`.
async fn all_rows(s: &Sluice, channel: &str) -> Vec<Value> {
    let mut rows = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = cursor
            .as_ref()
            .map(|c| format!("&cursor={c}"))
            .unwrap_or_default();
        let page = s
            .get_json(&format!("/channels/{channel}/requests?limit=500{q}"))
            .await;
        rows.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return rows,
        }
    }
}

/// Runs `scenario` through sluice on a fresh channel to `sink_url` and checks the report against
/// the ledger: exactly one finished row per request, states and statuses matching the report's
/// successes and error kinds, body bytes matching what the loader sent and received.
async fn proxied_run(
    s: &Sluice,
    sink_url: &str,
    scenario: &str,
    flags: &[&str],
) -> (LoadReport, Vec<Value>) {
    let channel = s.create_channel(sink_url, json!({})).await;
    let id = channel["id"].as_str().unwrap().to_string();
    let mut argv = vec![
        "--target",
        s.base.as_str(),
        "--sink",
        sink_url,
        "--channel",
        id.as_str(),
        "--scenario",
        scenario,
        "--token",
        s.token.as_str(),
    ];
    argv.extend_from_slice(flags);
    let report = load(&argv).await;
    assert_adds_up(&report);
    assert_eq!(report.scenario.name(), scenario);
    // Only answered requests: a connect failure, timeout or reset would make the request count
    // and the ledger disagree for reasons outside the loader's bookkeeping.
    assert!(
        report
            .errors
            .keys()
            .all(|kind| matches!(kind, ErrorKind::Status(_))),
        "unexpected transport errors: {report}"
    );
    assert!(
        report
            .url
            .starts_with(&format!("{}/channels/{id}/bench", s.base)),
        "{report}"
    );
    // The proxy was found from /metrics: memory sampled and the breakdown counted every request.
    let memory = report.memory.expect("memory sampled from the /metrics pid");
    assert_eq!(memory.pid, s.pid());
    let server = report.server.expect("server-side breakdown from /metrics");
    assert_eq!(server.requests, report.requests, "{report}");

    let stats = settled_stats(s, &id).await;
    assert_eq!(stats["total"], report.requests, "{stats}\n{report}");
    let by_state = &stats["by_state"];
    assert_eq!(by_state["success"], report.successes, "{stats}\n{report}");
    assert_eq!(
        by_state["failed"],
        report.error_count(),
        "{stats}\n{report}"
    );
    assert_eq!(by_state["timeout"].as_u64().unwrap_or(0), 0, "{stats}");
    assert_eq!(by_state["error"].as_u64().unwrap_or(0), 0, "{stats}");

    let rows = all_rows(s, &id).await;
    assert_eq!(rows.len() as u64, report.requests, "{report}");
    let ids: HashSet<&str> = rows.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), rows.len(), "pagination repeated a row");
    let mut statuses: BTreeMap<u64, u64> = BTreeMap::new();
    for row in &rows {
        assert_ne!(row["state"], "pending", "{row}");
        assert!(row["completed_at"].is_string(), "{row}");
        assert_eq!(row["path"], "/bench", "{row}");
        *statuses
            .entry(row["response_status"].as_u64().unwrap())
            .or_default() += 1;
    }
    let mut expected: BTreeMap<u64, u64> = report
        .errors
        .iter()
        .filter_map(|(kind, n)| match kind {
            ErrorKind::Status(code) => Some((u64::from(*code), *n)),
            _ => None,
        })
        .collect();
    if report.successes > 0 {
        // The mock sink answers one status for successes (200 unless told otherwise).
        let ok: u64 = statuses
            .iter()
            .filter(|(c, _)| **c < 400)
            .map(|(_, n)| n)
            .sum();
        assert_eq!(ok, report.successes, "{statuses:?}");
        expected.extend(statuses.iter().filter(|(c, _)| **c < 400));
    }
    assert_eq!(statuses, expected, "ledger statuses vs report\n{report}");

    let sent: u64 = rows
        .iter()
        .map(|r| r["request_body_size"].as_u64().unwrap_or(0))
        .sum();
    let received: u64 = rows
        .iter()
        .map(|r| r["response_body_size"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(sent, report.bytes_sent, "request bytes\n{report}");
    assert_eq!(received, report.bytes_received, "response bytes\n{report}");
    (report, rows)
}

/// Rows all carry this request and response body size.
fn assert_sizes(rows: &[Value], request: u64, response: u64) {
    for row in rows {
        assert_eq!(
            row["request_body_size"].as_u64().unwrap_or(0),
            request,
            "{row}"
        );
        assert_eq!(row["response_body_size"], response, "{row}");
    }
}

/// Rows all used this method and got this status.
fn assert_all(rows: &[Value], method: &str, status: u64) {
    for row in rows {
        assert_eq!(row["method"], method, "{row}");
        assert_eq!(row["response_status"], status, "{row}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn happy_path_report_matches_the_ledger() {
    let s = Sluice::start().await;
    let sink = start_sink(&[]).await;
    let flags = ["--concurrency", "4", "--duration", "1500ms"];
    let (report, rows) = proxied_run(&s, &sink, "happy_path", &flags).await;
    assert!(report.errors.is_empty(), "{report}");
    assert_eq!(report.concurrency, 4);
    assert!(report.elapsed >= Duration::from_millis(1500), "{report}");
    assert!(report.requests >= 20, "{report}");
    assert_all(&rows, "POST", 200);
    assert_sizes(&rows, PAYLOAD, SINK_BODY);
    assert!(rows.iter().all(|r| r["state"] == "success"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ramp_up_report_matches_the_ledger() {
    let s = Sluice::start().await;
    let sink = start_sink(&[]).await;
    let flags = ["--concurrency", "4", "--duration", "1500ms"];
    let (report, rows) = proxied_run(&s, &sink, "ramp_up", &flags).await;
    assert!(report.errors.is_empty(), "{report}");
    assert_eq!(report.concurrency, 4);
    assert_all(&rows, "POST", 200);
    assert_sizes(&rows, PAYLOAD, SINK_BODY);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_payload_report_matches_the_ledger() {
    let s = Sluice::start().await;
    let sink = start_sink(&[]).await;
    let flags = ["--concurrency", "2", "--duration", "1s"];
    let (report, rows) = proxied_run(&s, &sink, "large_payload", &flags).await;
    assert!(report.errors.is_empty(), "{report}");
    assert_eq!(report.payload_size as u64, MIB);
    assert_eq!(report.bytes_sent, report.requests * MIB);
    assert_all(&rows, "POST", 200);
    assert_sizes(&rows, MIB, SINK_BODY);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_response_report_matches_the_ledger() {
    let s = Sluice::start().await;
    let sink = start_sink(&[]).await;
    let flags = ["--concurrency", "2", "--duration", "1s"];
    let (report, rows) = proxied_run(&s, &sink, "large_response", &flags).await;
    assert!(report.errors.is_empty(), "{report}");
    assert_eq!(report.response_size, Some(MIB));
    assert_eq!(report.bytes_received, report.requests * MIB);
    assert_all(&rows, "GET", 200);
    assert_sizes(&rows, 0, MIB);
    assert!(rows.iter().all(|r| r["query"]
        .as_str()
        .is_some_and(|q| q.contains("response_size=1048576"))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_methods_report_matches_the_ledger() {
    let s = Sluice::start().await;
    let sink = start_sink(&[]).await;
    let flags = ["--concurrency", "4", "--duration", "1500ms"];
    let (report, rows) = proxied_run(&s, &sink, "mixed_methods", &flags).await;
    assert!(report.errors.is_empty(), "{report}");
    let mut by_method: BTreeMap<String, u64> = BTreeMap::new();
    for row in &rows {
        let method = row["method"].as_str().unwrap().to_string();
        let body = match method.as_str() {
            "POST" | "PUT" | "PATCH" => PAYLOAD,
            _ => 0,
        };
        assert_eq!(
            row["request_body_size"].as_u64().unwrap_or(0),
            body,
            "{row}"
        );
        assert_eq!(row["response_status"], 200, "{row}");
        *by_method.entry(method).or_default() += 1;
    }
    let methods: Vec<&str> = by_method.keys().map(String::as_str).collect();
    assert_eq!(methods, ["DELETE", "GET", "PATCH", "POST", "PUT"]);
    // Each user rotates through the five methods, so no method lags another by more than one
    // request per user.
    let (min, max) = (
        by_method.values().min().unwrap(),
        by_method.values().max().unwrap(),
    );
    assert!(max - min <= 4, "{by_method:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_sink_report_matches_the_ledger() {
    let s = Sluice::start().await;
    let sink = start_sink(&[]).await;
    let flags = ["--concurrency", "4", "--duration", "1s"];
    let (report, rows) = proxied_run(&s, &sink, "slow_sink", &flags).await;
    assert!(report.errors.is_empty(), "{report}");
    assert_eq!(report.delay_ms, Some(100));
    assert!(report.latency.p50_us >= 100_000, "{report}");
    // 4 users waiting 100 ms per request for 1 s: about 40 requests, at most 4 per user-slot.
    assert!(
        (4..=48).contains(&report.requests),
        "{} requests",
        report.requests
    );
    assert_all(&rows, "POST", 200);
    for row in &rows {
        assert!(row["latency_us"].as_u64().unwrap() >= 100_000, "{row}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saturation_report_matches_the_ledger() {
    let s = Sluice::start().await;
    let sink = start_sink(&[]).await;
    let flags = ["--steps", "1,2,4", "--duration", "1500ms"];
    let (report, rows) = proxied_run(&s, &sink, "saturation", &flags).await;
    assert!(report.errors.is_empty(), "{report}");
    assert_eq!(report.concurrency, 4);
    let levels: Vec<usize> = report.steps.iter().map(|st| st.concurrency).collect();
    assert_eq!(levels, [1, 2, 4]);
    let per_step: u64 = report.steps.iter().map(|st| st.requests).sum();
    assert_eq!(per_step, report.requests, "{report}");
    assert!(report
        .steps
        .iter()
        .all(|st| st.requests > 0 && st.errors == 0));
    assert_all(&rows, "POST", 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_503s_are_failed_rows_and_status_errors() {
    let s = Sluice::start().await;
    let sink = start_sink(&["--status", "503"]).await;
    let flags = ["--concurrency", "2", "--duration", "1s"];
    let (report, rows) = proxied_run(&s, &sink, "happy_path", &flags).await;
    assert_eq!(report.successes, 0, "{report}");
    assert_eq!(
        report.errors,
        BTreeMap::from([(ErrorKind::Status(503), report.requests)])
    );
    assert_all(&rows, "POST", 503);
    assert!(rows.iter().all(|r| r["state"] == "failed"), "{rows:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_sink_adds_up_and_leaves_the_ledger_alone() {
    let s = Sluice::start().await;
    let sink = start_sink(&[]).await;
    // A channel to the same sink: direct_sink must not go through it (nor anything else).
    let channel = s.create_channel(&sink, json!({})).await;
    let id = channel["id"].as_str().unwrap().to_string();
    let report = load(&[
        "--target",
        &s.base,
        "--sink",
        &sink,
        "--channel",
        &id,
        "--token",
        &s.token,
        "--scenario",
        "direct_sink",
        "--concurrency",
        "4",
        "--duration",
        "1s",
    ])
    .await;
    assert_adds_up(&report);
    assert!(report.errors.is_empty(), "{report}");
    assert!(report.url.starts_with(&format!("{sink}/bench")), "{report}");
    assert_eq!(report.bytes_sent, report.requests * PAYLOAD);
    assert_eq!(report.bytes_received, report.requests * SINK_BODY);
    assert!(report.server.is_none() && report.memory.is_none());
    let stats = settled_stats(&s, &id).await;
    assert_eq!(stats["total"], 0, "{stats}");
    assert!(all_rows(&s, &id).await.is_empty());
    assert_eq!(proxied_count(&s).await, 0.0, "sluice proxied something");
    // The probes see proxied traffic: one request through the channel shows up in both.
    let through = s
        .http()
        .post(s.proxy_url(&channel, "/bench"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(through.status(), 200);
    assert_eq!(settled_stats(&s, &id).await["total"], 1);
    assert_eq!(proxied_count(&s).await, 1.0);
}

/// Requests sluice's `/metrics` says it proxied (`sluice_proxy_latency_seconds_count`).
async fn proxied_count(s: &Sluice) -> f64 {
    s.metric_sum("sluice_proxy_latency_seconds_count").await
}
