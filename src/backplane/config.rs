//! The backplane's settings (`backplane.*`) and their check.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::setting::{InvalidSetting, mask_userinfo};

/// How long to wait for a TCP (and TLS) connection to Redis and its
/// handshake. A hub that can't connect stays not ready and tries again.
pub const REDIS_CONNECT_TIMEOUT_DEFAULT: Duration = Duration::from_secs(3);
/// How long a Redis command may take before it counts as failed: a publish
/// then answers 503. A loaded Redis answers in about a millisecond; a whole
/// second means it is hung (or swapping), not busy.
pub const REDIS_COMMAND_TIMEOUT_DEFAULT: Duration = Duration::from_secs(1);
/// Prefix of every key and channel ssehub uses, so several hubs (or other
/// applications) can share one Redis.
pub const REDIS_KEY_PREFIX_DEFAULT: &str = "ssehub:";

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum BackplaneKind {
    /// One process; ids and history in memory.
    #[default]
    Memory,
    /// Several replicas sharing ids, history and events through Redis.
    Redis,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct BackplaneConfig {
    pub kind: BackplaneKind,
    pub redis: RedisConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port/db`, or `rediss://` for TLS; may
    /// carry a password, so it is masked in output and logs.
    pub url: String,
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub command_timeout: Duration,
    /// Prefix of every key and the pub/sub channel.
    pub key_prefix: String,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            connect_timeout: REDIS_CONNECT_TIMEOUT_DEFAULT,
            command_timeout: REDIS_COMMAND_TIMEOUT_DEFAULT,
            key_prefix: REDIS_KEY_PREFIX_DEFAULT.to_owned(),
        }
    }
}

impl RedisConfig {
    /// Checks what can be checked without connecting.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        fn invalid(key: &'static str, reason: impl Into<String>) -> InvalidSetting {
            InvalidSetting::new(key, reason)
        }
        if self.url.is_empty() {
            return Err(invalid(
                "backplane.redis.url",
                "is required with backplane.kind = \"redis\", e.g. redis://redis:6379/0",
            ));
        }
        if !(self.url.starts_with("redis://") || self.url.starts_with("rediss://")) {
            return Err(invalid(
                "backplane.redis.url",
                "must start with redis:// or rediss:// (TLS)",
            ));
        }
        if let Err(error) = redis::Client::open(self.url.as_str()) {
            // The client's message may quote the URL: never its password.
            let mut shown = self.url.clone();
            mask_userinfo(&mut shown);
            return Err(invalid(
                "backplane.redis.url",
                format!(
                    "{shown} is not a Redis URL ({})",
                    error.to_string().replace(&self.url, &shown)
                ),
            ));
        }
        if self.connect_timeout.is_zero() {
            return Err(invalid(
                "backplane.redis.connect_timeout",
                "must be longer than 0s",
            ));
        }
        if self.command_timeout.is_zero() {
            return Err(invalid(
                "backplane.redis.command_timeout",
                "must be longer than 0s",
            ));
        }
        if self.key_prefix.is_empty() || self.key_prefix.chars().any(char::is_whitespace) {
            return Err(invalid(
                "backplane.redis.key_prefix",
                "must be a non-empty string without spaces, e.g. \"ssehub:\"",
            ));
        }
        Ok(())
    }
}
