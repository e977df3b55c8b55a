//! The serialisable result types of a validation.

use std::time::Instant;

use serde::{Deserialize, Serialize};

/// One step of the validation pipeline, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Step {
    /// Scheme http/https, host present, valid port.
    Syntax,
    /// The host resolves to at least one address.
    Dns,
    /// A TCP connection to the first resolved address succeeds.
    Tcp,
    /// A GET of the URL gets a response that is not 5xx.
    Http,
}

impl Step {
    /// All steps, in pipeline order.
    pub const ALL: [Step; 4] = [Step::Syntax, Step::Dns, Step::Tcp, Step::Http];

    /// The step's wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Syntax => "syntax",
            Step::Dns => "dns",
            Step::Tcp => "tcp",
            Step::Http => "http",
        }
    }
}

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepStatus {
    /// The step passed.
    Ok,
    /// The step ran and failed.
    Failed,
    /// The step did not run because an earlier one failed.
    Skipped,
}

/// The result of one step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepResult {
    /// Which step this is.
    pub step: Step,
    /// How it ended.
    pub status: StepStatus,
    /// `true` only when `status` is `ok`.
    pub ok: bool,
    /// Wall time spent in the step.
    pub duration_ms: u64,
    /// What was checked or what went wrong.
    pub detail: String,
    /// What the operator should do, for a failed step.
    pub hint: Option<String>,
    /// The response status, for an `http` step that got a response.
    pub http_status: Option<u16>,
}

impl StepResult {
    /// A passed step that started at `started`.
    pub(crate) fn passed(step: Step, started: Instant, detail: String) -> Self {
        Self::new(step, StepStatus::Ok, started, detail, None)
    }

    /// A failed step that started at `started`.
    pub(crate) fn failed(step: Step, started: Instant, detail: String, hint: String) -> Self {
        Self::new(step, StepStatus::Failed, started, detail, Some(hint))
    }

    /// A step that did not run.
    pub(crate) fn skipped(step: Step) -> Self {
        StepResult {
            step,
            status: StepStatus::Skipped,
            ok: false,
            duration_ms: 0,
            detail: "skipped: an earlier step failed".to_owned(),
            hint: None,
            http_status: None,
        }
    }

    /// Sets the HTTP status seen by an `http` step.
    pub(crate) fn with_http_status(mut self, status: u16) -> Self {
        self.http_status = Some(status);
        self
    }

    fn new(
        step: Step,
        status: StepStatus,
        started: Instant,
        detail: String,
        hint: Option<String>,
    ) -> Self {
        StepResult {
            step,
            status,
            ok: status == StepStatus::Ok,
            duration_ms: elapsed_ms(started),
            detail,
            hint,
            http_status: None,
        }
    }
}

/// The result of validating one destination URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidationReport {
    /// The URL as given.
    pub url: String,
    /// `true` when every step passed.
    pub ok: bool,
    /// All four steps, in order; those after a failure are `skipped`.
    pub steps: Vec<StepResult>,
    /// Wall time of the whole validation.
    pub total_ms: u64,
}

impl ValidationReport {
    /// The step that failed, if any.
    pub fn failure(&self) -> Option<&StepResult> {
        self.steps.iter().find(|s| s.status == StepStatus::Failed)
    }
}

/// A health verdict for one destination, as the health monitor needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeOutcome {
    /// Whether every validation step passed.
    pub healthy: bool,
    /// The failing step's hint, when unhealthy.
    pub hint: Option<String>,
    /// The failing step and its detail (`"tcp: connection refused ..."`), or the HTTP result.
    pub detail: String,
}

impl From<&ValidationReport> for ProbeOutcome {
    fn from(report: &ValidationReport) -> Self {
        match report.failure() {
            Some(f) => ProbeOutcome {
                healthy: false,
                hint: f.hint.clone(),
                detail: format!("{}: {}", f.step.as_str(), f.detail),
            },
            None => ProbeOutcome {
                healthy: report.ok,
                hint: None,
                detail: report
                    .steps
                    .last()
                    .map(|s| s.detail.clone())
                    .unwrap_or_default(),
            },
        }
    }
}

/// Milliseconds since `started`, saturating.
pub(crate) fn elapsed_ms(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_are_lowercase() {
        let s = StepResult::failed(Step::Tcp, Instant::now(), "d".into(), "h".into());
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["step"], "tcp");
        assert_eq!(v["status"], "failed");
        assert_eq!(v["ok"], false);
        assert_eq!(v["hint"], "h");
        assert!(v["http_status"].is_null());
        for step in Step::ALL {
            assert_eq!(serde_json::to_value(step).unwrap(), step.as_str());
        }
        assert_eq!(
            serde_json::to_value(StepStatus::Skipped).unwrap(),
            "skipped"
        );
    }

    #[test]
    fn probe_outcome_takes_the_failing_step() {
        let report = ValidationReport {
            url: "http://x/".into(),
            ok: false,
            steps: vec![
                StepResult::passed(Step::Syntax, Instant::now(), "fine".into()),
                StepResult::failed(Step::Dns, Instant::now(), "no such host".into(), "h".into()),
                StepResult::skipped(Step::Tcp),
                StepResult::skipped(Step::Http),
            ],
            total_ms: 1,
        };
        let p = ProbeOutcome::from(&report);
        assert!(!p.healthy);
        assert_eq!(p.hint.as_deref(), Some("h"));
        assert_eq!(p.detail, "dns: no such host");
    }

    #[test]
    fn probe_outcome_of_a_healthy_report() {
        let steps = Step::ALL
            .iter()
            .map(|&s| StepResult::passed(s, Instant::now(), format!("{} ok", s.as_str())))
            .collect();
        let report = ValidationReport {
            url: "http://x/".into(),
            ok: true,
            steps,
            total_ms: 1,
        };
        let p = ProbeOutcome::from(&report);
        assert!(p.healthy);
        assert_eq!(p.hint, None);
        assert_eq!(p.detail, "http ok");
    }
}
