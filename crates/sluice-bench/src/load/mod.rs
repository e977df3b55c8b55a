//! Load generator (`sluice bench load`): closed-loop virtual users on keep-alive HTTP/1.1
//! connections, every latency in an HDR histogram, the proxy's memory sampled during the run and
//! its `/metrics` scraped before and after for the server-side breakdown.

mod api;
pub mod charts;
mod client;
pub mod duration;
pub mod memory;
pub mod metrics_scrape;
pub mod report;
mod runner;
pub mod scenario;

use std::{path::PathBuf, sync::Arc, time::Duration};

use anyhow::{bail, Context as _};
use bytes::Bytes;
use clap::Args;

pub use report::{ErrorKind, LoadReport};
pub use scenario::Scenario;

use client::Endpoint;
use memory::MemorySampler;
use runner::{run_phase, PhaseResult, RunContext, Timeline};
use scenario::LoadShape;

/// Path every request is sent to (below the channel, the sink or the raw URL).
const REQUEST_PATH: &str = "/bench";
/// Time left to the proxy to record its last requests before the closing `/metrics` scrape.
const METRICS_SETTLE: Duration = Duration::from_millis(200);

/// Options of `sluice bench load`.
#[derive(Debug, Clone, Args)]
pub struct LoadArgs {
    /// Base URL of sluice.
    #[arg(long, default_value = "http://127.0.0.1:4000")]
    pub target: String,
    /// Base URL of the mock sink (the channel's sink URL; `direct_sink` drives it directly).
    #[arg(long, default_value = "http://127.0.0.1:4001")]
    pub sink: String,
    /// Channel id to drive; when absent, a channel named `bench-<scenario>` is found or created.
    #[arg(long)]
    pub channel: Option<String>,
    /// API token for finding or creating the channel and for reading `/metrics` (an instance
    /// token: `/metrics` names every channel).
    #[arg(long, env = "SLUICE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Drive this base URL directly (e.g. nginx), with no API call and no `/metrics` scrape.
    #[arg(long, conflicts_with = "channel")]
    pub raw_url: Option<String>,
    /// Scenario to run.
    #[arg(long, value_enum, default_value_t = Scenario::HappyPath)]
    pub scenario: Scenario,
    /// Virtual users (the final number for `ramp_up`).
    #[arg(long, default_value_t = 10)]
    pub concurrency: usize,
    /// Length of the run (`30`, `30s`, `2m`); saturation splits it evenly over its steps.
    #[arg(long, default_value = "30s", value_parser = duration::parse_duration)]
    pub duration: Duration,
    /// Request body size in bytes [default: 1024, 1048576 for large_payload].
    #[arg(long)]
    pub payload_size: Option<usize>,
    /// Ask the sink for bodies of this size (`?response_size=`) [default for large_response: 1048576].
    #[arg(long)]
    pub response_size: Option<u64>,
    /// Ask the sink to wait this many ms (`?delay=`) [default for slow_sink: 100].
    #[arg(long)]
    pub delay: Option<u64>,
    /// Concurrency levels of the saturation scenario.
    #[arg(long, value_delimiter = ',', default_value = "1,2,5,10,20,50,100")]
    pub steps: Vec<usize>,
    /// Per-request timeout (`30s`, `500ms`, ...).
    #[arg(long, default_value = "30s", value_parser = duration::parse_duration)]
    pub timeout: Duration,
    /// Append one CSV row for the run to this file.
    #[arg(long)]
    pub csv: Option<PathBuf>,
    /// Write PNG charts into this directory.
    #[arg(long)]
    pub charts: Option<PathBuf>,
    /// Pid of the sluice process whose memory to sample (else read from its `/metrics`).
    #[arg(long)]
    pub proxy_pid: Option<u32>,
}

