//! Reporting a health flip: store the verdict, write one event-log entry, notify webhooks.

use std::sync::Arc;

use serde_json::{json, Value};
use sluice_core::clock::to_rfc3339;
use sluice_store::{EventLog, HealthStatus, HealthUpdate, Severity, Source, Store};
use tokio::sync::{mpsc, watch};

use crate::clock::Clock;
use crate::passive::{Flip, FlipCause};
use crate::schedule::stopped;
use crate::webhooks::Notifier;

/// Turns flips into their record, their event and their notifications; cheap to clone.
#[derive(Clone)]
pub struct FlipReporter {
    store: Store,
    events: EventLog,
    notifier: Notifier,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for FlipReporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlipReporter").finish_non_exhaustive()
    }
}

/// The port a sink URL points at.
fn sink_port(sink_url: &str) -> Option<u16> {
    url::Url::parse(sink_url)
        .ok()
        .and_then(|u| u.port_or_known_default())
}

/// The failure text and hint a flip carries, if it went unhealthy.
fn failure_of(cause: &FlipCause, sink_url: &str) -> (Option<String>, Option<String>) {
    match cause {
        FlipCause::Traffic {
            consecutive_failures,
            last_error,
        } => (
            Some(format!(
                "{consecutive_failures} proxied requests in a row failed; last: {last_error}"
            )),
            last_error.hint(sink_port(sink_url)),
        ),
        FlipCause::Probe(p) if !p.healthy => (Some(p.detail.clone()), p.hint.clone()),
        _ => (None, None),
    }
}

fn details_of(flip: &Flip, failure: Option<String>, hint: Option<String>) -> Value {
    let mut d = json!({
        "from": flip.from.as_str(),
        "to": flip.to.as_str(),
        "failure": failure,
        "hint": hint,
    });
    match &flip.cause {
        FlipCause::Traffic {
            consecutive_failures,
            last_error,
        } => {
            d["cause"] = "traffic".into();
            d["consecutive_failures"] = (*consecutive_failures).into();
            d["last_error"] = last_error.to_string().into();
        }
        FlipCause::TrafficRecovered { status } => {
            d["cause"] = "traffic".into();
            d["status"] = (*status).into();
        }
        FlipCause::Probe(p) => {
            d["cause"] = "probe".into();
            d["detail"] = p.detail.clone().into();
        }
    }
    d
}

impl FlipReporter {
    /// A reporter writing to `store` and `events` and notifying through `notifier`.
    pub fn new(store: Store, events: EventLog, notifier: Notifier, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            events,
            notifier,
            clock,
        }
    }

    /// Reports one flip. Probe verdicts are stored by the monitor; a flip caused by traffic
    /// stores its own (keeping the last probe time).
    pub async fn report(&self, flip: &Flip) {
        let id = flip.channel_id;
        let channel = match self.store.get_channel(id).await {
            Ok(Some(c)) => c,
            Ok(None) => return, // deleted meanwhile
            Err(e) => {
                tracing::error!(channel = %id, error = %e, "could not read a flipped channel");
                return;
            }
        };
        let (failure, hint) = failure_of(&flip.cause, &channel.sink_url);
        if !matches!(flip.cause, FlipCause::Probe(_)) {
            let update = HealthUpdate {
                status: flip.to,
                checked_at: None,
                failure: failure.clone(),
                hint: hint.clone(),
            };
            if let Err(e) = self.store.set_channel_health(id, &update).await {
                tracing::error!(channel = %id, error = %e, "could not store a health verdict");
            }
        }
        let details = details_of(flip, failure.clone(), hint);
        let (severity, kind, message) = if flip.to == HealthStatus::Unhealthy {
            (
                Severity::Warn,
                "channel.unhealthy",
                format!(
                    "channel {} is unhealthy: {}",
                    channel.name,
                    failure.as_deref().unwrap_or("sink failing")
                ),
            )
        } else {
            (
                Severity::Info,
                "channel.healthy",
                format!("channel {} is healthy again", channel.name),
            )
        };
        let entry = self
            .events
            .emit(severity, Source::Health, Some(id), message, details.clone());
        self.notifier.notify(json!({
            "type": kind,
            "channel": {
                "id": channel.id,
                "project_id": channel.project_id,
                "name": channel.name,
                "sink_url": channel.sink_url,
            },
            "details": details,
            "event_id": entry.id,
            "timestamp": to_rfc3339(self.clock.now_us()),
        }));
    }

    /// Reports flips caused by traffic as they arrive, until `shutdown`.
    pub async fn run(
        self,
        mut flips: mpsc::UnboundedReceiver<Flip>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        loop {
            tokio::select! {
                f = flips.recv() => match f {
                    Some(f) => self.report(&f).await,
                    None => return,
                },
                _ = stopped(&mut shutdown) => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hints;
    use crate::passive::SinkFailure;

    #[test]
    fn traffic_failures_get_the_validation_hints() {
        let hint = |f: SinkFailure, url: &str| f.hint(sink_port(url));
        assert_eq!(
            hint(SinkFailure::Refused, "http://127.0.0.1:8080/x"),
            Some(hints::connection_refused(8080))
        );
        assert_eq!(
            hint(SinkFailure::Refused, "https://example.test/"),
            Some(hints::connection_refused(443))
        );
        assert_eq!(
            hint(SinkFailure::ConnectTimeout, "http://h/"),
            Some(hints::tcp_timeout())
        );
        assert_eq!(
            hint(SinkFailure::Status(503), "http://h/"),
            Some(hints::http_status(503))
        );
        assert_eq!(hint(SinkFailure::ResponseTimeout, "http://h/"), None);
    }
}
