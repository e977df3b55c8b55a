//! Source authentication on the hot path (PRODUCT.md §2 step 2) and the outbound scrub of the
//! caller's source credentials (§2 step 6).
//!
//! Api keys cost one SHA-256 and constant-time compares. Basic costs one argon2 verification
//! (on the blocking pool) the first time; after that a digest of what was presented and the
//! method admits in microseconds. A refused Basic credential is remembered too, so a caller
//! retrying with a wrong password (a misconfigured client in a retry loop, or an attacker
//! replaying one guess) costs a lookup, not an argon2 run each time; and at most one argon2 run
//! per core is in flight, so distinct guesses queue instead of taking every core. Both caches are
//! emptied whenever an auth method changes.

use sluice_core::reflected::Reflected;
use std::sync::Arc;
use std::time::Duration;

use http::header::{HeaderName, AUTHORIZATION};
use http::{HeaderMap, HeaderValue};
use sha2::{Digest, Sha256};
use sluice_core::source_auth::{
    api_key_digest, ct_eq, parse_basic, verify_password, AuthKind, AuthMethod,
};
use sluice_store::{Change, Store};
use uuid::Uuid;

static X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");

/// How long a verified Basic credential is trusted without a new argon2 run.
const VERIFIED_TTL: Duration = Duration::from_secs(15 * 60);
/// Most verified credentials remembered.
const VERIFIED_CAPACITY: u64 = 100_000;
/// How long a refused Basic credential is answered from memory.
const REFUSED_TTL: Duration = Duration::from_secs(5 * 60);
/// Most refused credentials remembered.
const REFUSED_CAPACITY: u64 = 100_000;

/// The decision for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The channel has no auth methods.
    Public,
    /// This method admitted the caller.
    Admitted(Uuid, AuthKind),
    /// Nothing was presented: 401.
    Unauthorized,
    /// Something was presented and matched nothing: 404 (the channel stays hidden).
    Hidden,
}

/// Checks callers against a channel's auth methods.
pub struct Gate {
    verified: moka::sync::Cache<[u8; 32], ()>,
    refused: moka::sync::Cache<[u8; 32], ()>,
    password_checks: tokio::sync::Semaphore,
}

/// The kinds of source credential a caller presented (`api_key`, `basic`), never their values:
/// what the event log says about failed attempts.
pub fn presented_kinds(headers: &HeaderMap) -> Vec<&'static str> {
    let mut kinds = Vec::new();
    if headers.contains_key(&X_API_KEY) {
        kinds.push("api_key");
    }
    if headers.get(AUTHORIZATION).is_some_and(is_basic) {
        kinds.push("basic");
    }
    kinds
}

fn is_basic(v: &HeaderValue) -> bool {
    v.as_bytes().len() > 6 && v.as_bytes()[..6].eq_ignore_ascii_case(b"basic ")
}

/// The cache key of a Basic credential refused by a set of methods.
fn refused_key<'a>(methods: impl Iterator<Item = &'a AuthMethod>, presented: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    for m in methods {
        h.update(m.id.as_bytes());
    }
    h.update(b"|");
    h.update(presented);
    h.finalize().into()
}

/// The cache key of a Basic credential presented to one method.
fn verified_key(method: Uuid, presented: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(method.as_bytes());
    h.update(presented);
    h.finalize().into()
}

impl Gate {
    /// A gate whose cache follows the store's change feed.
    pub fn new(store: &Store) -> Arc<Self> {
        let gate = Arc::new(Self {
            verified: moka::sync::Cache::builder()
                .max_capacity(VERIFIED_CAPACITY)
                .time_to_live(VERIFIED_TTL)
                .build(),
            refused: moka::sync::Cache::builder()
                .max_capacity(REFUSED_CAPACITY)
                .time_to_live(REFUSED_TTL)
                .build(),
            password_checks: tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(1, |n| n.get()),
            ),
        });
        store.on_change(&gate, forget_on_change);
        gate
    }

    /// Decides whether the caller presenting `headers` may use a channel with `methods`.
    pub async fn check(&self, methods: &[AuthMethod], headers: &HeaderMap) -> Verdict {
        if methods.is_empty() {
            return Verdict::Public;
        }
        let api_key = headers.get(&X_API_KEY);
        let basic = headers.get(AUTHORIZATION).filter(|v| is_basic(v));
        if api_key.is_none() && basic.is_none() {
            return Verdict::Unauthorized;
        }
        if let Some(key) = api_key {
            let digest = api_key_digest(key.as_bytes());
            if let Some(m) = methods.iter().find(|m| {
                m.kind == AuthKind::ApiKey && ct_eq(digest.as_bytes(), m.secret_hash.as_bytes())
            }) {
                return Verdict::Admitted(m.id, m.kind);
            }
        }
        let Some(basic) = basic else {
            return Verdict::Hidden;
        };
        let basics = || methods.iter().filter(|m| m.kind == AuthKind::Basic);
        for m in basics() {
            if self
                .verified
                .contains_key(&verified_key(m.id, basic.as_bytes()))
            {
                return Verdict::Admitted(m.id, m.kind);
            }
        }
        let refused = refused_key(basics(), basic.as_bytes());
        if self.refused.contains_key(&refused) {
            return Verdict::Hidden;
        }
        let Some((user, password)) = parse_basic(basic.as_bytes()) else {
            return Verdict::Hidden;
        };
        // The password is checked against every method whose username matches; with none it
        // is checked against another method anyway, so the answer takes as long and does not
        // tell which usernames exist.
        let named =
            |m: &&AuthMethod| ct_eq(&user, m.username.as_deref().unwrap_or_default().as_bytes());
        let mut candidates: Vec<&AuthMethod> = basics().filter(named).collect();
        let decoy = candidates.is_empty();
        if decoy {
            candidates.extend(basics().next());
        }
        for m in candidates {
            let hash = m.secret_hash.clone();
            let pw = password.clone();
            let Ok(_permit) = self.password_checks.acquire().await else {
                return Verdict::Hidden;
            };
            metrics::counter!("sluice_source_auth_password_checks_total").increment(1);
            let ok = tokio::task::spawn_blocking(move || verify_password(&pw, &hash))
                .await
                .unwrap_or(false);
            if ok && !decoy {
                self.verified
                    .insert(verified_key(m.id, basic.as_bytes()), ());
                return Verdict::Admitted(m.id, m.kind);
            }
        }
        self.refused.insert(refused, ());
        Verdict::Hidden
    }
}

/// Removes the caller's source credentials before the request goes to the sink: `x-api-key`
/// whenever the channel has auth methods, and a Basic `authorization` when it has Basic ones;
/// their values (and any `authorization`'s) join `secrets`, kept out of the stored previews.
pub fn scrub(headers: &mut HeaderMap, methods: &[AuthMethod], secrets: &mut Reflected) {
    if methods.is_empty() {
        return;
    }
    if let Some(key) = headers.remove(&X_API_KEY) {
        secrets.add_header(&key);
    }
    if let Some(v) = headers.get(AUTHORIZATION) {
        secrets.add_header(v);
    }
    if methods.iter().any(|m| m.kind == AuthKind::Basic)
        && headers.get(AUTHORIZATION).is_some_and(is_basic)
    {
        headers.remove(AUTHORIZATION);
    }
}

/// Empties both caches when an auth method changes (or anything may have).
fn forget_on_change(gate: &Gate, change: Change) {
    if matches!(change, Change::AuthMethod(_) | Change::Unknown) {
        gate.verified.invalidate_all();
        gate.refused.invalidate_all();
    }
}