/// Runs the load described by `args`, prints the human report and returns it.
pub async fn run_load(args: LoadArgs) -> anyhow::Result<LoadReport> {
    let scenario = args.scenario;
    let shape = scenario.shape(args.concurrency, &args.steps);
    if shape.max_concurrency() == 0 || args.steps.contains(&0) {
        bail!("--concurrency and every --steps value must be at least 1");
    }
    let payload_size = args
        .payload_size
        .unwrap_or_else(|| scenario.default_payload_size());
    let response_size = args
        .response_size
        .or_else(|| scenario.default_response_size());
    let delay_ms = args.delay.or_else(|| scenario.default_delay_ms());
    let query = [("response_size", response_size), ("delay", delay_ms)]
        .iter()
        .filter_map(|(key, value)| value.map(|v| format!("{key}={v}")))
        .collect::<Vec<_>>()
        .join("&");

    let api = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let proxied = args.raw_url.is_none() && scenario != Scenario::DirectSink;
    let base = match (&args.raw_url, scenario) {
        (Some(raw), _) => raw.clone(),
        (None, Scenario::DirectSink) => args.sink.clone(),
        (None, _) => {
            let channel = match &args.channel {
                Some(id) => id.clone(),
                None => {
                    let token = args.token.as_deref().context(
                        "no --channel given: a --token (or SLUICE_TOKEN) is needed to find or create one",
                    )?;
                    let name = format!("bench-{scenario}");
                    api::ensure_channel(&api, &args.target, token, &name, &args.sink).await?
                }
            };
            format!("{}/channels/{channel}", args.target.trim_end_matches('/'))
        }
    };
    let endpoint = Endpoint::resolve(&base, REQUEST_PATH, &query).await?;
    client::preflight(&endpoint, args.timeout).await?;

    let before = if proxied {
        metrics_scrape::fetch(&api, &args.target, args.token.as_deref())
            .await
            .unwrap_or_else(|error| {
                tracing::warn!(%error, "could not scrape /metrics; no server-side breakdown");
                None
            })
    } else {
        None
    };
    let pid = args
        .proxy_pid
        .or_else(|| before.as_ref().and_then(|m| m.pid()));
    let sampler = match pid {
        Some(pid) => Some(
            MemorySampler::start(pid)
                .with_context(|| format!("reading the memory of process {pid}"))?,
        ),
        None => None,
    };

    println!(
        "running {scenario}: {} VUs for {:.1} s against {}",
        shape.max_concurrency(),
        args.duration.as_secs_f64(),
        endpoint.url
    );
    let url = endpoint.url.clone();
    let context = Arc::new(RunContext {
        endpoint,
        scenario,
        payload: Bytes::from(vec![b'p'; payload_size]),
        timeout: args.timeout,
        timeline: Timeline::starting_now(),
    });
    let phase = shape.phase_duration(args.duration);
    let (total, steps) = match &shape {
        LoadShape::Steady(users) => (run_phase(&context, *users, phase, false).await?, Vec::new()),
        LoadShape::Ramp(users) => (run_phase(&context, *users, phase, true).await?, Vec::new()),
        LoadShape::Steps(levels) => {
            let mut total = PhaseResult::empty();
            let mut steps = Vec::new();
            for &users in levels {
                let step = run_phase(&context, users, phase, false).await?;
                steps.push(step.step());
                total.merge(&step);
            }
            (total, steps)
        }
    };

    let memory = match sampler {
        Some(sampler) => Some(sampler.finish().await),
        None => None,
    };
    let server = match &before {
        Some(before) => {
            tokio::time::sleep(METRICS_SETTLE).await;
            match metrics_scrape::fetch(&api, &args.target, args.token.as_deref()).await {
                Ok(Some(after)) => metrics_scrape::breakdown(before, &after),
                Ok(None) => None,
                Err(error) => {
                    tracing::warn!(%error, "could not scrape /metrics after the run");
                    None
                }
            }
        }
        None => None,
    };

    let report = LoadReport {
        scenario,
        url,
        concurrency: shape.max_concurrency(),
        payload_size,
        response_size,
        delay_ms,
        elapsed: total.elapsed,
        requests: total.requests,
        successes: total.successes,
        bytes_sent: total.bytes_sent,
        bytes_received: total.bytes_received,
        errors: total.errors.clone(),
        throughput_rps: total.throughput(),
        latency: report::LatencySummary::from_histogram(&total.latencies),
        memory,
        server,
        steps,
        timeline: context.timeline.report(),
    };
    println!("{report}");
    if let Some(path) = &args.csv {
        report
            .append_csv(path)
            .with_context(|| format!("appending to {}", path.display()))?;
        println!("CSV row appended to {}", path.display());
    }
    if let Some(dir) = &args.charts {
        for chart in charts::write_charts(&report, dir)? {
            println!("chart written to {}", chart.display());
        }
    }
    Ok(report)
}
