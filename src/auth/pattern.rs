//! Topic patterns: which topics a token (or `auth.public_topics`) covers.
//!
//! The syntax, segment by segment (segments are separated by `.`), never a
//! regular expression:
//! - a literal segment matches itself: `orders.42` matches only `orders.42`
//!   (not `orders.420`, not `orders.4`);
//! - `{sub}` matches the token's subject (`sub` claim) as a whole segment
//!   run: `user.{sub}` matches `user.42` for `sub = "42"` and nothing for a
//!   token without a subject;
//! - `*`, only as the last segment, matches one or more further segments:
//!   `orders.*` matches `orders.42` and `orders.42.lines`, not `orders`;
//!   `*` alone matches every topic.
//!
//! Matching walks the topic once and allocates nothing.

use std::fmt;

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
            let segment = match part {
                Part::Literal(literal) => literal.as_str(),
                Part::Subject => match subject {
                    Some(subject) if !subject.is_empty() => subject,
                    _ => return false,
                },
            };
            let Some(after) = rest.strip_prefix(segment) else {
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
    byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'-' | b':' | b'~')
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
