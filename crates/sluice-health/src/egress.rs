//! The egress policy (`sluice_core::egress`) applied to the HTTP clients that reach out on a
//! channel's behalf: health probes and validation, OAuth token calls. Their resolver keeps only
//! the addresses the policy allows, so what is dialled is what was checked (a name that
//! resolves to a public address at save and to 127.0.0.1 later is still refused).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use sluice_core::egress::{Denied, EgressPolicy};

/// A resolver that drops the addresses `policy` refuses, and fails when none is left.
#[derive(Debug, Clone)]
pub struct PolicyResolver(pub Arc<EgressPolicy>);

impl Resolve for PolicyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.0.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let found = tokio::net::lookup_host((host.as_str(), 0)).await?;
            let allowed = allowed(&policy, &host, found.collect())?;
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

/// The addresses of `found` that `policy` allows for `host`; the first refusal when none is.
pub fn allowed(
    policy: &EgressPolicy,
    host: &str,
    found: Vec<SocketAddr>,
) -> Result<Vec<SocketAddr>, Denied> {
    let mut first_denied = None;
    let mut kept = Vec::with_capacity(found.len());
    for addr in found {
        match policy.check(host, addr.ip()) {
            Ok(()) => kept.push(addr),
            Err(denied) => {
                first_denied.get_or_insert(denied);
            }
        }
    }
    match (kept.is_empty(), first_denied) {
        (true, Some(denied)) => Err(denied),
        _ => Ok(kept),
    }
}

/// Refuses a URL whose host is an address literal the policy refuses (a resolver is never asked
/// about those).
pub fn check_literal(policy: &EgressPolicy, url: &reqwest::Url) -> Result<(), Denied> {
    let ip = match url.host() {
        Some(url::Host::Ipv4(v4)) => IpAddr::V4(v4),
        Some(url::Host::Ipv6(v6)) => IpAddr::V6(v6),
        _ => return Ok(()),
    };
    policy.check(&ip.to_string(), ip)
}
