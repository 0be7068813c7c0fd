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
//!
//! Memory per subscriber is bounded whatever the client does: a replay
//! reads history a page per topic at a time ([`REPLAY_PAGE_BYTES`]) and
//! merges the pages by id as the stream is written, and at most one write
//! ([`MAX_BATCH_BYTES`](super::frame_batch::MAX_BATCH_BYTES) plus one
//! event) is made before the writer has taken
//! the previous one. A client that reads nothing holds one write and one
//! set of pages, not its history.

use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::stream::StreamExt;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

use super::ReplayTrigger;
use super::frame_batch::FrameBatch;
#[cfg(test)]
use super::frame_batch::MAX_BATCH_BYTES;
use super::live_feed::{LiveFeed, LiveItem};
use super::live_queues::{Live, LiveQueues, SyncPoint};
use super::spans::SubscriptionObserver;
use super::{FrameFilter, Hub};
use crate::backplane::Backplane;
use crate::model::Event;
use crate::model::GapReason;
use crate::model::TopicName;
use crate::model::{EventId, ResumePoint};

pub(in crate::hub) use parked::ParkedDelivery;
#[cfg(test)]
use replay::REPLAY_PAGE_BYTES;
use replay::Replay;

/// The epoch of the live queues before a backplane's first resync (a Redis
/// backplane that hasn't reached Redis yet). No real epoch is 0.
const UNPOSITIONED: u64 = 0;

/// Why delivery must go back to history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::hub) enum Catchup {
    /// The subscriber fell a whole live queue behind.
    Lagged,
    /// The backplane resynced the live queues (see `FanOut::resync`).
    Resync,
    /// A replay stopped while the backplane was down still owes history
    /// from the cursor: nothing live may go out before it.
    Owed,
}

/// What a stream at drain has left (see [`Delivery::flush_now`]).
pub(super) enum Flush {
    /// A write may be ready; ask again once it is out.
    More,
    /// Something to wait for first, as after [`Delivery::on_live_now`].
    Follow(FollowUp),
    /// Everything queued went out.
    Done,
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
    /// Several topics only: events at or below the watermark, sorted by id,
    /// not yet in a write (what one write couldn't take waits here, shared,
    /// not copied).
    ready: Vec<Arc<Event>>,
    batch: FrameBatch,
    /// The one write made and not yet taken by the writer.
    outbox: Option<Bytes>,
    /// A replay under way, or stalled while the backplane is down.
    replay: Option<Box<Replay>>,
    /// A client's resume point that came before the backplane's first
    /// resync: judged (and replayed) at that resync, not before, since until
    /// then this replica can't tell a valid id from a foreign one.
    deferred_resume: Option<EventId>,
    /// This subscription's span, totals and metrics.
    pub(super) observer: SubscriptionObserver,
    /// What each event becomes on this stream; `None`: its own frame.
    filter: Option<Box<dyn FrameFilter>>,
}

impl Delivery {
    pub(super) fn new(
        hub: &Hub,
        topics: Vec<TopicName>,
        feed: LiveFeed,
        resume: &ResumePoint,
        filter: Option<Box<dyn FrameFilter>>,
    ) -> Self {
        let observer = SubscriptionObserver::open(hub.metrics().clone(), &topics, resume);
        Self::assemble(hub, topics, feed, observer, filter)
    }

    /// A delivery with nothing under way or held, its cursor unplaced.
    fn assemble(
        hub: &Hub,
        topics: Vec<TopicName>,
        feed: LiveFeed,
        observer: SubscriptionObserver,
        filter: Option<Box<dyn FrameFilter>>,
    ) -> Self {
        Self {
            backplane: hub.backplane().clone(),
            queues: hub.inner.live_queues.clone(),
            multi_topic: feed.is_merged(),
            topics,
            feed,
            cursor: EventId::new(0, 0),
            generation: 0,
            held: Vec::new(),
            ready: Vec::new(),
            batch: FrameBatch::default(),
            outbox: None,
            replay: None,
            deferred_resume: None,
            observer,
            filter,
        }
    }

    /// The next item of the live queues.
    pub(super) fn poll_live(&mut self, cx: &mut Context<'_>) -> Poll<Option<LiveItem>> {
        self.feed.poll_next_unpin(cx)
    }

