//! Idempotency keys: what a publisher sends in `Idempotency-Key` so that a
//! retried publish is answered from the first one's record instead of
//! publishing again (the IETF httpapi draft "The Idempotency-Key HTTP
//! Header Field").
//!
//! The header is parsed here into an [`IdempotencyKey`]; a publish that
//! carries one becomes an [`Idempotency`]: two SHA-256 digests, one naming
//! the record (the publisher's scope and the key) and one of what the
//! request publishes (the route, each event's topic, type, retry and data).
//! Digests keep every record the same small size whatever the key, and are
//! the same on every replica and every build (a std hasher is neither).

use std::fmt;

use sha2::{Digest, Sha256};

use super::EventDraft;

/// The longest key accepted, in bytes (after unquoting). The draft sets no
/// limit; a UUID is 36 bytes, and 255 leaves room for any scheme a
/// publisher might build (`order-<uuid>-<attempt>`) while bounding what a
/// request may make the hub hash.
pub const IDEMPOTENCY_KEY_MAX_BYTES: usize = 255;

/// A valid `Idempotency-Key` value: 1 to [`IDEMPOTENCY_KEY_MAX_BYTES`]
/// bytes of printable ASCII.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

/// Why a header value is not an idempotency key (the message says what is).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidIdempotencyKey(String);

impl InvalidIdempotencyKey {
    pub fn new(reason: impl Into<String>) -> Self {
        Self(reason.into())
    }
}

impl IdempotencyKey {
    /// Reads the header's value. The draft's form is a Structured Field
    /// String (`"4f1c…"`, RFC 9651); a bare value (`4f1c…`, what a curl
    /// user types) is taken as the same key, so `"abc"` and `abc` name one
    /// record. Bare values are printable ASCII without spaces, quotes or
    /// backslashes (any of those needs the quoted form).
    pub fn parse(value: &[u8]) -> Result<Self, InvalidIdempotencyKey> {
        // HTTP's optional whitespace around a field value (RFC 9110 5.5).
        let is_whitespace = |byte: &u8| *byte == b' ' || *byte == b'\t';
        let start = value
            .iter()
            .position(|b| !is_whitespace(b))
            .unwrap_or(value.len());
        let end = value
            .iter()
            .rposition(|b| !is_whitespace(b))
            .map_or(start, |at| at + 1);
        let value = &value[start..end];
        let key = if value.first() == Some(&b'"') {
            let item = sfv::Parser::new(value)
                .parse_item::<sfv::Item>()
                .map_err(|error| {
                    InvalidIdempotencyKey(format!(
                        "Idempotency-Key is not a valid quoted string ({error}): \
                         send e.g. \"4f1c2a9e-8d3b-4b7a-9c41-2f0e6d5a7b13\" \
                         (printable ASCII, `\\\"` and `\\\\` escaped)"
                    ))
                })?;
            // The draft defines no parameters: a key is the string alone.
            match item.bare_item {
                sfv::BareItem::String(text) if item.params.is_empty() => text.as_str().to_owned(),
                _ => {
                    return Err(InvalidIdempotencyKey(
                        "Idempotency-Key is a quoted string alone, without parameters \
                         (`;name=value`): send e.g. \"4f1c2a9e-8d3b-4b7a\""
                            .to_owned(),
                    ));
                }
            }
        } else {
            let bare = value
                .iter()
                .all(|byte| byte.is_ascii_graphic() && *byte != b'"' && *byte != b'\\');
            if !bare {
                return Err(InvalidIdempotencyKey(
                    "Idempotency-Key must be a quoted string (\"…\") or printable ASCII \
                     without spaces, quotes or backslashes, e.g. 4f1c2a9e-8d3b-4b7a"
                        .to_owned(),
                ));
            }
            String::from_utf8(value.to_vec()).expect("ASCII")
        };
        if key.is_empty() {
            return Err(InvalidIdempotencyKey(
                "Idempotency-Key is empty: send a unique value per publish, e.g. a UUID".to_owned(),
            ));
        }
        if key.len() > IDEMPOTENCY_KEY_MAX_BYTES {
            return Err(InvalidIdempotencyKey(format!(
                "Idempotency-Key is {} bytes; at most {IDEMPOTENCY_KEY_MAX_BYTES} are accepted \
                 (a UUID is 36)",
                key.len()
            )));
        }
        Ok(Self(key))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A SHA-256 digest.
pub type Digest256 = [u8; 32];

/// What a backplane records with a keyed publish, atomically with its
/// events, and checks a later publish with the same key against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idempotency {
    /// Names the record: the publisher's scope and the key.
    pub record: Digest256,
    /// What the request publishes: a retry must match it.
    pub fingerprint: Digest256,
}

impl Idempotency {
    /// The record of `key` sent by `publisher` (a stable name of who
    /// publishes: keys of different publishers never meet) on `route`,
    /// publishing `drafts`.
    pub fn new(key: &IdempotencyKey, publisher: &str, route: &str, drafts: &[EventDraft]) -> Self {
        Self {
            record: digest(&[publisher.as_bytes(), key.as_str().as_bytes()]),
            fingerprint: fingerprint(route, drafts),
        }
    }

