//! Moving one subscriber's events from history and live queues into frames:
//! resume, dedup, id order across topics, lag catch-up, resync after a
//! backplane reconnect, batching. No HTTP and no timers here: the stream
//! loop in `hub::subscription` drives it, and the tests below drive it
//! directly.
//!
//! The cursor is the id of the last event accounted for (delivered, or
//! announced lost in a gap frame). It carries its epoch: sequence numbers
//! only order events within one epoch, so an event or a history of another
//! epoch is never compared with it by number (a Redis that came back empty
//! starts again at 1; comparing by number would skip its events silently).

use std::collections::VecDeque;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::stream::StreamExt;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

use super::Hub;
use super::encoder;
use super::event::Event;
use super::event_id::{EventId, ResumePoint};
use super::frame_batch::FrameBatch;
use super::live_feed::{LiveFeed, LiveItem};
use super::live_queues::{Live, LiveQueues, SyncPoint};
use super::observe::SubscriptionObserver;
use super::topic::TopicName;
use crate::backplane::Backplane;
use crate::metrics::{GapReason, ReplayTrigger};

/// Times a replay starts over because a resync moved the live queues while
/// it read history, or a history read failed. Resyncs follow backplane
/// reconnects, seconds apart, so a second attempt practically always
/// settles; past this the replay ends with a gap frame rather than loop.
const MAX_REPLAY_ATTEMPTS: usize = 4;

/// Pause before reading history again after a read failed, times the
/// attempt (0.1 s, 0.2 s, 0.3 s). A backplane under a burst of resumes (a
/// drained replica's clients all arriving at once) can time a read out
/// once; the next usually succeeds, and a stream that waits a moment loses
/// nothing, where a `history_unavailable` gap would drop what history held.
const HISTORY_RETRY_PAUSE: Duration = Duration::from_millis(100);

/// The epoch of the live queues before a backplane's first resync (a Redis
/// backplane that hasn't reached Redis yet). No real epoch is 0.
const UNPOSITIONED: u64 = 0;

/// Why delivery must go back to history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Catchup {
    /// The subscriber fell a whole live queue behind.
    Lagged,
    /// The backplane resynced the live queues (see `FanOut::resync`).
    Resync,
}

/// What is left to do once the live items at hand are taken (see
/// [`Delivery::on_live_now`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FollowUp {
    /// Several topics: events are held until the watermark passes them.
    /// Yield to the runtime (the fan-out stores it microseconds after its
    /// sends), then [`Delivery::after_watermark_wait`].
    Watermark,
    /// Back to history: [`Delivery::catch_up`], which reads the backplane.
    Catchup(Catchup),
}

/// The outcome of one look at the live queues.
enum Pass {
    Done,
    Wait,
    Catchup(Catchup),
}

/// The part of a subscriber that moves events into frames, in id order,
/// without duplicates. Its buffers live as long as the subscription and are
/// reused, so steady delivery allocates nothing.
pub(super) struct Delivery {
    backplane: Arc<dyn Backplane>,
    queues: Arc<LiveQueues>,
    topics: Vec<TopicName>,
    multi_topic: bool,
    feed: LiveFeed,
    /// The last event accounted for. Anything at or below it (in its epoch)
    /// is skipped, which removes the overlap between history and live queues.
    cursor: EventId,
    /// The resync generation this subscriber's cursor reflects; markers of
    /// this generation or older are already covered.
    generation: u64,
    /// Several topics only: events that arrived ahead of the watermark, held
    /// back until everything before them is visible so that delivery stays
    /// in id order across topics (one `Last-Event-ID` must describe the
    /// whole connection).
    held: Vec<Arc<Event>>,
    /// Several topics only: the events of one batch, to be sorted by id.
    ready: Vec<Arc<Event>>,
    batch: FrameBatch,
    /// Chunks ready to be written, in order.
    outbox: VecDeque<Bytes>,
    /// A client's resume point that came before the backplane's first
    /// resync: judged (and replayed) at that resync, not before, since until
    /// then this replica can't tell a valid id from a foreign one.
    deferred_resume: Option<EventId>,
    /// This subscription's span, totals and metrics.
    pub(super) observer: SubscriptionObserver,
}

