//! Three replicas on one Redis: one order of events everywhere, batches
//! whole, and a resume on any replica right after a publish on another.

use std::sync::Arc;

use serde_json::{Value, json};

use super::replica;
use super::server::{Persistence, RedisServer};
use crate::support::helpers::{Subscriber, TestApp};

async fn three_replicas(server: &RedisServer) -> [Arc<TestApp>; 3] {
    [
        Arc::new(replica(server, |_| {}).await),
        Arc::new(replica(server, |_| {}).await),
        Arc::new(replica(server, |_| {}).await),
    ]
}

pub async fn redis_server(persistence: Persistence) -> RedisServer {
    tokio::task::spawn_blocking(move || RedisServer::start(persistence))
        .await
        .unwrap()
}

/// Publishes a batch; returns its ids in request order.
pub async fn publish_batch(app: &TestApp, events: Value) -> Vec<String> {
    let response = app
        .client
        .post(app.url("/v1/events"))
        .json(&json!({ "events": events }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let body: Value = response.json().await.unwrap();
    body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn ids(subscriber: &mut Subscriber, count: usize) -> Vec<String> {
    subscriber
        .take(count)
        .await
        .into_iter()
        .map(|e| {
            assert_ne!(e.event, "gap", "no gap expected");
            e.id
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_on_any_replica_reaches_every_replica_with_the_same_ids_in_order() {
    let server = redis_server(Persistence::None).await;
    let replicas = three_replicas(&server).await;
    let mut both = Vec::new();
    let mut only_a = Vec::new();
    for app in &replicas {
        both.push(app.subscribe(&["a", "b"]).await);
        only_a.push(app.subscribe(&["a"]).await);
    }

    // Publishers take turns; one awaited at a time, so the order is known.
    let mut expected = Vec::new();
    for n in 0..15 {
        let topic = if n % 3 == 0 { "b" } else { "a" };
        let id = replicas[n % 3].publish(topic, json!(n)).await;
        expected.push((topic, id));
    }
    let batch = publish_batch(
        &replicas[1],
        json!([{"topic": "a", "data": 1}, {"topic": "b", "data": 2}, {"topic": "a", "data": 3}]),
    )
    .await;
    expected.extend(["a", "b", "a"].into_iter().zip(batch));

    let all: Vec<String> = expected.iter().map(|(_, id)| id.clone()).collect();
    let a: Vec<String> = expected
        .iter()
        .filter(|(topic, _)| *topic == "a")
        .map(|(_, id)| id.clone())
        .collect();
    for subscriber in &mut both {
        assert_eq!(ids(subscriber, all.len()).await, all);
    }
    for subscriber in &mut only_a {
        assert_eq!(ids(subscriber, a.len()).await, a);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_batches_and_singles_arrive_whole_and_in_one_order_everywhere() {
    const ROUNDS: usize = 30;
    let server = redis_server(Persistence::None).await;
    let replicas = three_replicas(&server).await;
    let mut subscribers = Vec::new();
    for app in &replicas {
        subscribers.push(app.subscribe(&["a", "b"]).await);
    }
    let batches = {
        let app = replicas[0].clone();
        tokio::spawn(async move {
            let mut batches = Vec::new();
            for n in 0..ROUNDS {
                let events = json!([{"topic": "a", "data": n}, {"topic": "b", "data": n}]);
                batches.push(publish_batch(&app, events).await);
            }
            batches
        })
    };
    let singles = {
        let app = replicas[1].clone();
        tokio::spawn(async move {
            let mut ids = Vec::new();
            for n in 0..ROUNDS {
                ids.push(app.publish("b", json!(n)).await);
            }
            ids
        })
    };
    let batches = batches.await.unwrap();
    let singles = singles.await.unwrap();
    let total = ROUNDS * 3;

    let mut sequences = Vec::new();
    for subscriber in &mut subscribers {
        sequences.push(ids(subscriber, total).await);
    }
    assert_eq!(sequences[0], sequences[1], "replicas A and B disagree");
    assert_eq!(sequences[0], sequences[2], "replicas A and C disagree");
    let seen = &sequences[0];
    for batch in &batches {
        let at = seen.iter().position(|id| *id == batch[0]).unwrap();
        assert_eq!(&seen[at..at + 2], &batch[..], "a batch was split");
    }
    assert!(singles.iter().all(|id| seen.contains(id)));
    let seqs: Vec<u64> = seen
        .iter()
        .map(|id| u64::from_str_radix(id.split_once('-').unwrap().1, 16).unwrap())
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "ids increase: {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_on_another_replica_right_after_a_publish_has_no_gap_or_duplicate() {
    let server = redis_server(Persistence::None).await;
    let [a, _, c] = three_replicas(&server).await;
    let mut previous = a.publish("t", json!("first")).await;
    for n in 0..20 {
        // At once after the 2xx on A: C may not have this event yet.
        let id = a.publish("t", json!(n)).await;
        let mut at_id = c.subscribe_with(&["t"], Some(&id), None).await;
        let mut before_id = c.subscribe_with(&["t"], Some(&previous), None).await;
        let next = a.publish("t", json!("next")).await;
        assert_eq!(ids(&mut at_id, 1).await, vec![next.clone()], "round {n}");
        assert_eq!(
            ids(&mut before_id, 2).await,
            [id.clone(), next.clone()],
            "round {n}"
        );
        previous = next;
    }
}
