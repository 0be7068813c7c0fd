//! The Mercure routes under the hub's own operations, checked as the other
//! tests check them for ssehub's routes: the Prometheus families (publish
//! outcomes, auth refusals, rate limits, streams opened, shed and ended,
//! deliveries), traces (server span, accept and fan-out with the caller's
//! `traceparent`), drain (heartbeats, then a `retry:` hint), the limits
//! (`limits.max_subscribers`, per-subscription, body and event sizes), both
//! publish rate limits and the subscribe rate limit, and the figures the
//! console shows (`/v1/stats`).

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::json;
use ssehub::config::{Config, RateConfig};

use crate::metrics::scrape;
use crate::support::helpers::{TestApp, assert_problem, body_text, spawn_app_with};
use crate::support::jwt::Minter;
use crate::support::otlp::{Collector, KIND_INTERNAL, KIND_SERVER, Protocol, ReceivedSpan};
use crate::support::process::HubProcess;

const PUBLISHER_KEY: &str = "the-publisher-secret-of-32-bytes-or-more";
const SUBSCRIBER_KEY: &str = "the-subscriber-secret-of-32-bytes-or-more";
const PATH: &str = "/.well-known/mercure";
const TOPIC: &str = "https://example.com/books/1";

fn enable(config: &mut Config, anonymous: bool) {
    config.mercure.enabled = true;
    config.mercure.anonymous = anonymous;
    config.mercure.publisher_jwt.key = Some(PUBLISHER_KEY.to_owned());
    config.mercure.subscriber_jwt.key = Some(SUBSCRIBER_KEY.to_owned());
}

fn publisher_token(subject: &str, publish: &[&str]) -> String {
    Minter::hs256(PUBLISHER_KEY).token(&json!({"sub": subject, "mercure": {"publish": publish}}))
}

fn form(fields: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish()
}

async fn post(app: &TestApp, token: Option<&str>, fields: &[(&str, &str)]) -> reqwest::Response {
    let mut request = app
        .client
        .post(app.url(PATH))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(fields));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

async fn get(app: &TestApp, query: &str) -> reqwest::Response {
    app.client
        .get(format!("{}?{query}", app.url(PATH)))
        .send()
        .await
        .unwrap()
}

/// The response is a shed: 200, a lone jittered `retry:` hint, the end.
async fn assert_shed(response: reqwest::Response) {
    assert_eq!(response.status(), 200);
    let text = body_text(response, Duration::from_secs(5)).await;
    let millis: u64 = text
        .strip_prefix("retry: ")
        .and_then(|rest| rest.strip_suffix("\n\n"))
        .and_then(|millis| millis.parse().ok())
        .unwrap_or_else(|| panic!("not a lone retry hint: {text:?}"));
    assert!((3000..=6000).contains(&millis), "{millis}");
}

