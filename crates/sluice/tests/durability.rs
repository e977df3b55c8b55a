//! Durability: the pending record comes first, crashes leave nothing dangling, shutdown is
//! graceful.

mod common;
#[path = "../../sluice-store/tests/support/full_disk.rs"]
mod full_disk;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{rid, upstream, Sluice};
use full_disk::FullDisk;
use serde_json::{json, Value};

/// Waits (at most `within`) for `/readyz` to answer 200.
async fn until_ready(s: &Sluice, within: Duration) {
    let deadline = Instant::now() + within;
    while s
        .http()
        .get(s.url("/readyz"))
        .send()
        .await
        .unwrap()
        .status()
        != 200
    {
        assert!(Instant::now() < deadline, "never ready again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_ledger_that_refuses_writes_yields_503_and_nothing_reaches_the_sink() {
    let up = upstream::start().await;
    let data = Arc::new(common::TempDir::new());
    // Pending records go to the journal beside the ledger file, on a disk with no room left.
    let Some(disk) = FullDisk::mount(&data.path().join("sluice-journal")) else {
        return;
    };
    disk.fill();
    // No health monitor: its probes of the sink would count as hits.
    let s = Sluice::start_in(data.clone(), &["--health-interval", "0"]).await;
    let ch = s.create_channel(&up.url("/"), json!({})).await;
    let hits = up.hits();

    let post = |path: &str| s.http().post(s.proxy_url(&ch, path)).body("payload").send();
    for _ in 0..5 {
        let res = post("/during").await.unwrap();
        assert_eq!(res.status(), 503);
        assert_eq!(res.headers()["content-type"], "application/json");
        assert_eq!(
            res.json::<Value>().await.unwrap(),
            json!({ "error": "Service Unavailable" })
        );
    }
    assert_eq!(
        up.hits(),
        hits,
        "nothing was forwarded without a durable record"
    );
    // The operators hear of it once in the event log, not once per refused request.
    let deadline = Instant::now() + Duration::from_secs(5);
    let errors = loop {
        let page = s.get_json("/events?severity=error&source=system").await;
        let items = page["items"].as_array().unwrap().clone();
        if !items.is_empty() || Instant::now() > deadline {
            break items;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0]["details"]["error"]
        .as_str()
        .unwrap()
        .contains("No space left on device"));

    disk.free();
    let again = s
        .http()
        .get(s.proxy_url(&ch, "/after"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        again.status(),
        200,
        "recovers once the ledger accepts writes"
    );
    let paths: Vec<String> = s
        .finished_n(&ch, 1)
        .await
        .iter()
        .map(|r| r["path"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(paths, ["/after"], "refused requests left no rows");

    // A disk that fills up now does not stop requests at once: the journal's segment has its
    // room reserved (docs/tuning-log.md), and each request's record still goes there.
    disk.fill();
    for _ in 0..20 {
        assert_eq!(post("/later").await.unwrap().status(), 200);
    }
    assert_eq!(s.finished_n(&ch, 21).await.len(), 21);
}

/// The ledger file itself runs out of room while callers are being answered: sluice stops
/// forwarding (503, `/readyz` not ready, one error event) instead of answering requests it
/// cannot record, keeps the outcomes it has, and recovers by itself when room returns.
#[tokio::test]
async fn a_ledger_file_out_of_room_stops_forwarding_until_room_returns_and_loses_nothing() {
    let up = upstream::start().await;
    let data = Arc::new(common::TempDir::new());
    let Some(disk) = FullDisk::mount(data.path()) else {
        return;
    };
    let s = Sluice::start_in(data.clone(), &["--health-interval", "0"]).await;
    let ch = s.create_channel(&up.url("/"), json!({})).await;
    let body = vec![b'x'; 60 << 10];
    let send = || {
        s.http()
            .post(s.proxy_url(&ch, "/echo-body"))
            .body(body.clone())
            .send()
    };
    assert_eq!(send().await.unwrap().status(), 200);
    disk.fill();
    let (mut answered, mut refused) = (1, 0);
    for _ in 0..2000 {
        match send().await.unwrap().status().as_u16() {
            200 => answered += 1,
            503 => {
                refused += 1;
                if refused == 3 {
                    break;
                }
            }
            other => panic!("status {other}"),
        }
    }
    assert_eq!(
        refused, 3,
        "kept answering 200 with a full ledger ({answered} answered)"
    );
    let ready = s.http().get(s.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let errors = s.get_json("/events?severity=error&source=system").await;
    let stuck: Vec<&Value> = errors["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["message"].as_str().unwrap().contains("cannot record"))
        .collect();
    assert_eq!(stuck.len(), 1, "{errors}");

    disk.free();
    until_ready(&s, Duration::from_secs(10)).await;
    assert_eq!(send().await.unwrap().status(), 200);
    let done = s.finished_n(&ch, answered + 1).await;
    assert_eq!(
        done.len(),
        answered + 1,
        "every answered request recorded once"
    );
    assert!(
        done.iter()
            .all(|r| r["state"] == "success" && r["response_status"] == 200),
        "{done:?}"
    );
}

#[tokio::test]
async fn a_process_killed_mid_load_leaves_no_pending_rows_after_restart() {
    let up = upstream::start().await;
    let data = Arc::new(common::TempDir::new());
    let mut s = Sluice::start_in(data.clone(), &[]).await;
    let ch = s.create_channel(&up.url("/"), json!({})).await;
    let cid = ch["id"].as_str().unwrap().to_string();

    // In flight when the process dies: 10 slow exchanges and a stream of fast ones.
    let client = s.http().clone();
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let (c, url) = (client.clone(), s.proxy_url(&ch, "/hang"));
        tasks.push(tokio::spawn(async move {
            let _ = c.get(url).send().await;
        }));
    }
    for _ in 0..4 {
        let (c, url) = (client.clone(), s.proxy_url(&ch, "/fast"));
        tasks.push(tokio::spawn(async move {
            for _ in 0..1000 {
                if c.post(&url).body("x").send().await.is_err() {
                    return;
                }
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while s.history(&ch, "state=pending").await.len() < 10 {
        assert!(
            Instant::now() < deadline,
            "slow requests never became pending"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    s.kill();
    for t in tasks {
        let _ = t.await;
    }

    let s = Sluice::start_in(data, &[]).await;
    let all = s
        .get_json(&format!("/channels/{cid}/requests?limit=500"))
        .await;
    let items = all["items"].as_array().unwrap();
    assert!(items.len() >= 10);
    assert!(
        items.iter().all(|r| r["state"] != "pending"),
        "no pending row survives a restart"
    );
    let interrupted = items.iter().filter(|r| r["error"] == "interrupted").count();
    assert!(
        interrupted >= 10,
        "the in-flight exchanges are closed as interrupted ({interrupted})"
    );
    assert!(items
        .iter()
        .filter(|r| r["error"] == "interrupted")
        .all(|r| r["state"] == "error" && r["completed_at"].is_string()));
}

#[tokio::test]
async fn shutdown_finishes_in_flight_exchanges_and_flushes_the_ledger() {
    shutdown_finishes_and_flushes(None).await;
}

#[tokio::test]
async fn shutdown_on_postgres_finishes_in_flight_exchanges_and_flushes_the_ledger() {
    let Some(db) = common::postgres::TestDatabase::create("sluice_shutdown").await else {
        return;
    };
    shutdown_finishes_and_flushes(Some(&db.url)).await;
    db.drop().await;
}

/// Stops sluice while several exchanges are in flight (on every proxy thread: each caller
/// connection goes to the next thread), then checks each was answered and recorded.
async fn shutdown_finishes_and_flushes(database_url: Option<&str>) {
    let up = upstream::start().await;
    let data = Arc::new(common::TempDir::new());
    let threads = ["--proxy-threads", "3"];
    let mut s = Sluice::start_on(data.clone(), database_url, &threads).await;
    let ch = s.create_channel(&up.url("/"), json!({})).await;
    let mut inflight = Vec::new();
    for _ in 0..6 {
        let id = rid();
        // A client of its own: a connection of its own.
        let c = reqwest::Client::new();
        let (url, id2) = (s.proxy_url(&ch, "/delay/800"), id.clone());
        inflight.push((
            id,
            tokio::spawn(async move {
                let res = c.get(url).header("x-request-id", id2).send().await.unwrap();
                (res.status().as_u16(), res.json::<Value>().await.unwrap())
            }),
        ));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.stop().await;
    let mut ids = Vec::new();
    for (id, answer) in inflight {
        let (status, echo) = answer.await.unwrap();
        assert_eq!(status, 200, "the in-flight exchange completed");
        assert_eq!(echo["path"], "/delay/800");
        ids.push(id);
    }

    let s = Sluice::start_on(data, database_url, &threads).await;
    for id in ids {
        let rec = s.finished(&ch, &id).await;
        assert_eq!(
            rec["state"], "success",
            "its completion was flushed before exit: {rec}"
        );
        assert!(rec["event"].is_object());
    }
}

/// PostgreSQL stops while a request is in flight and starts again: new callers are refused
/// with 503 at once (nothing reaches the sink unrecorded), `/readyz` says why, the request in
/// flight is answered and its outcome written once the database is back, the operators get
/// an error event, and nothing is left `pending`.
#[tokio::test]
async fn a_postgres_ledger_stopped_and_started_refuses_meanwhile_and_loses_nothing() {
    let Some(pg) = common::postgres::PrivateServer::start() else {
        return;
    };
    let up = upstream::start().await;
    let data = Arc::new(common::TempDir::new());
    let s = Sluice::start_on(data, Some(&pg.url()), &["--health-interval", "0"]).await;
    let ch = s.create_channel(&up.url("/"), json!({})).await;
    let get = |path: &str| s.http().get(s.proxy_url(&ch, path)).send();
    assert_eq!(get("/before").await.unwrap().status(), 200);

    let in_flight = tokio::spawn(get("/delay/1500"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    pg.stop();
    let answered = in_flight.await.unwrap().unwrap();
    assert_eq!(
        answered.status(),
        200,
        "the sink's answer still reaches the caller"
    );

    let hits = up.hits();
    for attempt in 0..3 {
        let started = Instant::now();
        let res = get("/during").await.unwrap();
        assert_eq!(res.status(), 503);
        assert_eq!(res.headers()["content-type"], "application/json");
        // At most the pool's connect timeout (3 s) before the outage is known, then at once.
        let patience = Duration::from_secs(if attempt == 0 { 4 } else { 1 });
        assert!(
            started.elapsed() < patience,
            "refusal {attempt} made the caller wait {:?}",
            started.elapsed()
        );
    }
    assert_eq!(
        up.hits(),
        hits,
        "nothing forwarded while nothing could be recorded"
    );
    let ready = s.http().get(s.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let why = ready.json::<Value>().await.unwrap();
    assert_eq!(why["error"], "database unreachable", "{why}");

    pg.start_again();
    until_ready(&s, Duration::from_secs(20)).await;
    assert_eq!(get("/after").await.unwrap().status(), 200);

    let done = s.finished_n(&ch, 3).await;
    let seen: Vec<(&str, &str)> = done
        .iter()
        .map(|r| (r["path"].as_str().unwrap(), r["state"].as_str().unwrap()))
        .collect();
    assert_eq!(
        seen,
        [
            ("/after", "success"),
            ("/delay/1500", "success"),
            ("/before", "success")
        ],
        "the request in flight recorded once the database was back; refused ones left no rows"
    );
    let all = common::every_request(&s, ch["id"].as_str().unwrap()).await;
    assert!(all.iter().all(|r| r["state"] != "pending"), "{all:?}");
    let errors = s.get_json("/events?severity=error&source=system").await;
    let refused: Vec<&Value> = errors["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["message"].as_str().unwrap().contains("refused"))
        .collect();
    assert_eq!(
        refused.len(),
        1,
        "operators hear of the outage once: {errors}"
    );
}
