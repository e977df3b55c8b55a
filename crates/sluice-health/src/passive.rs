//! The health board: each channel's current verdict as an atomic, shared by the proxy (passive
//! health) and the monitor (probes), so that every healthy/unhealthy transition is decided by
//! one atomic swap and reported exactly once.
//!
//! The proxy's cost per finished request is a few relaxed atomic operations on its channel's
//! cell: a sink-implicating failure (refused, connect or response timeout, 5xx) bumps a
//! counter, anything else the sink answered resets it. When the counter reaches the threshold
//! the cell flips to unhealthy; an answer below 500 flips an unhealthy cell back. Only flips
//! leave the hot path, as [`Flip`] messages on an unbounded channel read by a background task.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU8, Ordering};
use std::sync::{Arc, RwLock};

use sluice_core::RequestState;
use sluice_store::HealthStatus;
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::hints;
use crate::report::ProbeOutcome;

const UNKNOWN: u8 = 0;
const HEALTHY: u8 = 1;
const UNHEALTHY: u8 = 2;

fn decode(v: u8) -> HealthStatus {
    match v {
        HEALTHY => HealthStatus::Healthy,
        UNHEALTHY => HealthStatus::Unhealthy,
        _ => HealthStatus::Unknown,
    }
}

fn encode(s: HealthStatus) -> u8 {
    match s {
        HealthStatus::Unknown => UNKNOWN,
        HealthStatus::Healthy => HEALTHY,
        HealthStatus::Unhealthy => UNHEALTHY,
    }
}

/// A proxied request's failure that implicates the sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkFailure {
    /// The connection was refused.
    Refused,
    /// Connecting took too long.
    ConnectTimeout,
    /// The response head took too long.
    ResponseTimeout,
    /// The sink answered with this 5xx status.
    Status(u16),
}

impl std::fmt::Display for SinkFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SinkFailure::Refused => f.write_str("econnrefused"),
            SinkFailure::ConnectTimeout => f.write_str("connect_timeout"),
            SinkFailure::ResponseTimeout => f.write_str("response_timeout"),
            SinkFailure::Status(s) => write!(f, "http {s}"),
        }
    }
}

impl SinkFailure {
    /// The validation's hint for this failure on a sink listening on `port`, where one fits.
    pub fn hint(self, port: Option<u16>) -> Option<String> {
        match self {
            SinkFailure::Refused => port.map(hints::connection_refused),
            SinkFailure::ConnectTimeout => Some(hints::tcp_timeout()),
            SinkFailure::ResponseTimeout => None,
            SinkFailure::Status(s) => Some(hints::http_status(s)),
        }
    }
}

/// Why a channel's verdict changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlipCause {
    /// Proxied requests in a row failed because of the sink.
    Traffic {
        /// Failures in a row when the flip happened.
        consecutive_failures: u32,
        /// The last failure.
        last_error: SinkFailure,
    },
    /// A proxied request got an answer from the sink.
    TrafficRecovered {
        /// The status it answered.
        status: u16,
    },
    /// The monitor's probe.
    Probe(ProbeOutcome),
}

/// A healthy ⇄ unhealthy transition (or a first verdict of unhealthy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flip {
    /// The channel.
    pub channel_id: Uuid,
    /// The verdict before.
    pub from: HealthStatus,
    /// The verdict now.
    pub to: HealthStatus,
    /// What caused it.
    pub cause: FlipCause,
}

#[derive(Default)]
struct Cell {
    status: AtomicU8,
    failures: AtomicU32,
}

/// Verdicts of every channel seen so far.
pub struct HealthBoard {
    threshold: u32,
    cells: RwLock<HashMap<Uuid, Arc<Cell>>>,
    flips: mpsc::UnboundedSender<Flip>,
}

impl std::fmt::Debug for HealthBoard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealthBoard")
            .field("threshold", &self.threshold)
            .finish_non_exhaustive()
    }
}

/// Whether a finished request implicates the sink, clears it, or says nothing about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signal {
    /// Refused, timed out or answered 5xx.
    SinkFailed(SinkFailure),
    /// Answered below 500.
    SinkAnswered(u16),
    /// Nothing to learn (the caller left, a credential was missing, …).
    Neutral,
}

