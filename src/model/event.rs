//! Events as the hub sees them: a draft to publish, an accepted event with
//! its id and its SSE frame, encoded once and shared by every subscriber,
//! and the plain form in which an event crosses a process ([`WireEvent`]).

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::encoder::{self, EventType, InvalidEventType};
use super::event_id::EventId;
use super::topic::{InvalidTopicName, TopicName};

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
}

/// A W3C trace context (`traceparent` and `tracestate` header values) that
/// travels with an event. The hub never looks inside: `crate::telemetry`
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

/// An event's content as it crosses a process (a backplane's message, its
/// stored history): plain fields, short names, checked again on the way in
/// ([`WireEvent::into_draft`]), since the other side may run another build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireEvent<'a> {
    #[serde(rename = "t", borrow)]
    pub topic: Cow<'a, str>,
    #[serde(rename = "e", borrow, default, skip_serializing_if = "Option::is_none")]
    pub event_type: Option<Cow<'a, str>>,
    /// Milliseconds.
    #[serde(rename = "r", default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<u64>,
    #[serde(rename = "d", borrow)]
    pub data: Cow<'a, str>,
    #[serde(
        rename = "tp",
        borrow,
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub traceparent: Option<Cow<'a, str>>,
    #[serde(
        rename = "ts",
        borrow,
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub tracestate: Option<Cow<'a, str>>,
}

/// A [`WireEvent`] whose fields this hub would not have accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidWireEvent {
    #[error(transparent)]
    Topic(#[from] InvalidTopicName),
    #[error(transparent)]
    EventType(#[from] InvalidEventType),
}

impl EventDraft {
    /// The wire form, borrowing the draft's text.
    pub fn to_wire(&self) -> WireEvent<'_> {
        WireEvent {
            topic: Cow::Borrowed(self.topic.as_str()),
            event_type: self.event_type.as_ref().map(|t| Cow::Borrowed(t.as_str())),
            retry: self.retry.map(|retry| retry.as_millis() as u64),
            data: Cow::Borrowed(&self.data),
            traceparent: self.trace.as_ref().map(|t| Cow::Borrowed(t.traceparent())),
            tracestate: self
                .trace
                .as_ref()
                .map(|t| t.tracestate())
                .filter(|state| !state.is_empty())
                .map(Cow::Borrowed),
        }
    }
}

impl WireEvent<'_> {
    /// Parses the fields back into a draft, with the checks of a publish.
    pub fn into_draft(self) -> Result<EventDraft, InvalidWireEvent> {
        Ok(EventDraft {
            topic: TopicName::parse(&self.topic)?,
            event_type: self
                .event_type
                .as_deref()
                .map(EventType::parse)
                .transpose()?,
            retry: self.retry.map(Duration::from_millis),
            data: self.data.into_owned(),
            trace: self.traceparent.map(|parent| {
                TraceContext::new(parent.as_ref(), self.tracestate.as_deref().unwrap_or(""))
            }),
        })
    }
}

impl Event {
    /// Gives the draft its id and encodes its frame, the one time it is
    /// encoded (per process: a replica that receives the event from a
    /// backplane builds it with this too, from [`WireEvent::into_draft`]).
    pub fn accept(draft: EventDraft, id: EventId, accepted_at: SystemTime) -> Arc<Self> {
        let frame = encoder::event_frame(id, draft.event_type.as_ref(), draft.retry, &draft.data);
        Arc::new(Self {
            topic: draft.topic,
            id,
            frame,
            accepted_at,
            trace: draft.trace,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_draft_survives_the_wire_form() {
        let draft = EventDraft {
            topic: TopicName::parse("orders.42").unwrap(),
            event_type: Some(EventType::parse("update").unwrap()),
            retry: Some(Duration::from_millis(2500)),
            data: "line one\nline \"two\"".into(),
            trace: Some(TraceContext::new("00-abc-def-01", "vendor=1")),
        };
        let json = serde_json::to_string(&draft.to_wire()).unwrap();
        let wire: WireEvent<'_> = serde_json::from_str(&json).unwrap();
        let back = wire.into_draft().unwrap();
        assert_eq!(back.topic, draft.topic);
        assert_eq!(back.event_type, draft.event_type);
        assert_eq!(back.retry, draft.retry);
        assert_eq!(back.data, draft.data);
        assert_eq!(back.trace, draft.trace);
    }

    #[test]
    fn a_wire_event_with_fields_a_publish_would_refuse_is_refused() {
        let json = r#"{"t":"not a topic","d":"x"}"#;
        let wire: WireEvent<'_> = serde_json::from_str(json).unwrap();
        assert!(matches!(wire.into_draft(), Err(InvalidWireEvent::Topic(_))));
        let json = r#"{"t":"ok","e":"a\nb","d":"x"}"#;
        let wire: WireEvent<'_> = serde_json::from_str(json).unwrap();
        assert!(matches!(
            wire.into_draft(),
            Err(InvalidWireEvent::EventType(_))
        ));
    }
}
