//! HTTPS served by sluice itself (`--tls-cert`, `--tls-key`): HTTP/2 and HTTP/1.1 to callers,
//! the proxy and the API over TLS, and a certificate replaced while connections stay open.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{upstream, Sluice, TempDir};
use serde_json::{json, Value};

/// A CA and a certificate for 127.0.0.1 it signed: (CA PEM, certificate PEM, key PEM).
fn pki(name: &str) -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, name);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    (ca.pem(), leaf.pem(), key.serialize_pem())
}

/// A client trusting only `ca_pem`.
fn client(ca_pem: &str, http1_only: bool) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap();
    let mut builder = reqwest::Client::builder()
        .no_proxy()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca);
    if http1_only {
        builder = builder.http1_only();
    }
    builder.build().unwrap()
}

fn install(dir: &Path, cert: &str, key: &str) {
    std::fs::write(dir.join("cert.pem"), cert).unwrap();
    std::fs::write(dir.join("key.pem"), key).unwrap();
}

#[tokio::test]
async fn sluice_serves_https_with_http2_and_swaps_its_certificate_without_dropping_connections() {
    let tls = TempDir::new();
    let (ca_a, cert_a, key_a) = pki("first");
    install(tls.path(), &cert_a, &key_a);
    let (cert, key) = (tls.path().join("cert.pem"), tls.path().join("key.pem"));
    let s = Sluice::start_in(
        Arc::new(TempDir::new()),
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    )
    .await;
    assert!(s.base.starts_with("https://127.0.0.1:"), "{}", s.base);

    // HTTP/2 by ALPN, HTTP/1.1 for a caller that only speaks it.
    let a = client(&ca_a, false);
    let res = a.get(s.url("/healthz")).send().await.unwrap();
    assert_eq!(
        (res.status().as_u16(), res.version()),
        (200, reqwest::Version::HTTP_2)
    );
    let res = client(&ca_a, true)
        .get(s.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        (res.status().as_u16(), res.version()),
        (200, reqwest::Version::HTTP_11)
    );

    // The API and the proxy over TLS; the proxy URL says https.
    let up = upstream::start().await;
    let res = a
        .post(s.url("/api/v1/channels"))
        .bearer_auth(&s.token)
        .json(&json!({ "name": "tls", "sink_url": up.url("/") }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let channel: Value = res.json().await.unwrap();
    let proxy_url = channel["proxy_url"].as_str().unwrap().to_string();
    assert!(proxy_url.starts_with("https://"), "{proxy_url}");
    let res = a
        .post(format!("{proxy_url}/hello"))
        .body("hi")
        .send()
        .await
        .unwrap();
    assert_eq!(
        (res.status().as_u16(), res.version()),
        (200, reqwest::Version::HTTP_2)
    );

    // A request in flight while the certificate is replaced (SIGHUP) completes on its
    // connection; new connections get the new certificate.
    let slow = tokio::spawn({
        let (a, url) = (a.clone(), format!("{proxy_url}/delay/1500"));
        async move { a.get(url).send().await.map(|r| r.status()) }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (ca_b, cert_b, key_b) = pki("second");
    install(tls.path(), &cert_b, &key_b);
    common::signal(s.pid(), "HUP");
    assert_eq!(
        slow.await.unwrap().unwrap(),
        200,
        "the open connection was kept"
    );
    let began = Instant::now();
    loop {
        let new = client(&ca_b, false).get(s.url("/healthz")).send().await;
        if new.is_ok_and(|r| r.status() == 200) {
            break;
        }
        assert!(
            began.elapsed() < Duration::from_secs(5),
            "the new certificate is not served"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let old = client(&ca_a, false).get(s.url("/healthz")).send().await;
    assert!(
        old.is_err(),
        "a fresh connection no longer gets the first certificate"
    );

    // A broken pair is refused and the one in force stays; the event log says so.
    std::fs::write(&key, "not a key").unwrap();
    common::signal(s.pid(), "HUP");
    let b = client(&ca_b, false);
    let began = Instant::now();
    loop {
        let events: Value = b
            .get(s.url("/api/v1/events?source=system&severity=error"))
            .bearer_auth(&s.token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let said = events["items"].to_string();
        if said.contains("not reloaded") {
            assert!(said.contains("key.pem"), "{said}");
            break;
        }
        assert!(began.elapsed() < Duration::from_secs(5), "{said}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let res = client(&ca_b, false)
        .get(s.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    // A change of the files alone is picked up too (no signal).
    install(tls.path(), &cert_a, &key_a);
    let began = Instant::now();
    loop {
        let back = client(&ca_a, false).get(s.url("/healthz")).send().await;
        if back.is_ok_and(|r| r.status() == 200) {
            break;
        }
        assert!(
            began.elapsed() < Duration::from_secs(10),
            "the file change went unseen"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[test]
fn a_certificate_without_its_key_or_a_wrong_key_stops_serve_with_a_message() {
    let tls = TempDir::new();
    let (_, cert, _) = pki("one");
    let (_, _, other_key) = pki("two");
    install(tls.path(), &cert, &other_key);
    let run = |args: &[&str]| {
        let data = TempDir::new();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data.path())
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let cert = tls.path().join("cert.pem");
    let key = tls.path().join("key.pem");
    let said = run(&["--tls-cert", cert.to_str().unwrap()]);
    assert!(said.contains("--tls-key"), "{said}");
    let said = run(&[
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    assert!(said.contains("is not the key of"), "{said}");
}
