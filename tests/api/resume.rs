//! Resume after a reconnect: no gap, no duplicate; a gap frame when history
//! can't cover the gap.

use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use crate::helpers::{spawn_app, spawn_app_with};

async fn publish_numbered(app: &crate::helpers::TestApp, topic: &str, count: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for n in 0..count {
        ids.push(app.publish(topic, json!(n)).await);
    }
    ids
}

#[tokio::test]
async fn resume_by_header_replays_what_was_missed_then_goes_live() {
    let app = spawn_app().await;
    let ids = publish_numbered(&app, "t", 5).await;

    let mut subscriber = app.subscribe_with(&["t"], Some(&ids[1]), None).await;
    let replayed: Vec<_> = subscriber.take(3).await.into_iter().map(|e| e.id).collect();
    assert_eq!(replayed, ids[2..]);

    let live = app.publish("t", json!("live")).await;
    let event = subscriber.next().await;
    assert_eq!((event.id, event.data), (live, "live".to_owned()));
}

#[tokio::test]
async fn resume_by_query_parameter_works_like_the_header() {
    let app = spawn_app().await;
    let ids = publish_numbered(&app, "t", 4).await;
    let mut subscriber = app.subscribe_with(&["t"], None, Some(&ids[0])).await;
    let replayed: Vec<_> = subscriber.take(3).await.into_iter().map(|e| e.id).collect();
    assert_eq!(replayed, ids[1..]);
}

#[tokio::test]
async fn events_published_while_a_resume_is_set_up_are_neither_lost_nor_doubled() {
    const EVENTS: usize = 400;
    let app = Arc::new(spawn_app().await);
    let ids = Arc::new(Mutex::new(publish_numbered(&app, "t", 50).await));
    let resume_from = ids.lock().unwrap()[24].clone();

    // A publisher keeps going while the subscriber connects and replays.
    let publisher = {
        let (app, ids) = (app.clone(), ids.clone());
        tokio::spawn(async move {
            for n in 50..EVENTS {
                let id = app.publish("t", json!(n)).await;
                ids.lock().unwrap().push(id);
            }
        })
    };
    tokio::task::yield_now().await;
    let mut subscriber = app.subscribe_with(&["t"], Some(&resume_from), None).await;
    publisher.await.unwrap();

    let expected: Vec<String> = ids.lock().unwrap()[25..].to_vec();
    let received: Vec<String> = subscriber
        .take(expected.len())
        .await
        .into_iter()
        .map(|e| {
            assert_ne!(e.event, "gap", "no gap expected");
            e.id
        })
        .collect();
    assert_eq!(received, expected);
}

#[tokio::test]
async fn a_multi_topic_connection_resumes_every_topic_from_one_id() {
    let app = spawn_app().await;
    let mut ids = Vec::new();
    for n in 0..10 {
        let topic = if n % 2 == 0 { "a" } else { "b" };
        ids.push(app.publish(topic, json!(n)).await);
    }
    let mut subscriber = app.subscribe_with(&["a", "b"], Some(&ids[3]), None).await;
    let replayed: Vec<_> = subscriber.take(6).await.into_iter().map(|e| e.id).collect();
    assert_eq!(replayed, ids[4..]);
}

#[tokio::test]
async fn an_id_older_than_history_gets_one_gap_frame_first() {
    let app = spawn_app_with(|c| c.history.size = 5).await;
    let ids = publish_numbered(&app, "t", 20).await;

    let mut subscriber = app.subscribe_with(&["t"], Some(&ids[2]), None).await;
    let gap = subscriber.next().await;
    assert_eq!(gap.event, "gap");
    let info: Value = serde_json::from_str(&gap.data).unwrap();
    assert_eq!(info["reason"], "history_exceeded");
    assert_eq!(info["last_event_id"], ids[2].as_str());
    assert_eq!(info["resumes_at"], ids[15].as_str());
    let replayed: Vec<_> = subscriber.take(5).await.into_iter().map(|e| e.id).collect();
    assert_eq!(replayed, ids[15..]);
}

#[tokio::test]
async fn an_id_from_another_epoch_gets_a_gap_frame_and_the_whole_history() {
    let app = spawn_app().await;
    let ids = publish_numbered(&app, "t", 3).await;
    let (epoch, _) = ids[0].split_once('-').unwrap();
    let other_epoch = if epoch == "1" { "2" } else { "1" };
    let stale = format!("{other_epoch}-2");

    let mut subscriber = app.subscribe_with(&["t"], Some(&stale), None).await;
    let gap = subscriber.next().await;
    assert_eq!(gap.event, "gap");
    let info: Value = serde_json::from_str(&gap.data).unwrap();
    assert_eq!(info["reason"], "unknown_epoch");
    assert_eq!(info["resumes_at"], ids[0].as_str());
    let replayed: Vec<_> = subscriber.take(3).await.into_iter().map(|e| e.id).collect();
    assert_eq!(replayed, ids);
}

#[tokio::test]
async fn a_malformed_id_is_treated_as_foreign_not_as_an_error() {
    let app = spawn_app().await;
    let ids = publish_numbered(&app, "t", 2).await;
    let mut subscriber = app.subscribe_with(&["t"], Some("not-an-id"), None).await;
    let gap = subscriber.next().await;
    assert_eq!(gap.event, "gap");
    let replayed: Vec<_> = subscriber.take(2).await.into_iter().map(|e| e.id).collect();
    assert_eq!(replayed, ids);
}

#[tokio::test]
async fn an_id_from_the_future_is_not_trusted() {
    let app = spawn_app().await;
    let ids = publish_numbered(&app, "t", 2).await;
    let (epoch, _) = ids[0].split_once('-').unwrap();
    let future = format!("{epoch}-ffff");
    let mut subscriber = app.subscribe_with(&["t"], Some(&future), None).await;
    assert_eq!(subscriber.next().await.event, "gap");
    let live = app.publish("t", json!("after")).await;
    let mut seen = subscriber.take(3).await.into_iter().map(|e| e.id);
    assert!(
        seen.any(|id| id == live),
        "live event skipped after a future id"
    );
}