#[tokio::test]
async fn mercure_publishes_are_counted_by_outcome_and_refusals_by_reason() {
    let app = spawn_app_with(|config| {
        enable(config, false);
        config.limits.max_events_per_request = 2;
        config.limits.max_event_bytes = 1024;
        config.limits.max_body_bytes = 2048;
    })
    .await;
    let everything = publisher_token("alice", &["*"]);
    let reader = Minter::hs256(SUBSCRIBER_KEY).token(&json!({"mercure": {"subscribe": ["*"]}}));
    let response = app
        .client
        .get(format!("{}?topic={TOPIC}", app.url(PATH)))
        .bearer_auth(&reader)
        .send()
        .await
        .unwrap();
    let mut subscriber = crate::support::helpers::Subscriber::from_response(response).await;

    let accepted = post(&app, Some(&everything), &[("topic", TOPIC), ("data", "x")]).await;
    assert_eq!(accepted.status(), 200);
    subscriber.next().await;
    assert_problem(post(&app, None, &[("topic", TOPIC)]).await, 401).await;
    let elsewhere = publisher_token("alice", &["https://example.com/other"]);
    assert_problem(post(&app, Some(&elsewhere), &[("topic", TOPIC)]).await, 403).await;
    assert_problem(
        post(&app, Some(&everything), &[("retry", "soon")]).await,
        400,
    )
    .await;
    let three_topics = [("topic", "urn:a"), ("topic", "urn:b"), ("topic", "urn:c")];
    assert_problem(post(&app, Some(&everything), &three_topics).await, 413).await;
    let over_event = "e".repeat(1500);
    let response = post(
        &app,
        Some(&everything),
        &[("topic", TOPIC), ("data", &over_event)],
    )
    .await;
    assert_problem(response, 413).await;
    let over_body = "b".repeat(3000);
    let response = post(
        &app,
        Some(&everything),
        &[("topic", TOPIC), ("data", &over_body)],
    )
    .await;
    assert_problem(response, 413).await;
    assert_problem(get(&app, "topic=*").await, 401).await;

    let metrics = scrape(&app).await;
    let requests =
        |outcome| metrics.counter("ssehub_publish_requests_total", &[("outcome", outcome)]);
    assert_eq!(requests("accepted"), 1.0);
    assert_eq!(requests("rejected_unauthorized"), 2.0);
    assert_eq!(requests("rejected_invalid"), 1.0);
    assert_eq!(requests("rejected_too_large"), 3.0);
    assert_eq!(
        metrics.counter("ssehub_events_published_total", &[("outcome", "accepted")]),
        1.0
    );
    let refused = |action, reason| {
        metrics.counter(
            "ssehub_auth_rejections_total",
            &[("action", action), ("reason", reason)],
        )
    };
    assert_eq!(refused("publish", "missing_token"), 1.0);
    assert_eq!(refused("publish", "forbidden_topic"), 1.0);
    assert_eq!(refused("subscribe", "missing_token"), 1.0);
    assert_eq!(
        metrics.counter("ssehub_subscriptions_opened_total", &[]),
        1.0
    );
    assert_eq!(metrics.counter("ssehub_deliveries_total", &[]), 1.0);
}

#[tokio::test]
async fn mercure_publishes_are_under_both_publish_rate_limits() {
    let app = spawn_app_with(|config| {
        enable(config, true);
        config.rate_limits.publish_per_address = RateConfig {
            per_second: 0.01,
            burst: 2,
        };
    })
    .await;
    let token = publisher_token("alice", &["*"]);
    for _ in 0..2 {
        assert_eq!(
            post(&app, Some(&token), &[("topic", TOPIC)]).await.status(),
            200
        );
    }
    let response = post(&app, Some(&token), &[("topic", TOPIC)]).await;
    assert!(response.headers().contains_key("retry-after"));
    let problem = assert_problem(response, 429).await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("publish_per_address")
    );

    let app = spawn_app_with(|config| {
        enable(config, true);
        config.rate_limits.publish_per_publisher = RateConfig {
            per_second: 0.01,
            burst: 1,
        };
    })
    .await;
    let alice = publisher_token("alice", &["*"]);
    assert_eq!(
        post(&app, Some(&alice), &[("topic", TOPIC)]).await.status(),
        200
    );
    let problem = assert_problem(post(&app, Some(&alice), &[("topic", TOPIC)]).await, 429).await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("publish_per_publisher")
    );
    // Another token of the same holder shares the budget; another holder doesn't.
    let alice_again = Minter::hs256(PUBLISHER_KEY)
        .token(&json!({"sub": "alice", "mercure": {"publish": ["*"]}, "jti": "2"}));
    assert_problem(
        post(&app, Some(&alice_again), &[("topic", TOPIC)]).await,
        429,
    )
    .await;
    let bob = publisher_token("bob", &["*"]);
    assert_eq!(
        post(&app, Some(&bob), &[("topic", TOPIC)]).await.status(),
        200
    );
    let metrics = scrape(&app).await;
    assert_eq!(
        metrics.counter(
            "ssehub_rate_limited_total",
            &[("limit", "publish_per_publisher")]
        ),
        2.0
    );
    assert_eq!(
        metrics.counter(
            "ssehub_publish_requests_total",
            &[("outcome", "rejected_rate_limited")]
        ),
        2.0
    );
}

