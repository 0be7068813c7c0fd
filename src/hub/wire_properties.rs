//! Properties of the wire format, over inputs nobody thought of: whatever a
//! publisher sends either comes out of a spec-compliant SSE parser
//! (`eventsource-stream`, the one the integration tests use) exactly as it
//! went in, or is refused at parse time; no input adds a field, splits an
//! event or injects an `id:`.
//!
//! Cases per property: [`cases`] (`PROPTEST_CASES` raises them for a long
//! run, e.g. `PROPTEST_CASES=100000 cargo nextest run -E 'test(wire_properties)'`).

use std::time::Duration;

use bytes::Bytes;
use eventsource_stream::{Event, Eventsource};
use futures_util::StreamExt;
use proptest::prelude::*;
use proptest::test_runner::Config;

use crate::model::EventId;
use crate::model::sse::{EVENT_TYPE_MAX_CHARS, EventType, event_frame, stream_prelude};
use crate::model::{TOPIC_MAX_CHARS, TopicName};

/// Cases per property in CI: a few seconds for all of them on 2 cores.
const CI_CASES: u32 = 500;

fn cases() -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(CI_CASES);
    Config {
        cases,
        // Failures are reported with their minimal input; no files in src/.
        failure_persistence: None,
        ..Config::default()
    }
}

/// Text that stresses the SSE grammar: runs of CR, LF and CRLF, NUL, a BOM,
/// field-like text (`id: 9`, `retry: 1`, `:`), long lines, any Unicode.
fn hostile_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("\r".to_owned()),
        Just("\n".to_owned()),
        Just("\r\n".to_owned()),
        Just("\n\n".to_owned()),
        Just("\r\r\n\n".to_owned()),
        Just("\0".to_owned()),
        Just("\u{feff}".to_owned()),
        Just("id: 9".to_owned()),
        Just("\nid: forged\n\n".to_owned()),
        Just("event: x".to_owned()),
        Just("gap".to_owned()),
        Just("token_expired".to_owned()),
        Just("retry: 1".to_owned()),
        Just(":".to_owned()),
        Just(" ".to_owned()),
        Just("data:".to_owned()),
        "x{0,4000}",
        any::<String>(),
        "\\PC{0,40}",
    ];
    prop::collection::vec(piece, 0..12).prop_map(|pieces| pieces.concat())
}

/// What a conforming client sees of `data`: every line break becomes LF.
fn as_received(data: &str) -> String {
    data.replace("\r\n", "\n").replace('\r', "\n")
}

