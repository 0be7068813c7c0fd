//! The backplane contract: what every backplane must give subscribers,
//! written once over the HTTP API and instantiated per backplane with
//! [`backplane_contract!`] (memory here; Redis in `tests/api/redis`).
//!
//! Resume without gap or duplicate, a gap frame where history ends (by count
//! and by age), id order across topics, batches atomic and in order, and
//! ids that name their epoch.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use ssehub::config::Config;

use crate::support::helpers::{TestApp, spawn_app_with, wait_ready};

/// A backplane the contract runs against: starts whatever server it needs
/// (kept alive as long as the value) and configures a hub to use it.
pub trait Backend: Sized + Send + Sync + 'static {
    fn start() -> impl std::future::Future<Output = Self> + Send;
    fn configure(&self, config: &mut Config);
}

/// The in-memory backplane: nothing to start.
pub struct Memory;

impl Backend for Memory {
    async fn start() -> Self {
        Memory
    }

    fn configure(&self, _: &mut Config) {}
}

/// Instantiates every contract case as a test for `$backend`.
#[macro_export]
macro_rules! backplane_contract {
    ($backend:ty) => {
        $crate::backplane_contract!(@cases $backend;
            a_resume_replays_what_was_missed_then_goes_live,
            events_published_during_a_resume_are_neither_lost_nor_doubled,
            history_trimmed_by_count_gives_one_gap_frame,
            history_trimmed_by_age_gives_one_gap_frame,
            several_topics_arrive_in_id_order_live_and_resumed,
            a_batch_is_atomic_and_contiguous_across_topics,
            ids_name_their_epoch_and_foreign_ones_get_a_gap
        );
    };
    (@cases $backend:ty; $($case:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                $crate::contract::$case::<$backend>().await;
            }
        )*
    };
}

mod memory {
    crate::backplane_contract!(crate::contract::Memory);
}

/// A hub on `backend`, configured further by `configure`; the backend is
/// returned too so its server outlives the hub.
pub async fn app<B: Backend>(configure: impl FnOnce(&mut Config)) -> (TestApp, B) {
    let backend = B::start().await;
    let app = spawn_app_with(|config| {
        backend.configure(config);
        configure(config);
    })
    .await;
    wait_ready(&app, true).await;
    (app, backend)
}

async fn publish_numbered(app: &TestApp, topic: &str, count: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for n in 0..count {
        ids.push(app.publish(topic, json!(n)).await);
    }
    ids
}

fn gap_info(event: &eventsource_stream::Event) -> Value {
    assert_eq!(event.event, "gap", "expected a gap frame, got {event:?}");
    serde_json::from_str(&event.data).unwrap()
}

pub async fn a_resume_replays_what_was_missed_then_goes_live<B: Backend>() {
    let (app, _backend) = app::<B>(|_| {}).await;
    let ids = publish_numbered(&app, "t", 5).await;

    let mut by_header = app.subscribe_with(&["t"], Some(&ids[1]), None).await;
    let mut by_query = app.subscribe_with(&["t"], None, Some(&ids[1])).await;
    for subscriber in [&mut by_header, &mut by_query] {
        let replayed: Vec<_> = subscriber.take(3).await.into_iter().map(|e| e.id).collect();
        assert_eq!(replayed, ids[2..]);
    }

    let live = app.publish("t", json!("live")).await;
    for subscriber in [&mut by_header, &mut by_query] {
        let event = subscriber.next().await;
        assert_eq!((event.id, event.data), (live.clone(), "live".to_owned()));
    }
}

