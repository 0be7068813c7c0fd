//! The in-memory backplane: one process, ids from a counter, history in a
//! bounded queue per topic, and the whole history bounded in topics and
//! bytes (`history.max_topics`, `history.max_bytes`).
//!
//! Topics are indexed by their newest event, least recently published
//! first. That one order serves both kinds of forgetting, each touching
//! only what it drops: the expiry sweep forgets topics whose newest event
//! is past the ttl (a few at a time, so a mass expiry never holds the lock
//! for long), and at a global bound the least recently published topic
//! loses its oldest events first. A topic that lost events keeps their
//! newest id (`evicted_through`), a topic forgotten whole leaves its newest
//! id in `forgotten_through`: a resume from before either is reported
//! incomplete, and the subscriber gets a gap frame, never a silent skip.
//!
//! Keyed publishes are recorded under the same lock as their events
//! ([`idempotency`]), for `limits.idempotency_window`, at most
//! `limits.idempotency_keys` at once.

mod idempotency;

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::future::{self, BoxFuture};
use tokio_util::sync::CancellationToken;

use super::presence::Presence;
use super::{Backplane, BackplaneError, FanOut, History, IdempotencyLimits, PageLimit};
use super::{BackplaneMetrics, HistoryBound};
use super::{Publication, RecordedIds};
use crate::model::{Event, EventDraft, EventId, Idempotency, TopicName};

/// Longest pause between two sweeps of expired history.
const EXPIRY_SWEEP_MAX: Duration = Duration::from_secs(30);
/// Shortest pause between two sweeps, for very short `history.ttl`s.
const EXPIRY_SWEEP_MIN: Duration = Duration::from_millis(10);
/// Topics the expiry sweep forgets per hold of the lock: a mass expiry
/// (a million topics) becomes many short holds with publishes in between,
/// not one long stall. Their events are freed after the lock is released.
pub const EXPIRY_BATCH: usize = 1_000;

/// What an event costs in history besides its encoded frame: the shared
/// `Event` (counts, id, topic handle, time, trace), its slot in the topic's
/// queue with the queue's spare capacity, the frame's allocation header.
/// An estimate that errs high, so that `history.max_bytes` errs safe.
const EVENT_OVERHEAD: usize = 256;
/// What a topic costs besides its events: its entries in the topic map and
/// the index, its queue's smallest buffer (plus its name, counted apart).
const TOPIC_OVERHEAD: usize = 256;

/// History bounds per topic, from `history.size` and `history.ttl`.
#[derive(Debug, Clone, Copy)]
pub struct HistoryLimits {
    pub size: usize,
    pub ttl: Duration,
}

/// History bounds for the whole hub, from `history.max_topics` and
/// `history.max_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryBounds {
    pub max_topics: usize,
    pub max_bytes: usize,
}

impl HistoryBounds {
    /// No bound but the per-topic limits (tests, benches).
    pub const NONE: Self = Self {
        max_topics: usize::MAX,
        max_bytes: usize::MAX,
    };
}

pub struct MemoryBackplane {
    /// Random per process: ids from before a restart have another epoch.
    epoch: u64,
    limits: HistoryLimits,
    bounds: HistoryBounds,
    /// Where evictions at the bounds are counted (none in unit tests).
    metrics: Option<Arc<BackplaneMetrics>>,
    /// The local fan-out, called under `state`'s lock so that events reach
    /// the live queues in id order across topics (multi-topic resume relies
    /// on it). It never blocks, so the lock is held for microseconds.
    fan_out: Arc<dyn FanOut>,
    state: Mutex<State>,
    /// What this process holds open: the whole cluster's, with one process.
    presence: Presence,
}

/// Invariants: every topic in `topics` holds at least one event and is in
/// `by_last_publish` under its newest event's sequence number; `bytes` is
/// the sum of the topics' `bytes`.
#[derive(Default)]
struct State {
    last_seq: u64,
    topics: HashMap<TopicName, TopicHistory>,
    /// Every topic under the sequence number of its newest event: least
    /// recently published first. Sequence numbers are assigned under the
    /// lock together with the accepted instant, so this is also the order
    /// in which topics' newest events expire.
    by_last_publish: BTreeMap<u64, TopicName>,
    /// What all history costs, as [`event_cost`] and [`topic_cost`] count.
    bytes: usize,
    /// Highest sequence number held by a topic whose history was later
    /// dropped entirely (expired or evicted); a resume on such a topic from
    /// before this point may have missed events.
    forgotten_through: u64,
    /// Keyed publishes of the idempotency window.
    idempotency: idempotency::Records,
}

struct TopicHistory {
    /// Each event with the monotonic instant it was accepted at (expiry
    /// follows this process's clock, not the wall clock the event carries).
    events: VecDeque<(Instant, Arc<Event>)>,
    /// Sequence number of the newest event evicted from this topic (0: none).
    evicted_through: u64,
    /// What this topic costs: its own overhead and its events'.
    bytes: usize,
}

