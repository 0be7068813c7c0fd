//! The Mercure protocol at `/.well-known/mercure` (draft-07 profile), from
//! the spec: form publish by header and cookie, selectors (exact, URI
//! template, `*`) and near-misses, private updates, resume by the
//! publisher's id, bad inputs; and one Redis case (publish on one replica,
//! resume by id on another).

use std::time::Duration;

use serde_json::json;
use ssehub::config::Config;

use crate::redis::replica;
use crate::redis::replicas::redis_server;
use crate::redis::server::Persistence;
use crate::support::helpers::{Subscriber, TestApp, assert_problem, spawn_app_with};
use crate::support::jwt::{Minter, now};

const PUBLISHER_KEY: &str = "the-publisher-secret-of-32-bytes-or-more";
const SUBSCRIBER_KEY: &str = "the-subscriber-secret-of-32-bytes-or-more";
const PATH: &str = "/.well-known/mercure";
/// Long enough for an update that should not come to have come.
const QUIET: Duration = Duration::from_millis(300);

fn enable(config: &mut Config, anonymous: bool) {
    config.mercure.enabled = true;
    config.mercure.anonymous = anonymous;
    config.mercure.publisher_jwt.key = Some(PUBLISHER_KEY.to_owned());
    config.mercure.subscriber_jwt.key = Some(SUBSCRIBER_KEY.to_owned());
}

async fn mercure_app(anonymous: bool) -> TestApp {
    spawn_app_with(|config| enable(config, anonymous)).await
}

fn publisher_token(publish: &[&str]) -> String {
    Minter::hs256(PUBLISHER_KEY).token(&json!({"mercure": {"publish": publish}}))
}

fn subscriber_token(subscribe: &[&str]) -> String {
    Minter::hs256(SUBSCRIBER_KEY).token(&json!({"mercure": {"subscribe": subscribe}}))
}

/// A form body from pairs, encoded as a browser would.
fn form(fields: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish()
}

async fn post(app: &TestApp, token: &str, fields: &[(&str, &str)]) -> reqwest::Response {
    app.client
        .post(app.url(PATH))
        .bearer_auth(token)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(fields))
        .send()
        .await
        .unwrap()
}

/// Publishes; returns the update's id (the 200 body).
async fn publish(app: &TestApp, fields: &[(&str, &str)]) -> String {
    let response = post(app, &publisher_token(&["*"]), fields).await;
    assert_eq!(response.status(), 200, "{:?}", response.text().await);
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; charset=utf-8"
    );
    response.text().await.unwrap()
}

fn subscribe_url(app: &TestApp, selectors: &[&str], extra: &[(&str, &str)]) -> String {
    let mut pairs: Vec<(&str, &str)> = selectors.iter().map(|s| ("topic", *s)).collect();
    pairs.extend_from_slice(extra);
    format!("{}?{}", app.url(PATH), form(&pairs))
}

async fn open(request: reqwest::RequestBuilder) -> Subscriber {
    Subscriber::from_response(request.send().await.unwrap()).await
}

async fn subscribe(app: &TestApp, selectors: &[&str], token: Option<&str>) -> Subscriber {
    let mut request = app.client.get(subscribe_url(app, selectors, &[]));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    open(request).await
}

#[tokio::test]
async fn the_route_is_off_by_default() {
    let app = spawn_app_with(|_| {}).await;
    let response = app.client.get(app.url(PATH)).send().await.unwrap();
    assert_eq!(response.status(), 404);
}

#[tokio::test]
async fn a_form_publish_reaches_an_exact_selector_with_its_fields_and_id() {
    let app = mercure_app(true).await;
    let topic = "https://example.com/books/1";
    let mut subscriber = subscribe(&app, &[topic], None).await;
    let id = publish(
        &app,
        &[
            ("topic", topic),
            ("topic", "https://example.com/alternate"),
            ("data", "{\"title\":\"one\"}\nsecond line"),
            ("id", "urn:uuid:book-1-v1"),
            ("type", "book.updated"),
            ("retry", "2500"),
            ("unknown", "ignored"),
        ],
    )
    .await;
    assert_eq!(id, "urn:uuid:book-1-v1", "the body is the publisher's id");
    let event = subscriber.next().await;
    assert_eq!(event.id, "urn:uuid:book-1-v1");
    assert_eq!(event.event, "book.updated");
    assert_eq!(event.retry, Some(Duration::from_millis(2500)));
    assert_eq!(event.data, "{\"title\":\"one\"}\nsecond line");
}

