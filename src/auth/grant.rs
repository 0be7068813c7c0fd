//! A grant: what one set of credentials allows.

use std::time::SystemTime;

use super::pattern::TopicPattern;
use crate::model::TopicName;

/// Who publishes, for the per-publisher rate limit.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PublisherId {
    /// The n-th static key of `auth.publish_keys` (and the file).
    StaticKey(usize),
    /// A JWT's issuer and subject.
    Subject { issuer: String, subject: String },
    /// A JWT without a subject: limited by the token itself (its signature).
    Token(String),
}

impl PublisherId {
    /// A name of this publisher that is the same on every replica with the
    /// same keys, and never the same for two publishers: the scope of its
    /// idempotency keys. (The kinds are tagged, and a JWT's issuer and
    /// subject split by a NUL, which neither can hold.)
    pub fn stable_name(&self) -> String {
        match self {
            Self::StaticKey(index) => format!("static-key:{index}"),
            Self::Subject { issuer, subject } => format!("jwt:{issuer}\0{subject}"),
            Self::Token(signature) => format!("token:{signature}"),
        }
    }
}

/// The topics an action is allowed on.
#[derive(Debug, Clone)]
pub enum Scope {
    Every,
    Patterns(Vec<TopicPattern>),
}

/// What the presented credentials allow.
#[derive(Debug, Clone)]
pub struct Grant {
    pub publisher: PublisherId,
    /// The token's `sub`, which `{sub}` in its patterns stands for.
    pub subject: Option<String>,
    pub publish: Scope,
    pub subscribe: Scope,
    /// The token's `exp` (never past `token::MAX_TOKEN_EXP`, so a stream's
    /// end can be scheduled on any clock); `None` for static keys.
    pub expires_at: Option<SystemTime>,
}

impl Grant {
    /// A static key: the operator's own, good for every topic.
    pub fn static_key(index: usize) -> Self {
        Self {
            publisher: PublisherId::StaticKey(index),
            subject: None,
            publish: Scope::Every,
            subscribe: Scope::Every,
            expires_at: None,
        }
    }

    pub fn may_publish(&self, topic: &TopicName) -> bool {
        self.allows(&self.publish, topic)
    }

    pub fn may_subscribe(&self, topic: &TopicName) -> bool {
        self.allows(&self.subscribe, topic)
    }

    fn allows(&self, scope: &Scope, topic: &TopicName) -> bool {
        match scope {
            Scope::Every => true,
            Scope::Patterns(patterns) => patterns
                .iter()
                .any(|pattern| pattern.matches(topic.as_str(), self.subject.as_deref())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token_grant(subject: &str, patterns: &[&str]) -> Grant {
        let scope = Scope::Patterns(
            patterns
                .iter()
                .map(|text| TopicPattern::parse(text).unwrap())
                .collect(),
        );
        Grant {
            publisher: PublisherId::Subject {
                issuer: String::new(),
                subject: subject.to_owned(),
            },
            subject: Some(subject.to_owned()),
            publish: scope.clone(),
            subscribe: scope,
            expires_at: None,
        }
    }

    fn topic(name: &str) -> TopicName {
        TopicName::parse(name).unwrap()
    }

    #[test]
    fn a_dotted_subject_neither_publishes_nor_subscribes_in_another_subjects_space() {
        let alice = token_grant("alice", &["user.{sub}", "user.{sub}.*"]);
        let dotted = token_grant("alice.inbox", &["user.{sub}", "user.{sub}.*"]);
        let alices_inbox = topic("user.alice.inbox");
        assert!(alice.may_subscribe(&alices_inbox) && alice.may_publish(&alices_inbox));
        assert!(!dotted.may_subscribe(&alices_inbox));
        assert!(!dotted.may_publish(&alices_inbox));
        assert!(!dotted.may_subscribe(&topic("user.alice.inbox.x")));

        let dotted_own = topic("user.alice~2Einbox");
        assert!(dotted.may_subscribe(&dotted_own) && dotted.may_publish(&dotted_own));
        assert!(!alice.may_subscribe(&dotted_own));
        assert!(!alice.may_publish(&dotted_own));
        assert!(!alice.may_publish(&topic("user.alice~2Einbox.x")));
    }
}
