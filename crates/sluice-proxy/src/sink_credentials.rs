//! Sink credentials on the hot path (PRODUCT.md §2 step 4): the `Authorization` value of a
//! channel's credential, from opened credentials kept in memory, with OAuth tokens refreshed
//! once per credential however many requests wait for it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::HeaderValue;
use parking_lot::RwLock;
use serde_json::{json, Value};
use sluice_core::sink_auth::{field, injection, usable_access_token, Injection};
use sluice_core::ExchangeError;
use sluice_store::{Change, Credential, EventLog, Severity, Source, Store};
use uuid::Uuid;

/// A token is refreshed this long before it expires.
const EXPIRY_MARGIN_S: i64 = 30;
/// Lifetime assumed when a token endpoint does not say (`expires_in` absent).
const DEFAULT_EXPIRES_IN_S: i64 = 3600;
/// How long a failed refresh is remembered before the token endpoint is asked again (a change
/// to the credential retries at once: it is a new version).
const FAILURE_BACKOFF: Duration = Duration::from_secs(5);
/// Longest wait for a token endpoint.
const TOKEN_TIMEOUT: Duration = Duration::from_secs(10);

fn fail(code: &str) -> ExchangeError {
    ExchangeError::Credential(code.to_string())
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn bearer(token: &str) -> Result<HeaderValue, ExchangeError> {
    HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|_| fail("credential_missing_auth_fields"))
}

/// Reports a credential its token endpoint refused (400/401): an operator must authorize it
/// again. A `warn` entry (source `auth`) in the event log, or a log line without one.
fn on_reauthorization_required(events: Option<&EventLog>, credential_id: Uuid, status: u16) {
    let message = "oauth_reauthorization_required: the token endpoint refused the credential";
    match events {
        Some(ev) => {
            ev.emit(
                Severity::Warn,
                Source::Auth,
                None,
                message,
                json!({ "credential_id": credential_id, "token_endpoint_status": status }),
            );
        }
        None => tracing::warn!(credential = %credential_id, status, "{message}"),
    }
}

/// The form posted to the token endpoint: a refresh_token grant when a refresh token is held,
/// else client_credentials; client id and secret ride in the body (`client_secret_post`).
fn token_request_form(body: &Value) -> Result<String, ExchangeError> {
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    if let Some(rt) = field(body, "refresh_token") {
        form.append_pair("grant_type", "refresh_token");
        form.append_pair("refresh_token", rt);
    } else if field(body, "client_id").is_some() && field(body, "client_secret").is_some() {
        form.append_pair("grant_type", "client_credentials");
        if let Some(scope) = field(body, "scope") {
            form.append_pair("scope", scope);
        }
    } else {
        return Err(fail("credential_missing_auth_fields"));
    }
    for name in ["client_id", "client_secret"] {
        if let Some(v) = field(body, name) {
            form.append_pair(name, v);
        }
    }
    Ok(form.finish())
}

/// A token obtained by a refresh.
#[derive(Clone)]
struct Token {
    header: HeaderValue,
    valid_until: Instant,
}

struct ByValidity;

impl moka::Expiry<(Uuid, i64), Refreshed> for ByValidity {
    fn expire_after_create(
        &self,
        _key: &(Uuid, i64),
        value: &Refreshed,
        now: Instant,
    ) -> Option<Duration> {
        Some(match value {
            Ok(t) => t.valid_until.saturating_duration_since(now),
            Err(_) => FAILURE_BACKOFF,
        })
    }
}

/// The outcome of one refresh, shared by every request that waited for it.
type Refreshed = Result<Token, ExchangeError>;

/// Opened credentials by id, and refreshed OAuth tokens by credential id and version.
pub struct SinkCredentials {
    store: Store,
    opened: RwLock<HashMap<Uuid, Arc<Credential>>>,
    generation: AtomicU64,
    tokens: moka::future::Cache<(Uuid, i64), Refreshed>,
    http: reqwest::Client,
    events: Option<EventLog>,
    egress: Arc<sluice_core::egress::EgressPolicy>,
}

impl SinkCredentials {
    /// Credentials read from `store`, forgotten when its change feed says they changed;
    /// refused OAuth credentials are reported to `events`.
    pub fn new(
        store: Store,
        events: Option<EventLog>,
        egress: Arc<sluice_core::egress::EgressPolicy>,
    ) -> Arc<Self> {
        let me = Arc::new(Self {
            opened: RwLock::new(HashMap::new()),
            generation: AtomicU64::new(0),
            tokens: moka::future::Cache::builder()
                .max_capacity(10_000)
                .expire_after(ByValidity)
                .build(),
            http: reqwest::Client::builder()
                .timeout(TOKEN_TIMEOUT)
                .dns_resolver(Arc::new(sluice_health::egress::PolicyResolver(
                    egress.clone(),
                )))
                .build()
                .expect("building the token endpoint client"),
            store: store.clone(),
            events,
            egress,
        });
        store.on_change(&me, forget_on_change);
        me
    }