#[tokio::test]
async fn the_hub_makes_an_id_when_the_publisher_gives_none() {
    let app = mercure_app(true).await;
    let mut subscriber = subscribe(&app, &["*"], None).await;
    let id = publish(&app, &[("topic", "a"), ("data", "x")]).await;
    assert!(id.starts_with("urn:ssehub:"), "{id}");
    assert_eq!(subscriber.next().await.id, id);
}

#[tokio::test]
async fn the_publisher_token_may_travel_in_the_cookie() {
    let app = mercure_app(true).await;
    let mut subscriber = subscribe(&app, &["cookie"], None).await;
    let response = app
        .client
        .post(app.url(PATH))
        .header(
            "cookie",
            format!("mercureAuthorization={}", publisher_token(&["*"])),
        )
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("topic", "cookie"), ("data", "by cookie")]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(subscriber.next().await.data, "by cookie");
}

#[tokio::test]
async fn uri_template_and_exact_selectors_match_and_near_misses_do_not() {
    let app = mercure_app(true).await;
    let mut subscriber = subscribe(
        &app,
        &[
            "https://example.com/books/{id}",
            "https://example.com/authors/7",
        ],
        None,
    )
    .await;
    for topic in [
        "https://example.com/books/1/reviews",
        "https://example.com/authors/70",
        "https://example.com/book/1",
        "https://example.com/authors/7/",
    ] {
        publish(&app, &[("topic", topic), ("data", "near miss")]).await;
    }
    publish(
        &app,
        &[("topic", "https://example.com/books/42"), ("data", "book")],
    )
    .await;
    publish(
        &app,
        &[
            ("topic", "https://example.com/authors/7"),
            ("data", "author"),
        ],
    )
    .await;
    // An alternate topic that matches is enough.
    publish(
        &app,
        &[
            ("topic", "https://example.com/other"),
            ("topic", "https://example.com/books/9"),
            ("data", "alternate"),
        ],
    )
    .await;
    let data: Vec<String> = subscriber
        .take(3)
        .await
        .into_iter()
        .map(|e| e.data)
        .collect();
    assert_eq!(data, ["book", "author", "alternate"]);
    assert!(subscriber.next_within(QUIET).await.is_none());
}

#[tokio::test]
async fn private_updates_reach_only_subscribers_whose_token_covers_them() {
    let app = mercure_app(true).await;
    let topic = "https://example.com/secrets/1";
    let mut anonymous = subscribe(&app, &["*"], None).await;
    let mut other = subscribe(
        &app,
        &["*"],
        Some(&subscriber_token(&["https://example.com/other"])),
    )
    .await;
    let mut allowed = subscribe(
        &app,
        &["*"],
        Some(&subscriber_token(&["https://example.com/secrets/{id}"])),
    )
    .await;
    publish(
        &app,
        &[("topic", topic), ("data", "secret"), ("private", "on")],
    )
    .await;
    // The field's presence marks it private, whatever its value.
    publish(
        &app,
        &[("topic", topic), ("data", "also secret"), ("private", "")],
    )
    .await;
    publish(&app, &[("topic", topic), ("data", "public")]).await;
    assert_eq!(anonymous.next().await.data, "public");
    assert_eq!(other.next().await.data, "public");
    let seen: Vec<String> = allowed.take(3).await.into_iter().map(|e| e.data).collect();
    assert_eq!(seen, ["secret", "also secret", "public"]);
    // On replay too: an anonymous resume from the start sees only the public one.
    let mut replay = open(app.client.get(subscribe_url(
        &app,
        &["*"],
        &[("lastEventID", "earliest")],
    )))
    .await;
    assert_eq!(replay.next().await.data, "public");
    assert!(replay.next_within(QUIET).await.is_none());
}