#[tokio::test]
async fn the_per_address_publish_limit_is_counted_for_mercure() {
    let app = spawn_app_with(|config| {
        enable(config, true);
        config.rate_limits.publish_per_address = RateConfig {
            per_second: 0.01,
            burst: 1,
        };
    })
    .await;
    let token = publisher_token("alice", &["*"]);
    assert_eq!(
        post(&app, Some(&token), &[("topic", TOPIC)]).await.status(),
        200
    );
    assert_problem(post(&app, Some(&token), &[("topic", TOPIC)]).await, 429).await;
    let metrics = scrape(&app).await;
    assert_eq!(
        metrics.counter(
            "ssehub_rate_limited_total",
            &[("limit", "publish_per_address")]
        ),
        1.0
    );
}

#[tokio::test]
async fn mercure_subscribes_beyond_capacity_or_rate_are_shed_counted_and_shown() {
    let app = spawn_app_with(|config| {
        enable(config, true);
        config.limits.max_subscribers = 1;
    })
    .await;
    let first = get(&app, "topic=*").await;
    let _first = crate::support::helpers::Subscriber::from_response(first).await;
    assert_shed(get(&app, "topic=*").await).await;
    let metrics = scrape(&app).await;
    assert_eq!(
        metrics.counter(
            "ssehub_subscriptions_closed_total",
            &[("reason", "shed_capacity")]
        ),
        1.0
    );
    // What the console shows: the Mercure stream connected, the shed one shed.
    let stats: serde_json::Value = app.get("/v1/stats").await.json().await.unwrap();
    assert_eq!(stats["subscribers"]["connected"], 1, "{stats}");
    assert_eq!(stats["subscribers"]["opened"], 2, "{stats}");
    assert_eq!(stats["subscribers"]["shed"], 1, "{stats}");

    let app = spawn_app_with(|config| {
        enable(config, true);
        config.rate_limits.subscribe_per_address = RateConfig {
            per_second: 0.01,
            burst: 1,
        };
    })
    .await;
    let first = get(&app, "topic=*").await;
    let _first = crate::support::helpers::Subscriber::from_response(first).await;
    assert_shed(get(&app, "match=urn:a").await).await;
    let metrics = scrape(&app).await;
    assert_eq!(
        metrics.counter(
            "ssehub_rate_limited_total",
            &[("limit", "subscribe_per_address")]
        ),
        1.0
    );
    assert_eq!(
        metrics.counter(
            "ssehub_subscriptions_closed_total",
            &[("reason", "shed_rate_limited")]
        ),
        1.0
    );
}

#[tokio::test]
async fn more_selectors_than_a_subscription_may_have_is_400_naming_the_limit() {
    let app = spawn_app_with(|config| {
        enable(config, true);
        config.limits.max_topics_per_subscription = 2;
    })
    .await;
    let problem = assert_problem(get(&app, "topic=urn:a&match=urn:b&topic=*").await, 400).await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("limits.max_topics_per_subscription"),
        "{problem}"
    );
    // Two templates: they name no ssehub topic, so the updates' own topic
    // is the only one the hub follows for them.
    let open = get(
        &app,
        "topic=https://example.com/a/{id}&topic=https://example.com/b/{id}",
    )
    .await;
    crate::support::helpers::Subscriber::from_response(open).await;
}

