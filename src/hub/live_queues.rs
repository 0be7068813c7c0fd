//! The live side of fan-out: one broadcast queue per topic that has
//! subscribers on this process, and the position those queues stand at.
//!
//! A topic's queue is a ring of `stream.queue` items shared by its
//! subscribers. Sending writes one slot and wakes the waiting subscribers;
//! it never waits for any of them (invariant "a slow subscriber never blocks
//! publish": a subscriber that falls a whole ring behind is told it lagged
//! and catches up from history instead).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use tokio::sync::broadcast;

use super::HubMetrics;
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
    /// The watermark when this was read (see [`LiveQueues::watermark`]).
    pub watermark: u64,
}

pub struct LiveQueues {
    /// Live queue per topic, created by the first subscriber and removed
    /// when the last one leaves. Publish only takes the read lock.
    channels: RwLock<HashMap<TopicName, broadcast::Sender<Live>>>,
    /// Highest sequence number handed to the live queues (or covered by the
    /// latest resync). Stored after the sends, so every event at or below
    /// it is visible in its queue or in history; readers of several topics
    /// cut their batches here to deliver in id order.
    watermark: AtomicU64,
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
            sync: Mutex::new((0, 0)),
            generation: AtomicU64::new(0),
            queue,
            metrics,
        }
    }

    /// Joins the live queue of `topic`, creating it if needed.
    pub(crate) fn attach(&self, topic: &TopicName) -> broadcast::Receiver<Live> {
        if let Some(sender) = self.read().get(topic) {
            return sender.subscribe();
        }
        self.write()
            .entry(topic.clone())
            .or_insert_with(|| broadcast::channel(self.queue).0)
            .subscribe()
    }

    /// Drops the live queue of `topic` if nobody listens any more. Called
    /// after a subscription has dropped its receiver.
    pub fn detach(&self, topic: &TopicName) {
        let mut channels = self.write();
        // `attach` creates receivers under this same lock, so a count of 0
        // here can't race with a new subscriber of this topic.
        if channels
            .get(topic)
            .is_some_and(|sender| sender.receiver_count() == 0)
        {
            channels.remove(topic);
        }
    }

    pub fn watermark(&self) -> u64 {
        self.watermark.load(Ordering::Acquire)
    }

    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub(crate) fn sync_point(&self) -> SyncPoint {
        let sync = self.sync();
        SyncPoint {
            epoch: sync.0,
            generation: sync.1,
            watermark: self.watermark(),
        }
    }

    /// Topics with at least one local subscriber.
    pub fn live_topics(&self) -> usize {
        self.read().len()
    }

    fn sync(&self) -> MutexGuard<'_, (u64, u64)> {
        self.sync.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn read(&self) -> RwLockReadGuard<'_, HashMap<TopicName, broadcast::Sender<Live>>> {
        // Every mutation is a single insert or remove: a poisoned lock still
        // guards a consistent map.
        self.channels.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, HashMap<TopicName, broadcast::Sender<Live>>> {
        self.channels.write().unwrap_or_else(|p| p.into_inner())
    }
}

impl FanOut for LiveQueues {
    fn fan_out(&self, events: &[Arc<Event>]) {
        let Some(last) = events.last() else { return };
        let observer = FanOutObserver::start(events);
        let mut receivers = 0;
        {
            let channels = self.read();
            for event in events {
                if let Some(sender) = channels.get(&event.topic) {
                    // Err only means no receiver is left: nobody to deliver to.
                    receivers += sender.send(Live::Event(Arc::clone(event))).unwrap_or(0);
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
            self.watermark.store(through.seq, Ordering::Release);
            self.generation.store(sync.1, Ordering::Release);
            sync.1
        };
        // After the new position is in place, so a subscriber that finds
        // the marker reads that position (or a later one).
        for sender in self.read().values() {
            let _ = sender.send(Live::Resync(generation));
        }
    }
}
