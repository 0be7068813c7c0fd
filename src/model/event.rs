//! Events as the hub sees them: a draft to publish, and an accepted event
//! with its id and its SSE frame, encoded once and shared by every subscriber.

use std::any::Any;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use super::sse::{self, EventType};
use super::{EventId, TopicName};

/// An event that has passed validation and waits for its id.
#[derive(Debug, Clone)]
pub struct EventDraft {
    pub topic: TopicName,
    pub event_type: Option<EventType>,
    /// Reconnection delay to set on the client with this event.
    pub retry: Option<Duration>,
    /// The `data` text exactly as subscribers will receive it.
    pub data: String,
    /// The publish's trace, filled in by the hub when tracing is on.
    pub trace: Option<TraceContext>,
    /// See [`Event::mirror`].
    pub mirror: bool,
}

/// An accepted event. Shared as `Arc<Event>`: history and every live queue
/// point at the same allocation.
#[derive(Debug)]
pub struct Event {
    pub topic: TopicName,
    pub id: EventId,
    /// The complete SSE frame; cloning `Bytes` is a reference count bump.
    pub frame: Bytes,
    /// When it was accepted, by the wall clock of the replica (or server)
    /// that assigned its id: comparable across processes, for latency figures.
    pub accepted_at: SystemTime,
    /// The trace of the publish that produced it, so that its fan-out (on
    /// this replica or, carried by a backplane, on another) joins that trace.
    pub trace: Option<TraceContext>,
    /// A protocol's own view of the event (Mercure's update), derived at
    /// most once per process and shared by that protocol's subscribers.
    pub attachment: Attachment,
    /// A copy, on this topic, of what a protocol on top of the hub carries
    /// on its own topic (a Mercure update on an ssehub topic it names), so
    /// that this topic's subscribers get it too. That protocol's own
    /// subscribers, who get the original, skip it. Kept with the event in
    /// history and across a backplane.
    pub mirror: bool,
}

/// A view of an event that a protocol on top of the hub derives from it
/// once (see [`Attachment::get_or_init`]). The model never looks inside.
#[derive(Default)]
pub struct Attachment(OnceLock<Arc<dyn Any + Send + Sync>>);

impl Attachment {
    /// The view of type `T`, derived by `init` the first time it is asked
    /// for. `None` if a view of another type was derived first (two
    /// protocols never share a topic).
    pub fn get_or_init<T: Any + Send + Sync>(&self, init: impl FnOnce() -> T) -> Option<&T> {
        self.0
            .get_or_init(|| Arc::new(init()))
            .as_ref()
            .downcast_ref::<T>()
    }
}

impl std::fmt::Debug for Attachment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.get().is_some() {
            "Attachment(derived)"
        } else {
            "Attachment(none)"
        })
    }
}

/// A W3C trace context (`traceparent` and `tracestate` header values) that
/// travels with an event. The hub never looks inside: the telemetry module
/// writes and reads it, and a backplane carries it as two strings. Cheap to
/// clone: every event of a batch shares one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext(Arc<TraceHeaders>);

#[derive(Debug, PartialEq, Eq)]
struct TraceHeaders {
    traceparent: Box<str>,
    tracestate: Box<str>,
}

impl TraceContext {
    /// `tracestate` may be empty.
    pub fn new(traceparent: impl Into<Box<str>>, tracestate: impl Into<Box<str>>) -> Self {
        Self(Arc::new(TraceHeaders {
            traceparent: traceparent.into(),
            tracestate: tracestate.into(),
        }))
    }

    pub fn traceparent(&self) -> &str {
        &self.0.traceparent
    }

    pub fn tracestate(&self) -> &str {
        &self.0.tracestate
    }
}

impl Event {
    /// Gives the draft its id and encodes its frame, the one time it is
    /// encoded (per process: a replica that receives the event from a
    /// backplane builds it with this too, from the draft it carried).
    pub fn accept(draft: EventDraft, id: EventId, accepted_at: SystemTime) -> Arc<Self> {
        let frame = sse::event_frame(id, draft.event_type.as_ref(), draft.retry, &draft.data);
        Arc::new(Self {
            topic: draft.topic,
            id,
            frame,
            accepted_at,
            trace: draft.trace,
            attachment: Attachment::default(),
            mirror: draft.mirror,
        })
    }
}
