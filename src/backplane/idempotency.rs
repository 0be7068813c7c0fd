//! What a backplane keeps of keyed publishes, and what it answers a keyed
//! publish with.
//!
//! A publish that carries an [`Idempotency`] is recorded *atomically with
//! its events*: under the memory backplane's lock, inside the Redis publish
//! script. So of two publishes racing on one key (on one replica or two),
//! exactly one publishes; the other finds the record and publishes nothing.
//! A publish that stored nothing (an error) leaves no record: its retry is
//! a first attempt.

use std::time::Duration;

use crate::model::EventId;

/// How long a key is remembered by default: longer than any sane retry
/// loop (a publisher that backs off to 30 s retries ten times in it), short
/// enough that records of a busy hub stay small.
pub const IDEMPOTENCY_WINDOW_DEFAULT: Duration = Duration::from_secs(5 * 60);
/// Keys the memory backplane remembers at most, oldest dropped first: a
/// record costs about 150 bytes (two digests, the ids, its place in the
/// expiry order), so 100,000 cost ~15 MiB and cover the default window at
/// 333 keyed publishes a second. On Redis the window alone bounds them.
pub const IDEMPOTENCY_KEYS_DEFAULT: usize = 100_000;

/// `limits.idempotency_window` and `limits.idempotency_keys`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdempotencyLimits {
    /// How long a record is kept after its publish.
    pub window: Duration,
    /// Most records held at once in memory (the memory backplane only).
    pub max_keys: usize,
}

impl Default for IdempotencyLimits {
    fn default() -> Self {
        Self {
            window: IDEMPOTENCY_WINDOW_DEFAULT,
            max_keys: IDEMPOTENCY_KEYS_DEFAULT,
        }
    }
}

/// What a keyed publish found recorded: the ids an earlier publish with
/// the same key was given (a call's ids are contiguous, in draft order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordedIds {
    pub first: EventId,
    pub count: usize,
}

impl RecordedIds {
    /// Each id, in the order of the drafts that were published.
    pub fn ids(self) -> impl Iterator<Item = EventId> {
        (0..self.count as u64)
            .map(move |offset| EventId::new(self.first.epoch, self.first.seq + offset))
    }
}
