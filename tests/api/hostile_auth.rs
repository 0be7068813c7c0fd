//! Tokens and publishes shaped by an attacker who holds a signing key or a
//! publish grant: an `exp` far past any real expiry, a dotted `sub` that
//! would widen `{sub}` into another subject's topics, and events that
//! imitate the hub's own control frames.

use serde_json::{Value, json};

use crate::helpers::{PATIENCE, Subscriber, assert_problem};
use crate::jwt::{Minter, SECRET};
use crate::process::HubProcess;

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
