//! One subscriber's stream of SSE bytes: the prelude, then what
//! [`Delivery`] makes of history and the live queues, heartbeats in
//! silence, and a clean end on drain. This file is the stream loop and its
//! timers; the ordering logic lives in `hub::delivery`.
//!
//! The stream is polled by the connection's own task; there is no extra task
//! per subscriber, and an idle one costs a parked future and a queue cursor.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::stream::Stream;
use tokio::time::Instant;
use tokio_util::task::task_tracker::TaskTrackerToken;

use super::SubscriberSeat;
use super::delivery::Delivery;
use super::encoder::{self, HEARTBEAT};
use super::event_id::ResumePoint;
use super::live_feed::{LiveFeed, LiveItem};
use super::topic::TopicName;
use crate::metrics::SubscriptionEnd;

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
    /// Keeps the drain waiting until this stream has ended.
    stream_token: TaskTrackerToken,
}

impl Subscription {
    pub(super) fn open(
        seat: SubscriberSeat,
        topics: Vec<TopicName>,
        resume: ResumePoint,
        expires_at: Option<SystemTime>,
    ) -> Self {
        let hub = &seat.hub;
        let feed = LiveFeed::attach(hub.inner.live_queues.clone(), &topics);
        let stream_token = hub.inner.lifecycle.stream_token();
        Self {
            seat,
            topics,
            feed,
            resume,
            expires_at,
            stream_token,
        }
    }

    /// The SSE bytes for this subscriber, ending on drain or when the hub
    /// goes away. Dropping the stream (client gone) releases everything.
    pub fn into_frames(self) -> impl Stream<Item = Bytes> + Send + 'static {
        let Subscription {
            seat,
            topics,
            feed,
            resume,
            expires_at,
            stream_token,
        } = self;
        let hub = seat.hub.clone();
        let mut delivery = Delivery::new(&hub, topics, feed, &resume);
        async_stream::stream! {
            let _seat = seat;
            let _stream_token = stream_token;
            let settings = hub.settings();
            let lifecycle = hub.lifecycle();
            let prelude = encoder::stream_prelude(settings.retry);
            delivery.observer.wrote(prelude.len());
            yield prelude;

            delivery.start(resume).await;
            while let Some(chunk) = delivery.next_chunk() {
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
            // The token's `exp` on the runtime's clock (a wall-clock time
            // already past is now).
            let expiry = expires_at.map(|at| {
                Instant::now() + at.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO)
            });
            let expiry_timer = tokio::time::sleep_until(expiry.unwrap_or(last_write + FAR_FUTURE));
            tokio::pin!(expiry_timer);

            loop {
                // The live feed comes first: when it has an event, nothing
                // else is polled, so the drain tokens (each a mutex to check)
                // are looked at once per wake-up, when the feed runs dry,
                // not once per event. Publishing stops before streams are
                // closed, so the feed can't starve the drain branches.
                let step = tokio::select! {
                    biased;
                    item = delivery.next_live() => Step::Live(item),
                    _ = &mut cut => Step::End(SubscriptionEnd::Cut),
                    _ = &mut closing_signal, if !closing => Step::CloseAt(lifecycle.close_slot()),
                    _ = &mut close_timer, if closing => Step::End(SubscriptionEnd::Drained),
                    // Never kept open past its token's expiry.
                    _ = &mut expiry_timer, if expiry.is_some() => Step::End(SubscriptionEnd::TokenExpired),
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
                        while let Some(chunk) = delivery.next_chunk() {
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
            while let Some(chunk) = delivery.next_chunk() {
                yield chunk;
            }
            // A stream ended for its token gets the frame the page
            // recognises (it fetches a new token and reopens); the others a
            // jittered hint for when to come back.
            let last = match (delivery.observer.end(), expires_at) {
                (SubscriptionEnd::TokenExpired, Some(at)) => encoder::token_expired_frame(at),
                _ => encoder::retry_hint(hub.jittered_retry()),
            };
            delivery.observer.wrote(last.len());
            yield last;
            // Ends the subscription (its span, its count, its queues) now,
            // not whenever the server drops the finished body.
            drop(delivery);
        }
    }
}

enum Step {
    Live(Option<LiveItem>),
    Heartbeat,
    CloseAt(Instant),
    End(SubscriptionEnd),
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
            queue: 16,
        };
        Hub::new(settings, |replica| {
            let limits = HistoryLimits {
                size: 100,
                ttl: Duration::from_secs(3600),
            };
            std::sync::Arc::new(MemoryBackplane::new(limits, replica.fan_out))
                as std::sync::Arc<dyn Backplane>
        })
    }

    fn frames(hub: &Hub) -> impl futures_util::Stream<Item = bytes::Bytes> + Unpin {
        let request = SubscribeRequest {
            topics: vec![TopicName::parse("t").unwrap()],
            resume: ResumePoint::Live,
            expires_at: None,
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
    async fn a_stream_ends_at_its_token_expiry_with_the_expiry_frame() {
        let hub = hub();
        let lifetime = Duration::from_secs(40);
        let expires_at = std::time::SystemTime::now() + lifetime;
        let request = SubscribeRequest {
            topics: vec![TopicName::parse("t").unwrap()],
            resume: ResumePoint::Live,
            expires_at: Some(expires_at),
        };
        let mut frames = Box::pin(hub.subscribe(request).unwrap().into_frames());
        let opened = Instant::now();
        frames.next().await.unwrap();
        publish(&hub).await;
        assert!(frames.next().await.unwrap().starts_with(b"id: "));
        let mut last = None;
        while let Some(frame) = frames.next().await {
            last = Some(frame);
        }
        let ended = opened.elapsed();
        assert!(
            ended >= lifetime - Duration::from_secs(1)
                && ended <= lifetime + Duration::from_secs(1),
            "ended after {ended:?}"
        );
        let last = last.unwrap();
        assert!(
            last.starts_with(b"event: token_expired\ndata: {\"exp\":"),
            "{last:?}"
        );
        let metrics = hub.render_metrics(false);
        assert!(
            metrics.contains("ssehub_subscriptions_closed_total{reason=\"token_expired\"} 1\n"),
            "{metrics}"
        );
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
