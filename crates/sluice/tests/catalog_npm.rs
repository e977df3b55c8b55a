//! The adaptor catalogue over the npm strategy, against a fake registry, schema CDN and raw-file
//! host on loopback (built from the fixtures; it counts calls by path): first load, diff-driven
//! refresh, conditional icons, a mirror without search, an upstream that is down, an empty
//! listing, a package removed upstream, and two nodes on one PostgreSQL ledger.

mod common;
#[path = "../../sluice-catalog/tests/support/fake.rs"]
mod fake;
#[path = "../../sluice-catalog/tests/support/fixtures.rs"]
mod fixtures;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::postgres::TestDatabase;
use common::{Sluice, TempDir};
use fake::Fake;
use reqwest::Method;
use serde_json::{json, Value};

const HTTP: &str = "@openfn/language-http";
const SHEETS: &str = "@openfn/language-googlesheets";

/// `serve` flags for the fake's registry, CDN and raw files.
fn npm_flags(fake: &Fake) -> Vec<String> {
    let url = &fake.url;
    [
        "--catalog-registry-url",
        url,
        "--catalog-schema-url",
        &format!("{url}/cdn/npm/{{name}}@{{version}}/configuration-schema.json"),
        "--catalog-icons-url",
        &format!("{url}/raw"),
    ]
    .map(String::from)
    .to_vec()
}

async fn start(fake: &Fake, extra: &[&str]) -> Sluice {
    start_on(fake, None, extra).await
}

async fn start_on(fake: &Fake, database_url: Option<&str>, extra: &[&str]) -> Sluice {
    let mut flags = npm_flags(fake);
    flags.extend(extra.iter().map(|s| s.to_string()));
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    Sluice::start_on(Arc::new(TempDir::new()), database_url, &flags).await
}

/// `POST /catalog/refresh` with `body`: status and JSON.
async fn refresh(s: &Sluice, body: Value) -> (u16, Value) {
    let res = s
        .api(Method::POST, "/catalog/refresh")
        .json(&body)
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.json().await.unwrap())
}

async fn refreshed(s: &Sluice) -> Value {
    let (status, report) = refresh(s, json!({})).await;
    assert_eq!(status, 200, "{report}");
    report
}

fn names(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap().to_string())
        .collect()
}

/// Requests the fake received under `prefix`.
fn calls_under(fake: &Fake, prefix: &str) -> usize {
    fake.calls(|p| p.starts_with(prefix))
}

/// The icon files in a node's data directory, with their modification times.
fn icon_files(s: &Sluice) -> Vec<(String, std::time::SystemTime)> {
    let dir = s.data.path().join("adaptor-icons");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map(|d| {
            d.map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().to_string_lossy().into_owned(),
                    e.metadata().unwrap().modified().unwrap(),
                )
            })
            .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