    /// The next chunk to write: the one made already, or one made now from
    /// what is at hand (a replay's pages, sorted events one write couldn't
    /// take). One chunk at a time, and only once the previous one was
    /// taken: a stream its client doesn't read holds at most one write.
    pub(super) fn next_chunk(&mut self) -> Option<Bytes> {
        if self.outbox.is_none() {
            if self.replay.is_some() {
                self.replay_batch();
            } else if !self.ready.is_empty() {
                self.deliver_ready();
                self.finish_batch();
            }
        }
        self.outbox.take()
    }

    /// Whether a replay waits for history: then [`Self::read_history`].
    pub(super) fn wants_history(&self) -> bool {
        self.outbox.is_none() && self.replay.as_ref().is_some_and(|r| r.wants_page())
    }

    /// Bytes this subscriber holds that aren't shared with history or the
    /// live queues' events (the write being made and the one waiting),
    /// and the replay's pages (shared with the memory backplane's history,
    /// copies with Redis).
    #[cfg(test)]
    pub(super) fn held_bytes(&self) -> (usize, usize) {
        let staged = self.outbox.as_ref().map_or(0, Bytes::len) + self.batch.len();
        let pages = self.replay.as_ref().map_or(0, |replay| {
            replay
                .pages
                .iter()
                .flat_map(|page| &page.events)
                .map(|event| event.frame.len())
                .sum()
        });
        (staged, pages)
    }

    /// Places the cursor where the live queues stand: all a live subscribe
    /// needs (the queues hold nothing from before it attached).
    pub(super) fn start_live(&mut self) -> SyncPoint {
        let sync = self.queues.sync_point();
        self.generation = sync.generation;
        self.cursor = EventId::new(sync.epoch, 0);
        sync
    }

