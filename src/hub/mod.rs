//! The hub: accepts events, fans them out, resumes subscribers. It knows
//! nothing of HTTP or Redis: it takes and returns domain types, and reaches
//! ids and history through the [`Backplane`] trait.
//!
//! Invariants, stated once and tagged where they are upheld:
//! - **No silent loss**: a subscriber receives every event of its topics
//!   after its resume point, in id order, or a `gap` frame saying what it
//!   missed. ("invariant: no silent loss")
//! - **A slow subscriber never slows publish or anyone else**: publish only
//!   writes to bounded rings and never waits for a reader; a reader that
//!   falls behind catches up from history on its own time.
//!   ("invariant: slow subscriber")
//! - **Encode once**: an event's frame is built when it is accepted and then
//!   shared as `Bytes` by history and every subscriber. ("invariant: encode once")
//!
//! What the hub relies on from a backplane is stated on
//! [`crate::backplane::FanOut`] (id order across topics, serialized calls,
//! resync) and tagged where delivery depends on it ("contract: fan-out
//! order", "contract: resync").
//!
//! Files: `subscription` is a stream's loop and timers; `delivery` moves
//! events from history and live queues into frames (resume, dedup, order,
//! lag, resync); `live_queues` are the per-topic queues the backplane fans
//! out into and `live_feed` one subscription's receivers on them;
//! `frame_batch` gathers frames into one write.

mod delivery;
mod frame_batch;
mod in_flight;
mod lifecycle;
mod live_feed;
mod live_queues;
pub mod metrics;
mod readiness;
mod receipt;
mod shards;
mod shed;
mod spans;
mod subscription;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
#[cfg(test)]
mod wire_properties;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

pub use lifecycle::{Lifecycle, Phase};
pub use live_queues::{LiveQueues, LiveRouter, route_key};
pub use metrics::{
    CounterSnapshot, HubMetrics, Instruments, PublishOutcome, ReplayTrigger, Snapshot,
    SubscriptionEnd,
};
pub use readiness::Readiness;
pub use receipt::{IdempotencyOutcome, Receipt};
pub use shed::{Shed, ShedReason};
pub use subscription::Subscription;

use tracing::Instrument;

use crate::backplane::{Backplane, BackplaneError, BackplaneMetrics, Publication, Replica};
use crate::model::{Event, EventDraft, Idempotency, ResumePoint, TopicName};

/// The hub's share of the configuration.
#[derive(Debug, Clone)]
pub struct HubSettings {
    /// Silence after which a stream gets a heartbeat comment; `None`: never.
    pub heartbeat: Option<Duration>,
    /// `retry:` hint sent on connect, and base of the jittered hint on close.
    pub retry: Duration,
    pub max_subscribers: usize,
    pub max_topics_per_subscription: usize,
    pub max_event_bytes: usize,
    /// Ring length of each topic's live queue, in events (`stream.queue`).
    pub queue: usize,
    /// Writer shards that hold idle live streams (`stream.shards`); 0:
    /// every stream keeps a task of its own.
    pub shards: usize,
}

/// Cheap to clone: every request handler holds one.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<HubInner>,
}

struct HubInner {
    settings: HubSettings,
    /// The topics' live queues: where the backplane fans out to.
    live_queues: Arc<LiveQueues>,
    backplane: Arc<dyn Backplane>,
    lifecycle: Lifecycle,
    /// Open subscriptions, for the `max_subscribers` limit.
    subscribers: AtomicUsize,
    /// Shared with the live queues, the backplane and every subscription.
    metrics: Arc<HubMetrics>,
    /// The backplane's figures, whose `up` gauge is read at scrape time.
    backplane_metrics: Arc<BackplaneMetrics>,
    /// Every family of the process, rendered by [`Hub::render_metrics`].
    registry: crate::metrics::Registry,
    /// Keyed publishes under way here (a retry meanwhile is refused).
    in_flight: in_flight::InFlightKeys,
    /// Where idle live streams are parked.
    shards: shards::Shards,
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("the hub is shutting down and accepts no new events; publish to another replica")]
    Closing,
    #[error(
        "event {index} is {size} bytes of data, over the limit of {limit} bytes (limits.max_event_bytes)"
    )]
    TooLarge {
        index: usize,
        size: usize,
        limit: usize,
    },
    #[error("no events to publish")]
    Empty,
    /// A publish with the same idempotency key (and publisher) is under way
    /// on this replica: nothing was published by this one.
    #[error(
        "a publish with this Idempotency-Key is still in flight; retry once it is answered \
         (the retry then gets its answer)"
    )]
    KeyInFlight,
    /// The idempotency key is recorded for a request that published other
    /// events (another route, topic or body): nothing was published.
    #[error(
        "this Idempotency-Key was already used for a different request (another route, topic \
         or body) within limits.idempotency_window; use a new key for a new publish"
    )]
    KeyReused,
    #[error(transparent)]
    Backplane(#[from] BackplaneError),
}

