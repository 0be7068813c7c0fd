use super::*;
use crate::model::EventDraft;

struct Discard;
impl FanOut for Discard {
    fn fan_out(&self, _: &[Arc<Event>]) {}
    fn resync(&self, _: EventId) {}
}

fn backplane(size: usize, ttl: Duration) -> MemoryBackplane {
    MemoryBackplane::new(HistoryLimits { size, ttl }, Arc::new(Discard))
}

fn bounded(max_topics: usize, max_bytes: usize) -> MemoryBackplane {
    let bounds = HistoryBounds {
        max_topics,
        max_bytes,
    };
    backplane(1_000, Duration::from_secs(60))
        .with_bounds(bounds, Arc::new(BackplaneMetrics::default()))
}

fn draft(topic: &str) -> EventDraft {
    sized_draft(topic, 1)
}

fn sized_draft(topic: &str, bytes: usize) -> EventDraft {
    EventDraft {
        topic: TopicName::parse(topic).unwrap(),
        event_type: None,
        retry: None,
        data: "x".repeat(bytes),
        trace: None,
        mirror: false,
    }
}

fn publish_sized(backplane: &MemoryBackplane, topic: &str, bytes: usize) -> EventId {
    futures_util::FutureExt::now_or_never(backplane.publish(vec![sized_draft(topic, bytes)], None))
        .unwrap()
        .unwrap()
        .accepted()[0]
        .id
}

/// The invariants `State` documents, checked the slow way.
fn assert_consistent(backplane: &MemoryBackplane) {
    let state = backplane.state();
    let mut bytes = 0;
    for (name, topic) in &state.topics {
        assert!(!topic.events.is_empty(), "{name:?} is held empty");
        assert_eq!(state.by_last_publish.get(&topic.newest_seq()), Some(name));
        let events: usize = topic.events.iter().map(|(_, e)| event_cost(e)).sum();
        assert_eq!(topic.bytes, topic_cost(name) + events, "{name:?}");
        bytes += topic.bytes;
    }
    assert_eq!(state.by_last_publish.len(), state.topics.len());
    assert_eq!(state.bytes, bytes);
}

fn publish(backplane: &MemoryBackplane, topic: &str) -> EventId {
    futures_util::FutureExt::now_or_never(backplane.publish(vec![draft(topic)], None))
        .unwrap()
        .unwrap()
        .accepted()[0]
        .id
}

fn history(backplane: &MemoryBackplane, topic: &str, after: u64) -> History {
    let all = PageLimit {
        events: usize::MAX,
        bytes: usize::MAX,
    };
    history_page(backplane, topic, after, all)
}

fn history_page(backplane: &MemoryBackplane, topic: &str, after: u64, limit: PageLimit) -> History {
    let topic = TopicName::parse(topic).unwrap();
    futures_util::FutureExt::now_or_never(backplane.history(&topic, after, limit))
        .unwrap()
        .unwrap()
}

#[test]
fn history_is_read_in_pages_by_count_and_bytes() {
    let backplane = backplane(10, Duration::from_secs(60));
    let ids: Vec<_> = (0..5).map(|_| publish(&backplane, "t")).collect();
    let by_count = PageLimit {
        events: 2,
        bytes: usize::MAX,
    };
    let first = history_page(&backplane, "t", 0, by_count);
    assert_eq!(
        first.events.iter().map(|e| e.id).collect::<Vec<_>>(),
        ids[..2]
    );
    assert_eq!(first.next_after, Some(ids[1].seq));
    let last = history_page(&backplane, "t", ids[3].seq, by_count);
    assert_eq!(last.events.len(), 1);
    assert_eq!(last.next_after, None, "nothing after the last event");
    // One byte: each page still holds one event.
    let by_bytes = PageLimit {
        events: usize::MAX,
        bytes: 1,
    };
    let one = history_page(&backplane, "t", ids[0].seq, by_bytes);
    assert_eq!(one.events.len(), 1);
    assert_eq!(one.events[0].id, ids[1]);
    assert_eq!(one.next_after, Some(ids[1].seq));
}

#[test]
fn ids_increase_across_topics() {
    let backplane = backplane(10, Duration::from_secs(60));
    let a = publish(&backplane, "a");
    let b = publish(&backplane, "b");
    assert!(a < b && a.epoch == backplane.epoch());
}

