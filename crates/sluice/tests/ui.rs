//! The web UI in a real headless Chromium against a real sluice and a real upstream: signing
//! in and out, the first password change, live history, filters that survive a reload, request
//! detail, the proxy URL's copy button, what a viewer is offered, forged and stale forms, the
//! security headers, and the accessibility basics of every page.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::browser::{Browser, Window};
use common::{serve_logged, upstream, Logged, Sluice, TempDir};
use reqwest::Method;
use serde_json::{json, Value};

const PASSWORD: &str = "a-long-enough-password";

/// A superuser `ops` with a known password on a fresh sluice.
async fn sluice_with_ops() -> Sluice {
    let s = Sluice::start().await;
    add_user(&s, "ops", true).await;
    s
}

/// The adaptor fixtures: `../shared/` beside the repository, else the workplace's copy.
fn adaptor_fixtures() -> std::path::PathBuf {
    let beside =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/adaptors");
    [beside, "/work/shared/fixtures/adaptors".into()]
        .into_iter()
        .find(|p| p.join("README.md").exists())
        .expect("adaptor fixtures not found beside the repository nor in /work/shared")
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

/// The `admin` user's one-time password, once the first start has printed it.
fn one_time_password(f: &Logged) -> String {
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
    let data = TempDir::new();
    let f = serve_logged(&data, &[]).await;
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

/// Milliseconds of a duration as the pages write it (`812 µs`, `3.4 ms`, `1.20 s`).
fn ms_of(text: &str) -> f64 {
    let (n, unit) = text.trim().split_once(' ').unwrap();
    let n: f64 = n.parse().unwrap();
    match unit {
        "µs" => n / 1e3,
        "ms" => n,
        "s" => n * 1e3,
        _ => panic!("unit of {text}"),
    }
}

#[tokio::test]
async fn a_channels_latency_percentiles_are_drawn_over_time() {
    let s = sluice_with_ops().await;
    let up = upstream::start().await;
    let ch = s
        .create_channel(&up.url("/"), json!({ "name": "slow" }))
        .await;
    for path in ["/a", "/b", "/c", "/d", "/delay/300"] {
        let res = s.http().get(s.proxy_url(&ch, path)).send().await.unwrap();
        assert_eq!(res.status(), 200);
    }
    s.finished_n(&ch, 5).await;
    let Some(b) = Browser::start(Window::DESKTOP).await else {
        return;
    };
    b.sign_in(&s.base, "ops", PASSWORD).await;
    b.goto(&format!(
        "{}/ui/channels/{}",
        s.base,
        ch["id"].as_str().unwrap()
    ))
    .await;
    // Each point of the chart names its bin's percentiles.
    let titles = b
        .js("return [...document.querySelectorAll('[aria-labelledby=latency-h] svg circle title')].map(t => t.textContent)")
        .await;
    let titles: Vec<String> = serde_json::from_value(titles).unwrap();
    assert!(!titles.is_empty(), "a point for the minute of the traffic");
    let of = |t: &str, p: &str| {
        ms_of(
            t.split(&format!("{p} "))
                .nth(1)
                .unwrap()
                .split(',')
                .next()
                .unwrap(),
        )
    };
    let p50 = titles.iter().map(|t| of(t, "p50")).fold(f64::MAX, f64::min);
    let p99 = titles.iter().map(|t| of(t, "p99")).fold(0.0, f64::max);
    assert!(p50 < 100.0, "the median is a fast request: {titles:?}");
    assert!(
        p99 >= 270.0,
        "the 99th percentile is the slow one: {titles:?}"
    );
    for class in ["p50", "p95", "p99"] {
        let drawn = b
            .count(&format!("[aria-labelledby=latency-h] svg .line-{class}, [aria-labelledby=latency-h] svg .dot-{class}"))
            .await;
        assert!(drawn > 0, "{class} is drawn");
    }
    b.close().await;
}

#[tokio::test]
async fn a_request_detail_shows_the_preview_hashes_and_timing() {
    let s = sluice_with_ops().await;
    let up = upstream::start().await;
    // The sink thinks for 30 ms, so the wait for its first byte is a phase of its own however
    // long the send takes on a busy machine.
    let ch = s.create_channel(&up.url("/delay/30/"), json!({})).await;
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
    assert_eq!(b.text("h1").await, "POST /delay/30/intake?src=clinic");
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
        .contains(&up.url("/delay/30/intake?src=clinic")));
    assert!(b.text("dl.facts").await.contains("current configuration"));

    // The channel changes: the detail says so, and its snapshot shows what changed.
    let res = s
        .api(
            Method::PATCH,
            &format!("/channels/{}", ch["id"].as_str().unwrap()),
        )
        .json(&json!({ "lock_version": ch["lock_version"], "preview_bytes": 1024 }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    b.client.refresh().await.unwrap();
    assert!(b.text("dl.facts").await.contains("has changed since"));
    b.click("a[href^='/ui/snapshots/']").await;
    assert!(b.text("#settings").await.contains(&up.url("/")));
    let changed = b.text("#changed-since").await;
    assert!(
        changed.contains("preview_bytes") && changed.contains("65536") && changed.contains("1024"),
        "{changed}"
    );

    // An admin wipes its content: the page says who did and no longer shows the body.
    b.goto(&format!(
        "{}/ui/requests/{}",
        s.base,
        rec["id"].as_str().unwrap()
    ))
    .await;
    b.js("window.confirm = () => true").await;
    b.click("#wipe-form button[type=submit]").await;
    let note = b.text("#wiped").await;
    assert!(note.contains("Wiped by user:ops"), "{note}");
    assert!(!b.text("main").await.contains("Ann"), "the body is gone");
    assert_eq!(b.count("#wipe-form").await, 0, "nothing left to wipe");
    let shas = b
        .js("return [...document.querySelectorAll('code.sha')].map(c => c.textContent)")
        .await;
    assert_eq!(shas[0], common::sha256(body.as_bytes()), "the hash remains");
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
    b.click_here(&button).await;
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

#[tokio::test]
async fn a_viewer_is_offered_no_changes_and_forged_or_stale_forms_are_refused() {
    let s = sluice_with_ops().await;
    let up = upstream::start().await;
    let ch = s
        .create_channel(&up.url("/"), json!({ "name": "watched" }))
        .await;
    let id = ch["id"].as_str().unwrap().to_string();
    let viewer = add_user(&s, "vera", false).await;
    let project = default_project(&s).await;
    let res = s
        .api(
            Method::PUT,
            &format!("/projects/{project}/members/{viewer}"),
        )
        .json(&json!({ "role": "viewer" }))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success());
    let Some(b) = Browser::start(Window::DESKTOP).await else {
        return;
    };

    // The viewer sees the channel but no control that would change it.
    b.sign_in(&s.base, "vera", PASSWORD).await;
    b.goto(&format!("{}/ui/channels", s.base)).await;
    assert_eq!(b.count(&format!("tr[data-channel='{id}']")).await, 1);
    assert_eq!(b.count("form[action$='/enabled']").await, 0);
    assert_eq!(b.count("a[href^='/ui/channels/new']").await, 0);
    assert!(b.text(".who").await.contains("viewer"));
    // Nor anywhere else: every page a viewer reads offers no form that changes something
    // (the sign-out and filter forms aside).
    for page in [
        format!("/ui/channels/{id}"),
        "/ui/credentials".to_string(),
        "/ui/auth-methods".to_string(),
        format!("/ui/projects/{project}/members"),
    ] {
        b.goto(&format!("{}{page}", s.base)).await;
        let changing = b
            .js("return [...document.querySelectorAll('main form[method=post]')].map(f => f.action)")
            .await;
        assert_eq!(changing, json!([]), "{page}");
        assert_eq!(
            b.count("main a[href$='/edit'], main a[href*='/new']").await,
            0,
            "{page}"
        );
    }
    // A hand-made post, even with the right CSRF token, is refused by the same rule as the API.
    let (cookie, csrf) = (cookie_of(&b).await, csrf_of(&b).await);
    let toggle = format!("{}/ui/channels/{id}/enabled", s.base);
    let res = http()
        .post(&toggle)
        .header("cookie", &cookie)
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("lock_version", "1"),
            ("enabled", "false"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    b.click(".top form[action='/ui/sign-out'] button").await;

    // An editor's post without the session's CSRF token (what another site could forge) is
    // refused and changes nothing.
    b.sign_in(&s.base, "ops", PASSWORD).await;
    b.goto(&format!("{}/ui/channels", s.base)).await;
    let cookie = cookie_of(&b).await;
    let version = ch["lock_version"].to_string();
    for forged in [None, Some("0".repeat(64))] {
        let mut form = vec![
            ("lock_version", version.clone()),
            ("enabled", "false".into()),
        ];
        if let Some(t) = forged {
            form.push(("csrf_token", t));
        }
        let res = http()
            .post(&toggle)
            .header("cookie", &cookie)
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 403);
        assert!(res.text().await.unwrap().contains("CSRF"));
    }
    assert_eq!(
        s.get_json(&format!("/channels/{id}")).await["enabled"],
        true
    );

    // Someone else changes the channel after the page was drawn: the switch explains the
    // conflict instead of overwriting their change.
    let res = s
        .api(Method::PATCH, &format!("/channels/{id}"))
        .json(&json!({ "lock_version": ch["lock_version"], "name": "renamed" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    b.click(&format!(
        "tr[data-channel='{id}'] form[action$='/enabled'] button"
    ))
    .await;
    assert!(
        b.text(".error-box")
            .await
            .contains("Changed by someone else"),
        "{}",
        b.text("main").await
    );
    assert_eq!(
        s.get_json(&format!("/channels/{id}")).await["enabled"],
        true
    );

    // With the page reloaded, the switch works.
    b.goto(&format!("{}/ui/channels", s.base)).await;
    b.click(&format!(
        "tr[data-channel='{id}'] form[action$='/enabled'] button"
    ))
    .await;
    assert!(b.url().await.contains("/ui/channels"));
    assert_eq!(
        s.get_json(&format!("/channels/{id}")).await["enabled"],
        false
    );
    b.close().await;
}

/// WCAG relative luminance of `#rrggbb`.
fn luminance(hex: &str) -> f64 {
    let c = |i: usize| {
        let v = f64::from(u8::from_str_radix(&hex[i..i + 2], 16).unwrap()) / 255.0;
        if v <= 0.03928 {
            v / 12.92
        } else {
            ((v + 0.055) / 1.055).powf(2.4)
        }
    };
    0.2126 * c(1) + 0.7152 * c(3) + 0.0722 * c(5)
}

/// The custom properties of each `:root` block of the stylesheet: light first, then dark.
fn palettes(css: &str) -> Vec<std::collections::HashMap<String, String>> {
    css.split(":root {")
        .skip(1)
        .map(|block| {
            block
                .split('}')
                .next()
                .unwrap()
                .lines()
                .filter_map(|l| {
                    let (k, v) = l.trim().strip_prefix("--")?.split_once(':')?;
                    let v = v.trim().trim_end_matches(';');
                    v.starts_with('#').then(|| (k.to_string(), v.to_string()))
                })
                .collect()
        })
        .collect()
}

#[tokio::test]
async fn the_stylesheet_keeps_text_readable_in_light_and_dark() {
    let s = Sluice::start().await;
    let page = http()
        .get(format!("{}/ui/sign-in", s.base))
        .send()
        .await
        .unwrap();
    let html = page.text().await.unwrap();
    let href = html
        .split("href=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    let res = http()
        .get(format!("{}{href}", s.base))
        .send()
        .await
        .unwrap();
    assert!(res.headers()["cache-control"]
        .to_str()
        .unwrap()
        .contains("immutable"));
    let css = res.text().await.unwrap();
    let all = palettes(&css);
    assert_eq!(all.len(), 2, "a light and a dark palette");
    // Each text colour against each background it is used on.
    let pairs = [
        ("text", "bg"),
        ("text", "surface"),
        ("muted", "bg"),
        ("muted", "surface"),
        ("accent", "bg"),
        ("accent", "surface"),
        ("accent-text", "accent"),
        ("ok", "ok-bg"),
        ("bad", "bad-bg"),
        ("bad", "bg"),
        ("warn", "warn-bg"),
        ("info", "info-bg"),
        ("text", "info-bg"),
        ("idle", "idle-bg"),
        ("ok", "bg"),
    ];
    for (i, p) in all.iter().enumerate() {
        for (fg, bg) in pairs {
            let (a, b) = (luminance(&p[fg]), luminance(&p[bg]));
            let ratio = (a.max(b) + 0.05) / (a.min(b) + 0.05);
            assert!(ratio >= 4.5, "palette {i}: {fg} on {bg} is {ratio:.2}:1");
        }
    }
}

/// Every page, as a signed-in superuser sees it: (name, path).
async fn every_page(s: &Sluice, up: &upstream::Upstream) -> Vec<(&'static str, String)> {
    let res = s
        .api(Method::POST, "/auth-methods")
        .json(&json!({ "name": "case-app-key", "type": "api_key" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let key: Value = res.json().await.unwrap();
    let res = s
        .api(Method::POST, "/credentials")
        .json(&json!({ "name": "play", "schema": "dhis2", "body": {
            "hostUrl": "https://play.dhis2.org/40", "username": "admin", "password": "district" } }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let ch = s
        .create_channel(&up.url("/"), json!({ "name": "dhis2-sync" }))
        .await;
    s.create_channel(
        "http://127.0.0.1:9/",
        json!({ "name": "case-app", "source_auth_method_ids": [key["id"]] }),
    )
    .await;
    for i in 0..12 {
        let path = if i % 5 == 4 {
            "/status/502".to_string()
        } else {
            format!("/api/events/{i}")
        };
        s.http()
            .post(s.proxy_url(&ch, &path))
            .header("content-type", "application/json")
            .body(format!(
                r#"{{"event":{i},"orgUnit":"DiszpKrYNg8","values":[1,2,3]}}"#
            ))
            .send()
            .await
            .unwrap();
    }
    let done = s.finished_n(&ch, 12).await;
    let detail = done.iter().find(|r| r["state"] == "success").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let id = ch["id"].as_str().unwrap();
    vec![
        ("dashboard", "/ui/".to_string()),
        ("dashboard-24h", "/ui/?window=24h".to_string()),
        ("channels", "/ui/channels".to_string()),
        ("history", format!("/ui/channels/{id}")),
        (
            "history-filtered",
            format!("/ui/channels/{id}?state=failed"),
        ),
        ("request", format!("/ui/requests/{detail}")),
        (
            "snapshot",
            format!("/ui/snapshots/{}", done[0]["snapshot_id"].as_str().unwrap()),
        ),
        ("channel-new", "/ui/channels/new".to_string()),
        ("channel-edit", format!("/ui/channels/{id}/edit")),
        ("credentials", "/ui/credentials".to_string()),
        (
            "credential-new",
            "/ui/credentials/new?schema=dhis2".to_string(),
        ),
        ("auth-methods", "/ui/auth-methods".to_string()),
        ("events", "/ui/events".to_string()),
        ("audit", "/ui/audit".to_string()),
        ("users", "/ui/admin/users".to_string()),
        ("projects", "/ui/admin/projects".to_string()),
        ("settings", "/ui/admin/settings".to_string()),
        ("catalog", "/ui/admin/catalog".to_string()),
        (
            "members",
            format!("/ui/projects/{}/members", default_project(s).await),
        ),
        ("password", "/ui/password".to_string()),
    ]
}

#[tokio::test]
async fn every_page_is_safe_self_contained_labelled_and_fits_a_phone() {
    // With a local adaptor catalogue: its types and an icon in the credential type picker.
    let catalogue = TempDir::new();
    let pkg = catalogue.path().join("packages/googlesheets");
    std::fs::create_dir_all(pkg.join("assets")).unwrap();
    let adaptors = adaptor_fixtures();
    for f in ["package.json", "configuration-schema.json"] {
        std::fs::copy(adaptors.join("packages/googlesheets").join(f), pkg.join(f)).unwrap();
    }
    std::fs::write(
        pkg.join("assets/square.svg"),
        r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><rect width="16" height="16" rx="3" fill="#1a7f37"/><path d="M4 5h8v2H4zm0 4h8v2H4z" fill="#fff"/></svg>"##,
    )
    .unwrap();
    let dirs = format!("{},{}", catalogue.path().display(), adaptors.display());
    let s = Sluice::start_in(Arc::new(TempDir::new()), &["--catalog-dir", &dirs]).await;
    add_user(&s, "ops", true).await;
    let up = upstream::start().await;
    let pages = every_page(&s, &up).await;
    // Where screenshots go: docs/img/ui with SLUICE_SCREENSHOTS=1 (bench/screenshots.sh), a
    // temporary directory otherwise.
    let shots = TempDir::new();
    let out = match std::env::var("SLUICE_SCREENSHOTS").as_deref() {
        Ok("1") => std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/img/ui"),
        _ => shots.path().to_path_buf(),
    };
    std::fs::create_dir_all(&out).unwrap();

    // Headers, from the server itself.
    let cookie = {
        let res = http()
            .post(format!("{}/ui/sign-in", s.base))
            .form(&[("username", "ops"), ("password", PASSWORD)])
            .send()
            .await
            .unwrap();
        res.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_string()
    };
    for (name, path) in pages
        .iter()
        .chain([&("sign-in", "/ui/sign-in".to_string())])
    {
        let res = http()
            .get(format!("{}{path}", s.base))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{name}");
        let h = res.headers();
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"),
            "{name}: {csp}"
        );
        assert_eq!(h["x-frame-options"], "DENY", "{name}");
        assert!(h.contains_key("referrer-policy"), "{name}");
    }

    for window in [
        Window {
            width: 1280,
            dark: false,
        },
        Window {
            width: 1280,
            dark: true,
        },
        Window {
            width: 390,
            dark: false,
        },
        Window {
            width: 390,
            dark: true,
        },
    ] {
        let Some(b) = Browser::start(window).await else {
            return;
        };
        let suffix = format!(
            "{}-{}",
            window.width,
            if window.dark { "dark" } else { "light" }
        );
        b.goto(&format!("{}/ui/sign-in", s.base)).await;
        std::fs::write(
            out.join(format!("sign-in-{suffix}.png")),
            b.client.screenshot().await.unwrap(),
        )
        .unwrap();
        b.sign_in(&s.base, "ops", PASSWORD).await;
        for (name, path) in &pages {
            b.goto(&format!("{}{path}", s.base)).await;
            // Nothing from another origin: every load the browser made was to sluice.
            let origins = b
                .js("return performance.getEntries().filter(e => e.name.startsWith('http')).map(e => new URL(e.name).origin)")
                .await;
            for o in origins.as_array().unwrap() {
                assert_eq!(o.as_str().unwrap(), s.base, "{name} loaded from {o}");
            }
            // The stylesheet applied (CSP did not block it).
            assert_eq!(
                b.js(
                    "return getComputedStyle(document.querySelector('main')).paddingTop !== '0px'"
                )
                .await,
                true,
                "{name}: stylesheet not applied"
            );
            // One h1, and no heading skips a level.
            let levels = b
                .js("return [...document.querySelectorAll('h1,h2,h3,h4')].map(h => Number(h.tagName[1]))")
                .await;
            let levels: Vec<u64> = levels
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap())
                .collect();
            assert_eq!(
                levels.iter().filter(|l| **l == 1).count(),
                1,
                "{name}: {levels:?}"
            );
            assert!(
                levels.windows(2).all(|w| w[1] <= w[0] + 1),
                "{name}: {levels:?}"
            );
            // Every field has a label; every button and link has a name.
            let unlabelled = b
                .js("return [...document.querySelectorAll('input:not([type=hidden]),select,textarea')]\
                     .filter(f => !(f.labels && f.labels.length) && !f.getAttribute('aria-label')).map(f => f.outerHTML)")
                .await;
            assert_eq!(unlabelled, json!([]), "{name}");
            let nameless = b
                .js("return [...document.querySelectorAll('a,button')].filter(e => !e.textContent.trim() && !e.getAttribute('aria-label')).map(e => e.outerHTML)")
                .await;
            assert_eq!(nameless, json!([]), "{name}");
            // Readable at phone width: the page itself never scrolls sideways.
            assert_eq!(
                b.js("return document.documentElement.scrollWidth <= window.innerWidth + 1")
                    .await,
                true,
                "{name} overflows at {suffix}"
            );
            let png = b.client.screenshot().await.unwrap();
            assert!(png.len() > 5_000, "{name}: blank screenshot");
            std::fs::write(out.join(format!("{name}-{suffix}.png")), png).unwrap();
        }
        b.close().await;
    }
}

#[tokio::test]
async fn a_channel_is_tested_created_edited_and_deleted_through_its_form() {
    let s = sluice_with_ops().await;
    let Some(b) = Browser::start(Window::DESKTOP).await else {
        return;
    };
    b.sign_in(&s.base, "ops", PASSWORD).await;
    b.goto(&format!("{}/ui/channels", s.base)).await;
    b.click("a[href^='/ui/channels/new']").await;
    assert_eq!(b.text("h1").await, "New channel");

    // Test a sink nobody listens on: each step, and the refused connection's hint.
    b.fill("#name", "clinic-feed").await;
    b.fill("#sink_url", "http://127.0.0.1:9/api").await;
    b.click("button[value=test]").await;
    let result = b.text("#test-result").await;
    assert!(result.contains("failed"), "{result}");
    let tcp = b.text("#test-result li[data-step=tcp]").await;
    assert!(tcp.contains("Port 9 is not accepting connections"), "{tcp}");
    assert!(b
        .text("#test-result li[data-step=syntax]")
        .await
        .starts_with("ok"));
    // Testing saved nothing, and the form kept what was typed.
    assert_eq!(s.get_json("/channels").await["items"], json!([]));
    assert_eq!(
        b.js("return document.getElementById('name').value").await,
        "clinic-feed"
    );

    // A bad setting is named next to its field; nothing is saved.
    b.fill("#connect_ms", "soon").await;
    b.click("button[value=save]").await;
    assert!(b
        .text("#channel-form")
        .await
        .contains("must be a whole number"));
    assert_eq!(s.get_json("/channels").await["items"], json!([]));
    b.fill("#connect_ms", "2500").await;
    b.click("button[value=save]").await;
    assert_eq!(b.text("h1").await, "clinic-feed");
    let list = s.get_json("/channels").await;
    let ch = list["items"][0].clone();
    assert_eq!(ch["sink_url"], "http://127.0.0.1:9/api");
    assert_eq!(ch["timeouts"]["connect_ms"], 2500);
    let id = ch["id"].as_str().unwrap().to_string();

    // Someone else renames it while the edit form is open: saving reports the conflict.
    b.click("a[href$='/edit']").await;
    b.fill("#name", "clinic-feed-2").await;
    let res = s
        .api(Method::PATCH, &format!("/channels/{id}"))
        .json(&json!({ "lock_version": ch["lock_version"], "name": "theirs" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    b.click("button[value=save]").await;
    assert!(b.text("#problem").await.contains("Changed by someone else"));
    assert_eq!(
        s.get_json(&format!("/channels/{id}")).await["name"],
        "theirs"
    );
    // Reloading shows their change; saving then works.
    b.click("#problem a").await;
    assert_eq!(
        b.js("return document.getElementById('name').value").await,
        "theirs"
    );
    b.fill("#name", "clinic-feed-2").await;
    b.click("button[value=save]").await;
    assert_eq!(b.text("h1").await, "clinic-feed-2");

    // With history, deleting needs the history to go too, and says so.
    let res = s
        .http()
        .get(format!("{}/channels/{id}/x", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 502);
    s.finished_n(&json!({ "id": id }), 1).await;
    b.click("a[href$='/edit']").await;
    assert!(b
        .text("section.danger-zone")
        .await
        .contains("1 recorded requests"));
    b.js("window.confirm = () => true").await;
    b.click("section.danger-zone button").await;
    assert!(b.text("#problem").await.contains("recorded requests"));
    assert_eq!(
        s.get_json(&format!("/channels/{id}")).await["id"],
        id.as_str()
    );
    b.js("window.confirm = () => true").await;
    b.click_here("#purge").await;
    b.click("section.danger-zone button").await;
    assert_eq!(b.text("h1").await, "Channels");
    let res = s
        .api(Method::GET, &format!("/channels/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    b.close().await;
}

#[tokio::test]
async fn a_dhis2_credential_is_made_from_its_schema_form_and_its_secret_stays_hidden() {
    let s = sluice_with_ops().await;
    let Some(b) = Browser::start(Window::DESKTOP).await else {
        return;
    };
    b.sign_in(&s.base, "ops", PASSWORD).await;
    b.goto(&format!("{}/ui/credentials", s.base)).await;
    b.click("a[href*='schema=dhis2']").await;
    // The form has the schema's fields, in the schema's order.
    let schema: Value =
        serde_json::from_str(include_str!("../../sluice-admin/schemas/dhis2.json")).unwrap();
    let order: Vec<&str> = schema["properties"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let shown = b
        .js("return [...document.querySelectorAll('.schema-field')].map(d => d.dataset.field)")
        .await;
    assert_eq!(shown, json!(order));
    assert_eq!(
        b.js("return document.getElementById('field-password').type")
            .await,
        "password"
    );
    assert_eq!(
        b.js("return document.getElementById('field-hostUrl').required")
            .await,
        true
    );

    // What the schema refuses is named at its field (the browser's own check bypassed).
    b.fill("#name", "play").await;
    b.fill("#field-hostUrl", "not a url").await;
    b.js("document.querySelectorAll('input').forEach(i => { i.required = false; i.type = i.type === 'url' ? 'text' : i.type; })").await;
    b.click("#credential-form button[type=submit]").await;
    let field = b
        .text(".schema-field[data-field=hostUrl] .field-error")
        .await;
    assert!(!field.is_empty());
    assert_eq!(s.get_json("/credentials").await["items"], json!([]));

    b.fill("#field-hostUrl", "https://play.dhis2.org/40").await;
    b.fill("#field-username", "admin").await;
    b.fill("#field-password", "district-secret").await;
    b.click("#credential-form button[type=submit]").await;
    let row = b.text("#credentials tbody tr").await;
    assert!(
        row.contains("https://play.dhis2.org/40") && row.contains("password: set"),
        "{row}"
    );
    assert!(!b.client.source().await.unwrap().contains("district-secret"));
    let c = s.get_json("/credentials").await["items"][0].clone();
    assert_eq!(c["schema"], "dhis2");
    assert_eq!(c["secret_fields"], json!(["password"]));

    // Editing: the secret is "set", never shown; left empty it is kept.
    b.click("a[href$='/edit']").await;
    assert_eq!(
        b.js("return document.getElementById('field-password').value")
            .await,
        ""
    );
    assert!(b
        .text(".schema-field[data-field=password] label")
        .await
        .contains("set"));
    assert!(!b.client.source().await.unwrap().contains("district-secret"));
    b.fill("#field-username", "ops-user").await;
    b.click("#credential-form button[type=submit]").await;
    let c = s
        .get_json(&format!("/credentials/{}", c["id"].as_str().unwrap()))
        .await;
    assert_eq!(c["body"]["username"], "ops-user");
    assert_eq!(c["secret_fields"], json!(["password"]));
    b.close().await;
}

#[tokio::test]
async fn an_api_key_is_shown_once_and_admits_callers() {
    let s = sluice_with_ops().await;
    let up = upstream::start().await;
    let Some(b) = Browser::start(Window::DESKTOP).await else {
        return;
    };
    b.sign_in(&s.base, "ops", PASSWORD).await;
    b.goto(&format!("{}/ui/auth-methods", s.base)).await;
    b.fill("#am-name", "clinic-app").await;
    b.click("#auth-form button[type=submit]").await;
    let key = b.text("#api-key").await;
    assert!(key.len() >= 20, "{key}");
    assert_eq!(
        b.js("return document.querySelector('#new-key button[data-copy]').dataset.copy")
            .await,
        key.as_str()
    );
    let method = s.get_json("/auth-methods").await["items"][0].clone();
    let ch = s
        .create_channel(
            &up.url("/"),
            json!({ "source_auth_method_ids": [method["id"]] }),
        )
        .await;
    let call = |k: Option<String>| {
        let mut rb = s.http().get(s.proxy_url(&ch, "/x"));
        if let Some(k) = k {
            rb = rb.header("x-api-key", k);
        }
        rb.send()
    };
    assert_eq!(call(None).await.unwrap().status(), 401);
    assert_eq!(call(Some(key.clone())).await.unwrap().status(), 200);
    // Never shown again.
    b.goto(&format!("{}/ui/auth-methods", s.base)).await;
    assert_eq!(b.count("#api-key").await, 0);
    assert!(!b.client.source().await.unwrap().contains(&key));
    // Attached to a channel, it cannot be deleted; the page says why.
    b.js("window.confirm = () => true").await;
    b.click(&format!(
        "tr[data-method='{}'] button",
        method["id"].as_str().unwrap()
    ))
    .await;
    assert!(b.text("#problem").await.contains("attached to channels"));
    b.close().await;
}

#[tokio::test]
async fn a_health_flip_appears_live_in_the_event_log() {
    let sink = upstream::start().await;
    let s = Sluice::start_in(
        Arc::new(TempDir::new()),
        &[
            "--health-interval",
            "200ms",
            "--passive-health-failures",
            "0",
        ],
    )
    .await;
    add_user(&s, "ops", true).await;
    let ch = s
        .create_channel(&sink.url("/"), json!({ "name": "flaky" }))
        .await;
    let id = ch["id"].as_str().unwrap().to_string();
    // Healthy first: that is no flip.
    let deadline = Instant::now() + Duration::from_secs(10);
    while s.get_json(&format!("/channels/{id}")).await["health_status"] != "healthy" {
        assert!(Instant::now() < deadline, "never healthy");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let Some(b) = Browser::start(Window::DESKTOP).await else {
        return;
    };
    b.sign_in(&s.base, "ops", PASSWORD).await;
    b.goto(&format!("{}/ui/events?severity=warn", s.base)).await;
    b.wait_for(
        "the live stream",
        "return document.getElementById('live-status').textContent === 'live'",
    )
    .await;
    b.js("window.notReloaded = true").await;
    let before = b.count("#events tbody tr[data-event]").await;
    drop(sink);
    b.wait_for(
        "the flip to appear",
        &format!("return [...document.querySelectorAll('#events tbody tr[data-event]')].some(r => r.textContent.includes('{id}'))"),
    )
    .await;
    assert_eq!(b.js("return window.notReloaded === true").await, true);
    assert!(b.count("#events tbody tr[data-event]").await > before);
    let row = b.text("#events tbody tr:first-child").await;
    assert!(row.contains("warn") && row.contains("health"), "{row}");
    b.close().await;
}

#[tokio::test]
async fn a_superuser_adds_people_and_projects_and_the_audit_shows_each_change() {
    let s = sluice_with_ops().await;
    let up = upstream::start().await;
    let Some(b) = Browser::start(Window::DESKTOP).await else {
        return;
    };
    b.sign_in(&s.base, "ops", PASSWORD).await;
    // A new user gets a one-time password, shown once.
    b.goto(&format!("{}/ui/admin/users", s.base)).await;
    b.fill("#u-name", "nia").await;
    b.click("#user-form button[type=submit]").await;
    let once = b.text("#one-time-password").await;
    assert_eq!(once.len(), 20, "{once}");
    b.goto(&format!("{}/ui/admin/users", s.base)).await;
    assert_eq!(b.count("#one-time-password").await, 0);
    assert!(b
        .text("tr[data-user=nia]")
        .await
        .contains("must change password"));

    // A project, with nia as its editor.
    b.goto(&format!("{}/ui/admin/projects", s.base)).await;
    b.fill("#p-name", "clinics").await;
    b.click("#project-form button[type=submit]").await;
    assert_eq!(b.text("h1").await, "Members of clinics");
    b.fill("#m-user", "nia").await;
    b.click_here("#m-role option[value=editor]").await;
    b.click("#member-form button[type=submit]").await;
    assert_eq!(
        b.js("return document.querySelector('tr[data-member=nia] select').value")
            .await,
        "editor"
    );
    let project = b
        .url()
        .await
        .split("/ui/projects/")
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    // An unknown name is refused in words.
    b.fill("#m-user", "nobody").await;
    b.click("#member-form button[type=submit]").await;
    assert!(b.text("#problem").await.contains("no user has this name"));

    // nia signs in, must choose a password, then works in that project only.
    b.click(".top form[action='/ui/sign-out'] button").await;
    b.sign_in(&s.base, "nia", &once).await;
    assert!(b.url().await.ends_with("/ui/password"));
    b.fill("#current_password", &once).await;
    b.fill("#new_password", PASSWORD).await;
    b.fill("#repeat_password", PASSWORD).await;
    b.click("button[type=submit]").await;
    let options = b.js("return [...document.querySelectorAll('#project-switch option')].map(o => o.textContent)").await;
    assert_eq!(options, json!(["clinics"]));
    assert!(b.text(".who").await.contains("editor"));
    // No administration for her, and the page says no when she goes there anyway.
    assert_eq!(b.count("nav a[href='/ui/admin/users']").await, 0);
    for page in ["users", "settings"] {
        b.goto(&format!("{}/ui/admin/{page}", s.base)).await;
        assert!(b.text("h1").await.starts_with("403"), "{page}");
    }
    b.goto(&format!("{}/ui/channels?project={project}", s.base))
        .await;
    b.click("a[href^='/ui/channels/new']").await;
    b.fill("#name", "intake").await;
    b.fill("#sink_url", &up.url("/")).await;
    b.click("button[value=save]").await;
    assert_eq!(b.text("h1").await, "intake");
    b.click(".top form[action='/ui/sign-out'] button").await;

    // The audit trail shows what nia did, and what each change was.
    b.sign_in(&s.base, "ops", PASSWORD).await;
    let ch = s.get_json(&format!("/channels?project_id={project}")).await["items"][0].clone();
    let res = s
        .api(
            Method::PATCH,
            &format!("/channels/{}", ch["id"].as_str().unwrap()),
        )
        .json(&json!({ "lock_version": ch["lock_version"], "name": "intake-v2" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    b.goto(&format!("{}/ui/audit?actor=user:nia", s.base)).await;
    let entries = b
        .js("return [...document.querySelectorAll('ol.audit > li')].map(l => l.textContent)")
        .await;
    let entries: Vec<String> = entries
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap().to_string())
        .collect();
    assert!(!entries.is_empty());
    assert!(
        entries.iter().all(|e| e.contains("user:nia")),
        "{entries:?}"
    );
    assert!(entries.iter().any(|e| e.contains("channel")), "{entries:?}");
    b.goto(&format!(
        "{}/ui/audit?resource_type=channel&resource_id={}",
        s.base,
        ch["id"].as_str().unwrap()
    ))
    .await;
    let diff = b.text("ol.audit > li:first-child table.diff").await;
    assert!(
        diff.contains("name") && diff.contains("intake") && diff.contains("intake-v2"),
        "{diff}"
    );

    // Disabling nia ends her sign-ins; resetting gives a new one-time password.
    b.goto(&format!("{}/ui/admin/users", s.base)).await;
    b.click("tr[data-user=nia] button[value=disable]").await;
    assert!(b.text("tr[data-user=nia]").await.contains("disabled"));
    let res = http()
        .post(format!("{}/api/v1/session", s.base))
        .json(&json!({ "username": "nia", "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    b.click("tr[data-user=nia] button[value=reset]").await;
    assert_ne!(b.text("#one-time-password").await, once);
    b.close().await;
}

#[tokio::test]
async fn a_superuser_changes_a_setting_in_its_form_and_a_bad_value_is_named() {
    let s = sluice_with_ops().await;
    let Some(b) = Browser::start(Window::DESKTOP).await else {
        return;
    };
    b.sign_in(&s.base, "ops", PASSWORD).await;
    b.goto(&format!("{}/ui/admin/users", s.base)).await;
    b.click(".subnav a[href='/ui/admin/settings']").await;
    assert_eq!(b.text("h1").await, "Settings");
    let field = "#s-stale_threshold_days";
    let value = || b.js("return document.querySelector('#s-stale_threshold_days').value");
    assert_eq!(value().await, "", "at its default");
    assert_eq!(
        b.js("return document.querySelector('#s-stale_threshold_days').placeholder")
            .await,
        "7"
    );

    b.fill(field, "soon").await;
    b.click("#settings-form button[type=submit]").await;
    assert!(b.text("#problem").await.contains("stale_threshold_days"));
    assert_eq!(
        b.js(
            "return document.querySelector('#s-stale_threshold_days').getAttribute('aria-invalid')"
        )
        .await,
        "true"
    );
    assert_eq!(
        value().await,
        "soon",
        "what was typed stays to be corrected"
    );

    b.fill(field, "3").await;
    b.click("#settings-form button[type=submit]").await;
    assert_eq!(b.text("#saved").await, "Saved.");
    let saved = s.get_json("/settings").await;
    let stale = saved["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "stale_threshold_days")
        .unwrap()
        .clone();
    assert_eq!(
        (&stale["value"], &stale["saved"]),
        (&json!(3), &json!(true))
    );
    b.goto(&format!("{}/ui/admin/settings", s.base)).await;
    assert_eq!(value().await, "3");

    b.fill(field, "").await;
    b.click("#settings-form button[type=submit]").await;
    assert_eq!(value().await, "", "back to its default");
    b.close().await;
}

#[tokio::test]
async fn a_superuser_refreshes_the_catalogue_from_its_page_and_sees_what_changed() {
    let adaptors = adaptor_fixtures();
    let s = Sluice::start_in(
        Arc::new(TempDir::new()),
        &["--catalog-dir", adaptors.to_str().unwrap()],
    )
    .await;
    add_user(&s, "ops", true).await;
    let Some(b) = Browser::start(Window::DESKTOP).await else {
        return;
    };
    b.sign_in(&s.base, "ops", PASSWORD).await;
    b.goto(&format!("{}/ui/admin/settings", s.base)).await;
    b.click(".subnav a[href='/ui/admin/catalog']").await;
    assert_eq!(b.text("h1").await, "Adaptor catalogue");
    assert_eq!(b.text("#last-refresh").await, "Never refreshed.");

    b.click("#refresh-form button[type=submit]").await;
    let note = b.text("#refreshed").await;
    assert!(note.contains("4 listed: 4 added"), "{note}");
    let rows = b
        .js("return document.querySelectorAll('#adaptors tbody tr[data-adaptor]').length.toString()")
        .await;
    assert_eq!(rows, "4");
    assert!(b.text("#refreshes").await.contains("api"));
    assert!(b
        .text("#counts")
        .await
        .contains("offered as credential types"));

    // Again: nothing new.
    b.click("#refresh-form button[type=submit]").await;
    assert!(b.text("#refreshed").await.contains("0 added, 0 updated"));
    b.close().await;
}

#[tokio::test]
async fn a_project_admin_switches_recording_to_metadata_only_and_requests_keep_no_content() {
    let s = sluice_with_ops().await;
    let up = upstream::start().await;
    let ch = s.create_channel(&up.url("/"), json!({})).await;
    let project = ch["project_id"].as_str().unwrap().to_string();
    let Some(b) = Browser::start(Window::DESKTOP).await else {
        return;
    };
    b.sign_in(&s.base, "ops", PASSWORD).await;
    b.goto(&format!("{}/ui/projects/{project}/members", s.base))
        .await;
    assert!(b.text("#recording-now").await.starts_with("Full"));
    b.js("document.querySelector('#recording-form select').value = 'metadata'")
        .await;
    b.click("#recording-form button[type=submit]").await;
    assert!(b.text("#recording-now").await.starts_with("Metadata only"));
    let shown = s.get_json(&format!("/projects/{project}")).await;
    assert_eq!(shown["recording"], "metadata");

    let res = s
        .http()
        .post(s.proxy_url(&ch, "/private/zebra-path?who=zebra"))
        .header("x-request-id", "ui-metadata-only-0000000001")
        .body("zebra's data")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let rec = s.finished(&ch, "ui-metadata-only-0000000001").await;
    b.goto(&format!(
        "{}/ui/requests/{}",
        s.base,
        rec["id"].as_str().unwrap()
    ))
    .await;
    assert!(b.text("#wiped").await.contains("policy:metadata-only"));
    let main = b.text("main").await;
    assert!(!main.contains("zebra"), "nothing of it is shown: {main}");
    b.close().await;
}
