//! The Mercure publish rules beyond the preview's (draft-08: the hub's
//! reserved namespace, Unicode format characters; `Idempotency-Key` as on
//! ssehub's own routes; URI templates past level 2), and one hub for both
//! APIs: an update published through either reaches the subscribers of its
//! topic on either subscribe route, live, on resume and across replicas
//! through Redis, never twice.

use std::time::Duration;

use serde_json::json;
use ssehub::config::{Config, SubscribeAuth};

use crate::redis::replica;
use crate::redis::replicas::redis_server;
use crate::redis::server::Persistence;
use crate::support::helpers::{Subscriber, TestApp, assert_problem, spawn_app_with};
use crate::support::jwt::{Minter, SECRET, claims};

const PUBLISHER_KEY: &str = "the-publisher-secret-of-32-bytes-or-more";
const SUBSCRIBER_KEY: &str = "the-subscriber-secret-of-32-bytes-or-more";
const PATH: &str = "/.well-known/mercure";
/// Long enough for an event that should not come to have come.
const QUIET: Duration = Duration::from_millis(300);
const BAD_REQUEST: &str = "urn:ssehub:problem:bad-mercure-request";

fn enable(config: &mut Config) {
    config.mercure.enabled = true;
    config.mercure.anonymous = true;
    config.mercure.publisher_jwt.key = Some(PUBLISHER_KEY.to_owned());
    config.mercure.subscriber_jwt.key = Some(SUBSCRIBER_KEY.to_owned());
}

async fn mercure_app() -> TestApp {
    spawn_app_with(enable).await
}

fn publisher_token() -> String {
    Minter::hs256(PUBLISHER_KEY).token(&json!({"mercure": {"publish": ["*"]}}))
}

fn form(fields: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish()
}

/// A Mercure publish with `token` and extra headers.
async fn post_with(
    app: &TestApp,
    token: &str,
    headers: &[(&str, &str)],
    fields: &[(&str, &str)],
) -> reqwest::Response {
    let mut request = app
        .client
        .post(app.url(PATH))
        .bearer_auth(token)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(fields));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

async fn post(app: &TestApp, fields: &[(&str, &str)]) -> reqwest::Response {
    post_with(app, &publisher_token(), &[], fields).await
}

/// Publishes; returns the update's id (the 200 body).
async fn publish(app: &TestApp, fields: &[(&str, &str)]) -> String {
    let response = post(app, fields).await;
    assert_eq!(response.status(), 200, "{:?}", response.text().await);
    response.text().await.unwrap()
}

/// A Mercure subscription URL with `(name, value)` query pairs.
fn mercure_url(app: &TestApp, pairs: &[(&str, &str)]) -> String {
    format!("{}?{}", app.url(PATH), form(pairs))
}

async fn mercure_subscribe(app: &TestApp, pairs: &[(&str, &str)]) -> Subscriber {
    let response = app
        .client
        .get(mercure_url(app, pairs))
        .send()
        .await
        .unwrap();
    Subscriber::from_response(response).await
}

/// A Mercure subscription resuming after `last_event_id` (header).
async fn mercure_resume(app: &TestApp, pairs: &[(&str, &str)], last_event_id: &str) -> Subscriber {
    let response = app
        .client
        .get(mercure_url(app, pairs))
        .header("last-event-id", last_event_id)
        .send()
        .await
        .unwrap();
    Subscriber::from_response(response).await
}

async fn assert_bad(response: reqwest::Response, what: &str) -> String {
    let problem = assert_problem(response, 400).await;
    assert_eq!(problem["type"], BAD_REQUEST, "{what}: {problem}");
    problem["detail"].as_str().unwrap().to_owned()
}

async fn assert_quiet(subscriber: &mut Subscriber, what: &str) {
    if let Some(event) = subscriber.next_within(QUIET).await {
        panic!("{what}: an event came that should not have: {event:?}");
    }
}

