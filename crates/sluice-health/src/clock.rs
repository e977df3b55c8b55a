//! The time source of the background jobs, injectable so tests can move it.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use sluice_core::clock::Micros;

/// Where the jobs read the wall clock.
pub trait Clock: Send + Sync + 'static {
    /// The current time in microseconds since the Unix epoch.
    fn now_us(&self) -> Micros;
}

/// The real wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_us(&self) -> Micros {
        sluice_core::clock::now_us()
    }
}

/// A clock that only moves when told to (for tests).
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    /// A clock showing `at`.
    pub fn new(at: Micros) -> Self {
        Self(AtomicI64::new(at))
    }

    /// Sets the time.
    pub fn set(&self, at: Micros) {
        self.0.store(at, Ordering::SeqCst);
    }

    /// Moves the time forward by `d`.
    pub fn advance(&self, d: Duration) {
        self.0.fetch_add(d.as_micros() as i64, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_us(&self) -> Micros {
        self.0.load(Ordering::SeqCst)
    }
}
