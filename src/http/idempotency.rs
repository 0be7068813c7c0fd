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

use std::borrow::Cow;

use poem::Request;
use poem_openapi::registry::{MetaSchema, MetaSchemaRef};
use poem_openapi::types::{ParseFromParameter, ParseResult, Type};

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
    /// `POST /.well-known/mercure`
    Mercure,
}

impl PublishRoute {
    fn as_str(self) -> &'static str {
        match self {
            Self::One => "POST /v1/topics/{topic}/events",
            Self::Batch => "POST /v1/events",
            Self::Tutorial => "POST /event-stream",
            Self::Mercure => "POST /.well-known/mercure",
        }
    }
}

/// The `Idempotency-Key` header as the spec describes it: its schema
/// states the syntax (so a fuzzer knows a valid key from an invalid one).
/// Only documentation: the value is read raw by [`key_of`], which answers
/// the route's own 400 rather than poem's generic parameter error.
#[derive(Debug, Clone)]
pub struct IdempotencyKeyHeader(String);

/// Printable ASCII but `"` and `\` for a bare key; within quotes the
/// space too, with `\"` and `\\` escaped (RFC 9651's sf-string); 1 to 255
/// characters of the key either way (`model::IDEMPOTENCY_KEY_MAX_BYTES`);
/// spaces and tabs around it are HTTP's optional whitespace.
const IDEMPOTENCY_KEY_PATTERN: &str =
    r#"^[ \t]*(?:[!#-\[\]-~]{1,255}|"(?:[ !#-\[\]-~]|\\["\\]){1,255}")[ \t]*$"#;

impl Type for IdempotencyKeyHeader {
    const IS_REQUIRED: bool = true;
    type RawValueType = String;
    type RawElementValueType = String;

    fn name() -> Cow<'static, str> {
        "string(idempotency-key)".into()
    }

    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Inline(Box::new(MetaSchema {
            pattern: Some(IDEMPOTENCY_KEY_PATTERN.to_owned()),
            min_length: Some(1),
            ..MetaSchema::new("string")
        }))
    }

    fn as_raw_value(&self) -> Option<&String> {
        Some(&self.0)
    }

    fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a String> + 'a> {
        Box::new(std::iter::once(&self.0))
    }
}

impl ParseFromParameter for IdempotencyKeyHeader {
    fn parse_from_parameter(value: &str) -> ParseResult<Self> {
        Ok(Self(value.to_owned()))
    }
}

/// The key the request carries, if any. Read raw from the request, not
/// from poem's parsed parameter (which takes a value that is not visible
/// ASCII for an absent header): such a value, or two `Idempotency-Key`
/// fields, is refused, never ignored.
pub(super) fn key_of(request: &Request) -> Result<Option<IdempotencyKey>, InvalidIdempotencyKey> {
    let mut values = request.headers().get_all(HEADER).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(InvalidIdempotencyKey::new(
            "send one Idempotency-Key field, not several",
        ));
    }
    IdempotencyKey::parse(value.as_bytes()).map(Some)
}

const HEADER: &str = "idempotency-key";

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
    let scope = publisher.map(PublisherId::stable_name).unwrap_or_default();
    record_in(key, &scope, route, drafts)
}

/// [`record`] for a publisher named by `scope` (a protocol's own
/// credentials, such as a Mercure token's holder).
pub(super) fn record_in(
    key: Option<&IdempotencyKey>,
    scope: &str,
    route: PublishRoute,
    drafts: &[EventDraft],
) -> Option<Idempotency> {
    Some(Idempotency::new(key?, scope, route.as_str(), drafts))
}

/// The ids a publish was answered with, in the order of its drafts.
pub(super) fn answered_ids(receipt: &Receipt) -> Vec<EventId> {
    match receipt {
        Receipt::Published(events) => events.iter().map(|event| event.id).collect(),
        Receipt::Replayed(recorded) => recorded.ids().collect(),
    }
}
