//! A subscriber that stops reading slows nobody down, and later catches up
//! from history or is told about the gap.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

use crate::support::helpers::{PATIENCE, TestApp, spawn_app_with};

/// A raw HTTP/1.1 subscriber with a tiny receive buffer, so that the
/// server's writes back up as soon as it stops reading.
async fn stalled_subscriber(app: &TestApp, topic: &str) -> tokio::net::TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(app.addr).await.unwrap();
    let request = format!(
        "GET /v1/events?topic={topic} HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\n\r\n",
        app.addr
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    // Wait until the subscription is registered before the flood starts.
    let mut first = [0u8; 512];
    let _ = stream.read(&mut first).await.unwrap();
    stream
}

/// Reads the raw stream until `last_id` appears; returns the SSE text.
async fn drain_until(stream: &mut tokio::net::TcpStream, last_id: &str) -> String {
    let mut text = Vec::new();
    let mut buffer = vec![0u8; 64 * 1024];
    let marker = format!("id: {last_id}\n");
    let deadline = Instant::now() + PATIENCE * 3;
    while Instant::now() < deadline {
        let read = tokio::time::timeout(PATIENCE, stream.read(&mut buffer))
            .await
            .expect("the stalled subscriber's stream resumes")
            .unwrap();
        assert!(read > 0, "stream closed early");
        // Only the new bytes (and a marker's length before them) can hold
        // the marker for the first time.
        let from = text.len().saturating_sub(marker.len());
        text.extend_from_slice(&buffer[..read]);
        if text[from..]
            .windows(marker.len())
            .any(|w| w == marker.as_bytes())
        {
            break;
        }
    }
    String::from_utf8_lossy(&text).into_owned()
}

/// Event ids (in order) and gap frames, from raw chunked SSE text; chunk
/// size lines of the HTTP/1.1 framing are skipped.
fn ids_and_gaps(text: &str) -> (Vec<String>, usize) {
    let ids = text
        .lines()
        .filter_map(|line| line.strip_prefix("id: "))
        .map(str::to_owned)
        .collect();
    let gaps = text.matches("event: gap\n").count();
    (ids, gaps)
}

async fn flood(app: &TestApp, topic: &str, events: usize, size: usize) -> Vec<String> {
    let payload = "x".repeat(size);
    let mut ids = Vec::with_capacity(events);
    for _ in 0..events {
        ids.push(app.publish(topic, json!(payload)).await);
    }
    ids
}

#[tokio::test]
async fn a_stalled_subscriber_slows_neither_publishing_nor_a_fast_subscriber() {
    const EVENTS: usize = 3_000;
    let app = spawn_app_with(|c| {
        c.history.size = 100;
        c.stream.queue = 16;
    })
    .await;
    let mut stalled = stalled_subscriber(&app, "t").await;
    let mut fast = app.subscribe(&["t"]).await;
    let fast_reader = tokio::spawn(async move {
        let mut ids = Vec::with_capacity(EVENTS);
        for _ in 0..EVENTS {
            ids.push(fast.next().await.id);
        }
        ids
    });

    // 3,000 × 4 KiB = 12 MiB: far beyond the socket buffers of the stalled one.
    let started = Instant::now();
    let ids = flood(&app, "t", EVENTS, 4096).await;
    let publishing = started.elapsed();

    assert_eq!(
        fast_reader.await.unwrap(),
        ids,
        "the fast subscriber got everything in order"
    );
    assert!(
        publishing < Duration::from_secs(60),
        "publishing took {publishing:?}"
    );

    // The stalled one reads again: after a gap frame it gets the newest
    // events, in order, without duplicates.
    let text = drain_until(&mut stalled, ids.last().unwrap()).await;
    let (received, gaps) = ids_and_gaps(&text);
    assert_eq!(gaps, 1, "exactly one gap frame");
    let gap_line = text
        .lines()
        .skip_while(|l| *l != "event: gap")
        .nth(1)
        .unwrap();
    let info: Value = serde_json::from_str(gap_line.strip_prefix("data: ").unwrap()).unwrap();
    assert_eq!(info["reason"], "lagged");
    let start = ids
        .iter()
        .position(|id| *id == received[received.len() - 1])
        .unwrap();
    assert_eq!(start, ids.len() - 1);
    let mut sorted = received.clone();
    sorted.dedup();
    assert_eq!(sorted.len(), received.len(), "no duplicates");
    let positions: Vec<_> = received
        .iter()
        .map(|id| ids.iter().position(|x| x == id).expect("a published id"))
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "in order");
    // Everything after the gap is contiguous up to the newest event.
    let after_gap = text.split("event: gap\n").nth(1).unwrap();
    let (tail, _) = ids_and_gaps(after_gap);
    let first = ids.iter().position(|id| *id == tail[0]).unwrap();
    assert_eq!(tail, ids[first..], "contiguous after the gap");
}

#[tokio::test]
async fn a_stalled_subscriber_catches_up_from_history_without_a_gap() {
    const EVENTS: usize = 2_000;
    let app = spawn_app_with(|c| {
        c.history.size = 10_000;
        c.stream.queue = 16;
    })
    .await;
    let mut stalled = stalled_subscriber(&app, "t").await;
    let ids = flood(&app, "t", EVENTS, 4096).await;

    let text = drain_until(&mut stalled, ids.last().unwrap()).await;
    let (received, gaps) = ids_and_gaps(&text);
    assert_eq!(gaps, 0, "history covered the lag");
    assert_eq!(received, ids, "every event, in order, once");
}
