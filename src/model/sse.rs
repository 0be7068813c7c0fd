//! The SSE wire format. This is the one place that knows it: every frame the
//! hub sends is built here, once per event, and then shared by reference.
//!
//! Rules upheld (WHATWG HTML, "Server-sent events", "Interpreting an event
//! stream"):
//! - data is split on LF, CR and CRLF into one `data:` line per line, so a
//!   lone CR can't end a line early on the client and become a field;
//! - empty data is still sent as one `data: ` line, which dispatches an event
//!   with empty data (a frame without any data line would not be dispatched);
//! - `id` and `event` values never contain CR, LF or NUL: ids are made by the
//!   hub and event types are refused at publish ([`EventType::parse`]);
//! - a published event never looks like one of the hub's own frames: their
//!   types ([`RESERVED_EVENT_TYPES`]) are refused at publish.

use std::fmt::Write as _;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};

use super::EventId;

/// The longest event type, in characters (what JSON Schema's `maxLength`
/// counts, so the published spec states the same rule). Browsers only match
/// it to listeners.
pub const EVENT_TYPE_MAX_CHARS: usize = 64;

/// The event type of the frame announcing events a subscriber missed.
pub const GAP_EVENT: &str = "gap";

/// The SSE event type of the frame that ends a stream at its token's `exp`.
pub const TOKEN_EXPIRED_EVENT: &str = "token_expired";

/// The event types of the hub's own frames ([`gap_frame`],
/// [`token_expired_frame`]), which no publisher may send: a forged `gap`
/// would show subscribers losses that never happened, a forged
/// `token_expired` would make every page fetch a new token and reconnect.
/// Compared exactly, as `EventSource` does (event types are case-sensitive:
/// `Gap` reaches no `gap` listener, so it stays a publisher's to use).
pub const RESERVED_EVENT_TYPES: [&str; 2] = [GAP_EVENT, TOKEN_EXPIRED_EVENT];

/// An `event:` value that can't inject a field, nor pass for a hub frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventType(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidEventType {
    #[error("`event` must not be empty (leave it out for the default `message`)")]
    Empty,
    #[error("`event` must not contain CR, LF or NUL (they would start a new SSE field)")]
    LineBreak,
    #[error("`event` must be at most {EVENT_TYPE_MAX_CHARS} characters")]
    TooLong,
    #[error(
        "`event` {name:?} is reserved for the hub's own frames ({}): subscribers would take it for one of them; use another type",
        RESERVED_EVENT_TYPES.join(", ")
    )]
    Reserved { name: &'static str },
}