#[test]
fn history_is_bounded_by_count_and_reports_the_gap() {
    let backplane = backplane(3, Duration::from_secs(60));
    let ids: Vec<_> = (0..5).map(|_| publish(&backplane, "t")).collect();
    let full = history(&backplane, "t", ids[1].seq);
    assert!(full.complete);
    assert_eq!(full.events.len(), 3);
    let short = history(&backplane, "t", ids[0].seq);
    assert!(!short.complete, "event 2 was evicted");
    assert_eq!(short.events[0].id, ids[2]);
}

#[test]
fn expiry_forgets_topics_but_not_their_gaps() {
    let backplane = backplane(10, Duration::from_millis(1));
    let first = publish(&backplane, "t");
    std::thread::sleep(Duration::from_millis(5));
    backplane.expire(Instant::now());
    assert_eq!(backplane.topic_count(), 0);
    assert!(!history(&backplane, "t", 0).complete);
    assert!(history(&backplane, "t", first.seq).complete);
}

#[test]
fn topics_and_bytes_stay_within_the_bounds() {
    const MAX_BYTES: usize = 256 * 1024;
    let backplane = bounded(100, MAX_BYTES);
    let mut most = (0, 0);
    for i in 0..2_000 {
        // Many small topics, then fewer large events: both bounds bite.
        let size = if i < 1_000 { 10 } else { 16 * 1024 };
        publish_sized(&backplane, &format!("flood.{i}"), size);
        most.0 = most.0.max(backplane.topic_count());
        most.1 = most.1.max(backplane.held_bytes());
    }
    assert_consistent(&backplane);
    assert!(most.0 <= 100, "{} topics held", most.0);
    assert!(most.1 <= MAX_BYTES, "{} bytes held", most.1);
    // The newest topics are the ones kept.
    assert!(!history(&backplane, "flood.1999", 0).events.is_empty());
    let state = backplane.state();
    assert!(state.topics.len() >= 10, "{} topics", state.topics.len());
}

#[test]
fn an_evicted_topics_resume_is_incomplete() {
    let backplane = bounded(3, usize::MAX);
    let first = publish(&backplane, "victim");
    let second = publish(&backplane, "victim");
    for i in 0..3 {
        publish(&backplane, &format!("flood.{i}"));
    }
    assert_eq!(backplane.topic_count(), 3);
    let resumed = history(&backplane, "victim", first.seq);
    assert!(resumed.events.is_empty());
    assert!(!resumed.complete, "event {second} was evicted: a gap");
    // Published to again, the topic still remembers what it lost.
    let third = publish(&backplane, "victim");
    let resumed = history(&backplane, "victim", first.seq);
    assert_eq!(resumed.events.len(), 1);
    assert!(!resumed.complete);
    assert!(history(&backplane, "victim", third.seq).complete);
    assert_consistent(&backplane);
}

#[test]
fn the_byte_bound_takes_the_oldest_events_of_the_least_recent_topic_first() {
    // The longest id these events can have: the real ones cost at most
    // this, and only a few bytes less.
    let one = event_cost(&Event::accept(
        sized_draft("old", 1_000),
        EventId::new(u64::from(u32::MAX), 15),
        SystemTime::now(),
    ));
    // Room for the two topics and eight events, not nine.
    let topics = 2 * topic_cost(&TopicName::parse("old").unwrap());
    let backplane = bounded(100, topics + 8 * one + one / 2);
    let old: Vec<_> = (0..6)
        .map(|_| publish_sized(&backplane, "old", 1_000))
        .collect();
    publish_sized(&backplane, "new", 1_000);
    publish_sized(&backplane, "new", 1_000);
    publish_sized(&backplane, "new", 1_000);
    let kept = history(&backplane, "old", 0);
    assert!(!kept.complete);
    assert_eq!(
        kept.events.first().unwrap().id,
        old[1],
        "only the oldest went"
    );
    assert!(history(&backplane, "old", old[0].seq).complete);
    assert!(history(&backplane, "new", 0).complete);
    assert_consistent(&backplane);
}

#[test]
fn an_event_larger_than_the_byte_bound_is_kept_until_the_next() {
    let backplane = bounded(100, 1_000);
    publish_sized(&backplane, "a", 10);
    let big = publish_sized(&backplane, "b", 5_000);
    assert_eq!(history(&backplane, "b", 0).events[0].id, big);
    assert!(!history(&backplane, "a", 0).complete, "a made room");
    assert_consistent(&backplane);
}

