//! What a part's settings check returns when a value can't be used: the key
//! in its config-file spelling and why. `config` wraps it in `ConfigError`.
//! Imports nothing of ours.

/// A setting whose value can't be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid value for `{key}`: {reason}")]
pub struct InvalidSetting {
    /// The key, as in the config file (`drain.timeout`).
    pub key: &'static str,
    pub reason: String,
}

impl InvalidSetting {
    pub fn new(key: &'static str, reason: impl Into<String>) -> Self {
        Self {
            key,
            reason: reason.into(),
        }
    }
}

/// Replaces the `user:password` part of a URL with `***`.
pub fn mask_userinfo(url: &mut String) {
    let scheme_end = url.find("://").map_or(0, |i| i + 3);
    if let Some(at) = url[scheme_end..].find('@') {
        url.replace_range(scheme_end..scheme_end + at, "***");
    }
}