impl EventType {
    pub fn parse(value: &str) -> Result<Self, InvalidEventType> {
        if value.is_empty() {
            Err(InvalidEventType::Empty)
        } else if value.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
            Err(InvalidEventType::LineBreak)
        } else if value.chars().count() > EVENT_TYPE_MAX_CHARS {
            Err(InvalidEventType::TooLong)
        } else if let Some(name) = RESERVED_EVENT_TYPES.into_iter().find(|name| *name == value) {
            Err(InvalidEventType::Reserved { name })
        } else {
            Ok(Self(value.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Splits on CRLF, LF and CR, the three line endings of the SSE grammar.
pub fn data_lines(data: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(data);
    std::iter::from_fn(move || {
        let text = rest?;
        match memchr::memchr2(b'\r', b'\n', text.as_bytes()) {
            None => {
                rest = None;
                Some(text)
            }
            Some(at) => {
                let skip = if text[at..].starts_with("\r\n") { 2 } else { 1 };
                rest = Some(&text[at + skip..]);
                Some(&text[..at])
            }
        }
    })
}

/// One complete event frame: `id`, optional `event` and `retry`, `data`
/// lines, blank line. Sized exactly so it is one allocation.
pub fn event_frame(
    id: EventId,
    event_type: Option<&EventType>,
    retry: Option<Duration>,
    data: &str,
) -> Bytes {
    // Every line break may become "\ndata: ": count them for an exact-enough
    // capacity without a second pass over the lines.
    let lines = 1 + memchr::memchr2_iter(b'\r', b'\n', data.as_bytes()).count();
    let capacity = "id: ffffffffffffffff-ffffffffffffffff\n".len()
        + event_type.map_or(0, |t| "event: \n".len() + t.as_str().len())
        + retry.map_or(0, |_| "retry: 18446744073709551615\n".len())
        + data.len()
        + lines * "data: \n".len()
        + 1;
    let mut frame = String::with_capacity(capacity);
    // Writing into a String can't fail.
    let _ = writeln!(frame, "id: {id}");
    if let Some(event_type) = event_type {
        frame.push_str("event: ");
        frame.push_str(event_type.as_str());
        frame.push('\n');
    }
    if let Some(retry) = retry {
        let _ = writeln!(frame, "retry: {}", retry.as_millis());
    }
    for line in data_lines(data) {
        frame.push_str("data: ");
        frame.push_str(line);
        frame.push('\n');
    }
    frame.push('\n');
    Bytes::from(frame)
}

/// First bytes of every stream: the reconnection delay, and a comment so that
/// proxies and clients see the response open at once.
pub fn stream_prelude(retry: Duration) -> Bytes {
    Bytes::from(format!(
        "retry: {}\n: ssehub stream open\n\n",
        retry.as_millis()
    ))
}

/// A reconnection hint sent right before the hub ends a stream on purpose
/// (drain, capacity), so clients come back after `retry`.
pub fn retry_hint(retry: Duration) -> Bytes {
    Bytes::from(format!("retry: {}\n\n", retry.as_millis()))
}

/// Comment line that keeps idle connections alive through proxies.
pub const HEARTBEAT: Bytes = Bytes::from_static(b": heartbeat\n\n");

/// The `gap` frame: events were lost to this subscriber. `data` is JSON
/// saying why and where delivery resumes. It carries no `id`, so the client's
/// `Last-Event-ID` still names the last event it really received.
pub fn gap_frame(
    reason: &str,
    last_event_id: Option<EventId>,
    resumes_at: Option<EventId>,
) -> Bytes {
    let json = serde_json::json!({
        "reason": reason,
        "last_event_id": last_event_id.map(|id| id.to_string()),
        "resumes_at": resumes_at.map(|id| id.to_string()),
    });
    let mut frame = BytesMut::with_capacity(128);
    frame.put_slice(b"event: ");
    frame.put_slice(GAP_EVENT.as_bytes());
    frame.put_slice(b"\ndata: ");
    frame.put_slice(json.to_string().as_bytes());
    frame.put_slice(b"\n\n");
    frame.freeze()
}

/// The last frame of a stream whose token expired: `event: token_expired`,
/// data `{"reason":"token_expired","exp":<the token's exp, Unix seconds>}`.
/// Like `gap`, it carries no `id`, so the page can reopen its stream with
/// `lastEventId` set to the last event it really received.
pub fn token_expired_frame(expired_at: std::time::SystemTime) -> Bytes {
    let exp = expired_at
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    let json = serde_json::json!({ "reason": TOKEN_EXPIRED_EVENT, "exp": exp });
    let mut frame = BytesMut::with_capacity(80);
    frame.put_slice(b"event: ");
    frame.put_slice(TOKEN_EXPIRED_EVENT.as_bytes());
    frame.put_slice(b"\ndata: ");
    frame.put_slice(json.to_string().as_bytes());
    frame.put_slice(b"\n\n");
    frame.freeze()
}

/// Why a subscriber was told it lost events (the `reason` of a gap frame).
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::VariantArray, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum GapReason {
    /// The resume id is older than the history still held.
    HistoryExceeded,
    /// The resume id comes from another epoch (e.g. before a restart).
    UnknownEpoch,
    /// The subscriber fell behind its live queue and history.
    Lagged,
    /// History could not be read (backplane down).
    HistoryUnavailable,
    /// The backplane's history started over under an open stream (a Redis
    /// that came back empty): nothing from before can be replayed.
    EpochChanged,
}

impl GapReason {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gap_reasons_are_snake_case() {
        assert_eq!(GapReason::HistoryExceeded.as_str(), "history_exceeded");
    }

    #[test]
    fn the_expiry_frame_names_its_event_and_the_exp_without_an_id() {
        let at = std::time::UNIX_EPOCH + Duration::from_secs(1_767_225_600);
        assert_eq!(
            &token_expired_frame(at)[..],
            b"event: token_expired\ndata: {\"exp\":1767225600,\"reason\":\"token_expired\"}\n\n"
        );
    }

    fn frame_text(data: &str) -> String {
        let bytes = event_frame(EventId::new(1, 2), None, None, data);
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[test]
    fn splits_every_kind_of_line_break() {
        assert_eq!(
            frame_text("a\nb\r\nc\rd"),
            "id: 1-2\ndata: a\ndata: b\ndata: c\ndata: d\n\n"
        );
    }

    #[test]
    fn empty_and_trailing_lines_are_kept() {
        assert_eq!(frame_text(""), "id: 1-2\ndata: \n\n");
        assert_eq!(frame_text("a\n"), "id: 1-2\ndata: a\ndata: \n\n");
        assert_eq!(frame_text("\r\n"), "id: 1-2\ndata: \ndata: \n\n");
    }

    #[test]
    fn event_and_retry_fields() {
        let event_type = EventType::parse("price").unwrap();
        let bytes = event_frame(
            EventId::new(0xab, 0x10),
            Some(&event_type),
            Some(Duration::from_millis(1500)),
            "{\"p\":1}",
        );
        assert_eq!(
            &bytes[..],
            b"id: ab-10\nevent: price\nretry: 1500\ndata: {\"p\":1}\n\n"
        );
    }

    #[test]
    fn capacity_estimate_is_never_short() {
        let event_type = EventType::parse(&"e".repeat(EVENT_TYPE_MAX_CHARS)).unwrap();
        let data = "x\r\n\r\ny\rz\n".repeat(50);
        let bytes = event_frame(
            EventId::new(u64::MAX, u64::MAX),
            Some(&event_type),
            Some(Duration::from_millis(u64::MAX)),
            &data,
        );
        assert!(bytes.ends_with(b"\n\n"));
    }

    #[test]
    fn event_type_injection_is_refused() {
        for bad in ["a\nid: 9", "a\rb", "a\0", ""] {
            assert!(EventType::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(EventType::parse(&"e".repeat(EVENT_TYPE_MAX_CHARS + 1)).is_err());
    }

    #[test]
    fn the_hubs_own_event_types_are_reserved_exactly() {
        for name in ["gap", "token_expired"] {
            assert_eq!(
                EventType::parse(name),
                Err(InvalidEventType::Reserved { name })
            );
        }
        // What `EventSource` dispatches to other listeners stays usable.
        for free in [
            "Gap",
            "GAP",
            "gap ",
            " gap",
            "gaps",
            "Token_Expired",
            "message",
        ] {
            assert!(EventType::parse(free).is_ok(), "{free:?} refused");
        }
    }

    #[test]
    fn the_hubs_frames_carry_the_reserved_types() {
        let gap = gap_frame("history_exceeded", None, None);
        let expired = token_expired_frame(std::time::UNIX_EPOCH);
        for (frame, name) in [(gap, GAP_EVENT), (expired, TOKEN_EXPIRED_EVENT)] {
            assert!(RESERVED_EVENT_TYPES.contains(&name));
            assert!(frame.starts_with(format!("event: {name}\n").as_bytes()));
        }
    }

    #[test]
    fn gap_frame_has_no_id() {
        let frame = gap_frame("history_exceeded", Some(EventId::new(1, 1)), None);
        let text = std::str::from_utf8(&frame).unwrap();
        assert!(text.starts_with("event: gap\ndata: {"), "{text}");
        assert!(!text.contains("\nid:"), "{text}");
        assert!(text.contains("\"last_event_id\":\"1-1\""), "{text}");
    }
}