#[tokio::test]
async fn the_drain_ends_a_mercure_stream_after_its_heartbeats_with_a_retry_hint() {
    let app = spawn_app_with(|config| {
        enable(config, true);
        config.heartbeat.interval = Duration::from_millis(100);
    })
    .await;
    let response = get(&app, "topic=*").await;
    assert_eq!(response.status(), 200);
    let mut body = response.bytes_stream();
    let mut text = String::new();
    let heard = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(Ok(chunk)) = body.next().await {
            text.push_str(std::str::from_utf8(&chunk).unwrap());
            if text.contains(": heartbeat\n\n") {
                return;
            }
        }
    })
    .await;
    assert!(heard.is_ok(), "no heartbeat: {text:?}");
    let drain = tokio::spawn(app.shut_down());
    tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok(chunk)) = body.next().await {
            text.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    })
    .await
    .expect("the drain ends the stream");
    let hint = text
        .rsplit_once("retry: ")
        .and_then(|(_, tail)| tail.strip_suffix("\n\n"))
        .and_then(|millis| millis.parse::<u64>().ok());
    assert!(hint.is_some(), "no closing retry hint: {text:?}");
    let report = drain.await.unwrap();
    assert_eq!(report.streams_at_signal, 1);
    assert_eq!(report.streams_closed, 1);
}