/// Events evicted to stay within the global bounds, by bound.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Evicted {
    for_topics: u64,
    for_bytes: u64,
}

/// What one expiry sweep did (for tests and the figures they print).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ExpirySweep {
    /// Topics forgotten.
    pub forgotten: usize,
    /// Times the sweep took the lock.
    pub holds: usize,
    /// Most topics forgotten in one hold (at most [`EXPIRY_BATCH`]).
    pub largest_hold: usize,
}

fn event_cost(event: &Event) -> usize {
    event.frame.len() + event.topic.as_str().len() + EVENT_OVERHEAD
}

fn topic_cost(topic: &TopicName) -> usize {
    topic.as_str().len() + TOPIC_OVERHEAD
}

impl MemoryBackplane {
    pub fn new(limits: HistoryLimits, fan_out: Arc<dyn FanOut>) -> Self {
        // The epoch only has to differ between runs; the clock and a random
        // part make a collision practically impossible, and keeping it to
        // 32 bits keeps ids short on the wire.
        let clock = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        // Never 0, which names the position of a backplane not yet connected.
        let epoch = ((clock ^ fastrand::u64(..)) & 0xffff_ffff).max(1);
        // Nothing came before: the live queues start at the epoch's origin.
        fan_out.resync(EventId::new(epoch, 0));
        Self {
            epoch,
            limits,
            bounds: HistoryBounds::NONE,
            metrics: None,
            fan_out,
            state: Mutex::new(State::default()),
            presence: Presence::local(),
        }
    }

