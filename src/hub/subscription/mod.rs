//! One subscriber's stream of SSE bytes: the prelude, then what
//! [`Delivery`] makes of history and the live queues, heartbeats in
//! silence, and a clean end on drain. This file is the stream loop and its
//! timer; the ordering logic lives in `hub::delivery`.
//!
//! The stream is polled by the connection's own task; there is no extra task
//! per subscriber. While it idles live, a writer shard may hold it instead
//! (no task at all; see `parking` and `hub::shards`). [`SubscriptionStream`] is written by hand rather than as an `async`
//! block because an idle stream is mostly this state: one timer (the
//! nearest of heartbeat, token expiry and close slot), one drain signal at a
//! time (closing, then cut), the delivery state and nothing else. The steps
//! that read the backplane (a resume, a lag or resync catch-up, a replay's
//! next page) take the delivery state into a boxed future for their
//! duration, so their size is paid only while they run.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::stream::Stream;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::WaitForCancellationFutureOwned;
use tokio_util::task::task_tracker::TaskTrackerToken;

use super::delivery::{Catchup, Delivery, Flush, FollowUp};
use super::live_feed::LiveFeed;
use super::{FrameFilter, LiveRoutes, SubscriptionEnd};
use super::{Hub, SubscriberSeat};
use crate::model::ResumePoint;
use crate::model::TopicName;
use crate::model::sse::{self, HEARTBEAT};

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
    /// Attached at open, before any history is read (see `Hub::subscribe`).
    feed: LiveFeed,
    resume: ResumePoint,
    /// When the token that opened the stream expires; the stream ends then.
    expires_at: Option<SystemTime>,
    /// What each event becomes on this stream (see [`FrameFilter`]).
    filter: Option<Box<dyn FrameFilter>>,
    /// Keeps the drain waiting until this stream has ended.
    stream_token: TaskTrackerToken,
}

impl Subscription {
    pub(super) fn open(
        seat: SubscriberSeat,
        mut topics: Vec<TopicName>,
        resume: ResumePoint,
        expires_at: Option<SystemTime>,
        filter: Option<Box<dyn FrameFilter>>,
        live_routes: Option<LiveRoutes>,
    ) -> Self {
        // Kept for the life of the stream: no spare capacity.
        topics.shrink_to_fit();
        let hub = &seat.hub;
        let feed = LiveFeed::attach(hub.inner.live_queues.clone(), &topics, live_routes.as_ref());
        let stream_token = hub.inner.lifecycle.stream_token();
        Self {
            seat,
            topics,
            feed,
            resume,
            expires_at,
            filter,
            stream_token,
        }
    }

    /// The SSE bytes for this subscriber, ending on drain or when the hub
    /// goes away. Dropping the stream (client gone) releases everything.
    pub fn into_frames(self) -> SubscriptionStream {
        let Subscription {
            seat,
            topics,
            feed,
            resume,
            expires_at,
            filter,
            stream_token,
        } = self;
        let hub = seat.hub.clone();
        let delivery = Delivery::new(&hub, topics, feed, &resume, filter);
        let heartbeat = hub
            .settings()
            .heartbeat
            .map(|every| every.saturating_sub(every.mul_f64(HEARTBEAT_JITTER * fastrand::f64())));
        let closing = hub.lifecycle().closing().clone().cancelled_owned();
        // Set again when live delivery begins (after the resume's replay).
        let now = Instant::now();
        SubscriptionStream {
            delivery: Some(delivery),
            backplane_read: None,
            stage: Stage::Prelude(resume),
            watermark_wait: false,
            heartbeat,
            last_write: now,
            heartbeat_at: now + FAR_FUTURE,
            expires_at,
            expiry: None,
            close_at: None,
            timer: tokio::time::sleep_until(now + FAR_FUTURE),
            signal: closing,
            closing: false,
            owed: None,
            park_after: None,
            hub,
            seat_and_drain_token: Some((seat, stream_token)),
        }
    }
}

#[cfg(test)]
impl SubscriptionStream {
    /// What the stream holds now (see `Delivery::held_bytes`); nothing
    /// while a step that reads the backplane runs.
    pub(super) fn held_bytes(&self) -> (usize, usize) {
        self.delivery.as_ref().map_or((0, 0), Delivery::held_bytes)
    }
}

/// A step that reads the backplane (a resume, a catch-up, a replay's next
/// page); it owns the delivery state while it runs.
type BackplaneRead = Pin<Box<dyn Future<Output = Delivery> + Send>>;

/// Where a stream is in its life.
enum Stage {
    /// The `retry:` prelude is next; then delivery starts from here.
    Prelude(ResumePoint),
    /// The resume's replay is under way or its chunks are going out; the
    /// timers start after them.
    Starting,
    /// Live delivery, until an end.
    Live,
    /// Ended: what the queues still hold goes out, then the last frame.
    Ending,
    /// The last frame is out.
    Done,
}

