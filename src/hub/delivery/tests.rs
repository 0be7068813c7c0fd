//! Delivery driven without HTTP: a hub over a scripted backplane whose
//! history, fan-out and epoch the test controls one step at a time, so the
//! cases a real backplane produces only under races (an event in history
//! but not yet fanned out, a lost feed, a history that started over) are
//! each one line.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::future::{self, BoxFuture};
use futures_util::{FutureExt, Stream, StreamExt};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::{MAX_BATCH_BYTES, REPLAY_PAGE_BYTES};
use crate::backplane::presence::Presence;
use crate::backplane::{Backplane, BackplaneError, FanOut, History, PageLimit};
use crate::hub::testing::{self, draft};
use crate::hub::{Hub, HubSettings};
use crate::model::{Event, EventDraft, EventId, ResumePoint, TopicName};

/// A backplane whose every step is explicit: `append` assigns an id and
/// stores the event without fanning it out (an event still in flight to
/// this replica), `hand_over` fans out, `restart_empty` starts a new epoch.
struct Scripted {
    fan_out: Arc<dyn FanOut>,
    /// Events kept per topic (older ones are evicted and reported).
    size: usize,
    state: Mutex<ScriptedState>,
    presence: Presence,
}

#[derive(Default)]
struct ScriptedState {
    /// 0 until the backplane has "reached its server" (see `Scripted::unpositioned`).
    epoch: u64,
    last_seq: u64,
    topics: HashMap<TopicName, (Vec<Arc<Event>>, u64)>,
    /// How many of the next history reads fail (a Redis read timing out).
    failing_reads: usize,
    /// False: the backplane says it is down (a Redis that stopped answering).
    available: bool,
    /// History reads so far, and the events they returned.
    reads: usize,
    events_read: usize,
}

impl Scripted {
    fn new(fan_out: Arc<dyn FanOut>, size: usize) -> Self {
        fan_out.resync(EventId::new(1, 0));
        Self {
            fan_out,
            size,
            presence: Presence::local(),
            state: Mutex::new(ScriptedState {
                epoch: 1,
                available: true,
                ..ScriptedState::default()
            }),
        }
    }

    /// A backplane that hasn't reached its server yet, as a fresh Redis
    /// replica in its first moments: no resync, no epoch, `last_id` fails.
    /// `reach` ends that, in `epoch`, with what other replicas published.
    fn unpositioned(fan_out: Arc<dyn FanOut>, size: usize) -> Self {
        Self {
            fan_out,
            size,
            presence: Presence::local(),
            state: Mutex::new(ScriptedState {
                available: true,
                ..ScriptedState::default()
            }),
        }
    }

    /// The first connect: the epoch is known, then the live queues resync.
    fn reach(&self, epoch: u64) {
        self.state.lock().unwrap().epoch = epoch;
        self.resync();
    }

    fn append(&self, topic: &str) -> Arc<Event> {
        self.append_sized(topic, 0)
    }

    /// An event whose data is its id padded to at least `bytes`.
    fn append_sized(&self, topic: &str, bytes: usize) -> Arc<Event> {
        let mut state = self.state.lock().unwrap();
        state.last_seq += 1;
        let id = EventId::new(state.epoch, state.last_seq);
        let data = format!("{:-<bytes$}", id.to_string());
        let event = Event::accept(draft(topic, &data), id, SystemTime::now());
        let (events, evicted_through) = state.topics.entry(event.topic.clone()).or_default();
        events.push(event.clone());
        if events.len() > self.size {
            *evicted_through = events.remove(0).id.seq;
        }
        event
    }

    fn hand_over(&self, events: &[Arc<Event>]) {
        self.fan_out.fan_out(events);
    }

    fn publish(&self, topic: &str) -> Arc<Event> {
        let event = self.append(topic);
        self.hand_over(std::slice::from_ref(&event));
        event
    }

    /// Resync the live queues at the newest id (as after a reconnect).
    fn resync(&self) {
        let state = self.state.lock().unwrap();
        self.fan_out
            .resync(EventId::new(state.epoch, state.last_seq));
    }

    fn restart_empty(&self, epoch: u64) {
        *self.state.lock().unwrap() = ScriptedState {
            epoch,
            available: true,
            ..ScriptedState::default()
        };
        self.fan_out.resync(EventId::new(epoch, 0));
    }
}

