//! Which addresses sluice may connect to on a channel's behalf (sinks, health probes, OAuth
//! token calls). By default none that is loopback, private, link-local, CGNAT or unspecified:
//! a channel must not be a door into the network sluice runs in (the cloud metadata service at
//! 169.254.169.254, a database on 10.0.0.5). An operator opens networks or host names
//! (`--egress-allow`), or everything (`--egress-allow-private`).

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

/// The egress policy of this node.
#[derive(Debug, Clone)]
pub struct EgressPolicy {
    allow_private: bool,
    networks: Vec<IpNet>,
    hosts: Vec<String>,
}

/// A connection the policy refuses: to `ip` (which `host` named), a `kind` address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Denied {
    /// The host as written in the URL.
    pub host: String,
    /// The address refused.
    pub ip: IpAddr,
    /// What kind of address it is (`loopback`, `private`, …).
    pub kind: &'static str,
}

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("egress_denied: ")?;
        if self.host.trim_matches(['[', ']']) != self.ip.to_string() {
            write!(f, "{} resolves to ", self.host)?;
        }
        write!(
            f,
            "{}, a {} address; sluice connects to such addresses only when allowed \
             (--egress-allow)",
            self.ip, self.kind
        )
    }
}

impl Default for EgressPolicy {
    /// Refuses every special-use address.
    fn default() -> Self {
        EgressPolicy {
            allow_private: false,
            networks: Vec::new(),
            hosts: Vec::new(),
        }
    }
}

impl EgressPolicy {
    /// Allows everything (sluice before egress policies; also `--egress-allow-private`).
    pub fn open() -> Self {
        EgressPolicy {
            allow_private: true,
            ..EgressPolicy::default()
        }
    }

    /// The default policy with `allowed` opened: each entry a network (`10.0.0.0/8`), an
    /// address (`10.1.2.3`) or a host name (`dhis2.lan`); `Err` names an entry that is none.
    pub fn allowing(allowed: &[String]) -> Result<Self, String> {
        let mut policy = EgressPolicy::default();
        for entry in allowed.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
            if let Ok(net) = entry.parse::<IpNet>() {
                policy.networks.push(net);
            } else if let Ok(ip) = entry.parse::<IpAddr>() {
                policy.networks.push(IpNet::from(ip));
            } else if is_host_name(entry) {
                policy
                    .hosts
                    .push(entry.trim_end_matches('.').to_ascii_lowercase());
            } else {
                return Err(format!(
                    "{entry:?} is not a network, an address or a host name"
                ));
            }
        }
        Ok(policy)
    }

    /// Whether `host` is allowed whatever it resolves to (it is on the allow list).
    pub fn allows_host(&self, host: &str) -> bool {
        self.allow_private || {
            let host = host.trim_end_matches('.').to_ascii_lowercase();
            self.hosts.contains(&host)
        }
    }

    /// Whether a connection to `ip`, named `host` in the URL, is allowed.
    pub fn check(&self, host: &str, ip: IpAddr) -> Result<(), Denied> {
        let Some(kind) = special_kind(ip) else {
            return Ok(());
        };
        if self.allows_host(host) || self.networks.iter().any(|n| n.contains(&ip)) {
            return Ok(());
        }
        Err(Denied {
            host: host.to_string(),
            ip,
            kind,
        })
    }
}

impl fmt::Display for EgressPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.allow_private {
            return f.write_str("any address");
        }
        let allowed: Vec<String> = (self.networks.iter().map(ToString::to_string))
            .chain(self.hosts.iter().cloned())
            .collect();
        write!(f, "public addresses and: {}", allowed.join(", "))
    }
}

fn is_host_name(s: &str) -> bool {
    let s = s.strip_suffix('.').unwrap_or(s);
    !s.is_empty()
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// The kind of a special-use address that sluice refuses by default; `None` for the rest.
pub fn special_kind(ip: IpAddr) -> Option<&'static str> {
    let ip = match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    };
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            if v4.is_loopback() {
                Some("loopback")
            } else if v4.is_private() {
                Some("private")
            } else if v4.is_link_local() {
                Some("link-local")
            } else if a == 100 && (64..128).contains(&b) {
                Some("CGNAT")
            } else if v4.is_unspecified() || a == 0 {
                Some("unspecified")
            } else if v4.is_broadcast() || a >= 224 {
                Some("multicast or reserved")
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            if v6.is_loopback() {
                Some("loopback")
            } else if v6.is_unspecified() {
                Some("unspecified")
            } else if first & 0xfe00 == 0xfc00 {
                Some("unique-local")
            } else if first & 0xffc0 == 0xfe80 {
                Some("link-local")
            } else if v6.is_multicast() {
                Some("multicast or reserved")
            } else {
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn special_addresses_are_refused_by_default_and_public_ones_pass() {
        let policy = EgressPolicy::default();
        for (addr, kind) in [
            ("127.0.0.1", "loopback"),
            ("10.0.0.5", "private"),
            ("172.16.3.4", "private"),
            ("192.168.1.1", "private"),
            ("169.254.169.254", "link-local"),
            ("100.64.0.1", "CGNAT"),
            ("0.0.0.0", "unspecified"),
            ("::1", "loopback"),
            ("fd00::1", "unique-local"),
            ("fe80::1", "link-local"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::", "unspecified"),
        ] {
            let denied = policy.check("h", ip(addr)).unwrap_err();
            assert_eq!(denied.kind, kind, "{addr}");
        }
        for addr in [
            "93.184.216.34",
            "100.128.0.1",
            "2606:4700::1111",
            "172.32.0.1",
        ] {
            assert!(policy.check("h", ip(addr)).is_ok(), "{addr}");
        }
    }

    #[test]
    fn networks_addresses_and_host_names_can_be_allowed() {
        let allowed = ["10.0.0.0/8", "127.0.0.1", "DHIS2.lan."].map(String::from);
        let policy = EgressPolicy::allowing(&allowed).unwrap();
        assert!(policy.check("x", ip("10.9.9.9")).is_ok());
        assert!(policy.check("x", ip("127.0.0.1")).is_ok());
        assert!(policy.check("x", ip("127.0.0.2")).is_err());
        assert!(policy.check("dhis2.lan", ip("192.168.0.7")).is_ok());
        assert!(policy.check("other.lan", ip("192.168.0.7")).is_err());
        assert!(EgressPolicy::open()
            .check("x", ip("169.254.169.254"))
            .is_ok());
        let err = EgressPolicy::allowing(&["10.0.0.0/33".into()]).unwrap_err();
        assert!(err.contains("10.0.0.0/33"), "{err}");
    }
}