/// A subscribe that no retry can fix (a shed is not an error: see [`Admission`]).
#[derive(Debug, thiserror::Error)]
pub enum SubscribeError {
    #[error("name at least one topic, e.g. ?topic=orders.42")]
    NoTopics,
    #[error(
        "{count} topics requested, over the limit of {limit} per subscription (limits.max_topics_per_subscription)"
    )]
    TooManyTopics { count: usize, limit: usize },
}

/// What the hub makes of a valid subscribe.
pub enum Admission {
    /// An open stream.
    Open(Subscription),
    /// Not now: a `retry:` hint and the end (see [`shed`](Shed)).
    Shed(Shed),
}

impl Admission {
    /// The SSE bytes, whichever the answer.
    pub fn into_frames(self) -> impl futures_util::Stream<Item = bytes::Bytes> + Send + 'static {
        match self {
            Self::Open(subscription) => {
                futures_util::future::Either::Left(subscription.into_frames())
            }
            Self::Shed(shed) => futures_util::future::Either::Right(shed.into_frames()),
        }
    }

    /// The SSE bytes as the server's stream writer takes them: an open
    /// stream may be parked on a writer shard while it idles.
    pub fn into_source(self) -> std::pin::Pin<Box<dyn crate::server::EventSource>> {
        match self {
            Self::Open(subscription) => Box::pin(subscription.into_frames()),
            Self::Shed(shed) => Box::pin(crate::server::FramesSource(Box::pin(shed.into_frames()))),
        }
    }
}

/// Decides, per subscription, what an event becomes on the stream: its
/// frame, another frame, or nothing. For protocols that carry their own
/// view of an event (Mercure's ids and private updates): a stream without a
/// filter writes each event's shared frame as is.
pub trait FrameFilter: Send + 'static {
    /// The bytes to write for `event`; `None` skips it (the cursor still
    /// moves past it).
    fn frame(&mut self, event: &Event) -> Option<bytes::Bytes>;
}

/// What a subscriber asks for.
#[derive(Default)]
pub struct SubscribeRequest {
    pub topics: Vec<TopicName>,
    pub resume: ResumePoint,
    /// The stream ends by then, with a `token_expired` frame: the `exp` of
    /// the token it was opened with. `None`: no token was needed.
    pub expires_at: Option<SystemTime>,
    /// `None`: every event's own frame (ssehub's routes).
    pub filter: Option<Box<dyn FrameFilter>>,
    /// `None`: every event of the topics wakes the stream (ssehub's
    /// routes); see [`LiveRoutes`].
    pub live_routes: Option<LiveRoutes>,
}

/// Of one of a subscription's topics, only the events naming one of
/// `keys` (by `router`) wake the stream live; its history, resume and
/// catch-up still read the whole topic, and the subscription's filter still
/// decides what goes out. A Mercure subscription whose selectors are exact
/// topics uses it, so it isn't woken by every Mercure update.
pub struct LiveRoutes {
    pub topic: TopicName,
    pub keys: Vec<u64>,
    pub router: std::sync::Arc<dyn LiveRouter>,
}

impl std::fmt::Debug for SubscribeRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubscribeRequest")
            .field("topics", &self.topics)
            .field("resume", &self.resume)
            .field("expires_at", &self.expires_at)
            .field("filter", &self.filter.is_some())
            .field(
                "live_routes",
                &self.live_routes.as_ref().map(|r| r.keys.len()),
            )
            .finish()
    }
}

