//! The web UI in a real headless Chromium against a real sluice and a real upstream: signing
//! in and out, the first password change, live history, filters that survive a reload, request
//! detail, the proxy URL's copy button, what a viewer is offered, forged and stale forms, the
//! security headers, and the accessibility basics of every page.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::browser::{Browser, Window};
use common::{upstream, Sluice, TempDir};
use reqwest::Method;
use serde_json::{json, Value};

const PASSWORD: &str = "a-long-enough-password";

/// A superuser `ops` with a known password on a fresh sluice.
async fn sluice_with_ops() -> Sluice {
    let s = Sluice::start().await;
    add_user(&s, "ops", true).await;
    s
}

/// Creates a user with [`PASSWORD`]; returns its id.
async fn add_user(s: &Sluice, name: &str, superuser: bool) -> String {
    let res = s
        .api(Method::POST, "/users")
        .json(&json!({ "username": name, "password": PASSWORD, "superuser": superuser }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let body: Value = res.json().await.unwrap();
    body["id"].as_str().unwrap().to_string()
}

/// The id of the `default` project.
async fn default_project(s: &Sluice) -> String {
    let projects = s.get_json("/projects").await;
    projects["items"][0]["id"].as_str().unwrap().to_string()
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The browser's session cookie, as a `Cookie` header value.
async fn cookie_of(b: &Browser) -> String {
    let c = b.client.get_named_cookie("sluice_session").await.unwrap();
    format!("sluice_session={}", c.value())
}

/// The CSRF token in the page's forms.
async fn csrf_of(b: &Browser) -> String {
    b.js("return document.querySelector('input[name=csrf_token]').value")
        .await
        .as_str()
        .unwrap()
        .to_string()
}

/// A sluice started the way a person does, with its standard error kept: the first start
/// prints the `admin` user's one-time password there.
struct Fresh {
    base: String,
    stderr: Arc<Mutex<String>>,
    child: Child,
    _data: TempDir,
}

impl Drop for Fresh {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn fresh() -> Fresh {
    let data = TempDir::new();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data.path())
        .env("RUST_LOG", "warn")
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
    Fresh {
        base,
        stderr,
        child,
        _data: data,
    }
}

fn one_time_password(f: &Fresh) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = f.stderr.lock().unwrap().clone();
        if let Some(at) = log.find("one-time password") {
            if let Some(line) = log[at..].lines().nth(2) {
                return line.trim().to_string();
            }
        }
        assert!(Instant::now() < deadline, "no one-time password printed");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn the_first_sign_in_forces_a_new_password_and_sign_out_ends_the_session() {
    let f = fresh().await;
    let Some(b) = Browser::start(Window::DESKTOP).await else {
        return;
    };
    let once = one_time_password(&f);

    // Any page leads to the sign-in form; a wrong password is refused in words.
    b.goto(&format!("{}/ui/channels", f.base)).await;
    assert!(b.url().await.contains("/ui/sign-in"), "{}", b.url().await);
    b.fill("#username", "admin").await;
    b.fill("#password", "not-the-password").await;
    b.click("button[type=submit]").await;
    assert_eq!(b.text("#problem").await, "Wrong username or password.");

    // The one-time password leads to the password form, and nowhere else.
    b.fill("#username", "admin").await;
    b.fill("#password", &once).await;
    b.click("button[type=submit]").await;
    assert!(b.url().await.ends_with("/ui/password"), "{}", b.url().await);
    assert!(b.text(".note-box").await.contains("one-time password"));
    b.goto(&format!("{}/ui/channels", f.base)).await;
    assert!(b.url().await.ends_with("/ui/password"));

    // Mismatched and too-short passwords are explained.
    b.fill("#current_password", &once).await;
    b.fill("#new_password", "short").await;
    b.fill("#repeat_password", "short").await;
    b.js("document.querySelectorAll('input').forEach(i => i.removeAttribute('minlength'))")
        .await;
    b.click("button[type=submit]").await;
    assert!(
        b.text("#problem").await.contains("new password"),
        "{}",
        b.text("#problem").await
    );

    b.fill("#current_password", &once).await;
    b.fill("#new_password", PASSWORD).await;
    b.fill("#repeat_password", PASSWORD).await;
    b.click("button[type=submit]").await;
    assert!(b.url().await.ends_with("/ui/"), "{}", b.url().await);
    assert!(b.text("h1").await.starts_with("Dashboard"));
    assert!(b.text(".who").await.starts_with("admin"));

    // Signing out ends the session: the pages ask to sign in again.
    b.click(".top form[action='/ui/sign-out'] button").await;
    assert!(b.url().await.contains("/ui/sign-in"));
    b.goto(&format!("{}/ui/", f.base)).await;
    assert!(b.url().await.contains("/ui/sign-in"));

    // The new password works; the one-time one does not any more.
    b.sign_in(&f.base, "admin", &once).await;
    assert_eq!(b.text("#problem").await, "Wrong username or password.");
    b.sign_in(&f.base, "admin", PASSWORD).await;
    assert!(b.text("h1").await.starts_with("Dashboard"));
    b.close().await;
}

#[tokio::test]
async fn new_requests_appear_live_and_a_filtered_history_survives_a_reload() {
    let s = sluice_with_ops().await;
    let up = upstream::start().await;
    let ch = s
        .create_channel(&up.url("/"), json!({ "name": "orders" }))
        .await;
    let id = ch["id"].as_str().unwrap();
    let Some(b) = Browser::start(Window::DESKTOP).await else {
        return;
    };
    b.sign_in(&s.base, "ops", PASSWORD).await;
    b.goto(&format!("{}/ui/channels/{id}", s.base)).await;
    assert_eq!(b.count("#history tbody tr[data-id]").await, 0);
    b.wait_for(
        "the live stream",
        "return document.getElementById('live-status').textContent === 'live'",
    )
    .await;
    // A mark in the page: a reload would lose it.
    b.js("window.notReloaded = true").await;

    for path in ["/a", "/b", "/status/404"] {
        let res = s.http().get(s.proxy_url(&ch, path)).send().await.unwrap();
        assert!(res.status().as_u16() == 200 || res.status().as_u16() == 404);
    }
    b.wait_for(
        "three live rows",
        "return document.querySelectorAll('#history tbody tr[data-id]').length === 3",
    )
    .await;
    assert_eq!(b.js("return window.notReloaded === true").await, true);
    let newest = b.text("#history tbody tr:first-child").await;
    assert!(
        newest.contains("/status/404") && newest.contains("failed"),
        "{newest}"
    );

    // Filter: only failures. The address carries the filter; a reload shows the same rows.
    b.client
        .find(fantoccini::Locator::Css("#f-state option[value=failed]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.click(".filters button[type=submit]").await;
    let filtered = b.url().await;
    assert!(filtered.contains("state=failed"), "{filtered}");
    let rows = b.js("return [...document.querySelectorAll('#history tbody tr[data-id]')].map(r => r.dataset.id)").await;
    assert_eq!(rows.as_array().unwrap().len(), 1, "{rows}");
    b.client.refresh().await.unwrap();
    assert_eq!(b.url().await, filtered);
    let again = b.js("return [...document.querySelectorAll('#history tbody tr[data-id]')].map(r => r.dataset.id)").await;
    assert_eq!(again, rows);
    assert_eq!(
        b.js("return document.getElementById('f-state').value")
            .await,
        "failed"
    );
    // A filtered view is live too, and shows only what matches.
    b.wait_for(
        "the live stream",
        "return document.getElementById('live-status').textContent === 'live'",
    )
    .await;
    s.http().get(s.proxy_url(&ch, "/c")).send().await.unwrap();
    s.http()
        .get(s.proxy_url(&ch, "/status/500"))
        .send()
        .await
        .unwrap();
    b.wait_for(
        "the new failure",
        "return document.querySelectorAll('#history tbody tr[data-id]').length === 2",
    )
    .await;
    assert!(b
        .text("#history tbody tr:first-child")
        .await
        .contains("/status/500"));
    b.close().await;
}

#[tokio::test]
async fn a_request_detail_shows_the_preview_hashes_and_timing() {
    let s = sluice_with_ops().await;
    let up = upstream::start().await;
    let ch = s.create_channel(&up.url("/"), json!({})).await;
    let body = r#"{"patient":{"id":7,"name":"Ann"}}"#;
    let res = s
        .http()
        .post(s.proxy_url(&ch, "/intake?src=clinic"))
        .header("content-type", "application/json")
        .header("x-request-id", "detail-request-0000000001")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let rec = s.finished(&ch, "detail-request-0000000001").await;
    let Some(b) = Browser::start(Window::DESKTOP).await else {
        return;
    };
    b.sign_in(&s.base, "ops", PASSWORD).await;
    b.goto(&format!(
        "{}/ui/requests/{}",
        s.base,
        rec["id"].as_str().unwrap()
    ))
    .await;
    assert_eq!(b.text("h1").await, "POST /intake?src=clinic");
    assert_eq!(b.text("#state").await, "success");
    // The request body, pretty-printed as JSON, and its hash and size.
    let pre = b.text("section[aria-labelledby=req-h] pre.body").await;
    assert!(
        pre.contains("\"patient\": {") && pre.contains("\"name\": \"Ann\""),
        "{pre}"
    );
    let shas = b
        .js("return [...document.querySelectorAll('code.sha')].map(c => c.textContent)")
        .await;
    assert_eq!(shas[0], common::sha256(body.as_bytes()));
    assert_eq!(shas.as_array().unwrap().len(), 2);
    // The timing bar has its phases, with a legend naming them.
    assert!(b.count(".timing svg rect").await >= 2);
    let legend = b.text(".timing .legend").await;
    assert!(
        legend.contains("time to first byte") && legend.contains("connection"),
        "{legend}"
    );
    assert!(b
        .text("dl.facts")
        .await
        .contains(&up.url("/intake?src=clinic")));
    b.close().await;
}

#[tokio::test]
async fn the_copy_button_puts_the_proxy_url_on_the_clipboard() {
    let s = sluice_with_ops().await;
    let up = upstream::start().await;
    let ch = s
        .create_channel(&up.url("/"), json!({ "name": "copyme" }))
        .await;
    let Some(b) = Browser::start(Window::DESKTOP).await else {
        return;
    };
    b.sign_in(&s.base, "ops", PASSWORD).await;
    b.goto(&format!("{}/ui/channels", s.base)).await;
    let button = format!(
        "tr[data-channel='{}'] button[data-copy]",
        ch["id"].as_str().unwrap()
    );
    b.click(&button).await;
    assert_eq!(b.text(&button).await, "Copied");
    // Paste it into a field of the page: the clipboard holds the channel's proxy URL.
    b.js("const t = document.createElement('textarea'); t.id = 'paste'; document.body.prepend(t); t.focus();")
        .await;
    let paste = b
        .client
        .find(fantoccini::Locator::Css("#paste"))
        .await
        .unwrap();
    paste
        .send_keys(&format!("{}v", fantoccini::key::Key::Control))
        .await
        .unwrap();
    let pasted = b.js("return document.getElementById('paste').value").await;
    assert_eq!(pasted, ch["proxy_url"], "pasted {pasted}");
    b.close().await;
}