#[tokio::test]
async fn first_load_fills_the_ledger_and_a_bump_fetches_only_that_package() {
    let fake = Fake::start().await;
    let s = start(&fake, &[]).await;
    let report = refreshed(&s).await;
    assert_eq!(report["added"].as_array().unwrap().len(), 108, "{report}");
    assert_eq!(report["failed"], json!({}), "{report}");
    assert_eq!(
        report["icons"],
        json!([format!("{HTTP}/rectangle"), format!("{HTTP}/square")])
    );

    // The ledger is plain SQL.
    let db = s.data.path().join("sluice.db");
    let count = std::process::Command::new("sqlite3")
        .arg(&db)
        .arg("SELECT count(*) FROM adaptors WHERE hidden_at IS NULL")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&count.stdout).trim(), "108");

    let list = s.get_json("/catalog/adaptors").await;
    assert_eq!(names(&list).len(), 108);
    let http = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == HTTP)
        .unwrap()
        .clone();
    assert_eq!(http["type"], "http");
    assert_eq!(http["has_schema"], true);
    let square = http["icons"]["square"].as_str().unwrap();
    assert!(square.starts_with("/adaptors/icons/http/square-") && square.ends_with(".png"));
    let icon = s.http().get(s.url(square)).send().await.unwrap();
    assert_eq!(icon.status(), 200);
    assert_eq!(&icon.bytes().await.unwrap()[..], &fixtures::png()[..]);
    let beyonic = s.get_json("/catalog/adaptors/beyonic").await;
    assert_eq!(beyonic["deprecated"], "Beyonic has shut down");
    assert_eq!(beyonic["versions"].as_array().unwrap().len(), 2);

    // Steady state: one listing call, icons revalidated with 304, nothing written.
    let files = icon_files(&s);
    assert_eq!(files.len(), 2, "{files:?}");
    fake.reset_calls();
    let report = refreshed(&s).await;
    assert!(
        ["added", "updated", "hidden", "icons"]
            .iter()
            .all(|k| report[k] == json!([])),
        "{report}"
    );
    assert_eq!(fake.calls(|_| true) - calls_under(&fake, "/raw/"), 1);
    assert_eq!(fake.calls(|p| p == "/-/v1/search"), 1);
    assert_eq!(fake.not_modified(), 2, "both icons answered 304");
    assert_eq!(icon_files(&s), files, "no icon written");

    // A new version of one package: only it is fetched.
    let schema = br#"{"properties": {"zeta": {"type": "string"}, "alpha": {"type": "string"}}, "type": "object"}"#;
    fake.bump(HTTP, "9.0.0", Some(schema));
    fake.reset_calls();
    let report = refreshed(&s).await;
    assert_eq!(report["updated"], json!([HTTP]), "{report}");
    let packuments = fake.calls(|p| p.starts_with("/@openfn%2f"));
    assert_eq!(packuments, 1, "one packument read");
    assert_eq!(fake.calls(|p| p == "/@openfn%2flanguage-http"), 1);
    assert_eq!(calls_under(&fake, "/cdn/"), 1, "one schema read");
    let text = s
        .api(Method::GET, "/catalog/adaptors/http/schema")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(text.as_bytes(), schema, "byte for byte, field order kept");
    let got = s.get_json("/catalog/adaptors/http").await;
    assert_eq!(got["latest"], "9.0.0");

    // The credential form follows the new schema at once.
    let (status, problem) = s
        .create_credential(json!({"name": "h", "schema": "http", "body": {"zeta": 5}}))
        .await;
    assert_eq!(status, 422, "{problem}");
    assert!(
        problem["details"]["fields"]["body.zeta"].is_string(),
        "{problem}"
    );

    // Metrics tell calls, refresh time and cache use.
    let metrics = s.metrics_text().await;
    for name in [
        "sluice_catalog_refresh_seconds",
        "sluice_catalog_upstream_calls_total{kind=\"icon\",outcome=\"not_modified\"}",
        "sluice_catalog_upstream_calls_total{kind=\"list\",outcome=\"ok\"}",
        "sluice_catalog_cache_total",
    ] {
        assert!(metrics.contains(name), "{name} missing");
    }
}

#[tokio::test]
async fn a_registry_without_search_is_read_through_the_package_list() {
    let fake = Fake::start().await;
    fake.switches().search_off = true;
    let list = format!("{HTTP},{SHEETS}");
    let s = start(&fake, &["--catalog-packages", &list]).await;
    let report = refreshed(&s).await;
    assert_eq!(report["added"], json!([SHEETS, HTTP]), "{report}");
    assert_eq!(
        names(&s.get_json("/catalog/adaptors").await),
        [SHEETS, HTTP]
    );
    // A list tells no version: each packument is read, and nothing changes.
    fake.reset_calls();
    let report = refreshed(&s).await;
    assert_eq!(report["updated"], json!([]), "{report}");
    assert_eq!(fake.calls(|p| p.starts_with("/@openfn%2f")), 2);
    assert_eq!(calls_under(&fake, "/cdn/"), 0, "schemas are not read again");
}

#[tokio::test]
async fn with_the_registry_down_sluice_starts_and_the_first_read_times_out_cleanly() {
    let fake = Fake::start().await;
    fake.switches().delay = Duration::from_secs(4);
    let s = start(&fake, &["--catalog-wait", "1s"]).await;
    let began = Instant::now();
    let res = s
        .api(Method::GET, "/catalog/adaptors")
        .send()
        .await
        .unwrap();
    let waited = began.elapsed();
    assert_eq!(res.status(), 503);
    let body: Value = res.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("did not load within"),
        "{body}"
    );
    assert!(waited < Duration::from_secs(3), "answered in {waited:?}");
    // The proxy and the rest of the API work meanwhile.
    assert_eq!(s.get_json("/channels").await["items"], json!([]));

    fake.switches().delay = Duration::ZERO;
    let report = refreshed(&s).await;
    assert_eq!(report["failed"], json!({}), "{report}");
    let list = s.get_json("/catalog/adaptors").await;
    assert_eq!(names(&list).len(), 108);
}