impl Backplane for Scripted {
    fn presence(&self) -> &Presence {
        &self.presence
    }

    fn epoch(&self) -> u64 {
        self.state.lock().unwrap().epoch
    }

    fn last_id(&self) -> BoxFuture<'_, Result<EventId, BackplaneError>> {
        let state = self.state.lock().unwrap();
        if state.epoch == 0 {
            return Box::pin(future::ready(Err(BackplaneError::unavailable(
                "not connected yet",
                "scripted",
            ))));
        }
        Box::pin(future::ready(Ok(EventId::new(state.epoch, state.last_seq))))
    }

    fn publish(
        &self,
        _: Vec<EventDraft>,
        _: Option<crate::model::Idempotency>,
    ) -> BoxFuture<'_, Result<crate::backplane::Publication, BackplaneError>> {
        unimplemented!("the tests publish through `Scripted` directly")
    }

    fn history<'a>(
        &'a self,
        topic: &'a TopicName,
        after_seq: u64,
        limit: PageLimit,
    ) -> BoxFuture<'a, Result<History, BackplaneError>> {
        let mut state = self.state.lock().unwrap();
        state.reads += 1;
        if state.failing_reads > 0 {
            state.failing_reads -= 1;
            return Box::pin(future::ready(Err(BackplaneError::unavailable(
                "history read timed out",
                "scripted",
            ))));
        }
        let (events, evicted_through) = state.topics.get(topic).cloned().unwrap_or_default();
        let mut after = events
            .into_iter()
            .filter(|e| e.id.seq > after_seq)
            .peekable();
        let mut page = Vec::new();
        let mut bytes = 0;
        while !limit.is_full(page.len(), bytes)
            && let Some(event) = after.next()
        {
            bytes += event.frame.len();
            page.push(event);
        }
        let next_after = after
            .peek()
            .is_some()
            .then(|| page.last().map_or(after_seq, |e| e.id.seq));
        state.events_read += page.len();
        Box::pin(future::ready(Ok(History {
            epoch: state.epoch,
            events: page,
            complete: after_seq >= evicted_through,
            next_after,
        })))
    }

    fn is_available(&self) -> bool {
        self.state.lock().unwrap().available
    }

    fn run(self: Arc<Self>, stop: CancellationToken) -> BoxFuture<'static, ()> {
        Box::pin(async move { stop.cancelled().await })
    }
}

fn hub(queue: usize, size: usize) -> (Hub, Arc<Scripted>) {
    hub_with(queue, size, Scripted::new)
}

fn hub_with(
    queue: usize,
    size: usize,
    backplane: impl FnOnce(Arc<dyn FanOut>, usize) -> Scripted,
) -> (Hub, Arc<Scripted>) {
    let settings = HubSettings {
        queue,
        ..testing::settings()
    };
    testing::hub_over(settings, |fan_out| backplane(fan_out, size))
}

type Frames = Pin<Box<dyn Stream<Item = Bytes> + Send>>;

fn subscribe(hub: &Hub, topics: &[&str], resume: ResumePoint) -> Frames {
    Box::pin(
        hub.subscribe(testing::request(topics, resume))
            .unwrap()
            .into_frames(),
    )
}

/// What the stream has ready now, as text (every backplane call here is
/// ready at once, so nothing is left pending behind it).
fn ready_text(frames: &mut Frames) -> String {
    let mut text = String::new();
    while let Some(Some(chunk)) = frames.next().now_or_never() {
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    text
}

/// Event ids and gap frames (as their JSON data), in stream order.
#[derive(Debug, PartialEq)]
enum Seen {
    Id(String),
    Gap(Value),
}

fn seen(text: &str) -> Vec<Seen> {
    let mut seen = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if let Some(id) = line.strip_prefix("id: ") {
            seen.push(Seen::Id(id.to_owned()));
        } else if line == "event: gap" {
            let data = lines.next().unwrap().strip_prefix("data: ").unwrap();
            seen.push(Seen::Gap(serde_json::from_str(data).unwrap()));
        }
    }
    seen
}

fn ids(events: &[Arc<Event>]) -> Vec<Seen> {
    events.iter().map(|e| Seen::Id(e.id.to_string())).collect()
}

