//! The local adaptor catalogue (`--catalog-dir`): its packages' schemas become credential
//! types beside the bundled ones, named short or by package.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::{Sluice, TempDir};
use reqwest::Method;
use serde_json::{json, Value};

/// The adaptor fixtures: `../shared/` beside the repository, else the workplace's copy.
fn fixtures() -> PathBuf {
    let beside = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/adaptors");
    [beside, PathBuf::from("/work/shared/fixtures/adaptors")]
        .into_iter()
        .find(|p| p.join("README.md").exists())
        .expect("adaptor fixtures not found beside the repository nor in /work/shared")
}

async fn create(s: &Sluice, body: Value) -> (u16, Value) {
    let res = s
        .api(Method::POST, "/credentials")
        .json(&body)
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.json().await.unwrap())
}

#[tokio::test]
async fn a_catalogue_adaptors_schema_is_a_credential_type_validated_as_published() {
    let dir = fixtures();
    let s = Sluice::start_in(
        Arc::new(TempDir::new()),
        &["--catalog-dir", dir.to_str().unwrap()],
    )
    .await;
    // googlesheets is not bundled: only the catalogue knows it.
    let (status, made) = create(
        &s,
        json!({ "name": "sheets", "schema": "googlesheets",
                "body": { "access_token": "ya29.secret-token", "client_email": "a@b.iam" } }),
    )
    .await;
    assert_eq!(status, 201, "{made}");
    assert_eq!(made["schema"], "googlesheets");
    assert!(!made.to_string().contains("ya29.secret-token"), "{made}");
    assert_eq!(made["body"]["client_email"], "a@b.iam");

    // Its rules are the published schema's: an empty token is refused, naming the field.
    let (status, problem) = create(
        &s,
        json!({ "name": "sheets-2", "schema": "googlesheets", "body": { "access_token": "" } }),
    )
    .await;
    assert_eq!(status, 422, "{problem}");
    assert!(
        problem["details"]["fields"]["body.access_token"].is_string(),
        "{problem}"
    );

    // The package's own name is the same type.
    let (status, made) = create(
        &s,
        json!({ "name": "sheets-3", "schema": "@openfn/language-googlesheets",
                "body": { "access_token": "ya29.other" } }),
    )
    .await;
    assert_eq!(status, 201, "{made}");
    assert_eq!(made["schema"], "googlesheets", "one spelling is stored");

    let (status, problem) = create(
        &s,
        json!({ "name": "x", "schema": "no-such-adaptor", "body": { "access_token": "t" } }),
    )
    .await;
    assert_eq!(status, 422, "{problem}");
    let known = problem["details"]["fields"]["schema"].as_str().unwrap();
    for name in ["googlesheets", "msgraph", "dhis2", "http", "oauth"] {
        assert!(known.contains(name), "{name} offered: {known}");
    }
}

#[tokio::test]
async fn without_a_catalogue_only_the_bundled_types_exist() {
    let s = Sluice::start().await;
    let (status, problem) = create(
        &s,
        json!({ "name": "sheets", "schema": "googlesheets", "body": { "access_token": "t" } }),
    )
    .await;
    assert_eq!(status, 422, "{problem}");
    assert!(problem["details"]["fields"]["schema"]
        .as_str()
        .unwrap()
        .contains("dhis2, http, oauth"));
}

#[test]
fn a_catalogue_directory_that_is_not_there_stops_serve_with_a_message() {
    let data = TempDir::new();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data.path())
        .args(["--catalog-dir", "/nonexistent/adaptors"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("adaptor catalogue"), "{said}");
}
