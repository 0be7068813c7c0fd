//! Topic patterns: which topics a token (or `auth.public_topics`) covers.
//!
//! The syntax, segment by segment (segments are separated by `.`), never a
//! regular expression:
//! - a literal segment matches itself: `orders.42` matches only `orders.42`
//!   (not `orders.420`, not `orders.4`);
//! - `{sub}` matches exactly one segment: the token's subject (`sub`
//!   claim) written as a segment ([`subject_segment`]). `user.{sub}` matches
//!   `user.42` for `sub = "42"`, `user.john~2Esmith` for `sub =
//!   "john.smith"`, and nothing for a token without a subject;
//! - `*`, only as the last segment, matches one or more further segments:
//!   `orders.*` matches `orders.42` and `orders.42.lines`, not `orders`;
//!   `*` alone matches every topic.
//!
//! Matching walks the topic once and allocates nothing.

use std::fmt;

/// How a subject byte that is not a segment byte of its own is written:
/// `~` and two upper-case hex digits (percent-encoding, with `~` for `%`).
const SUBJECT_ESCAPE: u8 = b'~';
const UPPER_HEX: &[u8; 16] = b"0123456789ABCDEF";

/// The longest pattern, in bytes: a topic name (128) plus room for `{sub}`
/// placeholders and the `.*` tail.
pub const PATTERN_MAX_BYTES: usize = 256;

/// A parsed pattern; see the module documentation for the syntax.
#[derive(Clone, PartialEq, Eq)]
pub struct TopicPattern {
    parts: Vec<Part>,
    /// Ends with `.*` (or is `*`): one or more further segments follow.
    any_suffix: bool,
    text: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Literal(String),
    Subject,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidPattern {
    #[error("a topic pattern must not be empty")]
    Empty,
    #[error("a topic pattern is at most {PATTERN_MAX_BYTES} bytes")]
    TooLong,
    #[error("{pattern:?}: `*` may only be the last segment (`orders.*`) or the whole pattern")]
    MisplacedWildcard { pattern: String },
    #[error("{pattern:?}: empty segment (two dots, or a leading or trailing dot)")]
    EmptySegment { pattern: String },
    #[error("{pattern:?}: the only placeholder is `{{sub}}`, as a whole segment")]
    UnknownPlaceholder { pattern: String },
    #[error("{pattern:?}: segments are made of A-Z a-z 0-9 _ - : ~ (as topic names)")]
    BadCharacter { pattern: String },
}

impl TopicPattern {
    pub fn parse(text: &str) -> Result<Self, InvalidPattern> {
        if text.is_empty() {
            return Err(InvalidPattern::Empty);
        }
        if text.len() > PATTERN_MAX_BYTES {
            return Err(InvalidPattern::TooLong);
        }
        let pattern = || text.to_owned();
        let segments: Vec<&str> = text.split('.').collect();
        let mut parts = Vec::with_capacity(segments.len());
        let mut any_suffix = false;
        for (index, segment) in segments.iter().enumerate() {
            let last = index + 1 == segments.len();
            match *segment {
                "" => return Err(InvalidPattern::EmptySegment { pattern: pattern() }),
                "*" if last => any_suffix = true,
                "{sub}" => parts.push(Part::Subject),
                segment if segment.contains('*') => {
                    return Err(InvalidPattern::MisplacedWildcard { pattern: pattern() });
                }
                segment if segment.contains(['{', '}']) => {
                    return Err(InvalidPattern::UnknownPlaceholder { pattern: pattern() });
                }
                segment if !segment.bytes().all(is_segment_byte) => {
                    return Err(InvalidPattern::BadCharacter { pattern: pattern() });
                }
                segment => parts.push(Part::Literal(segment.to_owned())),
            }
        }
        Ok(Self {
            parts,
            any_suffix,
            text: text.to_owned(),
        })
    }

    /// Whether `topic` is covered, with `{sub}` standing for `subject`.
    pub fn matches(&self, topic: &str, subject: Option<&str>) -> bool {
        let mut rest = topic;
        for (index, part) in self.parts.iter().enumerate() {
            if index > 0 {
                let Some(after_dot) = rest.strip_prefix('.') else {
                    return false;
                };
                rest = after_dot;
            }
            let after = match part {
                Part::Literal(literal) => rest.strip_prefix(literal.as_str()),
                Part::Subject => match subject {
                    Some(subject) if !subject.is_empty() => strip_subject(rest, subject),
                    _ => None,
                },
            };
            let Some(after) = after else {
                return false;
            };
            rest = after;
        }
        match (self.any_suffix, self.parts.is_empty()) {
            (false, _) => rest.is_empty(),
            (true, true) => !rest.is_empty(),
            (true, false) => rest.strip_prefix('.').is_some_and(|tail| !tail.is_empty()),
        }
    }