#[tokio::test]
async fn subscribing_needs_a_token_unless_anonymous_is_on() {
    let app = mercure_app(false).await;
    let response = app
        .client
        .get(subscribe_url(&app, &["*"], &[]))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers()["www-authenticate"],
        "Bearer realm=\"ssehub\""
    );
    assert_problem(response, 401).await;
    let response = app
        .client
        .get(subscribe_url(&app, &["*"], &[]))
        .bearer_auth(Minter::hs256(PUBLISHER_KEY).token(&json!({"mercure": {"subscribe": ["*"]}})))
        .send()
        .await
        .unwrap();
    assert!(
        response.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("invalid_token")
    );
    assert_problem(response, 401).await;
    // A token in the query (draft-07's `authorization`) opens the stream.
    let token = subscriber_token(&["*"]);
    let mut subscriber = open(app.client.get(subscribe_url(
        &app,
        &["q"],
        &[("authorization", &token)],
    )))
    .await;
    publish(&app, &[("topic", "q"), ("data", "in")]).await;
    assert_eq!(subscriber.next().await.data, "in");
}

#[tokio::test]
async fn resume_by_the_publishers_id_header_or_query_names_the_cursor() {
    let app = mercure_app(true).await;
    for n in 1..=3 {
        let id = format!("urn:uuid:v{n}");
        publish(
            &app,
            &[("topic", "r"), ("data", &format!("v{n}")), ("id", &id)],
        )
        .await;
    }
    let response = app
        .client
        .get(subscribe_url(&app, &["r"], &[]))
        .header("last-event-id", "urn:uuid:v1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["last-event-id"], "urn:uuid:v1");
    let mut subscriber = Subscriber::from_response(response).await;
    let ids: Vec<String> = subscriber.take(2).await.into_iter().map(|e| e.id).collect();
    assert_eq!(ids, ["urn:uuid:v2", "urn:uuid:v3"]);

    // The header wins over the query.
    let mut subscriber = open(
        app.client
            .get(subscribe_url(
                &app,
                &["r"],
                &[("lastEventID", "urn:uuid:v1")],
            ))
            .header("last-event-id", "urn:uuid:v2"),
    )
    .await;
    assert_eq!(subscriber.next().await.id, "urn:uuid:v3");

    for name in ["Last-Event-ID", "lastEventID", "last_event_id"] {
        let url = subscribe_url(&app, &["r"], &[(name, "urn:uuid:v2")]);
        let mut subscriber = open(app.client.get(url)).await;
        assert_eq!(subscriber.next().await.id, "urn:uuid:v3", "{name}");
    }

    // An id history doesn't hold: `earliest`, and everything held.
    let response = app
        .client
        .get(subscribe_url(
            &app,
            &["r"],
            &[("lastEventID", "urn:uuid:unknown")],
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["last-event-id"], "earliest");
    let mut subscriber = Subscriber::from_response(response).await;
    let data: Vec<String> = subscriber
        .take(3)
        .await
        .into_iter()
        .map(|e| e.data)
        .collect();
    assert_eq!(data, ["v1", "v2", "v3"]);
}

#[tokio::test]
async fn resume_by_a_hub_made_id() {
    let app = mercure_app(true).await;
    let first = publish(&app, &[("topic", "h"), ("data", "one")]).await;
    publish(&app, &[("topic", "h"), ("data", "two")]).await;
    let mut subscriber = open(
        app.client
            .get(subscribe_url(&app, &["h"], &[]))
            .header("last-event-id", &first),
    )
    .await;
    assert_eq!(subscriber.next().await.data, "two");
}

#[tokio::test]
async fn bad_publishes_are_refused_as_the_spec_says() {
    let app = mercure_app(true).await;
    let token = publisher_token(&["https://example.com/{any}"]);
    let allowed = "https://example.com/a";
    for fields in [
        vec![("data", "no topic")],
        vec![("topic", allowed), ("retry", "12a")],
        vec![("topic", allowed), ("retry", "-1")],
        vec![("topic", allowed), ("id", "#fragment")],
        vec![("topic", allowed), ("id", "earliest")],
        vec![("topic", allowed), ("id", "a\u{1}b")],
        vec![("topic", allowed), ("type", "a\nb")],
        vec![("topic", allowed), ("type", "mercure")],
        vec![("topic", "*")],
    ] {
        let problem = assert_problem(post(&app, &token, &fields).await, 400).await;
        assert_eq!(
            problem["type"], "urn:ssehub:problem:bad-mercure-request",
            "{fields:?}"
        );
    }
    // A topic the token doesn't cover: 403, and nothing published.
    let mut subscriber = subscribe(&app, &["*"], None).await;
    let response = post(
        &app,
        &token,
        &[("topic", allowed), ("topic", "https://other.example/b")],
    )
    .await;
    assert_problem(response, 403).await;
    let response = post(
        &app,
        &Minter::hs256(PUBLISHER_KEY).token(&json!({})),
        &[("topic", allowed)],
    )
    .await;
    assert_problem(response, 403).await;
    assert!(subscriber.next_within(QUIET).await.is_none());
    // No token, a bad token.
    let response = app
        .client
        .post(app.url(PATH))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("topic", allowed)]))
        .send()
        .await
        .unwrap();
    assert_problem(response, 401).await;
    let response = post(&app, &subscriber_token(&["*"]), &[("topic", allowed)]).await;
    assert_problem(response, 401).await;
    let expired = Minter::hs256(PUBLISHER_KEY)
        .token(&json!({"exp": now() - 60, "mercure": {"publish": ["*"]}}));
    assert_problem(post(&app, &expired, &[("topic", allowed)]).await, 401).await;
    // Over the size limit.
    let big = "x".repeat(70 * 1024);
    let response = post(&app, &token, &[("topic", allowed), ("data", &big)]).await;
    assert_problem(response, 413).await;
}

