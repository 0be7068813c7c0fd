//! Writer shards (`stream.shards`): an idle live stream of a topic others
//! follow too is parked on a shard (no task of its own) and is served
//! exactly as before: every event in order, heartbeats, a departed client
//! freed at once, a slow reader handed back to a task that catches it up
//! without loss. A topic's only subscriber keeps its task.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::json;
use ssehub::hub::Hub;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;

use crate::support::helpers::{PATIENCE, TestApp, spawn_app_with, within};

/// `ssehub_streams_parked` now.
fn parked(app: &TestApp) -> f64 {
    metric(app, "ssehub_streams_parked ")
}

fn parked_in(hub: &Hub) -> f64 {
    metric_of(hub, "ssehub_streams_parked ")
}

fn connected(app: &TestApp) -> f64 {
    metric(app, "ssehub_subscribers_connected ")
}

fn metric(app: &TestApp, prefix: &str) -> f64 {
    metric_of(&app.hub, prefix)
}

fn metric_of(hub: &Hub, prefix: &str) -> f64 {
    hub.render_metrics(false)
        .lines()
        .find_map(|line| line.strip_prefix(prefix))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {prefix}in /metrics"))
}

/// A subscribe over a raw socket (optionally with a small receive
/// buffer), its response read by the test itself.
async fn raw_subscriber(app: &TestApp, topic: &str, recv_buffer: Option<u32>) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    if let Some(size) = recv_buffer {
        socket.set_recv_buffer_size(size).unwrap();
    }
    let mut stream = socket.connect(app.addr).await.unwrap();
    let request = format!("GET /v1/events?topic={topic} HTTP/1.1\r\nHost: hub\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    stream
}

async fn parked_becomes(app: &TestApp, count: f64) {
    let waited = within(PATIENCE, || async { parked(app) == count }).await;
    assert!(
        waited.is_some(),
        "ssehub_streams_parked is {}, not {count}",
        parked(app)
    );
}

#[tokio::test]
async fn an_idle_stream_is_parked_and_gets_every_event_in_order_and_its_heartbeats() {
    let app = spawn_app_with(|config| {
        config.stream.shards = 2;
        config.heartbeat.interval = Duration::from_millis(500);
    })
    .await;
    let mut subscriber = app.subscribe(&["parked"]).await;
    let _companion = app.subscribe(&["parked"]).await;
    parked_becomes(&app, 2.0).await;

    let delivered_before = metric(&app, "ssehub_deliveries_total ");
    let mut ids = Vec::new();
    for n in 0..200 {
        ids.push(app.publish("parked", json!(format!("event {n}"))).await);
    }
    let events = subscriber.take(200).await;
    let got: Vec<_> = events.iter().map(|event| event.id.clone()).collect();
    assert_eq!(got, ids, "every event, in order, once");
    assert_eq!(events[199].data, "event 199");
    // Written by the shard, not a task: the streams are still parked.
    parked_becomes(&app, 2.0).await;
    assert_eq!(connected(&app), 2.0);
    // The shard counts its deliveries once per write round: every one.
    let delivered = within(PATIENCE, || async {
        metric(&app, "ssehub_deliveries_total ") - delivered_before == 400.0
    })
    .await;
    assert!(
        delivered.is_some(),
        "two streams got 200 events each; ssehub_deliveries_total rose by {}",
        metric(&app, "ssehub_deliveries_total ") - delivered_before
    );
}

#[tokio::test]
async fn a_parked_stream_beats_in_silence() {
    let app = spawn_app_with(|config| {
        config.stream.shards = 1;
        config.heartbeat.interval = Duration::from_millis(400);
    })
    .await;
    let mut stream = raw_subscriber(&app, "quiet", None).await;
    let _companion = app.subscribe(&["quiet"]).await;
    parked_becomes(&app, 2.0).await;
    let mut text = Vec::new();
    let mut buffer = [0u8; 1024];
    while text.windows(12).filter(|w| w == b": heartbeat\n").count() < 3 {
        let read = tokio::time::timeout(PATIENCE, stream.read(&mut buffer))
            .await
            .expect("heartbeats keep coming")
            .unwrap();
        assert!(read > 0, "the stream ended");
        text.extend_from_slice(&buffer[..read]);
    }
    // Chunked as the stream writer frames it: `d` is the heartbeat's size.
    let text = String::from_utf8_lossy(&text);
    assert!(text.contains("\r\nd\r\n: heartbeat\n\n\r\n"), "{text:?}");
    assert_eq!(parked(&app), 2.0);
}