    /// Whether the pattern needs a subject to match anything.
    pub fn uses_subject(&self) -> bool {
        self.parts.contains(&Part::Subject)
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// A topic byte other than the `.` that separates segments.
fn is_segment_byte(byte: u8) -> bool {
    byte == SUBJECT_ESCAPE || stands_for_itself(byte)
}

/// A subject byte written as itself in its segment: a segment byte other
/// than the escape.
fn stands_for_itself(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'-' | b':')
}

/// The one topic segment that `{sub}` stands for: the subject's bytes, each
/// one outside `A-Z a-z 0-9 _ - :` written `~` and two upper-case hex
/// digits (`john.smith` → `john~2Esmith`, `a~b` → `a~7Eb`, `zoë` →
/// `zo~C3~AB`).
///
/// Why escaped rather than as is: a `.` in the subject would make `{sub}`
/// span several segments, so the subject `alice.inbox` with `user.{sub}`
/// would reach `user.alice.inbox`, inside `alice`'s `user.{sub}.*`. The
/// escaped form has no `.`, so `{sub}` is always exactly one segment; and
/// since `~` is escaped too, two subjects never share a segment, so no
/// subject's topics are reachable through another's `{sub}`.
pub fn subject_segment(subject: &str) -> String {
    let mut segment = String::with_capacity(subject.len());
    for &byte in subject.as_bytes() {
        if stands_for_itself(byte) {
            segment.push(char::from(byte));
        } else {
            segment.push(char::from(SUBJECT_ESCAPE));
            segment.push(char::from(UPPER_HEX[usize::from(byte >> 4)]));
            segment.push(char::from(UPPER_HEX[usize::from(byte & 0xF)]));
        }
    }
    segment
}

/// `topic` after the [`subject_segment`] of `subject`, if it starts with
/// it; compared byte by byte, without building the segment.
fn strip_subject<'t>(topic: &'t str, subject: &str) -> Option<&'t str> {
    let mut rest = topic.as_bytes();
    for &byte in subject.as_bytes() {
        rest = if stands_for_itself(byte) {
            rest.strip_prefix(&[byte])?
        } else {
            let escaped = [
                SUBJECT_ESCAPE,
                UPPER_HEX[usize::from(byte >> 4)],
                UPPER_HEX[usize::from(byte & 0xF)],
            ];
            rest.strip_prefix(&escaped)?
        };
    }
    // Only ASCII bytes were consumed, so this is a character boundary.
    Some(&topic[topic.len() - rest.len()..])
}

impl fmt::Debug for TopicPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.text, f)
    }
}

