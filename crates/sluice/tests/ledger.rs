//! The ledger as plain SQL: an older ledger upgraded in place, the history read with the
//! `sqlite3` and `psql` shells while traffic flows, outcomes that survive `kill -9`, callers
//! sharing a request id, and a finished request read with its event before its row commits.

mod common;

use std::collections::{HashMap, HashSet};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{postgres::TestDatabase, upstream, Sluice, TempDir};
use serde_json::{json, Value};

/// Copies the directory `from` into `to`, recursively.
fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A ledger written by the format before the plain ledger (request batches, event files, the
/// in-flight file; `tests/fixtures/ledger-batched/make.sh`) is upgraded by `sluice migrate`,
/// and the API then answers for every request and event exactly what it answered before.
#[tokio::test]
async fn a_ledger_of_the_batched_format_reads_back_unchanged_after_sluice_migrate() {
    let fixture =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ledger-batched");
    let data = Arc::new(TempDir::new());
    copy_dir(&fixture.join("data"), data.path());
    let key = data.path().join("secret.key");
    let mut perms = std::fs::metadata(&key).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o600);
    std::fs::set_permissions(&key, perms).unwrap();

    common::run(&["migrate", "--data-dir", data.path().to_str().unwrap()]);
    for gone in ["sluice-events", "sluice-inflight.db"] {
        assert!(
            !data.path().join(gone).exists(),
            "{gone} is imported and removed"
        );
    }
    let db = data.path().join("sluice.db");
    let rows = sqlite3(
        &db,
        "SELECT COUNT(*) FROM requests WHERE request_headers IS NOT NULL",
    );
    assert_eq!(rows.trim(), "39", "every request is a row with its event");

    let s = Sluice::start_in(data, &[]).await;
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture.join("expected.json")).unwrap())
            .unwrap();
    for (channel, want) in expected["channels"].as_object().unwrap() {
        let list = s
            .get_json(&format!("/channels/{channel}/requests?limit=500"))
            .await;
        assert_eq!(list, want["list"], "the history of {channel}");
        for (id, detail) in want["details"].as_object().unwrap() {
            let mut got = s.get_json(&format!("/requests/{id}")).await;
            // Added since the fixture was written: who wiped it (no one).
            let wiped = got.as_object_mut().unwrap().remove("wiped");
            assert_eq!(wiped, Some(Value::Null), "request {id}");
            assert_eq!(&got, detail, "request {id}");
        }
        // The statistics count the imported requests.
        let stats = s
            .get_json(&format!(
                "/channels/{channel}/stats?since=2026-01-01T00:00:00Z"
            ))
            .await;
        let n = want["list"]["items"].as_array().unwrap().len();
        assert_eq!(stats["total"], json!(n), "{stats}");
    }
}

