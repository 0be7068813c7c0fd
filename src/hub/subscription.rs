//! One subscriber's stream of SSE bytes: resume from history, then live
//! events, heartbeats in silence, lag recovery, and a clean end on drain.
//!
//! The stream is polled by the connection's own task; there is no extra task
//! per subscriber, and an idle one costs a parked future and a queue cursor.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::FutureExt;
use futures_util::stream::{SelectAll, Stream, StreamExt};
use tokio::time::Instant;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_util::task::task_tracker::TaskTrackerToken;

use super::encoder::{self, HEARTBEAT};
use super::event::Event;
use super::event_id::{EventId, ResumePoint};
use super::observe::SubscriptionObserver;
use super::topic::TopicName;
use super::{Hub, SubscriberSeat};
use crate::metrics::{ReplayTrigger, SubscriptionEnd};

/// Most bytes gathered into one write. Large enough to carry a burst in one
/// syscall, small enough that one subscriber can't hold much memory.
const MAX_BATCH_BYTES: usize = 64 * 1024;
/// Share of the heartbeat interval by which a stream's heartbeat comes early,
/// picked at random per stream so that streams that went quiet together
/// don't all wake in the same tick.
const HEARTBEAT_JITTER: f64 = 0.2;
/// Deadline for timers that are disabled; far enough to never fire, near
/// enough not to overflow `Instant` arithmetic.
const FAR_FUTURE: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// An open subscription; turn it into bytes with [`Subscription::into_frames`].
pub struct Subscription {
    seat: SubscriberSeat,
    topics: Vec<TopicName>,
    feeds: LiveFeeds,
    resume: ResumePoint,
    /// Keeps the drain waiting until this stream has ended.
    stream_token: TaskTrackerToken,
}

/// Why the hub announced lost events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GapReason {
    /// The resume id is older than the history still held.
    HistoryExceeded,
    /// The resume id comes from another epoch (e.g. before a restart).
    UnknownEpoch,
    /// The subscriber fell behind its live queue and history.
    Lagged,
    /// History could not be read (backplane down).
    HistoryUnavailable,
}

impl GapReason {
    fn as_str(self) -> &'static str {
        match self {
            Self::HistoryExceeded => "history_exceeded",
            Self::UnknownEpoch => "unknown_epoch",
            Self::Lagged => "lagged",
            Self::HistoryUnavailable => "history_unavailable",
        }
    }
}

impl Subscription {
    pub(super) fn open(seat: SubscriberSeat, topics: Vec<TopicName>, resume: ResumePoint) -> Self {
        let hub = &seat.hub;
        let registry = hub.inner.registry.clone();
        let streams: Vec<_> = topics
            .iter()
            .map(|topic| BroadcastStream::new(registry.attach(topic)))
            .collect();
        let feeds = if streams.len() == 1 {
            Feeds::One(streams.into_iter().next().expect("one topic"))
        } else {
            Feeds::Many(futures_util::stream::select_all(streams))
        };
        let stream_token = hub.inner.lifecycle.stream_token();
        Self {
            feeds: LiveFeeds {
                feeds: Some(feeds),
                topics: topics.clone(),
                hub: hub.clone(),
            },
            seat,
            topics,
            resume,
            stream_token,
        }
    }

