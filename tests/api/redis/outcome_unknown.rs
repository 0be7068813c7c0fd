//! A publish answered while Redis is stalled: the answer says what is known.
//! Sent and unanswered within `command_timeout`: 504
//! `publish-outcome-unknown` (Redis runs the queued script when it resumes,
//! so it may be published after all). Known down before sending: the plain
//! 503 `backplane-unavailable`, and nothing is published.

use serde_json::json;

use super::replica;
use super::replicas::redis_server;
use super::server::Persistence;
use crate::support::helpers::{Subscriber, assert_problem, wait_ready};

/// The data `subscriber` receives up to and including `last`.
async fn data_until(subscriber: &mut Subscriber, last: &str) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        let event = subscriber.next().await;
        let done = event.data == last;
        seen.push(event.data);
        if done {
            return seen;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_during_a_redis_stall_says_outcome_unknown_and_one_while_known_down_says_503() {
    let server = redis_server(Persistence::None).await;
    let app = replica(&server, |_| {}).await;
    let mut subscriber = app.subscribe(&["t"]).await;
    app.publish("t", json!("before")).await;

    server.signal("STOP");
    // Sent to a Redis that is stalled: no answer within the 500 ms
    // command_timeout (or the session given up meanwhile, which breaks the
    // connection under it), and the script waits in Redis's socket.
    let in_flight = app.publish_raw("t", json!({"data": "in flight"})).await;
    assert!(
        !in_flight.headers().contains_key("retry-after"),
        "no invitation to a blind retry"
    );
    let problem = assert_problem(in_flight, 504).await;
    assert_eq!(
        problem["type"], "urn:ssehub:problem:publish-outcome-unknown",
        "{problem}"
    );
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.contains("outcome is unknown") && detail.contains("second time"),
        "{detail}"
    );

    // Once the hub knows Redis is out, a publish is never sent: plain 503.
    wait_ready(&app, false).await;
    let refused = app.publish_raw("t", json!({"data": "refused"})).await;
    assert!(refused.headers().contains_key("retry-after"));
    let problem = assert_problem(refused, 503).await;
    assert_eq!(problem["type"], "urn:ssehub:problem:backplane-unavailable");

    server.signal("CONT");
    wait_ready(&app, true).await;
    app.publish("t", json!("after")).await;
    let seen = data_until(&mut subscriber, "after").await;
    assert!(
        !seen.iter().any(|data| data == "refused"),
        "a 503 publishes nothing: {seen:?}"
    );
    // Why the 504 can't say more: the unanswered script ran once Redis
    // resumed, and its event was delivered.
    println!("delivered after the stall: {seen:?}");
    assert_eq!(seen.first().map(String::as_str), Some("before"));
    assert!(
        seen.iter().any(|data| data == "in flight"),
        "the outcome-unknown publish ran when Redis resumed: {seen:?}"
    );
}
