//! Big batches as an attacker sends them: a cap on events per request
//! (`limits.max_events_per_request`), and publish rate limits that count
//! events, so packing events into batches can't multiply what a client may
//! send.

use serde_json::{Value, json};
use ssehub::config::{MAX_EVENTS_PER_REQUEST_DEFAULT, PublishCount, RateConfig};

use crate::support::helpers::{Subscriber, TestApp, assert_problem, spawn_app, spawn_app_with};

/// A batch of `count` events to `topic`, data `label-0`, `label-1`, ….
fn batch(topic: &str, label: &str, count: usize) -> Value {
    let events: Vec<Value> = (0..count)
        .map(|n| json!({"topic": topic, "data": format!("{label}-{n}")}))
        .collect();
    json!({ "events": events })
}

async fn post_batch(app: &TestApp, body: &Value) -> reqwest::Response {
    app.client
        .post(app.url("/v1/events"))
        .json(body)
        .send()
        .await
        .expect("batch request")
}

/// The data of everything `topic` delivers up to and including a marker
/// published last: what reached subscribers, refused batches included.
async fn delivered(app: &TestApp, subscriber: &mut Subscriber) -> Vec<String> {
    app.publish("t", json!("marker")).await;
    let mut seen = Vec::new();
    loop {
        let event = subscriber.next().await;
        if event.data == "marker" {
            return seen;
        }
        seen.push(event.data);
    }
}

#[tokio::test]
async fn a_batch_over_the_cap_gets_422_naming_the_limit_and_publishes_nothing() {
    let app = spawn_app_with(|config| config.limits.max_events_per_request = 5).await;
    let mut subscriber = app.subscribe(&["t"]).await;

    let response = post_batch(&app, &batch("t", "refused", 6)).await;
    assert!(
        !response.headers().contains_key("retry-after"),
        "waiting can't make it fit"
    );
    let problem = assert_problem(response, 422).await;
    assert_eq!(problem["type"], "urn:ssehub:problem:too-many-events");
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.contains("limits.max_events_per_request") && detail.contains("6 events"),
        "{detail}"
    );

    assert_eq!(post_batch(&app, &batch("t", "fits", 5)).await.status(), 202);
    let seen = delivered(&app, &mut subscriber).await;
    assert_eq!(seen, ["fits-0", "fits-1", "fits-2", "fits-3", "fits-4"]);
}

#[tokio::test]
async fn the_default_cap_refuses_one_event_more_than_it_allows() {
    let app = spawn_app().await;
    let at_cap = post_batch(&app, &batch("t", "e", MAX_EVENTS_PER_REQUEST_DEFAULT)).await;
    assert_eq!(at_cap.status(), 202);
    let over = post_batch(&app, &batch("t", "e", MAX_EVENTS_PER_REQUEST_DEFAULT + 1)).await;
    let problem = assert_problem(over, 422).await;
    assert_eq!(problem["type"], "urn:ssehub:problem:too-many-events");
}

#[tokio::test]
async fn the_served_spec_states_the_configured_cap() {
    let app = spawn_app_with(|config| config.limits.max_events_per_request = 42).await;
    let spec: Value = app.get("/openapi.json").await.json().await.unwrap();
    assert_eq!(
        spec["components"]["schemas"]["BatchRequest"]["properties"]["events"]["maxItems"],
        42
    );
}

/// A hub whose per-address publish limit is `burst` events with almost no
/// refill, counting as `counts` says.
async fn limited_hub(counts: PublishCount, burst: u32) -> TestApp {
    spawn_app_with(|config| {
        config.rate_limits.publish_counts = counts;
        config.rate_limits.publish_per_address = RateConfig {
            per_second: 0.01,
            burst,
        };
    })
    .await
}

#[tokio::test]
async fn counting_events_a_batch_spends_one_cell_per_event() {
    let app = limited_hub(PublishCount::Events, 10).await;
    let mut subscriber = app.subscribe(&["t"]).await;
    assert_eq!(post_batch(&app, &batch("t", "a", 6)).await.status(), 202);

    // Four of ten left: six more are over the rate, for now.
    let response = post_batch(&app, &batch("t", "b", 6)).await;
    assert!(response.headers().contains_key("retry-after"));
    let problem = assert_problem(response, 429).await;
    assert_eq!(problem["type"], "urn:ssehub:problem:rate-limited");

    // The marker below needs one cell; three are left.
    let seen = delivered(&app, &mut subscriber).await;
    assert_eq!(seen, ["a-0", "a-1", "a-2", "a-3", "a-4", "a-5"]);
}

#[tokio::test]
async fn a_batch_worth_more_events_than_the_burst_gets_413_not_a_429_forever() {
    let app = limited_hub(PublishCount::Events, 10).await;
    let mut subscriber = app.subscribe(&["t"]).await;

    let response = post_batch(&app, &batch("t", "refused", 11)).await;
    assert!(!response.headers().contains_key("retry-after"));
    let problem = assert_problem(response, 413).await;
    assert_eq!(problem["type"], "urn:ssehub:problem:over-rate-limit-burst");
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.contains("rate_limits.publish_per_address") && detail.contains("burst is 10"),
        "{detail}"
    );

    // Nothing was spent on it: a batch of the whole burst still passes.
    assert_eq!(post_batch(&app, &batch("t", "ok", 9)).await.status(), 202);
    let seen = delivered(&app, &mut subscriber).await;
    assert_eq!(seen.len(), 9, "{seen:?}");
    assert!(seen.iter().all(|data| data.starts_with("ok-")), "{seen:?}");
}

#[tokio::test]
async fn counting_requests_a_batch_costs_one() {
    let app = limited_hub(PublishCount::Requests, 2).await;
    for label in ["a", "b"] {
        assert_eq!(
            post_batch(&app, &batch("t", label, 50)).await.status(),
            202,
            "{label}"
        );
    }
    assert_problem(post_batch(&app, &batch("t", "c", 1)).await, 429).await;
}