fn gap_reason(seen: &Seen) -> &str {
    match seen {
        Seen::Gap(info) => info["reason"].as_str().unwrap(),
        Seen::Id(id) => panic!("expected a gap frame, got event {id}"),
    }
}

#[tokio::test]
async fn a_resume_replays_history_then_goes_live_without_duplicates() {
    let (hub, backplane) = hub(16, 100);
    let published: Vec<_> = (0..5).map(|_| backplane.publish("t")).collect();
    let mut frames = subscribe(&hub, &["t"], ResumePoint::After(published[1].id));
    assert_eq!(seen(&ready_text(&mut frames)), ids(&published[2..]));

    let live = backplane.publish("t");
    // A duplicate hand-over (as after an overlap of history and live feed).
    backplane.hand_over(&published[3..]);
    assert_eq!(seen(&ready_text(&mut frames)), ids(&[live]));
}

#[tokio::test]
async fn several_topics_come_in_id_order_from_history_and_live_queues() {
    let (hub, backplane) = hub(16, 100);
    let published: Vec<_> = (0..6)
        .map(|n| backplane.publish(if n % 2 == 0 { "a" } else { "b" }))
        .collect();
    let mut frames = subscribe(&hub, &["a", "b"], ResumePoint::After(published[1].id));
    assert_eq!(seen(&ready_text(&mut frames)), ids(&published[2..]));

    // One hand-over of a batch across topics: b's queue is read after a's,
    // yet delivery follows the ids.
    let batch = [
        backplane.append("b"),
        backplane.append("a"),
        backplane.append("b"),
    ];
    backplane.hand_over(&batch);
    assert_eq!(seen(&ready_text(&mut frames)), ids(&batch));
}

#[tokio::test]
async fn an_id_assigned_elsewhere_and_not_yet_here_resumes_without_gap_or_duplicate() {
    let (hub, backplane) = hub(16, 100);
    // Published on another replica: in history, not yet in this one's queues.
    let in_flight = backplane.append("t");
    let mut frames = subscribe(&hub, &["t"], ResumePoint::After(in_flight.id));
    assert_eq!(seen(&ready_text(&mut frames)), vec![], "nothing to replay");

    backplane.hand_over(std::slice::from_ref(&in_flight));
    let next = backplane.publish("t");
    assert_eq!(seen(&ready_text(&mut frames)), ids(&[next]));
}

#[tokio::test]
async fn an_id_beyond_anything_assigned_is_not_trusted() {
    let (hub, backplane) = hub(16, 100);
    let held = backplane.publish("t");
    let future = EventId::new(held.id.epoch, held.id.seq + 10);
    let mut frames = subscribe(&hub, &["t"], ResumePoint::After(future));
    let seen = seen(&ready_text(&mut frames));
    assert_eq!(gap_reason(&seen[0]), "unknown_epoch");
    assert_eq!(seen[1..], ids(&[held]));
}

#[tokio::test]
async fn a_subscriber_past_its_queue_catches_up_from_history_without_a_gap() {
    let (hub, backplane) = hub(4, 100);
    let mut frames = subscribe(&hub, &["t"], ResumePoint::Live);
    ready_text(&mut frames);
    let published: Vec<_> = (0..20).map(|_| backplane.publish("t")).collect();
    assert_eq!(seen(&ready_text(&mut frames)), ids(&published));
}

#[tokio::test]
async fn a_subscriber_past_its_queue_and_history_gets_one_gap_frame() {
    let (hub, backplane) = hub(4, 5);
    let mut frames = subscribe(&hub, &["a", "b"], ResumePoint::Live);
    ready_text(&mut frames);
    let first = backplane.publish("a");
    assert_eq!(
        seen(&ready_text(&mut frames)),
        ids(std::slice::from_ref(&first))
    );
    let published: Vec<_> = (0..20).map(|_| backplane.publish("a")).collect();
    let seen = seen(&ready_text(&mut frames));
    assert_eq!(gap_reason(&seen[0]), "lagged");
    let Seen::Gap(info) = &seen[0] else {
        unreachable!()
    };
    assert_eq!(info["last_event_id"], first.id.to_string());
    assert_eq!(info["resumes_at"], published[15].id.to_string());
    assert_eq!(seen[1..], ids(&published[15..]));
}