#[tokio::test]
async fn a_parked_streams_departed_client_is_freed_at_once() {
    let app = spawn_app_with(|config| {
        config.stream.shards = 2;
        // No heartbeat: only watching the socket can notice the client left.
        config.heartbeat.interval = Duration::ZERO;
    })
    .await;
    let mut companion = app.subscribe(&["gone"]).await;
    let stream = raw_subscriber(&app, "gone", None).await;
    // The companion, alone when it went idle, parks after its next write.
    parked_becomes(&app, 1.0).await;
    app.publish("gone", json!("both follow it now")).await;
    companion.next().await;
    parked_becomes(&app, 2.0).await;
    assert_eq!(connected(&app), 2.0);
    drop(stream);
    let freed = within(Duration::from_secs(2), || async { connected(&app) == 1.0 }).await;
    assert!(freed.is_some(), "the slot is still held");
    assert_eq!(parked(&app), 1.0);
}

#[tokio::test]
async fn a_slow_reader_leaves_its_shard_and_catches_up_without_loss() {
    const EVENTS: usize = 1_500;
    let app = spawn_app_with(|config| {
        config.stream.shards = 2;
        config.history.size = 2_000;
        // Idle moments, at which a stream back in its task may park again.
        config.heartbeat.interval = Duration::from_millis(300);
    })
    .await;
    // A reader that keeps up, on the same topic.
    let mut companion = app.subscribe(&["slow"]).await;
    let companion = tokio::spawn(async move {
        let got = companion.take(EVENTS).await;
        // Kept open: it stays parked.
        (companion, got)
    });
    // A tiny receive buffer: the shard's writes back up at once.
    let mut stream = raw_subscriber(&app, "slow", Some(4096)).await;
    parked_becomes(&app, 1.0).await;
    // 1,500 × 4 KiB = 6 MiB: beyond the socket buffers on both sides.
    let data = "x".repeat(4096);
    let mut last = String::new();
    for _ in 0..EVENTS {
        last = app.publish("slow", json!(data)).await;
    }
    // The reader that keeps up got everything (parked after its first
    // write); the slow one's socket filled and it went back to a task of
    // its own.
    let (_companion, got) = companion.await.unwrap();
    assert_eq!(got.last().unwrap().id, last);
    parked_becomes(&app, 1.0).await;
    let mut text = Vec::new();
    let mut buffer = vec![0u8; 64 * 1024];
    let marker = format!("id: {last}\n");
    while !String::from_utf8_lossy(&text).contains(&marker) {
        let read = tokio::time::timeout(PATIENCE, stream.read(&mut buffer))
            .await
            .expect("the stream catches up")
            .unwrap();
        assert!(read > 0, "the stream ended");
        text.extend_from_slice(&buffer[..read]);
    }
    let text = String::from_utf8_lossy(&text);
    let ids: Vec<&str> = text
        .lines()
        .filter_map(|line| line.strip_prefix("id: "))
        .collect();
    assert_eq!(ids.len(), EVENTS, "every event once");
    assert!(!text.contains("event: gap"), "no gap: history had it all");
    let mut sorted = ids.clone();
    sorted.sort_by_key(|id| {
        id.rsplit('-')
            .next()
            .and_then(|seq| u64::from_str_radix(seq, 16).ok())
            .unwrap_or_else(|| panic!("not an id of ours: {id:?}"))
    });
    assert_eq!(ids, sorted, "in order");
    // Caught up and idle again: back on a shard after its pause.
    parked_becomes(&app, 2.0).await;
}

#[tokio::test]
async fn a_topics_only_subscriber_keeps_its_task_until_another_joins() {
    let app = spawn_app_with(|config| config.stream.shards = 2).await;
    let mut first = app.subscribe(&["mine"]).await;
    let id = app.publish("mine", json!("one")).await;
    assert_eq!(first.next().await.id, id);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(parked(&app), 0.0, "the only subscriber of its topic");
    let mut second = app.subscribe(&["mine"]).await;
    // The second parks at once; the first at its next idle moment.
    let id = app.publish("mine", json!("two")).await;
    assert_eq!(first.next().await.id, id);
    assert_eq!(second.next().await.id, id);
    parked_becomes(&app, 2.0).await;
}

#[tokio::test]
async fn with_no_shards_every_stream_keeps_its_task() {
    let app = spawn_app_with(|config| config.stream.shards = 0).await;
    let mut subscriber = app.subscribe(&["own-task"]).await;
    let id = app.publish("own-task", json!("hi")).await;
    assert_eq!(subscriber.next().await.id, id);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(parked(&app), 0.0);
    assert_eq!(connected(&app), 1.0);
}

