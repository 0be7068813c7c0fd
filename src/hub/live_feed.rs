//! One subscription's receivers on the live queues of its topics.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::stream::{SelectAll, Stream, StreamExt};
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

use super::LiveRoutes;
use super::live_queues::{Live, LiveQueues, ReaderCount};
use crate::model::TopicName;

pub(super) type LiveItem = Result<Live, BroadcastStreamRecvError>;

enum Receivers {
    One(BroadcastStream<Live>),
    Many(SelectAll<BroadcastStream<Live>>),
}

/// The live queues of a subscription; dropping it detaches from them, so a
/// topic nobody follows any more costs nothing.
pub(super) struct LiveFeed {
    receivers: Option<Receivers>,
    /// One topic's whole queue: this feed's place among its readers
    /// (dropped after the receiver). `None` for several topics or routes.
    readers: Option<ReaderCount>,
    topics: Vec<TopicName>,
    queues: Arc<LiveQueues>,
}

impl LiveFeed {
    /// Attaches to the queue of each topic (creating it if needed), or, for
    /// the topic `routes` names, to its routed queues of those keys.
    pub(super) fn attach(
        queues: Arc<LiveQueues>,
        topics: &[TopicName],
        routes: Option<&LiveRoutes>,
    ) -> Self {
        let routes_of = |topic: &TopicName| routes.filter(|routes| &routes.topic == topic);
        if let [topic] = topics
            && routes_of(topic).is_none()
        {
            let (receiver, readers) = queues.attach_reader(topic);
            return Self {
                receivers: Some(Receivers::One(BroadcastStream::new(receiver))),
                readers: Some(readers),
                topics: topics.to_vec(),
                queues,
            };
        }
        let mut streams = Vec::with_capacity(topics.len());
        for topic in topics {
            match routes_of(topic) {
                Some(routes) => streams.extend(routes.keys.iter().map(|&key| {
                    BroadcastStream::new(queues.attach_routed(topic, key, &routes.router))
                })),
                None => streams.push(BroadcastStream::new(queues.attach(topic))),
            }
        }
        let receivers = if streams.len() == 1 {
            Receivers::One(streams.pop().expect("one topic"))
        } else {
            Receivers::Many(futures_util::stream::select_all(streams))
        };
        Self {
            receivers: Some(receivers),
            readers: None,
            topics: topics.to_vec(),
            queues,
        }
    }
}

impl LiveFeed {
    /// Whether events come from several queues, so must be put in id
    /// order (and an event named by two routes is met twice).
    pub(super) fn is_merged(&self) -> bool {
        matches!(self.receivers, Some(Receivers::Many(_)))
    }

    /// Whether this is one topic's whole queue (what a writer shard reads)
    /// that another stream or a shard reads too.
    pub(super) fn is_one_shared_queue(&self) -> bool {
        self.readers.as_ref().is_some_and(ReaderCount::is_shared)
    }
}

impl Stream for LiveFeed {
    type Item = LiveItem;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.receivers.as_mut() {
            Some(Receivers::One(feed)) => feed.poll_next_unpin(cx),
            Some(Receivers::Many(feeds)) => feeds.poll_next_unpin(cx),
            None => Poll::Ready(None),
        }
    }
}

impl Drop for LiveFeed {
    fn drop(&mut self) {
        // Receivers first, so the queues see the topic without them.
        drop(self.receivers.take());
        drop(self.readers.take());
        for topic in &self.topics {
            self.queues.detach(topic);
        }
    }
}
