//! Backplanes: where ids come from, where history lives, and how an accepted
//! event reaches the fan-out of every replica.
//!
//! The hub talks to a `dyn Backplane` only, built by [`connect`] from the
//! configuration. `memory` serves one process; a Redis backplane (several
//! replicas) implements the same trait: it assigns ids in Redis, keeps
//! history there, and calls [`FanOut::fan_out`] on each replica as events
//! arrive from Redis. Whatever a backplane must do in the background (the
//! memory backplane's expiry sweep, a Redis reader) runs in
//! [`Backplane::run`], which the app spawns once and stops after the drain.
//! Besides events, a backplane lists what every replica holds open
//! ([`presence`]: the Mercure protocol's active subscriptions).

mod config;
mod idempotency;
mod memory;
mod metrics;
pub mod presence;
mod redis;

use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use crate::model::{Event, EventDraft, EventId, Idempotency, TopicName};
use crate::setting::InvalidSetting;

pub use config::{
    BackplaneConfig, BackplaneKind, REDIS_COMMAND_TIMEOUT_DEFAULT, REDIS_CONNECT_TIMEOUT_DEFAULT,
    REDIS_KEY_PREFIX_DEFAULT, REDIS_REPLICAS_ACK_TIMEOUT_DEFAULT, RedisConfig, SentinelConfig,
};
pub use idempotency::{
    IDEMPOTENCY_KEYS_DEFAULT, IDEMPOTENCY_WINDOW_DEFAULT, IdempotencyLimits, RecordedIds,
};
pub use memory::{EXPIRY_BATCH, ExpirySweep, HistoryBounds, HistoryLimits, MemoryBackplane};
pub use metrics::{BackplaneMetrics, HistoryBound};
pub use redis::RedisBackplane;

/// The local fan-out, as seen by a backplane.
///
/// The contract a backplane MUST keep (multi-topic delivery relies on it,
/// see "contract: fan-out order" in `hub::delivery`):
/// - **id order across topics**: `fan_out` receives events in increasing id
///   order, over all topics together, and never an event at or below one it
///   was already given (within an epoch);
/// - **serialized**: calls to `fan_out` and `resync` never overlap; a
///   backplane makes them from one place at a time (the memory backplane
///   under its lock, a Redis backplane from its one reader task);
/// - **no waiting**: both only hand events or markers to in-memory queues and
///   return at once, so a backplane may call them while holding a lock.
pub trait FanOut: Send + Sync + 'static {
    /// Hands accepted events to the local subscribers' live queues.
    fn fan_out(&self, events: &[Arc<Event>]);

    /// Tells every local subscriber to re-read history from its cursor up to
    /// `through` (a backplane that lost its feed for a while calls it after
    /// reconnecting; nothing up to `through` will come through `fan_out`).
    /// When `through.epoch` differs from the epoch the subscribers are in,
    /// history started over (e.g. Redis came back empty): each stream gets
    /// one gap frame and continues in the new epoch, never a silent reset.
    /// Every backplane calls it once before its first `fan_out`, to say where
    /// the live queues start.
    fn resync(&self, through: EventId);
}

/// What a backplane is given of the replica it serves.
#[derive(Clone)]
pub struct Replica {
    /// Where accepted events go on this process.
    pub fan_out: Arc<dyn FanOut>,
    /// The backplane's own figures.
    pub metrics: Arc<BackplaneMetrics>,
}

/// One page of a topic's events after a given position, oldest first.
#[derive(Debug, Default)]
pub struct History {
    /// The epoch the events (and the position asked about) belong to.
    pub epoch: u64,
    pub events: Vec<Arc<Event>>,
    /// False when some event after the position is no longer held (evicted by
    /// count or age): the subscriber must be told about the gap.
    pub complete: bool,
    /// `Some(seq)`: the page stopped at its limit, and more events may
    /// follow; the next page is read after `seq` (the last event's, or
    /// beyond it when the page skipped expired entries). `None`: this page
    /// holds everything after the position.
    pub next_after: Option<u64>,
}

/// How much one history read returns at most. A page always holds at least
/// one event (when there is one), however large.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageLimit {
    pub events: usize,
    /// Bytes of event data as stored (the encoded frame in memory, the wire
    /// JSON in Redis): the bound on what one read copies.
    pub bytes: usize,
}

impl PageLimit {
    /// Whether a page holding `events` events of `bytes` bytes so far is
    /// full; the first event always fits.
    pub fn is_full(self, events: usize, bytes: usize) -> bool {
        events > 0 && (events >= self.events || bytes >= self.bytes)
    }
}

/// What became of a publish call.
#[derive(Debug)]
pub enum Publication {
    /// Published now (and its key, if any, recorded with it), in id order.
    Accepted(Vec<Arc<Event>>),
    /// The key is recorded, with the same fingerprint, by an earlier
    /// publish, which was given these ids: nothing was published now.
    Replayed(RecordedIds),
    /// The key is recorded with another fingerprint (the key was reused
    /// for another request): nothing was published.
    KeyReused,
}

