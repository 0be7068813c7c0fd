//! A stream on a writer shard (`hub::shards`): what the shard asks of it
//! while it holds the stream's connection, and the way back to the
//! stream's own task. The rules are the stream loop's own (see the parent
//! module): the shard only does, for many streams at once, what an idle
//! live stream's loop would do: write each new event of its topic once,
//! beat in silence, and hand the stream back for anything else.

use std::pin::Pin;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use tokio::time::Instant;
use tokio_util::task::task_tracker::TaskTrackerToken;

use super::{FAR_FUTURE, Stage, SubscriptionStream};
use crate::hub::delivery::{Catchup, ParkedDelivery};
use crate::hub::live_feed::LiveFeed;
use crate::hub::live_queues::{Live, LiveQueues};
use crate::hub::{Hub, SubscriberSeat};
use crate::model::TopicName;
use crate::model::sse::HEARTBEAT;
use crate::server::{EventSource, ParkedConnection};

/// A stream whose socket filled up on a shard stays with its task this
/// long before it may be parked again: a slow reader isn't moved back and
/// forth on every write.
const PARK_BACKOFF: Duration = Duration::from_secs(1);
/// A stream whose token expires sooner than this stays with its task: the
/// task's timer (of millisecond ticks) ends it, where a shard, handing it
/// back a moment before that timer agrees, would only get it back.
const EXPIRY_MARGIN: Duration = Duration::from_millis(50);

impl EventSource for SubscriptionStream {
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<bytes::Bytes>> {
        futures_util::Stream::poll_next(self, cx)
    }

    fn wants_connection(&self) -> bool {
        self.hub.inner.shards.enabled()
            && matches!(self.stage, Stage::Live)
            && self.backplane_read.is_none()
            && !self.watermark_wait
            && !self.closing
            && self.owed.is_none()
            && self.park_after.is_none_or(|after| Instant::now() >= after)
            && self.expiry.is_none_or(|at| at > Instant::now() + EXPIRY_MARGIN)
            && self.delivery.as_ref().is_some_and(|d| d.is_parkable())
            // Last: it takes a lock.
            && !self.hub.lifecycle().closing().is_cancelled()
    }

    fn park(self: Pin<Box<Self>>, connection: ParkedConnection) {
        let hub = self.hub.clone();
        hub.inner.shards.park(self, connection);
    }
}

impl SubscriptionStream {
    /// The parked form of a stream [`EventSource::wants_connection`]
    /// accepted, and its own feed: the shard drains the feed, and drops
    /// it once it reads the topic's queue for the stream (or gives it
    /// back with [`ParkedStream::unpark`]). Everything else of the task's
    /// stream (its timer, its drain signal, its delivery buffers) goes.
    pub(in crate::hub) fn into_parked(
        mut self: Pin<Box<Self>>,
    ) -> (ParkedStream, TopicName, LiveFeed) {
        let this = self.as_mut().project();
        let delivery = this.delivery.take().expect("a parkable stream");
        let (delivery, topic, feed) = delivery.park();
        let parked = ParkedStream {
            delivery,
            heartbeat: *this.heartbeat,
            last_write: *this.last_write,
            heartbeat_at: *this.heartbeat_at,
            expires_at: *this.expires_at,
            expiry: *this.expiry,
            close_at: None,
            hub: this.hub.clone(),
            seat_and_drain_token: this.seat_and_drain_token.take(),
        };
        (parked, topic, feed)
    }

    /// Back to its own task: its timers are set again there, and `owed`
    /// (history from the cursor) is read before anything live; a stream
    /// whose socket was `full` isn't parked again for a while.
    pub(in crate::hub) fn leave_shard(self: Pin<&mut Self>, owed: Option<Catchup>, full: bool) {
        let this = self.project();
        *this.owed = owed;
        *this.stage = Stage::Starting;
        if full {
            *this.park_after = Some(Instant::now() + PARK_BACKOFF);
        }
    }
}

