//! The load report: what a run measured, its human rendering and its CSV row.

use std::{
    collections::BTreeMap,
    fmt,
    fs::OpenOptions,
    io::{self, Write},
    path::Path,
    time::Duration,
};

use hdrhistogram::Histogram;

use super::scenario::Scenario;

/// Why a request did not succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ErrorKind {
    /// The server answered with this 4xx or 5xx status.
    Status(u16),
    /// No complete answer within `--timeout`.
    Timeout,
    /// The TCP connection or HTTP handshake could not be established.
    Connect,
    /// Anything else: connection reset mid-exchange, malformed response, ...
    Other,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Status(code) => write!(f, "status_{code}"),
            Self::Timeout => f.write_str("timeout"),
            Self::Connect => f.write_str("connect"),
            Self::Other => f.write_str("other"),
        }
    }
}

/// Client-side latency percentiles in microseconds, over every request that got an answer.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LatencySummary {
    /// Number of latencies recorded.
    pub count: u64,
    /// Mean.
    pub mean_us: f64,
    /// Median.
    pub p50_us: u64,
    /// 95th percentile.
    pub p95_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// Slowest.
    pub max_us: u64,
}

impl LatencySummary {
    /// Summarises a histogram of microsecond latencies.
    pub fn from_histogram(histogram: &Histogram<u64>) -> Self {
        if histogram.is_empty() {
            return Self::default();
        }
        Self {
            count: histogram.len(),
            mean_us: histogram.mean(),
            p50_us: histogram.value_at_quantile(0.50),
            p95_us: histogram.value_at_quantile(0.95),
            p99_us: histogram.value_at_quantile(0.99),
            max_us: histogram.max(),
        }
    }
}

/// Resident memory (VmRSS) of the proxy process, sampled during the run, in KiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemorySummary {
    /// The process sampled.
    pub pid: u32,
    /// How many samples were taken.
    pub samples: usize,
    /// Before the first request.
    pub start_kib: u64,
    /// After the last request.
    pub end_kib: u64,
    /// Highest sample.
    pub max_kib: u64,
    /// `end - start`.
    pub delta_kib: i64,
}

/// Where the proxy spent its time, as mean microseconds per proxied request, from `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ServerBreakdown {
    /// Requests the proxy counted during the run (`sluice_proxy_latency_seconds_count` delta).
    pub requests: u64,
    /// Channel lookup.
    pub lookup_us: f64,
    /// Waiting for the durable pending ledger record.
    pub ledger_us: f64,
    /// Sending to the sink until its response head.
    pub upstream_us: f64,
    /// Whole request as the proxy measured it.
    pub total_us: f64,
    /// `total - lookup - ledger - upstream`: what sluice itself costs.
    pub overhead_us: f64,
}

/// One concurrency level of a `saturation` run.
#[derive(Debug, Clone, PartialEq)]
pub struct StepReport {
    /// Virtual users in this step.
    pub concurrency: usize,
    /// Requests completed.
    pub requests: u64,
    /// Of which failed.
    pub errors: u64,
    /// Requests per second.
    pub throughput_rps: f64,
    /// Latency of the step.
    pub latency: LatencySummary,
}

/// One time window (one second) of the run, for the over-time charts.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowReport {
    /// Start of the window, seconds since the run began.
    pub start_s: f64,
    /// Requests completed in the window per second.
    pub throughput_rps: f64,
    /// Failed requests in the window.
    pub errors: u64,
    /// Median latency in the window.
    pub p50_us: u64,
    /// 99th percentile latency in the window.
    pub p99_us: u64,
}

/// Everything a load run measured.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadReport {
    /// The scenario run.
    pub scenario: Scenario,
    /// URL prefix the requests were sent to.
    pub url: String,
    /// Highest number of concurrent virtual users.
    pub concurrency: usize,
    /// Request body size for methods that carry one.
    pub payload_size: usize,
    /// `?response_size=` asked of the sink, if any.
    pub response_size: Option<u64>,
    /// `?delay=` (ms) asked of the sink, if any.
    pub delay_ms: Option<u64>,
    /// Wall-clock time from the first request to the last answer.
    pub elapsed: Duration,
    /// Requests attempted (each one either succeeded or is counted in `errors`).
    pub requests: u64,
    /// Requests answered with a status below 400.
    pub successes: u64,
    /// Request body bytes sent (answered requests).
    pub bytes_sent: u64,
    /// Response body bytes received.
    pub bytes_received: u64,
    /// Failed requests by kind.
    pub errors: BTreeMap<ErrorKind, u64>,
    /// `requests / elapsed`.
    pub throughput_rps: f64,
    /// Client-side latency.
    pub latency: LatencySummary,
    /// Proxy memory, when its pid was known.
    pub memory: Option<MemorySummary>,
    /// Server-side time breakdown, when the target exposes sluice's `/metrics`.
    pub server: Option<ServerBreakdown>,
    /// Per-concurrency results (saturation only).
    pub steps: Vec<StepReport>,
    /// Per-second results.
    pub timeline: Vec<WindowReport>,
}