    /// The record's digest in lowercase hex (a Redis key's last part).
    pub fn record_hex(&self) -> String {
        hex(&self.record)
    }

    /// The fingerprint in lowercase hex (as Redis stores it).
    pub fn fingerprint_hex(&self) -> String {
        hex(&self.fingerprint)
    }
}

/// SHA-256 of `parts`, each prefixed with its length so that no two
/// different lists of parts hash the same input.
fn digest(parts: &[&[u8]]) -> Digest256 {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    hasher.finalize().into()
}

/// The route and every event as it would be published (topic, type, retry,
/// data; not the trace, which differs between retries). Two bodies that
/// publish the same events (whitespace, field order) match.
fn fingerprint(route: &str, drafts: &[EventDraft]) -> Digest256 {
    let mut parts: Vec<&[u8]> = Vec::with_capacity(1 + drafts.len() * 4);
    let retries: Vec<[u8; 8]> = drafts
        .iter()
        .map(|draft| {
            // u64::MAX: no retry (a retry is at most a minute).
            let ms = draft
                .retry
                .map_or(u64::MAX, |retry| retry.as_millis() as u64);
            ms.to_be_bytes()
        })
        .collect();
    parts.push(route.as_bytes());
    for (draft, retry) in drafts.iter().zip(&retries) {
        parts.push(draft.topic.as_str().as_bytes());
        // `\0` can't be in an event type: no type and an empty one differ.
        parts.push(
            draft
                .event_type
                .as_ref()
                .map_or(b"\0", |t| t.as_str().as_bytes()),
        );
        parts.push(retry);
        parts.push(draft.data.as_bytes());
    }
    digest(&parts)
}

fn hex(digest: &Digest256) -> String {
    use fmt::Write;
    let mut text = String::with_capacity(64);
    for byte in digest {
        let _ = write!(text, "{byte:02x}");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{EventType, TopicName};

    fn key(value: &str) -> Result<IdempotencyKey, InvalidIdempotencyKey> {
        IdempotencyKey::parse(value.as_bytes())
    }

    fn draft(topic: &str, data: &str) -> EventDraft {
        EventDraft {
            topic: TopicName::parse(topic).unwrap(),
            event_type: None,
            retry: None,
            data: data.to_owned(),
            trace: None,
            mirror: false,
        }
    }

    #[test]
    fn the_quoted_and_the_bare_form_name_the_same_key() {
        assert_eq!(key("\"abc-1\"").unwrap(), key("abc-1").unwrap());
        assert_eq!(key(" \"a b\\\"c\" ").unwrap().as_str(), "a b\"c");
        assert_eq!(
            key("8e2f4c1a-1b2c-4d3e-9f00-0123456789ab")
                .unwrap()
                .as_str(),
            "8e2f4c1a-1b2c-4d3e-9f00-0123456789ab"
        );
    }

    #[test]
    fn malformed_empty_and_over_long_keys_are_refused_with_a_reason() {
        for bad in [
            "",
            "\"\"",
            "\"open",
            "a b",
            "a\"b",
            "\"a\"junk",
            "caf\u{e9}",
        ] {
            let error = key(bad).unwrap_err().to_string();
            assert!(error.contains("Idempotency-Key"), "{bad:?}: {error}");
        }
        assert!(key(&"k".repeat(IDEMPOTENCY_KEY_MAX_BYTES)).is_ok());
        let error = key(&"k".repeat(IDEMPOTENCY_KEY_MAX_BYTES + 1)).unwrap_err();
        assert!(error.to_string().contains("at most 255"), "{error}");
    }

    #[test]
    fn the_record_is_scoped_to_the_publisher_and_the_fingerprint_to_what_is_published() {
        let k = key("k").unwrap();
        let drafts = [draft("a", "1")];
        let alice = Idempotency::new(&k, "alice", "one", &drafts);
        assert_eq!(alice, Idempotency::new(&k, "alice", "one", &drafts));
        let bob = Idempotency::new(&k, "bob", "one", &drafts);
        assert_ne!(alice.record, bob.record);
        assert_eq!(alice.fingerprint, bob.fingerprint);
        for other in [
            Idempotency::new(&k, "alice", "batch", &drafts),
            Idempotency::new(&k, "alice", "one", &[draft("b", "1")]),
            Idempotency::new(&k, "alice", "one", &[draft("a", "2")]),
            Idempotency::new(&k, "alice", "one", &[draft("a", "1"), draft("a", "1")]),
        ] {
            assert_eq!(other.record, alice.record);
            assert_ne!(other.fingerprint, alice.fingerprint);
        }
        let mut typed = draft("a", "1");
        typed.event_type = Some(EventType::parse("update").unwrap());
        let typed = Idempotency::new(&k, "alice", "one", &[typed]);
        assert_ne!(typed.fingerprint, alice.fingerprint);
        // Splitting differently between parts changes the input.
        assert_ne!(digest(&[b"ab", b"c"]), digest(&[b"a", b"bc"]));
        assert_eq!(hex(&alice.record).len(), 64);
    }
}
