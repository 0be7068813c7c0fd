//! Subscriber and topic limits: shed with 200 + `retry:` where a retry can
//! help, 400 where it can't.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::helpers::{assert_problem, body_text, spawn_app_with};

#[tokio::test]
async fn a_subscribe_beyond_capacity_gets_200_a_retry_hint_and_an_end() {
    let app = spawn_app_with(|c| c.limits.max_subscribers = 2).await;
    let _first = app.subscribe(&["t"]).await;
    let _second = app.subscribe(&["t"]).await;

    let third = app.get("/v1/events?topic=t").await;
    assert_eq!(third.status(), 200);
    assert_eq!(third.headers()["content-type"], "text/event-stream");
    let text = body_text(third, Duration::from_secs(5)).await;
    let retry: u64 = text
        .strip_prefix("retry: ")
        .and_then(|rest| rest.strip_suffix("\n\n"))
        .unwrap_or_else(|| panic!("only a retry hint expected, got {text:?}"))
        .parse()
        .unwrap();
    assert!((3000..6000).contains(&retry), "jittered retry {retry}");
    assert_eq!(app.hub.subscriber_count(), 2);
}

#[tokio::test]
async fn a_seat_is_freed_when_a_subscriber_leaves() {
    // hyper notices a closed client only when it next writes to it, so the
    // seat is freed at the next event or heartbeat: keep heartbeats short.
    let app = spawn_app_with(|c| {
        c.limits.max_subscribers = 1;
        c.heartbeat.interval = Duration::from_millis(100);
    })
    .await;
    // A raw socket, closed for real on drop, like a browser tab going away
    // (an HTTP client library may keep an idle streaming connection open).
    let mut first = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    first
        .write_all(b"GET /v1/events?topic=t HTTP/1.1\r\nHost: hub\r\n\r\n")
        .await
        .unwrap();
    let mut opening = [0u8; 256];
    let _ = first.read(&mut opening).await.unwrap();
    assert_eq!(app.hub.subscriber_count(), 1);
    drop(first);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while app.hub.subscriber_count() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(app.hub.subscriber_count(), 0);
    let mut again = app.subscribe(&["t"]).await;
    app.publish("t", serde_json::json!(1)).await;
    assert_eq!(again.next().await.data, "1");
}

#[tokio::test]
async fn too_many_topics_is_400() {
    let app = spawn_app_with(|c| c.limits.max_topics_per_subscription = 2).await;
    let response = app.get("/v1/events?topic=a&topic=b&topic=c").await;
    let problem = assert_problem(response, 400).await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("limits.max_topics_per_subscription"),
        "{problem}"
    );
}

#[tokio::test]
async fn no_topic_is_400() {
    let app = spawn_app_with(|_| {}).await;
    let response = app.get("/v1/events").await;
    assert_problem(response, 400).await;
}
