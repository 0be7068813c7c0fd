//! The pub/sub message of one publish call, as `PUBLISH_LUA` writes it:
//! a header line `<epoch> <first seq> <accepted ms> <count>` (decimal), then
//! one wire JSON ([`WireEvent`]) per line, in id order.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::wire::WireEvent;
use crate::model::{Event, EventId};

/// A message this build can't read: a bug, or another program on the channel.
#[derive(Debug, thiserror::Error)]
#[error("unreadable message on the backplane channel: {0}")]
pub(super) struct MalformedMessage(pub String);

/// The header alone, read before any event is decoded, so that a message
/// already covered costs no JSON parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Header {
    pub epoch: u64,
    pub first_seq: u64,
    pub accepted_ms: u64,
    pub count: u64,
}

impl Header {
    pub fn last_seq(&self) -> u64 {
        self.first_seq + self.count - 1
    }

    pub fn accepted_at(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.accepted_ms)
    }
}

/// Splits a message into its header and the rest.
pub(super) fn header(payload: &str) -> Result<(Header, &str), MalformedMessage> {
    let malformed = || MalformedMessage(payload.chars().take(80).collect());
    let (line, rest) = payload.split_once('\n').ok_or_else(malformed)?;
    let mut numbers = line.split(' ').map(str::parse::<u64>);
    let mut next = || numbers.next().and_then(Result::ok).ok_or_else(malformed);
    let header = Header {
        epoch: next()?,
        first_seq: next()?,
        accepted_ms: next()?,
        count: next()?,
    };
    if header.count == 0 || header.first_seq == 0 {
        return Err(malformed());
    }
    Ok((header, rest))
}

/// The events of a message, ids assigned from the header.
pub(super) fn events(header: &Header, body: &str) -> Result<Vec<Arc<Event>>, MalformedMessage> {
    let lines: Vec<&str> = body.split('\n').collect();
    if lines.len() as u64 != header.count {
        return Err(MalformedMessage(format!(
            "{} events announced, {} sent",
            header.count,
            lines.len()
        )));
    }
    lines
        .into_iter()
        .enumerate()
        .map(|(index, line)| {
            let id = EventId::new(header.epoch, header.first_seq + index as u64);
            decode(line, id, header.accepted_at())
        })
        .collect()
}

/// One event from its wire JSON (a message line or a history entry).
pub(super) fn decode(
    json: &str,
    id: EventId,
    accepted_at: SystemTime,
) -> Result<Arc<Event>, MalformedMessage> {
    let wire: WireEvent<'_> = serde_json::from_str(json)
        .map_err(|error| MalformedMessage(format!("event {id}: {error}")))?;
    let draft = wire
        .into_draft()
        .map_err(|error| MalformedMessage(format!("event {id}: {error}")))?;
    Ok(Event::accept(draft, id, accepted_at))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_message_reads_back_in_id_order() {
        let payload = "1700000000 41 1700000000123 2\n{\"t\":\"a\",\"d\":\"one\"}\n{\"t\":\"b\",\"e\":\"up\",\"d\":\"two\\nlines\"}";
        let (header, body) = header(payload).unwrap();
        assert_eq!(header.last_seq(), 42);
        let events = events(&header, body).unwrap();
        assert_eq!(events[0].id, EventId::new(1_700_000_000, 41));
        assert_eq!(events[1].topic.as_str(), "b");
        assert_eq!(
            std::str::from_utf8(&events[1].frame).unwrap(),
            format!(
                "id: {}\nevent: up\ndata: two\ndata: lines\n\n",
                events[1].id
            )
        );
        assert_eq!(
            events[0].accepted_at,
            UNIX_EPOCH + Duration::from_millis(1_700_000_000_123)
        );
    }

    #[test]
    fn a_message_that_does_not_add_up_is_refused() {
        for payload in [
            "",
            "no header",
            "1 2 3\n{}",
            "1 0 3 1\n{\"t\":\"a\",\"d\":\"x\"}",
            "1 x 3 1\n{\"t\":\"a\",\"d\":\"x\"}",
        ] {
            assert!(header(payload).is_err(), "{payload:?}");
        }
        let (header_two, body) = header("1 5 3 2\n{\"t\":\"a\",\"d\":\"x\"}").unwrap();
        assert!(
            events(&header_two, body).is_err(),
            "one line for two events"
        );
        let (bad_topic, body) = header("1 5 3 1\n{\"t\":\"a b\",\"d\":\"x\"}").unwrap();
        assert!(
            events(&bad_topic, body).is_err(),
            "a topic a publish would refuse"
        );
    }
}
