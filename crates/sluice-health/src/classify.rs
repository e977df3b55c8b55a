//! Pure classification of network failures into the classes the hints speak about.

use std::error::Error;
use std::io;

use crate::hints;

/// Why a TCP connection could not be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectFailure {
    /// The host answered with a reset: nothing listens on the port.
    Refused,
    /// No answer within the timeout (SYNs dropped, filtered port).
    TimedOut,
    /// The host or its network cannot be reached (no route, ICMP unreachable).
    Unreachable,
    /// Any other connect error; reported with the unreachable hint.
    Other,
}

impl ConnectFailure {
    /// Classifies an error returned by a connect call.
    pub fn of(err: &io::Error) -> Self {
        match err.kind() {
            io::ErrorKind::ConnectionRefused => return ConnectFailure::Refused,
            io::ErrorKind::TimedOut => return ConnectFailure::TimedOut,
            io::ErrorKind::HostUnreachable | io::ErrorKind::NetworkUnreachable => {
                return ConnectFailure::Unreachable
            }
            _ => {}
        }
        // Raw errno values for platforms/kinds the std mapping leaves as `Other`.
        match err.raw_os_error() {
            Some(111) => ConnectFailure::Refused,           // ECONNREFUSED
            Some(110) => ConnectFailure::TimedOut,          // ETIMEDOUT
            Some(101 | 113) => ConnectFailure::Unreachable, // ENETUNREACH, EHOSTUNREACH
            _ => ConnectFailure::Other,
        }
    }

    /// A short label for the step detail.
    pub fn label(self) -> &'static str {
        match self {
            ConnectFailure::Refused => "connection refused",
            ConnectFailure::TimedOut => "connection timed out",
            ConnectFailure::Unreachable => "host unreachable",
            ConnectFailure::Other => "connection failed",
        }
    }

    /// The operator hint for this class, naming `port` where the text calls for it.
    pub fn hint(self, port: u16) -> String {
        match self {
            ConnectFailure::Refused => hints::connection_refused(port),
            ConnectFailure::TimedOut => hints::tcp_timeout(),
            ConnectFailure::Unreachable | ConnectFailure::Other => hints::unreachable(),
        }
    }
}

/// Why an HTTP exchange failed after the name resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpFailure {
    /// The TLS handshake or certificate check failed; carries the TLS error text.
    Tls(String),
    /// No response within the HTTP timeout.
    TimedOut,
    /// The (re)connect made by the HTTP client failed.
    Connect(ConnectFailure),
    /// Anything else: malformed response, reset mid-exchange, ...
    Other,
}

/// Classifies an HTTP client error by walking its `source()` chain.
///
/// `timed_out` is the client's own verdict (its timeout errors carry no io::Error).
pub fn http_failure(err: &(dyn Error + 'static), timed_out: bool) -> HttpFailure {
    let mut io_kind = None;
    let mut cur: Option<&(dyn Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return HttpFailure::Tls(tls.to_string());
        }
        cur = match e.downcast_ref::<io::Error>() {
            Some(ioe) => {
                let class = ConnectFailure::of(ioe);
                if class != ConnectFailure::Other {
                    io_kind.get_or_insert(class);
                }
                // io::Error::source() skips the error it wraps, so descend into it directly.
                match ioe.get_ref() {
                    Some(inner) => Some(inner as &(dyn Error + 'static)),
                    None => ioe.source(),
                }
            }
            None => e.source(),
        };
    }
    if timed_out {
        return HttpFailure::TimedOut;
    }
    match io_kind {
        Some(class) => HttpFailure::Connect(class),
        None => HttpFailure::Other,
    }
}

/// Whether `name` lies in a special-use domain that never resolves (RFC 6761 `.invalid`).
pub fn never_resolves(name: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == "invalid" || name.ends_with(".invalid")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt;

    #[derive(Debug)]
    struct Wrap(Box<dyn Error + Send + Sync>);
    impl fmt::Display for Wrap {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("wrapped")
        }
    }
    impl Error for Wrap {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&*self.0)
        }
    }

    #[test]
    fn io_kinds_map_to_classes() {
        let of = |k| ConnectFailure::of(&io::Error::from(k));
        assert_eq!(
            of(io::ErrorKind::ConnectionRefused),
            ConnectFailure::Refused
        );
        assert_eq!(of(io::ErrorKind::TimedOut), ConnectFailure::TimedOut);
        assert_eq!(
            of(io::ErrorKind::HostUnreachable),
            ConnectFailure::Unreachable
        );
        assert_eq!(
            of(io::ErrorKind::NetworkUnreachable),
            ConnectFailure::Unreachable
        );
        assert_eq!(of(io::ErrorKind::PermissionDenied), ConnectFailure::Other);
    }

    #[test]
    fn raw_errnos_map_to_classes() {
        let of = |n| ConnectFailure::of(&io::Error::from_raw_os_error(n));
        assert_eq!(of(111), ConnectFailure::Refused);
        assert_eq!(of(110), ConnectFailure::TimedOut);
        assert_eq!(of(113), ConnectFailure::Unreachable);
        assert_eq!(of(101), ConnectFailure::Unreachable);
    }

    #[test]
    fn hints_follow_class() {
        assert!(ConnectFailure::Refused.hint(8080).starts_with("Port 8080 "));
        assert!(ConnectFailure::TimedOut
            .hint(1)
            .starts_with("Connection timed out."));
        assert!(ConnectFailure::Unreachable
            .hint(1)
            .starts_with("Host is not reachable."));
        assert_eq!(ConnectFailure::Other.hint(1), hints::unreachable());
    }

    #[test]
    fn tls_errors_are_found_inside_io_errors() {
        let tls = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let expected = tls.to_string();
        // The shape reqwest produces: io::Error(Other) around io::Error(InvalidData) around rustls.
        let inner = io::Error::new(io::ErrorKind::InvalidData, tls);
        let err = Wrap(Box::new(io::Error::other(inner)));
        assert_eq!(http_failure(&err, false), HttpFailure::Tls(expected));
    }

    #[test]
    fn bare_tls_errors_are_tls() {
        let err = Wrap(Box::new(rustls::Error::HandshakeNotComplete));
        assert!(matches!(http_failure(&err, false), HttpFailure::Tls(_)));
    }

    #[test]
    fn timeouts_and_connect_errors() {
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        let err = Wrap(Box::new(io::Error::other(refused)));
        assert_eq!(
            http_failure(&err, false),
            HttpFailure::Connect(ConnectFailure::Refused)
        );
        assert_eq!(
            http_failure(&Wrap("late".into()), true),
            HttpFailure::TimedOut
        );
        assert_eq!(http_failure(&Wrap("odd".into()), false), HttpFailure::Other);
    }

    #[test]
    fn invalid_tld_never_resolves() {
        assert!(never_resolves("nonexistent.invalid"));
        assert!(never_resolves("A.B.INVALID."));
        assert!(never_resolves("invalid"));
        assert!(!never_resolves("invalid.example.com"));
        assert!(!never_resolves("notinvalid"));
    }
}
