//! The `syntax` step: is the destination an absolute http(s) URL with a host and a usable port?

use std::fmt;
use std::net::IpAddr;

use url::{Host, Url};

/// A destination that passed the syntax step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The parsed URL, as it will be requested.
    pub url: Url,
    /// The host to resolve or connect to.
    pub host: TargetHost,
    /// The explicit port, or the scheme's default.
    pub port: u16,
}

/// The host part of a [`Target`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetHost {
    /// An IP literal: DNS passes without a lookup.
    Ip(IpAddr),
    /// A domain name that has to be resolved.
    Domain(String),
}

impl fmt::Display for TargetHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetHost::Ip(ip) => ip.fmt(f),
            TargetHost::Domain(name) => f.write_str(name),
        }
    }
}

/// Why a destination failed the syntax step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyntaxError {
    /// The text is not an absolute URL at all.
    NotAUrl(String),
    /// The scheme is neither `http` nor `https`.
    UnsupportedScheme(String),
    /// There is no host after the scheme.
    MissingHost,
    /// The port is not a number in 1..=65535.
    InvalidPort,
}

impl SyntaxError {
    /// A one-line description of the problem.
    pub fn detail(&self) -> String {
        match self {
            SyntaxError::NotAUrl(why) => format!("not a valid URL: {why}"),
            SyntaxError::UnsupportedScheme(s) => {
                format!("scheme \"{s}\" is not supported (use http or https)")
            }
            SyntaxError::MissingHost => "the URL has no host".to_owned(),
            SyntaxError::InvalidPort => "the port is not a number between 1 and 65535".to_owned(),
        }
    }

    /// What the operator should do about it.
    pub fn hint(&self) -> String {
        match self {
            SyntaxError::NotAUrl(_) => {
                "Enter an absolute URL such as https://api.example.com/path.".to_owned()
            }
            SyntaxError::UnsupportedScheme(_) => {
                "Only http:// and https:// destinations are supported.".to_owned()
            }
            SyntaxError::MissingHost => {
                "Add a host name or IP address after the scheme, e.g. http://10.0.0.5:8080/."
                    .to_owned()
            }
            SyntaxError::InvalidPort => "Use a port between 1 and 65535.".to_owned(),
        }
    }
}

/// Checks `input` and splits it into URL, host and port, without any I/O.
pub fn check(input: &str) -> Result<Target, SyntaxError> {
    let url = Url::parse(input.trim()).map_err(|e| match e {
        url::ParseError::EmptyHost => SyntaxError::MissingHost,
        url::ParseError::InvalidPort => SyntaxError::InvalidPort,
        other => SyntaxError::NotAUrl(other.to_string()),
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(SyntaxError::UnsupportedScheme(url.scheme().to_owned()));
    }
    let host = match url.host() {
        None => return Err(SyntaxError::MissingHost),
        Some(Host::Domain("")) => return Err(SyntaxError::MissingHost),
        Some(Host::Domain(name)) => TargetHost::Domain(name.to_owned()),
        Some(Host::Ipv4(ip)) => TargetHost::Ip(ip.into()),
        Some(Host::Ipv6(ip)) => TargetHost::Ip(ip.into()),
    };
    let port = match url.port_or_known_default() {
        Some(0) | None => return Err(SyntaxError::InvalidPort),
        Some(port) => port,
    };
    Ok(Target { url, host, port })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_http_and_https_with_default_ports() {
        let t = check("http://example.com/x?y=1").unwrap();
        assert_eq!(t.host, TargetHost::Domain("example.com".into()));
        assert_eq!(t.port, 80);
        let t = check("https://example.com").unwrap();
        assert_eq!(t.port, 443);
        let t = check(" HTTPS://Example.COM:8443/a ").unwrap();
        assert_eq!(t.host, TargetHost::Domain("example.com".into()));
        assert_eq!(t.port, 8443);
    }

    #[test]
    fn ip_literals_are_ips() {
        let t = check("http://127.0.0.1:9/").unwrap();
        assert_eq!(t.host, TargetHost::Ip("127.0.0.1".parse().unwrap()));
        let t = check("http://[::1]:9/").unwrap();
        assert_eq!(t.host, TargetHost::Ip("::1".parse().unwrap()));
        assert_eq!(t.host.to_string(), "::1");
    }

    #[test]
    fn rejects_other_schemes() {
        assert_eq!(
            check("ftp://x"),
            Err(SyntaxError::UnsupportedScheme("ftp".into()))
        );
        assert!(matches!(
            check("mailto:a@b.c"),
            Err(SyntaxError::UnsupportedScheme(_))
        ));
    }

    #[test]
    fn rejects_missing_host() {
        assert_eq!(check("http://"), Err(SyntaxError::MissingHost));
        assert_eq!(check("https://:8080/"), Err(SyntaxError::MissingHost));
    }

    #[test]
    fn rejects_bad_ports() {
        assert_eq!(check("http://host:99999"), Err(SyntaxError::InvalidPort));
        assert_eq!(check("http://host:0/"), Err(SyntaxError::InvalidPort));
        assert_eq!(check("http://host:abc/"), Err(SyntaxError::InvalidPort));
    }

    #[test]
    fn rejects_non_urls() {
        assert!(matches!(check("not a url"), Err(SyntaxError::NotAUrl(_))));
        assert!(matches!(check(""), Err(SyntaxError::NotAUrl(_))));
        assert!(matches!(
            check("/relative/path"),
            Err(SyntaxError::NotAUrl(_))
        ));
    }

    #[test]
    fn every_error_has_detail_and_hint() {
        for e in [
            SyntaxError::NotAUrl("x".into()),
            SyntaxError::UnsupportedScheme("ftp".into()),
            SyntaxError::MissingHost,
            SyntaxError::InvalidPort,
        ] {
            assert!(!e.detail().is_empty());
            assert!(e.hint().ends_with('.'));
        }
    }
}
