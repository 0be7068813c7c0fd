//! A flood of history against the real binary: many topics of large events
//! from one client. `history.max_bytes` and `history.max_topics` bound what
//! the hub keeps (RSS stays flat), and a resume on a topic that was evicted
//! gets a gap frame, never a silent skip. Each test prints its figure.

use serde_json::{Value, json};

use crate::support::helpers::Subscriber;
use crate::support::process::HubProcess;

/// Publishes one event of `bytes` to each topic `flood.<first..first+count>`,
/// `per_request` to a batch; returns the ids in topic order.
async fn flood(
    hub: &HubProcess,
    first: usize,
    count: usize,
    bytes: usize,
    per_request: usize,
) -> Vec<String> {
    let client = reqwest::Client::new();
    let data = "x".repeat(bytes);
    let mut ids = Vec::with_capacity(count);
    let topics: Vec<usize> = (first..first + count).collect();
    for batch in topics.chunks(per_request) {
        let events: Vec<Value> = batch
            .iter()
            .map(|i| json!({ "topic": format!("flood.{i}"), "data": data }))
            .collect();
        let response = client
            .post(hub.url("/v1/events"))
            .json(&json!({ "events": events }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202, "the flood is accepted, not refused");
        let body: Value = response.json().await.unwrap();
        ids.extend(
            body["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|event| event["id"].as_str().unwrap().to_owned()),
        );
    }
    ids
}

/// `ssehub_history_evicted_events_total{bound="…"}` from `/metrics`.
async fn evicted(hub: &HubProcess, bound: &str) -> f64 {
    let series = format!("ssehub_history_evicted_events_total{{bound=\"{bound}\"}}");
    hub.metric(&series)
        .await
        .unwrap_or_else(|| panic!("{series} in /metrics"))
}

/// Resumes `topic` after `id` and expects a `history_exceeded` gap first.
async fn assert_resume_gets_a_gap(hub: &HubProcess, topic: &str, id: &str) {
    let response = reqwest::Client::new()
        .get(hub.url("/v1/events"))
        .query(&[("topic", topic)])
        .header("Last-Event-ID", id)
        .send()
        .await
        .unwrap();
    let mut resumed = Subscriber::from_response(response).await;
    let first = resumed.next().await;
    assert_eq!(first.event, "gap", "an evicted topic's resume: {first:?}");
    let gap: Value = serde_json::from_str(&first.data).unwrap();
    assert_eq!(gap["reason"], "history_exceeded", "{gap}");
    assert_eq!(gap["last_event_id"], id, "{gap}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_large_events_stays_within_history_max_bytes() {
    const MAX_BYTES: u64 = 16 * 1024 * 1024;
    // 3,200 topics × 64,000 bytes: 205 MB offered, 16 MiB kept.
    const TOPICS: usize = 3_200;
    const EVENT_BYTES: usize = 64_000;
    let hub = HubProcess::start(&[("SSEHUB_HISTORY__MAX_BYTES", &MAX_BYTES.to_string())]);
    // Warm up (allocator arenas, the request path) before the baseline.
    flood(&hub, 1_000_000, 15, EVENT_BYTES, 15).await;
    let before = hub.rss_kib() / 1024;
    let ids = flood(&hub, 0, TOPICS, EVENT_BYTES, 15).await;
    let after = hub.rss_kib() / 1024;
    let offered = (TOPICS * EVENT_BYTES) as u64 >> 20;
    println!(
        "history.max_bytes {} MiB: {offered} MiB offered in {TOPICS} topics, RSS {before} → {after} MiB",
        MAX_BYTES >> 20
    );
    // Room for the bound, request bodies in flight and the allocator's
    // slack; unbounded, the growth is the whole flood (over 200 MiB).
    assert!(
        after - before < (MAX_BYTES >> 20) + 48,
        "RSS grew {} MiB for a {} MiB bound",
        after - before,
        MAX_BYTES >> 20
    );
    assert!(evicted(&hub, "max_bytes").await >= (TOPICS - 300) as f64);
    // The first topics went first; their resume is a gap, not silence.
    assert_resume_gets_a_gap(&hub, "flood.0", &ids[0]).await;
    // Before its only event, too: it is gone.
    let before_first = format!("{}-0", ids[0].split_once('-').unwrap().0);
    assert_resume_gets_a_gap(&hub, "flood.0", &before_first).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_topics_stays_within_history_max_topics() {
    let hub = HubProcess::start(&[("SSEHUB_HISTORY__MAX_TOPICS", "100")]);
    let ids = flood(&hub, 0, 2_000, 10, 500).await;
    assert_eq!(evicted(&hub, "max_topics").await, 1_900.0);
    assert_resume_gets_a_gap(&hub, "flood.0", &ids[0]).await;
    // A topic still held resumes without a gap.
    let response = reqwest::Client::new()
        .get(hub.url("/v1/events"))
        .query(&[("topic", "flood.1998")])
        .header("Last-Event-ID", ids[1_997].as_str())
        .send()
        .await
        .unwrap();
    let mut resumed = Subscriber::from_response(response).await;
    assert_eq!(resumed.next().await.id, ids[1_998]);
}