#[tokio::test]
async fn bad_selectors_are_refused() {
    let app = mercure_app(true).await;
    for url in [
        app.url(PATH),
        subscribe_url(&app, &["https://example.com/{unclosed"], &[]),
        subscribe_url(&app, &[""], &[]),
    ] {
        let response = app.client.get(url).send().await.unwrap();
        assert_problem(response, 400).await;
    }
}

#[tokio::test]
async fn the_internal_topic_is_refused_on_ssehubs_own_routes() {
    let app = mercure_app(true).await;
    let response = app
        .client
        .get(app.url("/v1/events?topic=~mercure"))
        .send()
        .await
        .unwrap();
    assert_problem(response, 400).await;
    let response = app.publish_raw("~mercure", json!({"data": "forged"})).await;
    assert_problem(response, 400).await;
}

#[tokio::test]
async fn resume_by_a_publishers_id_works_on_another_replica_through_redis() {
    let server = redis_server(Persistence::None).await;
    let first = replica(&server, |config| enable(config, true)).await;
    let second = replica(&server, |config| enable(config, true)).await;
    for n in 1..=3 {
        let id = format!("urn:uuid:redis-{n}");
        publish(
            &first,
            &[("topic", "x"), ("data", &format!("{n}")), ("id", &id)],
        )
        .await;
    }
    let response = second
        .client
        .get(subscribe_url(&second, &["x"], &[]))
        .header("last-event-id", "urn:uuid:redis-1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["last-event-id"], "urn:uuid:redis-1");
    let mut subscriber = Subscriber::from_response(response).await;
    let events: Vec<(String, String)> = subscriber
        .take(2)
        .await
        .into_iter()
        .map(|e| (e.id, e.data))
        .collect();
    assert_eq!(
        events,
        [
            ("urn:uuid:redis-2".to_owned(), "2".to_owned()),
            ("urn:uuid:redis-3".to_owned(), "3".to_owned())
        ]
    );
    // And live: published on the second, seen on a subscriber of the first.
    let mut live = subscribe(&first, &["x"], None).await;
    publish(&second, &[("topic", "x"), ("data", "live")]).await;
    assert_eq!(live.next().await.data, "live");
}

/// A resume by a publisher's id while Redis is stalled can't find where
/// the id is: the subscribe is shed (a retry hint, then the end), never
/// answered with everything history holds, which the client already has.
/// Once Redis answers, the same id resumes exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_by_a_publishers_id_while_history_is_unreadable_is_shed_not_replayed() {
    let server = redis_server(Persistence::None).await;
    let app = replica(&server, |config| enable(config, true)).await;
    for n in 1..=3 {
        let id = format!("urn:uuid:stalled-{n}");
        publish(
            &app,
            &[("topic", "x"), ("data", &format!("{n}")), ("id", &id)],
        )
        .await;
    }
    server.signal("STOP");
    crate::support::helpers::wait_ready(&app, false).await;
    let response = app
        .client
        .get(subscribe_url(&app, &["x"], &[]))
        .header("last-event-id", "urn:uuid:stalled-1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let shed = crate::support::helpers::read_to_end(response).await;
    assert!(shed.clean, "the shed stream ends cleanly: {:?}", shed.text);
    assert!(shed.text.contains("retry: "), "{:?}", shed.text);
    assert!(
        !shed.text.contains("data: "),
        "nothing replayed: {:?}",
        shed.text
    );
    server.signal("CONT");
    crate::support::helpers::wait_ready(&app, true).await;
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics
            .contains("ssehub_subscriptions_closed_total{reason=\"shed_history_unavailable\"} 1\n"),
        "{metrics}"
    );
    let response = app
        .client
        .get(subscribe_url(&app, &["x"], &[]))
        .header("last-event-id", "urn:uuid:stalled-1")
        .send()
        .await
        .unwrap();
    let mut resumed = Subscriber::from_response(response).await;
    let ids: Vec<String> = resumed.take(2).await.into_iter().map(|e| e.id).collect();
    assert_eq!(ids, ["urn:uuid:stalled-2", "urn:uuid:stalled-3"]);
}