    /// Starts the replay of history after the client's resume point.
    pub(super) async fn start(&mut self, resume: ResumePoint) {
        let sync = self.start_live();
        let id = match resume {
            // Live only: the queues hold nothing from before we attached.
            ResumePoint::Live => return,
            // Everything history holds, asked for: no gap to announce.
            ResumePoint::Earliest => {
                return self.replay(ReplayTrigger::Resume, None, None).await;
            }
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

    /// The part of the live stage that needs no waiting: live items at hand
    /// go into one write; what is left (rare: a lag, a resync, events held
    /// for the watermark) is returned. Items one write can't take stay in
    /// the queues (one topic) or sorted in `ready` (several).
    pub(super) fn on_live_now(&mut self, first: LiveItem) -> Option<FollowUp> {
        if self.replay.is_some() {
            // A stalled replay: nothing live may go out before what it owes.
            return Some(FollowUp::Catchup(Catchup::Owed));
        }
        let pass = if self.multi_topic {
            self.pass_in_id_order(Some(first))
        } else {
            self.take_ready(first).map_or(Pass::Done, Pass::Catchup)
        };
        self.after_pass(pass)
    }

    /// After [`FollowUp::Watermark`] and a yield: looks at the queues again.
    pub(super) fn after_watermark_wait(&mut self) -> Option<FollowUp> {
        if self.replay.is_some() {
            return Some(FollowUp::Catchup(Catchup::Owed));
        }
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

    /// Goes back to history after a lag or a resync, or resumes a stalled
    /// replay from its kept cursor (whatever the reason, a replay from the
    /// cursor covers it).
    pub(super) async fn catch_up(&mut self, catchup: Catchup) {
        if let Some(mut replay) = self.replay.take() {
            self.observer.replayed(replay.trigger);
            replay.restarts = 0;
            self.position(&mut replay);
            self.replay = Some(replay);
            return self.read_history().await;
        }
        let last_seen = (self.cursor.seq > 0).then_some(self.cursor);
        match catchup {
            Catchup::Lagged => {
                self.observer.lagged();
                // invariant: slow subscriber — it lost its place in the live
                // queue, not its events: catch up from history.
                self.replay(ReplayTrigger::Lagged, last_seen, None).await;
            }
            Catchup::Resync | Catchup::Owed => match self.deferred_resume.take() {
                Some(id) => self.start(ResumePoint::After(id)).await,
                None => self.replay(ReplayTrigger::Resync, last_seen, None).await,
            },
        }
    }

    /// One topic: its queue is already in id order. Stops at a full write;
    /// the rest stays in the queue.
    fn take_ready(&mut self, first: LiveItem) -> Option<Catchup> {
        let mut item = Some(first);
        loop {
            let next = match item.take() {
                Some(next) => next,
                None if self.batch.is_full() => return None,
                None => self.feed.next().now_or_never().flatten()?,
            };
            match next {
                Ok(Live::Event(event)) if event.id.epoch != self.cursor.epoch => {
                    if let Some(catchup) = other_epoch(&self.queues, self.cursor) {
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
    }

    /// Several topics: merges what is waiting on every queue into id order,
    /// holding back events beyond the watermark, and delivers one write of
    /// it (the rest waits, sorted, for [`Self::next_chunk`]).
    fn pass_in_id_order(&mut self, first: Option<LiveItem>) -> Pass {
        let mut item = first;
        let watermark = self.queues.watermark();
        while let Some(next) = item
            .take()
            .or_else(|| self.feed.next().now_or_never().flatten())
        {
            let catchup = match next {
                Ok(Live::Event(event)) if event.id.epoch != self.cursor.epoch => {
                    other_epoch(&self.queues, self.cursor)
                }
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
        // read gives the true order. (What an earlier pass left in `ready`
        // is all below what this one read.)
        self.ready.sort_unstable_by_key(|e| e.id.seq);
        self.deliver_ready();
        if self.held.is_empty() {
            return Pass::Done;
        }
        if self.queues.generation() != self.generation {
            // The watermark moved to another position: held events may
            // never become visible against it.
            self.ready.clear();
            return Pass::Catchup(Catchup::Resync);
        }
        // The fan-out stores the watermark right after its sends, so the
        // held events become deliverable within microseconds.
        Pass::Wait
    }

    /// Delivers sorted `ready` events up to a full write.
    fn deliver_ready(&mut self) {
        let mut ready = std::mem::take(&mut self.ready);
        let mut taken = 0;
        for event in &ready {
            if self.batch.is_full() {
                break;
            }
            self.deliver(event);
            taken += 1;
        }
        ready.drain(..taken);
        self.ready = ready;
    }

    /// At drain: what the live queues still hold, a write at a time.
    pub(super) fn flush_now(&mut self) -> Flush {
        if let Some(item) = self.feed.next().now_or_never().flatten() {
            return match self.on_live_now(item) {
                Some(follow_up) => Flush::Follow(follow_up),
                None => Flush::More,
            };
        }
        if self.held.is_empty() {
            return Flush::Done;
        }
        // Publishing has stopped: nothing can come before what is held.
        let mut held = std::mem::take(&mut self.held);
        held.sort_unstable_by_key(|e| e.id.seq);
        let mut taken = 0;
        for event in &held {
            if self.batch.is_full() {
                break;
            }
            self.deliver(event);
            taken += 1;
        }
        held.drain(..taken);
        self.held = held;
        self.finish_batch();
        Flush::More
    }

    fn deliver(&mut self, event: &Arc<Event>) {
        if event.id.epoch != self.cursor.epoch || event.id.seq <= self.cursor.seq {
            return;
        }
        self.cursor.seq = event.id.seq;
        match &mut self.filter {
            None => {
                self.observer.event();
                // invariant: encode once — the shared frame is written as is.
                self.batch.push(&event.frame);
            }
            Some(filter) => {
                // invariant: encode once — a filter hands out frames it
                // built once per event, not per subscriber.
                if let Some(frame) = filter.frame(event) {
                    self.observer.event();
                    self.batch.push(&frame);
                }
            }
        }
    }

    /// Whether a writer shard may take the stream over: one topic's whole
    /// queue, its own frames, positioned, and nothing under way or held;
    /// and a queue other streams read too. A shard is woken across threads
    /// for each event of its topics, which pays for itself when it writes
    /// the event to several streams, not to one: the only subscriber of a
    /// topic (a per-user topic, say) is served cheaper by its own task.
    pub(super) fn is_parkable(&self) -> bool {
        !self.multi_topic
            && self.filter.is_none()
            && self.replay.is_none()
            && self.deferred_resume.is_none()
            && self.outbox.is_none()
            && self.ready.is_empty()
            && self.held.is_empty()
            && self.cursor.epoch != UNPOSITIONED
            && self.feed.is_one_shared_queue()
    }

    fn finish_batch(&mut self) {
        debug_assert!(self.outbox.is_none(), "one write at a time");
        if let Some(chunk) = self.batch.finish() {
            self.observer.batch_written(chunk.len());
            self.outbox = Some(chunk);
        }
    }
}

/// An event of another epoch than the cursor's came from the queues: a
/// straggler from before a resync this stream already followed (skip it),
/// or the queues moved to a new epoch (replay).
fn other_epoch(queues: &LiveQueues, cursor: EventId) -> Option<Catchup> {
    (queues.sync_point().epoch != cursor.epoch).then_some(Catchup::Resync)
}

mod parked;
mod replay;
#[cfg(test)]
mod tests;
