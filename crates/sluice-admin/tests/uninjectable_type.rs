//! Credential types come from the adaptor catalogue: an adaptor whose schema has no injection
//! rule lets such credentials be stored, but no channel may use one
//! (422 `unsupported_credential_schema`). Runs the real API router over a real SQLite ledger.

use std::sync::Arc;

use axum::body::Body;
use http::{Request, StatusCode};
use serde_json::{json, Value};
use sluice_admin::catalog::{Catalog, CatalogConfig, Cause};
use sluice_admin::prometheus::Metrics;
use sluice_admin::AdminState;
use sluice_catalog::LocalStrategy;
use sluice_core::keyring::generate_key;
use sluice_health::{Validator, ValidatorConfig};
use sluice_store::{Role, Secrets, Store, StoreOptions};
use tower::ServiceExt;

/// A local catalogue directory holding `mailchimp`, whose credential is an `apiKey` sluice
/// cannot inject.
fn mailchimp_catalogue(dir: &std::path::Path) {
    let pkg = dir.join("packages/mailchimp");
    std::fs::create_dir_all(&pkg).unwrap();
    let manifest = json!({"name": "@openfn/language-mailchimp", "version": "1.0.0"});
    std::fs::write(pkg.join("package.json"), manifest.to_string()).unwrap();
    let schema = json!({
        "properties": {
            "apiKey": {"type": "string", "writeOnly": true},
            "username": {"type": "string"}
        },
        "type": "object",
        "required": ["apiKey"]
    });
    std::fs::write(pkg.join("configuration-schema.json"), schema.to_string()).unwrap();
}

async fn send(
    app: &axum::Router,
    token: &str,
    method: &str,
    path: &str,
    body: Value,
) -> (StatusCode, Value) {
    let req = Request::builder()
        .method(method)
        .uri(format!("/api/v1{path}"))
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn a_credential_without_an_injection_rule_cannot_be_attached_to_a_channel() {
    let dir = std::env::temp_dir().join(format!("sluice-admin-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let store = Store::connect(
        &format!("sqlite://{}/ledger.db", dir.display()),
        &StoreOptions::default(),
    )
    .await
    .unwrap();
    store.migrate().await.unwrap();
    let store = store.with_secrets(Arc::new(Secrets::given(&generate_key()).unwrap()));
    let project = store.ensure_default_project().await.unwrap();
    let (_, token) = store.create_api_token("t", Role::Admin).await.unwrap();
    mailchimp_catalogue(&dir);
    let catalog = Catalog::start(
        store.clone(),
        Arc::new(LocalStrategy::new(vec![dir.clone()])),
        CatalogConfig {
            source: "local".into(),
            refresh_interval: std::time::Duration::ZERO,
            node: "test".into(),
            icon_dir: dir.join("adaptor-icons"),
            wait: std::time::Duration::from_secs(5),
        },
        None,
        tokio::sync::watch::channel(true).1,
    )
    .await
    .unwrap();
    let report = catalog.refresh(Cause::Api, None).await.unwrap();
    assert_eq!(report.added, ["@openfn/language-mailchimp"]);
    assert!(!catalog.schema("mailchimp").unwrap().has_injection_rule());
    let (events, _writer) = sluice_store::EventLog::start(store.clone(), 16)
        .await
        .unwrap();
    let app = sluice_admin::router(AdminState {
        store: store.clone(),
        events,
        setting_defaults: sluice_admin::settings::SettingDefaults {
            health_interval: std::time::Duration::ZERO,
            stale_threshold_days: 7,
            event_retention_days: 30,
        },
        public_url: "http://sluice.test".into(),
        own_addresses: Default::default(),
        default_project: project.id,
        metrics: Metrics::with_recorder().0,
        validator: Validator::new(ValidatorConfig::default()),
        catalog,
        auth: Default::default(),
        throttle: Default::default(),
    });

    let (st, e) = send(
        &app,
        &token,
        "POST",
        "/credentials",
        json!({"name": "m", "schema": "mailchimp", "body": {"username": "u"}}),
    )
    .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(e["details"]["fields"]["body.apiKey"].is_string(), "{e}");
    let (st, c) = send(&app, &token, "POST", "/credentials", json!({"name": "m", "schema": "mailchimp", "body": {"apiKey": "mc-secret", "username": "u"}})).await;
    assert_eq!(st, StatusCode::CREATED, "{c}");
    assert_eq!(c["secret_fields"], json!(["apiKey"]));
    assert!(!c.to_string().contains("mc-secret"));

    let (st, e) = send(
        &app,
        &token,
        "POST",
        "/channels",
        json!({"name": "ch", "sink_url": "http://127.0.0.1:9/", "sink_credential_id": c["id"]}),
    )
    .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    let why = e["details"]["fields"]["sink_credential_id"]
        .as_str()
        .unwrap();
    assert!(why.starts_with("unsupported_credential_schema"), "{why}");
    store.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}