impl Publication {
    /// The events of an unkeyed publish (which is always accepted or fails).
    pub fn accepted(self) -> Vec<Arc<Event>> {
        match self {
            Self::Accepted(events) => events,
            Self::Replayed(_) | Self::KeyReused => {
                unreachable!("only a keyed publish is replayed or finds its key reused")
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BackplaneError {
    /// The backplane can't accept or serve events right now (e.g. Redis
    /// down), and known so before the work was handed over, or refused by
    /// it: nothing was stored.
    #[error("the backplane is unavailable: {reason}")]
    Unavailable {
        reason: String,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// A publish was handed to the backplane but no answer came (Redis
    /// stalled, or the connection broke with the script in flight): it may
    /// have been stored and delivered, or not, and may still be, later.
    #[error("the publish was sent to the backplane but its outcome is unknown: {reason}")]
    OutcomeUnknown {
        reason: String,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// The publish was stored on the Redis master (and may have been
    /// delivered) but fewer replicas than `backplane.redis.replicas_ack`
    /// confirmed it in time: a failover now could lose it. Retrying with
    /// the same idempotency key is safe either way.
    #[error("the publish is not confirmed by enough Redis replicas: {reason}")]
    NotReplicated { reason: String },
}

impl BackplaneError {
    pub fn unavailable(
        reason: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self::Unavailable {
            reason: reason.into(),
            source: Some(source.into()),
        }
    }
}

pub trait Backplane: Send + Sync + 'static {
    /// The epoch in force: names the id space of the history; ids of another
    /// epoch predate it.
    fn epoch(&self) -> u64;

    /// The newest id assigned anywhere (on any replica), so that "is this
    /// `Last-Event-ID` ours and not from the future?" has one answer on
    /// every replica, even before this one has received that event.
    fn last_id(&self) -> BoxFuture<'_, Result<EventId, BackplaneError>>;

    /// Assigns ids to `drafts`, stores them in history and hands them to the
    /// fan-out, all or none. Returns them in id order.
    ///
    /// With `once`, first looks its record up, in the same atomic step:
    /// recorded with the same fingerprint, nothing is published and the
    /// recorded ids come back ([`Publication::Replayed`]); with another
    /// fingerprint, nothing is published ([`Publication::KeyReused`]);
    /// not recorded, the events are published and the record is kept with
    /// them for the idempotency window (see `idempotency`).
    fn publish(
        &self,
        drafts: Vec<EventDraft>,
        once: Option<Idempotency>,
    ) -> BoxFuture<'_, Result<Publication, BackplaneError>>;

    /// Events of `topic` with a sequence number above `after_seq` in the
    /// epoch in force, oldest first, one page of at most `limit` (replays
    /// read history a page at a time, as their stream is written).
    fn history<'a>(
        &'a self,
        topic: &'a TopicName,
        after_seq: u64,
        limit: PageLimit,
    ) -> BoxFuture<'a, Result<History, BackplaneError>>;

    /// This replica's presence records, which it enters and leaves (see
    /// [`presence`]).
    fn presence(&self) -> &presence::Presence;

    /// The presence records of every live replica, this one's included;
    /// a backplane of one process lists its own.
    fn presence_everywhere(&self) -> BoxFuture<'_, Result<Vec<Bytes>, BackplaneError>> {
        let records = self.presence().records();
        Box::pin(std::future::ready(Ok(records)))
    }

    /// False while the backplane can't accept publishes (readiness follows).
    fn is_available(&self) -> bool {
        true
    }

    /// The backplane's background work, until `stop` is cancelled. Spawned
    /// once by the app; it keeps running through the drain so that streams
    /// get every event accepted before it.
    fn run(self: Arc<Self>, stop: CancellationToken) -> BoxFuture<'static, ()>;
}

/// Builds the backplane `config.kind` names, keeping history within
/// `limits` and `bounds`. Fails only on configuration it can't use: a
/// backplane server that can't be reached yet is not an error (the hub
/// starts not ready and `run` keeps trying).
pub async fn connect(
    config: &BackplaneConfig,
    limits: HistoryLimits,
    bounds: HistoryBounds,
    idempotency: IdempotencyLimits,
    replica: Replica,
) -> Result<Arc<dyn Backplane>, InvalidSetting> {
    match config.kind {
        BackplaneKind::Memory => Ok(Arc::new(
            MemoryBackplane::new(limits, replica.fan_out)
                .with_bounds(bounds, replica.metrics)
                .with_idempotency(idempotency),
        )),
        BackplaneKind::Redis => {
            let backplane = RedisBackplane::new(&config.redis, limits, bounds, replica)
                .map_err(|error| InvalidSetting::new("backplane.redis.url", error.to_string()))?
                .with_idempotency_window(idempotency.window);
            Ok(Arc::new(backplane))
        }
    }
}
