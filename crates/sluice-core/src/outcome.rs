//! Classification of failed exchanges into the error strings of the contract.

use std::error::Error as StdError;
use std::io;

use crate::exchange::RequestState;

/// Why an exchange ended without a usable answer from the sink.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExchangeError {
    /// The sink's host name does not resolve.
    #[error("nxdomain")]
    Nxdomain,
    /// The sink refused the connection.
    #[error("econnrefused")]
    Econnrefused,
    /// No route to the sink.
    #[error("ehostunreach")]
    Ehostunreach,
    /// The sink reset the connection.
    #[error("econnreset")]
    Econnreset,
    /// The sink closed the connection before answering completely.
    #[error("closed")]
    Closed,
    /// TLS handshake or certificate failure.
    #[error("tls_error")]
    TlsError,
    /// Connecting took longer than the connect timeout.
    #[error("connect_timeout")]
    ConnectTimeout,
    /// The response head took longer than allowed.
    #[error("response_timeout")]
    ResponseTimeout,
    /// The sink paused longer than the idle timeout in the middle of its body.
    #[error("idle_timeout")]
    IdleTimeout,
    /// The caller went away before the exchange finished.
    #[error("client_disconnected")]
    ClientDisconnected,
    /// The caller sent a malformed request body (a broken chunked encoding, say): answered 400.
    #[error("client_error")]
    ClientError,
    /// The caller paused its upload longer than the idle timeout: answered 408.
    #[error("client_timeout")]
    ClientTimeout,
    /// The caller's body went past the channel's limit: answered 413.
    #[error("request_too_large")]
    RequestTooLarge,
    /// The process stopped while the exchange was in flight.
    #[error("interrupted")]
    Interrupted,
    /// Completion could not be persisted.
    #[error("persistence_failed")]
    PersistenceFailed,
    /// The egress policy refused the sink's address: answered 403.
    #[error("egress_denied")]
    EgressDenied,
    /// A sink-credential failure, with its contract string.
    #[error("{0}")]
    Credential(String),
}

impl ExchangeError {
    /// The error string stored with the request.
    pub fn code(&self) -> String {
        self.to_string()
    }

    /// The request state this error leads to.
    pub fn state(&self) -> RequestState {
        match self {
            ExchangeError::ConnectTimeout
            | ExchangeError::ResponseTimeout
            | ExchangeError::IdleTimeout => RequestState::Timeout,
            _ => RequestState::Error,
        }
    }

    /// The status answered to the caller: 400 and 408 for the caller's faults, 403 for an
    /// address the egress policy refuses, 504 for the sink's timeouts, 502 otherwise.
    pub fn http_status(&self) -> u16 {
        match self {
            ExchangeError::ClientError => 400,
            ExchangeError::ClientTimeout => 408,
            ExchangeError::RequestTooLarge => 413,
            ExchangeError::EgressDenied => 403,
            _ if self.state() == RequestState::Timeout => 504,
            _ => 502,
        }
    }