fn one<'a>(
    spans: &'a [ReceivedSpan],
    what: &str,
    test: impl Fn(&ReceivedSpan) -> bool,
) -> &'a ReceivedSpan {
    let found: Vec<_> = spans.iter().filter(|span| test(span)).collect();
    assert_eq!(
        found.len(),
        1,
        "expected one {what}, found {found:#?} among {spans:#?}"
    );
    found[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mercure_publish_is_traced_from_the_caller_to_its_subscriber() {
    let collector = Collector::start(Protocol::HttpProtobuf).await;
    let endpoint = collector.endpoint();
    let hub = HubProcess::start(&[
        ("SSEHUB_DRAIN__DELAY", "0s"),
        ("SSEHUB_DRAIN__SPREAD", "100ms"),
        ("SSEHUB_DRAIN__TIMEOUT", "5s"),
        ("SSEHUB_TELEMETRY__OTLP_ENDPOINT", endpoint.as_str()),
        (
            "SSEHUB_TELEMETRY__PROTOCOL",
            Protocol::HttpProtobuf.as_env(),
        ),
        ("SSEHUB_MERCURE__ENABLED", "true"),
        ("SSEHUB_MERCURE__ANONYMOUS", "true"),
        ("SSEHUB_MERCURE__PUBLISHER_JWT__KEY", PUBLISHER_KEY),
        ("SSEHUB_MERCURE__SUBSCRIBER_JWT__KEY", SUBSCRIBER_KEY),
        ("SSEHUB_MERCURE__SUBSCRIPTIONS", "true"),
    ]);
    let client = reqwest::Client::new();
    let response = client
        .get(hub.url(&format!("{PATH}?topic=*")))
        .send()
        .await
        .unwrap();
    let mut subscriber = crate::support::helpers::Subscriber::from_response(response).await;
    let trace_id = format!("{:032x}", fastrand::u128(1..));
    let span_id = format!("{:016x}", fastrand::u64(1..));
    let response = client
        .post(hub.url(PATH))
        .bearer_auth(publisher_token("alice", &["*"]))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("traceparent", format!("00-{trace_id}-{span_id}-01"))
        .body(form(&[("topic", TOPIC), ("data", "hello")]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let id = response.text().await.unwrap();
    assert_eq!(subscriber.next().await.id, id);
    // The subscriptions API's server span names its route, not the path.
    let listing = client
        .get(hub.url(&format!("{PATH}/subscriptions/books")))
        .send()
        .await
        .unwrap();
    assert_eq!(listing.status(), 401);
    hub.signal("TERM");
    let (status, _, log) = hub.exit_within(Duration::from_secs(20)).await;
    assert!(status.success(), "exit status {status:?}: {log}");

    let spans = collector.spans();
    let in_trace: Vec<_> = spans
        .iter()
        .filter(|span| span.trace_id == trace_id)
        .cloned()
        .collect();
    let server = one(&in_trace, "publish server span", |s| {
        s.name == "POST /.well-known/mercure"
    });
    assert_eq!(server.kind, KIND_SERVER);
    assert_eq!(server.parent_span_id, span_id, "child of the caller's span");
    assert_eq!(server.attribute("http.route"), PATH);
    assert_eq!(server.attribute_number("http.response.status_code"), 200);
    let accept = one(&in_trace, "accept span", |s| s.name == "hub.accept");
    assert_eq!(accept.parent_span_id, server.span_id);
    assert_eq!(accept.kind, KIND_INTERNAL);
    assert_eq!(accept.attribute("messaging.destination.name"), "~mercure");
    let fan_out = one(&in_trace, "fan-out span", |s| s.name == "hub.fan_out");
    assert_eq!(fan_out.parent_span_id, accept.span_id);
    assert_eq!(fan_out.attribute_number("ssehub.fan_out.receivers"), 1);
    assert_eq!(in_trace.len(), 3, "only these three: {in_trace:#?}");

    let subscription = one(&spans, "subscription span", |s| {
        s.name == "hub.subscription"
    });
    let request = one(&spans, "subscribe server span", |s| {
        s.span_id == subscription.parent_span_id
    });
    assert_eq!(request.name, "GET /.well-known/mercure");
    assert_eq!(subscription.attribute_number("ssehub.events"), 1);
    assert_eq!(subscription.attribute("ssehub.end"), "drained");
    let listing = one(&spans, "subscriptions API span", |s| {
        s.attributes.get("url.path").map(String::as_str)
            == Some("/.well-known/mercure/subscriptions/books")
    });
    assert_eq!(
        listing.name,
        "GET /.well-known/mercure/subscriptions/{topic}"
    );
    assert_eq!(listing.attribute_number("http.response.status_code"), 401);
}

/// A refused Mercure token counts in `ssehub_auth_rejections_total` under
/// the reason an ssehub token refused the same way would: on the publish,
/// the subscription and the subscriptions API.
#[tokio::test]
async fn refused_mercure_tokens_are_counted_by_reason() {
    let app = spawn_app_with(|config| {
        enable(config, false);
        config.mercure.subscriptions = true;
    })
    .await;
    let forged = Minter::hs256("another-secret-of-32-bytes-or-more-xx")
        .token(&json!({"mercure": {"publish": ["*"], "subscribe": ["*"]}}));
    let expired = Minter::hs256(SUBSCRIBER_KEY)
        .token(&json!({"exp": 1_000_000_000, "mercure": {"subscribe": ["*"]}}));
    let far_future = Minter::hs256(PUBLISHER_KEY)
        .token(&json!({"exp": u64::MAX, "mercure": {"publish": ["*"]}}));
    let bad_selector = Minter::hs256(SUBSCRIBER_KEY)
        .token(&json!({"mercure": {"subscribe": ["https://example.com/{/id}"]}}));

    assert_problem(post(&app, Some(&forged), &[("topic", TOPIC)]).await, 401).await;
    assert_problem(
        post(&app, Some(&far_future), &[("topic", TOPIC)]).await,
        401,
    )
    .await;
    let subscribe = |token: &str| {
        app.client
            .get(format!("{}?topic={TOPIC}", app.url(PATH)))
            .bearer_auth(token)
            .send()
    };
    assert_problem(subscribe(&expired).await.unwrap(), 401).await;
    assert_problem(subscribe(&bad_selector).await.unwrap(), 401).await;
    let list = app.url("/.well-known/mercure/subscriptions");
    let response = app
        .client
        .get(&list)
        .bearer_auth(&forged)
        .send()
        .await
        .unwrap();
    assert_problem(response, 401).await;
    assert_problem(app.client.get(&list).send().await.unwrap(), 401).await;

    let metrics = scrape(&app).await;
    let refused = |action, reason| {
        metrics.counter(
            "ssehub_auth_rejections_total",
            &[("action", action), ("reason", reason)],
        )
    };
    assert_eq!(refused("publish", "bad_signature"), 1.0);
    assert_eq!(refused("publish", "expiry_out_of_range"), 1.0);
    assert_eq!(refused("subscribe", "expired"), 1.0);
    assert_eq!(refused("subscribe", "invalid_claims"), 1.0);
    // The subscriptions API: the forged token, then none.
    assert_eq!(refused("subscribe", "bad_signature"), 1.0);
    assert_eq!(refused("subscribe", "missing_token"), 1.0);
}
