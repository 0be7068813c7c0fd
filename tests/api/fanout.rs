//! Publish → subscribers of the topic, in order; nobody else.

use std::time::Duration;

use serde_json::json;

use crate::support::helpers::spawn_app;

#[tokio::test]
async fn an_event_reaches_every_subscriber_of_its_topic_and_no_one_else() {
    // Arrange
    let app = spawn_app().await;
    let mut first = app.subscribe(&["orders.42"]).await;
    let mut second = app.subscribe(&["orders.42"]).await;
    let mut other = app.subscribe(&["orders.43"]).await;

    // Act
    let id = app.publish("orders.42", json!({"total": 9.5})).await;

    // Assert
    for subscriber in [&mut first, &mut second] {
        let event = subscriber.next().await;
        assert_eq!(event.id, id);
        assert_eq!(event.event, "message");
        assert_eq!(event.data, r#"{"total":9.5}"#);
    }
    assert!(
        other
            .next_within(Duration::from_millis(300))
            .await
            .is_none(),
        "a subscriber of another topic received the event"
    );
}

#[tokio::test]
async fn one_connection_follows_several_topics_in_id_order() {
    let app = spawn_app().await;
    let mut both = app.subscribe(&["a", "b"]).await;
    let mut only_b = app.subscribe(&["b"]).await;

    let mut ids = Vec::new();
    for round in 0..20 {
        let topic = if round % 3 == 0 { "b" } else { "a" };
        ids.push((topic, app.publish(topic, json!(round)).await));
    }

    let received = both.take(ids.len()).await;
    let received_ids: Vec<_> = received.iter().map(|e| e.id.clone()).collect();
    let expected: Vec<_> = ids.iter().map(|(_, id)| id.clone()).collect();
    assert_eq!(received_ids, expected);
    let b_ids: Vec<_> = ids
        .iter()
        .filter(|(t, _)| *t == "b")
        .map(|(_, id)| id.clone())
        .collect();
    let received_b: Vec<_> = only_b
        .take(b_ids.len())
        .await
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(received_b, b_ids);
}

#[tokio::test]
async fn a_string_goes_out_as_text_and_anything_else_as_compact_json() {
    let app = spawn_app().await;
    let mut subscriber = app.subscribe(&["t"]).await;
    for data in [
        json!("plain text"),
        json!({"a": [1, 2]}),
        json!(null),
        json!(true),
        json!(3),
    ] {
        app.publish("t", data).await;
    }
    let data: Vec<_> = subscriber
        .take(5)
        .await
        .into_iter()
        .map(|e| e.data)
        .collect();
    assert_eq!(data, ["plain text", r#"{"a":[1,2]}"#, "null", "true", "3"]);
}

#[tokio::test]
async fn a_hundred_subscribers_get_a_thousand_events_each_in_order() {
    const SUBSCRIBERS: usize = 100;
    const EVENTS: usize = 1_000;
    let app = spawn_app().await;
    let mut subscribers = Vec::new();
    for _ in 0..SUBSCRIBERS {
        subscribers.push(app.subscribe(&["firehose"]).await);
    }

    let readers: Vec<_> = subscribers
        .into_iter()
        .map(|mut subscriber| {
            tokio::spawn(async move {
                let mut seen = Vec::with_capacity(EVENTS);
                for _ in 0..EVENTS {
                    let event = subscriber.next().await;
                    seen.push(event.data.parse::<usize>().unwrap());
                }
                seen
            })
        })
        .collect();
    for n in 0..EVENTS {
        app.publish("firehose", json!(n)).await;
    }

    let expected: Vec<usize> = (0..EVENTS).collect();
    for reader in readers {
        assert_eq!(reader.await.unwrap(), expected);
    }
}

#[tokio::test]
async fn event_type_and_retry_reach_the_client() {
    let app = spawn_app().await;
    let mut subscriber = app.subscribe(&["t"]).await;
    let response = app
        .publish_raw("t", json!({"data": "x", "event": "price", "retry": 2500}))
        .await;
    assert_eq!(response.status(), 202);
    let event = subscriber.next().await;
    assert_eq!(event.event, "price");
    assert_eq!(event.retry, Some(Duration::from_millis(2500)));
}