    /// Classifies an upstream failure by walking its chain of sources.
    ///
    /// `is_connect` says whether the failure happened while connecting, which turns
    /// a bare timeout into `connect_timeout` rather than `response_timeout`.
    pub fn classify(err: &(dyn StdError + 'static), is_connect: bool) -> Self {
        let mut cur: Option<&(dyn StdError + 'static)> = Some(err);
        let mut saw_dns = false;
        let mut saw_tls = false;
        while let Some(e) = cur {
            if e.is::<crate::egress::Denied>() {
                return ExchangeError::EgressDenied;
            }
            if let Some(io) = e.downcast_ref::<io::Error>() {
                // An io::Error's source skips the error it wraps: look at that one too.
                if io
                    .get_ref()
                    .is_some_and(|inner| inner.is::<crate::egress::Denied>())
                {
                    return ExchangeError::EgressDenied;
                }
                match io.kind() {
                    io::ErrorKind::ConnectionRefused => return ExchangeError::Econnrefused,
                    io::ErrorKind::HostUnreachable | io::ErrorKind::NetworkUnreachable => {
                        return ExchangeError::Ehostunreach
                    }
                    io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => {
                        return ExchangeError::Econnreset
                    }
                    io::ErrorKind::TimedOut => {
                        return if is_connect {
                            ExchangeError::ConnectTimeout
                        } else {
                            ExchangeError::ResponseTimeout
                        }
                    }
                    io::ErrorKind::UnexpectedEof | io::ErrorKind::BrokenPipe => {
                        return ExchangeError::Closed
                    }
                    _ => {}
                }
            }
            let text = e.to_string().to_ascii_lowercase();
            if text.contains("dns error") || text.contains("failed to lookup address") {
                saw_dns = true;
            }
            if text.contains("certificate")
                || text.contains("tls")
                || text.contains("handshake")
                || text.contains("invalid peer")
            {
                saw_tls = true;
            }
            cur = e.source();
        }
        if saw_dns {
            ExchangeError::Nxdomain
        } else if saw_tls {
            ExchangeError::TlsError
        } else if is_connect {
            ExchangeError::Econnrefused
        } else {
            ExchangeError::Closed
        }
    }
}

/// How a body stream failed, read from its error's chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFailure {
    /// The peer reset the connection.
    Reset,
    /// The bytes broke the HTTP framing (a bad chunk size, say).
    Malformed,
    /// More bytes than the channel allows.
    TooLarge,
    /// The connection ended before the body did, or anything else.
    Closed,
}

impl BodyFailure {
    /// Classifies a body error by its chain: an I/O reset, hyper's parse errors, the rest.
    pub fn of(err: &(dyn StdError + 'static)) -> Self {
        let mut cur = Some(err);
        while let Some(e) = cur {
            if let Some(io) = e.downcast_ref::<io::Error>() {
                if matches!(
                    io.kind(),
                    io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted
                ) {
                    return BodyFailure::Reset;
                }
            }
            let text = e.to_string().to_ascii_lowercase();
            if text.contains("invalid") || text.contains("parse") {
                return BodyFailure::Malformed;
            }
            cur = e.source();
        }
        BodyFailure::Closed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Wrap(String, Option<io::Error>);
    impl std::fmt::Display for Wrap {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(&self.0)
        }
    }
    impl StdError for Wrap {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            self.1.as_ref().map(|e| e as _)
        }
    }

    #[test]
    fn io_kinds_map_to_contract_strings() {
        let cases = [
            (io::ErrorKind::ConnectionRefused, "econnrefused"),
            (io::ErrorKind::ConnectionReset, "econnreset"),
            (io::ErrorKind::HostUnreachable, "ehostunreach"),
        ];
        for (kind, code) in cases {
            let e = Wrap("client error (Connect)".into(), Some(io::Error::from(kind)));
            assert_eq!(ExchangeError::classify(&e, true).code(), code);
        }
    }

    #[test]
    fn dns_and_tls_are_recognised_by_message() {
        let dns = Wrap(
            "dns error".into(),
            Some(io::Error::other("failed to lookup address information")),
        );
        assert_eq!(ExchangeError::classify(&dns, true), ExchangeError::Nxdomain);
        let tls = Wrap(
            "invalid peer certificate: UnknownIssuer".into(),
            Some(io::Error::new(io::ErrorKind::InvalidData, "x")),
        );
        assert_eq!(ExchangeError::classify(&tls, true), ExchangeError::TlsError);
    }

    #[test]
    fn timeouts_map_to_504_and_others_to_502() {
        assert_eq!(ExchangeError::ConnectTimeout.http_status(), 504);
        assert_eq!(
            ExchangeError::ResponseTimeout.state(),
            RequestState::Timeout
        );
        assert_eq!(ExchangeError::Econnrefused.http_status(), 502);
        assert_eq!(ExchangeError::Nxdomain.state(), RequestState::Error);
    }
}
