//! The `Idempotency-Key` header of the publish routes: parsed here, scoped
//! to the publisher, fingerprinted with the route and the events, and the
//! answer rebuilt from a replayed publish's ids.
//!
//! - **Syntax**: the draft's Structured Field String (`"…"`), or the bare
//!   value (`abc-123`) for people typing curl commands; at most 255 bytes
//!   (`model::IDEMPOTENCY_KEY_MAX_BYTES`). Anything else is a 400
//!   `invalid-idempotency-key` (the tutorial route answers its own 400).
//! - **Scope**: keys are per publisher (a static key, a JWT's issuer and
//!   subject, or a subject-less token), so no publisher can read another's
//!   answer or block its keys; while publishing is open to all, all share
//!   one scope.
//! - **Answer**: a retry gets the first publish's status and ids; the rest
//!   of the body follows from the request, which the fingerprint says is
//!   the same (the topics, the tutorial route's echoed message).

use crate::auth::PublisherId;
use crate::hub::Receipt;
use crate::model::{EventDraft, EventId, Idempotency, IdempotencyKey, InvalidIdempotencyKey};

use super::error::ApiError;

/// Which route a keyed publish came by: part of its fingerprint, so a key
/// reused on another route is a 422, never a replay of another's answer.
#[derive(Debug, Clone, Copy)]
pub(super) enum PublishRoute {
    /// `POST /v1/topics/{topic}/events`
    One,
    /// `POST /v1/events`
    Batch,
    /// `POST /event-stream`
    Tutorial,
}

impl PublishRoute {
    fn as_str(self) -> &'static str {
        match self {
            Self::One => "POST /v1/topics/{topic}/events",
            Self::Batch => "POST /v1/events",
            Self::Tutorial => "POST /event-stream",
        }
    }
}

/// The header's value, if sent.
pub(super) fn parse_key(
    header: Option<&str>,
) -> Result<Option<IdempotencyKey>, InvalidIdempotencyKey> {
    header
        .map(|value| IdempotencyKey::parse(value.as_bytes()))
        .transpose()
}

impl From<InvalidIdempotencyKey> for ApiError {
    fn from(error: InvalidIdempotencyKey) -> Self {
        Self::bad_request("invalid-idempotency-key", error.to_string())
    }
}

/// What the backplane records for `key`, sent by `publisher` (`None`:
/// publishing is open) on `route` to publish `drafts`.
pub(super) fn record(
    key: Option<&IdempotencyKey>,
    publisher: Option<&PublisherId>,
    route: PublishRoute,
    drafts: &[EventDraft],
) -> Option<Idempotency> {
    let key = key?;
    let scope = publisher.map(PublisherId::stable_name).unwrap_or_default();
    Some(Idempotency::new(key, &scope, route.as_str(), drafts))
}

/// The ids a publish was answered with, in the order of its drafts.
pub(super) fn answered_ids(receipt: &Receipt) -> Vec<EventId> {
    match receipt {
        Receipt::Published(events) => events.iter().map(|event| event.id).collect(),
        Receipt::Replayed(recorded) => recorded.ids().collect(),
    }
}
