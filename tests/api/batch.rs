//! `POST /v1/events`: several events, several topics, all or none.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::helpers::{assert_problem, spawn_app};

#[tokio::test]
async fn a_batch_is_delivered_in_order_across_topics() {
    let app = spawn_app().await;
    let mut a = app.subscribe(&["a"]).await;
    let mut both = app.subscribe(&["a", "b"]).await;
    let response = app
        .client
        .post(app.url("/v1/events"))
        .json(&json!({"events": [
            {"topic": "a", "data": 1},
            {"topic": "b", "data": 2, "event": "two"},
            {"topic": "a", "data": 3},
        ]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let accepted: Value = response.json().await.unwrap();
    let ids: Vec<_> = accepted["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 3);

    let seen: Vec<_> = both
        .take(3)
        .await
        .into_iter()
        .map(|e| (e.id, e.data))
        .collect();
    assert_eq!(
        seen,
        vec![
            (ids[0].clone(), "1".to_owned()),
            (ids[1].clone(), "2".to_owned()),
            (ids[2].clone(), "3".to_owned())
        ]
    );
    let only_a: Vec<_> = a.take(2).await.into_iter().map(|e| e.id).collect();
    assert_eq!(only_a, vec![ids[0].clone(), ids[2].clone()]);
}

#[tokio::test]
async fn one_bad_item_rejects_the_whole_batch_and_names_its_index() {
    let app = spawn_app().await;
    let mut subscriber = app.subscribe(&["a"]).await;
    let response = app
        .client
        .post(app.url("/v1/events"))
        .json(&json!({"events": [
            {"topic": "a", "data": 1},
            {"topic": "a", "data": 2},
            {"topic": "not valid", "data": 3},
        ]}))
        .send()
        .await
        .unwrap();
    let problem = assert_problem(response, 400).await;
    assert!(
        problem["detail"].as_str().unwrap().starts_with("events[2]"),
        "{problem}"
    );
    assert!(
        subscriber
            .next_within(Duration::from_millis(300))
            .await
            .is_none(),
        "part of a rejected batch was delivered"
    );
}

#[tokio::test]
async fn an_empty_batch_is_422() {
    let app = spawn_app().await;
    let response = app
        .client
        .post(app.url("/v1/events"))
        .json(&json!({"events": []}))
        .send()
        .await
        .unwrap();
    assert_problem(response, 422).await;
}
