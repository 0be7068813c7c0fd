//! The event payload: a plain ASCII token that any server passes through
//! untouched and any subscriber can read back, JSON-wrapped or not:
//!
//! `<run-id>.<topic>.<seq>.<completed-before>.<scheduled-unix-nanos>.<padding>`
//!
//! - `run-id` tells this run's events from anything else on the stream;
//! - `topic` is the topic index, `seq` the publish's number within its topic;
//! - `completed-before`: every publish of the topic numbered below it had
//!   been answered when this one was sent, so the server must deliver those
//!   first (see `verify`);
//! - `scheduled-unix-nanos` is when the open-loop schedule wanted it sent:
//!   latency is measured from there;
//! - `padding` (`x`…) brings the token to the payload size.

use std::fmt::Write;

const PADDING_BYTE: char = 'x';

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PayloadToken<'a> {
    pub run_id: &'a [u8],
    pub topic: u32,
    pub seq: u64,
    pub completed_before: u64,
    pub scheduled_unix_nanos: u64,
}

impl PayloadToken<'_> {
    /// Writes the token padded to `size_bytes` (longer if the fields need it).
    pub fn encode(&self, size_bytes: usize) -> String {
        let mut token = String::with_capacity(size_bytes.max(64));
        token.push_str(std::str::from_utf8(self.run_id).expect("run ids are ASCII"));
        write!(
            token,
            ".{}.{}.{}.{}.",
            self.topic, self.seq, self.completed_before, self.scheduled_unix_nanos
        )
        .expect("writing to a String cannot fail");
        while token.len() < size_bytes {
            token.push(PADDING_BYTE);
        }
        token
    }
}

/// Reads a token back from event data. Surrounding JSON quotes (ssehub sends
/// `data` as JSON) are ignored. `None` when the data is not a token.
pub fn parse(data: &[u8]) -> Option<PayloadToken<'_>> {
    let mut rest = data.strip_prefix(b"\"").unwrap_or(data);
    // Five dot-terminated fields; the padding after them is never scanned.
    let mut next_field = || {
        let dot = memchr::memchr(b'.', rest)?;
        let field = &rest[..dot];
        rest = &rest[dot + 1..];
        Some(field)
    };
    let run_id =
        next_field().filter(|id| !id.is_empty() && id.iter().all(u8::is_ascii_alphanumeric))?;
    let topic = parse_decimal(next_field()?)?;
    let seq = parse_decimal(next_field()?)?;
    let completed_before = parse_decimal(next_field()?)?;
    let scheduled_unix_nanos = parse_decimal(next_field()?)?;
    Some(PayloadToken {
        run_id,
        topic: u32::try_from(topic).ok()?,
        seq,
        completed_before,
        scheduled_unix_nanos,
    })
}

/// Digits only; at most 19 of them, which always fit in a u64 (unix nanos
/// have 19 until the year 2286).
fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    let mut value = 0u64;
    for &byte in digits {
        let digit = byte.wrapping_sub(b'0');
        if digit > 9 {
            return None;
        }
        value = value * 10 + u64::from(digit);
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: PayloadToken<'static> = PayloadToken {
        run_id: b"r1a2",
        topic: 3,
        seq: 42,
        completed_before: 40,
        scheduled_unix_nanos: 1_700_000_000_123_456_789,
    };

    #[test]
    fn encodes_to_the_requested_size() {
        let token = TOKEN.encode(256);
        assert_eq!(token.len(), 256);
        assert!(token.starts_with("r1a2.3.42.40.1700000000123456789.xxx"));
        assert!(token.bytes().all(|b| b.is_ascii_graphic()));
    }

    #[test]
    fn short_sizes_keep_every_field() {
        assert_eq!(TOKEN.encode(8), "r1a2.3.42.40.1700000000123456789.");
    }

    #[test]
    fn round_trips_plain_and_json_quoted() {
        let token = TOKEN.encode(100);
        assert_eq!(parse(token.as_bytes()), Some(TOKEN));
        let quoted = format!("\"{token}\"");
        assert_eq!(parse(quoted.as_bytes()), Some(TOKEN));
    }

    #[test]
    fn rejects_other_data() {
        assert_eq!(parse(b"hello"), None);
        assert_eq!(parse(b"r1.1.2.3"), None);
        assert_eq!(
            parse(b"r1.1.2.3.4"),
            None,
            "cut before the dot that ends the fields"
        );
        assert_eq!(parse(b"r1.a.2.3.4."), None);
        assert_eq!(parse(b".1.2.3.4."), None);
        assert_eq!(
            parse(b"r1.1.2.3.99999999999999999999999."),
            None,
            "overflow"
        );
        assert_eq!(parse(b"{\"x\":1}"), None);
    }
}
