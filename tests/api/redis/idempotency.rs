//! `Idempotency-Key` on Redis: the shared cases, and what needs a real
//! Redis: a retry while the first publish waits in a stalled Redis (409),
//! two replicas racing on one key (one event), a retry after a 504
//! `publish-outcome-unknown` (safe: the first publish's ids, or one
//! publish), and the record's TTL and size.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::replicas::redis_server;
use super::server::Persistence;
use super::{Redis, replica};
use crate::idempotency::{answer, idempotent_publishes, nothing_more_before_a_marker, post};
use crate::support::helpers::{PATIENCE, assert_problem, wait_ready};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_gets_the_first_answer_and_publishes_nothing() {
    crate::idempotency::a_retry_gets_the_first_answer_and_publishes_nothing::<Redis>().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_reused_for_another_request_is_refused() {
    crate::idempotency::a_key_reused_for_another_request_is_refused::<Redis>().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_is_forgotten_after_its_window() {
    crate::idempotency::a_key_is_forgotten_after_its_window::<Redis>().await;
}

/// Long enough that neither a publish nor the health check gives up while
/// the test holds Redis stopped: both stay in flight until it resumes.
const PATIENT_COMMANDS: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_while_the_first_is_in_flight_is_a_409_and_then_gets_its_answer() {
    let server = redis_server(Persistence::None).await;
    let app = Arc::new(
        replica(&server, |config| {
            config.backplane.redis.command_timeout = PATIENT_COMMANDS;
        })
        .await,
    );
    let mut subscriber = app.subscribe(&["t"]).await;
    let body = json!({"data": "once"});

    // Redis stopped: a publish sent now waits in its socket until resumed.
    server.signal("STOP");
    let send = |app: Arc<crate::support::helpers::TestApp>, body: serde_json::Value| {
        tokio::spawn(async move {
            answer(post(&app, "/v1/topics/t/events", Some("slow"), &body).await).await
        })
    };
    let mut first = send(app.clone(), body.clone());
    let mut second = send(app.clone(), body.clone());
    // Whichever claimed the key first waits for Redis; the other is
    // answered at once, without Redis, with a 409.
    let (refused, mut waiting) = tokio::select! {
        refused = &mut first => (refused.unwrap(), second),
        refused = &mut second => (refused.unwrap(), first),
    };
    assert_eq!(refused.0, 409, "{refused:?}");
    assert_eq!(
        refused.1["type"],
        "urn:ssehub:problem:idempotency-key-in-flight"
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(200), &mut waiting)
            .await
            .is_err(),
        "the first publish can't be answered while Redis is stopped"
    );

    server.signal("CONT");
    let published = tokio::time::timeout(PATIENCE, waiting)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(published.0, 202, "{published:?}");
    // The retry now gets the first answer.
    let retry = answer(post(&app, "/v1/topics/t/events", Some("slow"), &body).await).await;
    assert_eq!(retry, published);
    assert_eq!(subscriber.next().await.id, published.1["id"]);
    nothing_more_before_a_marker(&app, &mut subscriber, "t").await;
    assert_eq!(idempotent_publishes(&app, "in_flight"), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_racing_on_one_key_publish_one_event() {
    let server = redis_server(Persistence::None).await;
    let configure = |config: &mut ssehub::config::Config| {
        config.backplane.redis.command_timeout = PATIENT_COMMANDS;
    };
    let a = Arc::new(replica(&server, configure).await);
    let b = Arc::new(replica(&server, configure).await);
    let mut subscriber = a.subscribe(&["t"]).await;
    let batch = json!({"events": [{"topic": "t", "data": 1}, {"topic": "t", "data": 2}]});

    // Both scripts wait in the stopped Redis, which then runs one after
    // the other: the first publishes, the second finds the record.
    server.signal("STOP");
    let race: Vec<_> = [a.clone(), b.clone()]
        .into_iter()
        .map(|app| {
            let batch = batch.clone();
            tokio::spawn(async move {
                answer(post(&app, "/v1/events", Some("race"), &batch).await).await
            })
        })
        .collect();
    // Give both requests time to reach Redis's socket (not an assertion:
    // one that arrived after the resume would find the record all the same).
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.signal("CONT");
    let mut answers = Vec::new();
    for publish in race {
        answers.push(
            tokio::time::timeout(PATIENCE, publish)
                .await
                .unwrap()
                .unwrap(),
        );
    }
    assert_eq!(answers[0].0, 202, "{answers:?}");
    assert_eq!(answers[0], answers[1], "both replicas answer the same ids");
    let ids: Vec<_> = subscriber.take(2).await.into_iter().map(|e| e.id).collect();
    assert_eq!(ids[0], answers[0].1["events"][0]["id"]);
    assert_eq!(ids[1], answers[0].1["events"][1]["id"]);
    nothing_more_before_a_marker(&a, &mut subscriber, "t").await;
    let published = idempotent_publishes(&a, "published") + idempotent_publishes(&b, "published");
    let replayed = idempotent_publishes(&a, "replayed") + idempotent_publishes(&b, "replayed");
    assert_eq!((published, replayed), (1.0, 1.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_an_unknown_outcome_gets_the_first_publish_and_nothing_twice() {
    let server = redis_server(Persistence::None).await;
    let app = replica(&server, |_| {}).await;
    let mut subscriber = app.subscribe(&["t"]).await;
    let body = json!({"data": "maybe"});

    server.signal("STOP");
    let unknown = post(&app, "/v1/topics/t/events", Some("unsure"), &body).await;
    let problem = assert_problem(unknown, 504).await;
    assert_eq!(
        problem["type"],
        "urn:ssehub:problem:publish-outcome-unknown"
    );
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("Idempotency-Key")
    );
    // Redis runs the queued script when it resumes.
    server.signal("CONT");
    wait_ready(&app, true).await;
    let retry = answer(post(&app, "/v1/topics/t/events", Some("unsure"), &body).await).await;
    assert_eq!(retry.0, 202, "{retry:?}");
    let delivered = subscriber.next().await;
    assert_eq!(
        (delivered.id.as_str(), delivered.data.as_str()),
        (retry.1["id"].as_str().unwrap(), "maybe")
    );
    nothing_more_before_a_marker(&app, &mut subscriber, "t").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_record_lives_for_the_window_and_is_small() {
    let server = redis_server(Persistence::None).await;
    let app = replica(&server, |config| {
        config.limits.idempotency_window = Duration::from_secs(120);
    })
    .await;
    let long_key = "k".repeat(255);
    let (status, _) = answer(
        post(
            &app,
            "/v1/topics/t/events",
            Some(&long_key),
            &json!({"data": 1}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 202);
    let records = server.cli(&["--scan", "--pattern", "ssehub:i:*"]);
    let records: Vec<&str> = records.lines().collect();
    assert_eq!(records.len(), 1, "{records:?}");
    let ttl_ms: u64 = server.cli(&["PTTL", records[0]]).parse().unwrap();
    assert!(ttl_ms <= 120_000 && ttl_ms > 100_000, "PTTL {ttl_ms}");
    let size: usize = server.cli(&["STRLEN", records[0]]).parse().unwrap();
    println!(
        "an idempotency record: key {} bytes, value {size} bytes, PTTL {ttl_ms} ms",
        records[0].len()
    );
    assert!(
        size <= 110 && records[0].len() <= 80,
        "{size} bytes under {}",
        records[0]
    );
}
