//! The process's metrics, rendered at `/metrics`. Counters and gauges are kept by
//! metrics-exporter-prometheus; histograms are kept here, as fixed buckets in per-thread shards.
//!
//! The exporter keeps every histogram sample in a shared lock-free list until they are drained
//! into buckets: each record pins a crossbeam epoch and contends with the other threads for the
//! list's tail. With six samples per proxied request that cost ~1.3 µs of a proxy thread's CPU
//! per request (docs/BENCHMARKS.md, tuning step 31). Here a record is two atomic operations on
//! the recording thread's own cache lines, and the buckets are summed when `/metrics` is read.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use metrics::{
    Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, SetRecorderError, SharedString,
    Unit,
};
use metrics_exporter_prometheus::formatting::{key_to_parts, write_metric_line, write_type_line};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

/// Bucket bounds (seconds) of every `*_seconds` histogram.
const LATENCY_BUCKETS: [f64; 17] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0,
];
/// Bucket bounds of the ledger's batch-size histogram.
const BATCH_BUCKETS: [f64; 10] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];
/// The histogram with these bounds; every other histogram has [`LATENCY_BUCKETS`].
const BATCH_HISTOGRAM: &str = "sluice_ledger_batch_size";
/// Most bounds a histogram has.
const MAX_BOUNDS: usize = LATENCY_BUCKETS.len();
/// Shards per histogram: threads past this many share one (still correct, only slower).
const SHARDS: usize = 8;

/// Renders `/metrics`: the exporter's counters and gauges, then the histograms.
#[derive(Clone)]
pub struct Metrics {
    prometheus: PrometheusHandle,
    histograms: Arc<Histograms>,
}

impl Metrics {
    /// Installs the process-wide recorder and returns what renders it.
    pub fn install() -> Result<Self, SetRecorderError<Recorder>> {
        let (metrics, recorder) = Self::with_recorder();
        metrics::set_global_recorder(recorder)?;
        Ok(metrics)
    }

    /// A recorder not installed anywhere, and what renders it.
    pub fn with_recorder() -> (Self, Recorder) {
        let prometheus = PrometheusBuilder::new().build_recorder();
        let histograms = Arc::new(Histograms::default());
        let metrics = Self {
            prometheus: prometheus.handle(),
            histograms: Arc::clone(&histograms),
        };
        (
            metrics,
            Recorder {
                prometheus,
                histograms,
            },
        )
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = self.prometheus.render();
        self.histograms.render(&mut out);
        out
    }
}

/// The `metrics` recorder: counters and gauges to the exporter, histograms to [`Histograms`].
pub struct Recorder {
    prometheus: PrometheusRecorder,
    histograms: Arc<Histograms>,
}

impl metrics::Recorder for Recorder {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.prometheus.describe_counter(key, unit, description);
    }

    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.prometheus.describe_gauge(key, unit, description);
    }

    /// sluice describes no histogram; a description would not be rendered.
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, metadata: &Metadata<'_>) -> Counter {
        self.prometheus.register_counter(key, metadata)
    }

    fn register_gauge(&self, key: &Key, metadata: &Metadata<'_>) -> Gauge {
        self.prometheus.register_gauge(key, metadata)
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(self.histograms.get(key))
    }
}

/// Every histogram registered, by key.
#[derive(Default)]
struct Histograms(Mutex<HashMap<Key, Arc<Sharded>>>);

impl Histograms {
    /// The histogram of `key`, made on first use.
    fn get(&self, key: &Key) -> Arc<Sharded> {
        let mut all = self.0.lock().expect("histogram registry poisoned");
        let h = all.entry(key.clone()).or_insert_with(|| {
            Arc::new(Sharded::new(if key.name() == BATCH_HISTOGRAM {
                &BATCH_BUCKETS
            } else {
                &LATENCY_BUCKETS
            }))
        });
        Arc::clone(h)
    }

    /// Appends every histogram to `out`, a family (one name) at a time, as the exporter does.
    fn render(&self, out: &mut String) {
        let mut series: Vec<(String, Vec<String>, Arc<Sharded>)> = {
            let all = self.0.lock().expect("histogram registry poisoned");
            all.iter()
                .map(|(key, h)| {
                    let (name, labels) = key_to_parts(key, None);
                    (name, labels, Arc::clone(h))
                })
                .collect()
        };
        series.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        for (i, (name, labels, h)) in series.iter().enumerate() {
            if i == 0 || series[i - 1].0 != *name {
                write_type_line(out, name, "histogram");
            }
            let (counts, sum) = h.totals();
            let mut cumulative = 0;
            for (bound, count) in h.bounds.iter().zip(&counts) {
                cumulative += count;
                write_metric_line(
                    out,
                    name,
                    Some("bucket"),
                    labels,
                    Some(("le", bound)),
                    cumulative,
                    None,
                );
            }
            let total: u64 = counts.iter().sum();
            write_metric_line(
                out,
                name,
                Some("bucket"),
                labels,
                Some(("le", "+Inf")),
                total,
                None,
            );
            write_metric_line::<&str, f64>(out, name, Some("sum"), labels, None, sum, None);
            write_metric_line::<&str, u64>(out, name, Some("count"), labels, None, total, None);
            if series.get(i + 1).is_none_or(|next| next.0 != *name) {
                out.push('\n');
            }
        }
    }
}

