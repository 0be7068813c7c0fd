//! The lean stream path (`src/server`) at its edges: every request head on
//! a connection is read by the server itself, event streams are written by
//! its own writer, everything else by hyper.

use std::time::Duration;

use crate::support::helpers::{PATIENCE, spawn_app};
use crate::support::raw::{RawClient, publish_request, subscribe_head};

const OPEN: &str = ": ssehub stream open";

#[tokio::test]
async fn a_request_head_split_across_packets_is_served() {
    let app = spawn_app().await;
    let mut client = RawClient::connect(app.addr).await;
    let head = subscribe_head("topic=split");
    for piece in head.as_bytes().chunks(7) {
        client.send(piece).await;
        // Each piece its own segment (the socket has TCP_NODELAY off on
        // the client side, but a pause makes the split certain).
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    client.read_until(OPEN, PATIENCE).await;

    app.publish("split", serde_json::json!("after a split head"))
        .await;

    let text = client.read_until("after a split head", PATIENCE).await;
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order_and_a_stream_may_come_last() {
    let app = spawn_app().await;
    let mut client = RawClient::connect(app.addr).await;
    let pipelined = format!(
        "GET /healthz HTTP/1.1\r\nHost: hub\r\n\r\n{}{}",
        publish_request("piped", "first"),
        subscribe_head("topic=piped&lastEventId=0"),
    );
    client.send(pipelined).await;

    let text = client.read_until(OPEN, PATIENCE).await;
    let health = text.find("\"status\":\"ok\"").expect("health answer");
    let accepted = text.find("HTTP/1.1 202 Accepted").expect("publish answer");
    let stream = text
        .find("content-type: text/event-stream")
        .expect("stream head");
    assert!(health < accepted && accepted < stream, "{text}");

    app.publish("piped", serde_json::json!("second")).await;
    client.read_until("data: second", PATIENCE).await;
}

#[tokio::test]
async fn a_subscribe_on_a_keep_alive_connection_that_carried_publishes_streams() {
    let app = spawn_app().await;
    let mut client = RawClient::connect(app.addr).await;
    for round in 1..=3 {
        client
            .send(publish_request("reused", &format!("publish {round}")))
            .await;
        client
            .read_until_count("HTTP/1.1 202 Accepted", round, PATIENCE)
            .await;
    }
    client.send(subscribe_head("topic=reused")).await;
    client.read_until(OPEN, PATIENCE).await;

    app.publish("reused", serde_json::json!("live on the same connection"))
        .await;

    let text = client
        .read_until("live on the same connection", PATIENCE)
        .await;
    assert_eq!(text.matches("HTTP/1.1 ").count(), 4, "{text}");
}

#[tokio::test]
async fn bytes_sent_after_a_stream_head_leave_the_stream_running() {
    let app = spawn_app().await;
    let mut client = RawClient::connect(app.addr).await;
    client.send(subscribe_head("topic=after")).await;
    client.read_until(OPEN, PATIENCE).await;

    client
        .send("GET /healthz HTTP/1.1\r\nHost: hub\r\n\r\n")
        .await;
    app.publish("after", serde_json::json!("still streaming"))
        .await;

    client.read_until("still streaming", PATIENCE).await;
    assert_eq!(app.hub.lifecycle().open_streams(), 1);
}

#[tokio::test]
async fn a_request_pipelined_behind_a_stream_is_answered_when_the_stream_ends() {
    // One slot, taken: the raw client's subscribe is shed, a stream that
    // holds a `retry:` hint and ends at once.
    let app =
        crate::support::helpers::spawn_app_with(|config| config.limits.max_subscribers = 1).await;
    let _taken = app.subscribe(&["full"]).await;
    let mut client = RawClient::connect(app.addr).await;
    client
        .send(format!(
            "{}GET /healthz HTTP/1.1\r\nHost: hub\r\n\r\n",
            subscribe_head("topic=full")
        ))
        .await;

    let text = client.read_until("\"status\":", PATIENCE).await;
    let end = text.find("\r\n0\r\n\r\n").expect("the chunked terminator");
    let answer = text.rfind("HTTP/1.1 200 OK").expect("the pipelined answer");
    assert!(text.contains("retry: "), "{text}");
    assert!(end < answer, "{text}");
}

#[tokio::test]
async fn connection_close_on_a_subscribe_is_honoured_at_the_end_of_the_stream() {
    let app = spawn_app().await;
    let mut client = RawClient::connect(app.addr).await;
    client
        .send("GET /v1/events?topic=bye HTTP/1.1\r\nHost: hub\r\nConnection: close\r\n\r\n")
        .await;
    let text = client.read_until(OPEN, PATIENCE).await;
    assert!(text.contains("\r\nconnection: close\r\n"), "{text}");

    let shutdown = tokio::spawn(app.shut_down());
    assert!(client.read_to_close(PATIENCE).await, "connection left open");
    assert!(
        client.text().ends_with("\r\n0\r\n\r\n"),
        "{}",
        client.text()
    );
    shutdown.await.unwrap();
}

#[tokio::test]
async fn with_stream_coalesce_events_published_within_the_window_go_out_in_one_chunk() {
    // A window far longer than three publishes take, even on a busy machine.
    let app = crate::support::helpers::spawn_app_with(|config| {
        config.stream.coalesce = Duration::from_millis(800);
    })
    .await;
    let mut client = RawClient::connect(app.addr).await;
    client.send(subscribe_head("topic=together")).await;
    // The head and the open comment were a write: the window starts now.
    client.read_until(OPEN, PATIENCE).await;
    for n in 1..=3 {
        app.publish("together", serde_json::json!(format!("held {n}")))
            .await;
    }

    let text = client.read_until("held 3", PATIENCE).await;
    let first = text.find("held 1").expect("event 1");
    let last = text.find("held 3").expect("event 3");
    // Frames end lines with `\n`; chunk framing is `\r\n`: none between
    // the first event and the last means one chunk, one write.
    assert!(!text[first..last].contains("\r\n"), "{text:?}");
    assert!(text[first..last].contains("held 2"), "{text:?}");
}