impl Delivery {
    pub(super) fn new(
        hub: &Hub,
        topics: Vec<TopicName>,
        feed: LiveFeed,
        resume: &ResumePoint,
    ) -> Self {
        Self {
            backplane: hub.backplane().clone(),
            queues: hub.inner.live_queues.clone(),
            multi_topic: topics.len() > 1,
            observer: SubscriptionObserver::open(hub.metrics().clone(), &topics, resume),
            topics,
            feed,
            cursor: EventId::new(0, 0),
            generation: 0,
            held: Vec::new(),
            ready: Vec::new(),
            batch: FrameBatch::default(),
            outbox: VecDeque::new(),
            deferred_resume: None,
        }
    }

    /// The next item of the live queues.
    pub(super) fn poll_live(&mut self, cx: &mut Context<'_>) -> Poll<Option<LiveItem>> {
        self.feed.poll_next_unpin(cx)
    }

    /// The next chunk to write, if any.
    pub(super) fn next_chunk(&mut self) -> Option<Bytes> {
        self.outbox.pop_front()
    }

    /// Places the cursor where the live queues stand: all a live subscribe
    /// needs (the queues hold nothing from before it attached).
    pub(super) fn start_live(&mut self) -> SyncPoint {
        let sync = self.queues.sync_point();
        self.generation = sync.generation;
        self.cursor = EventId::new(sync.epoch, 0);
        sync
    }

    /// Replays history after the client's resume point.
    pub(super) async fn start(&mut self, resume: ResumePoint) {
        let sync = self.start_live();
        let id = match resume {
            // Live only: the queues hold nothing from before we attached.
            ResumePoint::Live => return,
            ResumePoint::Foreign => {
                let gap = Some(GapReason::UnknownEpoch);
                return self.replay(ReplayTrigger::Resume, None, gap).await;
            }
            ResumePoint::After(id) => id,
        };
        if sync.epoch == UNPOSITIONED {
            // A fresh replica that hasn't reached its backplane's server yet
            // (a load balancer sent the stream before readiness said so):
            // the first resync brings the position; until then nothing
            // arrives on the live queues, so nothing is missed by waiting.
            self.deferred_resume = Some(id);
            return;
        }
        // An id of this epoch beyond anything assigned can't be a real
        // position: trusting it would skip events silently. The backplane
        // answers for every replica, so an id just assigned on another one
        // is ours even before its event has reached this one.
        let ours = match self.backplane.last_id().await {
            Ok(last) => id.epoch == last.epoch && id.seq <= last.seq,
            // Can't tell, and history can't be read either: the replay says so.
            Err(_) => id.epoch == sync.epoch,
        };
        if ours {
            self.cursor = id;
            self.replay(ReplayTrigger::Resume, Some(id), None).await
        } else {
            // Not our history: everything we hold is new to this client.
            let gap = Some(GapReason::UnknownEpoch);
            self.replay(ReplayTrigger::Resume, Some(id), gap).await
        }
    }

