//! One writer shard's thread: its epoll, its streams in a slab, its topics'
//! receivers and a heap of timers (see the parent module).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io;
use std::os::fd::AsRawFd;
use std::sync::Arc;

use futures_util::{FutureExt, StreamExt};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;
use tokio::runtime::Handle;
use tokio::sync::broadcast::{self, error::TryRecvError};
use tokio::time::Instant;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_util::sync::CancellationToken;

use super::round::Round;
use super::{Park, ShardWake, WAKE};
use crate::hub::HubMetrics;
use crate::hub::delivery::Catchup;
use crate::hub::live_feed::LiveFeed;
use crate::hub::live_queues::{Live, LiveQueues};
use crate::hub::subscription::ParkedStream;
use crate::model::TopicName;
use crate::server::{MAX_SEND_FRAMES, ParkedConnection, Received, Sent};

/// Starts shard `index`'s thread; returns how to reach it.
pub(super) fn spawn(
    index: usize,
    queues: Arc<LiveQueues>,
    closing: CancellationToken,
    cut: CancellationToken,
    metrics: Arc<HubMetrics>,
    runtime: Handle,
) -> io::Result<Arc<ShardWake>> {
    let poll = Poll::new()?;
    let wake = Arc::new(ShardWake::new(mio::Waker::new(poll.registry(), WAKE)?));
    let shard = Shard {
        poll,
        wake: wake.clone(),
        queues,
        closing,
        cut,
        metrics,
        streams: Slab::new(),
        topics: Slab::new(),
        topic_slots: HashMap::new(),
        timers: BinaryHeap::new(),
        next_id: 0,
        leaving: Vec::new(),
        items: Vec::with_capacity(MAX_SEND_FRAMES),
        again: Vec::new(),
    };
    std::thread::Builder::new()
        .name(format!("ssehub-shard-{index}"))
        .spawn(move || {
            // Streams going back to their tasks get their timers here.
            let _runtime = runtime.enter();
            shard.run()
        })?;
    Ok(wake)
}

struct Shard {
    poll: Poll,
    wake: Arc<ShardWake>,
    queues: Arc<LiveQueues>,
    /// The drain: at closing each stream gets its close slot, at which it
    /// goes back to its task to end; at the cut every stream goes back.
    closing: CancellationToken,
    cut: CancellationToken,
    /// `ssehub_streams_parked`.
    metrics: Arc<HubMetrics>,
    /// The parked streams; a stream's key is its socket's token.
    streams: Slab<Parked>,
    topics: Slab<ShardTopic>,
    topic_slots: HashMap<TopicName, usize>,
    /// (when, stream key, stream id): a stream's next heartbeat or expiry.
    /// Entries of streams gone (or re-keyed) are skipped by their id.
    timers: BinaryHeap<Reverse<(Instant, usize, u64)>>,
    next_id: u64,
    /// Streams on their way back to their tasks (see [`Shard::leave`]).
    leaving: Vec<Leaving>,
    /// The items of one read of a topic's queue (see [`Shard::fan_out`]).
    items: Vec<Live>,
    /// Topics whose queues held more than one turn of the loop took.
    again: Vec<u32>,
}

/// In C order: the stream's hot fields (see [`ParkedStream`]) follow the
/// slab entry's tag, which `Way` holds (see there), in the entry's first
/// 64 bytes. Not aligned to a cache line: the slab of an over-aligned
/// type grows by copying, not in place, and the freed old blocks stayed
/// resident (idle-10k: 1,015 B a stream against 838).
#[repr(C)]
struct Parked {
    way: Way,
    stream: ParkedStream,
    connection: ParkedConnection,
    topic: usize,
    /// Its place in its topic's `streams`.
    position: usize,
    id: u64,
}

/// Where a parked stream is headed. Eight bytes with two values, first in
/// [`Parked`]: the largest niche of the entry, at its start, so the slab
/// keeps its occupied-or-vacant tag here, beside the hot fields, and not
/// in a field further in (a cache miss per stream per event otherwise).
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(u64)]
enum Way {
    Staying,
    /// Its own feed is attached, it gets no more history from here.
    Leaving,
}

struct ShardTopic {
    name: TopicName,
    receiver: broadcast::Receiver<Live>,
    streams: Vec<usize>,
    /// Items read from `receiver` so far (see [`Leaving::upto`]).
    read: u64,
}

struct Leaving {
    key: usize,
    owed: Option<Catchup>,
    /// Its own feed, attached when it was marked.
    feed: LiveFeed,
    /// It leaves once its topic's `read` has reached this: everything the
    /// queue held before its feed was attached is then written to it (a
    /// stream that owes a catch-up leaves at once: history covers it).
    upto: u64,
}