/// What a hub is built from, each part made beforehand, in order: the
/// metric families, the live queues (with the hub's metrics), then the
/// backplane that fans accepted events out into them.
pub struct HubParts {
    pub settings: HubSettings,
    pub instruments: Instruments,
    pub live_queues: Arc<LiveQueues>,
    pub backplane: Arc<dyn Backplane>,
}

impl Hub {
    pub fn from_parts(parts: HubParts) -> Self {
        let HubParts {
            settings,
            instruments,
            live_queues,
            backplane,
        } = parts;
        let Instruments {
            registry,
            hub: metrics,
            backplane: backplane_metrics,
        } = instruments;
        let lifecycle = Lifecycle::default();
        let shards = shards::Shards::new(
            settings.shards,
            live_queues.clone(),
            lifecycle.closing().clone(),
            lifecycle.cut().clone(),
            metrics.clone(),
        );
        Self {
            inner: Arc::new(HubInner {
                settings,
                live_queues,
                backplane,
                lifecycle,
                subscribers: AtomicUsize::new(0),
                metrics,
                backplane_metrics,
                registry,
                in_flight: in_flight::InFlightKeys::default(),
                shards,
            }),
        }
    }

    /// A hub around the backplane `make_backplane` builds from the hub's
    /// live queues, with the metrics of a process without auth (tests,
    /// benchmarks).
    pub fn new(
        settings: HubSettings,
        make_backplane: impl FnOnce(Replica) -> Arc<dyn Backplane>,
    ) -> Self {
        let (instruments, ()) = metrics::register(|_| ());
        let live_queues = Arc::new(LiveQueues::new(settings.queue, instruments.hub.clone()));
        let backplane = make_backplane(Replica {
            fan_out: live_queues.clone(),
            metrics: instruments.backplane.clone(),
        });
        Self::from_parts(HubParts {
            settings,
            instruments,
            live_queues,
            backplane,
        })
    }

    pub fn metrics(&self) -> &Arc<HubMetrics> {
        &self.inner.metrics
    }

    /// The metrics exposition, with the gauges read from the hub now.
    pub fn render_metrics(&self, openmetrics: bool) -> String {
        self.inner.metrics.set_state(Snapshot {
            subscribers: self.subscriber_count(),
            live_topics: self.inner.live_queues.live_topics(),
            phase: self.inner.lifecycle.phase(),
        });
        let up = self.inner.backplane.is_available();
        self.inner.backplane_metrics.set_up(up);
        crate::metrics::render(&self.inner.registry, openmetrics)
    }

    /// Starts the writer shards (`stream.shards`) now; otherwise the first
    /// stream parked starts them. Inside the runtime.
    pub fn start_writer_shards(&self) {
        self.inner.shards.start_now();
    }

    pub fn settings(&self) -> &HubSettings {
        &self.inner.settings
    }

    pub fn lifecycle(&self) -> &Lifecycle {
        &self.inner.lifecycle
    }

    pub fn backplane(&self) -> &Arc<dyn Backplane> {
        &self.inner.backplane
    }

    pub fn subscriber_count(&self) -> usize {
        self.inner.subscribers.load(Ordering::Relaxed)
    }

    /// Topics with at least one subscriber on this process.
    pub fn live_topic_count(&self) -> usize {
        self.inner.live_queues.live_topics()
    }

    /// Ready to take new clients, or why not: draining, or the backplane
    /// unreachable (auth's own reason, a JWKS not read yet, is auth's).
    pub fn readiness(&self) -> Readiness {
        Readiness::of(
            self.inner.lifecycle.phase(),
            self.inner.backplane.is_available(),
        )
    }

    /// Accepts `drafts` as one unit: all get ids and reach subscribers, or
    /// none does. Returns them in id order.
    pub async fn publish(&self, drafts: Vec<EventDraft>) -> Result<Vec<Arc<Event>>, PublishError> {
        match self.publish_once(drafts, None).await? {
            Receipt::Published(events) => Ok(events),
            Receipt::Replayed(_) => unreachable!("only a keyed publish is replayed"),
        }
    }

