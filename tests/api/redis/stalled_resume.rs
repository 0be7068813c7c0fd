//! A client that resumes while Redis is stalled: its history reads fail
//! until Redis answers again, and then it gets every stored event, with
//! no gap frame (issue: 0 of 49 arrived, a `history_unavailable` gap and
//! the live position instead).

use std::time::{Duration, Instant};

use serde_json::json;

use super::replica;
use super::replicas::redis_server;
use super::server::Persistence;
use crate::support::helpers::{PATIENCE, wait_ready};

const STORED: usize = 50;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_during_a_redis_stall_gets_what_redis_holds_once_it_answers() {
    let server = redis_server(Persistence::None).await;
    let app = replica(&server, |_| {}).await;
    let mut ids = Vec::new();
    for n in 0..STORED {
        ids.push(app.publish("t", json!(n)).await);
    }

    server.signal("STOP");
    wait_ready(&app, false).await;
    let mut resumed = app.subscribe_with(&["t"], Some(&ids[0]), None).await;
    // Longer than every retry of the replay's history read (four tries,
    // half a second each at most, and pauses): it gives up while Redis is
    // still stopped. Nothing may arrive meanwhile, not even a gap.
    let early = resumed.next_within(Duration::from_secs(4)).await;
    assert!(early.is_none(), "during the stall: {early:?}");

    let stalled_for = Instant::now();
    server.signal("CONT");
    wait_ready(&app, true).await;
    let mut seen = Vec::new();
    while seen.len() < STORED - 1 {
        let event = resumed.next_within(PATIENCE).await.unwrap_or_else(|| {
            panic!(
                "{} of {} stored events arrived: {seen:?}",
                seen.len(),
                STORED - 1
            )
        });
        assert_eq!(event.event, "message", "no gap frame: {}", event.data);
        seen.push(event.id);
    }
    println!(
        "resume during a Redis stall: {} of {} stored events, {:?} after Redis answered again",
        seen.len(),
        STORED - 1,
        stalled_for.elapsed()
    );
    assert_eq!(seen, ids[1..]);

    let live = app.publish("t", json!("after")).await;
    assert_eq!(resumed.next().await.id, live);
}
