//! Tokens and publishes shaped by an attacker who holds a signing key or a
//! publish grant: an `exp` far past any real expiry, a dotted `sub` that
//! would widen `{sub}` into another subject's topics, and events that
//! imitate the hub's own control frames.

use serde_json::{Value, json};

use ssehub::config::SubscribeAuth;

use crate::support::helpers::{PATIENCE, Subscriber, TestApp, assert_problem, spawn_app_with};
use crate::support::jwt::{Minter, SECRET, claims};
use crate::support::process::HubProcess;

/// An HS256 token with this `exp` (any JSON value) and a grant of `t`.
fn token_expiring_at(exp: Value) -> String {
    Minter::hs256(SECRET).token(&json!({
        "sub": "42",
        "exp": exp,
        "ssehub": {"publish": ["t"], "subscribe": ["t"]},
    }))
}

/// A refused token: 401 problem+json of type `invalid-token`.
async fn assert_invalid_token(response: reqwest::Response, detail_says: &str) {
    let problem = assert_problem(response, 401).await;
    assert_eq!(problem["type"], "urn:ssehub:problem:invalid-token");
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.contains(detail_says),
        "{detail:?} lacks {detail_says:?}"
    );
}

/// Found: `exp` 1e19 or 2^64 - 1 panicked the connection task (the
/// expiry overflowed the clock); the client got no answer at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exp_beyond_any_real_expiry_is_401_and_the_hub_stays_up() {
    let hub = HubProcess::start(&[
        ("SSEHUB_AUTH__JWT__SECRET", SECRET),
        ("SSEHUB_AUTH__SUBSCRIBE", "jwt"),
        ("SSEHUB_DRAIN__DELAY", "0s"),
    ]);
    let client = reqwest::Client::new();
    let cases = [
        (json!(10_000_000_000_000_000_000u64), "253402300799"),
        (json!(u64::MAX), "253402300799"),
        (json!(253_402_300_800u64), "253402300799"),
        (json!(1e19), "whole seconds"),
        (json!(4_102_444_800.5), "whole seconds"),
    ];
    for (exp, detail_says) in cases {
        let token = token_expiring_at(exp.clone());
        let publish = client
            .post(hub.url("/v1/topics/t/events"))
            .bearer_auth(&token)
            .json(&json!({"data": "x"}))
            .send()
            .await
            .unwrap_or_else(|error| panic!("exp {exp}: no answer to a publish: {error}"));
        assert_invalid_token(publish, detail_says).await;
        let subscribe = client
            .get(hub.url("/v1/events?topic=t"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap_or_else(|error| panic!("exp {exp}: no answer to a subscribe: {error}"));
        assert_invalid_token(subscribe, detail_says).await;
    }

    // The latest `exp` accepted opens a stream whose end is scheduled on
    // the runtime's clock, and it carries events.
    let latest = token_expiring_at(json!(253_402_300_799u64));
    let response = client
        .get(hub.url("/v1/events?topic=t"))
        .bearer_auth(&latest)
        .send()
        .await
        .unwrap();
    let mut subscriber = Subscriber::from_response(response).await;
    let published = client
        .post(hub.url("/v1/topics/t/events"))
        .bearer_auth(&latest)
        .json(&json!({"data": "after"}))
        .send()
        .await
        .unwrap();
    assert_eq!(published.status(), 202);
    let event = subscriber.next_within(PATIENCE).await.expect("an event");
    assert_eq!(event.data, "after");

    let log = hub.log_text();
    assert!(!log.contains("panicked"), "a panic in the log:\n{log}");
}

/// Publishing and subscribing by JWT only.
async fn jwt_hub() -> TestApp {
    spawn_app_with(|config| {
        config.auth.jwt.secret = Some(SECRET.to_owned());
        config.auth.subscribe = SubscribeAuth::Jwt;
    })
    .await
}

/// A token of `sub` that may publish and subscribe on `user.{sub}` and
/// `user.{sub}.*`: its own topic and the space under it.
fn own_space_token(sub: &str) -> String {
    let patterns = ["user.{sub}", "user.{sub}.*"];
    Minter::hs256(SECRET).token(&claims(sub, &patterns, &patterns, 60))
}

async fn publish_as(app: &TestApp, token: &str, topic: &str) -> reqwest::Response {
    app.client
        .post(app.url(&format!("/v1/topics/{topic}/events")))
        .bearer_auth(token)
        .json(&json!({"data": "x"}))
        .send()
        .await
        .unwrap()
}

async fn subscribe_as(app: &TestApp, token: &str, topic: &str) -> reqwest::Response {
    app.client
        .get(app.url("/v1/events"))
        .query(&[("topic", topic)])
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

async fn assert_forbidden(response: reqwest::Response, topic: &str) {
    let problem = assert_problem(response, 403).await;
    assert_eq!(problem["type"], "urn:ssehub:problem:forbidden");
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains(&format!("`{topic}`")), "{detail:?}");
}

/// Found: `{sub}` took a dotted subject as several segments, so the token
/// of `alice.inbox` with `user.{sub}` reached `user.alice.inbox`, which
/// `alice`'s `user.{sub}.*` owns. `{sub}` is now one segment, the subject
/// with `.` (and `~`, and any byte outside a topic's) escaped.
#[tokio::test]
async fn a_dotted_subject_stays_out_of_other_subjects_spaces() {
    let app = jwt_hub().await;
    let alice = own_space_token("alice");
    let dotted = own_space_token("alice.inbox");
    let dotted_topic = ssehub::auth::subject_segment("alice.inbox");
    assert_eq!(dotted_topic, "alice~2Einbox");
    let dotted_topic = format!("user.{dotted_topic}");

    for topic in ["user.alice.inbox", "user.alice.inbox.x", "user.alice"] {
        assert_forbidden(publish_as(&app, &dotted, topic).await, topic).await;
        assert_forbidden(subscribe_as(&app, &dotted, topic).await, topic).await;
    }
    for topic in [dotted_topic.clone(), format!("{dotted_topic}.x")] {
        assert_forbidden(publish_as(&app, &alice, &topic).await, &topic).await;
        assert_forbidden(subscribe_as(&app, &alice, &topic).await, &topic).await;
    }

    // Each still has its own space: a dotted subject is usable, escaped.
    let mut alices =
        Subscriber::from_response(subscribe_as(&app, &alice, "user.alice.inbox").await).await;
    let mut dotteds =
        Subscriber::from_response(subscribe_as(&app, &dotted, &dotted_topic).await).await;
    assert_eq!(
        publish_as(&app, &alice, "user.alice.inbox").await.status(),
        202
    );
    assert_eq!(publish_as(&app, &dotted, &dotted_topic).await.status(), 202);
    assert_eq!(alices.next().await.data, "x");
    assert_eq!(dotteds.next().await.data, "x");
}

/// A publish of one event with `fields` beside its data, on `t`.
async fn publish_fields(app: &TestApp, fields: Value) -> reqwest::Response {
    let mut body = json!({"data": "x"});
    body.as_object_mut()
        .unwrap()
        .extend(fields.as_object().unwrap().clone());
    app.publish_raw("t", body).await
}

async fn publish_batch(app: &TestApp, second: Value) -> reqwest::Response {
    let mut item = json!({"topic": "t", "data": "x"});
    item.as_object_mut()
        .unwrap()
        .extend(second.as_object().unwrap().clone());
    app.client
        .post(app.url("/v1/events"))
        .json(&json!({"events": [{"topic": "t", "data": "fine"}, item]}))
        .send()
        .await
        .unwrap()
}

/// A 422 `invalid-…` problem whose detail says `says`.
async fn assert_unprocessable(response: reqwest::Response, kind: &str, says: &[&str]) {
    let problem = assert_problem(response, 422).await;
    assert_eq!(problem["type"], format!("urn:ssehub:problem:{kind}"));
    let detail = problem["detail"].as_str().unwrap();
    for part in says {
        assert!(detail.contains(part), "{detail:?} lacks {part:?}");
    }
}

/// Found: a publisher could send `event: gap` or `event: token_expired`,
/// so every subscriber saw losses that never happened or dropped its
/// stream to fetch a new token. Those types are the hub's own now.
#[tokio::test]
async fn the_hubs_own_event_types_cannot_be_published() {
    let app = crate::support::helpers::spawn_app().await;
    let mut subscriber = app.subscribe(&["t"]).await;
    for name in ["gap", "token_expired"] {
        let why = ["`event`", name, "reserved for the hub's own frames"];
        assert_unprocessable(
            publish_fields(&app, json!({"event": name})).await,
            "invalid-event-type",
            &why,
        )
        .await;
        let mut in_batch = why.to_vec();
        in_batch.push("events[1]");
        assert_unprocessable(
            publish_batch(&app, json!({"event": name})).await,
            "invalid-event-type",
            &in_batch,
        )
        .await;
    }
    // Event types are case-sensitive in EventSource: `Gap` reaches no `gap`
    // listener, so it is an ordinary type, delivered as sent.
    let response = publish_fields(&app, json!({"event": "Gap"})).await;
    assert_eq!(response.status(), 202);
    let event = subscriber.next().await;
    assert_eq!((event.event.as_str(), event.data.as_str()), ("Gap", "x"));

    // The tutorials' route sends `event: message` whatever the body says.
    let mut seed_subscriber = Subscriber::from_response(app.get("/event-stream").await).await;
    let seed = app
        .client
        .post(app.url("/event-stream"))
        .json(&json!({"message": "hi", "event": "gap", "retry": 86_400_000}))
        .send()
        .await
        .unwrap();
    // (The seeds' contract ignores unknown fields: the message is taken.)
    assert_eq!(seed.status(), 201);
    let event = seed_subscriber.next().await;
    assert_eq!(
        (event.event.as_str(), event.data.as_str()),
        ("message", "hi")
    );
    assert_eq!(event.retry, None);
}

/// Found: a publisher could set `retry` to a day, keeping every subscriber
/// of the topic away that long after its next drop. At most a minute now.
#[tokio::test]
async fn a_retry_is_at_most_a_minute() {
    let app = crate::support::helpers::spawn_app().await;
    let spec: Value = app.get("/openapi.json").await.json().await.unwrap();
    let schemas = &spec["components"]["schemas"];
    for schema in ["PublishRequest", "BatchItem"] {
        let retry = &schemas[schema]["properties"]["retry"];
        assert_eq!(retry["maximum"], 60_000.0, "{schema}: {retry}");
        let event = &schemas[schema]["properties"]["event"];
        assert!(
            event["pattern"]
                .as_str()
                .unwrap()
                .contains("gap|token_expired"),
            "{schema}: {event}"
        );
    }

    let mut subscriber = app.subscribe(&["t"]).await;
    for refused in [60_001u64, 86_400_000, u64::MAX] {
        let why = ["`retry`", "at most 60000"];
        assert_unprocessable(
            publish_fields(&app, json!({"retry": refused})).await,
            "invalid-retry",
            &why,
        )
        .await;
        assert_unprocessable(
            publish_batch(&app, json!({"retry": refused})).await,
            "invalid-retry",
            &why,
        )
        .await;
    }
    let response = publish_fields(&app, json!({"retry": 60_000})).await;
    assert_eq!(response.status(), 202);
    let event = subscriber.next().await;
    assert_eq!(event.retry, Some(std::time::Duration::from_secs(60)));
}
