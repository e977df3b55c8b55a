//! Health monitoring, passive health, webhooks and the event log, against a real sluice, real
//! sinks that stop and come back on the same port, and a real webhook receiver.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{upstream, Sluice, TempDir};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use reqwest::Method;
use serde_json::{json, Value};
use tokio::net::TcpListener;

/// A webhook receiver: records every POST body; refuses the first `refuse` with 503.
struct Hooks {
    addr: SocketAddr,
    /// (answered status, body) of every request received.
    seen: Arc<Mutex<Vec<(u16, Value)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Hooks {
    async fn start(refuse: usize) -> Hooks {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Arc<Mutex<Vec<(u16, Value)>>> = Arc::default();
        let log = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let log = log.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let log = log.clone();
                        async move {
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                            let mut log = log.lock().unwrap();
                            let status = if log.len() < refuse { 503 } else { 200 };
                            log.push((status, value));
                            let mut res = hyper::Response::new(Full::new(Bytes::new()));
                            *res.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                            Ok::<_, Infallible>(res)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        Hooks { addr, seen, task }
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// Bodies of the deliveries that were accepted (2xx).
    fn delivered(&self) -> Vec<Value> {
        let seen = self.seen.lock().unwrap();
        seen.iter()
            .filter(|(s, _)| *s == 200)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Waits until `n` deliveries were accepted; returns them.
    async fn wait_delivered(&self, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let d = self.delivered();
            if d.len() >= n {
                return d;
            }
            assert!(
                Instant::now() < deadline,
                "only {} of {n} webhooks",
                d.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Hooks {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A loopback port nobody listens on.
async fn closed_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

async fn channel(s: &Sluice, id: &str) -> Value {
    s.get_json(&format!("/channels/{id}")).await
}

async fn wait_status(s: &Sluice, id: &str, status: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let ch = channel(s, id).await;
        if ch["health_status"] == status {
            return ch;
        }
        assert!(
            Instant::now() < deadline,
            "channel never became {status}: {ch}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Event-log entries of source `health` for channel `id`, newest first.
async fn health_events(s: &Sluice, id: &str) -> Vec<Value> {
    let page = s
        .get_json(&format!("/events?source=health&channel_id={id}&limit=500"))
        .await;
    page["items"].as_array().unwrap().clone()
}

async fn send(s: &Sluice, ch: &Value) -> u16 {
    s.http()
        .get(s.proxy_url(ch, "/x"))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn id(ch: &Value) -> String {
    ch["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn the_monitor_flips_a_channel_when_its_sink_stops_and_when_it_returns() {
    // The first delivery is refused: it is retried and then accepted.
    let hooks = Hooks::start(1).await;
    let sink = upstream::start().await;
    let addr = sink.addr;
    let flags = [
        "--health-interval",
        "200ms",
        "--passive-health-failures",
        "0",
        "--webhook-url",
        &hooks.url(),
    ];
    let mut s = Sluice::start_in(Arc::new(TempDir::new()), &flags).await;
    let ch = s.create_channel(&sink.url("/"), json!({})).await;
    let cid = id(&ch);
    assert_eq!(ch["health_status"], "unknown");

    let healthy = wait_status(&s, &cid, "healthy").await;
    assert!(healthy["health_checked_at"].is_string());
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(
        health_events(&s, &cid).await.is_empty(),
        "a first healthy verdict is no flip"
    );
    assert!(hooks.seen.lock().unwrap().is_empty());

    drop(sink);
    let down = wait_status(&s, &cid, "unhealthy").await;
    assert_eq!(
        down["health_hint"],
        format!(
            "Port {} is not accepting connections. Check if the service is running and the port is correct.",
            addr.port()
        )
    );
    assert!(down["health_failure"].as_str().unwrap().starts_with("tcp:"));
    assert_eq!(down["lock_version"], 1, "health never bumps lock_version");
    // Several more failing rounds: still one event, one delivery.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let events = health_events(&s, &cid).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["severity"], "warn");
    assert_eq!(events[0]["details"]["cause"], "probe");
    assert_eq!(events[0]["details"]["to"], "unhealthy");
    let delivered = hooks.wait_delivered(1).await;
    assert_eq!(delivered.len(), 1);
    assert_eq!(
        hooks.seen.lock().unwrap().len(),
        2,
        "one refused, one retried"
    );
    let hook = &delivered[0];
    assert_eq!(hook["type"], "channel.unhealthy");
    assert_eq!(hook["channel"]["id"], cid);
    assert_eq!(hook["channel"]["name"], ch["name"]);
    assert_eq!(hook["details"]["hint"], down["health_hint"]);
    assert!(hook["timestamp"].as_str().unwrap().ends_with('Z'));

    let sink = upstream::start_at(addr).await;
    let up = wait_status(&s, &cid, "healthy").await;
    assert_eq!(up["health_hint"], Value::Null);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let events = health_events(&s, &cid).await;
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0]["severity"], "info");
    assert_eq!(events[0]["details"]["to"], "healthy");
    let delivered = hooks.wait_delivered(2).await;
    assert_eq!(delivered.len(), 2);
    assert_eq!(delivered[1]["type"], "channel.healthy");

    // No configuration change was recorded for any of it.
    let audit = s
        .get_json(&format!("/audit?resource_type=channel&resource_id={cid}"))
        .await;
    assert_eq!(audit["items"].as_array().unwrap().len(), 1);

    // A restart remembers the verdict: a sink that is still down is not reported again.
    drop(sink);
    wait_status(&s, &cid, "unhealthy").await;
    hooks.wait_delivered(3).await;
    s.stop().await;
    let s = Sluice::start_in(s.data.clone(), &flags).await;
    let checked = channel(&s, &cid).await["health_checked_at"].clone();
    let deadline = Instant::now() + Duration::from_secs(10);
    while channel(&s, &cid).await["health_checked_at"] == checked {
        assert!(Instant::now() < deadline, "no probe after the restart");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(channel(&s, &cid).await["health_status"], "unhealthy");
    let warns: Vec<Value> = health_events(&s, &cid)
        .await
        .into_iter()
        .filter(|e| e["severity"] == "warn")
        .collect();
    assert_eq!(warns.len(), 2, "persisted across the restart, none added");
    assert_eq!(hooks.delivered().len(), 3);
}

#[tokio::test]
async fn passive_health_flips_within_n_failures_and_recovers_on_success() {
    let hooks = Hooks::start(0).await;
    let addr = closed_port().await;
    let s = Sluice::start_in(
        Arc::new(TempDir::new()),
        &[
            "--health-interval",
            "0",
            "--passive-health-failures",
            "3",
            "--webhook-url",
            &hooks.url(),
        ],
    )
    .await;
    let ch = s
        .create_channel(&format!("http://{addr}/"), json!({}))
        .await;
    let cid = id(&ch);
    for _ in 0..2 {
        assert_eq!(send(&s, &ch).await, 502);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(channel(&s, &cid).await["health_status"], "unknown");
    assert!(health_events(&s, &cid).await.is_empty());

    assert_eq!(send(&s, &ch).await, 502);
    let down = wait_status(&s, &cid, "unhealthy").await;
    assert!(down["health_failure"]
        .as_str()
        .unwrap()
        .contains("econnrefused"));
    assert_eq!(
        down["health_hint"],
        format!(
            "Port {} is not accepting connections. Check if the service is running and the port is correct.",
            addr.port()
        )
    );
    for _ in 0..5 {
        send(&s, &ch).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let events = health_events(&s, &cid).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["details"]["cause"], "traffic");
    assert_eq!(events[0]["details"]["consecutive_failures"], 3);
    assert_eq!(events[0]["details"]["last_error"], "econnrefused");

    let _sink = upstream::start_at(addr).await;
    assert_eq!(send(&s, &ch).await, 200);
    let up = wait_status(&s, &cid, "healthy").await;
    let events = health_events(&s, &cid).await;
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["severity"], "info");
    let delivered = hooks.wait_delivered(2).await;
    assert_eq!(
        delivered
            .iter()
            .map(|d| d["type"].clone())
            .collect::<Vec<_>>(),
        ["channel.unhealthy", "channel.healthy"]
    );

    // The channel resource carries its traffic.
    s.finished_n(&ch, 9).await;
    let up = if up["requests_24h"]["success"] == 1 {
        up
    } else {
        channel(&s, &cid).await
    };
    assert_eq!(up["requests_24h"]["error"], 8);
    assert_eq!(up["requests_24h"]["success"], 1);
    assert!(up["last_request_at"].is_string());
    assert_eq!(up["stale"], false);

    // A sink answering 5xx implicates it too; 4xx does not.
    let sink = upstream::start().await;
    let five = s.create_channel(&sink.url("/status/503/"), json!({})).await;
    let four = s.create_channel(&sink.url("/status/404/"), json!({})).await;
    for _ in 0..3 {
        assert_eq!(send(&s, &five).await, 503);
        assert_eq!(send(&s, &four).await, 404);
    }
    wait_status(&s, &id(&five), "unhealthy").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(channel(&s, &id(&four)).await["health_status"], "unknown");
}

/// One Server-Sent Events frame.
#[derive(Debug)]
enum Frame {
    Event(i64, Value),
    Comment,
}

/// A live `/events/stream` connection.
struct Stream {
    res: reqwest::Response,
    buf: String,
}

impl Stream {
    async fn open(s: &Sluice, query: &str, last_event_id: Option<i64>) -> Stream {
        let mut req = s.api(Method::GET, &format!("/events/stream{query}"));
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id.to_string());
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), 200);
        assert!(res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream"));
        Stream {
            res,
            buf: String::new(),
        }
    }

    async fn frame(&mut self) -> Frame {
        loop {
            if let Some(i) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..i + 2).collect();
                let mut id = None;
                let mut data = None;
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        id = Some(v.trim().parse().unwrap());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data = Some(serde_json::from_str(v.trim()).unwrap());
                    }
                }
                return match (id, data) {
                    (Some(id), Some(data)) => Frame::Event(id, data),
                    _ => Frame::Comment,
                };
            }
            let chunk = tokio::time::timeout(Duration::from_secs(10), self.res.chunk())
                .await
                .expect("no SSE frame within 10 s")
                .unwrap()
                .expect("stream ended");
            self.buf.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    /// The next event (heartbeats skipped); its `id:` must equal the entry's id.
    async fn event(&mut self) -> Value {
        loop {
            if let Frame::Event(id, v) = self.frame().await {
                assert_eq!(v["id"], id);
                return v;
            }
        }
    }
}

#[tokio::test]
async fn the_event_stream_replays_what_a_reconnecting_client_missed_and_filters() {
    let mut s = Sluice::start_in(
        Arc::new(TempDir::new()),
        &["--health-interval", "0", "--passive-health-failures", "1"],
    )
    .await;
    let mut chans = Vec::new();
    let mut ports = Vec::new();
    for _ in 0..3 {
        let addr = closed_port().await;
        ports.push(addr);
        chans.push(
            s.create_channel(&format!("http://{addr}/"), json!({}))
                .await,
        );
    }
    let (a, b, c) = (&chans[0], &chans[1], &chans[2]);

    let mut first = Stream::open(&s, "?source=health", None).await;
    send(&s, a).await;
    let ea = first.event().await;
    assert_eq!(ea["channel_id"], a["id"]);
    assert_eq!(ea["severity"], "warn");
    drop(first);

    // Missed while disconnected.
    send(&s, b).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while health_events(&s, &id(b)).await.is_empty() {
        assert!(Instant::now() < deadline, "b never flipped");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let mut again = Stream::open(&s, "?source=health", ea["id"].as_i64()).await;
    let eb = again.event().await;
    assert_eq!(eb["channel_id"], b["id"], "replayed");
    let only_c = format!("?channel_id={}", id(c));
    let mut for_c = Stream::open(&s, &only_c, None).await;
    let mut infos = Stream::open(&s, "?severity=info&source=health", None).await;
    let mut quiet = Stream::open(&s, "?source=catalog&heartbeat_ms=200", None).await;
    send(&s, c).await;
    let ec = again.event().await;
    assert_eq!(ec["channel_id"], c["id"], "then live");
    assert!(ec["id"].as_i64() > eb["id"].as_i64());
    assert_eq!(for_c.event().await["id"], ec["id"]);

    // c recovers: an info entry, which only the info stream and c's stream were waiting for.
    let _sink = upstream::start_at(ports[2]).await;
    assert_eq!(send(&s, c).await, 200);
    let rec = infos.event().await;
    assert_eq!(rec["channel_id"], c["id"]);
    assert_eq!(rec["severity"], "info");
    assert_eq!(for_c.event().await["id"], rec["id"]);
    assert_eq!(again.event().await["id"], rec["id"]);
    assert!(matches!(quiet.frame().await, Frame::Comment), "heartbeat");

    // The same filters on the list.
    let items = |v: Value| v["items"].as_array().unwrap().clone();
    let warns = items(s.get_json("/events?severity=warn&source=health").await);
    assert_eq!(warns.len(), 3);
    assert_eq!(warns[0]["channel_id"], c["id"], "newest first");
    let of_b = items(
        s.get_json(&format!("/events?severity=warn,error&channel_id={}", id(b)))
            .await,
    );
    assert_eq!(of_b.len(), 1);
    assert_eq!(of_b[0]["id"], eb["id"]);
    let system = items(s.get_json("/events?source=system").await);
    assert_eq!(system.last().unwrap()["message"], "sluice started");
    let page1 = s.get_json("/events?source=health&limit=3").await;
    assert_eq!(items(page1.clone()).len(), 3);
    let cursor = page1["next_cursor"].as_str().unwrap();
    let page2 = s
        .get_json(&format!("/events?source=health&limit=3&cursor={cursor}"))
        .await;
    assert_eq!(items(page2.clone()), std::slice::from_ref(&ea));
    assert_eq!(page2["next_cursor"], Value::Null);

    for (path, query, field) in [
        ("/events", "severity=loud", "severity"),
        ("/events/stream", "severity=loud", "severity"),
        ("/events", "source=health,moon", "source"),
        ("/events/stream", "source=health,moon", "source"),
        ("/events", "channel_id=nope", "channel_id"),
        ("/events/stream", "channel_id=nope", "channel_id"),
        ("/events", "cursor=%%%", "cursor"),
        ("/events/stream", "last_event_id=yesterday", "last_event_id"),
    ] {
        let res = s
            .api(Method::GET, &format!("{path}?{query}"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 400, "{path}?{query}");
        let body: Value = res.json().await.unwrap();
        assert!(
            body["details"]["fields"][field].is_string(),
            "{path}?{query}: {body}"
        );
    }

    // Open streams end at shutdown instead of holding it up.
    let started = Instant::now();
    s.stop().await;
    assert!(started.elapsed() < Duration::from_secs(5));
    drop((again, for_c, infos, quiet));
}

#[tokio::test]
async fn a_webhook_that_never_answers_slows_nothing() {
    // Accepts connections and never answers.
    let hang = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hang_addr = hang.local_addr().unwrap();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = hang.accept().await {
            held.push(tcp);
        }
    });
    let s = Sluice::start_in(
        Arc::new(TempDir::new()),
        &[
            "--health-interval",
            "0",
            "--passive-health-failures",
            "1",
            "--webhook-url",
            &format!("http://{hang_addr}/hook"),
        ],
    )
    .await;
    let started = Instant::now();
    for _ in 0..2 {
        let ch = s
            .create_channel(&format!("http://{}/", closed_port().await), json!({}))
            .await;
        for _ in 0..3 {
            assert_eq!(send(&s, &ch).await, 502);
        }
        wait_status(&s, &id(&ch), "unhealthy").await;
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "flips and requests went on while the webhook hung: {:?}",
        started.elapsed()
    );
    holder.abort();
}

#[tokio::test]
async fn bad_health_settings_stop_serve_with_a_message() {
    for (flag, value, says) in [
        ("--health-interval", "soon", "not a duration"),
        ("--health-interval", "5 minutes", "unknown unit"),
        ("--webhook-url", "ftp://hooks.example", "ftp"),
    ] {
        let dir = TempDir::new();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path())
            .args([flag, value])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{flag} {value} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(flag) && err.contains(says), "{err}");
    }
}

/// Settings saved through the API take effect at once, without a restart: a monitor that was
/// off starts probing, and stops again when the interval is set back to 0.
#[tokio::test]
async fn a_saved_health_interval_starts_and_stops_probing_without_a_restart() {
    let sink = upstream::start().await;
    let s = Sluice::start_in(Arc::new(TempDir::new()), &["--health-interval", "0"]).await;
    let ch = s.create_channel(&sink.url("/"), json!({})).await;
    let cid = id(&ch);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        channel(&s, &cid).await["health_status"],
        "unknown",
        "no probes while off"
    );

    let patch = |secs: u64| {
        s.api(Method::PATCH, "/settings")
            .json(&json!({ "health_interval_secs": secs }))
            .send()
    };
    assert_eq!(patch(1).await.unwrap().status(), 200);
    wait_status(&s, &cid, "healthy").await;
    // Probed every second: the verdict's time moves on.
    let first = channel(&s, &cid).await["health_checked_at"].clone();
    let deadline = Instant::now() + Duration::from_secs(5);
    while channel(&s, &cid).await["health_checked_at"] == first {
        assert!(Instant::now() < deadline, "probed once only");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    assert_eq!(patch(0).await.unwrap().status(), 200);
    let stopped = channel(&s, &cid).await["health_checked_at"].clone();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        channel(&s, &cid).await["health_checked_at"],
        stopped,
        "no probes once set back to 0"
    );
}
