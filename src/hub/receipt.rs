//! What a publish was answered with, and the outcome label of a keyed one
//! (`idempotent_publishes{outcome}`).

use std::sync::Arc;

use super::PublishError;
use crate::backplane::RecordedIds;
use crate::model::Event;

/// What a publish was answered with.
#[derive(Debug)]
pub enum Receipt {
    /// Published now, in id order (the order of the drafts).
    Published(Vec<Arc<Event>>),
    /// A keyed publish already made: its ids, in the order of its drafts;
    /// nothing was published now.
    Replayed(RecordedIds),
}

/// What became of a publish that carried an `Idempotency-Key`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::VariantArray, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum IdempotencyOutcome {
    /// Published, and its key recorded with it.
    Published,
    /// Answered from an earlier publish's record; nothing published.
    Replayed,
    /// 409: the same key was still in flight on this replica.
    InFlight,
    /// 422: the key was recorded for a different request.
    KeyReused,
}

impl IdempotencyOutcome {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// The outcome of a keyed publish's result; `None` for failures that
    /// are not about the key (invalid, draining, backplane down), which
    /// the publish families count.
    pub fn of(result: &Result<Receipt, PublishError>) -> Option<Self> {
        match result {
            Ok(Receipt::Published(_)) => Some(Self::Published),
            Ok(Receipt::Replayed(_)) => Some(Self::Replayed),
            Err(PublishError::KeyInFlight) => Some(Self::InFlight),
            Err(PublishError::KeyReused) => Some(Self::KeyReused),
            Err(_) => None,
        }
    }
}