#[tokio::test]
async fn publishes_count_against_the_per_address_rate_limit() {
    let app = spawn_app_with(|config| {
        enable(config, true);
        config.rate_limits.publish_per_address.per_second = 0.01;
        config.rate_limits.publish_per_address.burst = 1;
    })
    .await;
    publish(&app, &[("topic", "rated")]).await;
    let response = post(&app, &publisher_token(&["*"]), &[("topic", "rated")]).await;
    assert_problem(response, 429).await;
}

#[tokio::test]
async fn draft_08_matchers_exact_and_url_pattern_and_near_misses() {
    let app = mercure_app(true).await;
    let url = format!(
        "{}?{}",
        app.url(PATH),
        form(&[
            ("match", "https://example.com/exact"),
            ("match_urlpattern", "https://example.com/books/:id"),
            // Relative: resolved against the hub's URL (the Host it was asked by).
            ("match_urlpattern", "/local/*"),
        ])
    );
    let mut subscriber = open(app.client.get(url)).await;
    let host = format!("http://{}", app.addr);
    for topic in [
        "https://example.com/exact/",
        "https://example.com/books/1/reviews",
        "https://example.com/books",
        "https://other.example/local/1",
        "not a url",
    ] {
        publish(&app, &[("topic", topic), ("data", "near miss")]).await;
    }
    publish(
        &app,
        &[("topic", "https://example.com/exact"), ("data", "exact")],
    )
    .await;
    publish(
        &app,
        &[
            ("topic", "https://example.com/books/7"),
            ("data", "pattern"),
        ],
    )
    .await;
    publish(&app, &[("topic", "/local/a"), ("data", "relative")]).await;
    let absolute_local = format!("{host}/local/b");
    publish(
        &app,
        &[("topic", &absolute_local), ("data", "absolute local")],
    )
    .await;
    let data: Vec<String> = subscriber
        .take(4)
        .await
        .into_iter()
        .map(|e| e.data)
        .collect();
    assert_eq!(data, ["exact", "pattern", "relative", "absolute local"]);
    assert!(subscriber.next_within(QUIET).await.is_none());
}