#[tokio::test]
async fn topics_in_the_hubs_reserved_namespace_are_refused_however_spelled() {
    let app = mercure_app().await;
    let mut subscriber = mercure_subscribe(&app, &[("topic", "*")]).await;
    let host = app.url("");
    let absolute = format!("{host}{PATH}/subscriptions/a/b");
    for topic in [
        absolute.as_str(),
        "https://elsewhere.example/.well-known/mercure",
        "/.well-known/mercure/subscriptions",
        "mercure/subscriptions",
        "/.well-known/%6Dercure/subscriptions",
        "/.well-known/mercure/../mercure/x",
        "/.well-known/x/%2e%2e/mercure",
    ] {
        // As an alternate too: every topic is checked.
        for fields in [
            vec![("topic", topic)],
            vec![("topic", "https://example.com/ok"), ("topic", topic)],
        ] {
            let detail = assert_bad(post(&app, &fields).await, topic).await;
            assert!(detail.contains("reserved namespace"), "{topic}: {detail}");
        }
    }
    assert_quiet(&mut subscriber, "a refused publish").await;
    // Neighbours of the namespace are ordinary topics.
    for topic in [
        "https://example.com/.well-known/mercurex",
        "/.well-known/mercure-other/x",
        "https://example.com/.well-known/mercure%2Fsubscriptions",
    ] {
        publish(&app, &[("topic", topic), ("data", topic)]).await;
        assert_eq!(subscriber.next().await.data, topic);
    }
}

#[tokio::test]
async fn unicode_format_characters_are_refused_in_topics_ids_types_and_selectors() {
    let app = mercure_app().await;
    let mut subscriber = mercure_subscribe(&app, &[("topic", "*")]).await;
    let topic = "https://example.com/books/1";
    // A zero-width space, a right-to-left override, a byte order mark.
    for format in ["\u{200B}", "\u{202E}", "\u{FEFF}"] {
        let spoofed = format!("https://example.com/{format}books/1");
        let with_format = format!("urn:uuid:{format}1");
        for (field, fields) in [
            ("topic", vec![("topic", spoofed.as_str())]),
            ("id", vec![("topic", topic), ("id", with_format.as_str())]),
            (
                "type",
                vec![("topic", topic), ("type", with_format.as_str())],
            ),
        ] {
            let detail = assert_bad(post(&app, &fields).await, field).await;
            assert!(
                detail.starts_with(field) && detail.contains("Cf"),
                "{field}: {detail}"
            );
        }
        for matcher in ["topic", "match", "match_urlpattern"] {
            let response = app
                .client
                .get(mercure_url(&app, &[(matcher, &spoofed)]))
                .send()
                .await
                .unwrap();
            assert_bad(response, matcher).await;
        }
    }
    assert_quiet(&mut subscriber, "a refused publish").await;
    // Letters of any script are no format characters.
    let accented = "https://example.com/livres/été";
    publish(
        &app,
        &[
            ("topic", accented),
            ("id", "urn:書籍:1"),
            ("type", "mis-à-jour"),
        ],
    )
    .await;
    assert_eq!(subscriber.next().await.id, "urn:書籍:1");
}

#[tokio::test]
async fn uri_templates_beyond_level_2_are_refused_with_the_reason() {
    let app = mercure_app().await;
    for template in [
        "https://example.com/books{/id}",
        "https://example.com/books{?page}",
        "https://example.com/{a,b}",
    ] {
        let response = app
            .client
            .get(mercure_url(&app, &[("topic", template)]))
            .send()
            .await
            .unwrap();
        let detail = assert_bad(response, template).await;
        assert!(detail.contains("levels 1-2"), "{template}: {detail}");
    }
}