#[tokio::test]
async fn an_empty_or_failed_listing_changes_nothing() {
    let fake = Fake::start().await;
    let s = start(&fake, &[]).await;
    refreshed(&s).await;
    fake.switches().empty_listing = true;
    let (status, body) = refresh(&s, json!({})).await;
    assert_eq!(status, 502, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("no adaptor"),
        "{body}"
    );
    fake.switches().empty_listing = false;
    fake.switches().down = true;
    let (status, body) = refresh(&s, json!({})).await;
    assert_eq!(status, 502, "{body}");
    assert!(body["error"].as_str().unwrap().contains("503"), "{body}");
    assert_eq!(names(&s.get_json("/catalog/adaptors").await).len(), 108);

    // Both failures are on the catalogue's state and in the event log.
    let status = s.get_json("/catalog").await;
    let refreshes = status["refreshes"].as_array().unwrap();
    assert_eq!(
        refreshes
            .iter()
            .map(|r| r["ok"].clone())
            .collect::<Vec<_>>(),
        [json!(false), json!(false), json!(true)]
    );
    assert_eq!(status["counts"]["adaptors"], 108);
    let events = s.get_json("/events?source=catalog").await;
    let failures = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["severity"] == "error")
        .count();
    assert_eq!(failures, 2, "{events}");
}

#[tokio::test]
async fn a_package_removed_upstream_is_hidden_but_its_schema_still_resolves() {
    let fake = Fake::start().await;
    let s = start(&fake, &[]).await;
    refreshed(&s).await;
    let (status, made) = s
        .create_credential(
            json!({"name": "sheets", "schema": "googlesheets", "body": {"access_token": "ya29.x"}}),
        )
        .await;
    assert_eq!(status, 201, "{made}");

    fake.remove(SHEETS);
    let report = refreshed(&s).await;
    assert_eq!(report["hidden"], json!([SHEETS]), "{report}");
    assert!(!names(&s.get_json("/catalog/adaptors").await).contains(&SHEETS.to_string()));
    let all = s.get_json("/catalog/adaptors?hidden=true").await;
    let sheets = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == SHEETS)
        .unwrap()
        .clone();
    assert_eq!(sheets["hidden"], true);
    let schema = s
        .api(Method::GET, "/catalog/adaptors/googlesheets/schema")
        .send()
        .await
        .unwrap();
    assert_eq!(schema.status(), 200);
    assert_eq!(
        schema.text().await.unwrap(),
        fixtures::fixture_schema("googlesheets")
    );
    // The credential keeps its type, and its schema still validates changes.
    let id = made["id"].as_str().unwrap();
    let res = s
        .api(Method::PATCH, &format!("/credentials/{id}"))
        .json(&json!({"body": {"access_token": ""}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 422, "{}", res.text().await.unwrap());
    // The type picker no longer offers it.
    let (status, problem) = s
        .create_credential(json!({"name": "x", "schema": "nope", "body": {}}))
        .await;
    assert_eq!(status, 422);
    let known = problem["details"]["fields"]["schema"].as_str().unwrap();
    assert!(
        !known.contains("googlesheets") && known.contains("dhis2"),
        "{known}"
    );
}

#[tokio::test]
async fn refreshing_one_package_reads_it_whatever_its_version_and_names_unknown_ones() {
    let fake = Fake::start().await;
    let s = start(&fake, &[]).await;
    refreshed(&s).await;
    fake.reset_calls();
    let (status, report) = refresh(&s, json!({"package": "dhis2"})).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["listed"], 1);
    assert_eq!(fake.calls(|p| p.starts_with("/@openfn%2f")), 1);
    assert_eq!(fake.calls(|p| p == "/-/v1/search"), 0);
    let (status, problem) = refresh(&s, json!({"package": "no-such-thing"})).await;
    assert_eq!(status, 422, "{problem}");
    assert!(
        problem["details"]["fields"]["package"].is_string(),
        "{problem}"
    );
}

