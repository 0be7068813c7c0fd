//! A delivery whose stream a writer shard holds (see `hub::shards`): only
//! what the shard needs to judge each item of the topic's queue (the
//! cursor and the resync generation) and the subscription's totals. What a
//! stream's task needs besides (its feed, its buffers, the backplane) is
//! made again when the stream goes back to a task: a parked stream is a
//! few hundred bytes, not a task's state kept whole.

use super::{Catchup, Delivery, other_epoch};
use crate::hub::Hub;
use crate::hub::live_feed::LiveFeed;
use crate::hub::live_queues::{Live, LiveQueues};
use crate::hub::spans::SubscriptionObserver;
use crate::model::{EventId, TopicName};

/// See the module documentation. In C order, what each write touches
/// first: the cursor, then the totals (see `ParkedStream`).
#[repr(C)]
pub(in crate::hub) struct ParkedDelivery {
    // No topic name: the shard keeps it, once for all its streams of the
    // topic. Nothing of the stream is left on the heap beside the shard's
    // tables, so the memory its opening used is free again as a whole.
    cursor: EventId,
    pub(in crate::hub) observer: SubscriptionObserver,
    generation: u64,
}

impl Delivery {
    /// The parked form of a parkable delivery (see [`Self::is_parkable`]),
    /// its topic, and its own feed, which the caller drops once the shard
    /// reads the topic's queue for it.
    pub(in crate::hub) fn park(self) -> (ParkedDelivery, TopicName, LiveFeed) {
        debug_assert!(
            !self.multi_topic && self.filter.is_none() && self.replay.is_none(),
            "only a parkable delivery parks"
        );
        let topic = self.topics.into_iter().next().expect("one topic");
        let parked = ParkedDelivery {
            cursor: self.cursor,
            generation: self.generation,
            observer: self.observer,
        };
        (parked, topic, self.feed)
    }
}

impl ParkedDelivery {
    /// What an item the shard read from the topic's queue is to this
    /// stream (the one-topic rules of [`Delivery::take_ready`]): `Ok(true)`
    /// writes the event's frame, and the cursor is past it.
    pub(in crate::hub) fn take_pushed(
        &mut self,
        item: &Live,
        queues: &LiveQueues,
    ) -> Result<bool, Catchup> {
        match item {
            Live::Event(event) if event.id.epoch != self.cursor.epoch => {
                other_epoch(queues, self.cursor).map_or(Ok(false), Err)
            }
            Live::Event(event) if event.id.seq <= self.cursor.seq => Ok(false),
            Live::Event(event) => {
                self.cursor.seq = event.id.seq;
                self.observer.event();
                Ok(true)
            }
            Live::Resync(generation) if *generation > self.generation => Err(Catchup::Resync),
            Live::Resync(_) => Ok(false),
        }
    }

    /// The task's delivery again, of `topic`, reading `feed` (attached
    /// with [`LiveFeed::attach`] as the stream began to leave its shard).
    pub(in crate::hub) fn unpark(self, hub: &Hub, topic: TopicName, feed: LiveFeed) -> Delivery {
        let mut delivery = Delivery::assemble(hub, vec![topic], feed, self.observer, None);
        delivery.cursor = self.cursor;
        delivery.generation = self.generation;
        delivery
    }
}
