//! `sluice backup`: a copy of a SQLite ledger taken while sluice serves from it holds every
//! request answered before the backup began, and `sluice serve` starts from it as it is.

mod common;

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{rid, upstream, Sluice, TempDir};
use reqwest::Method;
use serde_json::{json, Value};

/// Concurrent callers of the load.
const CALLERS: usize = 4;

#[tokio::test]
async fn a_backup_taken_under_load_holds_every_request_answered_before_it_and_starts_as_is() {
    let up = upstream::start().await;
    let data = Arc::new(TempDir::new());
    // Completions wait up to 300 ms before their rows commit: the requests answered in the
    // last moments before the backup are then in the journal only, which the backup copies.
    let mut s = Sluice::start_in(
        data.clone(),
        &[
            "--ledger-completion-delay-ms",
            "300",
            "--health-interval",
            "0",
        ],
    )
    .await;
    // A credential sealed with the data directory's key: the copy must open it.
    let access_token = format!("backup-access-token-{}", uuid::Uuid::new_v4().simple());
    let res = s
        .api(Method::POST, "/credentials")
        .json(&json!({"name": "h", "schema": "http", "body": {"access_token": access_token}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let cred: Value = res.json().await.unwrap();
    let ch = s
        .create_channel(&up.url("/"), json!({"sink_credential_id": cred["id"]}))
        .await;
    let cid = ch["id"].as_str().unwrap().to_string();

    // The load: each caller sends requests one after another, each with its own id, and
    // records the ids whose whole answer came back.
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(Mutex::new(Vec::<String>::new()));
    let failed = Arc::new(AtomicU64::new(0));
    let mut callers = Vec::new();
    for _ in 0..CALLERS {
        let (client, url) = (reqwest::Client::new(), s.proxy_url(&ch, "/load"));
        let (stop, answered, failed) = (stop.clone(), answered.clone(), failed.clone());
        callers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let id = rid();
                let sent = client
                    .post(&url)
                    .header("x-request-id", &id)
                    .body("payload")
                    .send()
                    .await;
                let whole = match sent {
                    Ok(res) if res.status() == 200 => res.bytes().await.is_ok(),
                    _ => false,
                };
                if whole {
                    answered.lock().unwrap().push(id);
                } else {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    let count = || answered.lock().unwrap().len();
    let deadline = Instant::now() + Duration::from_secs(30);
    while count() < 300 {
        assert!(Instant::now() < deadline, "only {} answers", count());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // These were answered before the backup began.
    let before: HashSet<String> = answered.lock().unwrap().iter().cloned().collect();

    let copy = Arc::new(TempDir::new());
    let args = [
        "backup".to_string(),
        copy.path().display().to_string(),
        "--data-dir".to_string(),
        data.path().display().to_string(),
    ];
    // Off the runtime's thread, so the load goes on while the backup runs.
    let out = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        common::run(&args)
    })
    .await
    .unwrap();
    eprintln!("sluice backup printed:\n{out}");
    let during = count() - before.len();
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    for c in callers {
        c.await.unwrap();
    }
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "every request was answered"
    );
    eprintln!(
        "{} requests answered before the backup, {during} while it ran, {} in all",
        before.len(),
        count()
    );
    assert_eq!(
        out.lines().last().unwrap(),
        format!(
            "to start from it: sluice serve --data-dir {}",
            copy.path().display()
        )
    );
    assert!(out.contains("request rows"), "{out}");
    let key = copy.path().join("secret.key");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600,
        "the key file stays private"
    );
    assert_eq!(
        std::fs::read(&key).unwrap(),
        std::fs::read(data.path().join("secret.key")).unwrap()
    );
    assert_eq!(
        std::fs::read(copy.path().join("node.id")).unwrap(),
        std::fs::read(data.path().join("node.id")).unwrap()
    );
    for entry in std::fs::read_dir(copy.path().join("sluice-journal")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        assert!(name.ends_with(".jsonl"), "only segments are copied: {name}");
    }
    s.stop().await;

    // The copy starts as it is.
    let r = Sluice::start_in(copy.clone(), &["--health-interval", "0"]).await;
    let rows = common::every_request(&r, &cid).await;
    let states: HashMap<&str, &str> = rows
        .iter()
        .map(|row| {
            (
                row["request_id"].as_str().unwrap(),
                row["state"].as_str().unwrap(),
            )
        })
        .collect();
    assert!(
        rows.iter().all(|row| row["state"] != "pending"),
        "no request of the copy is pending"
    );
    let missing: Vec<&String> = before
        .iter()
        .filter(|id| !states.contains_key(id.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} requests answered before the backup are not in it: {:?}",
        missing.len(),
        before.len(),
        &missing[..missing.len().min(5)]
    );
    for id in &before {
        assert_eq!(states[id.as_str()], "success", "request {id}");
    }
    assert!(rows.len() >= before.len());

    // The configuration came along, and the copied key opens the credential: the sink gets
    // its token through the restored server.
    let channels = r.get_json("/channels").await;
    assert!(
        channels["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["id"] == cid.as_str()),
        "{channels}"
    );
    let res = r
        .http()
        .get(r.url(&format!("/channels/{cid}/echo")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let echo: Value = res.json().await.unwrap();
    let sent = echo["headers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h[0] == "authorization")
        .map(|h| h[1].as_str().unwrap().to_string());
    assert_eq!(sent, Some(format!("Bearer {access_token}")));
}

#[tokio::test]
async fn a_backup_into_a_directory_that_is_not_empty_fails_and_changes_nothing() {
    let data = TempDir::new();
    let dir = data.path().display().to_string();
    common::run(&["migrate", "--data-dir", &dir]);
    let root = TempDir::new();

    // A directory of someone else's files.
    let taken = root.path().join("taken");
    std::fs::create_dir(&taken).unwrap();
    std::fs::write(taken.join("notes.txt"), "mine").unwrap();
    let (ok, stderr) = sluice(&["backup", taken.to_str().unwrap(), "--data-dir", &dir]);
    assert!(!ok, "a backup into a directory with files fails");
    assert!(
        stderr.contains(&format!(
            "{} is not empty: a backup goes into a new or empty directory",
            taken.display()
        )),
        "{stderr}"
    );
    assert_eq!(listing(&taken), ["notes.txt"]);
    assert_eq!(std::fs::read(taken.join("notes.txt")).unwrap(), b"mine");

    // A directory that does not exist is created; a second backup into it is refused and
    // leaves the first as it was.
    let fresh = root.path().join("a/new/backup");
    let out = common::run(&["backup", fresh.to_str().unwrap(), "--data-dir", &dir]);
    assert!(out.contains("0 request rows"), "{out}");
    let first = listing(&fresh);
    assert_eq!(first, ["sluice-journal", "sluice.db"], "{out}");
    let db = std::fs::read(fresh.join("sluice.db")).unwrap();
    let (ok, stderr) = sluice(&["backup", fresh.to_str().unwrap(), "--data-dir", &dir]);
    assert!(!ok);
    assert!(stderr.contains("is not empty"), "{stderr}");
    assert_eq!(listing(&fresh), first);
    assert_eq!(std::fs::read(fresh.join("sluice.db")).unwrap(), db);

    // No ledger to copy: nothing is created.
    let empty = TempDir::new();
    let nowhere = root.path().join("nowhere");
    let (ok, stderr) = sluice(&[
        "backup",
        nowhere.to_str().unwrap(),
        "--data-dir",
        empty.path().to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(stderr.contains("no SQLite ledger at"), "{stderr}");
    assert!(!nowhere.exists());
    assert!(
        listing(empty.path()).is_empty(),
        "the ledger is not created"
    );
}

#[tokio::test]
async fn a_backup_of_a_postgres_ledger_explains_pg_dump_and_copies_nothing() {
    let root = TempDir::new();
    let target = root.path().join("backup");
    let out = common::run(&[
        "backup",
        target.to_str().unwrap(),
        "--database-url",
        "postgres://sluice:hunter2@127.0.0.1:5432/sluice",
    ]);
    assert!(out.contains("pg_dump --format=custom"), "{out}");
    assert!(out.contains("pg_restore --dbname"), "{out}");
    assert!(
        !out.contains("hunter2"),
        "the password is not printed: {out}"
    );
    assert!(!target.exists());
}

/// Runs sluice with `args`: whether it succeeded, and its standard error.
fn sluice(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The names in `dir`, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}
