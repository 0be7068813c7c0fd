//! `mercure.*`: the Mercure protocol's settings, named after the Mercure
//! hub's own directives (`anonymous`, `subscriptions`, `publisher_jwt`,
//! `subscriber_jwt`, `protocol_version_compatibility`) so a Caddyfile's values map one to one,
//! with their check, which parses the keys once into [`MercureSettings`].

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::keys::{
    KeySource, MercureKey, PUBLISHER_KEYS, SUBSCRIBER_KEYS, parse_key, require_issuer_and_audience,
};
use super::resume::ResumeLookups;
use crate::auth::Jwks;
use crate::setting::InvalidSetting;

/// `protocol_version_compatibility = 7`: draft-07 as Mercure 0.x speaks it
/// (`mercure` claims, `topic` selectors, its cookie and query names) is
/// accepted beside draft-08.
pub const PROTOCOL_VERSION_DRAFT_07: u8 = 7;
/// `protocol_version_compatibility = 8`: draft-08 only.
pub const PROTOCOL_VERSION_DRAFT_08: u8 = 8;

/// Which drafts of the protocol the hub accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolVersion {
    /// `7`: draft-07 (Mercure 0.x's tokens, selectors, cookie and query
    /// names) and draft-08 alike.
    Draft07Compatible,
    /// `8`: draft-08 only; draft-07's forms are refused, naming their
    /// draft-08 replacement.
    Draft08,
}

impl ProtocolVersion {
    pub fn accepts_draft_07(self) -> bool {
        self == Self::Draft07Compatible
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MercureConfig {
    /// Serve `/.well-known/mercure`. Off by default: ssehub's own API needs
    /// nothing of it.
    pub enabled: bool,
    /// Let subscribers without a token in (they get public updates only).
    pub anonymous: bool,
    /// Track active subscriptions (Mercure's `subscriptions`): a private
    /// update on every subscription's start and end, and the subscriptions
    /// API under `/.well-known/mercure/subscriptions`. Off by default, as in
    /// Mercure: every connect and disconnect then costs a publish.
    pub subscriptions: bool,
    /// The key publishers' tokens are signed with.
    pub publisher_jwt: MercureJwtConfig,
    /// The key subscribers' tokens are signed with.
    pub subscriber_jwt: MercureJwtConfig,
    /// The oldest protocol draft accepted: `7` (draft-07, Mercure 0.x, and
    /// draft-08) or `8` (draft-08 only).
    pub protocol_version_compatibility: u8,
}

impl Default for MercureConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            anonymous: false,
            subscriptions: false,
            publisher_jwt: MercureJwtConfig::default(),
            subscriber_jwt: MercureJwtConfig::default(),
            protocol_version_compatibility: PROTOCOL_VERSION_DRAFT_07,
        }
    }
}

/// A Mercure `publisher_jwt` / `subscriber_jwt` directive: the key and its
/// algorithm, plus the optional `iss` and `aud` a token must carry.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MercureJwtConfig {
    /// An HMAC secret (HS*); or, for RS*, PS*, ES*, EdDSA, a PEM public
    /// key or a JWKS (an `http(s)://` URL, or a file path or `file://` URL).
    pub key: Option<String>,
    /// The one algorithm tokens must be signed with (Mercure's default HS256).
    pub alg: String,
    /// Required `iss`, when set.
    pub issuer: Option<String>,
    /// Required member of `aud`, when set.
    pub audience: Option<String>,
}

impl Default for MercureJwtConfig {
    fn default() -> Self {
        Self {
            key: None,
            alg: "HS256".to_owned(),
            issuer: None,
            audience: None,
        }
    }
}

/// What the Mercure routes are built from: the checked settings.
#[derive(Debug, Clone)]
pub struct MercureSettings {
    pub anonymous: bool,
    /// `mercure.subscriptions`: subscription events and the subscriptions API.
    pub subscriptions: bool,
    pub protocol: ProtocolVersion,
    pub publisher: MercureKey,
    /// `None` only with `anonymous`: then nobody sees private updates.
    pub subscriber: Option<MercureKey>,
    /// Resumes by a publisher's id, looked up in history (state, not a
    /// setting, kept here because every Mercure route shares these).
    pub resume_lookups: Arc<ResumeLookups>,
}

impl MercureSettings {
    /// The key sets to keep fresh in the background (see `Jwks::keep_fresh`).
    pub fn jwks(&self) -> Vec<Arc<Jwks>> {
        [Some(&self.publisher), self.subscriber.as_ref()]
            .into_iter()
            .flatten()
            .filter_map(|key| match &key.source {
                KeySource::Jwks(jwks) => Some(jwks.clone()),
                KeySource::Static(_) => None,
            })
            .collect()
    }
}