#[tokio::test]
async fn an_idempotency_key_replays_the_first_answer_and_publishes_once() {
    let app = mercure_app().await;
    let mut subscriber = mercure_subscribe(&app, &[("topic", "*")]).await;
    let token = publisher_token();
    let update = [("topic", "https://example.com/a"), ("data", "once")];
    let keyed = [("idempotency-key", "\"order-1\"")];
    let first = post_with(&app, &token, &keyed, &update).await;
    assert_eq!(first.status(), 200);
    let id = first.text().await.unwrap();
    assert!(id.starts_with("urn:ssehub:"), "{id}");
    // The bare spelling names the same key; the answer is the same id.
    let replay = post_with(&app, &token, &[("idempotency-key", "order-1")], &update).await;
    assert_eq!(replay.status(), 200);
    assert_eq!(
        replay.headers()["content-type"],
        "text/plain; charset=utf-8"
    );
    assert_eq!(replay.text().await.unwrap(), id);
    let event = subscriber.next().await;
    assert_eq!(
        (event.id.as_str(), event.data.as_str()),
        (id.as_str(), "once")
    );
    assert_quiet(&mut subscriber, "a replayed publish").await;

    // A publisher's id is answered again too.
    let chosen = [
        ("topic", "https://example.com/a"),
        ("id", "urn:uuid:chosen"),
    ];
    let keyed_b = [("idempotency-key", "order-2")];
    for _ in 0..2 {
        let response = post_with(&app, &token, &keyed_b, &chosen).await;
        assert_eq!(response.text().await.unwrap(), "urn:uuid:chosen");
    }
    assert_eq!(subscriber.next().await.id, "urn:uuid:chosen");
    assert_quiet(&mut subscriber, "a replayed publish").await;

    // The same key with another update: 422, nothing published.
    let other = [("topic", "https://example.com/a"), ("data", "other")];
    let problem = assert_problem(post_with(&app, &token, &keyed, &other).await, 422).await;
    assert_eq!(problem["type"], "urn:ssehub:problem:idempotency-key-reused");
    // A malformed key: 400, nothing published.
    for bad in ["a b", "\"open", ""] {
        let response = post_with(&app, &token, &[("idempotency-key", bad)], &other).await;
        let problem = assert_problem(response, 400).await;
        assert_eq!(
            problem["type"], "urn:ssehub:problem:invalid-idempotency-key",
            "{bad:?}"
        );
    }
    assert_quiet(&mut subscriber, "a refused publish").await;

    // Keys are the token holder's: another subject's same key publishes.
    let someone_else = Minter::hs256(PUBLISHER_KEY)
        .token(&json!({"sub": "another", "mercure": {"publish": ["*"]}}));
    let response = post_with(&app, &someone_else, &keyed, &update).await;
    let other_id = response.text().await.unwrap();
    assert_ne!(other_id, id);
    assert_eq!(subscriber.next().await.id, other_id);
}

#[tokio::test]
async fn more_topics_than_a_publish_may_make_events_is_413() {
    let app = spawn_app_with(|config| {
        enable(config);
        config.limits.max_events_per_request = 3;
    })
    .await;
    let fields: Vec<(&str, &str)> = ["t1", "t2", "t3", "t4"]
        .iter()
        .map(|topic| ("topic", *topic))
        .collect();
    let problem = assert_problem(post(&app, &fields).await, 413).await;
    assert_eq!(problem["type"], "urn:ssehub:problem:too-many-topics");
    publish(&app, &fields[..3]).await;
}