/// Runs `sql` in the `sqlite3` shell against `db`; returns what it printed.
fn sqlite3(db: &std::path::Path, sql: &str) -> String {
    let out = Command::new("sqlite3")
        .arg(db)
        .arg(sql)
        .output()
        .expect("the sqlite3 shell (Debian package sqlite3)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs `sql` in `psql` against `url` (unaligned, tuples only); returns what it printed.
fn psql(url: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .args([url, "-At", "-F", "|", "-c", sql])
        .output()
        .expect("the psql shell");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The question of the acceptance list, in SQL both shells run: how many requests of the
/// channel failed in the last minute, and which request ids were they.
fn failed_last_minute(channel: &str, now_us: i64) -> String {
    format!(
        "SELECT request_id FROM requests WHERE channel_id = '{channel}' AND state = 'failed' \
         AND started_at >= {} ORDER BY request_id",
        now_us - 60_000_000
    )
}

fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
}

/// Sends `n` requests through `channel`, every third answered 503 by the sink; returns the
/// request ids of those that failed.
async fn send_some_failing(s: &Sluice, channel: &Value, n: usize) -> HashSet<String> {
    let mut failed = HashSet::new();
    for i in 0..n {
        let rid = common::rid();
        let path = if i % 3 == 0 { "/status/503" } else { "/ok" };
        let res = s
            .http()
            .post(s.proxy_url(channel, path))
            .header("x-request-id", &rid)
            .body("{}")
            .send()
            .await
            .unwrap();
        if res.status() == 503 {
            failed.insert(rid);
        }
    }
    failed
}

/// Keeps sending successful requests through `channel` until the returned flag is set.
fn background_traffic(
    s: &Sluice,
    channel: &Value,
) -> (
    Arc<std::sync::atomic::AtomicBool>,
    Vec<tokio::task::JoinHandle<u64>>,
) {
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let tasks = (0..4)
        .map(|_| {
            let (c, url, stop) = (s.http().clone(), s.proxy_url(channel, "/ok"), stop.clone());
            tokio::spawn(async move {
                let mut sent = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let _ = c.post(&url).body("{}").send().await;
                    sent += 1;
                }
                sent
            })
        })
        .collect();
    (stop, tasks)
}

/// Asks `ask` until it answers `want` (the writer commits within milliseconds), or fails.
async fn answers(want: &str, ask: impl Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = ask();
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the shell answered {got:?}, not {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_sqlite3_shell_answers_which_requests_failed_in_the_last_minute_under_traffic() {
    let up = upstream::start().await;
    let s = Sluice::start().await;
    let ch = s.create_channel(&up.url("/"), json!({})).await;
    let busy = s
        .create_channel(&up.url("/"), json!({ "name": "busy" }))
        .await;
    let (stop, tasks) = background_traffic(&s, &ch);
    let (stop_busy, busy_tasks) = background_traffic(&s, &busy);
    let start = now_us();
    let failed = send_some_failing(&s, &ch, 30).await;
    assert_eq!(failed.len(), 10);
    let mut want: Vec<&String> = failed.iter().collect();
    want.sort();
    let want = want.iter().map(|r| format!("{r}\n")).collect::<String>();
    let db = s.data.path().join("sluice.db");
    let sql = failed_last_minute(ch["id"].as_str().unwrap(), start + 59_000_000);
    answers(&want, || sqlite3(&db, &sql)).await;
    for (flag, tasks) in [(stop, tasks), (stop_busy, busy_tasks)] {
        flag.store(true, std::sync::atomic::Ordering::Relaxed);
        let sent: u64 = futures_util::future::join_all(tasks)
            .await
            .into_iter()
            .map(Result::unwrap)
            .sum();
        assert!(sent > 0, "traffic flowed while the shell read");
    }
}

#[tokio::test]
async fn psql_answers_which_requests_failed_in_the_last_minute_under_traffic() {
    let Some(db) = TestDatabase::create("sluice_psql").await else {
        return;
    };
    let up = upstream::start().await;
    let s = Sluice::start_on(Arc::new(TempDir::new()), Some(&db.url), &[]).await;
    let ch = s.create_channel(&up.url("/"), json!({})).await;
    let (stop, tasks) = background_traffic(&s, &ch);
    let start = now_us();
    let failed = send_some_failing(&s, &ch, 30).await;
    let mut want: Vec<&String> = failed.iter().collect();
    want.sort();
    let want = want.iter().map(|r| format!("{r}\n")).collect::<String>();
    let sql = failed_last_minute(ch["id"].as_str().unwrap(), start + 59_000_000);
    answers(&want, || psql(&db.url, &sql)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in tasks {
        assert!(t.await.unwrap() > 0);
    }
    drop(s);
    db.drop().await;
}

/// `kill -9` under the load of 8 clients: after the restart nothing is pending, and every
/// request whose caller was answered is recorded once, with the status the caller received.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn after_kill_9_under_load_every_answered_request_is_recorded_with_its_status() {
    let up = upstream::start().await;
    let data = Arc::new(TempDir::new());
    let mut s = Sluice::start_in(data.clone(), &[]).await;
    let ch = s.create_channel(&up.url("/"), json!({})).await;
    let cid = ch["id"].as_str().unwrap().to_string();
    let answered = Arc::new(std::sync::Mutex::new(HashMap::<String, u16>::new()));
    let clients: Vec<_> = (0..8)
        .map(|c| {
            let (http, answered) = (s.http().clone(), answered.clone());
            let (ok, failing) = (s.proxy_url(&ch, "/ok"), s.proxy_url(&ch, "/status/502"));
            tokio::spawn(async move {
                for i in 0.. {
                    let rid = common::rid();
                    let url = if (i + c) % 4 == 0 { &failing } else { &ok };
                    let sent = http
                        .post(url)
                        .header("x-request-id", &rid)
                        .body("{}")
                        .send()
                        .await;
                    let Ok(res) = sent else { return };
                    let status = res.status().as_u16();
                    // Answered: the whole response came back.
                    if res.bytes().await.is_ok() {
                        answered.lock().unwrap().insert(rid, status);
                    } else {
                        return;
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    s.kill();
    for c in clients {
        c.await.unwrap();
    }
    let answered = answered.lock().unwrap().clone();
    assert!(answered.len() > 100, "load was running: {}", answered.len());

    let s = Sluice::start_in(data, &[]).await;
    let mut recorded: HashMap<String, Vec<Value>> = HashMap::new();
    for r in common::every_request(&s, &cid).await {
        assert_ne!(r["state"], "pending", "nothing is left pending: {r}");
        let rid = r["request_id"].as_str().unwrap().to_string();
        recorded.entry(rid).or_default().push(r);
    }
    let mut interrupted = 0;
    for (rid, status) in &answered {
        let rows = recorded
            .get(rid)
            .unwrap_or_else(|| panic!("{rid} answered {status} but not recorded"));
        assert_eq!(rows.len(), 1, "{rid} recorded once");
        if rows[0]["error"] == "interrupted" {
            interrupted += 1;
        }
        assert_eq!(
            rows[0]["response_status"],
            json!(status),
            "{rid}: {}",
            rows[0]
        );
    }
    assert_eq!(
        interrupted, 0,
        "no answered request is recorded as interrupted"
    );
}

/// Eight callers sending the same `x-request-id` at once each get a record of their own, and
/// the ledger writes them without a failure or a retry.
#[tokio::test]
async fn eight_callers_sharing_a_request_id_are_each_recorded_without_a_retry() {
    let pg = TestDatabase::create("sluice_same_id").await;
    let mut ledgers = vec![None];
    if let Some(db) = &pg {
        ledgers.push(Some(db.url.clone()));
    }
    for database_url in ledgers {
        let up = upstream::start().await;
        let data = TempDir::new();
        let dir = data.path().to_str().unwrap().to_string();
        let mut args = vec!["--data-dir".to_string(), dir];
        if let Some(url) = &database_url {
            args.extend(["--database-url".to_string(), url.clone()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let token = common::run(&[&["token", "create", "--name", "t"], &args[..]].concat());
        let token = token.lines().last().unwrap().trim().to_string();
        let extra: Vec<&str> = args[2..].to_vec();
        let s = common::serve_logged(&data, &extra).await;
        let http = reqwest::Client::new();
        let ch: Value = http
            .post(format!("{}/api/v1/channels", s.base))
            .bearer_auth(&token)
            .json(&json!({ "name": "same", "sink_url": up.url("/") }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let url = format!("{}/channels/{}/x", s.base, ch["id"].as_str().unwrap());
        let rid = common::rid();
        let sends = (0..8).map(|_| {
            http.post(&url)
                .header("x-request-id", &rid)
                .body("{}")
                .send()
        });
        for res in futures_util::future::join_all(sends).await {
            assert_eq!(res.unwrap().status(), 200);
        }
        let list_url = format!(
            "{}/api/v1/channels/{}/requests?request_id={rid}",
            s.base,
            ch["id"].as_str().unwrap()
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let page: Value = http
                .get(&list_url)
                .bearer_auth(&token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let items = page["items"].as_array().unwrap();
            if items.len() == 8 && items.iter().all(|r| r["state"] == "success") {
                let ids: HashSet<&str> = items.iter().map(|r| r["id"].as_str().unwrap()).collect();
                assert_eq!(ids.len(), 8, "a record each");
                break;
            }
            assert!(Instant::now() < deadline, "{page}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let log = s.stderr.lock().unwrap().clone();
        for bad in ["retrying", "could not record", "failed"] {
            assert!(
                !log.contains(bad),
                "{database_url:?}: {bad} in the log:\n{log}"
            );
        }
    }
    if let Some(db) = pg {
        db.drop().await;
    }
}

/// A sluice whose history thread waits 300 ms to gather completions (so a finished request's
/// row commits well after its answer), an upstream and a channel to it.
async fn slow_commits() -> (upstream::Upstream, Sluice, Value) {
    let up = upstream::start().await;
    let s = Sluice::start_in(
        Arc::new(TempDir::new()),
        &["--ledger-completion-delay-ms", "300"],
    )
    .await;
    let ch = s.create_channel(&up.url("/"), json!({})).await;
    (up, s, ch)
}

/// A request whose outcome is known but whose row is still waiting for its group commit is
/// not shown finished without its headers: reading it waits for the row (the window is
/// widened here to 300 ms).
#[tokio::test]
async fn a_finished_request_is_read_with_its_event_before_its_row_commits() {
    let (_up, s, ch) = slow_commits().await;
    for _ in 0..3 {
        let (status, rid) = s.post_with_id(&ch, "/ok").await;
        assert_eq!(status, 200);
        let rec = s.finished(&ch, &rid).await;
        assert_eq!(rec["state"], "success");
        assert!(
            rec["event"]["request_headers"].is_array(),
            "finished without its event: {rec}"
        );
    }
}

/// A request answered but whose row waits for its group commit counts in the statistics and
/// the channel list at once, by its outcome (the window is widened here to 300 ms).
#[tokio::test]
async fn a_finished_request_counts_in_the_statistics_before_its_row_commits() {
    let (_up, s, ch) = slow_commits().await;
    let id = ch["id"].as_str().unwrap();
    let res = s
        .http()
        .post(s.proxy_url(&ch, "/status/503"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    let _ = res.bytes().await.unwrap();
    let stats = s.get_json(&format!("/channels/{id}/stats")).await;
    assert_eq!(stats["total"], 1, "{stats}");
    assert_eq!(stats["by_state"]["failed"], 1, "{stats}");
    let list = s.get_json("/channels").await;
    let listed = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap()
        .clone();
    assert_eq!(listed["requests_24h"]["failed"], 1, "{listed}");
    assert!(
        listed["last_request_at"].is_string(),
        "its last activity too: {listed}"
    );
}