impl Shard {
    fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        let mut parks = Vec::new();
        let mut ready = Vec::new();
        let (mut closing, mut cut) = (false, false);
        loop {
            let timeout = if self.again.is_empty() {
                self.timers
                    .peek()
                    .map(|Reverse((at, ..))| at.saturating_duration_since(Instant::now()))
            } else {
                // A queue still holds items: look around, then go on.
                Some(std::time::Duration::ZERO)
            };
            if let Err(error) = self.poll.poll(&mut events, timeout)
                && error.kind() != io::ErrorKind::Interrupted
            {
                tracing::error!(%error, "a writer shard's epoll failed; its streams end");
                return;
            }
            self.wake.take(&mut parks, &mut ready);
            if self.wake.stopped.load(std::sync::atomic::Ordering::Acquire) {
                return;
            }
            for event in events.iter() {
                if event.token() != WAKE {
                    self.on_socket(event.token().0);
                }
            }
            for park in parks.drain(..) {
                self.take_over(park);
            }
            ready.append(&mut self.again);
            ready.sort_unstable();
            ready.dedup();
            for slot in ready.drain(..) {
                self.fan_out(slot as usize);
            }
            if !closing && self.closing.is_cancelled() {
                closing = true;
                self.plan_ends();
            }
            if !cut && self.cut.is_cancelled() {
                cut = true;
                self.hand_back_all();
            }
            self.fire_timers(Instant::now());
        }
    }

    /// Takes a stream over: what its own feed still holds is written, then
    /// the shard reads the topic's queue for it.
    fn take_over(&mut self, park: Park) {
        let Park {
            mut stream,
            connection,
        } = park;
        if self.closing.is_cancelled() {
            stream.as_mut().leave_shard(None, false);
            connection.resume(stream);
            return;
        }
        let (mut stream, topic, mut feed) = stream.into_parked();
        // The shard's receiver first: from here on, whatever the topic gets
        // is in it, so nothing falls between it and the stream's own feed.
        let slot = self.topic_slot(&topic);
        let mut items = Vec::new();
        let mut owed = None;
        while let Some(item) = feed.next().now_or_never().flatten() {
            match item {
                Ok(item) => items.push(item),
                Err(BroadcastStreamRecvError::Lagged(_)) => {
                    owed = Some(Catchup::Lagged);
                    break;
                }
            }
        }
        let mut connection = connection;
        let mut sent = Sent::All;
        let mut round = Round::new(&self.queues);
        for chunk in items.chunks(MAX_SEND_FRAMES) {
            sent = round.write(&mut stream, &mut connection, chunk, &mut owed);
            if sent != Sent::All || owed.is_some() {
                break;
            }
        }
        round.count(&self.metrics);
        if sent == Sent::Failed {
            drop((stream, feed));
            self.forget_topic_if_empty(slot);
            return;
        }
        if owed.is_some() || sent == Sent::Blocked {
            self.forget_topic_if_empty(slot);
            connection.resume(stream.unpark(topic, feed, owed, sent == Sent::Blocked));
            return;
        }
        // The shard reads the topic's queue for it from here, and keeps
        // the topic's name once for all its streams.
        drop((feed, topic));
        let id = self.next_id;
        self.next_id += 1;
        let deadline = stream.next_deadline();
        let position = self.topics[slot].streams.len();
        let fd = connection.socket().as_raw_fd();
        let key = self.streams.insert(Parked {
            stream,
            connection,
            topic: slot,
            position,
            id,
            way: Way::Staying,
        });
        self.metrics.streams_parked_by(1);
        if self
            .poll
            .registry()
            .register(&mut SourceFd(&fd), Token(key), Interest::READABLE)
            .is_err()
        {
            // Can't watch it: back to a task.
            self.topics[slot].streams.push(key);
            self.leave(key, None);
            self.fan_out(slot);
            return;
        }
        self.topics[slot].streams.push(key);
        if let Some(at) = deadline {
            self.timers.push(Reverse((at, key, id)));
        }
    }

    /// The topic's slot, attaching the shard's receiver if it is new.
    fn topic_slot(&mut self, topic: &TopicName) -> usize {
        if let Some(&slot) = self.topic_slots.get(topic) {
            return slot;
        }
        let entry = self.topics.vacant_entry();
        let slot = entry.key();
        let receiver = self.queues.attach_shard(
            topic,
            &self.wake,
            u32::try_from(slot).expect("fewer topics"),
        );
        entry.insert(ShardTopic {
            name: topic.clone(),
            receiver,
            streams: Vec::new(),
            read: 0,
        });
        self.topic_slots.insert(topic.clone(), slot);
        slot
    }

    fn forget_topic_if_empty(&mut self, slot: usize) {
        // A stream on its way back still needs the topic (its name, its
        // last reads of the queue).
        let leaving = |l: &Leaving| self.streams.get(l.key).is_some_and(|p| p.topic == slot);
        if !self.topics[slot].streams.is_empty() || self.leaving.iter().any(leaving) {
            return;
        }
        let topic = self.topics.remove(slot);
        self.topic_slots.remove(&topic.name);
        let ShardTopic { name, receiver, .. } = topic;
        drop(receiver);
        self.queues.detach_shard(&name, &self.wake);
    }

    /// Writes what the topic's queue held when the call began to every
    /// stream of the topic, then sends the streams that must leave and
    /// have had their last reads back to their tasks. What came during the
    /// call waits for the next turn of the loop (`again`): under a steady
    /// stream of events the queue is never empty, and reading it to its
    /// end kept the shard from everything else it does (streams to take
    /// over, timers, departed clients) for as long as that lasted.
    fn fan_out(&mut self, slot: usize) {
        // Kept from wake-up to wake-up: no allocation per event.
        let mut items = std::mem::take(&mut self.items);
        let mut budget = self.topics.get(slot).map_or(0, |t| t.receiver.len());
        while budget > 0 {
            let Some(topic) = self.topics.get_mut(slot) else {
                break;
            };
            items.clear();
            let mut lagged = false;
            while items.len() < MAX_SEND_FRAMES.min(budget) {
                match topic.receiver.try_recv() {
                    Ok(item) => items.push(item),
                    Err(TryRecvError::Lagged(_)) => {
                        lagged = true;
                        break;
                    }
                    Err(TryRecvError::Empty | TryRecvError::Closed) => break,
                }
            }
            topic.read += items.len() as u64;
            budget = budget.saturating_sub(items.len());
            if items.is_empty() && !lagged {
                break;
            }
            self.write_to_topic(slot, &items);
            if lagged {
                // This shard lost its place in the queue for all of them:
                // each catches up from history, as a lagging stream does.
                let keys = self.topics[slot].streams.clone();
                for key in keys {
                    self.leave(key, Some(Catchup::Lagged));
                }
                // Those already on their way back lost their last reads
                // too (reads they were owed: items from before their own
                // feeds were attached).
                for leaving in &mut self.leaving {
                    if self
                        .streams
                        .get(leaving.key)
                        .is_some_and(|p| p.topic == slot)
                    {
                        leaving.owed.get_or_insert(Catchup::Lagged);
                    }
                }
                // Where the receiver stands now is the rest's start.
                budget = self.topics[slot].receiver.len();
            }
        }
        items.clear();
        self.items = items;
        if self
            .topics
            .get(slot)
            .is_some_and(|t| !t.receiver.is_empty())
        {
            self.again.push(slot as u32);
        }
        self.finish_leaving(slot);
    }

    /// Writes `items` to each stream of the topic, one chunk each.
    fn write_to_topic(&mut self, slot: usize, items: &[Live]) {
        let keys = std::mem::take(&mut self.topics[slot].streams);
        let mut failed = Vec::new();
        let mut leaving = Vec::new();
        let mut round = Round::new(&self.queues);
        for &key in &keys {
            let parked = &mut self.streams[key];
            let mut owed = None;
            match round.write(&mut parked.stream, &mut parked.connection, items, &mut owed) {
                Sent::Failed => failed.push(key),
                Sent::Blocked if parked.way == Way::Staying => leaving.push((key, None)),
                _ => {}
            }
            if owed.is_some() && parked.way == Way::Staying {
                leaving.push((key, owed));
            }
        }
        round.count(&self.metrics);
        self.topics[slot].streams = keys;
        for key in failed {
            self.forget(key);
        }
        for (key, owed) in leaving {
            self.leave(key, owed);
        }
    }

    /// Marks a stream as leaving: its own feed is attached now; it leaves
    /// once its topic's queue has been read to the end after this (or at
    /// once, without the last reads, when it owes a catch-up from history).
    fn leave(&mut self, key: usize, owed: Option<Catchup>) {
        let Some(parked) = self.streams.get_mut(key) else {
            return;
        };
        if parked.way == Way::Leaving {
            return;
        }
        parked.way = Way::Leaving;
        let topic = &self.topics[parked.topic];
        let feed = LiveFeed::attach(self.queues.clone(), std::slice::from_ref(&topic.name), None);
        // After the attach: what the queue holds now is all it must still
        // get from the shard.
        let upto = topic.read + topic.receiver.len() as u64;
        self.leaving.push(Leaving {
            key,
            owed,
            feed,
            upto,
        });
        if owed.is_some() {
            // Nothing more from this queue: history covers it all.
            self.unlist(key);
        }
    }

    /// Resumes the leaving streams of `slot`.
    fn finish_leaving(&mut self, slot: usize) {
        let mut any = false;
        let mut index = 0;
        while index < self.leaving.len() {
            let Leaving {
                key, owed, upto, ..
            } = self.leaving[index];
            let of_slot = self.streams.get(key).is_none_or(|p| p.topic == slot);
            let read = self.topics.get(slot).map_or(u64::MAX, |t| t.read);
            if !of_slot || (owed.is_none() && read < upto) {
                index += 1;
                continue;
            }
            let Leaving {
                key, owed, feed, ..
            } = self.leaving.swap_remove(index);
            if !self.streams.contains(key) {
                continue;
            }
            any = true;
            let parked = self.remove(key);
            let full = parked.connection.is_blocked();
            let topic = self.topics[parked.topic].name.clone();
            let stream = parked.stream.unpark(topic, feed, owed, full);
            parked.connection.resume(stream);
        }
        if any && self.topics.contains(slot) {
            self.forget_topic_if_empty(slot);
        }
    }

    /// Closing has begun: each stream takes its close slot now, as a task's
    /// stream does, and stays until then (heartbeats, the last events), so
    /// that the drain's spread applies to parked streams too and they don't
    /// all get a task back at once.
    fn plan_ends(&mut self) {
        for (key, parked) in self.streams.iter_mut() {
            if parked.way == Way::Staying {
                let at = parked.stream.begin_closing();
                self.timers.push(Reverse((at, key, parked.id)));
            }
        }
    }

    /// Every stream back to its task (the drain's cut).
    fn hand_back_all(&mut self) {
        let keys: Vec<usize> = self.streams.iter().map(|(key, _)| key).collect();
        let mut slots: Vec<usize> = Vec::new();
        for key in keys {
            slots.push(self.streams[key].topic);
            self.leave(key, None);
        }
        slots.sort_unstable();
        slots.dedup();
        for slot in slots {
            self.fan_out(slot);
        }
    }

    fn on_socket(&mut self, key: usize) {
        let Some(parked) = self.streams.get_mut(key) else {
            return;
        };
        match parked.connection.read() {
            Received::Nothing => {}
            Received::Closed => self.forget(key),
            Received::Bytes => {
                let slot = parked.topic;
                self.leave(key, None);
                self.fan_out(slot);
            }
        }
    }

    fn fire_timers(&mut self, now: Instant) {
        while let Some(&Reverse((at, key, id))) = self.timers.peek() {
            if at > now {
                return;
            }
            self.timers.pop();
            let Some(parked) = self.streams.get_mut(key) else {
                continue;
            };
            if parked.id != id || parked.way == Way::Leaving {
                continue;
            }
            if parked.stream.is_expired(now) || parked.stream.is_closing_due(now) {
                let slot = parked.topic;
                self.leave(key, None);
                self.fan_out(slot);
                continue;
            }
            if let Some(heartbeat) = parked.stream.heartbeat_due(now) {
                match parked.connection.send(&[&heartbeat]) {
                    Sent::All => {}
                    Sent::Blocked => {
                        let slot = parked.topic;
                        self.leave(key, None);
                        self.fan_out(slot);
                        continue;
                    }
                    Sent::Failed => {
                        self.forget(key);
                        continue;
                    }
                }
            }
            if let Some(next) = self.streams[key].stream.next_deadline() {
                self.timers.push(Reverse((next.max(now), key, id)));
            }
        }
    }

    /// The client is gone: the stream ends here (its seat, its count).
    fn forget(&mut self, key: usize) {
        let slot = self.streams[key].topic;
        drop(self.remove(key));
        if self.topics.contains(slot) {
            self.forget_topic_if_empty(slot);
        }
    }

    /// Out of the slab, its topic's list and the epoll.
    fn remove(&mut self, key: usize) -> Parked {
        self.unlist(key);
        let parked = self.streams.remove(key);
        self.metrics.streams_parked_by(-1);
        let fd = parked.connection.socket().as_raw_fd();
        let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
        parked
    }

    /// Out of its topic's list of streams.
    fn unlist(&mut self, key: usize) {
        let (slot, position) = {
            let parked = &self.streams[key];
            (parked.topic, parked.position)
        };
        let Some(topic) = self.topics.get_mut(slot) else {
            return;
        };
        if topic.streams.get(position) != Some(&key) {
            return;
        }
        topic.streams.swap_remove(position);
        if let Some(&moved) = topic.streams.get(position) {
            self.streams[moved].position = position;
        }
        // Not on the list any more: a second unlist finds nothing.
        self.streams[key].position = usize::MAX;
    }
}