#[tokio::test]
async fn unknown_or_bad_matchers_are_refused() {
    let app = mercure_app(true).await;
    for pairs in [
        vec![("match_regex", "a.*")],
        vec![("MATCH", "a")],
        vec![("matching", "a")],
        vec![("match_urlpattern", "https://example.com/(")],
        vec![("match", "")],
    ] {
        let url = format!("{}?{}", app.url(PATH), form(&pairs));
        let response = app.client.get(url).send().await.unwrap();
        let problem = assert_problem(response, 400).await;
        assert_eq!(
            problem["type"], "urn:ssehub:problem:bad-mercure-request",
            "{pairs:?}"
        );
    }
}

#[tokio::test]
async fn mercure_publishes_and_deliveries_are_counted_like_ssehubs_own() {
    let app = mercure_app(true).await;
    let mut subscriber = subscribe(&app, &["*"], None).await;
    // An IRI topic: one that names an ssehub topic would also publish there
    // (a second event; see mercure_publish.rs).
    let topic = "https://example.com/counted";
    publish(&app, &[("topic", topic), ("data", "x")]).await;
    subscriber.next().await;
    let refused = post(&app, "not a token", &[("topic", topic)]).await;
    assert_eq!(refused.status(), 401);
    let stats: serde_json::Value = app.get("/v1/stats").await.json().await.unwrap();
    assert_eq!(stats["publishes"]["requests_accepted"], 1, "{stats}");
    assert_eq!(stats["publishes"]["requests_rejected"], 1, "{stats}");
    assert_eq!(stats["publishes"]["events_accepted"], 1, "{stats}");
    assert_eq!(stats["subscribers"]["connected"], 1, "{stats}");
    assert_eq!(stats["deliveries"]["events"], 1, "{stats}");
}

#[tokio::test]
async fn the_routes_are_in_the_openapi_spec_and_a_non_form_publish_is_refused() {
    let app = mercure_app(true).await;
    let spec: serde_json::Value = app.get("/openapi.json").await.json().await.unwrap();
    let route = &spec["paths"]["/.well-known/mercure"];
    let form = &route["post"]["requestBody"]["content"]["application/x-www-form-urlencoded"];
    assert_eq!(form["schema"]["required"], json!(["topic"]), "{route}");
    assert_eq!(
        form["schema"]["properties"]["topic"]["anyOf"][1]["type"],
        "array"
    );
    assert!(
        route["post"]["responses"]["200"]["content"]["text/plain; charset=utf-8"].is_object(),
        "{route}"
    );
    assert!(
        route["get"]["responses"]["200"]["content"]["text/event-stream"].is_object(),
        "{route}"
    );
    let response = app
        .client
        .post(app.url(PATH))
        .bearer_auth(publisher_token(&["*"]))
        .json(&json!({"topic": "a"}))
        .send()
        .await
        .unwrap();
    assert_problem(response, 415).await;
}

#[tokio::test]
async fn a_mercure_stream_gets_heartbeats_and_is_closed_by_the_drain() {
    let app = spawn_app_with(|config| {
        enable(config, true);
        config.heartbeat.interval = Duration::from_millis(100);
    })
    .await;
    let response = app
        .client
        .get(subscribe_url(&app, &["*"], &[]))
        .send()
        .await
        .unwrap();
    let text = crate::support::helpers::read_until(response, Duration::from_secs(5), |text| {
        text.contains(": heartbeat\n\n")
    })
    .await;
    assert!(text.contains(": heartbeat\n\n"), "{text:?}");
    let _open = subscribe(&app, &["*"], None).await;
    let report = app.shut_down().await;
    assert_eq!(report.streams_at_signal, 1);
    assert_eq!(report.streams_closed, 1);
}

/// A draft-08 access token (`typ: at+jwt`) signed with `secret`.
fn access_token(secret: &str, claims: &serde_json::Value) -> String {
    let header = jsonwebtoken::Header {
        typ: Some("at+jwt".to_owned()),
        ..jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256)
    };
    let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()).unwrap();
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

const ISSUER: &str = "https://publisher.example";
const AUDIENCE: &str = "https://hub.example/.well-known/mercure";

fn details(actions: &[&str], topics: serde_json::Value) -> serde_json::Value {
    json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "exp": now() + 600,
        "authorization_details": [{
            "type": "https://mercure.rocks/authorization-detail",
            "actions": actions,
            "topics": topics,
        }],
    })
}

