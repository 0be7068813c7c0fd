//! A Mercure update as it travels through the hub: every update is one
//! event on the internal topic [`MERCURE_TOPIC`], whose data is the
//! update's envelope (its topics, id, type, retry, privacy and data) as
//! compact JSON. Each process derives the [`Update`] (with its Mercure
//! frame) from an event once, on first delivery, and every Mercure
//! subscriber shares it.
//!
//! An event of an ssehub topic that a Mercure subscription follows (see
//! the book's "How Mercure topics meet ssehub topics") is a public update
//! too: its topic is the topic's name, its id the hub's (`urn:ssehub:…`),
//! its fields the event's own; derived once per event per process the same
//! way. Mirrors of Mercure updates on ssehub topics are not updates: the
//! subscriber gets the original.

use bytes::{Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use crate::model::{Event, EventId, sse};

/// The ssehub topic every Mercure update lives on. Its name is refused on
/// ssehub's own routes (see [`is_reserved`]), so only the Mercure routes,
/// which filter per subscriber (private updates included), read it.
pub const MERCURE_TOPIC: &str = "~mercure";

/// The prefix of ids the hub makes for updates published without one: the
/// event's ssehub id follows, so resuming from it needs no lookup.
pub const GENERATED_ID_PREFIX: &str = "urn:ssehub:";

/// The event type Mercure reserves for the updates the hub makes itself
/// (subscription events): refused on publish, and never taken from an
/// ssehub event.
pub const RESERVED_TYPE: &str = "mercure";

/// Whether an ssehub route must refuse this topic name.
pub fn is_reserved(topic: &str) -> bool {
    topic == MERCURE_TOPIC
}

/// The id the hub gives an update published without one.
pub fn generated_id(id: EventId) -> String {
    format!("{GENERATED_ID_PREFIX}{id}")
}

/// The ssehub position a hub-made id names, if it is one.
pub fn position_of(id: &str) -> Option<EventId> {
    EventId::parse(id.strip_prefix(GENERATED_ID_PREFIX)?).ok()
}

/// The event data of an update: what a publish stores and every replica
/// reads back.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct Envelope {
    /// The canonical topic first, then the alternates.
    pub topics: Vec<String>,
    /// The publisher's id; `None`: the hub's ([`generated_id`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "type")]
    pub event_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<u64>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub private: bool,
    pub data: String,
}

/// An update as Mercure subscribers see it, derived once per event.
#[derive(Debug)]
pub struct Update {
    pub topics: Vec<String>,
    pub private: bool,
    /// The Mercure id: the publisher's, or [`generated_id`].
    pub id: String,
    /// The complete Mercure SSE frame (`id:` is the Mercure id).
    pub frame: Bytes,
}

impl Update {
    /// The update an event carries, derived on first use and then shared:
    /// on the internal topic, the envelope's; on an ssehub topic, the
    /// event's own. `None` for an event that is not an update: a mirror,
    /// an ssehub event of the reserved type `mercure`, an envelope that
    /// doesn't decode (nothing else is published on the internal topic).
    pub fn of(event: &Event) -> Option<&Update> {
        event
            .attachment
            .get_or_init(|| {
                if is_reserved(event.topic.as_str()) {
                    Self::decode(event)
                } else {
                    Self::of_ssehub_event(event)
                }
            })
            .and_then(Option::as_ref)
    }

    /// An ssehub event as a public update: its frame with the hub's
    /// Mercure id (`urn:ssehub:<id>`) in `id:`, the rest as ssehub wrote it.
    fn of_ssehub_event(event: &Event) -> Option<Update> {
        if event.mirror || event_type_of(&event.frame) == Some(RESERVED_TYPE.as_bytes()) {
            return None;
        }
        // Every ssehub frame opens with its `id:` line (`model::sse`).
        let rest = event.frame.strip_prefix(b"id: ")?;
        let mut frame = BytesMut::with_capacity(event.frame.len() + GENERATED_ID_PREFIX.len());
        frame.extend_from_slice(b"id: ");
        frame.extend_from_slice(GENERATED_ID_PREFIX.as_bytes());
        frame.extend_from_slice(rest);
        Some(Update {
            topics: vec![event.topic.as_str().to_owned()],
            private: false,
            id: generated_id(event.id),
            frame: frame.freeze(),
        })
    }

    fn decode(event: &Event) -> Option<Update> {
        let envelope: Envelope = serde_json::from_slice(data_of(&event.frame)?).ok()?;
        let id = envelope.id.unwrap_or_else(|| generated_id(event.id));
        let frame = frame(
            &id,
            envelope.event_type.as_deref(),
            envelope.retry,
            &envelope.data,
        );
        Some(Update {
            topics: envelope.topics,
            private: envelope.private,
            id,
            frame,
        })
    }
}