    /// Sends every event of the topics after the cursor that history holds,
    /// preceded by a gap frame when `gap` is set or history can't cover it
    /// all. Afterwards everything up to the live queues' watermark is
    /// accounted for.
    async fn replay(
        &mut self,
        trigger: ReplayTrigger,
        last_seen: Option<EventId>,
        mut gap: Option<GapReason>,
    ) {
        self.observer.replayed(trigger);
        let incomplete = match trigger {
            ReplayTrigger::Lagged => GapReason::Lagged,
            ReplayTrigger::Resume | ReplayTrigger::Resync => GapReason::HistoryExceeded,
        };
        let backplane = self.backplane.clone();
        let mut events = Vec::new();
        let mut attempts = 0;
        let sync = loop {
            attempts += 1;
            // Read before history: every event at or below its watermark is
            // in history or was evicted (then reported); later ones arrive
            // on the live queues.
            let sync = self.queues.sync_point();
            if self.cursor.epoch == UNPOSITIONED && sync.epoch != UNPOSITIONED {
                // Opened before the backplane first reached its server: this
                // stream was promised nothing before now; it joins live.
                self.cursor = EventId::new(sync.epoch, sync.watermark);
            } else if self.cursor.epoch != sync.epoch {
                // contract: resync — history started over under this stream
                // (or the client's id is of an epoch this replica hasn't
                // reached): one gap frame, then the new epoch from its start.
                gap.get_or_insert(GapReason::EpochChanged);
                self.cursor = EventId::new(sync.epoch, 0);
            }
            events.clear();
            let mut lost = None;
            let mut consistent = true;
            let mut unreadable = false;
            for topic in &self.topics {
                match backplane.history(topic, self.cursor.seq).await {
                    Ok(history) if history.epoch != sync.epoch => consistent = false,
                    Ok(history) => {
                        if !history.complete {
                            lost.get_or_insert(incomplete);
                        }
                        events.extend(
                            history
                                .events
                                .into_iter()
                                .filter(|e| e.id.seq <= sync.watermark),
                        );
                    }
                    Err(_) => unreadable = true,
                }
            }
            let settled = consistent && !unreadable && self.queues.generation() == sync.generation;
            if settled || attempts >= MAX_REPLAY_ATTEMPTS {
                if !settled {
                    lost.get_or_insert(GapReason::HistoryUnavailable);
                    events.retain(|e| e.id.epoch == sync.epoch);
                }
                if let Some(reason) = lost {
                    gap.get_or_insert(reason);
                }
                break sync;
            }
            if unreadable {
                tokio::time::sleep(HISTORY_RETRY_PAUSE * attempts as u32).await;
            }
        };
        if self.multi_topic {
            // contract: fan-out order — history is per topic; the merge by id
            // gives the order the live queues would have given.
            events.sort_unstable_by_key(|e| e.id.seq);
        }
        if let Some(reason) = gap {
            // invariant: no silent loss — the gap is announced before any
            // event that follows it.
            let resumes_at = events.first().map(|e| e.id);
            self.observer.gap(reason, events.first());
            self.batch
                .push(&encoder::gap_frame(reason.as_str(), last_seen, resumes_at));
        }
        for event in &events {
            self.deliver(event);
        }
        self.cursor.seq = self.cursor.seq.max(sync.watermark);
        self.generation = sync.generation;
        let cursor = self.cursor;
        self.held
            .retain(|e| e.id.epoch == cursor.epoch && e.id.seq > cursor.seq);
        self.finish_batch();
    }

    /// Handles one item from the live queues plus whatever else is already
    /// waiting, so a burst goes out as one write.
    pub(super) async fn on_live(&mut self, first: LiveItem) {
        let mut follow_up = self.on_live_now(first);
        loop {
            match follow_up {
                None => return,
                Some(FollowUp::Watermark) => {
                    tokio::task::yield_now().await;
                    follow_up = self.after_watermark_wait();
                }
                Some(FollowUp::Catchup(catchup)) => return self.catch_up(catchup).await,
            }
        }
    }

    /// The part of [`Self::on_live`] that needs no waiting: every event at
    /// hand goes into the outbox; what is left (rare: a lag, a resync,
    /// events held for the watermark) is returned.
    pub(super) fn on_live_now(&mut self, first: LiveItem) -> Option<FollowUp> {
        let pass = if self.multi_topic {
            self.pass_in_id_order(Some(first))
        } else {
            self.take_ready(first).map_or(Pass::Done, Pass::Catchup)
        };
        self.after_pass(pass)
    }

    /// After [`FollowUp::Watermark`] and a yield: looks at the queues again.
    pub(super) fn after_watermark_wait(&mut self) -> Option<FollowUp> {
        let pass = self.pass_in_id_order(None);
        self.after_pass(pass)
    }

    fn after_pass(&mut self, pass: Pass) -> Option<FollowUp> {
        self.finish_batch();
        match pass {
            Pass::Done => None,
            Pass::Wait => Some(FollowUp::Watermark),
            Pass::Catchup(catchup) => Some(FollowUp::Catchup(catchup)),
        }
    }

    /// Goes back to history after a lag or a resync.
    pub(super) async fn catch_up(&mut self, catchup: Catchup) {
        let last_seen = (self.cursor.seq > 0).then_some(self.cursor);
        match catchup {
            Catchup::Lagged => {
                self.observer.lagged();
                // invariant: slow subscriber — it lost its place in the live
                // queue, not its events: catch up from history.
                self.replay(ReplayTrigger::Lagged, last_seen, None).await;
            }
            Catchup::Resync => match self.deferred_resume.take() {
                Some(id) => self.start(ResumePoint::After(id)).await,
                None => self.replay(ReplayTrigger::Resync, last_seen, None).await,
            },
        }
    }