impl LoadReport {
    /// Total failed requests.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Failed requests as a fraction of all requests.
    pub fn error_rate(&self) -> f64 {
        ratio(self.error_count() as f64, self.requests as f64)
    }

    /// Appends this run as one CSV row, writing the header first if the file is new or empty.
    pub fn append_csv(&self, path: &Path) -> io::Result<()> {
        let mut file = OpenOptions::new().create(true).append(true).open(path)?;
        if file.metadata()?.len() == 0 {
            writeln!(file, "{}", CSV_HEADER.join(","))?;
        }
        writeln!(file, "{}", self.csv_row().join(","))
    }

    fn csv_row(&self) -> Vec<String> {
        let opt = |value: Option<String>| value.unwrap_or_default();
        let memory = |get: fn(&MemorySummary) -> String| opt(self.memory.as_ref().map(get));
        let server = |get: fn(&ServerBreakdown) -> f64| {
            opt(self.server.as_ref().map(|s| format!("{:.1}", get(s))))
        };
        let errors = self
            .errors
            .iter()
            .map(|(kind, count)| format!("{kind}={count}"))
            .collect::<Vec<_>>()
            .join(";");
        let now = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        vec![
            now,
            self.scenario.to_string(),
            self.url.clone(),
            self.concurrency.to_string(),
            format!("{:.3}", self.elapsed.as_secs_f64()),
            self.payload_size.to_string(),
            opt(self.response_size.map(|v| v.to_string())),
            opt(self.delay_ms.map(|v| v.to_string())),
            self.requests.to_string(),
            self.successes.to_string(),
            self.error_count().to_string(),
            format!("{:.4}", self.error_rate()),
            errors,
            format!("{:.1}", self.throughput_rps),
            self.latency.p50_us.to_string(),
            self.latency.p95_us.to_string(),
            self.latency.p99_us.to_string(),
            self.latency.max_us.to_string(),
            self.bytes_sent.to_string(),
            self.bytes_received.to_string(),
            memory(|m| m.start_kib.to_string()),
            memory(|m| m.end_kib.to_string()),
            memory(|m| m.max_kib.to_string()),
            memory(|m| m.delta_kib.to_string()),
            server(|s| s.lookup_us),
            server(|s| s.ledger_us),
            server(|s| s.upstream_us),
            server(|s| s.total_us),
            server(|s| s.overhead_us),
        ]
    }
}

/// Columns of the CSV file, in order.
pub const CSV_HEADER: [&str; 29] = [
    "timestamp",
    "scenario",
    "url",
    "concurrency",
    "elapsed_s",
    "payload_size",
    "response_size",
    "delay_ms",
    "requests",
    "successes",
    "errors",
    "error_rate",
    "errors_by_kind",
    "throughput_rps",
    "p50_us",
    "p95_us",
    "p99_us",
    "max_us",
    "bytes_sent",
    "bytes_received",
    "mem_start_kib",
    "mem_end_kib",
    "mem_max_kib",
    "mem_delta_kib",
    "srv_lookup_us",
    "srv_ledger_us",
    "srv_upstream_us",
    "srv_total_us",
    "srv_overhead_us",
];

/// `numerator / denominator`, or 0 when the denominator is 0.
pub(crate) fn ratio(numerator: f64, denominator: f64) -> f64 {
    if denominator == 0.0 {
        0.0
    } else {
        numerator / denominator
    }
}

fn ms(us: impl Into<f64>) -> String {
    format!("{:.2} ms", us.into() / 1000.0)
}

fn mib(kib: f64) -> String {
    format!("{:.1} MiB", kib / 1024.0)
}