/// Parses `bytes`, delivered in chunks cut at `cuts` (so a CRLF or a UTF-8
/// sequence may straddle two reads), with a spec-compliant parser.
fn parse(bytes: &[u8], cuts: &[usize]) -> Vec<Event> {
    let mut points: Vec<usize> = cuts.iter().map(|cut| cut % (bytes.len() + 1)).collect();
    points.sort_unstable();
    points.dedup();
    let mut chunks = Vec::new();
    let mut start = 0;
    for point in points.into_iter().chain([bytes.len()]) {
        chunks.push(Ok::<Bytes, std::io::Error>(Bytes::copy_from_slice(
            &bytes[start..point],
        )));
        start = point;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(
        futures_util::stream::iter(chunks)
            .eventsource()
            .map(|event| event.expect("the hub's frames always parse"))
            .collect(),
    )
}

/// A frame that must come out of the parser right after the one under test.
fn sentinel() -> Bytes {
    event_frame(EventId::new(7, u64::MAX), None, None, "sentinel")
}

proptest! {
    #![proptest_config(cases())]

    #[test]
    fn any_event_round_trips_as_exactly_one_event(
        data in hostile_text(),
        event_type in proptest::option::of(hostile_text()),
        retry_ms in proptest::option::of(any::<u64>()),
        epoch in any::<u64>(),
        seq in any::<u64>(),
        cuts in prop::collection::vec(any::<usize>(), 0..6),
    ) {
        let id = EventId::new(epoch, seq);
        let event_type = match event_type.as_deref().map(EventType::parse) {
            // Refused types are covered by the property below.
            Some(Err(_)) => None,
            Some(Ok(parsed)) => Some(parsed),
            None => None,
        };
        let retry = retry_ms.map(Duration::from_millis);
        let mut wire = stream_prelude(Duration::from_secs(3)).to_vec();
        wire.extend_from_slice(&event_frame(id, event_type.as_ref(), retry, &data));
        wire.extend_from_slice(&sentinel());

        let events = parse(&wire, &cuts);
        prop_assert_eq!(events.len(), 2, "one event plus the sentinel: {:?}", events);
        let event = &events[0];
        prop_assert_eq!(&event.id, &id.to_string());
        prop_assert_eq!(
            event.event.as_str(),
            event_type.as_ref().map_or("message", EventType::as_str)
        );
        prop_assert_eq!(event.retry, retry);
        prop_assert_eq!(&event.data, &as_received(&data));
        prop_assert_eq!(events[1].data.as_str(), "sentinel");
        prop_assert_eq!(&events[1].id, &EventId::new(7, u64::MAX).to_string());
    }

    #[test]
    fn a_frame_has_only_the_hubs_fields(
        data in hostile_text(),
        event_type in hostile_text(),
    ) {
        let event_type = EventType::parse(&event_type).ok();
        let frame = event_frame(EventId::new(1, 2), event_type.as_ref(), None, &data);
        let text = std::str::from_utf8(&frame).unwrap();
        let body = text.strip_suffix("\n\n").expect("a frame ends with a blank line");
        // Split the way a client does: CR, LF and CRLF all end a line.
        let lines: Vec<&str> = crate::model::sse::data_lines(body).collect();
        prop_assert_eq!(lines[0], "id: 1-2");
        let mut rest = &lines[1..];
        if let Some(event_type) = &event_type {
            prop_assert_eq!(rest[0], format!("event: {}", event_type.as_str()));
            rest = &rest[1..];
        }
        for line in rest {
            prop_assert!(line.starts_with("data: "), "a line that is not data: {:?}", line);
        }
    }

    #[test]
    fn an_event_type_is_taken_exactly_when_it_cannot_break_a_line(value in hostile_text()) {
        let acceptable = !value.is_empty()
            && !value.contains(['\r', '\n', '\0'])
            && value.chars().count() <= EVENT_TYPE_MAX_CHARS
            && !crate::model::sse::RESERVED_EVENT_TYPES.contains(&value.as_str());
        match EventType::parse(&value) {
            Ok(parsed) => {
                prop_assert!(acceptable, "{:?} accepted", value);
                prop_assert_eq!(parsed.as_str(), value.as_str());
            }
            Err(_) => prop_assert!(!acceptable, "{:?} refused", value),
        }
    }

    #[test]
    fn any_text_parses_as_an_id_or_is_refused_without_panic(text in hostile_text()) {
        if let Ok(id) = EventId::parse(&text) {
            // What parses is the canonical form up to hex case and leading zeros.
            let again = EventId::parse(&id.to_string()).unwrap();
            prop_assert_eq!(again, id);
            prop_assert!(!text.contains(['\r', '\n', '\0', ' ']));
        }
    }

    #[test]
    fn every_id_the_hub_makes_parses_back(epoch in any::<u64>(), seq in any::<u64>()) {
        let id = EventId::new(epoch, seq);
        prop_assert_eq!(EventId::parse(&id.to_string()), Ok(id));
    }

    #[test]
    fn a_topic_name_is_taken_exactly_when_it_follows_the_rule(
        name in prop_oneof!["[A-Za-z0-9._:~-]{0,140}", hostile_text()],
    ) {
        let follows_rule = (1..=TOPIC_MAX_CHARS).contains(&name.chars().count())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._:~-".contains(c));
        match TopicName::parse(&name) {
            Ok(topic) => {
                prop_assert!(follows_rule, "{:?} accepted", name);
                prop_assert_eq!(topic.as_str(), name.as_str());
            }
            Err(_) => prop_assert!(!follows_rule, "{:?} refused", name),
        }
    }
}
