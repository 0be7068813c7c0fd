//! What schemathesis found (scripts/fuzz/api.sh), each kept as a test: the
//! spec states the rules the server enforces, at the same bounds, and every
//! answer is the one the spec documents.

use serde_json::{Value, json};

use crate::support::helpers::{TestApp, assert_problem, spawn_app};

async fn spec(app: &TestApp) -> Value {
    app.get("/openapi.json").await.json().await.unwrap()
}

async fn publish_batch(app: &TestApp, body: Value) -> reqwest::Response {
    app.client
        .post(app.url("/v1/events"))
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// Found: `TRACE /healthz` (any undeclared method) answered 405 without the
/// `Allow` header RFC 9110 requires.
#[tokio::test]
async fn a_405_names_the_methods_the_spec_lists_for_the_path() {
    let app = spawn_app().await;
    let spec = spec(&app).await;
    for (path, operations) in spec["paths"].as_object().unwrap() {
        let concrete = path.replace("{topic}", "orders.42");
        let response = app
            .client
            .request(reqwest::Method::DELETE, app.url(&concrete))
            .send()
            .await
            .unwrap();
        let allow = response.headers()["allow"].to_str().unwrap().to_owned();
        assert_problem(response, 405).await;
        let mut allowed: Vec<&str> = allow.split(", ").collect();
        allowed.retain(|method| *method != "HEAD");
        allowed.sort_unstable();
        let mut documented: Vec<String> = operations
            .as_object()
            .unwrap()
            .keys()
            .map(|method| method.to_uppercase())
            .collect();
        documented.sort_unstable();
        assert_eq!(allowed, documented, "{path}");
    }
}

/// Found: the spec documented the tutorial route's 400 as a problem
/// document (two 400 entries, the last one won), while it answers its JSend
/// body.
#[tokio::test]
async fn the_tutorial_route_documents_the_400_it_sends() {
    let app = spawn_app().await;
    let spec = spec(&app).await;
    let documented = spec["paths"]["/event-stream"]["post"]["responses"]["400"]["content"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect::<Vec<_>>();
    let response = app
        .client
        .post(app.url("/event-stream"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let sent = response.headers()["content-type"].to_str().unwrap();
    assert!(
        documented
            .iter()
            .any(|media| sent.starts_with(media.as_str())),
        "sent {sent}, documented {documented:?}"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "fail");
}

/// Found: a topic of any characters was schema-valid and then refused; the
/// spec now carries the topic rule, and the server's bound is the spec's.
#[tokio::test]
async fn the_topic_rule_is_in_the_spec_and_holds_at_its_bounds() {
    let app = spawn_app().await;
    let spec = spec(&app).await;
    let parameter = &spec["paths"]["/v1/topics/{topic}/events"]["post"]["parameters"][0];
    assert_eq!(parameter["name"], "topic");
    let schema = &parameter["schema"];
    assert_eq!(schema["maxLength"], 128, "{schema}");
    assert_eq!(schema["minLength"], 1, "{schema}");
    assert_eq!(schema["pattern"], "^[A-Za-z0-9._:~-]+$", "{schema}");
    let item = &spec["components"]["schemas"]["BatchItem"]["properties"]["topic"];
    assert_eq!(item["pattern"], schema["pattern"], "{item}");

    let longest = "x".repeat(128);
    let response = app.publish_raw(&longest, json!({"data": 1})).await;
    assert_eq!(response.status(), 202);
    let response = app
        .publish_raw(&format!("{longest}x"), json!({"data": 1}))
        .await;
    assert_problem(response, 400).await;
    for name in ["a~b:c-d_e.f", "0"] {
        assert_eq!(
            app.publish_raw(name, json!({"data": 1})).await.status(),
            202
        );
    }
}

/// Found (with the rule above): JSON numbers and booleans were taken as
/// strings (`"topic": 42` published to topic `42`); a field the spec types
/// as a string now takes only a string.
#[tokio::test]
async fn string_fields_take_only_strings() {
    let app = spawn_app().await;
    let response = publish_batch(&app, json!({"events": [{"topic": 42, "data": 1}]})).await;
    let problem = assert_problem(response, 400).await;
    assert!(
        problem["detail"].as_str().unwrap().contains("topic"),
        "{problem}"
    );
    let response = app
        .publish_raw("t", json!({"data": 1, "event": true}))
        .await;
    assert_problem(response, 400).await;
}

/// Found: `event` was limited in bytes, which JSON Schema can't state; the
/// limit is now 64 characters, documented as `maxLength`, with the
/// line-break rule as a pattern.
#[tokio::test]
async fn the_event_type_rule_is_in_the_spec_and_holds_at_its_bounds() {
    let app = spawn_app().await;
    let spec = spec(&app).await;
    let schema = &spec["components"]["schemas"]["PublishRequest"]["properties"]["event"];
    assert_eq!(schema["maxLength"], 64, "{schema}");
    assert_eq!(schema["minLength"], 1, "{schema}");
    assert_eq!(
        schema["pattern"], "^(?!(?:gap|token_expired)$)[^\\r\\n\\u0000]+$",
        "{schema}"
    );

    // 64 characters of 4 bytes each: within the rule.
    let widest = "😀".repeat(64);
    let response = app
        .publish_raw("t", json!({"data": 1, "event": widest}))
        .await;
    assert_eq!(response.status(), 202);
    for refused in [
        format!("{widest}x"),
        "a\rb".into(),
        "a\0b".into(),
        "".into(),
    ] {
        let response = app
            .publish_raw("t", json!({"data": 1, "event": refused}))
            .await;
        assert_problem(response, 422).await;
    }
}

/// Found: `retry` was documented as any integer; it is 0 to a minute in
/// ms (a day until forged day-long retries were found, issue 18).
#[tokio::test]
async fn the_retry_bounds_are_in_the_spec_and_hold() {
    let app = spawn_app().await;
    let spec = spec(&app).await;
    let schema = &spec["components"]["schemas"]["PublishRequest"]["properties"]["retry"];
    assert_eq!(schema["minimum"], 0.0, "{schema}");
    assert_eq!(schema["maximum"], 60_000.0, "{schema}");

    let response = app
        .publish_raw("t", json!({"data": 1, "retry": 60_000}))
        .await;
    assert_eq!(response.status(), 202);
    let response = app
        .publish_raw("t", json!({"data": 1, "retry": 60_001}))
        .await;
    assert_problem(response, 422).await;
    for refused in [json!(-1), json!(1.5), json!("100")] {
        let response = app
            .publish_raw("t", json!({"data": 1, "retry": refused}))
            .await;
        assert_problem(response, 400).await;
    }
}

/// Found: `null` for `event` or `retry` is accepted as "not set" (what
/// many JSON encoders write for an absent optional) but the spec did not
/// allow it; it now says `nullable`.
#[tokio::test]
async fn null_optional_fields_are_documented_and_mean_absent() {
    let app = spawn_app().await;
    let spec = spec(&app).await;
    let properties = &spec["components"]["schemas"]["PublishRequest"]["properties"];
    assert_eq!(properties["event"]["nullable"], true);
    assert_eq!(properties["retry"]["nullable"], true);

    let mut subscriber = app.subscribe(&["t"]).await;
    let response = app
        .publish_raw("t", json!({"data": "x", "event": null, "retry": null}))
        .await;
    assert_eq!(response.status(), 202);
    let event = subscriber.next().await;
    assert_eq!(
        (event.event.as_str(), event.data.as_str()),
        ("message", "x")
    );
    assert_eq!(event.retry, None);
}

/// Found: an empty batch was schema-valid and then refused (422); the spec
/// now says `minItems: 1`.
#[tokio::test]
async fn an_empty_batch_is_documented_as_invalid() {
    let app = spawn_app().await;
    let spec = spec(&app).await;
    let events = &spec["components"]["schemas"]["BatchRequest"]["properties"]["events"];
    assert_eq!(events["minItems"], 1, "{events}");
    assert_problem(publish_batch(&app, json!({"events": []})).await, 422).await;
}

/// Found: unknown fields are refused (a misspelt field must not vanish
/// silently) but the schemas allowed any extra property.
#[tokio::test]
async fn publish_bodies_are_documented_as_closed() {
    let app = spawn_app().await;
    let spec = spec(&app).await;
    for name in ["PublishRequest", "BatchItem", "BatchRequest"] {
        assert_eq!(
            spec["components"]["schemas"][name]["additionalProperties"], false,
            "{name}"
        );
    }
    let response = app
        .publish_raw("t", json!({"data": 1, "evnet": "typo"}))
        .await;
    assert_problem(response, 400).await;
    let response = publish_batch(
        &app,
        json!({"events": [{"topic": "t", "data": 1}], "atomic": true}),
    )
    .await;
    assert_problem(response, 400).await;
    let response = publish_batch(
        &app,
        json!({"events": [{"topic": "t", "data": 1, "id": "x"}]}),
    )
    .await;
    assert_problem(response, 400).await;
}

/// Swagger UI shows the same document as `/openapi.json`.
#[tokio::test]
async fn swagger_ui_embeds_the_served_document() {
    let app = spawn_app().await;
    let document = app.get("/openapi.json").await.text().await.unwrap();
    let page = app.get("/docs").await.text().await.unwrap();
    assert!(page.contains(&document), "the page embeds another spec");
}

/// Found (the `mercure` mode): a query parameter whose name has a
/// multi-byte character across its fifth byte panicked the Mercure
/// subscription (the reserved `match` prefix was sliced by bytes), and the
/// client's connection was dropped without an answer.
#[tokio::test]
async fn a_mercure_query_name_with_a_multi_byte_character_is_no_panic() {
    let app = crate::support::helpers::spawn_app_with(|config| {
        crate::mercure_nginx::enable_mercure(config, true)
    })
    .await;
    // "Dß" is 3 bytes, then a 4-byte character spans bytes 3..7; and a
    // name in the reserved prefix whose sixth character is multi-byte.
    for name in ["D%C3%9F%F2%B1%9E%A8x", "match%C3%A9"] {
        let response = app
            .get(&format!(
                "/.well-known/mercure?{name}=1&topic=a&authorization=x"
            ))
            .await;
        assert!(
            matches!(response.status().as_u16(), 400 | 401),
            "{name}: {}",
            response.status()
        );
    }
    let response = app.get("/.well-known/mercure?match%C3%A9=1&topic=a").await;
    let problem = assert_problem(response, 400).await;
    assert!(
        problem["detail"].as_str().unwrap().contains("matché"),
        "{problem}"
    );
}