/// A stream on a writer shard: its cursor and totals, its heartbeat and
/// expiry, its seat. Kept inline in the shard's slab (see the module
/// documentation of `delivery::parked` for what is left out).
///
/// In C order: what a shard's write touches (the time of the last write,
/// the cursor, the totals) is the first 56 bytes, right after the slab
/// entry's tag; walking a topic's streams for each event then reads two
/// or three cache lines a stream, not four or five.
#[repr(C)]
pub(in crate::hub) struct ParkedStream {
    last_write: Instant,
    // Dropped first, as in the task's stream: the subscription's span and
    // counts end before its seat and drain token are given back.
    delivery: ParkedDelivery,
    heartbeat: Option<Duration>,
    heartbeat_at: Instant,
    expires_at: Option<SystemTime>,
    expiry: Option<Instant>,
    /// Its close slot, once the drain's closing has begun.
    close_at: Option<Instant>,
    hub: Hub,
    seat_and_drain_token: Option<(SubscriberSeat, TaskTrackerToken)>,
}

impl ParkedStream {
    /// Whether `item`, read by the shard, is written to this stream
    /// (`Ok(true)`: its frame, as is), skipped, or sends it back to
    /// history.
    pub(in crate::hub) fn take_pushed(
        &mut self,
        item: &Live,
        queues: &LiveQueues,
    ) -> Result<bool, Catchup> {
        self.delivery.take_pushed(item, queues)
    }

    /// The events taken since the last call went to the socket in `bytes`
    /// at `now`; returns how many, for the caller to count in the metrics.
    pub(in crate::hub) fn wrote_events(&mut self, bytes: usize, now: Instant) -> u64 {
        self.last_write = now;
        self.delivery.observer.batch_written_uncounted(bytes)
    }

    /// The heartbeat to write at `now`, if the stream has been silent
    /// long enough (as the stream loop decides it).
    pub(in crate::hub) fn heartbeat_due(&mut self, now: Instant) -> Option<Bytes> {
        let every = self.heartbeat?;
        if self.heartbeat_at > now {
            return None;
        }
        let due = now >= self.last_write + every;
        if due {
            self.delivery.observer.wrote(HEARTBEAT.len());
            self.last_write = now;
        }
        self.heartbeat_at = self.last_write + every;
        due.then_some(HEARTBEAT)
    }

    /// When the shard must look at the stream next: its heartbeat, its
    /// token's expiry or its close slot.
    pub(in crate::hub) fn next_deadline(&self) -> Option<Instant> {
        let heartbeat = self.heartbeat.map(|_| self.heartbeat_at);
        [heartbeat, self.expiry, self.close_at]
            .into_iter()
            .flatten()
            .min()
    }

    /// The drain's closing has begun: the stream takes its close slot (as
    /// the stream loop does) and returns it; it goes back to its task
    /// then, to end.
    pub(in crate::hub) fn begin_closing(&mut self) -> Instant {
        let at = self.hub.lifecycle().close_slot();
        self.close_at = Some(at);
        at
    }

    /// Whether its close slot has come.
    pub(in crate::hub) fn is_closing_due(&self, now: Instant) -> bool {
        self.close_at.is_some_and(|at| at <= now)
    }

    /// Whether its token has expired: the stream loop ends it.
    pub(in crate::hub) fn is_expired(&self, now: Instant) -> bool {
        self.expiry.is_some_and(|at| at <= now)
    }

    /// The task's stream again, of `topic`, reading `feed` (attached as it
    /// began to leave; see [`SubscriptionStream::leave_shard`] for `owed`
    /// and `full`). Called within the runtime: the stream's timer needs it.
    pub(in crate::hub) fn unpark(
        self,
        topic: TopicName,
        feed: LiveFeed,
        owed: Option<Catchup>,
        full: bool,
    ) -> Pin<Box<SubscriptionStream>> {
        let lifecycle = self.hub.lifecycle();
        // Closing, with its slot taken: the next signal is the cut.
        let signal = match self.close_at {
            Some(_) => lifecycle.cut().clone().cancelled_owned(),
            None => lifecycle.closing().clone().cancelled_owned(),
        };
        let mut stream = Box::pin(SubscriptionStream {
            delivery: Some(self.delivery.unpark(&self.hub, topic, feed)),
            backplane_read: None,
            stage: Stage::Starting,
            watermark_wait: false,
            heartbeat: self.heartbeat,
            last_write: self.last_write,
            heartbeat_at: self.heartbeat_at,
            expires_at: self.expires_at,
            expiry: self.expiry,
            close_at: self.close_at,
            timer: tokio::time::sleep_until(Instant::now() + FAR_FUTURE),
            signal,
            closing: self.close_at.is_some(),
            owed: None,
            park_after: None,
            hub: self.hub,
            seat_and_drain_token: self.seat_and_drain_token,
        });
        stream.as_mut().leave_shard(owed, full);
        stream
    }
}
