//! The stream loop's timers: heartbeats, token expiry.

use std::time::Duration;

use futures_util::StreamExt;
use tokio::time::Instant;

use crate::hub::testing::{self, HISTORY};
use crate::hub::{Hub, HubSettings, SubscribeRequest};

const EVERY: Duration = Duration::from_secs(15);

fn hub() -> Hub {
    let settings = HubSettings {
        heartbeat: Some(EVERY),
        ..testing::settings()
    };
    testing::memory_hub(settings, HISTORY)
}

fn frames(hub: &Hub) -> impl futures_util::Stream<Item = bytes::Bytes> + Unpin {
    Box::pin(hub.subscribe(testing::live(&["t"])).unwrap().into_frames())
}

async fn publish(hub: &Hub) {
    hub.publish(vec![testing::draft("t", "tick")])
        .await
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_stream_ends_at_its_token_expiry_with_the_expiry_frame() {
    let hub = hub();
    let lifetime = Duration::from_secs(40);
    let expires_at = std::time::SystemTime::now() + lifetime;
    let request = SubscribeRequest {
        expires_at: Some(expires_at),
        ..testing::live(&["t"])
    };
    let mut frames = Box::pin(hub.subscribe(request).unwrap().into_frames());
    let opened = Instant::now();
    frames.next().await.unwrap();
    publish(&hub).await;
    assert!(frames.next().await.unwrap().starts_with(b"id: "));
    let mut last = None;
    while let Some(frame) = frames.next().await {
        last = Some(frame);
    }
    let ended = opened.elapsed();
    assert!(
        ended >= lifetime - Duration::from_secs(1) && ended <= lifetime + Duration::from_secs(1),
        "ended after {ended:?}"
    );
    let last = last.unwrap();
    assert!(
        last.starts_with(b"event: token_expired\ndata: {\"exp\":"),
        "{last:?}"
    );
    let metrics = hub.render_metrics(false);
    assert!(
        metrics.contains("ssehub_subscriptions_closed_total{reason=\"token_expired\"} 1\n"),
        "{metrics}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_heartbeat_follows_silence_within_the_jittered_interval() {
    let hub = hub();
    let mut frames = frames(&hub);
    let prelude = frames.next().await.unwrap();
    assert!(prelude.starts_with(b"retry: 3000\n"));

    let silent_since = Instant::now();
    let heartbeat = frames.next().await.unwrap();
    let waited = silent_since.elapsed();
    assert_eq!(&heartbeat[..], b": heartbeat\n\n");
    assert!(
        waited >= EVERY.mul_f64(0.8) && waited <= EVERY,
        "heartbeat after {waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn no_heartbeat_while_events_flow() {
    let hub = hub();
    let mut frames = frames(&hub);
    frames.next().await.unwrap();
    let publisher = {
        let hub = hub.clone();
        tokio::spawn(async move {
            // An event every 5 s for two minutes: never 15 s of silence.
            for _ in 0..24 {
                tokio::time::sleep(Duration::from_secs(5)).await;
                publish(&hub).await;
            }
        })
    };
    let mut events = 0;
    while events < 24 {
        let frame = frames.next().await.unwrap();
        assert!(frame.starts_with(b"id: "), "unexpected frame {frame:?}");
        events += frame.windows(4).filter(|w| w == b"id: ").count();
    }
    publisher.await.unwrap();
    // Then silence again: the heartbeat comes back.
    let frame = frames.next().await.unwrap();
    assert_eq!(&frame[..], b": heartbeat\n\n");
}

#[tokio::test(start_paused = true)]
async fn streams_that_went_quiet_together_beat_at_different_times() {
    let hub = hub();
    let mut beats = Vec::new();
    let mut streams: Vec<_> = (0..8).map(|_| frames(&hub)).collect();
    for stream in &mut streams {
        stream.next().await.unwrap();
    }
    let started = Instant::now();
    let waits = streams.into_iter().map(|mut stream| async move {
        stream.next().await.unwrap();
        Instant::now()
    });
    for at in futures_util::future::join_all(waits).await {
        beats.push(at - started);
    }
    beats.sort();
    beats.dedup();
    assert!(
        beats.len() > 1,
        "all heartbeats in the same tick: {beats:?}"
    );
}