/// One histogram: per-thread shards of bucket counts and a sum.
struct Sharded {
    bounds: &'static [f64],
    shards: [Shard; SHARDS],
}

/// A shard's counts (one per bound, then the one past the last bound) and sum (`f64` bits),
/// on cache lines of their own so that two threads never write the same line.
#[repr(align(128))]
#[derive(Default)]
struct Shard {
    counts: [AtomicU64; MAX_BOUNDS + 1],
    sum: AtomicU64,
}

impl Sharded {
    fn new(bounds: &'static [f64]) -> Self {
        assert!(
            bounds.len() <= MAX_BOUNDS,
            "a histogram has too many buckets"
        );
        Self {
            bounds,
            shards: Default::default(),
        }
    }

    /// Each bucket's count (not cumulative, the last past every bound) and the sum.
    fn totals(&self) -> (Vec<u64>, f64) {
        let mut counts = vec![0; self.bounds.len() + 1];
        let mut sum = 0.0;
        for shard in &self.shards {
            for (total, count) in counts.iter_mut().zip(&shard.counts) {
                *total += count.load(Relaxed);
            }
            sum += f64::from_bits(shard.sum.load(Relaxed));
        }
        (counts, sum)
    }
}

impl HistogramFn for Sharded {
    fn record(&self, value: f64) {
        if value.is_nan() {
            return;
        }
        let shard = &self.shards[shard_index()];
        // The first bound at or above the value: Prometheus buckets are `le`.
        let bucket = self.bounds.partition_point(|bound| *bound < value);
        shard.counts[bucket].fetch_add(1, Relaxed);
        let add = |sum: u64| Some((f64::from_bits(sum) + value).to_bits());
        let _ = shard.sum.fetch_update(Relaxed, Relaxed, add);
    }
}

/// The calling thread's shard, assigned in turn to threads as they first record.
fn shard_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static INDEX: usize = NEXT.fetch_add(1, Relaxed) % SHARDS;
    }
    INDEX.with(|i| *i)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lines of `text` that start with `prefix`.
    fn lines<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
        text.lines().filter(|l| l.starts_with(prefix)).collect()
    }

    #[test]
    fn histograms_from_many_threads_render_as_prometheus_buckets() {
        let (metrics, recorder) = Metrics::with_recorder();
        let recorder = Arc::new(recorder);
        let threads: Vec<_> = (0..12)
            .map(|_| {
                let recorder = Arc::clone(&recorder);
                std::thread::spawn(move || {
                    metrics::with_local_recorder(&*recorder, || {
                        let h = metrics::histogram!("test_phase_seconds", "phase" => "a");
                        for _ in 0..1000 {
                            h.record(0.0001); // on a bound: counted in that bucket (`le`)
                            h.record(0.0003);
                            h.record(60.0); // past every bound
                        }
                    })
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        metrics::with_local_recorder(&*recorder, || {
            metrics::histogram!("test_phase_seconds", "phase" => "b").record(2.0);
            metrics::histogram!("sluice_ledger_batch_size").record(3.0);
            metrics::counter!("test_total").increment(5);
        });
        let text = metrics.render();

        assert_eq!(lines(&text, "test_total"), ["test_total 5"], "{text}");
        assert_eq!(
            text.matches("# TYPE test_phase_seconds histogram").count(),
            1,
            "one family, both series under it: {text}"
        );
        let a = lines(&text, "test_phase_seconds_bucket{phase=\"a\"");
        assert_eq!(a.len(), LATENCY_BUCKETS.len() + 1);
        assert_eq!(
            a[0],
            "test_phase_seconds_bucket{phase=\"a\",le=\"0.0001\"} 12000"
        );
        assert_eq!(
            a[1],
            "test_phase_seconds_bucket{phase=\"a\",le=\"0.00025\"} 12000"
        );
        assert_eq!(
            a[2],
            "test_phase_seconds_bucket{phase=\"a\",le=\"0.0005\"} 24000"
        );
        assert_eq!(
            a[16],
            "test_phase_seconds_bucket{phase=\"a\",le=\"30\"} 24000"
        );
        assert_eq!(
            a[17],
            "test_phase_seconds_bucket{phase=\"a\",le=\"+Inf\"} 36000"
        );
        assert_eq!(
            lines(&text, "test_phase_seconds_count"),
            [
                "test_phase_seconds_count{phase=\"a\"} 36000",
                "test_phase_seconds_count{phase=\"b\"} 1"
            ]
        );
        let sum: f64 = lines(&text, "test_phase_seconds_sum{phase=\"a\"}")[0]
            .rsplit(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!((sum - 12_000.0 * 60.0004).abs() < 1e-3, "sum {sum}");
        assert_eq!(
            lines(&text, "sluice_ledger_batch_size_bucket{le=\"4\"}"),
            ["sluice_ledger_batch_size_bucket{le=\"4\"} 1"],
            "the batch histogram has its own bounds"
        );
    }
}