    /// The SSE bytes for this subscriber, ending on drain or when the hub
    /// goes away. Dropping the stream (client gone) releases everything.
    pub fn into_frames(self) -> impl Stream<Item = Bytes> + Send + 'static {
        let Subscription {
            seat,
            topics,
            feeds,
            resume,
            stream_token,
        } = self;
        let hub = seat.hub.clone();
        let mut delivery = Delivery {
            multi_topic: topics.len() > 1,
            observer: SubscriptionObserver::open(hub.metrics().clone(), &topics, &resume),
            topics,
            hub: hub.clone(),
            feeds,
            cursor: 0,
            held: Vec::new(),
            ready: Vec::new(),
            batch: BatchWriter::default(),
            outbox: VecDeque::new(),
        };
        async_stream::stream! {
            let _seat = seat;
            let _stream_token = stream_token;
            let settings = hub.settings();
            let lifecycle = hub.lifecycle();
            let prelude = encoder::stream_prelude(settings.retry);
            delivery.observer.wrote(prelude.len());
            yield prelude;

            delivery.start(resume).await;
            while let Some(chunk) = delivery.outbox.pop_front() {
                yield chunk;
            }

            let heartbeat = settings.heartbeat.map(|every| {
                every.saturating_sub(every.mul_f64(HEARTBEAT_JITTER * fastrand::f64()))
            });
            let mut last_write = Instant::now();
            let heartbeat_timer = tokio::time::sleep_until(last_write + heartbeat.unwrap_or(FAR_FUTURE));
            tokio::pin!(heartbeat_timer);
            let close_timer = tokio::time::sleep_until(last_write);
            tokio::pin!(close_timer);
            // Created once and kept across iterations: each registers with its
            // token one time, not once per event.
            let cut = lifecycle.cut().cancelled();
            tokio::pin!(cut);
            let closing_signal = lifecycle.closing().cancelled();
            tokio::pin!(closing_signal);
            let mut closing = false;

            loop {
                // The live feed comes first: when it has an event, nothing
                // else is polled, so the drain tokens (each a mutex to check)
                // are looked at once per wake-up, when the feed runs dry,
                // not once per event. Publishing stops before streams are
                // closed, so the feed can't starve the drain branches.
                let step = tokio::select! {
                    biased;
                    item = delivery.feeds.next() => Step::Live(item),
                    _ = &mut cut => Step::End(SubscriptionEnd::Cut),
                    _ = &mut closing_signal, if !closing => Step::CloseAt(lifecycle.close_slot()),
                    _ = &mut close_timer, if closing => Step::End(SubscriptionEnd::Drained),
                    _ = &mut heartbeat_timer, if heartbeat.is_some() => Step::Heartbeat,
                };
                match step {
                    Step::End(end) => {
                        delivery.observer.ended(end);
                        break;
                    }
                    Step::CloseAt(at) => {
                        closing = true;
                        close_timer.as_mut().reset(at);
                    }
                    Step::Live(None) => {
                        delivery.observer.ended(SubscriptionEnd::Drained);
                        break;
                    }
                    Step::Live(Some(item)) => {
                        delivery.on_live(item).await;
                        while let Some(chunk) = delivery.outbox.pop_front() {
                            yield chunk;
                        }
                        last_write = Instant::now();
                    }
                    Step::Heartbeat => {
                        // Re-armed lazily here rather than on every write,
                        // so busy streams never touch the timer.
                        let every = heartbeat.unwrap_or(FAR_FUTURE);
                        let now = Instant::now();
                        if now >= last_write + every {
                            delivery.observer.wrote(HEARTBEAT.len());
                            yield HEARTBEAT;
                            last_write = now;
                        }
                        heartbeat_timer.as_mut().reset(last_write + every);
                    }
                }
            }

            // Everything accepted before closing began is already in the
            // queues (closing waits for publishes under way): send it, then
            // tell the client when to come back.
            delivery.flush().await;
            while let Some(chunk) = delivery.outbox.pop_front() {
                yield chunk;
            }
            let hint = encoder::retry_hint(hub.jittered_retry());
            delivery.observer.wrote(hint.len());
            yield hint;
            // Ends the subscription (its span, its count, its queues) now,
            // not whenever the server drops the finished body.
            drop(delivery);
        }
    }
}

enum Step {
    Live(Option<Result<Arc<Event>, BroadcastStreamRecvError>>),
    Heartbeat,
    CloseAt(Instant),
    End(SubscriptionEnd),
}

/// The part of a subscriber that moves events from history and live queues
/// into frames, in id order, without duplicates. Its buffers live as long as
/// the subscription and are reused, so steady delivery allocates nothing.
struct Delivery {
    hub: Hub,
    topics: Vec<TopicName>,
    multi_topic: bool,
    feeds: LiveFeeds,
    /// Highest sequence number accounted for: delivered, or announced lost
    /// in a gap frame. Anything at or below it is skipped, which removes the
    /// overlap between history reads and live queues.
    cursor: u64,
    /// Several topics only: events that arrived ahead of the registry's
    /// watermark, held back until everything before them is visible so that
    /// delivery stays in id order across topics (one `Last-Event-ID` must
    /// describe the whole connection).
    held: Vec<Arc<Event>>,
    /// Several topics only: the events of one batch, to be sorted by id.
    ready: Vec<Arc<Event>>,
    batch: BatchWriter,
    /// Chunks ready to be written, in order; the stream yields them.
    outbox: VecDeque<Bytes>,
    /// This subscription's span, totals and metrics.
    observer: SubscriptionObserver,
}

impl Delivery {
    /// Replays history after the client's resume point.
    async fn start(&mut self, resume: ResumePoint) {
        let id = match resume {
            // Live only: the queues hold nothing from before we attached.
            ResumePoint::Live => return,
            ResumePoint::Foreign => {
                self.cursor = 0;
                return self.replay(None, GapReason::UnknownEpoch).await;
            }
            ResumePoint::After(id) => id,
        };
        // An id of this epoch beyond anything accepted can't be a real
        // position: trusting it would skip events silently.
        let ours = id.epoch == self.hub.backplane().epoch()
            && id.seq <= self.hub.inner.registry.watermark();
        if ours {
            self.cursor = id.seq;
            self.replay(Some(id), GapReason::HistoryExceeded).await
        } else {
            // Not our history: everything we hold is new to this client.
            self.cursor = 0;
            self.replay(Some(id), GapReason::UnknownEpoch).await
        }
    }

