//! The I/O half: runs the four steps against the network.

use std::error::Error;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_core::egress::{Denied, EgressPolicy};

use tokio::net::{lookup_host, TcpStream};
use tokio::time::timeout;

use crate::classify::{self, ConnectFailure, HttpFailure};
use crate::egress::PolicyResolver;
use crate::hints;
use crate::report::{elapsed_ms, ProbeOutcome, Step, StepResult, ValidationReport};
use crate::syntax::{self, Target, TargetHost};

/// Timeouts of the validation steps (the total time of a validation is bounded by their sum),
/// and the egress policy.
#[derive(Debug, Clone)]
pub struct ValidatorConfig {
    /// Bound on the DNS lookup (default 5 s).
    pub dns_timeout: Duration,
    /// Bound on the TCP connect (default 5 s).
    pub tcp_timeout: Duration,
    /// Bound on the whole HTTP GET up to the response head (default 10 s).
    pub http_timeout: Duration,
    /// Which addresses may be probed (default: any; `serve` passes its `--egress-allow`).
    pub egress: Arc<EgressPolicy>,
}

impl Default for ValidatorConfig {
    fn default() -> Self {
        ValidatorConfig {
            dns_timeout: Duration::from_secs(5),
            tcp_timeout: Duration::from_secs(5),
            http_timeout: Duration::from_secs(10),
            egress: Arc::new(EgressPolicy::open()),
        }
    }
}

/// Runs the `syntax` → `dns` → `tcp` → `http` pipeline against destination URLs.
///
/// Cheap to share: holds one HTTP client (no proxy, no redirects, no pooled connections, so every
/// validation makes a fresh connection).
#[derive(Debug, Clone)]
pub struct Validator {
    cfg: ValidatorConfig,
    client: reqwest::Client,
}

/// Outcome of one step: the detail on success, or (detail, hint) on failure.
type StepOutcome<T> = Result<(T, String), (String, String)>;

impl Validator {
    /// Builds a validator with the given timeouts.
    ///
    /// # Panics
    /// If the HTTP client cannot be built, which only happens when the TLS backend fails to
    /// initialise.
    pub fn new(cfg: ValidatorConfig) -> Self {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .pool_max_idle_per_host(0)
            .connect_timeout(cfg.tcp_timeout)
            .timeout(cfg.http_timeout)
            .user_agent(concat!("sluice-health/", env!("CARGO_PKG_VERSION")))
            .dns_resolver(Arc::new(PolicyResolver(cfg.egress.clone())))
            .build()
            .expect("building the validation HTTP client");
        Validator { cfg, client }
    }

    /// Validates `url`, returning all four steps; steps after the first failure are `skipped`.
    pub async fn validate(&self, url: &str) -> ValidationReport {
        let started = Instant::now();
        let mut steps = Vec::with_capacity(Step::ALL.len());
        self.run(url, &mut steps).await;
        let ran = steps.len();
        steps.extend(Step::ALL[ran..].iter().map(|&s| StepResult::skipped(s)));
        let ok = steps.iter().all(|s| s.ok);
        let total_ms = elapsed_ms(started);
        tracing::debug!(url, ok, total_ms, "destination validated");
        ValidationReport {
            url: url.to_owned(),
            ok,
            steps,
            total_ms,
        }
    }

    /// Whether every address `url` resolves to is allowed by the egress policy (a channel's
    /// sink at save); `Err` says why not.
    ///
    /// A URL that does not parse or a host that does not resolve passes: nothing can be dialled
    /// there yet, and a connection later is checked again.
    pub async fn egress_check(&self, url: &str) -> Result<(), Denied> {
        let Ok(target) = syntax::check(url) else {
            return Ok(());
        };
        let Ok((addrs, _)) = self.resolve(&target).await else {
            return Ok(());
        };
        self.refused(&target, &addrs).map_or(Ok(()), Err)
    }

    /// Validates `url` and condenses the report into a health verdict.
    pub async fn probe(&self, url: &str) -> ProbeOutcome {
        ProbeOutcome::from(&self.validate(url).await)
    }

    async fn run(&self, url: &str, steps: &mut Vec<StepResult>) {
        let t = Instant::now();
        let target = match syntax::check(url) {
            Ok(target) => {
                let detail = format!(
                    "{} URL, host {}, port {}",
                    target.url.scheme(),
                    target.host,
                    target.port
                );
                steps.push(StepResult::passed(Step::Syntax, t, detail));
                target
            }
            Err(e) => {
                steps.push(StepResult::failed(Step::Syntax, t, e.detail(), e.hint()));
                return;
            }
        };
        let Some(addrs) = record(steps, Step::Dns, self.dns(&target)).await else {
            return;
        };
        if record(steps, Step::Tcp, self.tcp(&addrs, target.port))
            .await
            .is_none()
        {
            return;
        }
        let t = Instant::now();
        steps.push(self.http(&target, t).await);
    }

    /// Every address the target's host resolves to, in the resolver's order, each allowed by
    /// the egress policy.
    async fn dns(&self, target: &Target) -> StepOutcome<Vec<SocketAddr>> {
        let (addrs, detail) = self.resolve(target).await?;
        match self.refused(target, &addrs) {
            Some(denied) => Err((denied.to_string(), hints::egress_denied(&denied))),
            None => Ok((addrs, detail)),
        }
    }

    /// The first of `addrs` the egress policy refuses for `target`'s host.
    fn refused(&self, target: &Target, addrs: &[SocketAddr]) -> Option<Denied> {
        let host = match &target.host {
            TargetHost::Ip(ip) => ip.to_string(),
            TargetHost::Domain(name) => name.clone(),
        };
        addrs
            .iter()
            .find_map(|a| self.cfg.egress.check(&host, a.ip()).err())
    }

