//! The HTTP layer's settings: CORS (`cors.*`), the console (`console.*`)
//! and the topic of the tutorial routes (`event_stream.topic`), with their
//! check.

use serde::{Deserialize, Serialize};

use crate::model::{TOPIC_RULE, TopicName};
use crate::setting::InvalidSetting;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct CorsConfig {
    /// Origins allowed to subscribe/publish from a browser; `["*"]` allows any.
    /// Empty: no CORS headers (same-origin only).
    pub allowed_origins: Vec<String>,
    /// Whether cookies/credentials may be sent cross-origin (not with `*`).
    pub allow_credentials: bool,
}

/// `event_stream.*`: the tutorial routes (`POST /event-stream`,
/// `GET /event-stream`, see `tutorial`), which serve one topic. Not the
/// settings of event streams: those, for every stream the hub serves (this
/// route's included), are `stream.*` (the root config's `StreamConfig`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EventStreamConfig {
    /// Topic behind the tutorial routes `POST /event-stream` and
    /// `GET /event-stream`, and nothing else.
    pub topic: String,
}

impl Default for EventStreamConfig {
    fn default() -> Self {
        Self {
            topic: "event-stream".to_owned(),
        }
    }
}

/// The browser console at `/` (see `console`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleConfig {
    /// Serve the console. It is a static page that uses the public API with
    /// the visitor's own key, so it grants nothing the API doesn't.
    pub enabled: bool,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self { enabled: true }
    }
}

/// Checks the relations serde can't express.
pub fn validate(cors: &CorsConfig, event_stream: &EventStreamConfig) -> Result<(), InvalidSetting> {
    if cors.allow_credentials && cors.allowed_origins.iter().any(|o| o == "*") {
        return Err(InvalidSetting::new(
            "cors.allow_credentials",
            "cannot be true with allowed_origins [\"*\"]; list the origins",
        ));
    }
    if TopicName::parse(&event_stream.topic).is_err() {
        return Err(InvalidSetting::new(
            "event_stream.topic",
            TOPIC_RULE.to_owned(),
        ));
    }
    if super::mercure::is_reserved(&event_stream.topic) {
        return Err(InvalidSetting::new(
            "event_stream.topic",
            format!(
                "is {:?}, the topic reserved for Mercure updates; choose another name",
                event_stream.topic
            ),
        ));
    }
    Ok(())
}