impl Signal {
    /// Classifies a finished request by its state, response status and error string.
    pub fn of(state: RequestState, status: Option<u16>, error: Option<&str>) -> Signal {
        match (state, status, error) {
            (_, _, Some("econnrefused")) => Signal::SinkFailed(SinkFailure::Refused),
            (_, _, Some("connect_timeout")) => Signal::SinkFailed(SinkFailure::ConnectTimeout),
            (_, _, Some("response_timeout")) => Signal::SinkFailed(SinkFailure::ResponseTimeout),
            (RequestState::Success | RequestState::Failed, Some(s), None) if s >= 500 => {
                Signal::SinkFailed(SinkFailure::Status(s))
            }
            (RequestState::Success | RequestState::Failed, Some(s), None) => {
                Signal::SinkAnswered(s)
            }
            _ => Signal::Neutral,
        }
    }
}

impl HealthBoard {
    /// A board flipping a channel unhealthy after `threshold` sink failures in a row; flips
    /// caused by traffic arrive on the returned receiver.
    pub fn new(threshold: u32) -> (Arc<Self>, mpsc::UnboundedReceiver<Flip>) {
        let (flips, rx) = mpsc::unbounded_channel();
        (
            Arc::new(Self {
                threshold: threshold.max(1),
                cells: RwLock::new(HashMap::new()),
                flips,
            }),
            rx,
        )
    }

    fn cell(&self, channel: Uuid) -> Arc<Cell> {
        if let Some(c) = self.cells.read().expect("board lock").get(&channel) {
            return c.clone();
        }
        self.cells
            .write()
            .expect("board lock")
            .entry(channel)
            .or_default()
            .clone()
    }

    /// The handle the proxy keeps in a channel's route (taken when the route is built).
    pub fn handle(self: &Arc<Self>, channel: Uuid) -> PassiveHealth {
        PassiveHealth {
            channel,
            cell: self.cell(channel),
            board: self.clone(),
        }
    }

    /// Sets a verdict loaded from the ledger, unless one is already known.
    pub fn seed(&self, channel: Uuid, status: HealthStatus) {
        let _ = self.cell(channel).status.compare_exchange(
            UNKNOWN,
            encode(status),
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }

    /// Applies a probe's verdict; returns the flip it caused, if any. A first verdict of
    /// healthy is not a flip; a first verdict of unhealthy is.
    pub fn probed(&self, channel: Uuid, outcome: &ProbeOutcome) -> Option<Flip> {
        let cell = self.cell(channel);
        let (to, flipped) = if outcome.healthy {
            cell.failures.store(0, Ordering::Relaxed);
            let prev = cell.status.swap(HEALTHY, Ordering::AcqRel);
            (HEALTHY, (prev == UNHEALTHY).then_some(prev))
        } else {
            let prev = cell.status.swap(UNHEALTHY, Ordering::AcqRel);
            (UNHEALTHY, (prev != UNHEALTHY).then_some(prev))
        };
        flipped.map(|from| Flip {
            channel_id: channel,
            from: decode(from),
            to: decode(to),
            cause: FlipCause::Probe(outcome.clone()),
        })
    }

    /// Forgets a channel (deleted).
    pub fn forget(&self, channel: Uuid) {
        self.cells.write().expect("board lock").remove(&channel);
    }
}

/// One channel's cell on the board, as the proxy holds it.
pub struct PassiveHealth {
    channel: Uuid,
    cell: Arc<Cell>,
    board: Arc<HealthBoard>,
}

impl std::fmt::Debug for PassiveHealth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PassiveHealth")
            .field("channel", &self.channel)
            .finish_non_exhaustive()
    }
}

