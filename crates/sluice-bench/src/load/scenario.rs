//! The load scenarios: what each one sends and how its concurrency evolves over the run.

use std::{fmt, time::Duration};

use clap::ValueEnum;
use http::Method;

/// Request body size of `large_payload` unless `--payload-size` says otherwise.
const LARGE_PAYLOAD: usize = 1024 * 1024;
/// Request body size of every other scenario unless `--payload-size` says otherwise.
const DEFAULT_PAYLOAD: usize = 1024;
/// `?response_size=` of `large_response` unless `--response-size` says otherwise.
const LARGE_RESPONSE: u64 = 1024 * 1024;
/// `?delay=` (ms) of `slow_sink` unless `--delay` says otherwise.
const SLOW_SINK_DELAY_MS: u64 = 100;
/// The methods `mixed_methods` rotates through.
const MIXED_METHODS: [Method; 5] = [
    Method::GET,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
];

/// A load scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum Scenario {
    /// POSTs straight to the sink, bypassing sluice: the baseline.
    DirectSink,
    /// Sustained POSTs through sluice at constant concurrency.
    HappyPath,
    /// Like `happy_path`, with virtual users joining one by one over the duration.
    RampUp,
    /// POSTs with 1 MiB bodies.
    LargePayload,
    /// GETs answered with 1 MiB bodies (`?response_size=`).
    LargeResponse,
    /// Rotates GET, POST, PUT, PATCH and DELETE.
    MixedMethods,
    /// POSTs to a sink that waits before answering (`?delay=`).
    SlowSink,
    /// Steps through increasing concurrency levels to find the throughput ceiling.
    Saturation,
}

/// How many virtual users run, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadShape {
    /// A fixed number of users for the whole run.
    Steady(usize),
    /// User `i` of `n` joins at `i / n` of the duration; all stop together.
    Ramp(usize),
    /// Consecutive phases of equal length, one per concurrency level.
    Steps(Vec<usize>),
}

impl Scenario {
    /// The scenario's name as written on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::DirectSink => "direct_sink",
            Self::HappyPath => "happy_path",
            Self::RampUp => "ramp_up",
            Self::LargePayload => "large_payload",
            Self::LargeResponse => "large_response",
            Self::MixedMethods => "mixed_methods",
            Self::SlowSink => "slow_sink",
            Self::Saturation => "saturation",
        }
    }

    /// Request body size when `--payload-size` is absent.
    pub fn default_payload_size(self) -> usize {
        match self {
            Self::LargePayload => LARGE_PAYLOAD,
            _ => DEFAULT_PAYLOAD,
        }
    }

    /// `?response_size=` when `--response-size` is absent.
    pub fn default_response_size(self) -> Option<u64> {
        (self == Self::LargeResponse).then_some(LARGE_RESPONSE)
    }

    /// `?delay=` in milliseconds when `--delay` is absent.
    pub fn default_delay_ms(self) -> Option<u64> {
        (self == Self::SlowSink).then_some(SLOW_SINK_DELAY_MS)
    }

    /// Method of the `n`-th request a virtual user sends.
    pub fn method(self, n: u64) -> Method {
        match self {
            Self::LargeResponse => Method::GET,
            Self::MixedMethods => MIXED_METHODS[(n % MIXED_METHODS.len() as u64) as usize].clone(),
            _ => Method::POST,
        }
    }

    /// The concurrency plan for `--concurrency` users (or `--steps` for saturation).
    pub fn shape(self, concurrency: usize, steps: &[usize]) -> LoadShape {
        match self {
            Self::RampUp => LoadShape::Ramp(concurrency),
            Self::Saturation => LoadShape::Steps(steps.to_vec()),
            _ => LoadShape::Steady(concurrency),
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Whether a method carries the request payload.
pub fn sends_body(method: &Method) -> bool {
    [Method::POST, Method::PUT, Method::PATCH].contains(method)
}

impl LoadShape {
    /// The highest number of users running at once.
    pub fn max_concurrency(&self) -> usize {
        match self {
            Self::Steady(n) | Self::Ramp(n) => *n,
            Self::Steps(steps) => steps.iter().copied().max().unwrap_or(0),
        }
    }

    /// Length of each phase of a run lasting `total`.
    pub fn phase_duration(&self, total: Duration) -> Duration {
        match self {
            Self::Steps(steps) if !steps.is_empty() => total / steps.len() as u32,
            _ => total,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_clap() {
        for scenario in Scenario::value_variants() {
            assert_eq!(Scenario::from_str(scenario.name(), false), Ok(*scenario));
        }
    }

    #[test]
    fn defaults_follow_the_scenario() {
        assert_eq!(Scenario::LargePayload.default_payload_size(), 1 << 20);
        assert_eq!(Scenario::HappyPath.default_payload_size(), 1024);
        assert_eq!(
            Scenario::LargeResponse.default_response_size(),
            Some(1 << 20)
        );
        assert_eq!(Scenario::SlowSink.default_delay_ms(), Some(100));
        assert_eq!(Scenario::HappyPath.default_delay_ms(), None);
        let methods: Vec<_> = (0..5).map(|n| Scenario::MixedMethods.method(n)).collect();
        assert_eq!(methods, MIXED_METHODS.to_vec());
        assert_eq!(Scenario::LargeResponse.method(3), Method::GET);
    }

    #[test]
    fn saturation_splits_the_duration_over_its_steps() {
        let shape = Scenario::Saturation.shape(10, &[1, 2, 5, 10]);
        assert_eq!(shape.max_concurrency(), 10);
        assert_eq!(
            shape.phase_duration(Duration::from_secs(8)),
            Duration::from_secs(2)
        );
        assert_eq!(Scenario::RampUp.shape(7, &[]), LoadShape::Ramp(7));
    }
}
