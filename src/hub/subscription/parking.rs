//! A stream on a writer shard (`hub::shards`): what the shard asks of it
//! while it holds the stream's connection, and the way back to the
//! stream's own task. The rules are the stream loop's own (see the parent
//! module): the shard only does, for many streams at once, what an idle
//! live stream's loop would do: write each new event of its topic once,
//! beat in silence, and hand the stream back for anything else.

use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::{FAR_FUTURE, Stage, SubscriptionStream};
use crate::hub::delivery::Catchup;
use crate::hub::live_queues::Live;
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
            && !self.is_expired(Instant::now() + EXPIRY_MARGIN)
            && self.delivery.as_ref().is_some_and(|d| d.is_parkable())
            // Last: it takes a lock.
            && !self.hub.lifecycle().closing().is_cancelled()
    }

    fn park(mut self: Pin<Box<Self>>, connection: ParkedConnection) {
        self.as_mut().release_task();
        let hub = self.hub.clone();
        hub.inner.shards.park(self, connection);
    }
}

impl SubscriptionStream {
    /// Lets go of the task that is ending: the timer and the drain signal,
    /// once polled, hold its waker (the timer until it fires, the signal
    /// until the drain), and with it the task's memory. Fresh, unpolled
    /// ones hold nothing; the stream's next task sets them again (made
    /// here, inside the runtime, which a timer needs).
    fn release_task(self: Pin<&mut Self>) {
        let mut this = self.project();
        this.timer
            .set(tokio::time::sleep_until(Instant::now() + FAR_FUTURE));
        this.signal
            .set(this.hub.lifecycle().closing().clone().cancelled_owned());
    }

    /// The one topic of a parked stream.
    pub(in crate::hub) fn topic(&self) -> &TopicName {
        self.delivery.as_ref().expect("a parked stream").topic()
    }

    /// The next item its own feed has now (see [`Self::drop_own_feed`]).
    pub(in crate::hub) fn own_item_now(self: Pin<&mut Self>) -> Option<Result<Live, Catchup>> {
        let this = self.project();
        this.delivery.as_mut()?.own_item_now()
    }

    /// From now on the shard reads the topic's queue for this stream.
    pub(in crate::hub) fn drop_own_feed(self: Pin<&mut Self>) {
        if let Some(delivery) = self.project().delivery.as_mut() {
            delivery.detach_feed();
        }
    }

    /// Whether `item`, read by the shard, is written to this stream
    /// (`Ok(true)`: its frame, as is), skipped, or sends it back to
    /// history.
    pub(in crate::hub) fn take_pushed(self: Pin<&mut Self>, item: &Live) -> Result<bool, Catchup> {
        match self.project().delivery.as_mut() {
            Some(delivery) => delivery.take_pushed(item),
            None => Ok(false),
        }
    }

    /// The events taken since the last call went to the socket in `bytes`.
    pub(in crate::hub) fn wrote_events(self: Pin<&mut Self>, bytes: usize, now: Instant) {
        let this = self.project();
        *this.last_write = now;
        if let Some(delivery) = this.delivery.as_mut() {
            delivery.observer.batch_written(bytes);
        }
    }

    /// The heartbeat to write at `now`, if the stream has been silent
    /// long enough (as the stream loop decides it).
    pub(in crate::hub) fn heartbeat_due(self: Pin<&mut Self>, now: Instant) -> Option<Bytes> {
        let this = self.project();
        let every = (*this.heartbeat)?;
        if *this.heartbeat_at > now {
            return None;
        }
        let due = now >= *this.last_write + every;
        if due {
            if let Some(delivery) = this.delivery.as_mut() {
                delivery.observer.wrote(HEARTBEAT.len());
            }
            *this.last_write = now;
        }
        *this.heartbeat_at = *this.last_write + every;
        due.then_some(HEARTBEAT)
    }

    /// When the shard must look at the stream next: its heartbeat or its
    /// token's expiry.
    pub(in crate::hub) fn next_deadline(&self) -> Option<Instant> {
        let heartbeat = self.heartbeat.map(|_| self.heartbeat_at);
        match (heartbeat, self.expiry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether its token has expired: the stream loop ends it.
    pub(in crate::hub) fn is_expired(&self, now: Instant) -> bool {
        self.expiry.is_some_and(|at| at <= now)
    }

    /// Ready to leave the shard: its own feed is attached again (called
    /// before the shard reads the topic's queue for the last time, so
    /// nothing falls between the two).
    pub(in crate::hub) fn attach_own_feed(self: Pin<&mut Self>) {
        if let Some(delivery) = self.project().delivery.as_mut() {
            delivery.attach_feed();
        }
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
