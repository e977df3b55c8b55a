//! Loops: a channel whose sink is sluice itself would forward each request to itself until the
//! process runs out of connections. Each forwarded request carries a `Via` entry naming the
//! node (RFC 9110 §7.6.3), and a request that arrives with this node's entry already in it is
//! refused ([`Hop::passed_here`]); a sink URL naming sluice's own listener or public URL is
//! refused when a channel is saved ([`OwnAddresses::is_own`]).

use std::net::{IpAddr, SocketAddr};

use http::header::VIA;
use http::{HeaderMap, HeaderValue};
use url::Url;

/// This node's `Via` entry.
#[derive(Debug, Clone)]
pub struct Hop {
    /// `sluice-<node id>`: the entry's received-by name.
    name: String,
    /// `1.1 sluice-<node id>`
    entry: HeaderValue,
}

impl Hop {
    /// The entry of the node `node_id` (characters a `Via` name may not hold are dropped).
    pub fn new(node_id: &str) -> Self {
        let id: String = node_id
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
            .collect();
        let name = format!("sluice-{id}");
        let entry = HeaderValue::from_str(&format!("1.1 {name}")).expect("a token is header-safe");
        Self { name, entry }
    }

    /// Whether a request with `headers` was already forwarded by this node.
    pub fn passed_here(&self, headers: &HeaderMap) -> bool {
        headers
            .get_all(VIA)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|entry| entry.split_whitespace().nth(1) == Some(self.name.as_str()))
    }

    /// Adds this node's entry to the `Via` of a request it forwards.
    pub fn stamp(&self, headers: &mut HeaderMap) {
        headers.append(VIA, self.entry.clone());
    }
}

/// The addresses at which callers reach this sluice: its listeners and its public URL.
#[derive(Debug, Clone, Default)]
pub struct OwnAddresses {
    listeners: Vec<SocketAddr>,
    public: Option<(String, u16)>,
}

impl OwnAddresses {
    /// The listeners bound at `listeners` and the public URL `public_url`.
    pub fn new(listeners: Vec<SocketAddr>, public_url: &str) -> Self {
        let public = Url::parse(public_url).ok().and_then(|u| {
            Some((
                u.host_str()?.to_ascii_lowercase(),
                u.port_or_known_default()?,
            ))
        });
        Self { listeners, public }
    }

    /// Whether `url` names this sluice (by its public URL's host and port, or a listener's
    /// address; a listener on every interface is reached at any loopback address or
    /// `localhost`). Names other than `localhost` are not resolved.
    pub fn is_own(&self, url: &Url) -> bool {
        let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
            return false;
        };
        let host = host.to_ascii_lowercase();
        if self.public.as_ref() == Some(&(host.clone(), port)) {
            return true;
        }
        let ip = match url.host() {
            Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
            _ => None,
        };
        self.listeners.iter().any(|l| {
            l.port() == port
                && match ip {
                    Some(ip) => {
                        ip == l.ip()
                            || (l.ip().is_unspecified()
                                && (ip.is_loopback() || ip.is_unspecified()))
                    }
                    None => {
                        host == "localhost" && (l.ip().is_loopback() || l.ip().is_unspecified())
                    }
                }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_known_by_this_nodes_entry_among_others() {
        let hop = Hop::new("4f0c-9a");
        let mut h = HeaderMap::new();
        assert!(!hop.passed_here(&h));
        h.append(
            VIA,
            HeaderValue::from_static("1.0 fred, 1.1 sluice-other (sluice)"),
        );
        assert!(!hop.passed_here(&h));
        hop.stamp(&mut h);
        assert!(hop.passed_here(&h));
        assert!(Hop::new("other").passed_here(&h));
    }

    #[test]
    fn own_addresses_cover_the_listeners_and_the_public_url() {
        let own = OwnAddresses::new(
            vec![
                "0.0.0.0:4000".parse().unwrap(),
                "127.0.0.1:4001".parse().unwrap(),
            ],
            "https://Gateway.example.org",
        );
        let is_own = |u: &str| own.is_own(&Url::parse(u).unwrap());
        assert!(is_own("http://127.0.0.1:4000/channels/x"));
        assert!(is_own("http://localhost:4000/"));
        assert!(is_own("http://[::1]:4000/"));
        assert!(is_own("http://127.0.0.1:4001/"));
        assert!(is_own("https://gateway.example.org/channels/x"));
        assert!(is_own("https://gateway.example.org:443/"));
        assert!(
            !is_own("http://gateway.example.org/"),
            "port 80, not the public URL's 443"
        );
        assert!(!is_own("http://127.0.0.1:4002/"));
        assert!(!is_own("http://sink.example.org:4000/"));
    }
}