const RULE: &str = "───────────────────────────────────────────────";

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let double = "═".repeat(RULE.chars().count());
        writeln!(
            f,
            "{double}\n sluice load test: {}\n{double}",
            self.scenario
        )?;
        writeln!(f, " URL:          {}", self.url)?;
        writeln!(f, " Concurrency:  {} VUs", self.concurrency)?;
        writeln!(f, " Elapsed:      {:.1} s", self.elapsed.as_secs_f64())?;
        writeln!(f, " Payload:      {} B", self.payload_size)?;
        if let Some(size) = self.response_size {
            writeln!(f, " Response:     {size} B (?response_size)")?;
        }
        if let Some(delay) = self.delay_ms {
            writeln!(f, " Sink delay:   {delay} ms (?delay)")?;
        }
        writeln!(f, "{RULE}")?;
        writeln!(f, " Requests:     {}", self.requests)?;
        writeln!(f, " Successes:    {}", self.successes)?;
        writeln!(f, " Throughput:   {:.1} req/s", self.throughput_rps)?;
        let secs = self.elapsed.as_secs_f64();
        for (name, bytes) in [
            ("Sent:", self.bytes_sent),
            ("Received:", self.bytes_received),
        ] {
            let mib = bytes as f64 / (1024.0 * 1024.0);
            writeln!(
                f,
                " {name:<13} {mib:.1} MiB ({:.1} MiB/s)",
                ratio(mib, secs)
            )?;
        }
        writeln!(
            f,
            " Errors:       {} ({:.2}%)",
            self.error_count(),
            self.error_rate() * 100.0
        )?;
        for (kind, count) in &self.errors {
            writeln!(f, "   {kind:<12} {count}")?;
        }
        writeln!(f, "{RULE}\n Latency ({} answered):", self.latency.count)?;
        writeln!(f, "   mean: {}", ms(self.latency.mean_us))?;
        for (name, value) in [
            ("p50", self.latency.p50_us),
            ("p95", self.latency.p95_us),
            ("p99", self.latency.p99_us),
            ("max", self.latency.max_us),
        ] {
            writeln!(f, "   {name}:  {}", ms(value as f64))?;
        }
        if !self.steps.is_empty() {
            writeln!(f, "{RULE}\n Saturation steps:")?;
            writeln!(
                f,
                "   {:>5} {:>10} {:>8} {:>11} {:>11}",
                "VUs", "req/s", "errors", "p50", "p99"
            )?;
            for step in &self.steps {
                writeln!(
                    f,
                    "   {:>5} {:>10.1} {:>8} {:>11} {:>11}",
                    step.concurrency,
                    step.throughput_rps,
                    step.errors,
                    ms(step.latency.p50_us as f64),
                    ms(step.latency.p99_us as f64)
                )?;
            }
            if let Some(best) = self
                .steps
                .iter()
                .max_by(|a, b| a.throughput_rps.total_cmp(&b.throughput_rps))
            {
                writeln!(
                    f,
                    "   ceiling: {:.1} req/s at {} VUs",
                    best.throughput_rps, best.concurrency
                )?;
            }
        }
        if let Some(memory) = &self.memory {
            writeln!(
                f,
                "{RULE}\n Proxy memory (pid {}, {} samples, VmRSS):",
                memory.pid, memory.samples
            )?;
            writeln!(f, "   start:  {}", mib(memory.start_kib as f64))?;
            writeln!(f, "   end:    {}", mib(memory.end_kib as f64))?;
            writeln!(f, "   max:    {}", mib(memory.max_kib as f64))?;
            writeln!(f, "   delta:  {:+.1} MiB", memory.delta_kib as f64 / 1024.0)?;
        }
        if let Some(server) = &self.server {
            writeln!(
                f,
                "{RULE}\n Server-side breakdown (mean per request, n={}):",
                server.requests
            )?;
            writeln!(f, "   total:         {}", ms(server.total_us))?;
            writeln!(f, "     lookup:      {}", ms(server.lookup_us))?;
            writeln!(f, "     ledger:      {}", ms(server.ledger_us))?;
            writeln!(f, "     upstream:    {}", ms(server.upstream_us))?;
            writeln!(f, "     own overhead:{}", ms(server.overhead_us))?;
        }
        write!(f, "{double}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> LoadReport {
        let mut histogram = Histogram::<u64>::new(3).unwrap();
        for us in [100, 200, 300, 400] {
            histogram.record(us).unwrap();
        }
        LoadReport {
            scenario: Scenario::HappyPath,
            url: "http://127.0.0.1:4000/channels/x".into(),
            concurrency: 4,
            payload_size: 1024,
            response_size: None,
            delay_ms: Some(100),
            elapsed: Duration::from_secs(2),
            requests: 5,
            successes: 4,
            bytes_sent: 4096,
            bytes_received: 1024,
            errors: BTreeMap::from([(ErrorKind::Status(503), 1)]),
            throughput_rps: 2.5,
            latency: LatencySummary::from_histogram(&histogram),
            memory: None,
            server: None,
            steps: Vec::new(),
            timeline: Vec::new(),
        }
    }

    #[test]
    fn summary_and_rates() {
        let report = report();
        assert_eq!(report.error_count(), 1);
        assert!((report.error_rate() - 0.2).abs() < 1e-9);
        assert_eq!(report.latency.count, 4);
        assert_eq!(report.latency.max_us, 400);
        let text = report.to_string();
        assert!(text.contains("status_503"), "{text}");
        assert!(text.contains("Throughput:   2.5 req/s"), "{text}");
    }

    #[test]
    fn csv_writes_header_once() {
        let path =
            std::env::temp_dir().join(format!("sluice-bench-csv-{}.csv", std::process::id()));
        let _ = std::fs::remove_file(&path);
        report().append_csv(&path).unwrap();
        report().append_csv(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0], CSV_HEADER.join(","));
        let row: Vec<_> = lines[1].split(',').collect();
        assert_eq!(row.len(), CSV_HEADER.len());
        assert_eq!(row[1], "happy_path");
        assert_eq!(row[12], "status_503=1");
    }
}