    async fn credential(&self, id: Uuid) -> Result<Arc<Credential>, ExchangeError> {
        if let Some(c) = self.opened.read().get(&id) {
            return Ok(c.clone());
        }
        let generation = self.generation.load(Ordering::Acquire);
        let c = match self.store.get_credential(id).await {
            Ok(Some(c)) => Arc::new(c),
            Ok(None) => return Err(fail("credential_not_found")),
            Err(e) => {
                tracing::error!(credential = %id, error = %e, "credential could not be read");
                return Err(fail("credential_not_found"));
            }
        };
        let mut map = self.opened.write();
        // A change that arrived while loading makes this copy stale: use it, don't keep it.
        if self.generation.load(Ordering::Acquire) == generation {
            map.insert(id, c.clone());
        }
        Ok(c)
    }

    /// The `Authorization` value to send with credential `id`.
    pub async fn authorization(&self, id: Uuid) -> Result<HeaderValue, ExchangeError> {
        let c = self.credential(id).await?;
        match injection(&c.schema, &c.body)? {
            Injection::Header(h) => {
                HeaderValue::from_str(&h).map_err(|_| fail("credential_missing_auth_fields"))
            }
            Injection::OAuth => {
                if let Some(t) = usable_access_token(&c.body, unix_now(), EXPIRY_MARGIN_S) {
                    return bearer(t);
                }
                // One refresh per credential version: concurrent callers wait for the same one,
                // and a failure is shared for a few seconds instead of hammering the endpoint.
                self.tokens
                    .get_with((c.id, c.version), self.refresh(c.clone()))
                    .await
                    .map(|t| t.header)
            }
        }
    }

    /// Obtains a new access token at `token_url` and stores it (sealed) with the credential.
    async fn refresh(&self, c: Arc<Credential>) -> Result<Token, ExchangeError> {
        let body = &c.body;
        let token_url =
            field(body, "token_url").ok_or_else(|| fail("credential_missing_auth_fields"))?;
        let form = token_request_form(body)?;
        let denied = reqwest::Url::parse(token_url)
            .ok()
            .and_then(|u| sluice_health::egress::check_literal(&self.egress, &u).err());
        if let Some(denied) = denied {
            tracing::warn!(credential = %c.id, error = %denied, "token endpoint refused");
            return Err(ExchangeError::EgressDenied);
        }
        let res = self
            .http
            .post(token_url)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json")
            .body(form)
            .send()
            .await
            .map_err(|e| {
                tracing::warn!(credential = %c.id, error = %e, "token endpoint unreachable");
                match ExchangeError::classify(&e, true) {
                    ExchangeError::EgressDenied => ExchangeError::EgressDenied,
                    _ => fail("oauth_refresh_failed"),
                }
            })?;
        let status = res.status().as_u16();
        if status == 400 || status == 401 {
            on_reauthorization_required(self.events.as_ref(), c.id, status);
            return Err(fail("oauth_reauthorization_required"));
        }
        if !res.status().is_success() {
            tracing::warn!(credential = %c.id, status, "token endpoint failed");
            return Err(fail("oauth_refresh_failed"));
        }
        let doc: Value = res.json().await.map_err(|_| fail("oauth_refresh_failed"))?;
        let access = field(&doc, "access_token").ok_or_else(|| fail("oauth_refresh_failed"))?;
        let expires_in = doc
            .get("expires_in")
            .and_then(Value::as_i64)
            .unwrap_or(DEFAULT_EXPIRES_IN_S)
            .max(0);
        let mut next = (*c).clone();
        let obj = next
            .body
            .as_object_mut()
            .expect("stored bodies are objects");
        obj.insert("access_token".into(), access.into());
        obj.insert("expires_at".into(), (unix_now() + expires_in).into());
        if let Some(rt) = field(&doc, "refresh_token") {
            obj.insert("refresh_token".into(), rt.into());
        }
        match self.store.store_refreshed_credential(&next).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::info!(credential = %c.id, "credential changed during a refresh; its new token is used once")
            }
            Err(e) => tracing::error!(credential = %c.id, error = %e, "refreshed token not stored"),
        }
        let lifetime = Duration::from_secs((expires_in - EXPIRY_MARGIN_S).max(0) as u64);
        Ok(Token {
            header: bearer(access)?,
            valid_until: Instant::now() + lifetime,
        })
    }

    fn forget(&self, id: Option<Uuid>) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        let mut map = self.opened.write();
        match id {
            Some(id) => {
                map.remove(&id);
            }
            None => map.clear(),
        }
    }
}

/// Forgets the credentials a configuration change makes stale.
fn forget_on_change(me: &SinkCredentials, change: Change) {
    match change {
        Change::Credential(id) => me.forget(Some(id)),
        Change::Unknown => me.forget(None),
        Change::Channel(_)
        | Change::AuthMethod(_)
        | Change::Settings
        | Change::Project(_)
        | Change::Catalog => {}
    }
}
