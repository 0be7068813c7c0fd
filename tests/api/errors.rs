//! Every kind of bad input gets its status and a problem+json body, and
//! nothing of a refused request reaches subscribers.

use std::time::Duration;

use serde_json::json;

use crate::support::helpers::{assert_problem, spawn_app, spawn_app_with};

#[tokio::test]
async fn malformed_json_is_400() {
    let app = spawn_app().await;
    let response = app
        .client
        .post(app.url("/v1/topics/t/events"))
        .header("content-type", "application/json")
        .body(r#"{"data": 1"#)
        .send()
        .await
        .unwrap();
    assert_problem(response, 400).await;
}

#[tokio::test]
async fn an_unknown_field_is_400_and_named() {
    let app = spawn_app().await;
    let response = app
        .publish_raw("t", json!({"data": 1, "id": "forged"}))
        .await;
    let problem = assert_problem(response, 400).await;
    assert!(
        problem["detail"].as_str().unwrap().contains("`id`"),
        "{problem}"
    );
}

#[tokio::test]
async fn missing_data_is_400() {
    let app = spawn_app().await;
    let response = app.publish_raw("t", json!({"event": "x"})).await;
    let problem = assert_problem(response, 400).await;
    assert!(
        problem["detail"].as_str().unwrap().contains("data"),
        "{problem}"
    );
}

#[tokio::test]
async fn a_bad_topic_name_is_400_naming_the_rule() {
    let app = spawn_app().await;
    for topic in ["has%20space", "slash%2Fin", &"x".repeat(129), "%C3%A9"] {
        let response = app.publish_raw(topic, json!({"data": 1})).await;
        let problem = assert_problem(response, 400).await;
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .contains("1-128 characters"),
            "{problem}"
        );
    }
    let response = app.get("/v1/events?topic=bad%20name").await;
    assert_problem(response, 400).await;
}

#[tokio::test]
async fn an_event_type_that_would_inject_a_field_is_422() {
    let app = spawn_app().await;
    let mut subscriber = app.subscribe(&["t"]).await;
    for event in ["x\nid: 1", "x\rdata: y", "x\u{0}", ""] {
        let response = app
            .publish_raw("t", json!({"data": 1, "event": event}))
            .await;
        assert_problem(response, 422).await;
    }
    assert!(
        subscriber
            .next_within(Duration::from_millis(300))
            .await
            .is_none(),
        "a refused event was delivered"
    );
}

#[tokio::test]
async fn an_event_over_the_size_limit_is_413() {
    let app = spawn_app_with(|c| c.limits.max_event_bytes = 1024).await;
    let response = app
        .publish_raw("t", json!({"data": "x".repeat(1025)}))
        .await;
    let problem = assert_problem(response, 413).await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("limits.max_event_bytes"),
        "{problem}"
    );
    let response = app
        .publish_raw("t", json!({"data": "x".repeat(1000)}))
        .await;
    assert_eq!(response.status(), 202);
}