    /// [`Hub::publish`], at most once per idempotency record: a publish
    /// whose record an earlier one left gets that one's ids and publishes
    /// nothing, or [`PublishError::KeyReused`] when it would publish other
    /// events; one whose key is under way here gets
    /// [`PublishError::KeyInFlight`]. Without `once`, a plain publish.
    /// The caller counts the outcome (`events_published`,
    /// `idempotent_publishes`), as it answers it.
    pub async fn publish_once(
        &self,
        mut drafts: Vec<EventDraft>,
        once: Option<Idempotency>,
    ) -> Result<Receipt, PublishError> {
        let observer = spans::AcceptObserver::start(&mut drafts);
        let result = self
            .accept(drafts, once)
            .instrument(observer.span().clone())
            .await;
        observer.finish(&result);
        result
    }

    async fn accept(
        &self,
        drafts: Vec<EventDraft>,
        once: Option<Idempotency>,
    ) -> Result<Receipt, PublishError> {
        if drafts.is_empty() {
            return Err(PublishError::Empty);
        }
        let limit = self.inner.settings.max_event_bytes;
        if let Some((index, draft)) = drafts
            .iter()
            .enumerate()
            .find(|(_, d)| d.data.len() > limit)
        {
            return Err(PublishError::TooLarge {
                index,
                size: draft.data.len(),
                limit,
            });
        }
        let _claim = match &once {
            Some(once) => Some(
                self.inner
                    .in_flight
                    .claim(once.record)
                    .ok_or(PublishError::KeyInFlight)?,
            ),
            None => None,
        };
        let Some(_in_flight) = self.inner.lifecycle.publish_token() else {
            return Err(PublishError::Closing);
        };
        match self.inner.backplane.publish(drafts, once).await? {
            Publication::Accepted(events) => Ok(Receipt::Published(events)),
            Publication::Replayed(ids) => Ok(Receipt::Replayed(ids)),
            Publication::KeyReused => Err(PublishError::KeyReused),
        }
    }

    /// Opens a subscription. Its receivers are attached before any history
    /// is read, so an event published while a resume is being set up is
    /// either in the history read or in the live queue (invariant: no
    /// silent loss); overlaps are removed by id.
    /// At capacity or while draining the subscriber is shed (the one
    /// answer EventSource retries), not refused.
    pub fn subscribe(&self, request: SubscribeRequest) -> Result<Admission, SubscribeError> {
        let settings = &self.inner.settings;
        let mut topics = request.topics;
        topics.sort();
        topics.dedup();
        if topics.is_empty() {
            return Err(SubscribeError::NoTopics);
        }
        if topics.len() > settings.max_topics_per_subscription {
            return Err(SubscribeError::TooManyTopics {
                count: topics.len(),
                limit: settings.max_topics_per_subscription,
            });
        }
        if self.inner.lifecycle.phase() == Phase::Closing {
            return Ok(Admission::Shed(self.shed(ShedReason::Draining)));
        }
        let count = self.inner.subscribers.fetch_add(1, Ordering::AcqRel);
        let seat = SubscriberSeat { hub: self.clone() };
        if count >= settings.max_subscribers {
            drop(seat);
            return Ok(Admission::Shed(self.shed(ShedReason::Capacity)));
        }
        Ok(Admission::Open(Subscription::open(
            seat,
            topics,
            request.resume,
            request.expires_at,
            request.filter,
            request.live_routes,
        )))
    }

    /// Sheds a subscriber for `reason`: also for callers that decide to
    /// shed before asking the hub (a rate limit).
    pub fn shed(&self, reason: ShedReason) -> Shed {
        Shed::new(self, reason)
    }

    /// A reconnection delay with jitter, for streams the hub ends on purpose,
    /// so their clients don't all come back in the same instant.
    pub fn jittered_retry(&self) -> Duration {
        self.inner.settings.retry.mul_f64(1.0 + fastrand::f64())
    }
}

/// One taken subscriber slot; gives it back when dropped.
pub(crate) struct SubscriberSeat {
    hub: Hub,
}

impl Drop for SubscriberSeat {
    fn drop(&mut self) {
        self.hub.inner.subscribers.fetch_sub(1, Ordering::AcqRel);
    }
}
