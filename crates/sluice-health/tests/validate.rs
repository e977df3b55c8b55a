//! End-to-end validation against real endpoints on loopback only.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{header, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use sluice_health::{hints, Step, StepStatus, ValidationReport, Validator, ValidatorConfig};
use socket2::{Domain, Socket, Type};
use tokio::net::TcpListener;

fn validator() -> Validator {
    Validator::new(ValidatorConfig::default())
}

fn short_timeouts() -> Validator {
    Validator::new(ValidatorConfig {
        dns_timeout: Duration::from_secs(2),
        tcp_timeout: Duration::from_millis(800),
        http_timeout: Duration::from_millis(800),
        ..ValidatorConfig::default()
    })
}

/// Asserts the steps up to `failed` passed, `failed` failed, and the rest were skipped.
fn assert_failed_at(report: &ValidationReport, failed: Step) {
    assert!(!report.ok, "{report:#?}");
    assert_eq!(report.steps.len(), 4);
    let at = Step::ALL.iter().position(|&s| s == failed).unwrap();
    for (i, s) in report.steps.iter().enumerate() {
        assert_eq!(s.step, Step::ALL[i]);
        let want = match i.cmp(&at) {
            std::cmp::Ordering::Less => StepStatus::Ok,
            std::cmp::Ordering::Equal => StepStatus::Failed,
            std::cmp::Ordering::Greater => StepStatus::Skipped,
        };
        assert_eq!(s.status, want, "step {i}: {report:#?}");
        assert_eq!(s.ok, want == StepStatus::Ok);
        assert_eq!(s.hint.is_some(), want == StepStatus::Failed, "{s:?}");
    }
}

/// A hyper sink on loopback answering `/status/NNN` with that status (200 otherwise).
async fn sink() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let svc = service_fn(|req: Request<Incoming>| async move {
                    let code = req
                        .uri()
                        .path()
                        .strip_prefix("/status/")
                        .and_then(|c| c.parse().ok())
                        .unwrap_or(200);
                    let mut resp = Response::new(Full::new(Bytes::from_static(b"sink")));
                    *resp.status_mut() = StatusCode::from_u16(code).unwrap();
                    if resp.status().is_redirection() {
                        resp.headers_mut()
                            .insert(header::LOCATION, "/elsewhere".parse().unwrap());
                    }
                    Ok::<_, Infallible>(resp)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

/// A port on loopback that nothing listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A listener that never accepts and whose accept queue is full, so Linux drops further SYNs.
///
/// With `listen(0)` the kernel queues one completed connection; we fill it (and try a few more),
/// after which new SYNs are silently dropped and a connect hangs until the caller's timeout.
fn full_backlog_listener() -> (Socket, Vec<std::net::TcpStream>, SocketAddr) {
    let sock = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    sock.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    sock.listen(0).unwrap();
    let addr = sock.local_addr().unwrap().as_socket().unwrap();
    let fillers: Vec<_> = (0..3)
        .filter_map(|_| {
            std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()
        })
        .collect();
    assert!(!fillers.is_empty(), "could not fill the backlog");
    let probe = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300));
    assert!(
        probe.is_err(),
        "backlog is not full: SYNs are still answered"
    );
    (sock, fillers, addr)
}

#[tokio::test]
async fn syntax_errors_answer_at_once() {
    let v = validator();
    for url in [
        "ftp://x",
        "http://",
        "http://host:99999",
        "not a url",
        "https://:80/",
    ] {
        let t = Instant::now();
        let report = v.validate(url).await;
        let wall = t.elapsed();
        assert!(wall < Duration::from_millis(100), "{url} took {wall:?}");
        assert!(report.total_ms < 100);
        assert_eq!(report.url, url);
        assert_failed_at(&report, Step::Syntax);
        assert!(!report.steps[0].detail.is_empty());
    }
    let report = v.validate("ftp://x").await;
    assert_eq!(
        report.steps[0].hint.as_deref(),
        Some("Only http:// and https:// destinations are supported.")
    );
    let report = v.validate("http://host:99999").await;
    assert_eq!(
        report.steps[0].hint.as_deref(),
        Some("Use a port between 1 and 65535.")
    );
}

#[tokio::test]
async fn closed_port_is_refused_with_the_port_in_the_hint() {
    let port = closed_port();
    let report = validator()
        .validate(&format!("http://127.0.0.1:{port}/"))
        .await;
    assert_failed_at(&report, Step::Tcp);
    let tcp = &report.steps[2];
    assert_eq!(
        tcp.hint.as_deref(),
        Some(hints::connection_refused(port).as_str())
    );
    assert!(tcp
        .hint
        .as_ref()
        .unwrap()
        .starts_with(&format!("Port {port} is not accepting")));
    assert!(tcp.detail.contains("refused"), "{}", tcp.detail);
    assert!(report.steps[1].detail.contains("IP address"));
}

#[tokio::test]
async fn unresolvable_name_gets_the_dns_hint_quickly() {
    let t = Instant::now();
    let report = validator().validate("http://nonexistent.invalid/").await;
    assert!(t.elapsed() < Duration::from_millis(100));
    assert_failed_at(&report, Step::Dns);
    assert_eq!(
        report.steps[1].hint.as_deref(),
        Some("Domain cannot be resolved. Check DNS settings or use an IP address.")
    );
}

