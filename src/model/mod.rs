//! The vocabulary every part shares: topic names, event ids and resume
//! points, events and their trace context, idempotency keys, and the SSE wire format
//! ([`sse`]). At the bottom of the crate: imports nothing of ours, so every
//! part may import it.

mod event;
mod event_id;
mod idempotency;
pub mod sse;
mod topic;

pub use event::{Attachment, Event, EventDraft, TraceContext};
pub use event_id::{EventId, MalformedEventId, ResumePoint};
pub use idempotency::{
    Digest256, IDEMPOTENCY_KEY_MAX_BYTES, Idempotency, IdempotencyKey, InvalidIdempotencyKey,
};
pub use sse::{
    EVENT_TYPE_MAX_CHARS, EventType, GapReason, InvalidEventType, RESERVED_EVENT_TYPES,
    TOKEN_EXPIRED_EVENT,
};
pub use topic::{InvalidTopicName, TOPIC_MAX_CHARS, TOPIC_RULE, TopicName};