#[test]
fn a_mass_expiry_holds_the_lock_for_one_batch_at_a_time() {
    const TOPICS: usize = 200_000;
    let ttl = Duration::from_millis(200);
    let backplane = Arc::new(backplane(10, ttl));
    let names: Vec<String> = (0..TOPICS).map(|i| format!("t.{i}")).collect();
    for chunk in names.chunks(1_000) {
        let drafts = chunk.iter().map(|name| draft(name)).collect();
        futures_util::FutureExt::now_or_never(backplane.publish(drafts, None))
            .unwrap()
            .unwrap();
    }
    std::thread::sleep(ttl + Duration::from_millis(50));
    // A publisher all along the sweep: its worst wait is the stall.
    let sweeping = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let publisher = {
        let (backplane, sweeping) = (backplane.clone(), sweeping.clone());
        std::thread::spawn(move || {
            let mut worst = Duration::ZERO;
            while sweeping.load(std::sync::atomic::Ordering::Relaxed) {
                let started = Instant::now();
                publish(&backplane, "live");
                worst = worst.max(started.elapsed());
                std::thread::sleep(Duration::from_micros(100));
            }
            worst
        })
    };
    std::thread::sleep(Duration::from_millis(10));
    let started = Instant::now();
    let sweep = backplane.expire(Instant::now());
    let took = started.elapsed();
    sweeping.store(false, std::sync::atomic::Ordering::Relaxed);
    let stall = publisher.join().unwrap();
    eprintln!(
        "{TOPICS} topics expired in {took:?}, {} holds of at most {} topics; longest publish during the sweep {stall:?}",
        sweep.holds, sweep.largest_hold
    );
    assert_eq!(sweep.forgotten, TOPICS, "every expired topic is forgotten");
    assert!(sweep.largest_hold <= EXPIRY_BATCH, "{sweep:?}");
    assert!(sweep.holds > TOPICS / EXPIRY_BATCH, "{sweep:?}");
    assert_eq!(backplane.topic_count(), 1, "only the live topic is left");
    assert_consistent(&backplane);
    assert!(!history(&backplane, "t.0", 0).complete);
}

fn keyed(backplane: &MemoryBackplane, topic: &str, record: u8, fingerprint: u8) -> Publication {
    let once = Idempotency {
        record: [record; 32],
        fingerprint: [fingerprint; 32],
    };
    futures_util::FutureExt::now_or_never(backplane.publish(vec![draft(topic)], Some(once)))
        .unwrap()
        .unwrap()
}

#[test]
fn a_keyed_publish_is_published_once_and_its_retry_gets_its_ids() {
    let backplane = backplane(100, Duration::from_secs(60));
    let Publication::Accepted(first) = keyed(&backplane, "t", 1, 1) else {
        panic!("the first publish with a key publishes");
    };
    let Publication::Replayed(replayed) = keyed(&backplane, "t", 1, 1) else {
        panic!("a retry is answered from the record");
    };
    assert_eq!(replayed.ids().collect::<Vec<_>>(), vec![first[0].id]);
    assert!(matches!(
        keyed(&backplane, "t", 1, 2),
        Publication::KeyReused
    ));
    // Nothing was published but the first.
    assert_eq!(history(&backplane, "t", 0).events.len(), 1);
    assert!(matches!(
        keyed(&backplane, "t", 2, 1),
        Publication::Accepted(_)
    ));
    assert_eq!(backplane.idempotency_records(), 2);
}

#[test]
fn threads_racing_on_one_key_publish_once() {
    let backplane = Arc::new(backplane(1_000, Duration::from_secs(60)));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let backplane = backplane.clone();
            std::thread::spawn(move || keyed(&backplane, "t", 7, 7))
        })
        .collect();
    let outcomes: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let accepted = outcomes
        .iter()
        .filter(|outcome| matches!(outcome, Publication::Accepted(_)))
        .count();
    assert_eq!(accepted, 1, "{outcomes:?}");
    assert_eq!(history(&backplane, "t", 0).events.len(), 1);
}

#[test]
fn the_memory_backplane_keeps_at_most_its_cap_of_keys() {
    let backplane = backplane(100, Duration::from_secs(60)).with_idempotency(IdempotencyLimits {
        window: Duration::from_secs(60),
        max_keys: 2,
    });
    for key in 1..=3 {
        assert!(matches!(
            keyed(&backplane, "t", key, key),
            Publication::Accepted(_)
        ));
    }
    assert_eq!(backplane.idempotency_records(), 2);
    // The oldest key was dropped: its retry publishes again.
    assert!(matches!(
        keyed(&backplane, "t", 1, 1),
        Publication::Accepted(_)
    ));
    assert!(matches!(
        keyed(&backplane, "t", 3, 3),
        Publication::Replayed(_)
    ));
}
