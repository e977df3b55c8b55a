//! Operator-facing hint texts, one per failure class.
//!
//! The first five texts are fixed by the product contract (PRODUCT.md §6) and must not change
//! wording; the rest are sluice's own.

/// Hint for a host name that does not resolve.
pub fn dns_failure() -> String {
    "Domain cannot be resolved. Check DNS settings or use an IP address.".to_owned()
}

/// Hint for a TCP connection refused on `port`.
pub fn connection_refused(port: u16) -> String {
    format!(
        "Port {port} is not accepting connections. Check if the service is running and the port is correct."
    )
}

/// Hint for a TCP connect that timed out.
pub fn tcp_timeout() -> String {
    "Connection timed out. Possible firewall blocking. Check network/firewall rules.".to_owned()
}

/// Hint for a host or network that cannot be reached.
pub fn unreachable() -> String {
    "Host is not reachable. Verify the IP address and network connectivity.".to_owned()
}

/// Hint for an HTTP response whose status marks the service unhealthy.
pub fn http_status(status: u16) -> String {
    format!("Service responded with HTTP {status}. The service may not be healthy.")
}

/// Hint for a TLS handshake or certificate failure.
pub fn tls_failure() -> String {
    "TLS handshake failed. Check that the service speaks HTTPS on this port and presents a certificate trusted for this host name."
        .to_owned()
}

/// Hint for a service that accepted the connection but did not answer in time.
pub fn http_timeout(secs: f64) -> String {
    format!(
        "Service accepted the connection but sent no HTTP response within {secs} s. Check that it is healthy and not overloaded."
    )
}

/// Hint for an HTTP exchange that failed after connecting, for a reason other than TLS or time.
pub fn http_protocol() -> String {
    "The port accepted a connection but did not speak HTTP as expected. Check the scheme (http/https) and the port."
        .to_owned()
}

/// Hint for a sink whose address the egress policy refuses.
pub fn egress_denied(denied: &sluice_core::egress::Denied) -> String {
    format!(
        "sluice does not connect to {} addresses unless allowed: pick a public address, or start \
         sluice with --egress-allow {} (a network, an address or a host name) or \
         --egress-allow-private.",
        denied.kind, denied.host
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract_texts_are_exact() {
        assert_eq!(
            dns_failure(),
            "Domain cannot be resolved. Check DNS settings or use an IP address."
        );
        assert_eq!(
            connection_refused(8080),
            "Port 8080 is not accepting connections. Check if the service is running and the port is correct."
        );
        assert_eq!(
            tcp_timeout(),
            "Connection timed out. Possible firewall blocking. Check network/firewall rules."
        );
        assert_eq!(
            unreachable(),
            "Host is not reachable. Verify the IP address and network connectivity."
        );
        assert_eq!(
            http_status(503),
            "Service responded with HTTP 503. The service may not be healthy."
        );
    }

    #[test]
    fn own_texts_name_their_subject() {
        assert!(tls_failure().contains("TLS"));
        assert!(http_timeout(10.0).contains("10 s"));
        assert!(http_timeout(0.5).contains("0.5 s"));
        assert!(http_protocol().contains("scheme"));
    }
}
