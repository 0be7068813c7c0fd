//! `GET /v1/stats`: the hub's figures as JSON, read from its own state and
//! counters (what the console's hub panel shows).

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::helpers::{PATIENCE, TestApp, spawn_app_with};

async fn stats(app: &TestApp) -> Value {
    let response = app.get("/v1/stats").await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "application/json; charset=utf-8"
    );
    response.json().await.unwrap()
}

#[tokio::test]
async fn stats_follow_subscribers_publishes_deliveries_and_gaps() {
    let app = spawn_app_with(|c| c.history.size = 2).await;
    let before = stats(&app).await;
    assert_eq!(before["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(before["phase"], "serving");
    assert_eq!(before["ready"], true);
    assert_eq!(
        before["backplane"],
        json!({"kind": "memory", "available": true})
    );
    assert_eq!(before["subscribers"]["connected"], 0);
    assert_eq!(before["subscribers"]["limit"], 10_000);
    assert_eq!(before["live_topics"], 0);

    let first = app.publish("stats", json!(1)).await;
    let mut live = app.subscribe(&["stats", "other"]).await;
    for n in 2..=4 {
        app.publish("stats", json!(n)).await;
    }
    live.take(3).await;
    // Evicted from a two-event history: resuming from it is a gap.
    let mut resumed = app.subscribe_with(&["stats"], Some(&first), None).await;
    assert_eq!(resumed.next().await.event, "gap");
    resumed.take(2).await;
    let refused = app.publish_raw("stats", json!({"no data": true})).await;
    assert_eq!(refused.status(), 400);

    let after = stats(&app).await;
    assert_eq!(after["subscribers"]["connected"], 2);
    assert_eq!(after["subscribers"]["opened"], 2);
    assert_eq!(after["live_topics"], 2, "stats and other");
    assert_eq!(after["publishes"]["events_accepted"], 4);
    assert_eq!(after["publishes"]["requests_accepted"], 4);
    assert_eq!(after["publishes"]["requests_rejected"], 1);
    assert_eq!(after["deliveries"]["events"], 3 + 2);
    assert_eq!(after["deliveries"]["gap_frames"], 1);
    assert_eq!(after["deliveries"]["history_replays"], 1);
    assert!(after["deliveries"]["bytes"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn stats_show_the_drain_phase() {
    let app = spawn_app_with(|c| c.drain.delay = Duration::from_secs(2)).await;
    let addr = app.addr;
    let drain = tokio::spawn(app.shut_down());
    let client = reqwest::Client::new();
    let started = Instant::now();
    loop {
        let stats: Value = client
            .get(format!("http://{addr}/v1/stats"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if stats["phase"] == "draining" {
            assert_eq!(stats["ready"], false);
            break;
        }
        assert_eq!(stats["phase"], "serving");
        assert!(started.elapsed() < PATIENCE, "never draining: {stats}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drain.await.unwrap();
}
