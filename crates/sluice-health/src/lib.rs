//! Destination validation for sluice.
//!
//! [`Validator::validate`] runs four ordered steps against a sink URL — `syntax`, `dns`, `tcp`,
//! `http` — and reports each with its duration, a detail and, on failure, an operator hint
//! (PRODUCT.md §6). Steps after the first failure are `skipped`. The total time is bounded by the
//! sum of the DNS, TCP and HTTP timeouts in [`ValidatorConfig`]. [`Validator::probe`] condenses a
//! validation into the [`ProbeOutcome`] a health monitor stores.
//!
//! DNS goes through the system resolver (`tokio::net::lookup_host`, so `/etc/hosts` applies),
//! bounded by the DNS timeout; names under the reserved `.invalid` domain (RFC 6761) fail without
//! a lookup. The TCP step connects to the first resolved address. The HTTP step uses its own
//! client (no proxy, no redirects followed, no pooled connections) and classifies TLS failures,
//! timeouts and connect errors separately.
//!
//! Around the pipeline: the [`monitor::HealthMonitor`] probes every enabled channel on an
//! interval; the [`passive::HealthBoard`] holds each channel's verdict as an atomic shared with
//! the proxy (passive health); [`flips::FlipReporter`] turns each verdict change into one
//! event-log entry and one webhook notification ([`webhooks::Notifier`]); [`stale`] and
//! [`retention`] are the stale-channel and event-log pruning jobs, driven by a [`clock::Clock`]
//! that tests can move.

pub mod classify;
pub mod clock;
pub mod egress;
pub mod flips;
pub mod hints;
pub mod monitor;
pub mod passive;
mod pipeline;
mod report;
pub mod retention;
pub mod schedule;
pub mod stale;
pub mod syntax;
pub mod webhooks;

pub use pipeline::{Validator, ValidatorConfig};
pub use report::{ProbeOutcome, Step, StepResult, StepStatus, ValidationReport};