#[tokio::test]
async fn draft_08_access_tokens_grant_by_authorization_details() {
    let app = spawn_app_with(|config| {
        enable(config, true);
        for jwt in [
            &mut config.mercure.publisher_jwt,
            &mut config.mercure.subscriber_jwt,
        ] {
            jwt.issuer = Some(ISSUER.to_owned());
            jwt.audience = Some(AUDIENCE.to_owned());
        }
    })
    .await;
    let topic = "https://example.com/books/1";
    let subscriber_token = access_token(
        SUBSCRIBER_KEY,
        &details(
            &["subscribe", "some-future-action"],
            json!([{"match": "https://example.com/books/:id", "match_type": "urlpattern"}]),
        ),
    );
    let mut private_reader = subscribe(&app, &["*"], Some(&subscriber_token)).await;
    let mut anonymous = subscribe(&app, &["*"], None).await;
    let publisher = access_token(
        PUBLISHER_KEY,
        &details(&["publish"], json!([{"match": topic}])),
    );
    let response = post(
        &app,
        &publisher,
        &[("topic", topic), ("data", "secret"), ("private", "on")],
    )
    .await;
    assert_eq!(response.status(), 200);
    let response = post(&app, &publisher, &[("topic", topic), ("data", "public")]).await;
    assert_eq!(response.status(), 200);
    assert_eq!(private_reader.next().await.data, "secret");
    assert_eq!(anonymous.next().await.data, "public");
    // Exact match only: another topic is refused.
    let response = post(
        &app,
        &publisher,
        &[("topic", "https://example.com/books/2")],
    )
    .await;
    assert_problem(response, 403).await;

    // The profile's checks: exp, iss and aud required and right, a known
    // match_type, a well-formed detail.
    let mut no_exp = details(&["publish"], json!([{"match": "*"}]));
    no_exp.as_object_mut().unwrap().remove("exp");
    let mut wrong_aud = details(&["publish"], json!([{"match": "*"}]));
    wrong_aud["aud"] = json!("https://other-hub.example/.well-known/mercure");
    let mut no_iss = details(&["publish"], json!([{"match": "*"}]));
    no_iss.as_object_mut().unwrap().remove("iss");
    let bad_type = details(
        &["publish"],
        json!([{"match": "*x", "match_type": "regex"}]),
    );
    let bad_actions = details(&[], json!([{"match": "*"}]));
    for claims in [no_exp, wrong_aud, no_iss, bad_type, bad_actions] {
        let response = post(
            &app,
            &access_token(PUBLISHER_KEY, &claims),
            &[("topic", topic)],
        )
        .await;
        assert!(
            response.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .contains("invalid_token"),
            "{claims}"
        );
        assert_problem(response, 401).await;
    }
}

#[tokio::test]
async fn draft_08_access_tokens_need_the_issuer_and_audience_configured() {
    let app = mercure_app(true).await;
    let token = access_token(
        PUBLISHER_KEY,
        &details(&["publish"], json!([{"match": "*"}])),
    );
    let problem = assert_problem(post(&app, &token, &[("topic", "a")]).await, 401).await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("mercure.*_jwt.issuer"),
        "{problem}"
    );
}

#[tokio::test]
async fn subscribes_over_the_per_address_rate_are_shed_before_any_lookup() {
    let app = spawn_app_with(|config| {
        enable(config, true);
        config.rate_limits.subscribe_per_address.per_second = 0.01;
        config.rate_limits.subscribe_per_address.burst = 1;
    })
    .await;
    let _first = subscribe(&app, &["*"], None).await;
    let response = app
        .client
        .get(subscribe_url(
            &app,
            &["*"],
            &[("lastEventID", "urn:uuid:unknown")],
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        !response.headers().contains_key("last-event-id"),
        "a shed names no cursor"
    );
    let text = crate::support::helpers::body_text(response, Duration::from_secs(5)).await;
    assert!(text.starts_with("retry: "), "{text:?}");
    assert!(!text.contains("id: "), "{text:?}");
}
