//! The live side of fan-out: one broadcast queue per topic that has
//! subscribers on this process.
//!
//! A topic's queue is a ring of `stream.queue` shared `Arc<Event>`s. Sending
//! writes one slot and wakes the waiting subscribers; it never waits for any
//! of them (invariant "a slow subscriber never blocks publish": a subscriber
//! that falls a whole ring behind is told it lagged and catches up from
//! history instead).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use tokio::sync::broadcast;

use super::event::Event;
use super::observe::FanOutObserver;
use super::topic::TopicName;
use crate::backplane::FanOut;
use crate::metrics::Metrics;

pub struct Registry {
    /// Live queue per topic, created by the first subscriber and removed
    /// when the last one leaves. Publish only takes the read lock.
    channels: RwLock<HashMap<TopicName, broadcast::Sender<Arc<Event>>>>,
    /// Highest sequence number handed to the live queues. Stored after the
    /// sends, so every event at or below it is visible in its queue; readers
    /// of several topics cut their batches here to deliver in id order.
    watermark: AtomicU64,
    /// Ring length of each live queue (`stream.queue`).
    queue: usize,
    /// The hub's metrics (fan-out latency).
    metrics: Arc<Metrics>,
}

impl Registry {
    pub fn new(queue: usize, metrics: Arc<Metrics>) -> Self {
        Self {
            channels: RwLock::new(HashMap::new()),
            watermark: AtomicU64::new(0),
            queue,
            metrics,
        }
    }

    /// Joins the live queue of `topic`, creating it if needed.
    pub fn attach(&self, topic: &TopicName) -> broadcast::Receiver<Arc<Event>> {
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

    /// Topics with at least one local subscriber.
    pub fn live_topics(&self) -> usize {
        self.read().len()
    }

    fn read(&self) -> RwLockReadGuard<'_, HashMap<TopicName, broadcast::Sender<Arc<Event>>>> {
        // Every mutation is a single insert or remove: a poisoned lock still
        // guards a consistent map.
        self.channels.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, HashMap<TopicName, broadcast::Sender<Arc<Event>>>> {
        self.channels.write().unwrap_or_else(|p| p.into_inner())
    }
}

impl FanOut for Registry {
    fn fan_out(&self, events: &[Arc<Event>]) {
        let Some(last) = events.last() else { return };
        let observer = FanOutObserver::start(events);
        let mut receivers = 0;
        {
            let channels = self.read();
            for event in events {
                if let Some(sender) = channels.get(&event.topic) {
                    // Err only means no receiver is left: nobody to deliver to.
                    receivers += sender.send(Arc::clone(event)).unwrap_or(0);
                }
            }
        }
        self.watermark.fetch_max(last.id.seq, Ordering::Release);
        observer.finish(&self.metrics, events, receivers);
    }
}
