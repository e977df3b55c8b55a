//! A fake npm registry, schema CDN and raw-file host on loopback, built from the adaptor
//! fixtures: search listing, a packument and tarballs for each of the 108 packages of the TSV,
//! schemas for the four fixture packages, and icons for `http`.

#![allow(dead_code)] // shared with sluice's tests; each binary uses a different part

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use flate2::write::GzEncoder;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{header, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use sha2::{Digest, Sha256, Sha512};
use tokio::net::TcpListener;

use crate::fixtures::{fixtures, png, SVG};

/// The version every fake packument has besides the TSV's, deprecated.
pub const OLD_VERSION: &str = "0.0.1";
/// The one package whose latest version the fake deprecates.
pub const DEPRECATED: &str = "@openfn/language-beyonic";

/// The TSV rows: (name, version, has a schema).
pub fn tsv() -> Vec<(String, String, bool)> {
    std::fs::read_to_string(fixtures().join("openfn-adaptors-2026-08.tsv"))
        .unwrap()
        .lines()
        .map(|line| {
            let mut cols = line.split('\t').map(str::to_string);
            let mut col = || cols.next().unwrap();
            (col(), col(), col() == "schema")
        })
        .collect()
}

/// What a test can change in the fake while it runs.
#[derive(Default)]
pub struct Switches {
    /// `/-/v1/search` answers 404, like a mirror without search.
    pub search_off: bool,
    /// Search pages hold at most this many objects, whatever the client asks for.
    pub page_limit: Option<usize>,
    /// Every tarball is served with its last byte changed.
    pub tamper: bool,
    /// Every answer waits this long.
    pub delay: Duration,
    /// Search answers with no package at all.
    pub empty_listing: bool,
    /// Everything answers 503, as a registry that is down behind its load balancer.
    pub down: bool,
}

#[derive(Default)]
struct State {
    /// Body by request path (packuments under `/@openfn%2flanguage-*`).
    files: Mutex<HashMap<String, Bytes>>,
    /// Search results: the adaptors plus other `@openfn` packages a real search also returns.
    search: Mutex<Vec<Value>>,
    switches: Mutex<Switches>,
    calls: Mutex<HashMap<String, usize>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    not_modified: AtomicUsize,
}

impl State {
    /// Publishes `version` of `name` as its latest (besides [`OLD_VERSION`]): packument,
    /// tarballs, CDN schema and search entry.
    fn publish(&self, url: &str, name: &str, version: &str, schema: Option<Vec<u8>>) {
        let short = name.strip_prefix("@openfn/language-").unwrap();
        let mut files = self.files.lock().unwrap();
        let mut versions = serde_json::Map::new();
        // Newest first, as some registries answer: not the order of publication.
        for v in [version, OLD_VERSION] {
            let tgz = tarball(name, v, schema.as_deref().filter(|_| v == version));
            let path = format!("/{name}/-/language-{short}-{v}.tgz");
            let deprecated = match v {
                OLD_VERSION => format!("upgrade to {version}"),
                _ if name == DEPRECATED => "Beyonic has shut down".into(),
                _ => String::new(),
            };
            versions.insert(
                v.to_string(),
                json!({
                    "name": name, "version": v,
                    "dependencies": {"@openfn/language-common": "3.3.4"},
                    "deprecated": deprecated,
                    "dist": {
                        "integrity": format!("sha512-{}", STANDARD.encode(Sha512::digest(&tgz))),
                        "tarball": format!("{url}{path}"),
                        "unpackedSize": 1000 + schema.as_ref().map_or(0, Vec::len),
                    },
                }),
            );
            files.insert(path, tgz.into());
        }
        let packument = json!({
            "name": name,
            "description": format!("OpenFn adaptor {short}"),
            "dist-tags": {"latest": version},
            "versions": versions,
            "time": {
                "created": "2020-01-01T00:00:00.000Z",
                OLD_VERSION: "2020-01-01T00:00:00.000Z",
                version: "2026-08-01T12:00:00.000Z",
            },
            "license": "LGPL-3.0",
        });
        let encoded = format!("/{}", name.replace('/', "%2f"));
        files.insert(encoded, packument.to_string().into());
        if let Some(schema) = schema {
            let path = format!("/cdn/npm/{name}@{version}/configuration-schema.json");
            files.insert(path, schema.into());
        }
        let mut search = self.search.lock().unwrap();
        search.retain(|o| o["package"]["name"] != name);
        search.push(json!({"package": {"name": name, "version": version}}));
    }
}

/// The running fake. Paths: registry at `/`, CDN at `/cdn`, raw files at `/raw`.
pub struct Fake {
    pub url: String,
    state: Arc<State>,
}

impl Fake {
    pub async fn start() -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = State::default();
        for (name, version, has_schema) in tsv() {
            let short = name.strip_prefix("@openfn/language-").unwrap();
            let schema = format!("packages/{short}/configuration-schema.json");
            let schema = std::fs::read(fixtures().join(schema))
                .ok()
                .filter(|_| has_schema);
            state.publish(&url, &name, &version, schema);
        }
        for other in ["@openfn/cli", "@openfn/runtime"] {
            let object = json!({"package": {"name": other, "version": "1.0.0"}});
            state.search.lock().unwrap().push(object);
        }
        for (path, body) in [
            ("/raw/packages/http/assets/square.png", png()),
            ("/raw/packages/http/assets/square.svg", SVG.to_vec()),
            ("/raw/packages/http/assets/rectangle.svg", SVG.to_vec()),
        ] {
            state.files.lock().unwrap().insert(path.into(), body.into());
        }
        let state = Arc::new(state);
        let shared = state.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let state = shared.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(handle(&state, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Fake { url, state }
    }

    /// Publishes a new latest version of `name`, with `schema` (`None`: without one).
    pub fn bump(&self, name: &str, version: &str, schema: Option<&[u8]>) {
        self.state
            .publish(&self.url, name, version, schema.map(<[u8]>::to_vec));
    }

    /// Unpublishes `name`: no longer searched, its packument 404.
    pub fn remove(&self, name: &str) {
        let encoded = format!("/{}", name.replace('/', "%2f"));
        self.state.files.lock().unwrap().remove(&encoded);
        let mut search = self.state.search.lock().unwrap();
        search.retain(|o| o["package"]["name"] != name);
    }

    /// Replaces a raw file (an icon), so its ETag changes.
    pub fn put_raw(&self, path: &str, body: Vec<u8>) {
        let path = format!("/raw/{path}");
        self.state.files.lock().unwrap().insert(path, body.into());
    }

    /// Forgets every call counted so far.
    pub fn reset_calls(&self) {
        self.state.calls.lock().unwrap().clear();
        self.state.not_modified.store(0, Ordering::SeqCst);
    }

    /// The switches, to flip.
    pub fn switches(&self) -> MutexGuard<'_, Switches> {
        self.state.switches.lock().unwrap()
    }

    /// Requests received whose path satisfies `pred`.
    pub fn calls(&self, pred: impl Fn(&str) -> bool) -> usize {
        let calls = self.state.calls.lock().unwrap();
        calls.iter().filter(|(p, _)| pred(p)).map(|(_, n)| n).sum()
    }

    /// Conditional requests answered 304.
    pub fn not_modified(&self) -> usize {
        self.state.not_modified.load(Ordering::SeqCst)
    }

    /// The most requests ever in flight at once.
    pub fn max_in_flight(&self) -> usize {
        self.state.max_in_flight.load(Ordering::SeqCst)
    }
}

async fn handle(state: &State, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().replace("%2F", "%2f");
    *state.calls.lock().unwrap().entry(path.clone()).or_default() += 1;
    let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    state.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let delay = state.switches.lock().unwrap().delay;
    tokio::time::sleep(delay).await;
    let response = route(state, &req, &path);
    state.in_flight.fetch_sub(1, Ordering::SeqCst);
    response
}

fn route(state: &State, req: &Request<Incoming>, path: &str) -> Response<Full<Bytes>> {
    if state.switches.lock().unwrap().down {
        return answer(StatusCode::SERVICE_UNAVAILABLE, Bytes::new());
    }
    if path == "/-/v1/search" {
        let switches = state.switches.lock().unwrap();
        if switches.search_off {
            return answer(StatusCode::NOT_FOUND, Bytes::new());
        }
        let query = req.uri().query().unwrap_or_default();
        let param = |key: &str| {
            let mut pairs = query.split('&').filter_map(|kv| kv.split_once('='));
            pairs.find(|(k, _)| *k == key)?.1.parse::<usize>().ok()
        };
        let mut all = state.search.lock().unwrap().clone();
        if switches.empty_listing {
            all.clear();
        }
        let from = param("from").unwrap_or(0).min(all.len());
        let size = param("size")
            .unwrap_or(20)
            .min(switches.page_limit.unwrap_or(usize::MAX));
        let page = &all[from..(from + size).min(all.len())];
        let body = json!({"objects": page, "total": all.len()});
        return answer(StatusCode::OK, body.to_string().into());
    }
    let Some(body) = state.files.lock().unwrap().get(path).cloned() else {
        return answer(StatusCode::NOT_FOUND, Bytes::new());
    };
    if path.ends_with(".tgz") && state.switches.lock().unwrap().tamper {
        let mut bytes = body.to_vec();
        *bytes.last_mut().unwrap() ^= 1;
        return answer(StatusCode::OK, bytes.into());
    }
    if !path.starts_with("/raw/") {
        return answer(StatusCode::OK, body);
    }
    let etag = format!("\"{:x}\"", Sha256::digest(&body));
    let sent = req.headers().get(header::IF_NONE_MATCH);
    let mut response = if sent.is_some_and(|t| t.as_bytes() == etag.as_bytes()) {
        state.not_modified.fetch_add(1, Ordering::SeqCst);
        answer(StatusCode::NOT_MODIFIED, Bytes::new())
    } else {
        answer(StatusCode::OK, body)
    };
    response
        .headers_mut()
        .insert(header::ETAG, etag.parse().unwrap());
    response
}

fn answer(status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response
}

/// A package tarball as npm packs it: `package/package.json` and, if given, the schema.
fn tarball(name: &str, version: &str, schema: Option<&[u8]>) -> Vec<u8> {
    let manifest = json!({"name": name, "version": version}).to_string();
    let mut files = vec![("package/package.json", manifest.as_bytes())];
    files.extend(schema.map(|s| ("package/configuration-schema.json", s)));
    let mut builder = tar::Builder::new(GzEncoder::new(Vec::new(), flate2::Compression::default()));
    for (path, body) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(body.len() as u64);
        header.set_mode(0o644);
        builder.append_data(&mut header, path, body).unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap()
}