#[tokio::test]
async fn at_the_drain_parked_streams_stay_until_their_close_slots() {
    const STREAMS: usize = 8;
    let spread = Duration::from_secs(4);
    let app = spawn_app_with(|config| {
        config.stream.shards = 1;
        config.drain.delay = Duration::ZERO;
        config.drain.spread = spread;
        config.drain.timeout = Duration::from_secs(20);
    })
    .await;
    let mut subscribers = Vec::new();
    for _ in 0..STREAMS {
        subscribers.push(app.subscribe(&["closing"]).await);
    }
    // The first one parks at its first write, once the others have come.
    let id = app.publish("closing", json!("before the drain")).await;
    parked_becomes(&app, STREAMS as f64).await;

    let hub = app.hub.clone();
    let began = Instant::now();
    let drain = tokio::spawn(app.shut_down());
    let readers: Vec<_> = subscribers
        .into_iter()
        .map(|mut subscriber| {
            tokio::spawn(async move {
                let mut ids = Vec::new();
                loop {
                    match tokio::time::timeout(PATIENCE, subscriber.events.next()).await {
                        Ok(Some(event)) => ids.push(event.id),
                        Ok(None) => return (ids, Instant::now()),
                        Err(_) => panic!("the stream neither ended nor sent anything"),
                    }
                }
            })
        })
        .collect();
    // Slots k/8 of 4 s: 0, 0.5, ... 3.5 s after closing began. Between
    // the second and the last slot, some streams are still on the shard
    // (not all handed back to tasks at once) and some have gone.
    tokio::time::sleep_until(began + Duration::from_millis(1500)).await;
    let still_parked = parked_in(&hub);
    assert!(
        still_parked > 0.0 && still_parked < STREAMS as f64,
        "{still_parked} of {STREAMS} streams parked {:?} into a 4 s spread",
        began.elapsed()
    );

    let mut ends = Vec::new();
    for reader in readers {
        let (ids, ended) = reader.await.unwrap();
        assert_eq!(ids, vec![id.clone()], "the event before the drain, once");
        ends.push(ended);
    }
    let first = *ends.iter().min().unwrap();
    let last = *ends.iter().max().unwrap();
    assert!(
        last - first >= spread / 2,
        "the ends bunched within {:?}",
        last - first
    );
    drain.await.unwrap();
}

/// Reads a stream until it ends, keeping nothing.
async fn read_all(mut stream: TcpStream) {
    let mut buffer = vec![0u8; 64 * 1024];
    while let Ok(read) = stream.read(&mut buffer).await {
        if read == 0 {
            break;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_with_a_backlog_still_takes_streams_over() {
    // Many streams and a short flood: the shard has a backlog of about a
    // second, while each socket needs to hold only about 100 KB, so no
    // stream leaves its shard for a full socket however slowly the readers
    // below are scheduled (the count of parked streams stays exact).
    const READERS: usize = 200;
    const FLOOD: usize = 2_500;
    let app = spawn_app_with(|config| {
        config.stream.shards = 1;
        // The backlog stays in the queue (no lag, no catch-up from history).
        config.stream.queue = 32_768;
    })
    .await;
    for _ in 0..READERS {
        let reader = raw_subscriber(&app, "flood", None).await;
        tokio::spawn(read_all(reader));
    }
    let _quiet = [
        app.subscribe(&["quiet"]).await,
        app.subscribe(&["quiet"]).await,
    ];
    // Each topic's first subscriber parks at its first write.
    app.publish("flood", json!("start")).await;
    app.publish("quiet", json!("start")).await;
    parked_becomes(&app, (READERS + 2) as f64).await;
    let delivered_before = metric(&app, "ssehub_deliveries_total ");

    // Published in-process, many times faster than one shard writes each
    // event to 200 sockets: the shard is left with a backlog.
    for n in 0..FLOOD {
        app.publish_in_process("flood", n.to_string()).await;
    }
    // A stream that arrives meanwhile is taken over between the backlog's
    // writes, not once the backlog is written.
    let _late = app.subscribe(&["quiet"]).await;
    let taken = within(PATIENCE, || async { parked(&app) == (READERS + 3) as f64 }).await;
    let delivered = metric(&app, "ssehub_deliveries_total ") - delivered_before;
    assert!(taken.is_some(), "the late stream was never parked");
    assert!(
        delivered < (READERS * FLOOD) as f64,
        "taken over only after the backlog was written ({delivered} deliveries)"
    );
}