#[tokio::test]
async fn a_resync_replays_what_the_live_queues_never_got() {
    let (hub, backplane) = hub(16, 100);
    let mut single = subscribe(&hub, &["a"], ResumePoint::Live);
    let mut multi = subscribe(&hub, &["a", "b"], ResumePoint::Live);
    ready_text(&mut single);
    ready_text(&mut multi);
    let delivered = backplane.publish("a");
    assert_eq!(
        seen(&ready_text(&mut single)),
        ids(std::slice::from_ref(&delivered))
    );
    assert_eq!(seen(&ready_text(&mut multi)), ids(&[delivered]));

    // The feed was cut: these reached history but not this replica.
    let missed = [
        backplane.append("a"),
        backplane.append("b"),
        backplane.append("a"),
    ];
    backplane.resync();
    // The feed is back; one late copy of a covered event arrives as well.
    backplane.hand_over(&missed[2..]);
    let after = backplane.publish("a");

    let a_only = [missed[0].clone(), missed[2].clone(), after.clone()];
    assert_eq!(seen(&ready_text(&mut single)), ids(&a_only));
    let all = [
        missed[0].clone(),
        missed[1].clone(),
        missed[2].clone(),
        after,
    ];
    assert_eq!(seen(&ready_text(&mut multi)), ids(&all));
}

#[tokio::test]
async fn a_history_that_starts_over_gives_each_stream_one_gap_then_the_new_epoch() {
    let (hub, backplane) = hub(16, 100);
    let mut single = subscribe(&hub, &["a"], ResumePoint::Live);
    let mut multi = subscribe(&hub, &["a", "b"], ResumePoint::Live);
    ready_text(&mut single);
    ready_text(&mut multi);
    let old: Vec<_> = (0..5).map(|_| backplane.publish("a")).collect();
    assert_eq!(seen(&ready_text(&mut single)), ids(&old));
    assert_eq!(seen(&ready_text(&mut multi)), ids(&old));

    backplane.restart_empty(7);
    // The new epoch counts from 1 again, below every old cursor.
    let new = [backplane.publish("b"), backplane.publish("a")];
    for (frames, expected) in [
        (&mut single, vec![new[1].clone()]),
        (&mut multi, new.to_vec()),
    ] {
        let seen = seen(&ready_text(frames));
        assert_eq!(gap_reason(&seen[0]), "epoch_changed");
        let Seen::Gap(info) = &seen[0] else {
            unreachable!()
        };
        assert_eq!(info["last_event_id"], old[4].id.to_string());
        assert_eq!(seen[1..], ids(&expected), "one gap, then the new epoch");
    }
    assert_eq!(
        hub.render_metrics(false)
            .lines()
            .find(|l| l.starts_with("ssehub_gap_frames_total{reason=\"epoch_changed\"}")),
        Some("ssehub_gap_frames_total{reason=\"epoch_changed\"} 2")
    );
}

#[tokio::test]
async fn a_resume_before_the_backplane_is_reached_waits_for_it_without_gap_or_loss() {
    let (hub, backplane) = hub_with(16, 100, Scripted::unpositioned);
    // What other replicas published while this one was starting: the
    // client saw the first two on a replica that has since drained.
    let epoch = 7;
    backplane.state.lock().unwrap().epoch = epoch;
    let earlier: Vec<_> = (0..4).map(|_| backplane.append("t")).collect();
    backplane.state.lock().unwrap().epoch = 0;
    let mut frames = subscribe(&hub, &["t"], ResumePoint::After(earlier[1].id));
    assert_eq!(seen(&ready_text(&mut frames)), vec![], "nothing judged yet");

    backplane.reach(epoch);
    assert_eq!(seen(&ready_text(&mut frames)), ids(&earlier[2..]));
    let live = backplane.publish("t");
    assert_eq!(seen(&ready_text(&mut frames)), ids(&[live]));
}

#[tokio::test]
async fn several_topics_resumed_before_the_backplane_is_reached_come_in_id_order() {
    let (hub, backplane) = hub_with(16, 100, Scripted::unpositioned);
    let epoch = 9;
    backplane.state.lock().unwrap().epoch = epoch;
    let earlier: Vec<_> = (0..6)
        .map(|n| backplane.append(if n % 2 == 0 { "a" } else { "b" }))
        .collect();
    backplane.state.lock().unwrap().epoch = 0;
    let mut frames = subscribe(&hub, &["a", "b"], ResumePoint::After(earlier[2].id));
    assert_eq!(seen(&ready_text(&mut frames)), vec![]);

    backplane.reach(epoch);
    assert_eq!(seen(&ready_text(&mut frames)), ids(&earlier[3..]));
}

