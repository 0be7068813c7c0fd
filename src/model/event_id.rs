//! `EventId`: the server-assigned position of an event.
//!
//! On the wire an id is `<epoch>-<seq>`, both lowercase hex, e.g. `5f3a9c21-2a`.
//! Clients treat it as opaque. `seq` increases across the whole hub (so it
//! increases per topic too, and one `Last-Event-ID` can resume a connection
//! that follows several topics); `epoch` names the history the id belongs to,
//! so an id handed out before a restart of an in-memory hub is recognised as
//! foreign instead of being mistaken for a position in the new history.

use std::fmt;

#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct EventId {
    pub epoch: u64,
    pub seq: u64,
}

/// A `Last-Event-ID` that is not an id this hub could have made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed event id {0:?}: expected the `id` of an event sent by this hub")]
pub struct MalformedEventId(pub String);

impl EventId {
    pub fn new(epoch: u64, seq: u64) -> Self {
        Self { epoch, seq }
    }

    /// Parses the wire form. Ids never contain CR, LF or NUL, by construction.
    pub fn parse(text: &str) -> Result<Self, MalformedEventId> {
        let malformed = || MalformedEventId(text.chars().take(64).collect());
        let (epoch, seq) = text.split_once('-').ok_or_else(malformed)?;
        let epoch = parse_hex(epoch).ok_or_else(malformed)?;
        let seq = parse_hex(seq).ok_or_else(malformed)?;
        Ok(Self { epoch, seq })
    }
}

fn parse_hex(text: &str) -> Option<u64> {
    if text.is_empty() || text.len() > 16 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(text, 16).ok()
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:x}-{:x}", self.epoch, self.seq)
    }
}

/// Where a subscriber asks to resume from, as the client sent it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ResumePoint {
    /// No `Last-Event-ID`: live events only.
    #[default]
    Live,
    /// Every event after this id.
    After(EventId),
    /// An id this hub could not have made: treated like one from another
    /// epoch (gap frame, then all history held).
    Foreign,
    /// All history held, asked for as such (Mercure's `earliest`): no gap
    /// frame.
    Earliest,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let id = EventId::new(0x5f3a_9c21, 42);
        assert_eq!(id.to_string(), "5f3a9c21-2a");
        assert_eq!(EventId::parse("5f3a9c21-2a").unwrap(), id);
    }

    #[test]
    fn refuses_garbage() {
        for text in [
            "",
            "-",
            "1-",
            "-1",
            "12",
            "x-1",
            "1-2-3",
            "1- 2",
            "11111111111111111-1",
        ] {
            assert!(EventId::parse(text).is_err(), "{text:?} parsed");
        }
    }

    #[test]
    fn orders_by_seq_within_an_epoch() {
        assert!(EventId::new(1, 9) < EventId::new(1, 10));
    }
}
