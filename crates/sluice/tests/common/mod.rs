//! Test harness: a real `sluice` process on an ephemeral port and a real upstream server.

#![allow(dead_code)] // each test binary uses a different part of the harness

pub mod browser;
pub mod postgres;
pub mod token_server;
pub mod upstream;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// A temporary directory removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    /// A fresh empty directory.
    pub fn new() -> Self {
        let p = std::env::temp_dir().join(format!("sluice-it-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The networks of the tests' own sinks, allowed through the egress policy.
pub const LOOPBACK: &str = "127.0.0.0/8,::1";

/// A loopback URL nothing listens on (the discard port): connections are refused at once.
pub const CLOSED_PORT: &str = "http://127.0.0.1:9";

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_sluice")
}

/// Runs a one-shot subcommand and returns its stdout.
pub fn run(args: &[&str]) -> String {
    let out = Command::new(bin())
        .args(args)
        .output()
        .expect("running sluice");
    assert!(
        out.status.success(),
        "sluice {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A running sluice.
pub struct Sluice {
    /// `http://127.0.0.1:PORT`
    pub base: String,
    /// A superuser API token.
    pub token: String,
    /// The data directory.
    pub data: std::sync::Arc<TempDir>,
    child: Child,
    http: reqwest::Client,
}

impl Sluice {
    /// Starts sluice on a fresh data directory.
    pub async fn start() -> Self {
        Self::start_in(std::sync::Arc::new(TempDir::new()), &[]).await
    }

    /// Starts sluice on `data` with extra `serve` flags (creating a token first).
    pub async fn start_in(data: std::sync::Arc<TempDir>, extra: &[&str]) -> Self {
        Self::start_on(data, None, extra).await
    }

    /// Starts sluice on `data` and, if given, the ledger at `database_url`.
    pub async fn start_on(
        data: std::sync::Arc<TempDir>,
        database_url: Option<&str>,
        extra: &[&str],
    ) -> Self {
        let dir = data.path().to_str().unwrap().to_string();
        let mut ledger = vec!["--data-dir".to_string(), dir];
        if let Some(url) = database_url {
            ledger.extend(["--database-url".to_string(), url.to_string()]);
        }
        let ledger: Vec<&str> = ledger.iter().map(String::as_str).collect();
        let out = run(&[&["token", "create", "--name", "tests"], &ledger[..]].concat());
        let token = out.lines().last().unwrap().trim().to_string();
        let mut child = Command::new(bin())
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(&ledger)
            .args(extra)
            .env("RUST_LOG", "warn")
            // Tests reach only loopback: the catalogue's default upstream is the public npm
            // registry, so point it at a closed local port and refresh only when asked.
            .env("SLUICE_CATALOG_REGISTRY_URL", CLOSED_PORT)
            .env("SLUICE_CATALOG_REFRESH_INTERVAL", "0")
            // The tests' sinks listen on loopback, which the egress policy refuses by default.
            .env("SLUICE_EGRESS_ALLOW", LOOPBACK)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawning sluice serve");
        let stdout = child.stdout.take().unwrap();
        let base = tokio::task::spawn_blocking(move || {
            let mut lines = BufReader::new(stdout).lines();
            let first = lines
                .find_map(|l| {
                    l.ok()
                        .and_then(|l| l.strip_prefix("listening: ").map(str::to_string))
                })
                .expect("sluice printed its address");
            // keep draining so the child never blocks on a full pipe
            std::thread::spawn(move || for _ in lines {});
            first
        })
        .await
        .unwrap();
        Sluice {
            base,
            token,
            data,
            child,
            http: reqwest::Client::builder().no_proxy().build().unwrap(),
        }
    }

    /// Process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// An HTTP client (no proxy, no auth).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// URL of `path` on this sluice.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// An authenticated API request builder.
    pub fn api(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, self.url(&format!("/api/v1{path}")))
            .bearer_auth(&self.token)
    }

    /// GET an API path and parse the JSON (asserting 200).
    pub async fn get_json(&self, path: &str) -> Value {
        let res = self.api(reqwest::Method::GET, path).send().await.unwrap();
        let status = res.status();
        let body: Value = res.json().await.unwrap();
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    /// POSTs a credential; its status and JSON (a 422 too).
    pub async fn create_credential(&self, body: Value) -> (u16, Value) {
        let res = self
            .api(reqwest::Method::POST, "/credentials")
            .json(&body)
            .send()
            .await
            .unwrap();
        (res.status().as_u16(), res.json().await.unwrap())
    }

    /// Creates a channel to `sink_url` with extra fields; returns the channel JSON.
    pub async fn create_channel(&self, sink_url: &str, extra: Value) -> Value {
        let mut body = json!({ "name": format!("ch-{}", uuid::Uuid::new_v4().simple()), "sink_url": sink_url });
        if let Value::Object(m) = extra {
            for (k, v) in m {
                body[k] = v;
            }
        }
        let res = self
            .api(reqwest::Method::POST, "/channels")
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = res.status();
        let body: Value = res.json().await.unwrap();
        assert_eq!(status, 201, "create channel: {body}");
        body
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics_text(&self) -> String {
        self.http()
            .get(self.url("/metrics"))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// The sum of every sample of metric `name` in `/metrics` (0 when absent).
    pub async fn metric_sum(&self, name: &str) -> f64 {
        self.metrics_text()
            .await
            .lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// POSTs `{}` to `rest` through `channel` with a fresh `x-request-id`; returns the status
    /// and that id.
    pub async fn post_with_id(&self, channel: &Value, rest: &str) -> (u16, String) {
        let id = rid();
        let res = self
            .http()
            .post(self.proxy_url(channel, rest))
            .header("x-request-id", &id)
            .body("{}")
            .send()
            .await
            .unwrap();
        (res.status().as_u16(), id)
    }

    /// The proxy URL of a channel plus `rest`.
    pub fn proxy_url(&self, channel: &Value, rest: &str) -> String {
        format!("{}{}", channel["proxy_url"].as_str().unwrap(), rest)
    }

    /// History of a channel (first page, up to 500).
    pub async fn history(&self, channel: &Value, query: &str) -> Vec<Value> {
        let id = channel["id"].as_str().unwrap();
        let sep = if query.is_empty() { "" } else { "&" };
        let page = self
            .get_json(&format!("/channels/{id}/requests?limit=500{sep}{query}"))
            .await;
        page["items"].as_array().unwrap().clone()
    }

    /// Waits until the request with `x-request-id` = `rid` is finished; returns its detail.
    pub async fn finished(&self, channel: &Value, rid: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let items = self.history(channel, &format!("request_id={rid}")).await;
            if let Some(r) = items.iter().find(|r| r["state"] != "pending") {
                return self
                    .get_json(&format!("/requests/{}", r["id"].as_str().unwrap()))
                    .await;
            }
            assert!(
                Instant::now() < deadline,
                "request {rid} never finished: {items:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until the channel's history holds `n` finished requests; returns them.
    pub async fn finished_n(&self, channel: &Value, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let items = self.history(channel, "").await;
            let done: Vec<Value> = items
                .into_iter()
                .filter(|r| r["state"] != "pending")
                .collect();
            if done.len() >= n {
                return done;
            }
            assert!(
                Instant::now() < deadline,
                "only {} of {n} requests finished",
                done.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends SIGTERM and waits (without blocking the test's runtime) for a clean exit.
    pub async fn stop(&mut self) {
        signal(self.child.id(), "TERM");
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "sluice did not stop");
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        assert!(status.success(), "sluice exited with {status}");
    }

    /// Kills the process outright (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        let _ = self.child.wait();
    }

    /// The SQLite ledger file.
    pub fn db_url(&self) -> String {
        format!("sqlite://{}/sluice.db", self.data.path().display())
    }
}

impl Drop for Sluice {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends signal `sig` (`TERM`, `HUP`, …) to process `pid`.
pub fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{sig} {pid}");
}

/// Every request of `channel` in the history, newest first, following `next_cursor`.
pub async fn every_request(s: &Sluice, channel: &str) -> Vec<Value> {
    let mut rows = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = cursor
            .as_ref()
            .map(|c| format!("&cursor={c}"))
            .unwrap_or_default();
        let page = s
            .get_json(&format!("/channels/{channel}/requests?limit=500{q}"))
            .await;
        rows.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return rows,
        }
    }
}

/// A request id that sluice keeps (20–200 chars of `[A-Za-z0-9._-]`).
pub fn rid() -> String {
    format!("test-{}", uuid::Uuid::new_v4().simple())
}

/// Lowercase hex SHA-256.
pub fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// A `sluice serve` whose standard error is kept, to read what it printed.
pub struct Logged {
    /// `http://127.0.0.1:PORT`
    pub base: String,
    /// Everything it printed on standard error so far.
    pub stderr: Arc<Mutex<String>>,
    child: Child,
}

impl Drop for Logged {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `sluice serve` on `data` with `extra` flags, keeping its standard error.
pub async fn serve_logged(data: &TempDir, extra: &[&str]) -> Logged {
    serve_logged_under(&[], data, extra).await
}

/// [`serve_logged`], run by the command `wrapper` (`["prlimit", "--nofile=256"]`) if given.
pub async fn serve_logged_under(wrapper: &[&str], data: &TempDir, extra: &[&str]) -> Logged {
    let mut command = match wrapper {
        [] => Command::new(bin()),
        [program, args @ ..] => {
            let mut c = Command::new(program);
            c.args(args).arg(bin());
            c
        }
    };
    let mut child = command
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data.path())
        .args(extra)
        .env("RUST_LOG", "info")
        .env("SLUICE_CATALOG_REGISTRY_URL", CLOSED_PORT)
        .env("SLUICE_CATALOG_REFRESH_INTERVAL", "0")
        .env("SLUICE_EGRESS_ALLOW", LOOPBACK)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = Arc::new(Mutex::new(String::new()));
    let mut err = child.stderr.take().unwrap();
    let sink = stderr.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = err.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    let stdout = child.stdout.take().unwrap();
    let base = tokio::task::spawn_blocking(move || {
        let mut lines = BufReader::new(stdout).lines();
        let base = lines
            .find_map(|l| l.ok()?.strip_prefix("listening: ").map(str::to_string))
            .unwrap();
        std::thread::spawn(move || for _ in lines {});
        base
    })
    .await
    .unwrap();
    Logged {
        base,
        stderr,
        child,
    }
}