impl PassiveHealth {
    /// Counts a finished request (see [`Signal::of`]). Lock-free and allocation-free; sends a
    /// message only on a flip.
    pub fn observe(&self, state: RequestState, status: Option<u16>, error: Option<&str>) {
        match Signal::of(state, status, error) {
            Signal::Neutral => {}
            Signal::SinkAnswered(status) => {
                if self.cell.failures.load(Ordering::Relaxed) != 0 {
                    self.cell.failures.store(0, Ordering::Relaxed);
                }
                if self.cell.status.load(Ordering::Acquire) == UNHEALTHY
                    && self
                        .cell
                        .status
                        .compare_exchange(UNHEALTHY, HEALTHY, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
                {
                    self.send(Flip {
                        channel_id: self.channel,
                        from: HealthStatus::Unhealthy,
                        to: HealthStatus::Healthy,
                        cause: FlipCause::TrafficRecovered { status },
                    });
                }
            }
            Signal::SinkFailed(error) => {
                let n = self.cell.failures.fetch_add(1, Ordering::Relaxed) + 1;
                if n >= self.board.threshold
                    && self.cell.status.load(Ordering::Acquire) != UNHEALTHY
                {
                    let prev = self.cell.status.swap(UNHEALTHY, Ordering::AcqRel);
                    if prev != UNHEALTHY {
                        self.send(Flip {
                            channel_id: self.channel,
                            from: decode(prev),
                            to: HealthStatus::Unhealthy,
                            cause: FlipCause::Traffic {
                                consecutive_failures: n,
                                last_error: error,
                            },
                        });
                    }
                }
            }
        }
    }

    fn send(&self, flip: Flip) {
        if self.board.flips.send(flip).is_err() {
            tracing::debug!(channel = %self.channel, "health flip dropped: no reporter running");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(healthy: bool) -> ProbeOutcome {
        ProbeOutcome {
            healthy,
            hint: None,
            detail: "d".into(),
        }
    }

    #[test]
    fn signals() {
        use RequestState::*;
        assert_eq!(
            Signal::of(Error, None, Some("econnrefused")),
            Signal::SinkFailed(SinkFailure::Refused)
        );
        assert_eq!(
            Signal::of(Timeout, None, Some("response_timeout")),
            Signal::SinkFailed(SinkFailure::ResponseTimeout)
        );
        assert_eq!(
            Signal::of(Failed, Some(503), None),
            Signal::SinkFailed(SinkFailure::Status(503))
        );
        assert_eq!(
            Signal::of(Failed, Some(404), None),
            Signal::SinkAnswered(404)
        );
        assert_eq!(
            Signal::of(Success, Some(200), None),
            Signal::SinkAnswered(200)
        );
        assert_eq!(
            Signal::of(Error, Some(200), Some("client_disconnected")),
            Signal::Neutral
        );
    }

    #[test]
    fn flips_after_threshold_once_and_recovers_once() {
        let (board, mut rx) = HealthBoard::new(3);
        let id = Uuid::new_v4();
        let h = board.handle(id);
        for _ in 0..2 {
            h.observe(RequestState::Error, None, Some("econnrefused"));
        }
        assert!(rx.try_recv().is_err());
        // A success in between resets the run.
        h.observe(RequestState::Success, Some(200), None);
        for _ in 0..2 {
            h.observe(RequestState::Failed, Some(502), None);
        }
        assert!(rx.try_recv().is_err());
        for _ in 0..10 {
            h.observe(RequestState::Failed, Some(502), None);
        }
        let f = rx.try_recv().unwrap();
        assert_eq!(
            (f.from, f.to),
            (HealthStatus::Unknown, HealthStatus::Unhealthy)
        );
        assert!(rx.try_recv().is_err(), "one flip only");
        h.observe(RequestState::Success, Some(201), None);
        h.observe(RequestState::Success, Some(200), None);
        let f = rx.try_recv().unwrap();
        assert_eq!(f.to, HealthStatus::Healthy);
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn probes_flip_only_on_change() {
        let (board, _rx) = HealthBoard::new(5);
        let id = Uuid::new_v4();
        assert!(
            board.probed(id, &probe(true)).is_none(),
            "unknown -> healthy is no flip"
        );
        assert!(board.probed(id, &probe(true)).is_none());
        let f = board.probed(id, &probe(false)).unwrap();
        assert_eq!(
            (f.from, f.to),
            (HealthStatus::Healthy, HealthStatus::Unhealthy)
        );
        assert!(board.probed(id, &probe(false)).is_none());
        assert!(board.probed(id, &probe(true)).is_some());
        board.seed(id, HealthStatus::Unhealthy);
        assert!(
            board.probed(id, &probe(true)).is_none(),
            "seed never overrides"
        );
        let fresh = Uuid::new_v4();
        board.seed(fresh, HealthStatus::Unhealthy);
        assert!(
            board.probed(fresh, &probe(false)).is_none(),
            "still unhealthy: no flip"
        );
        let f = board.probed(fresh, &probe(true)).unwrap();
        assert_eq!(f.from, HealthStatus::Unhealthy);
    }
}