/// What the live stage wants next.
enum LiveStep {
    Continue,
    Yield(Bytes),
    Pending,
    End(SubscriptionEnd),
}

pin_project_lite::pin_project! {
    /// The byte stream of one subscription (see the module documentation).
    #[project = SubscriptionStreamProj]
    pub struct SubscriptionStream {
        // Dropped first: the subscription's span, counts and queues end
        // before its seat and drain token are given back.
        delivery: Option<Delivery>,
        backplane_read: Option<BackplaneRead>,
        stage: Stage,
        // Events held for the watermark: a yield is under way.
        watermark_wait: bool,
        // The jittered interval; `None`: no heartbeats.
        heartbeat: Option<Duration>,
        last_write: Instant,
        // When the heartbeat is looked at next; re-armed lazily when it
        // comes, so busy streams never touch the timer.
        heartbeat_at: Instant,
        expires_at: Option<SystemTime>,
        // `expires_at` on the runtime's clock.
        expiry: Option<Instant>,
        // This stream's close slot, once closing has begun.
        close_at: Option<Instant>,
        // The nearest of `heartbeat_at`, `expiry` and `close_at`.
        #[pin]
        timer: Sleep,
        // The drain signal waited for: closing, then (once closing) cut.
        #[pin]
        signal: WaitForCancellationFutureOwned,
        closing: bool,
        // Back from a writer shard: history from the cursor is read first.
        owed: Option<Catchup>,
        // Back from a writer shard whose socket was full: not parked again
        // before this.
        park_after: Option<Instant>,
        hub: Hub,
        seat_and_drain_token: Option<(SubscriberSeat, TaskTrackerToken)>,
    }
}

impl Stream for SubscriptionStream {
    type Item = Bytes;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        let mut this = self.project();
        loop {
            if let Some(read) = this.backplane_read.as_mut() {
                let delivery = std::task::ready!(read.as_mut().poll(cx));
                *this.backplane_read = None;
                *this.delivery = Some(delivery);
            }
            let Some(delivery) = this.delivery.as_mut() else {
                // The last frame is out: the seat and the drain token go
                // now, not whenever the server drops the finished body.
                *this.seat_and_drain_token = None;
                return Poll::Ready(None);
            };
            // One write at a time, made only once the writer took the last
            // one: a stream that isn't read costs one write, not a backlog.
            if let Some(chunk) = delivery.next_chunk() {
                return Poll::Ready(Some(chunk));
            }
            if delivery.wants_history() {
                // A replay's next page, read only now that its previous
                // events are written.
                let mut delivery = this.delivery.take().expect("delivery is here");
                *this.backplane_read = Some(Box::pin(async move {
                    delivery.read_history().await;
                    delivery
                }));
                continue;
            }
            if std::mem::take(this.watermark_wait) {
                if let Some(follow_up) = delivery.after_watermark_wait()
                    && follow(&mut this, follow_up, cx).is_pending()
                {
                    return Poll::Pending;
                }
                continue;
            }
            match std::mem::replace(this.stage, Stage::Live) {
                Stage::Prelude(resume) => {
                    let prelude = sse::stream_prelude(this.hub.settings().retry);
                    delivery.observer.wrote(prelude.len());
                    if let ResumePoint::Live = resume {
                        delivery.start_live();
                    } else {
                        let mut delivery = this.delivery.take().expect("delivery is here");
                        *this.backplane_read = Some(Box::pin(async move {
                            delivery.start(resume).await;
                            delivery
                        }));
                    }
                    *this.stage = Stage::Starting;
                    return Poll::Ready(Some(prelude));
                }
                Stage::Starting => {
                    let now = Instant::now();
                    *this.last_write = now;
                    if let Some(every) = *this.heartbeat {
                        *this.heartbeat_at = now + every;
                    }
                    // The token's `exp` on the runtime's clock (a wall-clock
                    // time already past is now).
                    *this.expiry = this.expires_at.map(|at| {
                        now + at
                            .duration_since(SystemTime::now())
                            .unwrap_or(Duration::ZERO)
                    });
                    rearm(&mut this);
                    if let Some(catchup) = this.owed.take() {
                        let _ = follow(&mut this, FollowUp::Catchup(catchup), cx);
                    }
                    continue;
                }
                Stage::Live => {}
                Stage::Ending => {
                    // Everything accepted before closing began is already in
                    // the queues (closing waits for publishes under way):
                    // send it, a write at a time, then tell the client when
                    // to come back.
                    match delivery.flush_now() {
                        Flush::Done => {}
                        Flush::More => {
                            *this.stage = Stage::Ending;
                            continue;
                        }
                        Flush::Follow(follow_up) => {
                            *this.stage = Stage::Ending;
                            if follow(&mut this, follow_up, cx).is_pending() {
                                return Poll::Pending;
                            }
                            continue;
                        }
                    }
                    // A stream ended for its token gets the frame the page
                    // recognises (it fetches a new token and reopens); the
                    // others a jittered hint for when to come back.
                    let last = match (delivery.observer.end(), *this.expires_at) {
                        (SubscriptionEnd::TokenExpired, Some(at)) => sse::token_expired_frame(at),
                        _ => sse::retry_hint(this.hub.jittered_retry()),
                    };
                    delivery.observer.wrote(last.len());
                    *this.stage = Stage::Done;
                    return Poll::Ready(Some(last));
                }
                Stage::Done => {
                    // Ends the subscription (its span, its count, its
                    // queues); the seat and token follow on the next poll.
                    *this.stage = Stage::Done;
                    *this.delivery = None;
                    continue;
                }
            }
            let step = live_step(&mut this, cx);
            match step {
                LiveStep::Continue => {}
                LiveStep::Yield(bytes) => return Poll::Ready(Some(bytes)),
                LiveStep::Pending => return Poll::Pending,
                LiveStep::End(end) => {
                    *this.stage = Stage::Ending;
                    let delivery = this.delivery.as_mut().expect("delivery is here");
                    delivery.observer.ended(end);
                }
            }
        }
    }
}

