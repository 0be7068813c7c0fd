//! Writer shards: a few threads (`stream.shards`, one per two cores by default),
//! each holding many idle live streams without a task or a future apiece.
//!
//! A stream that has caught up and has nothing to write is parked on a
//! shard by the server's stream writer (see `server::EventSource::park`):
//! the shard takes its socket (registered with its own epoll), and the
//! stream's state waits in a slab entry. Each event of a topic is handed to
//! each shard that holds streams of it once (the shard reads the topic's
//! live queue, not one receiver per stream) and the shard writes its frame,
//! shared and encoded once, to every such stream, several pending events in
//! one write. Heartbeats and token expiry are timers in the shard's heap.
//!
//! Anything else sends the stream back to a task of its own, where the
//! stream loop does what it always did: a socket that is full (its write
//! timeout, catching up), a lag or resync (history from the cursor), a
//! pipelined request, an expired token, the drain. Which streams park: one
//! topic's whole queue that other streams read too (a shard woken for one
//! stream costs more than that stream's task), its own frames (not
//! Mercure's filtered ones), no `stream.coalesce`, live (a replay runs in
//! the stream's task first).

mod round;
mod shard;

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use tokio_util::sync::CancellationToken;

use super::HubMetrics;
use super::live_queues::LiveQueues;
use super::subscription::SubscriptionStream;
use crate::server::ParkedConnection;

/// The mio token of a shard's waker; sockets use their slab keys.
const WAKE: mio::Token = mio::Token(usize::MAX);

/// The writer shards of one hub, started with the first stream parked.
pub(super) struct Shards {
    count: usize,
    started: OnceLock<Vec<Arc<ShardWake>>>,
    next: AtomicUsize,
    queues: Arc<LiveQueues>,
    closing: CancellationToken,
    cut: CancellationToken,
    metrics: Arc<HubMetrics>,
}

impl Shards {
    /// `count` shards (0: none, every stream keeps its task).
    pub(super) fn new(
        count: usize,
        queues: Arc<LiveQueues>,
        closing: CancellationToken,
        cut: CancellationToken,
        metrics: Arc<HubMetrics>,
    ) -> Self {
        Self {
            count,
            started: OnceLock::new(),
            next: AtomicUsize::new(0),
            queues,
            closing,
            cut,
            metrics,
        }
    }

    pub(super) fn enabled(&self) -> bool {
        self.count > 0
    }

    /// Starts the shards if they haven't started.
    pub(super) fn start_now(&self) {
        if self.enabled() {
            self.started.get_or_init(|| self.start());
        }
    }

    /// Hands `stream` and its connection to the next shard.
    pub(super) fn park(
        &self,
        mut stream: Pin<Box<SubscriptionStream>>,
        connection: ParkedConnection,
    ) {
        let shards = self.started.get_or_init(|| self.start());
        if shards.is_empty() {
            stream.as_mut().leave_shard(None, false);
            connection.resume(stream);
            return;
        }
        let index = self.next.fetch_add(1, Ordering::Relaxed) % shards.len();
        shards[index].command(Park { stream, connection });
    }

    fn start(&self) -> Vec<Arc<ShardWake>> {
        let mut wakes = Vec::with_capacity(self.count);
        for index in 0..self.count {
            let shard = shard::spawn(
                index,
                self.queues.clone(),
                self.closing.clone(),
                self.cut.clone(),
                self.metrics.clone(),
                tokio::runtime::Handle::current(),
            );
            match shard {
                Ok(wake) => wakes.push(wake),
                Err(error) => {
                    tracing::error!(%error, "a writer shard could not start; streams keep their tasks");
                    break;
                }
            }
        }
        if !wakes.is_empty() {
            // The shards plan their streams' ends when closing begins, and
            // hand every stream back at the cut.
            let (closing, cut) = (self.closing.clone(), self.cut.clone());
            let woken = wakes.clone();
            tokio::spawn(async move {
                for token in [closing, cut] {
                    token.cancelled().await;
                    for wake in &woken {
                        wake.wake();
                    }
                }
            });
        }
        wakes
    }
}

impl Drop for Shards {
    fn drop(&mut self) {
        for wake in self.started.get().into_iter().flatten() {
            wake.stopped.store(true, Ordering::Release);
            wake.wake();
        }
    }
}

/// A stream and its connection, on their way to a shard.
pub(super) struct Park {
    stream: Pin<Box<SubscriptionStream>>,
    connection: ParkedConnection,
}

/// How a shard is told of work: streams to take over, topics whose queue
/// has something new, the end.
pub(in crate::hub) struct ShardWake {
    inbox: Mutex<Inbox>,
    waker: mio::Waker,
    /// Set once the waker has been rung and the shard hasn't looked yet:
    /// a burst of events rings it once.
    rung: AtomicBool,
    stopped: AtomicBool,
}

#[derive(Default)]
struct Inbox {
    parks: Vec<Park>,
    /// Topic slots (in the shard) whose queues got items.
    topics: Vec<u32>,
}

impl ShardWake {
    pub(in crate::hub) fn new(waker: mio::Waker) -> Self {
        Self {
            inbox: Mutex::new(Inbox::default()),
            waker,
            rung: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
        }
    }

    /// The topic in `slot` has new items (called by the fan-out).
    pub(in crate::hub) fn topic_ready(&self, slot: u32) {
        self.inbox().topics.push(slot);
        self.wake();
    }

    fn command(&self, park: Park) {
        self.inbox().parks.push(park);
        self.wake();
    }

    fn wake(&self) {
        if !self.rung.swap(true, Ordering::AcqRel) {
            // Fails only if the eventfd is gone: the shard has stopped.
            let _ = self.waker.wake();
        }
    }

    /// Everything waiting, taking the new items in `parks` and `topics`
    /// (buffers kept from round to round).
    fn take(&self, parks: &mut Vec<Park>, topics: &mut Vec<u32>) {
        self.rung.store(false, Ordering::Release);
        let mut inbox = self.inbox();
        std::mem::swap(&mut inbox.parks, parks);
        std::mem::swap(&mut inbox.topics, topics);
    }

    fn inbox(&self) -> std::sync::MutexGuard<'_, Inbox> {
        self.inbox.lock().unwrap_or_else(|p| p.into_inner())
    }
}