/// Checks `mercure.*` and parses its keys; `None` when the routes are off.
/// Keys are checked even then, so a bad value is found before the day it
/// is turned on.
pub fn validate(config: &MercureConfig) -> Result<Option<MercureSettings>, InvalidSetting> {
    let protocol = match config.protocol_version_compatibility {
        PROTOCOL_VERSION_DRAFT_07 => ProtocolVersion::Draft07Compatible,
        PROTOCOL_VERSION_DRAFT_08 => ProtocolVersion::Draft08,
        other => {
            return Err(InvalidSetting::new(
                "mercure.protocol_version_compatibility",
                format!(
                    "is {other}; must be 7 (draft-07 as Mercure 0.x speaks it, and draft-08) \
                     or 8 (draft-08 only)"
                ),
            ));
        }
    };
    let publisher = parse_key(&config.publisher_jwt, &PUBLISHER_KEYS)?;
    let subscriber = parse_key(&config.subscriber_jwt, &SUBSCRIBER_KEYS)?;
    if !config.enabled {
        return Ok(None);
    }
    let Some(publisher) = publisher else {
        return Err(InvalidSetting::new(
            PUBLISHER_KEYS.key,
            "is not set; with mercure.enabled it must be the HMAC secret (HS*), the PEM \
             public key or the JWKS publishers' tokens are verified with",
        ));
    };
    if subscriber.is_none() && !config.anonymous {
        return Err(InvalidSetting::new(
            SUBSCRIBER_KEYS.key,
            "is not set; with mercure.enabled and mercure.anonymous = false it must be the \
             HMAC secret (HS*), the PEM public key or the JWKS subscribers' tokens are \
             verified with",
        ));
    }
    if protocol == ProtocolVersion::Draft08 {
        require_issuer_and_audience(&publisher, &PUBLISHER_KEYS)?;
        if let Some(subscriber) = &subscriber {
            require_issuer_and_audience(subscriber, &SUBSCRIBER_KEYS)?;
        }
    }
    Ok(Some(MercureSettings {
        anonymous: config.anonymous,
        subscriptions: config.subscriptions,
        protocol,
        publisher,
        subscriber,
        resume_lookups: Arc::default(),
    }))
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use jsonwebtoken::Algorithm;

    pub(in crate::http::mercure) const SECRET: &str = "a-secret-of-at-least-thirty-two-bytes!!";

    /// Enabled, with both keys the shared secret (the keys' tests too).
    pub(in crate::http::mercure) fn enabled() -> MercureConfig {
        let mut config = MercureConfig {
            enabled: true,
            ..MercureConfig::default()
        };
        config.publisher_jwt.key = Some(SECRET.to_owned());
        config.subscriber_jwt.key = Some(SECRET.to_owned());
        config
    }

    pub(in crate::http::mercure) fn refused(config: &MercureConfig) -> InvalidSetting {
        validate(config).expect_err("refused")
    }

    #[test]
    fn off_by_default_and_nothing_needed_then() {
        assert!(validate(&MercureConfig::default()).unwrap().is_none());
    }

    #[test]
    fn enabled_with_both_keys_is_accepted() {
        let settings = validate(&enabled()).unwrap().unwrap();
        assert_eq!(settings.publisher.algorithm, Algorithm::HS256);
        assert!(settings.subscriber.is_some());
    }

    #[test]
    fn anonymous_needs_no_subscriber_key() {
        let mut config = enabled();
        config.anonymous = true;
        config.subscriber_jwt.key = None;
        assert!(validate(&config).unwrap().unwrap().subscriber.is_none());
    }

    #[test]
    fn a_missing_publisher_key_is_named() {
        let mut config = enabled();
        config.publisher_jwt.key = None;
        assert_eq!(refused(&config).key, "mercure.publisher_jwt.key");
    }

    #[test]
    fn a_missing_subscriber_key_without_anonymous_is_named() {
        let mut config = enabled();
        config.subscriber_jwt.key = None;
        assert_eq!(refused(&config).key, "mercure.subscriber_jwt.key");
    }

    #[test]
    fn an_unknown_algorithm_is_named_with_the_value() {
        let mut config = MercureConfig::default();
        config.subscriber_jwt.alg = "none".to_owned();
        let error = refused(&config);
        assert_eq!(error.key, "mercure.subscriber_jwt.alg");
        assert!(error.reason.contains("\"none\""), "{}", error.reason);
    }

    #[test]
    fn protocol_versions_7_and_8_are_accepted_and_others_named() {
        for (value, protocol) in [
            (7, ProtocolVersion::Draft07Compatible),
            (8, ProtocolVersion::Draft08),
        ] {
            let mut config = enabled();
            config.protocol_version_compatibility = value;
            for jwt in [&mut config.publisher_jwt, &mut config.subscriber_jwt] {
                jwt.issuer = Some("https://example.com".to_owned());
                jwt.audience = Some("https://hub.example.com/.well-known/mercure".to_owned());
            }
            assert_eq!(validate(&config).unwrap().unwrap().protocol, protocol);
        }
        for value in [0, 6, 9, 255] {
            let config = MercureConfig {
                protocol_version_compatibility: value,
                ..MercureConfig::default()
            };
            let error = refused(&config);
            assert_eq!(error.key, "mercure.protocol_version_compatibility");
            assert!(
                error.reason.contains(&format!("is {value};")),
                "{}",
                error.reason
            );
            assert!(error.reason.contains("7 (") && error.reason.contains("8 ("));
        }
    }

    #[test]
    fn the_default_protocol_accepts_draft_07() {
        let settings = validate(&enabled()).unwrap().unwrap();
        assert_eq!(settings.protocol, ProtocolVersion::Draft07Compatible);
        assert!(settings.protocol.accepts_draft_07());
    }

    #[test]
    fn draft_08_only_needs_each_keys_issuer_and_audience() {
        let mut config = enabled();
        config.protocol_version_compatibility = 8;
        assert_eq!(refused(&config).key, "mercure.publisher_jwt.issuer");
        config.publisher_jwt.issuer = Some("https://example.com".to_owned());
        assert_eq!(refused(&config).key, "mercure.publisher_jwt.audience");
        config.publisher_jwt.audience = Some("https://hub.example".to_owned());
        assert_eq!(refused(&config).key, "mercure.subscriber_jwt.issuer");
        config.subscriber_jwt.issuer = Some("https://example.com".to_owned());
        let error = refused(&config);
        assert_eq!(error.key, "mercure.subscriber_jwt.audience");
        assert!(error.reason.contains("= 8"), "{}", error.reason);
        config.subscriber_jwt.audience = Some("https://hub.example".to_owned());
        assert!(validate(&config).unwrap().is_some());
    }
}