pub async fn events_published_during_a_resume_are_neither_lost_nor_doubled<B: Backend>() {
    const EVENTS: usize = 300;
    let (app, _backend) = app::<B>(|_| {}).await;
    let app = Arc::new(app);
    let ids = Arc::new(Mutex::new(publish_numbered(&app, "t", 50).await));
    let resume_from = ids.lock().unwrap()[24].clone();

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

pub async fn history_trimmed_by_count_gives_one_gap_frame<B: Backend>() {
    let (app, _backend) = app::<B>(|c| c.history.size = 5).await;
    let ids = publish_numbered(&app, "t", 20).await;

    let mut behind = app.subscribe_with(&["t"], Some(&ids[2]), None).await;
    let info = gap_info(&behind.next().await);
    assert_eq!(info["reason"], "history_exceeded");
    assert_eq!(info["last_event_id"], ids[2].as_str());
    assert_eq!(info["resumes_at"], ids[15].as_str());
    let replayed: Vec<_> = behind.take(5).await.into_iter().map(|e| e.id).collect();
    assert_eq!(replayed, ids[15..]);

    // Exactly at the edge of what is held: nothing was lost, no gap.
    let mut at_edge = app.subscribe_with(&["t"], Some(&ids[14]), None).await;
    let replayed: Vec<_> = at_edge.take(5).await.into_iter().map(|e| e.id).collect();
    assert_eq!(replayed, ids[15..]);
}

pub async fn history_trimmed_by_age_gives_one_gap_frame<B: Backend>() {
    // Long enough that the fresh events can't expire while the test reads
    // them, even on a busy machine.
    const TTL: Duration = Duration::from_secs(3);
    let (app, _backend) = app::<B>(|c| c.history.ttl = TTL).await;
    let old = publish_numbered(&app, "t", 3).await;
    tokio::time::sleep(TTL + Duration::from_millis(500)).await;
    let fresh = publish_numbered(&app, "t", 2).await;

    let mut behind = app.subscribe_with(&["t"], Some(&old[0]), None).await;
    let info = gap_info(&behind.next().await);
    assert_eq!(info["reason"], "history_exceeded");
    assert_eq!(info["resumes_at"], fresh[0].as_str());
    let replayed: Vec<_> = behind.take(2).await.into_iter().map(|e| e.id).collect();
    assert_eq!(replayed, fresh);

    // From the newest expired event nothing after it is lost.
    let mut at_edge = app.subscribe_with(&["t"], Some(&old[2]), None).await;
    let first = at_edge.next().await;
    assert_eq!(first.id, fresh[0], "no gap: {first:?}");
}

pub async fn several_topics_arrive_in_id_order_live_and_resumed<B: Backend>() {
    let (app, _backend) = app::<B>(|_| {}).await;
    let mut live = app.subscribe(&["a", "b"]).await;
    let mut ids = Vec::new();
    for n in 0..20 {
        let topic = if n % 3 == 0 { "b" } else { "a" };
        ids.push(app.publish(topic, json!(n)).await);
    }
    let received: Vec<_> = live
        .take(ids.len())
        .await
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(received, ids);

    let mut resumed = app.subscribe_with(&["a", "b"], Some(&ids[4]), None).await;
    let replayed: Vec<_> = resumed.take(15).await.into_iter().map(|e| e.id).collect();
    assert_eq!(replayed, ids[5..]);
}

pub async fn a_batch_is_atomic_and_contiguous_across_topics<B: Backend>() {
    const BATCHES: usize = 20;
    let (app, _backend) = app::<B>(|_| {}).await;
    let app = Arc::new(app);
    let mut both = app.subscribe(&["a", "b"]).await;

    // Single publishes race the batches; no batch may be split by them.
    let racer = {
        let app = app.clone();
        tokio::spawn(async move { publish_numbered(&app, "b", BATCHES * 2).await })
    };
    let mut batches = Vec::new();
    for n in 0..BATCHES {
        let response = app
            .client
            .post(app.url("/v1/events"))
            .json(&json!({"events": [
                {"topic": "a", "data": format!("{n}.0")},
                {"topic": "b", "data": format!("{n}.1")},
                {"topic": "a", "data": format!("{n}.2")},
            ]}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202);
        let body: Value = response.json().await.unwrap();
        let ids: Vec<String> = body["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_owned())
            .collect();
        batches.push(ids);
    }
    let singles = racer.await.unwrap();

    // A rejected batch delivers nothing: the marker after it comes next.
    let response = app
        .client
        .post(app.url("/v1/events"))
        .json(&json!({"events": [
            {"topic": "a", "data": "rejected"},
            {"topic": "not valid", "data": "rejected"},
        ]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let marker = app.publish("a", json!("marker")).await;

    let received: Vec<_> = both
        .take(BATCHES * 3 + singles.len() + 1)
        .await
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(
        received.last(),
        Some(&marker),
        "nothing of the rejected batch"
    );
    for batch in &batches {
        let at = received.iter().position(|id| *id == batch[0]).unwrap();
        assert_eq!(
            &received[at..at + 3],
            &batch[..],
            "batch split or reordered"
        );
    }
    let singles_seen: Vec<_> = received.iter().filter(|id| singles.contains(id)).collect();
    assert_eq!(
        singles_seen.len(),
        singles.len(),
        "every single publish arrived"
    );
}

pub async fn ids_name_their_epoch_and_foreign_ones_get_a_gap<B: Backend>() {
    let (app, _backend) = app::<B>(|_| {}).await;
    let ids = publish_numbered(&app, "t", 3).await;
    let epochs: Vec<_> = ids.iter().map(|id| id.split_once('-').unwrap().0).collect();
    assert!(epochs.iter().all(|e| *e == epochs[0]), "one epoch: {ids:?}");

    let other_epoch = if epochs[0] == "1" { "2" } else { "1" };
    for foreign in [format!("{other_epoch}-2"), "not-an-id".to_owned()] {
        let mut subscriber = app.subscribe_with(&["t"], Some(&foreign), None).await;
        let info = gap_info(&subscriber.next().await);
        assert_eq!(info["reason"], "unknown_epoch");
        assert_eq!(info["resumes_at"], ids[0].as_str());
        let replayed: Vec<_> = subscriber.take(3).await.into_iter().map(|e| e.id).collect();
        assert_eq!(replayed, ids);
    }

    // An id of this epoch beyond anything assigned is not trusted either.
    let future = format!("{}-ffff", epochs[0]);
    let mut subscriber = app.subscribe_with(&["t"], Some(&future), None).await;
    assert_eq!(
        gap_info(&subscriber.next().await)["reason"],
        "unknown_epoch"
    );
    let live = app.publish("t", json!("after")).await;
    let seen: Vec<_> = subscriber.take(4).await.into_iter().map(|e| e.id).collect();
    assert_eq!(seen.last(), Some(&live), "the live event after a future id");
}