impl fmt::Display for TopicPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, topic: &str, subject: Option<&str>) -> bool {
        TopicPattern::parse(pattern)
            .unwrap()
            .matches(topic, subject)
    }

    #[test]
    fn an_exact_pattern_matches_only_its_topic() {
        assert!(matches("orders.42", "orders.42", None));
        assert!(!matches("orders.4", "orders.42", None), "near miss");
        assert!(!matches("orders.42", "orders.4", None));
        assert!(!matches("orders.42", "orders.42.lines", None));
        assert!(!matches("orders", "orders.42", None));
    }

    #[test]
    fn a_wildcard_tail_matches_one_or_more_segments() {
        assert!(matches("orders.*", "orders.42", None));
        assert!(matches("orders.*", "orders.42.lines", None));
        assert!(!matches("orders.*", "orders", None));
        assert!(!matches("orders.*", "orders.", None));
        assert!(!matches("orders.*", "ordersx.42", None));
        assert!(!matches("orders.*", "order.42", None));
        assert!(matches("*", "anything.at:all", None));
    }

    #[test]
    fn the_subject_placeholder_is_the_token_subject_and_nothing_else() {
        assert!(matches("user.{sub}", "user.42", Some("42")));
        assert!(
            !matches("user.{sub}", "user.43", Some("42")),
            "another subject"
        );
        assert!(!matches("user.{sub}", "user.420", Some("42")));
        assert!(!matches("user.{sub}", "user.4", Some("42")));
        assert!(!matches("user.{sub}", "user.42", None), "no subject");
        assert!(!matches("user.{sub}", "user.", Some("")));
        assert!(matches("user.{sub}.*", "user.42.inbox", Some("42")));
        assert!(!matches("user.{sub}.*", "user.42", Some("42")));
        assert!(!matches("user.{sub}.*", "user.420.inbox", Some("42")));
        assert!(matches("{sub}.inbox", "alice.inbox", Some("alice")));
    }

    #[test]
    fn a_subject_is_written_as_one_segment() {
        for (subject, segment) in [
            ("42", "42"),
            ("Ab_-:9", "Ab_-:9"),
            ("john.smith", "john~2Esmith"),
            ("a~b", "a~7Eb"),
            ("a~2Eb", "a~7E2Eb"),
            ("ann@example.com", "ann~40example~2Ecom"),
            ("auth0|5f7c", "auth0~7C5f7c"),
            ("zoë", "zo~C3~AB"),
            ("a b/c", "a~20b~2Fc"),
        ] {
            assert_eq!(subject_segment(subject), segment, "{subject:?}");
            assert!(
                crate::model::TopicName::parse(&format!("user.{segment}")).is_ok(),
                "{segment:?} is a topic segment"
            );
        }
    }

    #[test]
    fn a_dotted_subject_matches_only_its_escaped_segment() {
        let dotted = Some("john.smith");
        assert!(matches("user.{sub}", "user.john~2Esmith", dotted));
        assert!(matches("user.{sub}.*", "user.john~2Esmith.inbox", dotted));
        assert!(!matches("user.{sub}", "user.john.smith", dotted));
        assert!(!matches("user.{sub}.*", "user.john.smith.inbox", dotted));
        assert!(
            !matches("user.{sub}", "user.john~2esmith", dotted),
            "the hex digits are upper case: one spelling per subject"
        );
        assert!(matches(
            "user.{sub}",
            "user.ann~40example~2Ecom",
            Some("ann@example.com")
        ));
        assert!(matches("user.{sub}", "user.zo~C3~AB", Some("zoë")));
    }

    /// The case: `alice.inbox` must not reach `alice`'s space, nor
    /// `alice` the space of `alice.inbox`, whatever the patterns.
    #[test]
    fn no_subject_reaches_another_subjects_topics() {
        let patterns = [
            "user.{sub}",
            "user.{sub}.*",
            "{sub}",
            "{sub}.*",
            "user.{sub}.inbox",
        ];
        let topics = [
            "user.alice",
            "user.alice.inbox",
            "user.alice.inbox.x",
            "user.alice~2Einbox",
            "user.alice~2Einbox.x",
            "user.alice~2Einbox.inbox",
            "alice",
            "alice.inbox",
            "alice~2Einbox",
            "alice~2Einbox.inbox",
            "user.alice~7E2Einbox",
        ];
        let subjects = ["alice", "alice.inbox", "alice~2Einbox", "inbox"];
        for topic in topics {
            let owners: Vec<&str> = subjects
                .iter()
                .copied()
                .filter(|subject| {
                    patterns
                        .iter()
                        .any(|pattern| matches(pattern, topic, Some(subject)))
                })
                .collect();
            assert!(owners.len() <= 1, "{topic} is reachable by {owners:?}");
        }
        assert!(!matches(
            "user.{sub}",
            "user.alice.inbox",
            Some("alice.inbox")
        ));
        assert!(matches("user.{sub}.*", "user.alice.inbox", Some("alice")));
        assert!(!matches(
            "user.{sub}.*",
            "user.alice~2Einbox.x",
            Some("alice")
        ));
    }

    proptest::proptest! {
        /// One segment per subject, never shared: the segment has no `.`
        /// and two different subjects never have the same segment.
        #[test]
        fn subject_segments_are_one_segment_and_never_shared(
            first in "\\PC{0,12}|[a-z.~0-9A-F]{0,12}",
            second in "\\PC{0,12}|[a-z.~0-9A-F]{0,12}",
        ) {
            let segment = subject_segment(&first);
            proptest::prop_assert!(!segment.contains('.'));
            proptest::prop_assert!(segment.bytes().all(is_segment_byte));
            if first != second {
                proptest::prop_assert_ne!(&segment, &subject_segment(&second));
            }
            if !first.is_empty() {
                let own = matches("u.{sub}.*", &format!("u.{segment}.x"), Some(&first));
                proptest::prop_assert!(own, "{:?} misses its own space", first);
                let reached = matches("u.{sub}", &format!("u.{segment}"), Some(&second));
                proptest::prop_assert_eq!(
                    reached,
                    first == second,
                    "{:?} reached {:?}'s topic",
                    second,
                    first
                );
            }
        }
    }

    #[test]
    fn bad_patterns_are_refused_with_a_reason() {
        for (pattern, expected) in [
            ("", InvalidPattern::Empty),
            (
                "orders.4*",
                InvalidPattern::MisplacedWildcard {
                    pattern: "orders.4*".into(),
                },
            ),
            (
                "*.orders",
                InvalidPattern::MisplacedWildcard {
                    pattern: "*.orders".into(),
                },
            ),
            (
                "orders..42",
                InvalidPattern::EmptySegment {
                    pattern: "orders..42".into(),
                },
            ),
            (
                "user.{id}",
                InvalidPattern::UnknownPlaceholder {
                    pattern: "user.{id}".into(),
                },
            ),
            (
                "user.x{sub}",
                InvalidPattern::UnknownPlaceholder {
                    pattern: "user.x{sub}".into(),
                },
            ),
            (
                "orders/42",
                InvalidPattern::BadCharacter {
                    pattern: "orders/42".into(),
                },
            ),
            (
                "orders.^4[0-9]$",
                InvalidPattern::BadCharacter {
                    pattern: "orders.^4[0-9]$".into(),
                },
            ),
        ] {
            assert_eq!(TopicPattern::parse(pattern), Err(expected), "{pattern}");
        }
        assert_eq!(
            TopicPattern::parse(&"a".repeat(PATTERN_MAX_BYTES + 1)),
            Err(InvalidPattern::TooLong)
        );
    }
}
