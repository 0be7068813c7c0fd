//! A replay that nobody reads: subscribes with a `Last-Event-ID` the hub
//! doesn't recognise (so all history is owed) on sockets that never read,
//! against the real binary. The hub must stream history a page at a time
//! as the socket takes it, not stage all of it per connection.

use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};

use crate::redis::server::{Persistence, RedisServer};
use crate::support::helpers::PATIENCE;
use crate::support::process::HubProcess;

const TOPICS: usize = 16;
const EVENTS_PER_TOPIC: usize = 1_000;
const EVENT_BYTES: usize = 8 * 1024;
const HOSTILE_CONNECTIONS: usize = 4;
/// Events per publish request (about 800 KiB, under the 1 MiB body limit).
const BATCH: usize = 100;

/// Fills `TOPICS` topics with `EVENTS_PER_TOPIC` events of `EVENT_BYTES`.
async fn fill_history(hub: &HubProcess) {
    let client = reqwest::Client::new();
    let data = "x".repeat(EVENT_BYTES);
    let events: Vec<_> = (0..TOPICS * EVENTS_PER_TOPIC)
        .map(|n| json!({ "topic": format!("flood.{}", n % TOPICS), "data": data }))
        .collect();
    for batch in events.chunks(BATCH) {
        let response = client
            .post(hub.url("/v1/events"))
            .json(&json!({ "events": batch }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202);
    }
}

/// A subscribe to every topic with a foreign `Last-Event-ID`, on a socket
/// with a small receive buffer that is never read.
async fn never_reading_resume(hub: &HubProcess) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(hub.addr).await.unwrap();
    let topics: Vec<_> = (0..TOPICS).map(|n| format!("topic=flood.{n}")).collect();
    let head = format!(
        "GET /v1/events?{} HTTP/1.1\r\nHost: hub\r\nAccept: text/event-stream\r\n\
         Last-Event-ID: x\r\n\r\n",
        topics.join("&")
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream
}

/// Opens the hostile resumes and returns the hub's RSS before them and its
/// peak while their replays run, sampled for two seconds after they began.
async fn hostile_resumes(
    hub: &HubProcess,
    peak_of: impl Fn() -> u64,
) -> (u64, u64, Vec<TcpStream>) {
    let before = hub.rss_kib();
    let mut hostile = Vec::new();
    for _ in 0..HOSTILE_CONNECTIONS {
        hostile.push(never_reading_resume(hub).await);
    }
    let replays = "ssehub_history_replays_total{trigger=\"resume\"} ";
    let started = Instant::now();
    while hub.metric(replays).await.unwrap_or(0.0) < HOSTILE_CONNECTIONS as f64 {
        assert!(started.elapsed() < PATIENCE, "the resumes did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The replays run as far as the sockets take them: sample for a while.
    let mut peak = before;
    for _ in 0..20 {
        peak = peak.max(hub.rss_kib());
        peak_of();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (before, peak, hostile)
}

#[tokio::test]
async fn resumes_that_are_never_read_cost_the_hub_little_memory() {
    let hub = HubProcess::start(&[
        ("SSEHUB_HISTORY__SIZE", &EVENTS_PER_TOPIC.to_string()),
        (
            "SSEHUB_LIMITS__MAX_BODY_BYTES",
            &(2 * 1024 * 1024).to_string(),
        ),
    ]);
    fill_history(&hub).await;
    let (before, peak, hostile) = hostile_resumes(&hub, || 0).await;
    let growth = peak.saturating_sub(before);
    let per_connection = growth / HOSTILE_CONNECTIONS as u64;
    println!(
        "hostile replay: {TOPICS} topics x {EVENTS_PER_TOPIC} events x {EVENT_BYTES} B; \
         {HOSTILE_CONNECTIONS} never-reading resumes: RSS {before} KiB before, peak {peak} KiB \
         (+{growth} KiB, {per_connection} KiB per connection)"
    );
    // All history is ~125 MiB; staging it cost ~124 MiB per connection.
    assert!(
        per_connection < 4 * 1024,
        "a never-reading resume grew the hub by {per_connection} KiB"
    );
    // The hub still serves everyone else.
    let response = reqwest::get(hub.url("/readyz")).await.unwrap();
    assert_eq!(response.status(), 200);
    drop(hostile);
}

/// `used_memory` of Redis (its data plus client buffers), in KiB.
fn redis_used_kib(server: &RedisServer) -> u64 {
    let info = server.cli(&["INFO", "memory"]);
    info.lines()
        .find_map(|line| line.strip_prefix("used_memory:"))
        .and_then(|bytes| bytes.trim().parse::<u64>().ok())
        .expect("used_memory in INFO memory")
        / 1024
}

#[tokio::test]
async fn resumes_that_are_never_read_cost_little_on_redis_either() {
    let server = tokio::task::spawn_blocking(|| RedisServer::start(Persistence::None))
        .await
        .unwrap();
    let hub = HubProcess::start(&[
        ("SSEHUB_HISTORY__SIZE", &EVENTS_PER_TOPIC.to_string()),
        (
            "SSEHUB_LIMITS__MAX_BODY_BYTES",
            &(2 * 1024 * 1024).to_string(),
        ),
        ("SSEHUB_BACKPLANE__KIND", "redis"),
        ("SSEHUB_BACKPLANE__REDIS__URL", &server.url()),
    ]);
    let ready = Instant::now();
    while reqwest::get(hub.url("/readyz")).await.unwrap().status() != 200 {
        assert!(ready.elapsed() < PATIENCE, "the hub never reached Redis");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    fill_history(&hub).await;
    let redis_before = redis_used_kib(&server);
    let redis_peak = std::sync::atomic::AtomicU64::new(redis_before);
    let (before, peak, hostile) = hostile_resumes(&hub, || {
        redis_peak.fetch_max(
            redis_used_kib(&server),
            std::sync::atomic::Ordering::Relaxed,
        )
    })
    .await;
    let redis_peak = redis_peak.into_inner();
    let per_connection = peak.saturating_sub(before) / HOSTILE_CONNECTIONS as u64;
    let redis_growth = redis_peak.saturating_sub(redis_before);
    println!(
        "hostile replay on Redis: {HOSTILE_CONNECTIONS} never-reading resumes: hub RSS \
         {before} -> {peak} KiB ({per_connection} KiB per connection); Redis used_memory \
         {redis_before} -> {redis_peak} KiB (+{redis_growth} KiB)"
    );
    assert!(
        per_connection < 4 * 1024,
        "a never-reading resume grew the hub by {per_connection} KiB"
    );
    // A page per read (one topic's share of 256 KiB), not a topic's history.
    assert!(
        redis_growth < 16 * 1024,
        "never-reading resumes grew Redis by {redis_growth} KiB"
    );
    // Publishing and readiness are unaffected.
    let response = reqwest::get(hub.url("/readyz")).await.unwrap();
    assert_eq!(response.status(), 200);
    drop(hostile);
}
