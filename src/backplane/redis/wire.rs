//! An event's content as it crosses a process through Redis (a pub/sub
//! message's line, an entry of stored history): Redis's format, so it lives
//! with the Redis backplane.

use std::borrow::Cow;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::model::{
    EventDraft, EventType, InvalidEventType, InvalidTopicName, TopicName, TraceContext,
};

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
    /// `EventDraft::mirror`; absent (false) in what older builds wrote.
    #[serde(rename = "m", default, skip_serializing_if = "std::ops::Not::not")]
    pub mirror: bool,
}

/// A [`WireEvent`] whose fields this hub would not have accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidWireEvent {
    #[error(transparent)]
    Topic(#[from] InvalidTopicName),
    #[error(transparent)]
    EventType(#[from] InvalidEventType),
}

impl<'a> From<&'a EventDraft> for WireEvent<'a> {
    /// The wire form, borrowing the draft's text.
    fn from(draft: &'a EventDraft) -> Self {
        WireEvent {
            topic: Cow::Borrowed(draft.topic.as_str()),
            event_type: draft.event_type.as_ref().map(|t| Cow::Borrowed(t.as_str())),
            retry: draft.retry.map(|retry| retry.as_millis() as u64),
            data: Cow::Borrowed(&draft.data),
            traceparent: draft.trace.as_ref().map(|t| Cow::Borrowed(t.traceparent())),
            tracestate: draft
                .trace
                .as_ref()
                .map(|t| t.tracestate())
                .filter(|state| !state.is_empty())
                .map(Cow::Borrowed),
            mirror: draft.mirror,
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
            mirror: self.mirror,
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
            mirror: true,
        };
        let json = serde_json::to_string(&WireEvent::from(&draft)).unwrap();
        let wire: WireEvent<'_> = serde_json::from_str(&json).unwrap();
        let back = wire.into_draft().unwrap();
        assert_eq!(back.topic, draft.topic);
        assert_eq!(back.event_type, draft.event_type);
        assert_eq!(back.retry, draft.retry);
        assert_eq!(back.data, draft.data);
        assert!(back.mirror);
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