/// Reads the stream until it has shown `count` events or gap frames.
async fn next_seen(frames: &mut Frames, count: usize) -> Vec<Seen> {
    let mut text = String::new();
    // Paused time: a stream that waits for nothing fails here at once.
    let read = async {
        while seen(&text).len() < count {
            let chunk = frames.next().await.expect("the stream ended");
            text.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    };
    if tokio::time::timeout(Duration::from_secs(60), read)
        .await
        .is_err()
    {
        panic!("after 60 s the stream had shown only {:?}", seen(&text));
    }
    seen(&text)
}

#[tokio::test(start_paused = true)]
async fn a_history_read_that_fails_for_a_moment_is_retried_and_loses_nothing() {
    let (hub, backplane) = hub(16, 100);
    let earlier: Vec<_> = (0..4).map(|_| backplane.publish("t")).collect();
    backplane.state.lock().unwrap().failing_reads = 2;
    let mut frames = subscribe(&hub, &["t"], ResumePoint::After(earlier[0].id));
    assert_eq!(
        next_seen(&mut frames, 3).await,
        ids(&earlier[1..]),
        "no gap"
    );
    let live = backplane.publish("t");
    assert_eq!(seen(&ready_text(&mut frames)), ids(&[live]));
}

#[tokio::test(start_paused = true)]
async fn a_history_that_stays_unreadable_is_announced_with_a_gap() {
    let (hub, backplane) = hub(16, 100);
    let earlier: Vec<_> = (0..4).map(|_| backplane.publish("t")).collect();
    backplane.state.lock().unwrap().failing_reads = usize::MAX;
    let mut frames = subscribe(&hub, &["t"], ResumePoint::After(earlier[0].id));
    let seen = next_seen(&mut frames, 1).await;
    assert_eq!(gap_reason(&seen[0]), "history_unavailable");
    backplane.state.lock().unwrap().failing_reads = 0;
    let live = backplane.publish("t");
    assert_eq!(next_seen(&mut frames, 1).await, ids(&[live]));
}

// Replays read history a page at a time, merged by id as the stream is
// written.

/// `count` events of `bytes` each, spread over `topics` in a shuffled order
/// (a fixed seed: the same interleaving every run).
fn interleaved(
    backplane: &Scripted,
    topics: &[&str],
    count: usize,
    bytes: usize,
) -> Vec<Arc<Event>> {
    let mut rng = fastrand::Rng::with_seed(18);
    let events = (0..count)
        .map(|_| backplane.append_sized(topics[rng.usize(..topics.len())], bytes))
        .collect();
    // This replica's position: they are all in history, none in a queue.
    backplane.resync();
    events
}

fn concrete_frames(
    hub: &Hub,
    topics: &[&str],
    resume: ResumePoint,
) -> crate::hub::subscription::SubscriptionStream {
    match hub.subscribe(testing::request(topics, resume)).unwrap() {
        crate::hub::Admission::Open(subscription) => subscription.into_frames(),
        crate::hub::Admission::Shed(_) => panic!("shed"),
    }
}

#[tokio::test]
async fn a_replay_over_many_pages_and_topics_comes_in_id_order_without_loss() {
    let (hub, backplane) = hub(16, 10_000);
    let topics = ["a", "b", "c", "d"];
    let published = interleaved(&backplane, &topics, 3_000, 0);
    let mut frames = subscribe(&hub, &topics, ResumePoint::After(published[9].id));
    assert_eq!(seen(&ready_text(&mut frames)), ids(&published[10..]));
    let reads = backplane.state.lock().unwrap().reads;
    assert!(
        reads > 2 * topics.len(),
        "{reads} reads: the pages were never bounded"
    );

    let live = backplane.publish("c");
    assert_eq!(seen(&ready_text(&mut frames)), ids(&[live]));
}

#[tokio::test]
async fn one_topic_of_many_pages_is_replayed_whole() {
    let (hub, backplane) = hub(16, 10_000);
    let published = interleaved(&backplane, &["t"], 1_000, 0);
    let mut frames = subscribe(&hub, &["t"], ResumePoint::Foreign);
    let seen = seen(&ready_text(&mut frames));
    assert_eq!(gap_reason(&seen[0]), "unknown_epoch");
    assert_eq!(seen[1..], ids(&published));
}

#[tokio::test]
async fn a_replay_reads_history_only_as_fast_as_the_stream_is_written() {
    let (hub, backplane) = hub(16, 10_000);
    let topics = ["a", "b", "c", "d"];
    let published = interleaved(&backplane, &topics, 4_000, 1_000);
    let history_bytes: usize = published.iter().map(|e| e.frame.len()).sum();
    let mut frames = Box::pin(concrete_frames(&hub, &topics, ResumePoint::Foreign));
    let prelude = frames.next().await.unwrap();
    assert!(prelude.starts_with(b"retry: "));

    let mut written = 0;
    for _ in 0..5 {
        let chunk = frames.next().await.unwrap();
        assert!(
            chunk.len() <= MAX_BATCH_BYTES + 2 * 1_024,
            "one write is {} bytes",
            chunk.len()
        );
        written += chunk.len();
        // Not polled again yet: what the stream holds is bounded.
        let (staged, pages) = frames.held_bytes();
        assert_eq!(staged, 0, "a write is made only once the last one is taken");
        assert!(
            pages <= REPLAY_PAGE_BYTES + topics.len() * 2 * 1_024,
            "{pages} bytes of pages"
        );
    }
    let events_read = backplane.state.lock().unwrap().events_read;
    let read_bytes = events_read * published[0].frame.len();
    println!(
        "history {history_bytes} B; after {written} B written, {read_bytes} B read from history"
    );
    assert!(
        read_bytes <= written + REPLAY_PAGE_BYTES + topics.len() * 2 * 1_024,
        "{read_bytes} bytes read from history for {written} bytes written"
    );
}

#[tokio::test]
async fn events_evicted_while_a_replay_runs_are_announced_where_they_were() {
    let size = 400;
    let (hub, backplane) = hub(16, size);
    let topics = ["a", "b"];
    let published = interleaved(&backplane, &topics, 600, 1_000);
    let mut frames = Box::pin(concrete_frames(
        &hub,
        &topics,
        ResumePoint::After(published[0].id),
    ));
    frames.next().await.unwrap();
    let mut text = String::new();
    let first = frames.next().await.unwrap();
    text.push_str(std::str::from_utf8(&first).unwrap());
    let before = seen(&text);
    assert!(!before.is_empty() && !before.iter().any(|s| matches!(s, Seen::Gap(_))));

    // Each topic's history rolls over while the replay is under way: what
    // it hasn't read yet of the oldest events is gone.
    for _ in 0..size * 3 / 4 {
        backplane.append("a");
        backplane.append("b");
    }
    while let Some(Some(chunk)) = frames.next().now_or_never() {
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    // Each topic lost its oldest unread events at its own point: a gap
    // frame there, between the events around it.
    let seen = seen(&text);
    let gaps: Vec<_> = (0..seen.len())
        .filter(|&at| matches!(seen[at], Seen::Gap(_)))
        .collect();
    assert!(!gaps.is_empty(), "no gap frame");
    for at in gaps {
        let Seen::Gap(info) = &seen[at] else {
            unreachable!()
        };
        assert_eq!(info["reason"], "history_exceeded");
        let Seen::Id(last_before) = &seen[at - 1] else {
            panic!("an event before the gap")
        };
        assert_eq!(&info["last_event_id"], last_before);
        match seen.get(at + 1) {
            Some(Seen::Id(resumes_at)) => assert_eq!(&info["resumes_at"], resumes_at),
            next => panic!("an event after the gap, not {next:?}"),
        }
    }
    // In id order, no duplicates, and nothing after the replay's watermark
    // (those were never handed to the live queues here).
    let delivered: Vec<_> = seen
        .iter()
        .filter_map(|s| match s {
            Seen::Id(id) => Some(EventId::parse(id).unwrap()),
            Seen::Gap(_) => None,
        })
        .collect();
    assert!(delivered.windows(2).all(|w| w[0] < w[1]), "out of order");
    assert_eq!(delivered.last(), Some(&published[599].id));
    assert!(delivered.len() < 599, "some events were evicted");
}

#[tokio::test(start_paused = true)]
async fn a_resume_while_the_backplane_is_down_keeps_its_place_until_the_resync() {
    let (hub, backplane) = hub(16, 100);
    let earlier: Vec<_> = (0..4).map(|_| backplane.publish("t")).collect();
    {
        let mut state = backplane.state.lock().unwrap();
        state.failing_reads = usize::MAX;
        state.available = false;
    }
    let mut frames = subscribe(&hub, &["t"], ResumePoint::After(earlier[0].id));
    frames.next().await.unwrap();
    let waited = tokio::time::timeout(Duration::from_secs(30), frames.next()).await;
    assert!(
        waited.is_err(),
        "nothing to send, not even a gap: {waited:?}"
    );

    {
        let mut state = backplane.state.lock().unwrap();
        state.failing_reads = 0;
        state.available = true;
    }
    // The backplane's reconnect resyncs the live queues.
    backplane.resync();
    assert_eq!(
        next_seen(&mut frames, 3).await,
        ids(&earlier[1..]),
        "no gap"
    );
    let live = backplane.publish("t");
    assert_eq!(next_seen(&mut frames, 1).await, ids(&[live]));
}

#[tokio::test(start_paused = true)]
async fn a_live_event_after_a_stalled_replay_comes_after_what_history_owed() {
    let (hub, backplane) = hub(16, 100);
    let earlier: Vec<_> = (0..6)
        .map(|n| backplane.publish(if n % 2 == 0 { "a" } else { "b" }))
        .collect();
    {
        let mut state = backplane.state.lock().unwrap();
        state.failing_reads = usize::MAX;
        state.available = false;
    }
    let mut frames = subscribe(&hub, &["a", "b"], ResumePoint::After(earlier[1].id));
    frames.next().await.unwrap();
    let waited = tokio::time::timeout(Duration::from_secs(30), frames.next()).await;
    assert!(
        waited.is_err(),
        "nothing to send, not even a gap: {waited:?}"
    );

    {
        let mut state = backplane.state.lock().unwrap();
        state.failing_reads = 0;
        state.available = true;
    }
    let live = backplane.publish("a");
    let mut expected = earlier[2..].to_vec();
    expected.push(live);
    assert_eq!(next_seen(&mut frames, 5).await, ids(&expected));
}

#[tokio::test]
async fn a_burst_of_live_events_goes_out_one_bounded_write_at_a_time() {
    let (hub, backplane) = hub(64, 100);
    for topics in [&["a"][..], &["a", "b"][..]] {
        let mut frames = Box::pin(concrete_frames(&hub, topics, ResumePoint::Live));
        frames.next().await.unwrap();
        let burst: Vec<_> = (0..64)
            .map(|n| {
                let event = backplane.append_sized(topics[n % topics.len()], 4_096);
                backplane.hand_over(std::slice::from_ref(&event));
                event
            })
            .collect();
        let mut text = String::new();
        while seen(&text).len() < burst.len() {
            let chunk = frames.next().await.unwrap();
            assert!(
                chunk.len() <= MAX_BATCH_BYTES + 4_200,
                "one write is {} bytes",
                chunk.len()
            );
            assert_eq!(frames.held_bytes().0, 0, "one write at a time");
            text.push_str(std::str::from_utf8(&chunk).unwrap());
        }
        assert_eq!(seen(&text), ids(&burst), "{topics:?}");
    }
}

/// Routes an event by its sequence number: even ones to key 2, multiples
/// of 3 to key 3 (6 to both).
struct BySeq;

impl crate::hub::LiveRouter for BySeq {
    fn routes(&self, event: &Event, route: &mut dyn FnMut(u64)) {
        for key in [2, 3] {
            if event.id.seq.is_multiple_of(key) {
                route(key);
            }
        }
    }
}

fn routed(hub: &Hub, keys: &[u64], resume: ResumePoint) -> Frames {
    let request = crate::hub::SubscribeRequest {
        live_routes: Some(crate::hub::LiveRoutes {
            topic: TopicName::parse("t").unwrap(),
            keys: keys.to_vec(),
            router: Arc::new(BySeq),
        }),
        ..testing::request(&["t"], resume)
    };
    Box::pin(hub.subscribe(request).unwrap().into_frames())
}

#[tokio::test]
async fn a_routed_subscription_is_woken_only_by_its_keys_events_each_once_in_order() {
    let (hub, backplane) = hub(16, 100);
    let mut whole = subscribe(&hub, &["t"], ResumePoint::Live);
    let mut even = routed(&hub, &[2], ResumePoint::Live);
    let mut both = routed(&hub, &[2, 3], ResumePoint::Live);
    ready_text(&mut whole);
    ready_text(&mut even);
    ready_text(&mut both);
    let published: Vec<_> = (0..7).map(|_| backplane.publish("t")).collect();
    let with = |keep: &dyn Fn(u64) -> bool| {
        let kept: Vec<_> = published
            .iter()
            .filter(|event| keep(event.id.seq))
            .cloned()
            .collect();
        ids(&kept)
    };
    assert_eq!(seen(&ready_text(&mut whole)), ids(&published));
    assert_eq!(seen(&ready_text(&mut even)), with(&|seq| seq % 2 == 0));
    // Event 6 comes on both of its queues and goes out once.
    assert_eq!(
        seen(&ready_text(&mut both)),
        with(&|seq| seq % 2 == 0 || seq % 3 == 0)
    );
    // The queues of the keys go when their subscribers do.
    drop((even, both));
    assert_eq!(hub.inner.live_queues.live_topics(), 1);
}

#[tokio::test]
async fn a_routed_subscription_resumes_from_the_whole_topics_history() {
    let (hub, backplane) = hub(16, 100);
    let published: Vec<_> = (0..6).map(|_| backplane.publish("t")).collect();
    // History is the topic's, whole: what the routes leave out live the
    // subscription's filter decides on (none here), as on a replay.
    let mut frames = routed(&hub, &[3], ResumePoint::After(published[0].id));
    assert_eq!(seen(&ready_text(&mut frames)), ids(&published[1..]));
    let live: Vec<_> = (0..3).map(|_| backplane.publish("t")).collect();
    let threes: Vec<_> = live
        .iter()
        .filter(|event| event.id.seq % 3 == 0)
        .cloned()
        .collect();
    assert_eq!(seen(&ready_text(&mut frames)), ids(&threes));
}

/// The waker of a live subscriber that waits on topic `t`. A fan-out wakes
/// it right after its send, before it stores where the queues stand; then,
/// on another thread, a client resumes on `t` after `after` and reads what
/// its stream has ready: what a resume served by another worker thread
/// does while the fan-out's thread is preempted there (or still waking a
/// long queue's tasks).
struct ResumeOnWake {
    hub: Hub,
    after: EventId,
    runtime: tokio::runtime::Handle,
    /// The resumed stream, and what it had ready during the fan-out.
    resumed: Mutex<Option<(Frames, String)>>,
}

impl std::task::Wake for ResumeOnWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if self.resumed.lock().unwrap().is_some() {
            return;
        }
        std::thread::scope(|scope| {
            scope.spawn(|| {
                let _runtime = self.runtime.enter();
                let mut frames = subscribe(&self.hub, &["t"], ResumePoint::After(self.after));
                let text = ready_text(&mut frames);
                *self.resumed.lock().unwrap() = Some((frames, text));
            });
        });
    }
}

#[tokio::test]
async fn a_resume_that_attaches_while_an_event_is_fanned_out_gets_it() {
    let (hub, backplane) = hub(16, 100);
    let seen_before = backplane.publish("t");
    let mut waiting = subscribe(&hub, &["t"], ResumePoint::Live);
    ready_text(&mut waiting);
    let resume = Arc::new(ResumeOnWake {
        hub: hub.clone(),
        after: seen_before.id,
        runtime: tokio::runtime::Handle::current(),
        resumed: Mutex::new(None),
    });
    let waker = std::task::Waker::from(resume.clone());
    let mut context = std::task::Context::from_waker(&waker);
    assert!(waiting.as_mut().poll_next(&mut context).is_pending());

    let during = backplane.append("t");
    backplane.hand_over(std::slice::from_ref(&during));
    let (mut resumed, mut text) = resume
        .resumed
        .lock()
        .unwrap()
        .take()
        .expect("the fan-out woke the waiting subscriber");
    let after = backplane.publish("t");
    text.push_str(&ready_text(&mut resumed));
    // Missed on its queue (attached after the send), so owed by its replay.
    assert_eq!(seen(&text), ids(&[during, after]));
}
