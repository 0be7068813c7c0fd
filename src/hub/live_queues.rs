//! The live side of fan-out: one broadcast queue per topic that has
//! subscribers on this process, and the position those queues stand at.
//!
//! A topic's queue is a ring of `stream.queue` items shared by its
//! subscribers. A topic may also have routed queues ([`LiveRouter`]): a
//! subscriber that wants only the events naming some keys (a Mercure
//! subscription with exact topics, on the one internal topic every Mercure
//! update rides) listens to those keys' queues instead of the whole
//! topic's, and isn't woken for the rest. Sending writes one slot and wakes the waiting subscribers;
//! it never waits for any of them (invariant "a slow subscriber never blocks
//! publish": a subscriber that falls a whole ring behind is told it lagged
//! and catches up from history instead).

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use tokio::sync::broadcast;

use super::HubMetrics;
use super::shards::ShardWake;
use super::spans::FanOutObserver;
use crate::backplane::FanOut;
use crate::model::Event;
use crate::model::EventId;
use crate::model::TopicName;

/// What a live queue carries.
#[derive(Debug, Clone)]
pub(crate) enum Live {
    Event(Arc<Event>),
    /// Re-read history from your cursor (see [`FanOut::resync`]). Carries
    /// the resync's generation, so a subscriber of several topics, which
    /// finds one marker in each queue, replays once.
    Resync(u64),
}

/// Where the live queues stand after the latest resync, read together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SyncPoint {
    /// The epoch of the events the queues carry now.
    pub epoch: u64,
    /// How many resyncs there have been; a replay that began at one
    /// generation and ends at another read a mix of two positions.
    pub generation: u64,
    /// Where a replay that starts now reads history through: the highest
    /// sequence number any live queue may have been sent (see
    /// [`LiveQueues::sync_point`]); a subscriber attached before this was
    /// read gets every later event on its queues.
    pub watermark: u64,
}

/// Which routed queues of a topic an event goes to: the keys it names.
/// Called once per event per fan-out (not per subscriber), and only for a
/// topic that has routed queues.
pub trait LiveRouter: Send + Sync {
    /// Calls `route` with the key ([`route_key`]) of each route of `event`.
    fn routes(&self, event: &Event, route: &mut dyn FnMut(u64));
}

/// The key of a route named `name`: the same on both sides (the router
/// and the subscriber), within this process.
pub fn route_key(name: &str) -> u64 {
    let mut hasher = DefaultHasher::new();
    name.hash(&mut hasher);
    hasher.finish()
}

/// The live queues of one topic.
#[derive(Default)]
struct TopicQueues {
    /// Every event of the topic.
    whole: Option<WholeQueue>,
    /// Only the events that name a key (see [`LiveRouter`]).
    routed: HashMap<u64, broadcast::Sender<Live>>,
    /// Set by the first routed subscriber.
    router: Option<Arc<dyn LiveRouter>>,
    /// Writer shards reading `whole` for streams they hold: told when it
    /// has something new (they don't wait on the queue like a task).
    shards: Vec<ShardInterest>,
}

/// A topic's queue of every event, and how many one-topic streams and
/// writer shards read it: a stream asks this count, without the map's
/// lock, whether its topic is shared (see [`LiveQueues::attach_reader`]).
struct WholeQueue {
    sender: broadcast::Sender<Live>,
    readers: Arc<AtomicUsize>,
}

impl WholeQueue {
    fn new(length: usize) -> Self {
        Self {
            sender: broadcast::channel(length).0,
            readers: Arc::new(AtomicUsize::new(0)),
        }
    }
}

/// One reader's place in a topic's count of readers (see [`WholeQueue`]).
pub(crate) struct ReaderCount(Arc<AtomicUsize>);

impl ReaderCount {
    fn join(whole: &WholeQueue) -> Self {
        whole.readers.fetch_add(1, Ordering::Relaxed);
        Self(whole.readers.clone())
    }

    /// Whether another stream or a writer shard reads the queue too. A
    /// hint (a reader may come or go the next moment), read at each idle
    /// moment of a stream: one atomic load, no lock.
    pub(crate) fn is_shared(&self) -> bool {
        self.0.load(Ordering::Relaxed) >= 2
    }
}

impl Drop for ReaderCount {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A writer shard's receiver on a topic's whole queue.
struct ShardInterest {
    wake: Arc<ShardWake>,
    /// The topic's slot in the shard.
    slot: u32,
    /// The shard's place among the queue's readers, given up with this
    /// interest.
    _reader: ReaderCount,
}

impl TopicQueues {
    fn is_empty(&self) -> bool {
        self.whole.is_none() && self.routed.is_empty() && self.shards.is_empty()
    }

    fn wake_shards(&self) {
        for interest in &self.shards {
            interest.wake.topic_ready(interest.slot);
        }
    }