    /// Bounds the whole history, counting evictions in `metrics`.
    pub fn with_bounds(mut self, bounds: HistoryBounds, metrics: Arc<BackplaneMetrics>) -> Self {
        self.bounds = bounds;
        self.metrics = Some(metrics);
        self
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves the state consistent (every
        // mutation is a push or pop), so a poisoned lock is still usable.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Forgets every topic whose newest event expired by `now` (so all of
    /// its events did), [`EXPIRY_BATCH`] topics per hold of the lock.
    /// Called periodically by [`Backplane::run`], which yields between
    /// batches; topics still published to drop their expired events as
    /// they go (on publish and on read).
    pub fn expire(&self, now: Instant) -> ExpirySweep {
        let mut sweep = ExpirySweep::default();
        loop {
            let forgotten = self.expire_batch(now);
            sweep.record(forgotten);
            if forgotten < EXPIRY_BATCH {
                return sweep;
            }
            // Let a publisher waiting for the lock have it.
            std::thread::yield_now();
        }
    }

    /// One hold of the lock of [`MemoryBackplane::expire`]: returns how
    /// many topics it forgot.
    fn expire_batch(&self, now: Instant) -> usize {
        // Allocated, and the histories freed, outside the lock.
        let mut expired = Vec::with_capacity(EXPIRY_BATCH);
        let mut state = self.state();
        while expired.len() < EXPIRY_BATCH {
            let Some(name) = state.least_recently_published() else {
                break;
            };
            if !state.topics[&name].newest_expired(self.limits.ttl, now) {
                break;
            }
            expired.extend(state.remove_topic(&name));
        }
        drop(state);
        expired.len()
    }

    /// Keeps keyed publishes' records within `limits`.
    pub fn with_idempotency(self, limits: IdempotencyLimits) -> Self {
        self.state().idempotency = idempotency::Records::new(limits);
        self
    }

    /// Idempotency records held now (for tests).
    pub fn idempotency_records(&self) -> usize {
        self.state().idempotency.len()
    }

    /// Topics with retained history (for tests and metrics).
    pub fn topic_count(&self) -> usize {
        self.state().topics.len()
    }

    /// What all retained history costs, as `history.max_bytes` counts it.
    pub fn held_bytes(&self) -> usize {
        self.state().bytes
    }

    fn count_evictions(&self, evicted: Evicted) {
        let Some(metrics) = &self.metrics else {
            return;
        };
        if evicted.for_topics > 0 {
            metrics.history_evicted(HistoryBound::MaxTopics, evicted.for_topics);
        }
        if evicted.for_bytes > 0 {
            metrics.history_evicted(HistoryBound::MaxBytes, evicted.for_bytes);
        }
    }
}

impl ExpirySweep {
    fn record(&mut self, forgotten: usize) {
        self.forgotten += forgotten;
        self.holds += 1;
        self.largest_hold = self.largest_hold.max(forgotten);
    }
}

impl State {
    fn least_recently_published(&self) -> Option<TopicName> {
        self.by_last_publish
            .first_key_value()
            .map(|(_, name)| name.clone())
    }

    /// Appends an accepted event to its topic, then drops what the topic's
    /// limits no longer cover. A topic created anew may have had events
    /// before it was forgotten: it assumes the worst about those.
    fn append(&mut self, event: Arc<Event>, now: Instant, limits: HistoryLimits) {
        let seq = event.id.seq;
        let cost = event_cost(&event);
        let topic = match self.topics.entry(event.topic.clone()) {
            Entry::Occupied(entry) => {
                let topic = entry.into_mut();
                let name = self
                    .by_last_publish
                    .remove(&topic.newest_seq())
                    .expect("every topic is indexed by its newest event");
                self.by_last_publish.insert(seq, name);
                topic
            }
            Entry::Vacant(entry) => {
                let bytes = topic_cost(&event.topic);
                self.bytes += bytes;
                self.by_last_publish.insert(seq, event.topic.clone());
                entry.insert(TopicHistory {
                    events: VecDeque::new(),
                    evicted_through: self.forgotten_through,
                    bytes,
                })
            }
        };
        topic.events.push_back((now, event));
        topic.bytes += cost;
        self.bytes += cost;
        self.bytes -= topic.trim(limits, now);
    }

    /// Drops what `limits` no longer cover of one topic (a read must not
    /// serve expired events), and the topic itself if nothing is left.
    fn trim_topic(&mut self, name: &TopicName, limits: HistoryLimits, now: Instant) {
        let Some(topic) = self.topics.get_mut(name) else {
            return;
        };
        self.bytes -= topic.trim(limits, now);
        if topic.events.is_empty() {
            self.remove_topic(name);
        }
    }

    /// Takes a topic out whole, remembering the newest event it held: a
    /// resume on it from before then can't be complete any more. Returns it
    /// so that its events can be freed after the lock is released.
    fn remove_topic(&mut self, name: &TopicName) -> Option<TopicHistory> {
        let topic = self.topics.remove(name)?;
        let newest = topic.newest_seq();
        self.by_last_publish.remove(&newest);
        self.bytes -= topic.bytes;
        // invariant: no silent loss — expired or evicted, a resume from
        // before `newest` on this topic is reported incomplete.
        self.forgotten_through = self.forgotten_through.max(newest);
        Some(topic)
    }

    /// Evicts until history is within `bounds`, least recently published
    /// topic first: whole topics while there are too many, the oldest
    /// events while there are too many bytes. Never the event just
    /// appended, so one event larger than `max_bytes` stays until the next.
    /// Histories dropped whole go to `dropped`, to be freed after the lock.
    fn enforce(&mut self, bounds: HistoryBounds, dropped: &mut Vec<TopicHistory>) -> Evicted {
        let mut evicted = Evicted::default();
        while self.topics.len() > bounds.max_topics {
            let Some(name) = self.least_recently_published() else {
                break;
            };
            let topic = self.remove_topic(&name).expect("indexed topics exist");
            evicted.for_topics += topic.events.len() as u64;
            dropped.push(topic);
        }
        while self.bytes > bounds.max_bytes {
            let Some(name) = self.least_recently_published() else {
                break;
            };
            let topic = self.topics.get_mut(&name).expect("indexed topics exist");
            if topic.events.len() > 1 {
                self.bytes -= topic.evict_oldest();
            } else if topic.newest_seq() == self.last_seq {
                // Only the event just accepted is left.
                break;
            } else {
                dropped.extend(self.remove_topic(&name));
            }
            evicted.for_bytes += 1;
        }
        evicted
    }
}

impl TopicHistory {
    /// The newest event's sequence number, or the last evicted one's when
    /// all are gone.
    fn newest_seq(&self) -> u64 {
        self.events
            .back()
            .map_or(self.evicted_through, |(_, event)| event.id.seq)
    }

    fn newest_expired(&self, ttl: Duration, now: Instant) -> bool {
        self.events
            .back()
            .is_none_or(|(accepted_at, _)| now.saturating_duration_since(*accepted_at) > ttl)
    }

    /// Drops the oldest event; returns what it cost.
    fn evict_oldest(&mut self) -> usize {
        let Some((_, oldest)) = self.events.pop_front() else {
            return 0;
        };
        // invariant: no silent loss — a resume from before it gets a gap.
        self.evicted_through = oldest.id.seq;
        let cost = event_cost(&oldest);
        self.bytes -= cost;
        cost
    }

    /// Drops the events beyond `limits` (count and age), oldest first;
    /// returns what they cost.
    fn trim(&mut self, limits: HistoryLimits, now: Instant) -> usize {
        let mut freed = 0;
        while let Some((accepted_at, _)) = self.events.front() {
            let too_many = self.events.len() > limits.size;
            let too_old = now.saturating_duration_since(*accepted_at) > limits.ttl;
            if !(too_many || too_old) {
                break;
            }
            freed += self.evict_oldest();
        }
        freed
    }
}

/// The first page of `held` (shared, not copied), and where the next one
/// starts if anything is left.
fn page<'a>(
    mut held: impl ExactSizeIterator<Item = &'a (Instant, Arc<Event>)>,
    limit: PageLimit,
) -> (Vec<Arc<Event>>, Option<u64>) {
    let mut events = Vec::with_capacity(held.len().min(limit.events));
    let mut bytes = 0;
    while !limit.is_full(events.len(), bytes) {
        let Some((_, event)) = held.next() else {
            return (events, None);
        };
        bytes += event.frame.len();
        events.push(event.clone());
    }
    let next_after = (held.len() > 0).then(|| events.last().map_or(0, |e| e.id.seq));
    (events, next_after)
}

impl Backplane for MemoryBackplane {
    fn epoch(&self) -> u64 {
        self.epoch
    }

