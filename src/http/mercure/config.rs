//! `mercure.*`: the Mercure protocol's settings, named after the Mercure
//! hub's own directives (`anonymous`, `subscriptions`, `publisher_jwt`,
//! `subscriber_jwt`, `protocol_version_compatibility`) so a Caddyfile's values map one to one,
//! with their check, which parses the keys once into [`MercureSettings`].

use std::str::FromStr;

use jsonwebtoken::{Algorithm, DecodingKey};
use serde::{Deserialize, Serialize};

use crate::setting::InvalidSetting;

/// Shortest HMAC secret accepted, as `auth.jwt.secret` (RFC 7518 §3.2:
/// a key at least as long as the hash output, 256 bits for HS256).
pub const MERCURE_SECRET_MIN_BYTES: usize = 32;

/// The one protocol profile implemented: draft-07 (Mercure 0.x), with its
/// `mercure.publish` / `mercure.subscribe` claims and `topic` selectors.
pub const PROTOCOL_VERSION_DRAFT_07: u8 = 7;

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
    /// The protocol draft spoken: `7` (draft-07, Mercure 0.x) is the only
    /// value so far.
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
    /// An HMAC secret (HS*), or a PEM public key (RS*, PS*, ES*, EdDSA).
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

/// One token profile's key, parsed once.
#[derive(Clone)]
pub struct MercureKey {
    pub algorithm: Algorithm,
    pub key: DecodingKey,
    pub issuer: Option<String>,
    pub audience: Option<String>,
}

impl std::fmt::Debug for MercureKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MercureKey")
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

/// What the Mercure routes are built from: the checked settings.
#[derive(Debug, Clone)]
pub struct MercureSettings {
    pub anonymous: bool,
    /// `mercure.subscriptions`: subscription events and the subscriptions API.
    pub subscriptions: bool,
    pub publisher: MercureKey,
    /// `None` only with `anonymous`: then nobody sees private updates.
    pub subscriber: Option<MercureKey>,
}

/// The names of one directive's keys, for errors.
struct Keys {
    key: &'static str,
    alg: &'static str,
}

const PUBLISHER_KEYS: Keys = Keys {
    key: "mercure.publisher_jwt.key",
    alg: "mercure.publisher_jwt.alg",
};
const SUBSCRIBER_KEYS: Keys = Keys {
    key: "mercure.subscriber_jwt.key",
    alg: "mercure.subscriber_jwt.alg",
};

/// Checks `mercure.*` and parses its keys; `None` when the routes are off.
/// Keys are checked even then, so a bad value is found before the day it
/// is turned on.
pub fn validate(config: &MercureConfig) -> Result<Option<MercureSettings>, InvalidSetting> {
    if config.protocol_version_compatibility != PROTOCOL_VERSION_DRAFT_07 {
        return Err(InvalidSetting::new(
            "mercure.protocol_version_compatibility",
            format!(
                "is {}; must be 7 (draft-07, as Mercure 0.x speaks it: the only profile \
                 implemented so far)",
                config.protocol_version_compatibility
            ),
        ));
    }
    let publisher = parse_key(&config.publisher_jwt, &PUBLISHER_KEYS)?;
    let subscriber = parse_key(&config.subscriber_jwt, &SUBSCRIBER_KEYS)?;
    if !config.enabled {
        return Ok(None);
    }
    let Some(publisher) = publisher else {
        return Err(InvalidSetting::new(
            PUBLISHER_KEYS.key,
            "is not set; with mercure.enabled it must be the HMAC secret (HS*) or the PEM \
             public key publishers' tokens are signed with",
        ));
    };
    if subscriber.is_none() && !config.anonymous {
        return Err(InvalidSetting::new(
            SUBSCRIBER_KEYS.key,
            "is not set; with mercure.enabled and mercure.anonymous = false it must be the \
             HMAC secret (HS*) or the PEM public key subscribers' tokens are signed with",
        ));
    }
    Ok(Some(MercureSettings {
        anonymous: config.anonymous,
        subscriptions: config.subscriptions,
        publisher,
        subscriber,
    }))
}

fn parse_key(config: &MercureJwtConfig, keys: &Keys) -> Result<Option<MercureKey>, InvalidSetting> {
    let algorithm = Algorithm::from_str(&config.alg).map_err(|_| {
        InvalidSetting::new(
            keys.alg,
            format!(
                "is {:?}; must be one of HS256 HS384 HS512 RS256 RS384 RS512 PS256 PS384 PS512 \
                 ES256 ES384 EdDSA",
                config.alg
            ),
        )
    })?;
    let Some(text) = config.key.as_deref() else {
        return Ok(None);
    };
    let key = match algorithm {
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
            if text.len() < MERCURE_SECRET_MIN_BYTES {
                return Err(InvalidSetting::new(
                    keys.key,
                    format!(
                        "is {} bytes; an HMAC secret must be at least {MERCURE_SECRET_MIN_BYTES} \
                         bytes (e.g. the output of `openssl rand -base64 32`)",
                        text.len()
                    ),
                ));
            }
            DecodingKey::from_secret(text.as_bytes())
        }
        Algorithm::RS256
        | Algorithm::RS384
        | Algorithm::RS512
        | Algorithm::PS256
        | Algorithm::PS384
        | Algorithm::PS512 => DecodingKey::from_rsa_pem(text.as_bytes()),
        Algorithm::ES256 | Algorithm::ES384 => DecodingKey::from_ec_pem(text.as_bytes()),
        Algorithm::EdDSA => DecodingKey::from_ed_pem(text.as_bytes()),
        // Algorithms a later jsonwebtoken adds are not on the list above.
        _ => {
            return Err(InvalidSetting::new(
                keys.alg,
                format!("is {:?}; not an algorithm ssehub verifies", config.alg),
            ));
        }
    }
    .map_err(|error| {
        InvalidSetting::new(
            keys.key,
            format!(
                "is not a PEM public key for {} ({error}); give the public key's PEM text \
                 (-----BEGIN PUBLIC KEY----- …)",
                config.alg
            ),
        )
    })?;
    Ok(Some(MercureKey {
        algorithm,
        key,
        issuer: config.issuer.clone(),
        audience: config.audience.clone(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "a-secret-of-at-least-thirty-two-bytes!!";

    fn enabled() -> MercureConfig {
        let mut config = MercureConfig {
            enabled: true,
            ..MercureConfig::default()
        };
        config.publisher_jwt.key = Some(SECRET.to_owned());
        config.subscriber_jwt.key = Some(SECRET.to_owned());
        config
    }

    fn refused(config: &MercureConfig) -> InvalidSetting {
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
    fn a_short_secret_is_refused_even_when_off() {
        let mut config = MercureConfig::default();
        config.publisher_jwt.key = Some("short".to_owned());
        let error = refused(&config);
        assert_eq!(error.key, "mercure.publisher_jwt.key");
        assert!(error.reason.contains("5 bytes"), "{}", error.reason);
    }

    #[test]
    fn a_key_that_is_not_pem_for_an_asymmetric_algorithm_is_refused() {
        let mut config = enabled();
        config.publisher_jwt.alg = "RS256".to_owned();
        assert_eq!(refused(&config).key, "mercure.publisher_jwt.key");
    }

    #[test]
    fn only_draft_07_compatibility_is_accepted() {
        let mut config = MercureConfig {
            protocol_version_compatibility: 8,
            ..MercureConfig::default()
        };
        let error = refused(&config);
        assert_eq!(error.key, "mercure.protocol_version_compatibility");
        assert!(error.reason.contains("is 8"));
        config.protocol_version_compatibility = 7;
        assert!(validate(&config).is_ok());
    }
}