    /// Every address the target's host resolves to, in the resolver's order.
    async fn resolve(&self, target: &Target) -> StepOutcome<Vec<SocketAddr>> {
        let name = match &target.host {
            TargetHost::Ip(ip) => {
                let addr = SocketAddr::new(*ip, target.port);
                return Ok((
                    vec![addr],
                    format!("{ip} is an IP address; no lookup needed"),
                ));
            }
            TargetHost::Domain(name) => name,
        };
        if classify::never_resolves(name) {
            return Err((
                format!("{name} is under the reserved .invalid domain and never resolves"),
                hints::dns_failure(),
            ));
        }
        match timeout(
            self.cfg.dns_timeout,
            lookup_host((name.as_str(), target.port)),
        )
        .await
        {
            Ok(Ok(addrs)) => {
                let addrs: Vec<SocketAddr> = addrs.collect();
                match addrs.is_empty() {
                    false => {
                        let list: Vec<String> = addrs.iter().map(|a| a.ip().to_string()).collect();
                        let detail = format!("{name} resolved to {}", list.join(", "));
                        Ok((addrs, detail))
                    }
                    true => Err((
                        format!("{name} resolved to no addresses"),
                        hints::dns_failure(),
                    )),
                }
            }
            Ok(Err(e)) => Err((
                format!("lookup of {name} failed: {e}"),
                hints::dns_failure(),
            )),
            Err(_) => Err((
                format!(
                    "lookup of {name} timed out after {} s",
                    self.cfg.dns_timeout.as_secs_f64()
                ),
                hints::dns_failure(),
            )),
        }
    }

    /// Connects to each of `addrs` in turn until one answers, as the proxy's connector does
    /// (`localhost` may resolve to `::1` first while the sink listens on 127.0.0.1 only).
    async fn tcp(&self, addrs: &[SocketAddr], port: u16) -> StepOutcome<()> {
        let mut failures = Vec::new();
        let mut hint = ConnectFailure::TimedOut.hint(port);
        for addr in addrs {
            match timeout(self.cfg.tcp_timeout, TcpStream::connect(addr)).await {
                Ok(Ok(_stream)) => {
                    let mut detail = format!("connected to {addr}");
                    if !failures.is_empty() {
                        detail.push_str(&format!(" (after {})", failures.join("; ")));
                    }
                    return Ok(((), detail));
                }
                Ok(Err(e)) => {
                    let class = ConnectFailure::of(&e);
                    failures.push(format!("{} connecting to {addr}: {e}", class.label()));
                    hint = class.hint(port);
                }
                Err(_) => {
                    failures.push(format!(
                        "no answer from {addr} within {} s",
                        self.cfg.tcp_timeout.as_secs_f64()
                    ));
                    hint = ConnectFailure::TimedOut.hint(port);
                }
            }
        }
        Err((failures.join("; "), hint))
    }

    async fn http(&self, target: &Target, t: Instant) -> StepResult {
        match self.client.get(target.url.clone()).send().await {
            Ok(resp) => {
                let status = resp.status();
                let mut detail = format!("HTTP {status}");
                if let Some(loc) = resp.headers().get(reqwest::header::LOCATION) {
                    let loc = String::from_utf8_lossy(loc.as_bytes());
                    detail.push_str(&format!(" (redirect to {loc} not followed)"));
                }
                let result = if status.is_server_error() {
                    StepResult::failed(Step::Http, t, detail, hints::http_status(status.as_u16()))
                } else {
                    StepResult::passed(Step::Http, t, detail)
                };
                result.with_http_status(status.as_u16())
            }
            Err(e) => {
                let chain = error_chain(&e);
                let (detail, hint) = match classify::http_failure(&e, e.is_timeout()) {
                    HttpFailure::Tls(msg) => (format!("TLS failure: {msg}"), hints::tls_failure()),
                    HttpFailure::TimedOut => {
                        let secs = self.cfg.http_timeout.as_secs_f64();
                        (
                            format!("no HTTP response within {secs} s"),
                            hints::http_timeout(secs),
                        )
                    }
                    HttpFailure::Connect(class) => (
                        format!("{}: {chain}", class.label()),
                        class.hint(target.port),
                    ),
                    HttpFailure::Other => {
                        (format!("request failed: {chain}"), hints::http_protocol())
                    }
                };
                StepResult::failed(Step::Http, t, detail, hint)
            }
        }
    }
}

/// Runs one step, records its result, and passes its value on when it succeeded.
async fn record<T>(
    steps: &mut Vec<StepResult>,
    step: Step,
    fut: impl std::future::Future<Output = StepOutcome<T>>,
) -> Option<T> {
    let t = Instant::now();
    match fut.await {
        Ok((value, detail)) => {
            steps.push(StepResult::passed(step, t, detail));
            Some(value)
        }
        Err((detail, hint)) => {
            steps.push(StepResult::failed(step, t, detail, hint));
            None
        }
    }
}

/// `err` and its sources joined by `": "`, skipping repeats.
fn error_chain(err: &(dyn Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur = Some(err);
    while let Some(e) = cur {
        let text = e.to_string();
        if parts.last() != Some(&text) {
            parts.push(text);
        }
        cur = e.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_connect_step_tries_every_resolved_address_until_one_answers() {
        let open = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = open.local_addr().unwrap().port();
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let v = Validator::new(ValidatorConfig::default());
        let (_, detail) = v
            .tcp(&[closed, open.local_addr().unwrap()], port)
            .await
            .expect("the second address answers");
        assert!(
            detail.contains(&format!("connecting to {closed}")),
            "{detail}"
        );
        let (problem, _) = v.tcp(&[closed], closed.port()).await.unwrap_err();
        assert!(problem.contains(&closed.to_string()), "{problem}");
    }
}
