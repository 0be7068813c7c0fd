//! `history.max_bytes` and `history.max_topics` on Redis: a flood of large
//! events or of topics leaves Redis's memory and key count bounded, and a
//! resume of an evicted topic, on any replica, gets a gap frame.

use serde_json::{Value, json};

use super::replica;
use super::replicas::{publish_batch, redis_server};
use super::server::{Persistence, RedisServer};
use crate::support::helpers::TestApp;

/// `used_memory` of `INFO memory`, in MiB.
fn used_memory_mib(server: &RedisServer) -> u64 {
    let info = server.cli(&["INFO", "memory"]);
    let bytes: u64 = info
        .lines()
        .find_map(|line| line.strip_prefix("used_memory:"))
        .and_then(|value| value.trim().parse().ok())
        .expect("used_memory in INFO memory");
    bytes >> 20
}

fn keys(server: &RedisServer) -> u64 {
    server.cli(&["DBSIZE"]).parse().unwrap()
}

/// One event of `bytes` to each of `flood.<first..first+count>`; the ids.
async fn flood(app: &TestApp, first: usize, count: usize, bytes: usize) -> Vec<String> {
    let data = "x".repeat(bytes);
    let topics: Vec<usize> = (first..first + count).collect();
    let per_request = (900_000 / (bytes + 100)).clamp(1, 500);
    let mut ids = Vec::with_capacity(count);
    for batch in topics.chunks(per_request) {
        let events: Vec<Value> = batch
            .iter()
            .map(|i| json!({ "topic": format!("flood.{i}"), "data": data }))
            .collect();
        ids.extend(publish_batch(app, json!(events)).await);
    }
    ids
}

async fn assert_resume_gets_a_gap(app: &TestApp, topic: &str, id: &str) {
    let mut resumed = app.subscribe_with(&[topic], Some(id), None).await;
    let first = resumed.next().await;
    assert_eq!(first.event, "gap", "an evicted topic's resume: {first:?}");
    let gap: Value = serde_json::from_str(&first.data).unwrap();
    assert_eq!(gap["reason"], "history_exceeded", "{gap}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_large_events_leaves_redis_within_history_max_bytes() {
    const MAX_BYTES: usize = 8 * 1024 * 1024;
    // 800 topics × 64,000 bytes: 49 MiB offered, 8 MiB kept.
    const TOPICS: usize = 800;
    let server = redis_server(Persistence::None).await;
    let bounded = |c: &mut ssehub::config::Config| c.history.max_bytes = MAX_BYTES;
    let publisher = replica(&server, bounded).await;
    let other = replica(&server, bounded).await;
    let before = used_memory_mib(&server);
    let ids = flood(&publisher, 0, TOPICS, 64_000).await;
    let after = used_memory_mib(&server);
    let held = keys(&server);
    println!(
        "history.max_bytes 8 MiB: 49 MiB offered in {TOPICS} topics, Redis used_memory {before} → {after} MiB, {held} keys"
    );
    // The bound plus Redis's own overhead (allocator size classes, stream
    // nodes); unbounded, the growth is the whole flood.
    assert!(after - before < 16, "Redis grew {} MiB", after - before);
    // Two keys per topic held, at most ~130 topics of 64 KB in 8 MiB.
    assert!(held < 300, "{held} keys");
    // The count the script keeps is the sum of its per-topic counts.
    let counted: usize = server.cli(&["GET", "ssehub:bytes"]).parse().unwrap();
    let per_topic: usize = server
        .cli(&["HVALS", "ssehub:sizes"])
        .lines()
        .map(|bytes| bytes.parse::<usize>().unwrap())
        .sum();
    assert_eq!(counted, per_topic);
    assert!(counted <= MAX_BYTES, "{counted} bytes counted");
    for app in [&publisher, &other] {
        assert_resume_gets_a_gap(app, "flood.0", &ids[0]).await;
    }
    // Published to again, the topic still owns up to what it lost.
    let fresh = publisher.publish("flood.0", json!("fresh")).await;
    let mut resumed = other
        .subscribe_with(&["flood.0"], Some(&ids[0]), None)
        .await;
    assert_eq!(resumed.next().await.event, "gap");
    assert_eq!(resumed.next().await.id, fresh);
    // A topic still held resumes without one.
    let mut held = other
        .subscribe_with(&["flood.799"], Some(&ids[798]), None)
        .await;
    assert_eq!(held.next().await.id, ids[799]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_topics_leaves_redis_within_history_max_topics() {
    let server = redis_server(Persistence::None).await;
    let app = replica(&server, |c| c.history.max_topics = 50).await;
    let ids = flood(&app, 0, 2_000, 10).await;
    let held = keys(&server);
    println!("history.max_topics 50: 2,000 topics published, {held} keys in Redis");
    // h: and m: per topic, plus the hub's own handful.
    assert!(held <= 2 * 50 + 10, "{held} keys");
    assert_eq!(server.cli(&["ZCARD", "ssehub:topics"]), "50");
    assert_resume_gets_a_gap(&app, "flood.0", &ids[0]).await;
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("ssehub_history_evicted_events_total{bound=\"max_topics\"} 1950"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_byte_bound_takes_the_oldest_events_of_the_least_recent_topic_and_says_so_exactly() {
    let server = redis_server(Persistence::None).await;
    let app = replica(&server, |c| {
        c.limits.max_event_bytes = 1_024;
        c.history.max_bytes = 24 * 1_024;
    })
    .await;
    let data = "x".repeat(500);
    let mut old = Vec::new();
    for _ in 0..20 {
        old.push(app.publish("old", json!(data)).await);
    }
    for _ in 0..20 {
        app.publish("new", json!(data)).await;
    }
    let mut resumed = app.subscribe_with(&["old"], Some(&old[0]), None).await;
    let gap = resumed.next().await;
    assert_eq!(gap.event, "gap", "old's oldest made room: {gap:?}");
    let gap: Value = serde_json::from_str(&gap.data).unwrap();
    let kept = old
        .iter()
        .position(|id| gap["resumes_at"] == id.as_str())
        .unwrap_or_else(|| panic!("resumes at one of old's events: {gap}"));
    assert!(kept > 1 && kept < 20, "some, not all, went: {kept}");
    let replayed: Vec<_> = resumed
        .take(20 - kept)
        .await
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(replayed, old[kept..]);
    // From the newest evicted, nothing is missing: no gap.
    let mut exact = app
        .subscribe_with(&["old"], Some(&old[kept - 1]), None)
        .await;
    assert_eq!(exact.next().await.id, old[kept]);
}