/// The `event:` value of an ssehub frame, if it has one: the line after
/// `id:` (`model::sse` writes `id`, `event`, `retry`, `data` in order).
fn event_type_of(frame: &[u8]) -> Option<&[u8]> {
    let after_id = memchr::memchr(b'\n', frame)? + 1;
    let line = frame[after_id..].strip_prefix(b"event: ")?;
    Some(&line[..memchr::memchr(b'\n', line)?])
}

/// The one `data:` line of an envelope's event frame: compact JSON has no
/// line breaks, so the envelope is that line whole.
fn data_of(frame: &[u8]) -> Option<&[u8]> {
    let start = memchr::memmem::find(frame, b"\ndata: ")? + "\ndata: ".len();
    let length = memchr::memchr(b'\n', &frame[start..])?;
    Some(&frame[start..start + length])
}

/// A Mercure frame: the same wire rules as ssehub's own (`model::sse`),
/// with the Mercure id in `id:`. Ids and types hold no line breaks (the
/// publish refuses control characters).
fn frame(id: &str, event_type: Option<&str>, retry: Option<u64>, data: &str) -> Bytes {
    let mut text = String::with_capacity(id.len() + data.len() + 64);
    text.push_str("id: ");
    text.push_str(id);
    text.push('\n');
    if let Some(event_type) = event_type {
        text.push_str("event: ");
        text.push_str(event_type);
        text.push('\n');
    }
    if let Some(retry) = retry {
        text.push_str("retry: ");
        text.push_str(&retry.to_string());
        text.push('\n');
    }
    for line in sse::data_lines(data) {
        text.push_str("data: ");
        text.push_str(line);
        text.push('\n');
    }
    text.push('\n');
    Bytes::from(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{EventDraft, TopicName};

    fn ssehub_event(topic: &str, event_type: Option<&str>, mirror: bool) -> std::sync::Arc<Event> {
        let draft = EventDraft {
            topic: TopicName::parse(topic).unwrap(),
            event_type: event_type.map(|t| crate::model::EventType::parse(t).unwrap()),
            retry: Some(std::time::Duration::from_millis(900)),
            data: "a\nb".into(),
            trace: None,
            mirror,
        };
        Event::accept(draft, EventId::new(7, 43), std::time::SystemTime::now())
    }

    #[test]
    fn an_ssehub_event_is_a_public_update_with_the_hubs_id_and_its_own_fields() {
        let event = ssehub_event("chat", Some("said"), false);
        let update = Update::of(&event).unwrap();
        assert_eq!(update.topics, ["chat"]);
        assert!(!update.private);
        assert_eq!(update.id, "urn:ssehub:7-2b");
        assert_eq!(position_of(&update.id), Some(event.id));
        assert_eq!(
            &update.frame[..],
            b"id: urn:ssehub:7-2b\nevent: said\nretry: 900\ndata: a\ndata: b\n\n"
        );
        // Derived once: the second look is the same allocation.
        assert!(std::ptr::eq(update, Update::of(&event).unwrap()));
    }

    #[test]
    fn mirrors_and_events_of_the_reserved_type_are_no_updates() {
        assert!(Update::of(&ssehub_event("chat", None, true)).is_none());
        assert!(Update::of(&ssehub_event("chat", Some("mercure"), false)).is_none());
        assert!(Update::of(&ssehub_event("chat", Some("mercure2"), false)).is_some());
        assert!(Update::of(&ssehub_event("chat", None, false)).is_some());
    }

    fn event(envelope: &Envelope) -> std::sync::Arc<Event> {
        let draft = EventDraft {
            topic: TopicName::parse(MERCURE_TOPIC).unwrap(),
            event_type: None,
            retry: None,
            data: serde_json::to_string(envelope).unwrap(),
            trace: None,
            mirror: false,
        };
        Event::accept(draft, EventId::new(7, 42), std::time::SystemTime::now())
    }

    #[test]
    fn an_update_is_read_back_with_its_mercure_frame() {
        let envelope = Envelope {
            topics: vec!["https://example.com/books/1".into()],
            id: Some("urn:uuid:1".into()),
            event_type: Some("update".into()),
            retry: Some(1500),
            private: true,
            data: "line one\nline two".into(),
        };
        let event = event(&envelope);
        let update = Update::of(&event).unwrap();
        assert_eq!(update.topics, envelope.topics);
        assert!(update.private);
        assert_eq!(
            &update.frame[..],
            b"id: urn:uuid:1\nevent: update\nretry: 1500\ndata: line one\ndata: line two\n\n"
        );
    }

    #[test]
    fn an_update_without_id_gets_the_hub_id_that_names_its_position() {
        let event = event(&Envelope {
            topics: vec!["a".into()],
            id: None,
            event_type: None,
            retry: None,
            private: false,
            data: String::new(),
        });
        let update = Update::of(&event).unwrap();
        assert_eq!(update.id, "urn:ssehub:7-2a");
        assert_eq!(position_of(&update.id), Some(EventId::new(7, 42)));
        assert_eq!(&update.frame[..], b"id: urn:ssehub:7-2a\ndata: \n\n");
    }
}