#[tokio::test]
async fn names_resolve_through_the_system_resolver() {
    let port = closed_port();
    let report = validator()
        .validate(&format!("http://localhost:{port}/"))
        .await;
    let dns = &report.steps[1];
    assert_eq!(dns.status, StepStatus::Ok, "{report:#?}");
    assert!(
        dns.detail.contains("127.0.0.1") || dns.detail.contains("::1"),
        "{}",
        dns.detail
    );
    assert_failed_at(&report, Step::Tcp);
}

#[tokio::test]
async fn listener_with_full_backlog_times_out_with_the_timeout_hint() {
    let (_sock, _fillers, addr) = full_backlog_listener();
    let v = short_timeouts();
    let t = Instant::now();
    let report = v.validate(&format!("http://{addr}/")).await;
    let wall = t.elapsed();
    assert_failed_at(&report, Step::Tcp);
    let tcp = &report.steps[2];
    assert_eq!(
        tcp.hint.as_deref(),
        Some("Connection timed out. Possible firewall blocking. Check network/firewall rules.")
    );
    assert!(tcp.duration_ms >= 750, "{}", tcp.duration_ms);
    assert!(wall < Duration::from_millis(1500), "took {wall:?}");
}

#[tokio::test]
async fn default_tcp_timeout_is_five_seconds() {
    let (_sock, _fillers, addr) = full_backlog_listener();
    let report = validator().validate(&format!("http://{addr}/")).await;
    assert_failed_at(&report, Step::Tcp);
    let ms = report.steps[2].duration_ms;
    assert!((4900..6000).contains(&ms), "tcp step took {ms} ms");
    assert!(report.total_ms < 6000);
}

#[tokio::test]
async fn http_503_is_reachable_but_unhealthy() {
    let addr = sink().await;
    let v = validator();
    let url = format!("http://{addr}/status/503");
    let report = v.validate(&url).await;
    assert_failed_at(&report, Step::Http);
    let http = &report.steps[3];
    assert_eq!(http.http_status, Some(503));
    assert_eq!(
        http.hint.as_deref(),
        Some("Service responded with HTTP 503. The service may not be healthy.")
    );
    let probe = v.probe(&url).await;
    assert!(!probe.healthy);
    assert_eq!(probe.hint, http.hint);
    assert!(
        probe.detail.starts_with("http: HTTP 503"),
        "{}",
        probe.detail
    );
}

#[tokio::test]
async fn healthy_sink_passes_every_step() {
    let addr = sink().await;
    let v = validator();
    let url = format!("http://{addr}/hook");
    let report = v.validate(&url).await;
    assert!(report.ok, "{report:#?}");
    let names: Vec<Step> = report.steps.iter().map(|s| s.step).collect();
    assert_eq!(names, Step::ALL);
    for s in &report.steps {
        assert_eq!(s.status, StepStatus::Ok);
        assert!(s.ok);
        assert_eq!(s.hint, None);
    }
    assert_eq!(report.steps[3].http_status, Some(200));
    assert_eq!(report.steps[3].detail, "HTTP 200 OK");

    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["ok"], true);
    assert_eq!(json["steps"][0]["step"], "syntax");
    assert_eq!(json["steps"][3]["status"], "ok");
    assert_eq!(json["steps"][3]["http_status"], 200);

    let probe = v.probe(&url).await;
    assert!(probe.healthy);
    assert_eq!(probe.hint, None);
}

#[tokio::test]
async fn non_5xx_statuses_count_as_reachable_and_redirects_are_not_followed() {
    let addr = sink().await;
    let v = validator();
    let report = v.validate(&format!("http://{addr}/status/404")).await;
    assert!(report.ok, "{report:#?}");
    assert_eq!(report.steps[3].http_status, Some(404));

    let report = v.validate(&format!("http://{addr}/status/302")).await;
    assert!(report.ok, "{report:#?}");
    assert_eq!(report.steps[3].http_status, Some(302));
    assert!(report.steps[3].detail.contains("/elsewhere"));
    assert!(report.steps[3].detail.contains("not followed"));
}

#[tokio::test]
async fn silent_service_hits_the_http_timeout() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let t = Instant::now();
    let report = short_timeouts().validate(&format!("http://{addr}/")).await;
    assert!(t.elapsed() < Duration::from_millis(1500));
    assert_failed_at(&report, Step::Http);
    let http = &report.steps[3];
    assert_eq!(http.http_status, None);
    assert_eq!(
        http.hint.as_deref(),
        Some(hints::http_timeout(0.8).as_str())
    );
}

#[tokio::test]
async fn untrusted_certificate_is_a_tls_failure() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.key_pair.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let _ = acceptor.accept(s).await;
            });
        }
    });
    let report = validator()
        .validate(&format!("https://127.0.0.1:{port}/"))
        .await;
    assert_failed_at(&report, Step::Http);
    let http = &report.steps[3];
    assert!(http.detail.starts_with("TLS failure: "), "{}", http.detail);
    assert!(http.detail.contains("certificate"), "{}", http.detail);
    assert_eq!(http.hint.as_deref(), Some(hints::tls_failure().as_str()));
}

#[tokio::test]
async fn https_to_a_plain_http_port_is_a_tls_failure() {
    let addr = sink().await;
    let report = validator().validate(&format!("https://{addr}/")).await;
    assert_failed_at(&report, Step::Http);
    let http = &report.steps[3];
    assert!(http.detail.starts_with("TLS failure: "), "{}", http.detail);
    assert_eq!(http.hint.as_deref(), Some(hints::tls_failure().as_str()));
}