    /// Sends every event of the topics after `cursor` that history holds,
    /// preceded by a gap frame when history can't cover it all. Afterwards
    /// everything up to the registry's watermark is accounted for.
    async fn replay(&mut self, last_seen: Option<EventId>, reason: GapReason) {
        // Read before history: every event at or below it is in history or
        // was evicted (then reported); later ones arrive on the live queues.
        let watermark = self.hub.inner.registry.watermark();
        self.observer.replayed(match reason {
            GapReason::Lagged => ReplayTrigger::Lagged,
            _ => ReplayTrigger::Resume,
        });
        let backplane = self.hub.backplane().clone();
        let mut events = Vec::new();
        let mut gap = (reason == GapReason::UnknownEpoch).then_some(reason);
        for topic in &self.topics {
            match backplane.history(topic, self.cursor).await {
                Ok(history) => {
                    if !history.complete {
                        gap.get_or_insert(reason);
                    }
                    events.extend(history.events.into_iter().filter(|e| e.id.seq <= watermark));
                }
                Err(_) => {
                    gap.get_or_insert(GapReason::HistoryUnavailable);
                }
            }
        }
        if self.multi_topic {
            events.sort_unstable_by_key(|e| e.id.seq);
        }
        if let Some(reason) = gap {
            // invariant: no silent loss — the gap is announced before any
            // event that follows it.
            let resumes_at = events.first().map(|e| e.id);
            self.observer.gap(reason.as_str(), events.first());
            self.batch
                .push(&encoder::gap_frame(reason.as_str(), last_seen, resumes_at));
        }
        for event in &events {
            self.deliver(event);
        }
        self.cursor = self.cursor.max(watermark);
        self.held.retain(|e| e.id.seq > watermark);
        self.finish_batch();
    }

    /// Handles one item from the live queues plus whatever else is already
    /// waiting, so a burst goes out as one write.
    async fn on_live(&mut self, first: Result<Arc<Event>, BroadcastStreamRecvError>) {
        let lagged = if self.multi_topic {
            self.take_ready_in_id_order(first).await
        } else {
            self.take_ready(first)
        };
        self.finish_batch();
        if lagged {
            self.observer.lagged();
            // invariant: slow subscriber — it lost its place in the live
            // queue, not its events: catch up from history.
            let last_seen =
                (self.cursor > 0).then(|| EventId::new(self.hub.backplane().epoch(), self.cursor));
            self.replay(last_seen, GapReason::Lagged).await;
        }
    }

    /// One topic: its queue is already in id order. Returns true on lag.
    fn take_ready(&mut self, first: Result<Arc<Event>, BroadcastStreamRecvError>) -> bool {
        let mut item = Some(first);
        while let Some(next) = item
            .take()
            .or_else(|| self.feeds.next().now_or_never().flatten())
        {
            match next {
                Ok(event) => self.deliver(&event),
                Err(BroadcastStreamRecvError::Lagged(_)) => return true,
            }
        }
        false
    }

    /// Several topics: merges what is waiting on every queue into id order,
    /// holding back events beyond the watermark. Returns true on lag.
    async fn take_ready_in_id_order(
        &mut self,
        first: Result<Arc<Event>, BroadcastStreamRecvError>,
    ) -> bool {
        let mut item = Some(first);
        loop {
            let watermark = self.hub.inner.registry.watermark();
            while let Some(next) = item
                .take()
                .or_else(|| self.feeds.next().now_or_never().flatten())
            {
                match next {
                    Ok(event) if event.id.seq <= self.cursor => {}
                    Ok(event) if event.id.seq > watermark => self.held.push(event),
                    Ok(event) => self.ready.push(event),
                    Err(BroadcastStreamRecvError::Lagged(_)) => {
                        self.ready.clear();
                        return true;
                    }
                }
            }
            if !self.held.is_empty() {
                let watermark = self.hub.inner.registry.watermark();
                let (ready, held) = (&mut self.ready, &mut self.held);
                held.retain(|event| {
                    let visible = event.id.seq <= watermark;
                    if visible {
                        ready.push(event.clone());
                    }
                    !visible
                });
            }
            self.ready.sort_unstable_by_key(|e| e.id.seq);
            let mut ready = std::mem::take(&mut self.ready);
            for event in ready.drain(..) {
                self.deliver(&event);
            }
            self.ready = ready;
            if self.held.is_empty() {
                return false;
            }
            // The publisher stores the watermark right after its sends, so
            // the held events become deliverable within microseconds.
            self.finish_batch();
            tokio::task::yield_now().await;
        }
    }

