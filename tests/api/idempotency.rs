//! `Idempotency-Key` on the publish routes: a retry gets the first answer
//! and publishes nothing, a key reused for another request is a 422, a key
//! is per publisher, malformed keys are a 400, the memory backplane keeps
//! at most `limits.idempotency_keys`. The cases that every backplane must
//! pass are generic over [`Backend`] and run for Redis in
//! `redis::idempotency`, next to what needs a Redis (in flight, two hubs).

use std::time::Duration;

use serde_json::{Value, json};

use crate::contract::{Backend, Memory, app};
use crate::support::helpers::{PATIENCE, Subscriber, TestApp, assert_problem, spawn_app_with};

/// `POST path` with `body` and, if given, the key.
pub async fn post(app: &TestApp, path: &str, key: Option<&str>, body: &Value) -> reqwest::Response {
    let mut request = app.client.post(app.url(path)).json(body);
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    request.send().await.expect("publish request")
}

/// Status and JSON body.
pub async fn answer(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// The next event is the marker published now: nothing came in between.
pub async fn nothing_more_before_a_marker(app: &TestApp, subscriber: &mut Subscriber, topic: &str) {
    let marker = app.publish(topic, json!("marker")).await;
    let next = subscriber.next().await;
    assert_eq!(next.id, marker, "an event before the marker: {next:?}");
}

/// A value of `family{outcome="…"}` on the hub's own exposition.
pub fn idempotent_publishes(app: &TestApp, outcome: &str) -> f64 {
    let text = app.hub.render_metrics(false);
    let series = format!("ssehub_idempotent_publishes_total{{outcome=\"{outcome}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&series))
        .map_or(0.0, |value| value.trim().parse().unwrap())
}

pub async fn a_retry_gets_the_first_answer_and_publishes_nothing<B: Backend>() {
    let (app, _backend) = app::<B>(|_| {}).await;
    let mut subscriber = app.subscribe(&["a", "b"]).await;

    // One event, quoted key; its retry in the bare form is the same key.
    let body = json!({"data": {"n": 1}});
    let first = answer(post(&app, "/v1/topics/a/events", Some("\"one-1\""), &body).await).await;
    assert_eq!(first.0, 202, "{first:?}");
    let retry = answer(post(&app, "/v1/topics/a/events", Some("one-1"), &body).await).await;
    assert_eq!(retry, first, "the retry gets the first answer");
    assert_eq!(subscriber.next().await.id, first.1["id"]);

    // A batch: the same ids in the same order.
    let batch = json!({"events": [
        {"topic": "b", "data": "x"},
        {"topic": "a", "data": "y", "event": "update"},
    ]});
    let first = answer(post(&app, "/v1/events", Some("batch-1"), &batch).await).await;
    assert_eq!(first.0, 202, "{first:?}");
    let retry = answer(post(&app, "/v1/events", Some("batch-1"), &batch).await).await;
    assert_eq!(retry, first);
    let ids: Vec<_> = subscriber.take(2).await.into_iter().map(|e| e.id).collect();
    assert_eq!(
        ids,
        [
            first.1["events"][0]["id"].clone(),
            first.1["events"][1]["id"].clone()
        ]
    );

    // The tutorial route: its 201 again, one message.
    let message = json!({"message": "hello"});
    let mut tutorial = app.subscribe(&["event-stream"]).await;
    let first = answer(post(&app, "/event-stream", Some("tutorial-1"), &message).await).await;
    assert_eq!(first, (201, json!({"status": "success", "data": "hello"})));
    let retry = answer(post(&app, "/event-stream", Some("tutorial-1"), &message).await).await;
    assert_eq!(retry, first);
    assert_eq!(tutorial.next().await.data, "hello");
    nothing_more_before_a_marker(&app, &mut tutorial, "event-stream").await;

    nothing_more_before_a_marker(&app, &mut subscriber, "a").await;
    assert_eq!(idempotent_publishes(&app, "published"), 3.0);
    assert_eq!(idempotent_publishes(&app, "replayed"), 3.0);
}

pub async fn a_key_reused_for_another_request_is_refused<B: Backend>() {
    let (app, _backend) = app::<B>(|_| {}).await;
    let mut subscriber = app.subscribe(&["a", "b"]).await;
    let body = json!({"data": 1});
    let first = answer(post(&app, "/v1/topics/a/events", Some("k"), &body).await).await;
    assert_eq!(first.0, 202);
    assert_eq!(subscriber.next().await.id, first.1["id"]);
    // Another body, another topic, another route: each a 422, nothing published.
    for (path, body) in [
        ("/v1/topics/a/events", json!({"data": 2})),
        ("/v1/topics/a/events", json!({"data": 1, "event": "other"})),
        ("/v1/topics/b/events", json!({"data": 1})),
        ("/v1/events", json!({"events": [{"topic": "a", "data": 1}]})),
        ("/event-stream", json!({"message": "1"})),
    ] {
        let problem = assert_problem(post(&app, path, Some("k"), &body).await, 422).await;
        assert_eq!(
            problem["type"], "urn:ssehub:problem:idempotency-key-reused",
            "{path}"
        );
    }
    // Whitespace and field order are not part of what is compared.
    let same = app
        .client
        .post(app.url("/v1/topics/a/events"))
        .header("Idempotency-Key", "k")
        .header("Content-Type", "application/json")
        .body("{ \"data\" :  1 }")
        .send()
        .await
        .unwrap();
    assert_eq!(answer(same).await, first);
    nothing_more_before_a_marker(&app, &mut subscriber, "a").await;
    assert_eq!(idempotent_publishes(&app, "key_reused"), 5.0);
}

pub async fn a_key_is_forgotten_after_its_window<B: Backend>() {
    let window = Duration::from_secs(1);
    let (app, _backend) = app::<B>(|config| config.limits.idempotency_window = window).await;
    let body = json!({"data": "again"});
    let first = answer(post(&app, "/v1/topics/t/events", Some("w"), &body).await).await;
    assert_eq!(first.0, 202);
    // Once the window is over the same request publishes anew (polled: the
    // window's end is not asserted to the millisecond).
    let started = std::time::Instant::now();
    let later = loop {
        let retry = answer(post(&app, "/v1/topics/t/events", Some("w"), &body).await).await;
        assert_eq!(retry.0, 202, "{retry:?}");
        if retry.1["id"] != first.1["id"] {
            break retry;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "still replayed after {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    println!(
        "a key published anew {:?} after its first publish (window {window:?})",
        started.elapsed()
    );
    // And the new publish is recorded in turn.
    let retry = answer(post(&app, "/v1/topics/t/events", Some("w"), &body).await).await;
    assert_eq!(retry, later);
}

mod memory {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_retry_gets_the_first_answer_and_publishes_nothing() {
        super::a_retry_gets_the_first_answer_and_publishes_nothing::<Memory>().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_key_reused_for_another_request_is_refused() {
        super::a_key_reused_for_another_request_is_refused::<Memory>().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_key_is_forgotten_after_its_window() {
        super::a_key_is_forgotten_after_its_window::<Memory>().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_over_long_keys_are_a_400_and_publish_nothing() {
    let app = spawn_app_with(|_| {}).await;
    let mut subscriber = app.subscribe(&["t"]).await;
    let too_long = "k".repeat(256);
    let quoted_too_long = format!("\"{too_long}\"");
    for key in [
        "\"",
        "\"\"",
        "a b",
        "\"a\"x",
        "a\\b",
        &too_long,
        &quoted_too_long,
    ] {
        for (path, body) in [
            ("/v1/topics/t/events", json!({"data": 1})),
            ("/v1/events", json!({"events": [{"topic": "t", "data": 1}]})),
        ] {
            let problem = assert_problem(post(&app, path, Some(key), &body).await, 400).await;
            assert_eq!(
                problem["type"], "urn:ssehub:problem:invalid-idempotency-key",
                "{key:?} on {path}"
            );
            assert!(
                problem["detail"]
                    .as_str()
                    .unwrap()
                    .contains("Idempotency-Key")
            );
        }
        // The tutorial route answers its own 400.
        let (status, body) =
            answer(post(&app, "/event-stream", Some(key), &json!({"message": "m"})).await).await;
        assert_eq!(status, 400, "{key:?}");
        assert_eq!(body["status"], "fail");
        assert!(
            body["data"].as_str().unwrap().contains("Idempotency-Key"),
            "{body}"
        );
    }
    // A value that is not ASCII, and two fields: refused, never ignored.
    let latin1 = reqwest::header::HeaderValue::from_bytes(b"\xd7\xf8k").unwrap();
    let not_ascii = app
        .client
        .post(app.url("/v1/topics/t/events"))
        .header("Idempotency-Key", latin1)
        .json(&json!({"data": 1}))
        .send()
        .await
        .unwrap();
    let problem = assert_problem(not_ascii, 400).await;
    assert_eq!(
        problem["type"],
        "urn:ssehub:problem:invalid-idempotency-key"
    );
    let twice = app
        .client
        .post(app.url("/v1/events"))
        .header("Idempotency-Key", "a")
        .header("Idempotency-Key", "b")
        .json(&json!({"events": [{"topic": "t", "data": 1}]}))
        .send()
        .await
        .unwrap();
    let problem = assert_problem(twice, 400).await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("one Idempotency-Key")
    );
    // 255 bytes is fine.
    let longest = "k".repeat(255);
    let ok = post(
        &app,
        "/v1/topics/t/events",
        Some(&longest),
        &json!({"data": 1}),
    )
    .await;
    assert_eq!(ok.status(), 202);
    assert_eq!(subscriber.next().await.data, "1");
    nothing_more_before_a_marker(&app, &mut subscriber, "t").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memory_backplane_keeps_at_most_limits_idempotency_keys() {
    let app = spawn_app_with(|config| config.limits.idempotency_keys = 2).await;
    let mut first_ids = Vec::new();
    for key in ["k1", "k2", "k3"] {
        let (status, body) = answer(
            post(
                &app,
                "/v1/topics/t/events",
                Some(key),
                &json!({"data": key}),
            )
            .await,
        )
        .await;
        assert_eq!(status, 202);
        first_ids.push(body["id"].clone());
    }
    // The two newest are remembered; the oldest was dropped, so its retry
    // publishes again (what the cap costs, documented).
    for (index, key) in [(1, "k2"), (2, "k3")] {
        let (_, body) = answer(
            post(
                &app,
                "/v1/topics/t/events",
                Some(key),
                &json!({"data": key}),
            )
            .await,
        )
        .await;
        assert_eq!(body["id"], first_ids[index], "{key}");
    }
    let (_, body) = answer(
        post(
            &app,
            "/v1/topics/t/events",
            Some("k1"),
            &json!({"data": "k1"}),
        )
        .await,
    )
    .await;
    assert_ne!(body["id"], first_ids[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_per_publisher() {
    const ALICE: &str = "alice-static-key-0123456789";
    const BOB: &str = "bob-static-key-0123456789ab";
    let app = spawn_app_with(|config| {
        config.auth.publish_keys = vec![ALICE.to_owned(), BOB.to_owned()];
    })
    .await;
    let send = |token: &'static str, data: &'static str| {
        app.client
            .post(app.url("/v1/topics/t/events"))
            .bearer_auth(token)
            .header("Idempotency-Key", "shared")
            .json(&json!({ "data": data }))
            .send()
    };
    let alice = answer(send(ALICE, "from alice").await.unwrap()).await;
    assert_eq!(alice.0, 202);
    // Bob's key of the same name is his own: neither Alice's answer nor a 422.
    let bob = answer(send(BOB, "from bob").await.unwrap()).await;
    assert_eq!(bob.0, 202, "{bob:?}");
    assert_ne!(bob.1["id"], alice.1["id"]);
    assert_eq!(
        answer(send(ALICE, "from alice").await.unwrap()).await,
        alice
    );
    assert_eq!(answer(send(BOB, "from bob").await.unwrap()).await, bob);
}