/// Starts what [`Delivery::on_live_now`] left to do: a yield for the
/// watermark (`Pending`, woken at once), or a catch-up from history (boxed,
/// then `Ready`: poll it).
fn follow(
    this: &mut SubscriptionStreamProj<'_>,
    follow_up: FollowUp,
    cx: &mut Context<'_>,
) -> Poll<()> {
    match follow_up {
        FollowUp::Watermark => {
            *this.watermark_wait = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
        FollowUp::Catchup(catchup) => {
            let mut delivery = this.delivery.take().expect("delivery is here");
            *this.backplane_read = Some(Box::pin(async move {
                delivery.catch_up(catchup).await;
                delivery
            }));
            Poll::Ready(())
        }
    }
}

/// One look at the live stage, in the order a biased `select!` would take:
/// the live feed first (while it has events nothing else is polled, so the
/// drain signal, a mutex to check, is looked at once per wake-up, not once
/// per event; publishing stops before streams are closed, so the feed can't
/// starve the drain), then the drain signal, then the timer.
fn live_step(this: &mut SubscriptionStreamProj<'_>, cx: &mut Context<'_>) -> LiveStep {
    let delivery = this.delivery.as_mut().expect("delivery is here");
    match delivery.poll_live(cx) {
        Poll::Ready(None) => return LiveStep::End(SubscriptionEnd::Drained),
        Poll::Ready(Some(item)) => {
            *this.last_write = Instant::now();
            if let Some(follow_up) = delivery.on_live_now(item)
                && follow(this, follow_up, cx).is_pending()
            {
                return LiveStep::Pending;
            }
            return LiveStep::Continue;
        }
        Poll::Pending => {}
    }
    if this.signal.as_mut().poll(cx).is_ready() {
        let lifecycle = this.hub.lifecycle();
        if *this.closing || lifecycle.cut().is_cancelled() {
            return LiveStep::End(SubscriptionEnd::Cut);
        }
        *this.closing = true;
        *this.close_at = Some(lifecycle.close_slot());
        this.signal.set(lifecycle.cut().clone().cancelled_owned());
        rearm(this);
        return LiveStep::Continue;
    }
    if this.timer.as_mut().poll(cx).is_pending() {
        return LiveStep::Pending;
    }
    let now = Instant::now();
    if this.close_at.is_some_and(|at| at <= now) {
        return LiveStep::End(SubscriptionEnd::Drained);
    }
    // Never kept open past its token's expiry.
    if this.expiry.is_some_and(|at| at <= now) {
        return LiveStep::End(SubscriptionEnd::TokenExpired);
    }
    let mut step = LiveStep::Continue;
    if let Some(every) = *this.heartbeat
        && *this.heartbeat_at <= now
    {
        if now >= *this.last_write + every {
            delivery.observer.wrote(HEARTBEAT.len());
            *this.last_write = now;
            step = LiveStep::Yield(HEARTBEAT);
        }
        *this.heartbeat_at = *this.last_write + every;
    }
    rearm(this);
    step
}

/// Points the timer at the nearest of heartbeat, expiry and close slot.
fn rearm(this: &mut SubscriptionStreamProj<'_>) {
    let mut at = *this.heartbeat_at;
    if let Some(expiry) = *this.expiry {
        at = at.min(expiry);
    }
    if let Some(close_at) = *this.close_at {
        at = at.min(close_at);
    }
    this.timer.as_mut().reset(at);
}

mod parking;
pub(in crate::hub) use parking::ParkedStream;
#[cfg(test)]
mod tests;
