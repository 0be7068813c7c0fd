//! What goes over the wire: headers, the opening frames, line splitting,
//! heartbeats, CORS.

use std::time::Duration;

use serde_json::json;

use crate::support::helpers::{PATIENCE, read_until, spawn_app, spawn_app_with};

#[tokio::test]
async fn a_stream_opens_at_once_with_sse_headers_a_retry_and_a_comment() {
    let app = spawn_app().await;
    let response = app.get("/v1/events?topic=t").await;
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    assert_eq!(headers["content-type"], "text/event-stream");
    assert_eq!(headers["cache-control"], "no-cache");
    assert_eq!(headers["x-accel-buffering"], "no");
    // Nothing is published: the opening frames must arrive on their own.
    let text = read_until(response, PATIENCE, |t| t.contains("\n\n")).await;
    assert!(text.starts_with("retry: 3000\n: "), "{text:?}");
}

#[tokio::test]
async fn multi_line_empty_and_cr_data_round_trip_through_a_spec_parser() {
    let app = spawn_app().await;
    let mut subscriber = app.subscribe(&["t"]).await;
    let cases = [
        ("line one\nline two", "line one\nline two"),
        ("", ""),
        ("crlf\r\nbreak", "crlf\nbreak"),
        ("lone\rcr", "lone\ncr"),
        ("trailing\n", "trailing\n"),
        ("\n\n", "\n\n"),
        ("unicode ✓ 🚀", "unicode ✓ 🚀"),
    ];
    for (data, _) in cases {
        app.publish("t", json!(data)).await;
    }
    for (sent, expected) in cases {
        let event = subscriber.next().await;
        assert_eq!(event.data, expected, "sent {sent:?}");
    }
}

#[tokio::test]
async fn a_lone_cr_cannot_smuggle_a_field_into_the_frame() {
    let app = spawn_app().await;
    let response = app.get("/v1/events?topic=t").await;
    app.publish("t", json!("x\rid: forged\revent: forged"))
        .await;
    let text = read_until(response, PATIENCE, |t| t.contains("forged\n\n")).await;
    assert!(
        text.contains("data: x\ndata: id: forged\ndata: event: forged\n\n"),
        "{text:?}"
    );
}

#[tokio::test]
async fn a_heartbeat_comment_arrives_after_silence() {
    let app = spawn_app_with(|c| c.heartbeat.interval = Duration::from_millis(300)).await;
    let response = app.get("/v1/events?topic=t").await;
    let text = read_until(response, PATIENCE, |t| t.contains(": heartbeat\n\n")).await;
    assert!(text.contains(": heartbeat\n\n"), "{text:?}");
}

#[tokio::test]
async fn cors_headers_follow_the_configured_origins() {
    let app = spawn_app_with(|c| c.cors.allowed_origins = vec!["https://app.example".into()]).await;
    let allowed = app
        .client
        .get(app.url("/healthz"))
        .header("Origin", "https://app.example")
        .send()
        .await
        .unwrap();
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    let refused = app
        .client
        .get(app.url("/healthz"))
        .header("Origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert!(
        refused
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
}

#[tokio::test]
async fn the_spec_and_swagger_ui_describe_every_route() {
    let app = spawn_app().await;
    let spec: serde_json::Value = app.get("/openapi.json").await.json().await.unwrap();
    let paths = spec["paths"].as_object().unwrap();
    for path in [
        "/v1/topics/{topic}/events",
        "/v1/events",
        "/event-stream",
        "/healthz",
        "/readyz",
    ] {
        assert!(paths.contains_key(path), "{path} missing from the spec");
    }
    let stream = &spec["paths"]["/v1/events"]["get"]["responses"]["200"]["content"];
    assert!(stream.get("text/event-stream").is_some(), "{stream}");
    let seed = &spec["paths"]["/event-stream"]["get"]["responses"]["200"]["content"];
    assert!(seed.get("text/event-stream").is_some(), "{seed}");
    let docs = app.get("/docs").await;
    assert_eq!(docs.status(), 200);
    assert!(docs.text().await.unwrap().contains("swagger"));
}