    fn senders(&self) -> impl Iterator<Item = &broadcast::Sender<Live>> {
        self.whole
            .iter()
            .map(|whole| &whole.sender)
            .chain(self.routed.values())
    }
}

pub struct LiveQueues {
    /// Live queues per topic, created by the first subscriber and removed
    /// when the last one leaves. Publish only takes the read lock.
    channels: RwLock<HashMap<TopicName, TopicQueues>>,
    /// Highest sequence number handed to the live queues (or covered by the
    /// latest resync). Stored after the sends, so every event at or below
    /// it is visible in its queue or in history; readers of several topics
    /// cut their batches here to deliver in id order.
    watermark: AtomicU64,
    /// Highest sequence number a live queue may have been sent: stored
    /// before the sends (the watermark, after). A subscriber that attaches
    /// while a fan-out is under way may miss its event on the queue, yet
    /// read a watermark from before it; this mark covers such an event, so
    /// a replay through it finds the event in history.
    announced: AtomicU64,
    /// The epoch and generation, changed together by `resync` (rare) and
    /// read together by replays (once per replay, not per event).
    sync: Mutex<(u64, u64)>,
    /// The generation alone, for the cheap check of a subscriber that waits
    /// for the watermark to pass the events it holds.
    generation: AtomicU64,
    /// Ring length of each live queue (`stream.queue`).
    queue: usize,
    /// The hub's metrics (fan-out latency).
    metrics: Arc<HubMetrics>,
}

impl LiveQueues {
    pub fn new(queue: usize, metrics: Arc<HubMetrics>) -> Self {
        Self {
            channels: RwLock::new(HashMap::new()),
            watermark: AtomicU64::new(0),
            announced: AtomicU64::new(0),
            sync: Mutex::new((0, 0)),
            generation: AtomicU64::new(0),
            queue,
            metrics,
        }
    }

    /// Joins the live queue of `topic`, creating it if needed.
    pub(crate) fn attach(&self, topic: &TopicName) -> broadcast::Receiver<Live> {
        self.attach_reader(topic).0
    }

    /// [`Self::attach`], counted among the queue's readers until the
    /// returned place is dropped (after the receiver); ask it
    /// [`ReaderCount::is_shared`].
    pub(crate) fn attach_reader(
        &self,
        topic: &TopicName,
    ) -> (broadcast::Receiver<Live>, ReaderCount) {
        if let Some(whole) = self.read().get(topic).and_then(|q| q.whole.as_ref()) {
            return (whole.sender.subscribe(), ReaderCount::join(whole));
        }
        let mut channels = self.write();
        let whole = channels
            .entry(topic.clone())
            .or_default()
            .whole
            .get_or_insert_with(|| WholeQueue::new(self.queue));
        (whole.sender.subscribe(), ReaderCount::join(whole))
    }

    /// Joins the routed queue `key` of `topic` (the events `router` says
    /// name it), creating it if needed.
    pub(crate) fn attach_routed(
        &self,
        topic: &TopicName,
        key: u64,
        router: &Arc<dyn LiveRouter>,
    ) -> broadcast::Receiver<Live> {
        if let Some(sender) = self.read().get(topic).and_then(|q| q.routed.get(&key)) {
            return sender.subscribe();
        }
        let mut channels = self.write();
        let queues = channels.entry(topic.clone()).or_default();
        queues.router.get_or_insert_with(|| router.clone());
        queues
            .routed
            .entry(key)
            .or_insert_with(|| broadcast::channel(self.queue).0)
            .subscribe()
    }

    /// A writer shard's receiver on `topic`'s whole queue; the shard is
    /// told `slot` whenever the queue gets an item.
    pub(super) fn attach_shard(
        &self,
        topic: &TopicName,
        wake: &Arc<ShardWake>,
        slot: u32,
    ) -> broadcast::Receiver<Live> {
        let mut channels = self.write();
        let queues = channels.entry(topic.clone()).or_default();
        let whole = queues
            .whole
            .get_or_insert_with(|| WholeQueue::new(self.queue));
        let receiver = whole.sender.subscribe();
        let reader = ReaderCount::join(whole);
        queues.shards.push(ShardInterest {
            wake: wake.clone(),
            slot,
            _reader: reader,
        });
        receiver
    }

    /// Ends a shard's interest in `topic`; its receiver is dropped already.
    pub(super) fn detach_shard(&self, topic: &TopicName, wake: &Arc<ShardWake>) {
        if let Some(queues) = self.write().get_mut(topic) {
            queues
                .shards
                .retain(|interest| !Arc::ptr_eq(&interest.wake, wake));
        }
        self.detach(topic);
    }

    /// Drops the live queues of `topic` nobody listens to any more. Called
    /// after a subscription has dropped its receivers.
    pub fn detach(&self, topic: &TopicName) {
        let mut channels = self.write();
        // `attach` creates receivers under this same lock, so a count of 0
        // here can't race with a new subscriber of this topic.
        let Some(queues) = channels.get_mut(topic) else {
            return;
        };
        if queues
            .whole
            .as_ref()
            .is_some_and(|whole| whole.sender.receiver_count() == 0)
            && queues.shards.is_empty()
        {
            queues.whole = None;
        }
        queues
            .routed
            .retain(|_, sender| sender.receiver_count() > 0);
        if queues.is_empty() {
            channels.remove(topic);
        }
    }

