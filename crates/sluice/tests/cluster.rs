//! Two sluice nodes over one PostgreSQL database (PRODUCT.md §10): a configuration change made
//! through one node takes effect on the other within a second.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::postgres::TestDatabase;
use common::{upstream, Sluice, TempDir};
use reqwest::Method;
use serde_json::json;

/// Polls `node` (itself, whatever the channel's `proxy_url` names) for the channel's answer
/// until it is `want` or `within` has passed.
async fn status_within(node: &Sluice, ch: &serde_json::Value, want: u16, within: Duration) -> u16 {
    let deadline = Instant::now() + within;
    let url = node.url(&format!("/channels/{}/probe", ch["id"].as_str().unwrap()));
    loop {
        let st = node
            .http()
            .get(&url)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        if st == want || Instant::now() >= deadline {
            return st;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn a_change_made_on_one_node_takes_effect_on_the_other_within_a_second() {
    let Some(db) = TestDatabase::create("sluice_cluster").await else {
        return;
    };
    let url = db.url.clone();
    let up = upstream::start().await;
    let mut a = Sluice::start_on(Arc::new(TempDir::new()), Some(&url), &[]).await;
    let mut b = Sluice::start_on(Arc::new(TempDir::new()), Some(&url), &[]).await;

    // Created on A, served by B (which now caches the route).
    let ch = a.create_channel(&up.url("/"), json!({})).await;
    assert_eq!(status_within(&b, &ch, 200, Duration::ZERO).await, 200);

    // Disabled on A: B stops serving it within a second.
    let res = a
        .api(
            Method::PATCH,
            &format!("/channels/{}", ch["id"].as_str().unwrap()),
        )
        .json(&json!({"lock_version": ch["lock_version"], "enabled": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let changed = Instant::now();
    assert_eq!(
        status_within(&b, &ch, 404, Duration::from_secs(1)).await,
        404,
        "the other node still serves a disabled channel"
    );
    assert!(changed.elapsed() < Duration::from_secs(1));

    // Enabled again on B: A serves it again within a second.
    let current = b
        .api(
            Method::GET,
            &format!("/channels/{}", ch["id"].as_str().unwrap()),
        )
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    let res = b
        .api(
            Method::PATCH,
            &format!("/channels/{}", ch["id"].as_str().unwrap()),
        )
        .json(&json!({"lock_version": current["lock_version"], "enabled": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    assert_eq!(
        status_within(&a, &ch, 200, Duration::from_secs(1)).await,
        200
    );

    a.stop().await;
    b.stop().await;
    db.drop().await;
}

/// Whether `node` says it runs the background jobs (`sluice_background_jobs_leader`).
async fn leads(node: &Sluice) -> bool {
    node.metric_sum("sluice_background_jobs_leader").await == 1.0
}

#[tokio::test]
async fn background_jobs_run_on_exactly_one_node_and_move_when_it_dies() {
    let Some(db) = TestDatabase::create("sluice_cluster").await else {
        return;
    };
    let url = db.url.clone();
    let a = Sluice::start_on(Arc::new(TempDir::new()), Some(&url), &[]).await;
    let b = Sluice::start_on(Arc::new(TempDir::new()), Some(&url), &[]).await;

    // One of them, and only one, takes the lead.
    let deadline = Instant::now() + Duration::from_secs(5);
    let (la, lb) = loop {
        let (la, lb) = (leads(&a).await, leads(&b).await);
        if la || lb || Instant::now() >= deadline {
            break (la, lb);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(la ^ lb, "exactly one leader: a={la} b={lb}");
    // It stays that way.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!((leads(&a).await, leads(&b).await), (la, lb));

    // The leader dies: the other takes over within seconds.
    let (mut leader, mut follower) = if la { (a, b) } else { (b, a) };
    leader.kill();
    let died = Instant::now();
    while !leads(&follower).await {
        assert!(
            died.elapsed() < Duration::from_secs(5),
            "no node took over the background jobs"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    follower.stop().await;
    db.drop().await;
}
