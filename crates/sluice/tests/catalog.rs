//! The local adaptor catalogue (`--catalog-dir`): its packages' schemas become credential
//! types beside the bundled ones, named short or by package; and `sluice catalog refresh`.

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

#[tokio::test]
async fn a_catalogue_adaptors_schema_is_a_credential_type_validated_as_published() {
    let dir = fixtures();
    let s = Sluice::start_in(
        Arc::new(TempDir::new()),
        &["--catalog-dir", dir.to_str().unwrap()],
    )
    .await;
    // googlesheets is not bundled: only the catalogue knows it.
    let (status, made) = s
        .create_credential(json!({ "name": "sheets", "schema": "googlesheets",
                "body": { "access_token": "ya29.secret-token", "client_email": "a@b.iam" } }))
        .await;
    assert_eq!(status, 201, "{made}");
    assert_eq!(made["schema"], "googlesheets");
    assert!(!made.to_string().contains("ya29.secret-token"), "{made}");
    assert_eq!(made["body"]["client_email"], "a@b.iam");

    // Its rules are the published schema's: an empty token is refused, naming the field.
    let (status, problem) = s
        .create_credential(
            json!({ "name": "sheets-2", "schema": "googlesheets", "body": { "access_token": "" } }),
        )
        .await;
    assert_eq!(status, 422, "{problem}");
    assert!(
        problem["details"]["fields"]["body.access_token"].is_string(),
        "{problem}"
    );

    // The package's own name is the same type.
    let (status, made) = s
        .create_credential(
            json!({ "name": "sheets-3", "schema": "@openfn/language-googlesheets",
                "body": { "access_token": "ya29.other" } }),
        )
        .await;
    assert_eq!(status, 201, "{made}");
    assert_eq!(made["schema"], "googlesheets", "one spelling is stored");

    let (status, problem) = s
        .create_credential(
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
async fn while_the_catalogue_cannot_load_only_the_seed_types_exist_and_the_422_says_why() {
    // The harness points the npm registry at a closed port.
    let s = Sluice::start().await;
    let (status, problem) = s
        .create_credential(
            json!({ "name": "sheets", "schema": "googlesheets", "body": { "access_token": "t" } }),
        )
        .await;
    assert_eq!(status, 422, "{problem}");
    let said = problem["details"]["fields"]["schema"].as_str().unwrap();
    assert!(said.contains("known: dhis2, http, oauth"), "{said}");
    assert!(said.contains("could not load"), "{said}");
    // A bundled type needs no catalogue.
    let (status, made) = s
        .create_credential(
            json!({ "name": "h", "schema": "http", "body": { "access_token": "t" } }),
        )
        .await;
    assert_eq!(status, 201, "{made}");
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

#[tokio::test]
async fn an_adaptors_icon_is_served_for_good_and_shown_in_the_type_picker() {
    // A catalogue directory of its own: googlesheets with an icon, before the fixtures.
    let own = TempDir::new();
    let pkg = own.path().join("packages/googlesheets");
    std::fs::create_dir_all(pkg.join("assets")).unwrap();
    let fixture = fixtures().join("packages/googlesheets");
    for f in ["package.json", "configuration-schema.json"] {
        std::fs::copy(fixture.join(f), pkg.join(f)).unwrap();
    }
    let svg = br##"<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"><rect width="8" height="8" fill="#0a0"/></svg>"##;
    std::fs::write(pkg.join("assets/square.svg"), svg).unwrap();
    let dirs = format!("{},{}", own.path().display(), fixtures().display());
    let s = Sluice::start_in(Arc::new(TempDir::new()), &["--catalog-dir", &dirs]).await;

    let file = format!("square-{}.svg", &common::sha256(svg)[..8]);
    let plain = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let res = plain
        .get(s.url(&format!("/adaptors/icons/googlesheets/{file}")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "image/svg+xml");
    assert_eq!(
        res.headers()["cache-control"],
        "public, max-age=31536000, immutable"
    );
    assert_eq!(&res.bytes().await.unwrap()[..], &svg[..]);
    let stale = plain
        .get(s.url("/adaptors/icons/googlesheets/square-00000000.svg"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        stale.status(),
        302,
        "an older file name leads to the current one"
    );
    assert_eq!(
        stale.headers()["location"],
        format!("/adaptors/icons/googlesheets/{file}").as_str()
    );
    let none = plain
        .get(s.url("/adaptors/icons/dhis2/square-00000000.svg"))
        .send()
        .await
        .unwrap();
    assert_eq!(none.status(), 404, "dhis2 has no icon here");

    // The credential type picker shows it.
    let res = s
        .api(Method::POST, "/users")
        .json(&json!({ "username": "ops", "password": "a long enough password 1", "superuser": true }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let res = s
        .http()
        .post(s.url("/api/v1/session"))
        .json(&json!({ "username": "ops", "password": "a long enough password 1" }))
        .send()
        .await
        .unwrap();
    let cookie = res.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let page = s
        .http()
        .get(s.url("/ui/credentials"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains(&format!("src=\"/adaptors/icons/googlesheets/{file}\"")),
        "{page}"
    );
}

#[tokio::test]
async fn the_local_strategy_lists_the_four_fixture_packages_and_serves_their_schemas_as_written() {
    let dir = fixtures();
    let s = Sluice::start_in(
        Arc::new(TempDir::new()),
        &["--catalog-dir", dir.to_str().unwrap()],
    )
    .await;
    // The first read loads the catalogue.
    let list = s.get_json("/catalog/adaptors").await;
    let names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["type"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["dhis2", "googlesheets", "http", "msgraph"]);
    for short in names {
        let res = s
            .api(Method::GET, &format!("/catalog/adaptors/{short}/schema"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["content-type"], "application/json");
        let file = dir.join(format!("packages/{short}/configuration-schema.json"));
        assert_eq!(
            res.text().await.unwrap(),
            std::fs::read_to_string(file).unwrap(),
            "{short}: byte for byte, field order kept"
        );
    }
    let other = s
        .api(Method::GET, "/catalog/adaptors/http/schema?version=0.0.1")
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 404, "no such version");
    let status = s.get_json("/catalog").await;
    assert_eq!(status["counts"]["offered"], 4, "{status}");
    assert!(status["source"].as_str().unwrap().starts_with("local "));
}

/// Runs `sluice catalog refresh` with `args`; exit status, standard output and error.
fn catalog_refresh(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["catalog", "refresh"])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn catalog_refresh_prints_what_changed_and_its_exit_status_tells_the_outcome() {
    let data = TempDir::new();
    let dir = fixtures();
    let ledger = ["--data-dir", data.path().to_str().unwrap()];
    let local = ["--catalog-dir", dir.to_str().unwrap()];
    let (code, out, err) = catalog_refresh(&[&ledger[..], &local[..]].concat());
    assert_eq!(code, 0, "{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["added"].as_array().unwrap().len(), 4, "{report}");

    // Again: nothing changed.
    let (code, out, _) = catalog_refresh(&[&ledger[..], &local[..]].concat());
    assert_eq!(code, 0);
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["added"], json!([]));
    assert_eq!(report["updated"], json!([]));

    // One package that is not there: 1, and why.
    let one = ["--package", "nope"];
    let (code, _, err) = catalog_refresh(&[&ledger[..], &local[..], &one[..]].concat());
    assert_eq!(code, 1);
    assert!(err.contains("no such adaptor upstream"), "{err}");

    // A server on that ledger sees what the command stored.
    let data = Arc::new(data);
    let s = Sluice::start_in(data.clone(), &local).await;
    let list = s.get_json("/catalog/adaptors").await;
    assert_eq!(list["items"].as_array().unwrap().len(), 4);

    // And, running, what the command stores next (a SQLite ledger has no change feed between
    // processes: the server looks for new refreshes every few seconds).
    let own = TempDir::new();
    let pkg = own.path().join("packages/extra");
    std::fs::create_dir_all(&pkg).unwrap();
    let manifest = json!({"name": "@openfn/language-extra", "version": "1.0.0"});
    std::fs::write(pkg.join("package.json"), manifest.to_string()).unwrap();
    std::fs::write(
        pkg.join("configuration-schema.json"),
        r#"{"type": "object"}"#,
    )
    .unwrap();
    let both = format!("{},{}", own.path().display(), dir.display());
    let args: Vec<String> = [
        "--data-dir",
        data.path().to_str().unwrap(),
        "--catalog-dir",
        &both,
    ]
    .map(String::from)
    .to_vec();
    let (code, _, err) = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        catalog_refresh(&args)
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{err}");
    let began = std::time::Instant::now();
    while s.get_json("/catalog").await["counts"]["adaptors"] != 5 {
        assert!(
            began.elapsed() < std::time::Duration::from_secs(12),
            "the running server never saw the command's refresh"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn catalog_refresh_leaves_the_work_to_a_serving_leader_with_status_3() {
    let Some(db) = common::postgres::TestDatabase::create("sluice_catalog_cli").await else {
        return;
    };
    let s = Sluice::start_on(Arc::new(TempDir::new()), Some(&db.url), &[]).await;
    // Wait until the server leads.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while s.get_json("/catalog").await["leading"] != true {
        assert!(
            std::time::Instant::now() < deadline,
            "the server never leads"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let data = TempDir::new();
    let dir = fixtures();
    let args = [
        "--data-dir",
        data.path().to_str().unwrap(),
        "--database-url",
        &db.url,
        "--catalog-dir",
        dir.to_str().unwrap(),
    ];
    let (code, out, err) = catalog_refresh(&args);
    assert_eq!(code, 3, "{out}{err}");
    assert!(err.contains("another node leads"), "{err}");
    let status = s.get_json("/catalog").await;
    assert_eq!(status["refreshes"], json!([]), "nothing was done");
    drop(s);
    db.drop().await;
}
