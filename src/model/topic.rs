//! `TopicName`: a topic name that has passed the syntax rule.

use std::fmt;
use std::sync::Arc;

/// The longest topic name, in characters. Long enough for
/// `tenant.42.orders.1234567890:updates`, short enough to stay a cheap key.
pub const TOPIC_MAX_CHARS: usize = 128;

/// The rule, as shown to people whose topic name was refused.
pub const TOPIC_RULE: &str = "a topic name is 1-128 characters of A-Z a-z 0-9 . _ - : ~ \
                              (use `.` for hierarchy, e.g. `orders.42`)";

/// A validated topic name. Cloning is cheap (shared string), since every
/// event and subscription carries one.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicName(Arc<str>);

/// Why a topic name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid topic name {shown:?}: {TOPIC_RULE}")]
pub struct InvalidTopicName {
    /// The refused name, cut short so an error never echoes a huge input.
    pub shown: String,
}

impl TopicName {
    pub fn parse(name: &str) -> Result<Self, InvalidTopicName> {
        let valid =
            !name.is_empty() && name.len() <= TOPIC_MAX_CHARS && name.bytes().all(is_topic_byte);
        if valid {
            Ok(Self(Arc::from(name)))
        } else {
            Err(InvalidTopicName {
                shown: name.chars().take(TOPIC_MAX_CHARS + 8).collect(),
            })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The allowed characters are all ASCII, so byte length equals char count.
fn is_topic_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-' | b':' | b'~')
}

impl fmt::Display for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_alphabet() {
        for name in ["a", "orders.42", "A-Z_a:z~0.9", &"x".repeat(128)] {
            assert_eq!(TopicName::parse(name).unwrap().as_str(), name);
        }
    }

    #[test]
    fn refuses_everything_else() {
        for name in ["", "a b", "a/b", "é", "a\nb", "a*", &"x".repeat(129)] {
            assert!(TopicName::parse(name).is_err(), "{name:?} was accepted");
        }
    }
}