#[tokio::test]
async fn a_body_over_the_limit_is_413_with_or_without_content_length() {
    let app = spawn_app_with(|c| {
        c.limits.max_event_bytes = 1024;
        c.limits.max_body_bytes = 4096;
    })
    .await;
    let body = format!(r#"{{"data": "{}"}}"#, "x".repeat(5000));
    let declared = app
        .client
        .post(app.url("/v1/topics/t/events"))
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_problem(declared, 413).await;

    let chunks = futures_util::stream::iter(
        body.into_bytes()
            .chunks(1000)
            .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
            .collect::<Vec<_>>(),
    );
    let chunked = app
        .client
        .post(app.url("/v1/topics/t/events"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_problem(chunked, 413).await;
}

#[tokio::test]
async fn a_wrong_content_type_is_415() {
    let app = spawn_app().await;
    let response = app
        .client
        .post(app.url("/v1/topics/t/events"))
        .header("content-type", "text/plain")
        .body(r#"{"data": 1}"#)
        .send()
        .await
        .unwrap();
    let problem = assert_problem(response, 415).await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("application/json")
    );
}

#[tokio::test]
async fn a_retry_out_of_range_is_422() {
    let app = spawn_app().await;
    let response = app
        .publish_raw("t", json!({"data": 1, "retry": 90_000_000_000u64}))
        .await;
    assert_problem(response, 422).await;
}

#[tokio::test]
async fn unknown_routes_and_methods_are_problems_too() {
    let app = spawn_app().await;
    let response = app.get("/v2/nothing").await;
    assert_problem(response, 404).await;
    let response = app
        .client
        .delete(app.url("/v1/topics/t/events"))
        .send()
        .await
        .unwrap();
    assert_problem(response, 405).await;
}

#[tokio::test]
async fn publishing_needs_a_key_when_keys_are_configured() {
    let app = spawn_app_with(|c| c.auth.publish_keys = vec!["s3cret-key".into()]).await;
    let missing = app.publish_raw("t", json!({"data": 1})).await;
    assert!(missing.headers().contains_key("www-authenticate"));
    assert_problem(missing, 401).await;
    let wrong = app
        .client
        .post(app.url("/v1/topics/t/events"))
        .bearer_auth("wrong")
        .json(&json!({"data": 1}))
        .send()
        .await
        .unwrap();
    assert_problem(wrong, 401).await;
    let right = app
        .client
        .post(app.url("/v1/topics/t/events"))
        .bearer_auth("s3cret-key")
        .json(&json!({"data": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(right.status(), 202);
}

/// With CORS off, a browser's preflight learns why (not a 405 about the
/// method), and the operator's log names the setting once per origin.
#[tokio::test]
async fn a_preflight_with_cors_off_names_the_setting_and_is_logged_once_per_origin() {
    let hub = crate::support::process::HubProcess::start(&[]);
    let client = reqwest::Client::new();
    let preflight = |origin: &'static str| {
        client
            .request(reqwest::Method::OPTIONS, hub.url("/v1/topics/t/events"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .send()
    };
    for origin in [
        "https://app.example",
        "https://app.example",
        "https://other.example",
    ] {
        let response = preflight(origin).await.unwrap();
        assert!(
            !response
                .headers()
                .contains_key("access-control-allow-origin")
        );
        let problem = assert_problem(response, 403).await;
        assert_eq!(problem["type"], "urn:ssehub:problem:cors-disabled");
        let detail = problem["detail"].as_str().unwrap();
        assert!(
            detail.contains("cors.allowed_origins") && detail.contains(origin),
            "{detail}"
        );
    }
    // Not a preflight: the method is what is wrong, as before.
    let response = client
        .request(reqwest::Method::OPTIONS, hub.url("/v1/topics/t/events"))
        .send()
        .await
        .unwrap();
    assert_problem(response, 405).await;

    let warnings = |origin: &str| {
        hub.log_text()
            .lines()
            .filter(|line| line.contains("cors.allowed_origins") && line.contains(origin))
            .count()
    };
    // The log is read from the child's stderr by another thread.
    let logged = crate::support::helpers::within(Duration::from_secs(5), || async {
        warnings("https://other.example") >= 1
    })
    .await;
    assert!(logged.is_some(), "{}", hub.log_text());
    assert_eq!(warnings("https://app.example"), 1, "{}", hub.log_text());
    assert_eq!(warnings("https://other.example"), 1, "{}", hub.log_text());
}

/// A body poem-openapi can't parse is described in plain words naming the
/// field and its form, never in the framework's type names.
#[tokio::test]
async fn parse_errors_name_the_field_and_its_form_without_framework_text() {
    let app = spawn_app().await;
    let cases = [
        (
            "/v1/topics/t/events",
            json!({"data": 1, "retry": "x"}),
            "`retry` must be a whole number of milliseconds",
        ),
        (
            "/v1/topics/t/events",
            json!({"data": 1, "retry": -5}),
            "found -5",
        ),
        (
            "/v1/topics/t/events",
            json!({"event": "x"}),
            "`data` is required",
        ),
        (
            "/v1/topics/t/events",
            json!({"data": 1, "event": 5}),
            "`event` must be a string, e.g. \"order\"",
        ),
        (
            "/v1/topics/t/events",
            json!([1]),
            "the body must be a JSON object",
        ),
        (
            "/v1/events",
            json!({"events": [{"topic": 5, "data": 1}]}),
            "`topic` must be a topic name",
        ),
        (
            "/v1/events",
            json!({"events": [{"data": 1}]}),
            "`topic` is required",
        ),
        (
            "/v1/events",
            json!({"events": {}}),
            "`events` must be a list of events",
        ),
    ];
    for (path, body, says) in cases {
        let response = app
            .client
            .post(app.url(path))
            .json(&body)
            .send()
            .await
            .unwrap();
        let problem = assert_problem(response, 400).await;
        let detail = problem["detail"].as_str().unwrap();
        assert!(detail.contains(says), "{body}: {says:?} in {detail}");
        for framework in [
            "failed to parse",
            "Expected input type",
            "occurred while parsing",
            "integer(",
            "string(",
            "list_",
            "\"any\"",
        ] {
            assert!(
                !detail.contains(framework),
                "{body}: {framework:?} in {detail}"
            );
        }
    }
}
