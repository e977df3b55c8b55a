//! Scraping sluice's Prometheus `/metrics` and turning two scrapes into a server-side breakdown.

use std::collections::HashMap;

use anyhow::Context as _;

use super::report::{ratio, ServerBreakdown};

/// Per-phase histogram of the proxy (label `phase`).
const PHASE: &str = "sluice_proxy_phase_seconds";
/// Whole-request histogram of the proxy.
const TOTAL: &str = "sluice_proxy_latency_seconds";
/// Gauge holding the proxy's process id.
const PID: &str = "sluice_process_pid";

/// Label pairs of one sample, in exposition order.
type Labels = Vec<(String, String)>;

/// One scrape: every sample, keyed by metric name.
#[derive(Debug, Clone, Default)]
pub struct MetricsSnapshot {
    samples: HashMap<String, Vec<(Labels, f64)>>,
}

impl MetricsSnapshot {
    /// Parses the Prometheus text exposition format (comments and malformed lines are skipped).
    pub fn parse(text: &str) -> Self {
        let mut samples: HashMap<String, Vec<_>> = HashMap::new();
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some((name, labels, value)) = parse_line(line) {
                samples.entry(name).or_default().push((labels, value));
            }
        }
        Self { samples }
    }

    /// Whether any `sluice_` series is present (i.e. the target is sluice).
    pub fn is_sluice(&self) -> bool {
        self.samples.keys().any(|name| name.starts_with("sluice_"))
    }

    /// Sum of every sample of `name` whose labels include `label` (all samples if `None`).
    pub fn sum(&self, name: &str, label: Option<(&str, &str)>) -> f64 {
        self.samples
            .get(name)
            .into_iter()
            .flatten()
            .filter(|(labels, _)| {
                label.is_none_or(|(key, value)| labels.iter().any(|(k, v)| k == key && v == value))
            })
            .map(|(_, value)| value)
            .sum()
    }

    /// The proxy's pid from the `sluice_process_pid` gauge.
    pub fn pid(&self) -> Option<u32> {
        let value = self.samples.get(PID)?.first()?.1;
        (value >= 1.0 && value <= f64::from(u32::MAX)).then_some(value as u32)
    }
}

fn parse_line(line: &str) -> Option<(String, Labels, f64)> {
    let name_end = line.find(|c: char| c == '{' || c.is_whitespace())?;
    let name = &line[..name_end];
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(inner) = rest.strip_prefix('{') {
        let (parsed, after) = parse_labels(inner)?;
        labels = parsed;
        rest = after;
    }
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        other => other.parse().ok()?,
    };
    Some((name.to_owned(), labels, value))
}

/// Parses `key="value",...}` and returns the labels and what follows the closing brace.
fn parse_labels(mut text: &str) -> Option<(Labels, &str)> {
    let mut labels = Vec::new();
    loop {
        text = text.trim_start_matches([' ', ',']);
        if let Some(after) = text.strip_prefix('}') {
            return Some((labels, after));
        }
        let (key, after_key) = text.split_once('=')?;
        let mut chars = after_key.strip_prefix('"')?.char_indices();
        let mut value = String::new();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                (_, c) => value.push(c),
            }
        };
        labels.push((key.trim().to_owned(), value));
        text = &after_key[1 + end + 1..];
    }
}

/// Mean time per proxied request spent in each phase between two scrapes.
/// `None` when the proxy handled no request in between.
pub fn breakdown(before: &MetricsSnapshot, after: &MetricsSnapshot) -> Option<ServerBreakdown> {
    let delta = |name: &str, label| after.sum(name, label) - before.sum(name, label);
    let count = delta(&format!("{TOTAL}_count"), None);
    if count < 1.0 {
        return None;
    }
    let mean_us = |name: &str, label| ratio(delta(name, label), count) * 1e6;
    let phase = |phase| mean_us(&format!("{PHASE}_sum"), Some(("phase", phase)));
    let (lookup_us, ledger_us, upstream_us) = (phase("lookup"), phase("ledger"), phase("upstream"));
    let total_us = mean_us(&format!("{TOTAL}_sum"), None);
    Some(ServerBreakdown {
        requests: count.round() as u64,
        lookup_us,
        ledger_us,
        upstream_us,
        total_us,
        overhead_us: total_us - lookup_us - ledger_us - upstream_us,
    })
}

/// Fetches `{target}/metrics` with `token` if given; `None` when it is absent, refused or not
/// sluice's.
pub async fn fetch(
    client: &reqwest::Client,
    target: &str,
    token: Option<&str>,
) -> anyhow::Result<Option<MetricsSnapshot>> {
    let url = format!("{}/metrics", target.trim_end_matches('/'));
    let mut request = client.get(&url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.with_context(|| format!("GET {url}"))?;
    if !response.status().is_success() {
        return Ok(None);
    }
    let snapshot = MetricsSnapshot::parse(&response.text().await?);
    Ok(snapshot.is_sluice().then_some(snapshot))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrape(count: u64, lookup: f64, ledger: f64, upstream: f64, total: f64) -> MetricsSnapshot {
        MetricsSnapshot::parse(&format!(
            "# HELP sluice_process_pid pid\n# TYPE sluice_process_pid gauge\n\
             sluice_process_pid 4242\n\
             sluice_proxy_phase_seconds_bucket{{phase=\"lookup\",le=\"+Inf\"}} {count}\n\
             sluice_proxy_phase_seconds_sum{{phase=\"lookup\"}} {lookup}\n\
             sluice_proxy_phase_seconds_count{{phase=\"lookup\"}} {count}\n\
             sluice_proxy_phase_seconds_sum{{phase=\"ledger\"}} {ledger}\n\
             sluice_proxy_phase_seconds_sum{{phase=\"upstream\",note=\"a \\\"b\\\", c\"}} {upstream}\n\
             sluice_proxy_latency_seconds_sum {total}\n\
             sluice_proxy_latency_seconds_count {count}\n"
        ))
    }

    #[test]
    fn parses_names_labels_and_values() {
        let snapshot = scrape(10, 0.001, 0.002, 0.003, 0.01);
        assert!(snapshot.is_sluice());
        assert_eq!(snapshot.pid(), Some(4242));
        assert_eq!(
            snapshot.sum(
                "sluice_proxy_phase_seconds_sum",
                Some(("phase", "upstream"))
            ),
            0.003
        );
        assert_eq!(snapshot.sum("sluice_proxy_phase_seconds_sum", None), 0.006);
        assert_eq!(snapshot.sum("missing", None), 0.0);
        assert!(!MetricsSnapshot::parse("xxxxxxxx").is_sluice());
    }

    #[test]
    fn breakdown_is_the_mean_of_the_deltas() {
        let before = scrape(10, 0.001, 0.002, 0.003, 0.010);
        let after = scrape(110, 0.011, 0.102, 0.203, 0.410);
        let b = breakdown(&before, &after).unwrap();
        assert_eq!(b.requests, 100);
        assert!((b.lookup_us - 100.0).abs() < 1e-6, "{b:?}");
        assert!((b.ledger_us - 1000.0).abs() < 1e-6);
        assert!((b.upstream_us - 2000.0).abs() < 1e-6);
        assert!((b.total_us - 4000.0).abs() < 1e-6);
        assert!((b.overhead_us - 900.0).abs() < 1e-6);
        assert!(breakdown(&after, &after).is_none());
        assert!(breakdown(&MetricsSnapshot::default(), &after).is_some());
    }
}