    /// Whatever is still queued, at drain time.
    async fn flush(&mut self) {
        match self.feeds.next().now_or_never().flatten() {
            Some(item) => self.on_live(item).await,
            None => {
                let held = std::mem::take(&mut self.held);
                for event in &held {
                    self.deliver(event);
                }
                self.finish_batch();
            }
        }
    }

    fn deliver(&mut self, event: &Arc<Event>) {
        if event.id.seq <= self.cursor {
            return;
        }
        self.cursor = event.id.seq;
        self.observer.event();
        // invariant: encode once — the shared frame is written as is.
        self.batch.push(&event.frame);
        if self.batch.is_full() {
            self.finish_batch();
        }
    }

    fn finish_batch(&mut self) {
        if let Some(chunk) = self.batch.finish() {
            self.observer.batch_written(chunk.len());
            self.outbox.push_back(chunk);
        }
    }
}

/// Gathers frames into one write. A single frame goes out as the shared
/// `Bytes` itself (no copy); several are copied into one buffer that is
/// reused from batch to batch.
#[derive(Default)]
struct BatchWriter {
    single: Option<Bytes>,
    buffer: BytesMut,
}

impl BatchWriter {
    fn push(&mut self, frame: &Bytes) {
        if self.buffer.is_empty() {
            match self.single.take() {
                None => {
                    self.single = Some(frame.clone());
                    return;
                }
                Some(first) => self.buffer.put_slice(&first),
            }
        }
        self.buffer.put_slice(frame);
    }

    fn is_full(&self) -> bool {
        self.buffer.len() >= MAX_BATCH_BYTES
    }

    fn finish(&mut self) -> Option<Bytes> {
        if let Some(single) = self.single.take() {
            return Some(single);
        }
        (!self.buffer.is_empty()).then(|| self.buffer.split().freeze())
    }
}

enum Feeds {
    One(BroadcastStream<Arc<Event>>),
    Many(SelectAll<BroadcastStream<Arc<Event>>>),
}

/// The live queues of a subscription; leaving detaches from the registry so
/// a topic nobody follows any more costs nothing.
struct LiveFeeds {
    feeds: Option<Feeds>,
    topics: Vec<TopicName>,
    hub: Hub,
}

impl Stream for LiveFeeds {
    type Item = Result<Arc<Event>, BroadcastStreamRecvError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.feeds.as_mut() {
            Some(Feeds::One(feed)) => feed.poll_next_unpin(cx),
            Some(Feeds::Many(feeds)) => feeds.poll_next_unpin(cx),
            None => Poll::Ready(None),
        }
    }
}

impl Drop for LiveFeeds {
    fn drop(&mut self) {
        // Receivers first, so the registry sees the topic without them.
        drop(self.feeds.take());
        for topic in &self.topics {
            self.hub.inner.registry.detach(topic);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures_util::StreamExt;
    use tokio::time::Instant;

    use crate::backplane::{Backplane, HistoryLimits, MemoryBackplane};
    use crate::hub::{EventDraft, Hub, HubSettings, ResumePoint, SubscribeRequest, TopicName};

    const EVERY: Duration = Duration::from_secs(15);

    fn hub() -> Hub {
        let settings = HubSettings {
            heartbeat: Some(EVERY),
            retry: Duration::from_secs(3),
            max_subscribers: 10,
            max_topics_per_subscription: 4,
            max_event_bytes: 1024,
        };
        Hub::new(settings, 16, |fan_out| {
            let limits = HistoryLimits {
                size: 100,
                ttl: Duration::from_secs(3600),
            };
            std::sync::Arc::new(MemoryBackplane::new(limits, fan_out))
                as std::sync::Arc<dyn Backplane>
        })
    }

    fn frames(hub: &Hub) -> impl futures_util::Stream<Item = bytes::Bytes> + Unpin {
        let request = SubscribeRequest {
            topics: vec![TopicName::parse("t").unwrap()],
            resume: ResumePoint::Live,
        };
        Box::pin(hub.subscribe(request).unwrap().into_frames())
    }

    async fn publish(hub: &Hub) {
        let draft = EventDraft {
            topic: TopicName::parse("t").unwrap(),
            event_type: None,
            retry: None,
            data: "tick".into(),
            trace: None,
        };
        hub.publish(vec![draft]).await.unwrap();
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
}
