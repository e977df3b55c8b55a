//! The closed loop: virtual users sending requests back to back, and what they record.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use hdrhistogram::Histogram;
use tokio::time::{sleep, sleep_until, timeout, Instant};

use super::{
    client::Answer,
    client::{Connection, Endpoint},
    report::{ratio, ErrorKind, LatencySummary, StepReport, WindowReport},
    scenario::{sends_body, Scenario},
};

/// Length of one timeline window.
const WINDOW: Duration = Duration::from_secs(1);
/// Highest latency the histograms track, in microseconds (one hour).
const MAX_LATENCY_US: u64 = 3_600_000_000;
/// Pause after a failed connection attempt, so an unreachable server is not hammered.
const CONNECT_BACKOFF: Duration = Duration::from_millis(20);

/// What every virtual user of a run shares.
pub struct RunContext {
    /// Where requests go.
    pub endpoint: Endpoint,
    /// Decides each request's method.
    pub scenario: Scenario,
    /// Body of requests whose method carries one.
    pub payload: Bytes,
    /// Per-request (and per-connect) timeout.
    pub timeout: Duration,
    /// Per-second results, shared by all users.
    pub timeline: Timeline,
}

/// Results of one phase (the whole run, or one saturation step).
pub struct PhaseResult {
    /// Users in the phase.
    pub concurrency: usize,
    /// Requests attempted.
    pub requests: u64,
    /// Requests answered below 400.
    pub successes: u64,
    /// Request body bytes sent.
    pub bytes_sent: u64,
    /// Response body bytes received.
    pub bytes_received: u64,
    /// Failures by kind.
    pub errors: BTreeMap<ErrorKind, u64>,
    /// Latency in microseconds of every answered request.
    pub latencies: Histogram<u64>,
    /// Wall-clock time of the phase.
    pub elapsed: Duration,
}

impl PhaseResult {
    /// A result with nothing recorded yet.
    pub fn empty() -> Self {
        Self {
            concurrency: 0,
            requests: 0,
            successes: 0,
            bytes_sent: 0,
            bytes_received: 0,
            errors: BTreeMap::new(),
            latencies: latency_histogram(3),
            elapsed: Duration::ZERO,
        }
    }

    /// Folds another result into this one (counts and latencies add; elapsed adds up phases).
    pub fn merge(&mut self, other: &PhaseResult) {
        self.concurrency = self.concurrency.max(other.concurrency);
        self.requests += other.requests;
        self.successes += other.successes;
        self.bytes_sent += other.bytes_sent;
        self.bytes_received += other.bytes_received;
        for (kind, count) in &other.errors {
            *self.errors.entry(*kind).or_default() += count;
        }
        self.latencies
            .add(&other.latencies)
            .expect("latency histograms share their bounds");
        self.elapsed += other.elapsed;
    }

    /// Requests per second over the phase.
    pub fn throughput(&self) -> f64 {
        ratio(self.requests as f64, self.elapsed.as_secs_f64())
    }

    /// The phase as a saturation step.
    pub fn step(&self) -> StepReport {
        StepReport {
            concurrency: self.concurrency,
            requests: self.requests,
            errors: self.errors.values().sum(),
            throughput_rps: self.throughput(),
            latency: LatencySummary::from_histogram(&self.latencies),
        }
    }
}

/// A histogram of microsecond latencies from 1 µs to 1 h (longer ones are clamped to 1 h).
fn latency_histogram(sigfig: u8) -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, sigfig).expect("valid histogram bounds")
}

/// Per-window counts and latencies, filled by users as their windows close.
pub struct Timeline {
    origin: Instant,
    windows: Mutex<Vec<Window>>,
}

struct Window {
    requests: u64,
    errors: u64,
    latencies: Histogram<u64>,
}

impl Window {
    fn new() -> Self {
        Self {
            requests: 0,
            errors: 0,
            latencies: latency_histogram(2),
        }
    }
}

impl Timeline {
    /// A timeline whose first window starts now.
    pub fn starting_now() -> Self {
        Self {
            origin: Instant::now(),
            windows: Mutex::new(Vec::new()),
        }
    }

    fn index(&self, at: Instant) -> usize {
        (at.duration_since(self.origin).as_millis() / WINDOW.as_millis()) as usize
    }

    fn absorb(&self, index: usize, window: &Window) {
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        if windows.len() <= index {
            windows.resize_with(index + 1, Window::new);
        }
        let target = &mut windows[index];
        target.requests += window.requests;
        target.errors += window.errors;
        target
            .latencies
            .add(&window.latencies)
            .expect("window histograms share their bounds");
    }

