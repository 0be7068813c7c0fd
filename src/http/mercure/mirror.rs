//! Mercure → ssehub: a public update whose topics include ssehub topic
//! names (`chat`, `urn:orders:42`: whatever [`TopicName`] accepts) is also
//! an ssehub event on each such topic, published in the same backplane
//! call as the update itself, so ssehub's own subscribers get it, resume
//! it and find it in history like any event. Each copy is marked
//! [`mirror`](crate::model::Event::mirror): Mercure subscribers, who get
//! the update from the internal topic, skip it (no update twice). Private
//! updates never cross: ssehub's routes know nothing of Mercure's
//! authorisation.

use std::time::Duration;

use super::publish::bad;
use super::update::{Envelope, is_reserved};
use crate::http::ApiError;
use crate::model::{EventDraft, EventType, TopicName};

/// The longest `retry` an ssehub event may carry, in milliseconds: the
/// limit of ssehub's own publish routes (`http::fields`), for the same
/// reason (one event must not keep every subscriber away for long).
const MAX_RETRY_MS: u64 = crate::http::fields::MAX_EVENT_RETRY_MS;

/// The ssehub events `envelope` is also published as: one per distinct
/// ssehub topic name among its topics, none for a private update. The
/// update's fields then follow ssehub's rules too (a 400 names the topic).
pub fn mirrors(envelope: &Envelope) -> Result<Vec<EventDraft>, ApiError> {
    if envelope.private {
        return Ok(Vec::new());
    }
    let mut topics: Vec<TopicName> = Vec::new();
    for topic in &envelope.topics {
        let Ok(name) = TopicName::parse(topic) else {
            continue;
        };
        if !is_reserved(name.as_str()) && !topics.contains(&name) {
            topics.push(name);
        }
    }
    let Some(first) = topics.first() else {
        return Ok(Vec::new());
    };
    let event_type = envelope
        .event_type
        .as_deref()
        .map(EventType::parse)
        .transpose()
        .map_err(|error| {
            bad(format!(
                "type: topic {first:?} is also an ssehub topic, whose events it is \
                 published to, and ssehub refuses this type: {error}"
            ))
        })?;
    if let Some(retry) = envelope.retry.filter(|retry| *retry > MAX_RETRY_MS) {
        return Err(bad(format!(
            "retry: {retry} ms; topic {first:?} is also an ssehub topic, whose events it is \
             published to, and those take at most {MAX_RETRY_MS} ms (a minute)"
        )));
    }
    Ok(topics
        .into_iter()
        .map(|topic| EventDraft {
            topic,
            event_type: event_type.clone(),
            retry: envelope.retry.map(Duration::from_millis),
            data: envelope.data.clone(),
            trace: None,
            mirror: true,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(topics: &[&str]) -> Envelope {
        Envelope {
            topics: topics.iter().map(|t| (*t).to_owned()).collect(),
            id: Some("urn:uuid:1".into()),
            event_type: Some("said".into()),
            retry: Some(1500),
            private: false,
            data: "hello".into(),
        }
    }

    #[test]
    fn each_distinct_ssehub_name_gets_one_mirror_with_the_updates_fields() {
        let drafts = mirrors(&envelope(&[
            "https://example.com/chat",
            "chat",
            "urn:rooms:1",
            "chat",
            "~mercure",
        ]))
        .unwrap();
        let topics: Vec<&str> = drafts.iter().map(|d| d.topic.as_str()).collect();
        assert_eq!(topics, ["chat", "urn:rooms:1"]);
        for draft in &drafts {
            assert!(draft.mirror);
            assert_eq!(draft.data, "hello");
            assert_eq!(draft.event_type.as_ref().unwrap().as_str(), "said");
            assert_eq!(draft.retry, Some(Duration::from_millis(1500)));
        }
    }

    #[test]
    fn private_updates_and_iri_only_updates_do_not_cross() {
        let mut private = envelope(&["chat"]);
        private.private = true;
        assert!(mirrors(&private).unwrap().is_empty());
        assert!(
            mirrors(&envelope(&["https://example.com/a"]))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn fields_ssehub_refuses_are_refused_when_the_update_crosses() {
        let mut gap = envelope(&["chat"]);
        gap.event_type = Some("gap".into());
        assert!(mirrors(&gap).is_err());
        let mut long_retry = envelope(&["chat"]);
        long_retry.retry = Some(MAX_RETRY_MS + 1);
        assert!(mirrors(&long_retry).is_err());
        // The same update on IRI topics only is Mercure's alone: accepted.
        let mut iri = envelope(&["https://example.com/a"]);
        iri.event_type = Some("gap".into());
        iri.retry = Some(MAX_RETRY_MS + 1);
        assert!(mirrors(&iri).unwrap().is_empty());
    }
}