    pub fn watermark(&self) -> u64 {
        self.watermark.load(Ordering::Acquire)
    }

    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Where the queues stand, for a replay of a subscriber whose feed is
    /// attached already. Its watermark is the announced mark, not
    /// [`Self::watermark`]: an event sent to a queue before the feed
    /// attached (so never on the feed) is at or below it, hence replayed
    /// from history, even while its fan-out hasn't stored the watermark yet
    /// (a fan-out thread preempted between the two, or waking a long queue's
    /// receivers); every event above it is sent after this read, so reaches
    /// the feed.
    pub(crate) fn sync_point(&self) -> SyncPoint {
        let sync = self.sync();
        SyncPoint {
            epoch: sync.0,
            generation: sync.1,
            watermark: self.announced.load(Ordering::Acquire),
        }
    }

    /// Topics with at least one local subscriber.
    pub fn live_topics(&self) -> usize {
        self.read().len()
    }

    fn sync(&self) -> MutexGuard<'_, (u64, u64)> {
        self.sync.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn read(&self) -> RwLockReadGuard<'_, HashMap<TopicName, TopicQueues>> {
        // Every mutation is a single insert or remove: a poisoned lock still
        // guards a consistent map.
        self.channels.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, HashMap<TopicName, TopicQueues>> {
        self.channels.write().unwrap_or_else(|p| p.into_inner())
    }
}

impl FanOut for LiveQueues {
    fn fan_out(&self, events: &[Arc<Event>]) {
        let Some(last) = events.last() else { return };
        // Before any send: a subscriber that attaches after a send (and so
        // misses it) reads at least this (the queue's lock orders the two).
        self.announced.fetch_max(last.id.seq, Ordering::Release);
        let observer = FanOutObserver::start(events);
        let mut receivers = 0;
        {
            let channels = self.read();
            for event in events {
                let Some(queues) = channels.get(&event.topic) else {
                    continue;
                };
                // Err only means no receiver is left: nobody to deliver to.
                if let Some(whole) = &queues.whole {
                    receivers += whole
                        .sender
                        .send(Live::Event(Arc::clone(event)))
                        .unwrap_or(0);
                    queues.wake_shards();
                }
                if let (Some(router), false) = (&queues.router, queues.routed.is_empty()) {
                    router.routes(event, &mut |key| {
                        if let Some(sender) = queues.routed.get(&key) {
                            receivers += sender.send(Live::Event(Arc::clone(event))).unwrap_or(0);
                        }
                    });
                }
            }
        }
        self.watermark.fetch_max(last.id.seq, Ordering::Release);
        observer.finish(&self.metrics, events, receivers);
    }

    fn resync(&self, through: EventId) {
        let generation = {
            let mut sync = self.sync();
            sync.0 = through.epoch;
            sync.1 += 1;
            // A store, not a max: in a new epoch the position starts over.
            self.announced.store(through.seq, Ordering::Release);
            self.watermark.store(through.seq, Ordering::Release);
            self.generation.store(sync.1, Ordering::Release);
            sync.1
        };
        // After the new position is in place, so a subscriber that finds
        // the marker reads that position (or a later one).
        for queues in self.read().values() {
            for sender in queues.senders() {
                let _ = sender.send(Live::Resync(generation));
            }
            queues.wake_shards();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queues() -> LiveQueues {
        let (instruments, ()) = crate::hub::metrics::register(|_| ());
        LiveQueues::new(16, instruments.hub)
    }

    #[test]
    fn a_topic_is_shared_while_two_one_topic_readers_hold_their_places() {
        let queues = queues();
        let topic = TopicName::parse("shared").unwrap();
        let (first, first_place) = queues.attach_reader(&topic);
        assert!(!first_place.is_shared(), "one reader");
        let (second, second_place) = queues.attach_reader(&topic);
        assert!(first_place.is_shared() && second_place.is_shared());
        // A stream of several topics doesn't count: it never parks.
        let merged = queues.attach(&topic);
        drop((second, second_place));
        queues.detach(&topic);
        assert!(!first_place.is_shared(), "the other reader left");
        drop(merged);
        drop((first, first_place));
        queues.detach(&topic);
        assert_eq!(queues.live_topics(), 0, "nobody reads the topic");
    }

    #[test]
    fn a_writer_shard_counts_as_a_reader_until_it_detaches() {
        let queues = queues();
        let topic = TopicName::parse("sharded").unwrap();
        let poll = mio::Poll::new().unwrap();
        let wake = Arc::new(ShardWake::new(
            mio::Waker::new(poll.registry(), mio::Token(0)).unwrap(),
        ));
        let (stream, place) = queues.attach_reader(&topic);
        let shard = queues.attach_shard(&topic, &wake, 0);
        assert!(place.is_shared(), "the stream and the shard");
        drop(shard);
        queues.detach_shard(&topic, &wake);
        assert!(!place.is_shared(), "the shard left");
        drop((stream, place));
        queues.detach(&topic);
        assert_eq!(queues.live_topics(), 0, "nobody reads the topic");
    }
}