    fn presence(&self) -> &Presence {
        &self.presence
    }

    fn last_id(&self) -> BoxFuture<'_, Result<EventId, BackplaneError>> {
        let last = EventId::new(self.epoch, self.state().last_seq);
        Box::pin(future::ready(Ok(last)))
    }

    fn publish(
        &self,
        drafts: Vec<EventDraft>,
        once: Option<Idempotency>,
    ) -> BoxFuture<'_, Result<Publication, BackplaneError>> {
        let wall_clock = SystemTime::now();
        let mut accepted = Vec::with_capacity(drafts.len());
        let mut dropped = Vec::new();
        let mut evicted = Evicted::default();
        let mut state = self.state();
        // Taken under the lock: accepted instants then follow sequence
        // numbers, the order expiry relies on.
        let now = Instant::now();
        // Looked up and recorded under the lock that assigns the ids: of
        // two publishes racing on one key, one publishes, one finds it.
        if let Some(once) = &once {
            match state.idempotency.find(once, now) {
                idempotency::Found::Nothing => {}
                idempotency::Found::Same(ids) => {
                    return Box::pin(future::ready(Ok(Publication::Replayed(ids))));
                }
                idempotency::Found::Other => {
                    return Box::pin(future::ready(Ok(Publication::KeyReused)));
                }
            }
        }
        for draft in drafts {
            state.last_seq += 1;
            let event = Event::accept(draft, EventId::new(self.epoch, state.last_seq), wall_clock);
            state.append(event.clone(), now, self.limits);
            let more = state.enforce(self.bounds, &mut dropped);
            evicted.for_topics += more.for_topics;
            evicted.for_bytes += more.for_bytes;
            accepted.push(event);
        }
        if let (Some(once), Some(first)) = (&once, accepted.first()) {
            let ids = RecordedIds {
                first: first.id,
                count: accepted.len(),
            };
            state.idempotency.insert(once, ids, now);
        }
        // contract: fan-out order — under the lock that assigned the ids, so
        // calls are serialized and in id order across topics.
        self.fan_out.fan_out(&accepted);
        drop(state);
        drop(dropped);
        self.count_evictions(evicted);
        Box::pin(future::ready(Ok(Publication::Accepted(accepted))))
    }

    fn history<'a>(
        &'a self,
        topic: &'a TopicName,
        after_seq: u64,
        limit: PageLimit,
    ) -> BoxFuture<'a, Result<History, BackplaneError>> {
        let now = Instant::now();
        let mut state = self.state();
        state.trim_topic(topic, self.limits, now);
        let forgotten_through = state.forgotten_through;
        let history = match state.topics.get_mut(topic) {
            None => History {
                epoch: self.epoch,
                events: Vec::new(),
                complete: after_seq >= forgotten_through,
                next_after: None,
            },
            Some(topic) => {
                // Sequence numbers increase along the queue: binary search.
                let start = topic.events.partition_point(|(_, e)| e.id.seq <= after_seq);
                let (events, next_after) = page(topic.events.range(start..), limit);
                History {
                    epoch: self.epoch,
                    events,
                    complete: after_seq >= topic.evicted_through,
                    next_after,
                }
            }
        };
        Box::pin(future::ready(Ok(history)))
    }

    fn run(self: Arc<Self>, stop: CancellationToken) -> BoxFuture<'static, ()> {
        let every = (self.limits.ttl / 4).clamp(EXPIRY_SWEEP_MIN, EXPIRY_SWEEP_MAX);
        Box::pin(async move {
            let mut ticks = tokio::time::interval(every);
            loop {
                tokio::select! {
                    _ = ticks.tick() => {
                        // A batch at a time, letting other tasks (and the
                        // publishers waiting for the lock) in between.
                        while self.expire_batch(Instant::now()) == EXPIRY_BATCH {
                            tokio::task::yield_now().await;
                        }
                    }
                    _ = stop.cancelled() => return,
                }
            }
        })
    }
}

#[cfg(test)]
mod tests;