    /// An event of another epoch than the cursor's came from the queues: a
    /// straggler from before a resync this stream already followed (skip
    /// it), or the queues moved to a new epoch (replay).
    fn other_epoch(&self) -> Option<Catchup> {
        (self.queues.sync_point().epoch != self.cursor.epoch).then_some(Catchup::Resync)
    }

    /// One topic: its queue is already in id order.
    fn take_ready(&mut self, first: LiveItem) -> Option<Catchup> {
        let mut item = Some(first);
        while let Some(next) = item
            .take()
            .or_else(|| self.feed.next().now_or_never().flatten())
        {
            match next {
                Ok(Live::Event(event)) if event.id.epoch != self.cursor.epoch => {
                    if let Some(catchup) = self.other_epoch() {
                        return Some(catchup);
                    }
                }
                Ok(Live::Event(event)) => self.deliver(&event),
                Ok(Live::Resync(generation)) if generation > self.generation => {
                    return Some(Catchup::Resync);
                }
                Ok(Live::Resync(_)) => {}
                Err(BroadcastStreamRecvError::Lagged(_)) => return Some(Catchup::Lagged),
            }
        }
        None
    }

    /// Several topics: merges what is waiting on every queue into id order,
    /// holding back events beyond the watermark.
    fn pass_in_id_order(&mut self, first: Option<LiveItem>) -> Pass {
        let mut item = first;
        let watermark = self.queues.watermark();
        while let Some(next) = item
            .take()
            .or_else(|| self.feed.next().now_or_never().flatten())
        {
            let catchup = match next {
                Ok(Live::Event(event)) if event.id.epoch != self.cursor.epoch => self.other_epoch(),
                Ok(Live::Event(event)) if event.id.seq <= self.cursor.seq => None,
                Ok(Live::Event(event)) if event.id.seq > watermark => {
                    self.held.push(event);
                    None
                }
                Ok(Live::Event(event)) => {
                    self.ready.push(event);
                    None
                }
                Ok(Live::Resync(generation)) => {
                    (generation > self.generation).then_some(Catchup::Resync)
                }
                Err(BroadcastStreamRecvError::Lagged(_)) => Some(Catchup::Lagged),
            };
            if let Some(catchup) = catchup {
                // Part of the queues is unread: delivering what was read
                // could move the cursor past an unread, older event.
                // History has all of it.
                self.ready.clear();
                return Pass::Catchup(catchup);
            }
        }
        if !self.held.is_empty() {
            let watermark = self.queues.watermark();
            let (ready, held) = (&mut self.ready, &mut self.held);
            held.retain(|event| {
                let visible = event.id.seq <= watermark;
                if visible {
                    ready.push(event.clone());
                }
                !visible
            });
        }
        // contract: fan-out order — the backplane hands events over in
        // id order across topics and stores the watermark after, so
        // everything at or below it is in the queues: sorting what was
        // read gives the true order.
        self.ready.sort_unstable_by_key(|e| e.id.seq);
        let mut ready = std::mem::take(&mut self.ready);
        for event in ready.drain(..) {
            self.deliver(&event);
        }
        self.ready = ready;
        if self.held.is_empty() {
            return Pass::Done;
        }
        if self.queues.generation() != self.generation {
            // The watermark moved to another position: held events may
            // never become visible against it.
            return Pass::Catchup(Catchup::Resync);
        }
        // The fan-out stores the watermark right after its sends, so the
        // held events become deliverable within microseconds.
        Pass::Wait
    }

    /// Whatever is still queued, at drain time.
    pub(super) async fn flush(&mut self) {
        match self.feed.next().now_or_never().flatten() {
            Some(item) => self.on_live(item).await,
            None => {
                let mut held = std::mem::take(&mut self.held);
                held.sort_unstable_by_key(|e| e.id.seq);
                for event in &held {
                    self.deliver(event);
                }
                self.finish_batch();
            }
        }
    }

    fn deliver(&mut self, event: &Arc<Event>) {
        if event.id.epoch != self.cursor.epoch || event.id.seq <= self.cursor.seq {
            return;
        }
        self.cursor.seq = event.id.seq;
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

#[cfg(test)]
mod tests;
