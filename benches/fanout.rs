//! Micro-benchmarks of the hot path: encoding an event (once per event) and
//! fanning one event out to 10,000 in-process subscribers (once per
//! delivery). Run with `cargo bench --bench fanout`; after divan's table it
//! prints the fan-out cost as nanoseconds per delivery.

use std::pin::Pin;
use std::time::{Duration, Instant};

use bytes::Bytes;
use divan::Bencher;
use divan::counter::{BytesCount, ItemsCount};
use futures_util::{FutureExt, Stream, StreamExt};
use ssehub::backplane::HistoryLimits;
use ssehub::hub::{Hub, HubSettings, testing};
use ssehub::model::EventId;

const SUBSCRIBERS: usize = 10_000;

fn main() {
    divan::main();
    print_fanout_summary();
}

#[divan::bench(args = [16, 256, 4096])]
fn encode_event(bencher: Bencher, size: usize) {
    let data = "x".repeat(size);
    let event_type = ssehub::model::EventType::parse("update").unwrap();
    bencher.counter(BytesCount::new(size)).bench(|| {
        ssehub::model::sse::event_frame(
            EventId::new(0x5f3a_9c21, 123_456),
            Some(&event_type),
            None,
            divan::black_box(&data),
        )
    });
}

#[divan::bench]
fn encode_multi_line_event(bencher: Bencher) {
    let data = "line of text\n".repeat(20);
    bencher.counter(BytesCount::new(data.len())).bench(|| {
        ssehub::model::sse::event_frame(EventId::new(1, 2), None, None, divan::black_box(&data))
    });
}

type Frames = Pin<Box<dyn Stream<Item = Bytes> + Send>>;

/// A hub with `subscribers` live streams on topic `t`, each past its prelude.
fn hub_with_subscribers(subscribers: usize) -> (Hub, Vec<Frames>) {
    let settings = HubSettings {
        max_subscribers: subscribers,
        max_topics_per_subscription: 1,
        max_event_bytes: 64 * 1024,
        queue: 64,
        ..testing::settings()
    };
    let history = HistoryLimits {
        size: 1000,
        ttl: Duration::from_secs(3600),
    };
    let hub = testing::memory_hub(settings, history);
    let mut streams: Vec<Frames> = (0..subscribers)
        .map(|_| Box::pin(hub.subscribe(testing::live(&["t"])).unwrap().into_frames()) as Frames)
        .collect();
    for stream in &mut streams {
        let prelude = stream.next().now_or_never().flatten();
        assert!(prelude.is_some(), "prelude is ready at once");
        // Registers the stream as a waiter on the topic's queue.
        assert!(stream.next().now_or_never().is_none());
    }
    (hub, streams)
}

/// Publishes one event and polls every subscriber once: the frame must be
/// ready for each. The returned time covers accept, encode, fan-out and
/// every delivery.
fn publish_and_deliver(hub: &Hub, streams: &mut [Frames]) -> Duration {
    let started = Instant::now();
    hub.publish(vec![testing::draft("t", "x".repeat(256))])
        .now_or_never()
        .expect("memory publish is immediate")
        .unwrap();
    for stream in streams.iter_mut() {
        let frame = stream.next().now_or_never().flatten();
        assert!(frame.is_some(), "every subscriber has the frame");
        divan::black_box(frame);
        assert!(stream.next().now_or_never().is_none());
    }
    started.elapsed()
}

#[divan::bench(sample_count = 20)]
fn fan_out_one_event_to_10k(bencher: Bencher) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = runtime.enter();
    let (hub, mut streams) = hub_with_subscribers(SUBSCRIBERS);
    bencher
        .counter(ItemsCount::new(SUBSCRIBERS))
        .bench_local(|| publish_and_deliver(&hub, &mut streams));
}

fn print_fanout_summary() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = runtime.enter();
    let (hub, mut streams) = hub_with_subscribers(SUBSCRIBERS);
    for _ in 0..5 {
        publish_and_deliver(&hub, &mut streams);
    }
    let mut rounds: Vec<Duration> = (0..50)
        .map(|_| publish_and_deliver(&hub, &mut streams))
        .collect();
    rounds.sort();
    let per_delivery = |d: Duration| d.as_nanos() as f64 / SUBSCRIBERS as f64;
    println!(
        "fan-out of one 256 B event to {SUBSCRIBERS} subscribers: {:.0} ns per delivery (median of 50; min {:.0}, max {:.0})",
        per_delivery(rounds[rounds.len() / 2]),
        per_delivery(rounds[0]),
        per_delivery(rounds[rounds.len() - 1]),
    );
}