/// The frames an ssehub subscriber of `topic` gets for one event.
async fn ssehub_event(app: &TestApp, topic: &str, body: serde_json::Value) -> String {
    let response = app.publish_raw(topic, body).await;
    assert_eq!(response.status(), 202);
    let body: serde_json::Value = response.json().await.unwrap();
    body["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn an_ssehub_publish_reaches_mercure_subscribers_that_name_its_topic() {
    let app = mercure_app().await;
    let mut exact = mercure_subscribe(&app, &[("topic", "chat")]).await;
    let mut draft_08 = mercure_subscribe(&app, &[("match", "urn:rooms:1")]).await;
    // Selectors that name no ssehub topic: a template, `*`, a URL pattern.
    let mut others = mercure_subscribe(
        &app,
        &[
            ("topic", "{room}"),
            ("topic", "*"),
            ("match_urlpattern", "/*"),
        ],
    )
    .await;
    let mut ssehub = app.subscribe(&["chat"]).await;

    let id = ssehub_event(
        &app,
        "chat",
        json!({"data": "hello\nthere", "event": "said", "retry": 900}),
    )
    .await;
    let mine = ssehub.next().await;
    let event = exact.next().await;
    assert_eq!(event.id, format!("urn:ssehub:{id}"));
    assert_eq!(event.event, "said");
    assert_eq!(event.retry, Some(Duration::from_millis(900)));
    assert_eq!(event.data, mine.data);
    let id = ssehub_event(&app, "urn:rooms:1", json!({"data": "room"})).await;
    assert_eq!(draft_08.next().await.id, format!("urn:ssehub:{id}"));
    assert_quiet(&mut exact, "another topic's event").await;
    assert_quiet(&mut others, "a subscription that follows no ssehub topic").await;
}

#[tokio::test]
async fn a_public_mercure_update_reaches_ssehub_subscribers_of_its_topic_names_once() {
    let app = mercure_app().await;
    let mut chat = app.subscribe(&["chat"]).await;
    let mut rooms = app.subscribe(&["urn:rooms:1"]).await;
    let mut mercure = mercure_subscribe(&app, &[("topic", "chat"), ("match", "urn:rooms:1")]).await;
    let id = publish(
        &app,
        &[
            ("topic", "https://example.com/chat"),
            ("topic", "chat"),
            ("topic", "urn:rooms:1"),
            ("data", "line one\nline two"),
            ("type", "said"),
            ("retry", "1500"),
            ("id", "urn:uuid:u1"),
        ],
    )
    .await;
    for subscriber in [&mut chat, &mut rooms] {
        let event = subscriber.next().await;
        assert_eq!(event.data, "line one\nline two");
        assert_eq!(event.event, "said");
        assert_eq!(event.retry, Some(Duration::from_millis(1500)));
        assert!(!event.id.starts_with("urn:"), "an ssehub id: {}", event.id);
        assert_quiet(subscriber, "the update again").await;
    }
    // The Mercure subscriber follows both ssehub topics: the update once.
    let event = mercure.next().await;
    assert_eq!(
        (event.id.as_str(), event.data.as_str()),
        (id.as_str(), "line one\nline two")
    );
    assert_quiet(&mut mercure, "a mirror of the update").await;

    // A private update never crosses; an IRI-only one has nowhere to.
    let token = Minter::hs256(SUBSCRIBER_KEY).token(&json!({"mercure": {"subscribe": ["*"]}}));
    let mut allowed = Subscriber::from_response(
        app.client
            .get(mercure_url(&app, &[("topic", "chat")]))
            .bearer_auth(token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    publish(
        &app,
        &[("topic", "chat"), ("data", "secret"), ("private", "on")],
    )
    .await;
    assert_eq!(allowed.next().await.data, "secret");
    assert_quiet(&mut allowed, "a mirror of a private update").await;
    assert_quiet(&mut chat, "a private update").await;
    assert_quiet(&mut mercure, "a private update to an anonymous subscriber").await;

    // A type or retry ssehub refuses is refused when the update crosses.
    for fields in [
        vec![("topic", "chat"), ("type", "gap")],
        vec![("topic", "chat"), ("retry", "60001")],
    ] {
        let detail = assert_bad(post(&app, &fields).await, "crossing").await;
        assert!(detail.contains("ssehub topic"), "{detail}");
    }
    assert_quiet(&mut chat, "a refused publish").await;
}

#[tokio::test]
async fn both_routes_resume_across_both_apis_with_one_cursor() {
    let app = mercure_app().await;
    let e1 = ssehub_event(&app, "chat", json!({"data": "e1"})).await;
    let u2 = publish(
        &app,
        &[("topic", "chat"), ("data", "u2"), ("id", "urn:uuid:u2")],
    )
    .await;
    let e3 = ssehub_event(&app, "chat", json!({"data": "e3"})).await;
    let u4 = publish(&app, &[("topic", "https://example.com/x"), ("data", "u4")]).await;

    // Mercure, after an ssehub event's id: the update (not its mirror),
    // the next ssehub event, the IRI topic's update, each once.
    let selectors = [("topic", "chat"), ("topic", "https://example.com/x")];
    let mut mercure = mercure_resume(&app, &selectors, &format!("urn:ssehub:{e1}")).await;
    let seen: Vec<(String, String)> = mercure
        .take(3)
        .await
        .into_iter()
        .map(|event| (event.id, event.data))
        .collect();
    assert_eq!(
        seen,
        [
            (u2.clone(), "u2".to_owned()),
            (format!("urn:ssehub:{e3}"), "e3".to_owned()),
            (u4.clone(), "u4".to_owned()),
        ]
    );
    assert_quiet(&mut mercure, "a replayed mirror").await;
    // After the publisher's id: from the next event on.
    let mut mercure = mercure_resume(&app, &selectors, "urn:uuid:u2").await;
    assert_eq!(mercure.next().await.data, "e3");
    // `earliest`: all four, once each.
    let mut mercure = mercure_resume(&app, &selectors, "earliest").await;
    let data: Vec<String> = mercure.take(4).await.into_iter().map(|e| e.data).collect();
    assert_eq!(data, ["e1", "u2", "e3", "u4"]);
    assert_quiet(&mut mercure, "a replayed mirror").await;

    // ssehub, after e1: the update's mirror, then e3.
    let mut ssehub = app.subscribe_with(&["chat"], Some(&e1), None).await;
    let data: Vec<String> = ssehub.take(2).await.into_iter().map(|e| e.data).collect();
    assert_eq!(data, ["u2", "e3"]);
    assert_quiet(&mut ssehub, "an update that is not on this topic").await;
}

#[tokio::test]
async fn ssehub_topics_a_subscriber_may_not_read_are_not_followed_from_mercure() {
    let app = spawn_app_with(|config| {
        enable(config);
        config.auth.jwt.secret = Some(SECRET.to_owned());
        config.auth.subscribe = SubscribeAuth::Jwt;
        config.auth.public_topics = vec!["public.*".to_owned()];
    })
    .await;
    let publisher = Minter::hs256(SECRET).token(&claims("backend", &["*"], &[], 600));
    let ssehub_publish = |topic: &'static str, data: &'static str| {
        let request = app
            .client
            .post(app.url(&format!("/v1/topics/{topic}/events")))
            .bearer_auth(&publisher)
            .json(&json!({ "data": data }));
        async move { assert_eq!(request.send().await.unwrap().status(), 202) }
    };
    let mut anonymous =
        mercure_subscribe(&app, &[("topic", "secret"), ("topic", "public.news")]).await;
    let token = Minter::hs256(SUBSCRIBER_KEY).token(&json!({"mercure": {"subscribe": ["secret"]}}));
    let mut entitled = Subscriber::from_response(
        app.client
            .get(mercure_url(&app, &[("topic", "secret")]))
            .bearer_auth(token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    ssehub_publish("secret", "classified").await;
    ssehub_publish("public.news", "news").await;
    assert_eq!(entitled.next().await.data, "classified");
    assert_eq!(anonymous.next().await.data, "news");
    assert_quiet(&mut anonymous, "a topic ssehub keeps private").await;
}

#[tokio::test]
async fn both_directions_cross_replicas_through_redis_and_resume_on_either() {
    let server = redis_server(Persistence::None).await;
    let first = replica(&server, enable).await;
    let second = replica(&server, enable).await;
    let mut mercure = mercure_subscribe(&second, &[("topic", "chat")]).await;
    let mut ssehub = second.subscribe(&["chat"]).await;

    let e1 = ssehub_event(&first, "chat", json!({"data": "from ssehub"})).await;
    let u2 = publish(&first, &[("topic", "chat"), ("data", "from mercure")]).await;
    let seen: Vec<(String, String)> = mercure
        .take(2)
        .await
        .into_iter()
        .map(|event| (event.id, event.data))
        .collect();
    assert_eq!(
        seen,
        [
            (format!("urn:ssehub:{e1}"), "from ssehub".to_owned()),
            (u2.clone(), "from mercure".to_owned()),
        ]
    );
    assert_quiet(&mut mercure, "a mirror from another replica").await;
    let data: Vec<String> = ssehub.take(2).await.into_iter().map(|e| e.data).collect();
    assert_eq!(data, ["from ssehub", "from mercure"]);

    // Resume on the other replica, by either id, from history in Redis.
    let mut resumed =
        mercure_resume(&first, &[("topic", "chat")], &format!("urn:ssehub:{e1}")).await;
    assert_eq!(resumed.next().await.id, u2);
    assert_quiet(&mut resumed, "a replayed mirror").await;
    let mut resumed = first.subscribe_with(&["chat"], Some(&e1), None).await;
    assert_eq!(resumed.next().await.data, "from mercure");
}