    /// The per-second results so far.
    pub fn report(&self) -> Vec<WindowReport> {
        let windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        windows
            .iter()
            .enumerate()
            .map(|(index, window)| {
                let latency = LatencySummary::from_histogram(&window.latencies);
                WindowReport {
                    start_s: (WINDOW * index as u32).as_secs_f64(),
                    throughput_rps: ratio(window.requests as f64, WINDOW.as_secs_f64()),
                    errors: window.errors,
                    p50_us: latency.p50_us,
                    p99_us: latency.p99_us,
                }
            })
            .collect()
    }
}

/// One user's tallies, flushed into the shared timeline window by window.
struct Recorder<'a> {
    timeline: &'a Timeline,
    window: (usize, Window),
    result: PhaseResult,
}

impl<'a> Recorder<'a> {
    fn new(timeline: &'a Timeline) -> Self {
        Self {
            timeline,
            window: (timeline.index(Instant::now()), Window::new()),
            result: PhaseResult::empty(),
        }
    }

    fn window_at(&mut self, at: Instant) -> &mut Window {
        let index = self.timeline.index(at);
        if index != self.window.0 {
            let (closed, window) = std::mem::replace(&mut self.window, (index, Window::new()));
            self.timeline.absorb(closed, &window);
        }
        &mut self.window.1
    }

    fn answered(&mut self, at: Instant, latency: Duration, answer: Answer) {
        let Answer {
            status,
            sent,
            received,
        } = answer;
        let micros = latency.as_micros().try_into().unwrap_or(u64::MAX);
        self.result.latencies.saturating_record(micros);
        self.result.requests += 1;
        self.result.bytes_sent += sent;
        self.result.bytes_received += received;
        let failed = status.as_u16() >= 400;
        if failed {
            *self
                .result
                .errors
                .entry(ErrorKind::Status(status.as_u16()))
                .or_default() += 1;
        } else {
            self.result.successes += 1;
        }
        let window = self.window_at(at);
        window.requests += 1;
        window.errors += u64::from(failed);
        window.latencies.saturating_record(micros);
    }

    fn failed(&mut self, at: Instant, kind: ErrorKind) {
        self.result.requests += 1;
        *self.result.errors.entry(kind).or_default() += 1;
        let window = self.window_at(at);
        window.requests += 1;
        window.errors += 1;
    }

    fn finish(self) -> PhaseResult {
        self.timeline.absorb(self.window.0, &self.window.1);
        self.result
    }
}

/// Runs `concurrency` users for `duration` (joining one by one over it if `ramp`).
/// Every user finishes its in-flight request after the deadline, so nothing sent goes uncounted.
pub async fn run_phase(
    context: &Arc<RunContext>,
    concurrency: usize,
    duration: Duration,
    ramp: bool,
) -> anyhow::Result<PhaseResult> {
    let start = Instant::now();
    let stop = start + duration;
    let users: Vec<_> = (0..concurrency)
        .map(|user| {
            let joins = if ramp {
                start + duration.mul_f64(user as f64 / concurrency as f64)
            } else {
                start
            };
            tokio::spawn(virtual_user(Arc::clone(context), user as u64, joins, stop))
        })
        .collect();
    let mut total = PhaseResult::empty();
    for user in users {
        total.merge(&user.await?);
    }
    total.concurrency = concurrency;
    total.elapsed = start.elapsed();
    Ok(total)
}

async fn virtual_user(
    context: Arc<RunContext>,
    user: u64,
    joins: Instant,
    stop: Instant,
) -> PhaseResult {
    sleep_until(joins).await;
    let mut recorder = Recorder::new(&context.timeline);
    let mut connection: Option<Connection> = None;
    let mut sequence = user;
    while Instant::now() < stop {
        let mut open = match connection.take() {
            Some(open) if !open.is_closed() => open,
            _ => match timeout(context.timeout, Connection::open(context.endpoint.addr)).await {
                Ok(Ok(open)) => open,
                Ok(Err(kind)) => {
                    recorder.failed(Instant::now(), kind);
                    sleep(CONNECT_BACKOFF).await;
                    continue;
                }
                Err(_) => {
                    recorder.failed(Instant::now(), ErrorKind::Timeout);
                    continue;
                }
            },
        };
        let method = context.scenario.method(sequence);
        sequence += 1;
        let body = if sends_body(&method) {
            context.payload.clone()
        } else {
            Bytes::new()
        };
        let request = context.endpoint.request(method, body);
        let sent = Instant::now();
        let outcome = timeout(context.timeout, open.exchange(request)).await;
        let done = Instant::now();
        match outcome {
            Ok(Ok(answer)) => {
                recorder.answered(done, done - sent, answer);
                connection = Some(open);
            }
            Ok(Err(kind)) => recorder.failed(done, kind),
            Err(_) => recorder.failed(done, ErrorKind::Timeout),
        }
    }
    recorder.finish()
}
