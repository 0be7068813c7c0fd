//! The tutorials' `/event-stream` contract, exactly as they describe it.

use serde_json::{Value, json};

use crate::support::helpers::{Subscriber, spawn_app};

#[tokio::test]
async fn a_json_message_is_created_and_streamed_as_event_message() {
    let app = spawn_app().await;
    let stream = app.get("/event-stream").await;
    let mut subscriber = Subscriber::from_response(stream).await;

    let response = app
        .client
        .post(app.url("/event-stream"))
        .json(&json!({"message": "Hello, Event Stream!"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({"status": "success", "data": "Hello, Event Stream!"})
    );

    let event = subscriber.next().await;
    assert_eq!(event.event, "message");
    assert_eq!(event.data, "Hello, Event Stream!");
}

#[tokio::test]
async fn a_form_message_works_the_same() {
    let app = spawn_app().await;
    let stream = app.get("/event-stream").await;
    let mut subscriber = Subscriber::from_response(stream).await;
    let response = app
        .client
        .post(app.url("/event-stream"))
        .form(&[("message", "from a form")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body, json!({"status": "success", "data": "from a form"}));
    assert_eq!(subscriber.next().await.data, "from a form");
}

async fn assert_fail(response: reqwest::Response) -> String {
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "fail", "{body}");
    let data = body["data"].as_str().unwrap().to_owned();
    assert!(data.starts_with("request validation error: "), "{data}");
    data
}

#[tokio::test]
async fn bad_messages_are_400_jsend_fail() {
    let app = spawn_app().await;
    let post = |body: reqwest::RequestBuilder| async move { body.send().await.unwrap() };
    let url = app.url("/event-stream");

    let missing = assert_fail(post(app.client.post(&url).json(&json!({}))).await).await;
    assert!(missing.contains("message"), "{missing}");
    let empty = assert_fail(post(app.client.post(&url).json(&json!({"message": ""}))).await).await;
    assert!(empty.contains("message"), "{empty}");
    let long = "x".repeat(101);
    let too_long =
        assert_fail(post(app.client.post(&url).json(&json!({"message": long}))).await).await;
    assert!(too_long.contains("100"), "{too_long}");
    assert_fail(post(app.client.post(&url).form(&[("message", "y".repeat(101))])).await).await;
    assert_fail(post(app.client.post(&url).form(&[("other", "z")])).await).await;
    assert_fail(
        post(
            app.client
                .post(&url)
                .header("content-type", "application/json")
                .body("{not json"),
        )
        .await,
    )
    .await;
}

#[tokio::test]
async fn exactly_a_hundred_characters_is_allowed() {
    let app = spawn_app().await;
    // 100 characters, 200 bytes: the limit counts characters like the seeds.
    let message = "é".repeat(100);
    let response = app
        .client
        .post(app.url("/event-stream"))
        .json(&json!({"message": message}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
}