#[tokio::test]
async fn two_nodes_on_postgres_one_refreshes_and_the_other_sees_it_within_a_second() {
    let Some(db) = TestDatabase::create("sluice_catalog").await else {
        return;
    };
    let fake = Fake::start().await;
    let a = start_on(&fake, Some(&db.url), &[]).await;
    let b = start_on(&fake, Some(&db.url), &[]).await;
    // One of them leads within a couple of seconds.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (leader, other) = loop {
        let (la, lb) = (
            a.get_json("/catalog").await["leading"] == true,
            b.get_json("/catalog").await["leading"] == true,
        );
        assert!(!(la && lb), "two leaders");
        match (la, lb) {
            (true, _) => break (&a, &b),
            (_, true) => break (&b, &a),
            _ => {}
        }
        assert!(Instant::now() < deadline, "no leader");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let (status, body) = refresh(other, json!({})).await;
    assert_eq!(status, 409, "{body}");
    refreshed(leader).await;
    let seen_by_other = || async { names(&other.get_json("/catalog/adaptors").await).len() };
    assert_eq!(seen_by_other().await, 108);

    fake.remove(SHEETS);
    refreshed(leader).await;
    let changed = Instant::now();
    while names(&other.get_json("/catalog/adaptors").await).contains(&SHEETS.to_string()) {
        assert!(
            changed.elapsed() < Duration::from_secs(1),
            "the other node still lists a hidden adaptor"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The other node serves the leader's icon, fetched for itself on first read.
    let http = other.get_json("/catalog/adaptors/http").await;
    let square = http["icons"]["square"].as_str().unwrap().to_string();
    let icon = other.http().get(other.url(&square)).send().await.unwrap();
    assert_eq!(icon.status(), 200);
    assert_eq!(&icon.bytes().await.unwrap()[..], &fixtures::png()[..]);
    drop((a, b));
    db.drop().await;
}

#[tokio::test]
async fn the_interval_refresh_is_due_at_the_last_one_plus_the_interval_across_restarts() {
    let fake = Fake::start().await;
    let data = Arc::new(TempDir::new());
    let mut flags = npm_flags(&fake);
    flags.extend(["--catalog-refresh-interval", "1h"].map(String::from));
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();

    // A ledger never refreshed: the first tick is due at once.
    let s = Sluice::start_in(data.clone(), &flags).await;
    let began = Instant::now();
    while s.get_json("/catalog").await["refreshes"] == json!([]) {
        assert!(
            began.elapsed() < Duration::from_secs(10),
            "no refresh at start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = s.get_json("/catalog").await;
    assert_eq!(status["refreshes"][0]["cause"], "interval");
    drop(s);

    // Restarted a moment later: the next tick is an hour after that one, not now.
    fake.reset_calls();
    let s = Sluice::start_in(data, &flags).await;
    assert_eq!(
        names(&s.get_json("/catalog/adaptors").await).len(),
        108,
        "warm from the ledger"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(fake.calls(|_| true), 0, "nothing fetched after the restart");
    assert_eq!(
        s.get_json("/catalog").await["refreshes"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn an_unreachable_icon_host_fails_the_icons_not_the_packages() {
    let fake = Fake::start().await;
    let mut flags = npm_flags(&fake);
    let icons = flags
        .iter()
        .position(|f| f == "--catalog-icons-url")
        .unwrap();
    flags[icons + 1] = common::CLOSED_PORT.to_string();
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let s = Sluice::start_in(Arc::new(TempDir::new()), &flags).await;
    let report = refreshed(&s).await;
    assert_eq!(report["added"].as_array().unwrap().len(), 108, "{report}");
    let failed = report["failed"].as_object().unwrap();
    assert_eq!(failed.len(), 216, "each package's two icons");
    assert!(failed.contains_key(&format!("{HTTP}/square")));
    assert!(failed[&format!("{HTTP}/square")]
        .as_str()
        .unwrap()
        .contains("127.0.0.1:9"));
    assert_eq!(s.get_json("/catalog").await["counts"]["offered"], json!(4));
}
