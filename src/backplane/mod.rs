//! Backplanes: where ids come from, where history lives, and how an accepted
//! event reaches the fan-out of every replica.
//!
//! The hub talks to a `dyn Backplane` only. `memory` serves one process;
//! a Redis backplane (several replicas) implements the same trait: it assigns
//! ids in Redis, keeps history there, and calls [`FanOut::fan_out`] on each
//! replica as events arrive from Redis.

mod memory;

use std::sync::Arc;

use futures_util::future::BoxFuture;

use crate::hub::{Event, EventDraft, TopicName};

pub use memory::{HistoryLimits, MemoryBackplane};

/// The local fan-out, as seen by a backplane. Called with accepted events in
/// id order; must not block (it only hands events to in-memory queues).
pub trait FanOut: Send + Sync + 'static {
    fn fan_out(&self, events: &[Arc<Event>]);
}

/// Events of one topic after a given position, oldest first.
#[derive(Debug, Default)]
pub struct History {
    pub events: Vec<Arc<Event>>,
    /// False when some event after the position is no longer held (evicted by
    /// count or age): the subscriber must be told about the gap.
    pub complete: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum BackplaneError {
    /// The backplane can't accept or serve events right now (e.g. Redis down).
    #[error("the backplane is unavailable: {0}")]
    Unavailable(String),
}

pub trait Backplane: Send + Sync + 'static {
    /// Names the id space of this history; ids of another epoch predate it.
    fn epoch(&self) -> u64;

    /// Assigns ids to `drafts`, stores them in history and hands them to the
    /// fan-out, all or none. Returns them in id order.
    fn publish(
        &self,
        drafts: Vec<EventDraft>,
    ) -> BoxFuture<'_, Result<Vec<Arc<Event>>, BackplaneError>>;

    /// Events of `topic` with a sequence number above `after_seq`.
    fn history<'a>(
        &'a self,
        topic: &'a TopicName,
        after_seq: u64,
    ) -> BoxFuture<'a, Result<History, BackplaneError>>;

    /// False while the backplane can't accept publishes (readiness follows).
    fn is_available(&self) -> bool {
        true
    }
}
