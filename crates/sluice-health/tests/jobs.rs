//! The stale-channel and retention jobs against a real SQLite ledger, with the clock moved by
//! hand. (The SQL they use is covered on both backends by the store's conformance suite.)

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use sluice_core::{Channel, RequestRecord, RequestState, Timeouts};
use sluice_health::clock::ManualClock;
use sluice_health::retention::Retention;
use sluice_health::stale::StaleDetector;
use sluice_store::requests::LedgerOp;
use sluice_store::settings::{EVENT_RETENTION_DAYS, STALE_THRESHOLD_DAYS};
use sluice_store::{EventLog, LogEntry, LogFilter, LogPage, Severity, Source, Store, StoreOptions};
use uuid::Uuid;

const DAY: i64 = 86_400_000_000;
/// 2026-01-01T00:00:00Z
const T0: i64 = 1_767_225_600_000_000;

struct Ledger {
    store: Store,
    dir: std::path::PathBuf,
}

impl Drop for Ledger {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn ledger() -> Ledger {
    let dir = std::env::temp_dir().join(format!("sluice-jobs-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}/ledger.db", dir.display());
    let store = Store::connect(&url, &StoreOptions::default())
        .await
        .unwrap();
    store.migrate().await.unwrap();
    Ledger { store, dir }
}

async fn channel(s: &Store, name: &str, enabled: bool) -> Channel {
    let p = s.ensure_default_project().await.unwrap();
    let ch = Channel {
        id: Uuid::now_v7(),
        project_id: p.id,
        name: name.into(),
        sink_url: "http://127.0.0.1:9/".into(),
        enabled,
        lock_version: 1,
        source_auth_method_ids: vec![],
        sink_credential_id: None,
        timeouts: Timeouts::default(),
        preview_bytes: 1024,
        max_request_bytes: None,
        created_at: T0,
        updated_at: T0,
    };
    s.create_channel(&ch, "tests").await.unwrap();
    ch
}

async fn request_at(s: &Store, ch: &Channel, at: i64) {
    let snap = s.snapshot_for(ch).await.unwrap();
    let rec = RequestRecord {
        id: Uuid::now_v7(),
        request_id: format!("req-{}", Uuid::new_v4().simple()),
        channel_id: ch.id,
        snapshot_id: snap.id,
        state: RequestState::Pending,
        started_at: at,
        completed_at: None,
        client_identity: "127.0.0.1".into(),
        source_auth_method_id: None,
        source_auth_type: None,
        method: "GET".into(),
        path: "/".into(),
        query: None,
        response_status: None,
        error: None,
        latency_us: None,
        ttfb_us: None,
        request_body_size: None,
        response_body_size: None,
    };
    s.write_batch("n", &[LedgerOp::Pending(rec)]).await.unwrap();
}

async fn stale_entries(log: &EventLog) -> Vec<LogEntry> {
    log.flush().await;
    let f = LogFilter {
        severities: vec![Severity::Warn],
        sources: vec![Source::Health],
        ..Default::default()
    };
    log.query(&f, LogPage::Before(None), 100).await.unwrap()
}

#[tokio::test]
async fn stale_channels_are_logged_once_until_they_have_traffic() {
    let l = ledger().await;
    let s = &l.store;
    let quiet = channel(s, "quiet", true).await;
    let busy = channel(s, "busy", true).await;
    let off = channel(s, "off", false).await;
    request_at(s, &busy, T0 + 5 * DAY).await;
    let clock = Arc::new(ManualClock::new(T0 + 6 * DAY));
    let week = Duration::from_secs(7 * 86_400);
    let (log, _w) = EventLog::start(s.clone(), 64).await.unwrap();
    let detector = StaleDetector::new(s.clone(), log.clone(), clock.clone(), week);

    assert_eq!(
        detector.check().await.unwrap(),
        0,
        "nothing is a week old yet"
    );
    clock.set(T0 + 8 * DAY);
    assert_eq!(detector.check().await.unwrap(), 1);
    let logged = stale_entries(&log).await;
    assert_eq!(logged.len(), 1);
    assert_eq!(logged[0].channel_id, Some(quiet.id));
    assert!(logged[0].message.contains("quiet"), "{}", logged[0].message);
    assert_eq!(
        logged[0].details["last_request_at"],
        serde_json::Value::Null
    );
    assert_eq!(detector.check().await.unwrap(), 0, "logged once");

    // A restart (new hub, new detector) does not log it again: the flag is stored.
    let (log2, _w2) = EventLog::start(s.clone(), 64).await.unwrap();
    let detector = StaleDetector::new(s.clone(), log2.clone(), clock.clone(), week);
    assert_eq!(detector.check().await.unwrap(), 0);

    // The busy channel goes quiet; the quiet one gets traffic and is cleared.
    clock.set(T0 + 13 * DAY);
    request_at(s, &quiet, T0 + 13 * DAY).await;
    assert_eq!(detector.check().await.unwrap(), 1);
    let logged = stale_entries(&log2).await;
    assert_eq!(logged[0].channel_id, Some(busy.id));
    assert!(!s.channel_health(&[quiet.id]).await.unwrap()[&quiet.id].stale_logged);

    // After another quiet week it is stale again and logged again; the disabled channel never.
    clock.set(T0 + 21 * DAY);
    assert_eq!(detector.check().await.unwrap(), 1);
    let logged = stale_entries(&log2).await;
    assert_eq!(logged[0].channel_id, Some(quiet.id));
    assert!(logged.iter().all(|e| e.channel_id != Some(off.id)));
    assert_eq!(logged.len(), 3);
}

#[tokio::test]
async fn retention_prunes_old_entries_in_batches() {
    let l = ledger().await;
    let s = &l.store;
    let entries: Vec<LogEntry> = (0..7)
        .map(|i| LogEntry {
            id: T0 + i * DAY,
            at: T0 + i * DAY * 10,
            severity: Severity::Warn,
            source: Source::System,
            channel_id: None,
            message: format!("day {}", i * 10),
            details: json!({}),
        })
        .collect();
    s.insert_log_entries(&entries).await.unwrap();
    // At day 65 with 30 days of retention, entries of days 0, 10, 20 and 30 go.
    let clock = Arc::new(ManualClock::new(T0 + 65 * DAY));
    let job = Retention::new(
        s.clone(),
        clock.clone(),
        Duration::from_secs(30 * 86_400),
        3,
    );
    assert_eq!(job.prune().await.unwrap(), 4);
    let left = s
        .list_log_entries(&LogFilter::default(), LogPage::Before(None), 10)
        .await
        .unwrap();
    let days: Vec<&str> = left.iter().map(|e| e.message.as_str()).collect();
    assert_eq!(days, ["day 60", "day 50", "day 40"]);
    assert_eq!(job.prune().await.unwrap(), 0);
    // An operator keeps a week only: the job reads it at its next round.
    s.save_settings(&[(EVENT_RETENTION_DAYS, Some(7))], "user:ops")
        .await
        .unwrap();
    assert_eq!(job.prune().await.unwrap(), 2, "days 40 and 50 go");
    clock.advance(Duration::from_secs(86_400 * 100));
    assert_eq!(job.prune().await.unwrap(), 1);
}

#[tokio::test]
async fn a_saved_stale_threshold_replaces_the_command_lines_at_the_next_check() {
    let l = ledger().await;
    let s = &l.store;
    let quiet = channel(s, "quiet", true).await;
    request_at(s, &quiet, T0).await;
    let clock = Arc::new(ManualClock::new(T0 + 3 * DAY));
    let (log, _w) = EventLog::start(s.clone(), 64).await.unwrap();
    let week = Duration::from_secs(7 * 86_400);
    let detector = StaleDetector::new(s.clone(), log.clone(), clock.clone(), week);
    assert_eq!(
        detector.check().await.unwrap(),
        0,
        "three days is not a week"
    );
    s.save_settings(&[(STALE_THRESHOLD_DAYS, Some(2))], "user:ops")
        .await
        .unwrap();
    assert_eq!(
        detector.check().await.unwrap(),
        1,
        "it is more than two days"
    );
    let logged = stale_entries(&log).await;
    assert_eq!(logged[0].details["threshold_days"], 2.0);
}
