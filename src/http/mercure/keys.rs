//! The keys of `mercure.publisher_jwt` / `mercure.subscriber_jwt`, parsed
//! once: an HMAC secret, a PEM public key or a JWKS (as `auth.jwt` reads
//! one, by the same code), told apart by `alg` and the key's text; and
//! the issuer and audience they go with.

use std::str::FromStr;
use std::sync::Arc;

use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};

use super::config::MercureJwtConfig;
use crate::auth::{JWKS_REFETCH_COOLDOWN_DEFAULT, JWKS_REFRESH_DEFAULT, Jwks, JwksLocation};
use crate::setting::InvalidSetting;

/// Shortest HMAC secret accepted, as `auth.jwt.secret` (RFC 7518 §3.2:
/// a key at least as long as the hash output, 256 bits for HS256).
pub const MERCURE_SECRET_MIN_BYTES: usize = 32;

/// Where a token's signature is verified.
#[derive(Clone)]
pub enum KeySource {
    /// An HMAC secret or a PEM public key.
    Static(DecodingKey),
    /// A JWKS, kept fresh as `auth.jwt.jwks` is (the key by the token's `kid`).
    Jwks(Arc<Jwks>),
}

/// One token profile's key, parsed once.
#[derive(Clone)]
pub struct MercureKey {
    pub algorithm: Algorithm,
    pub source: KeySource,
    pub issuer: Option<String>,
    pub audience: Option<String>,
}

impl std::fmt::Debug for MercureKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let source = match &self.source {
            KeySource::Static(_) => "static",
            KeySource::Jwks(_) => "jwks",
        };
        f.debug_struct("MercureKey")
            .field("algorithm", &self.algorithm)
            .field("source", &source)
            .finish_non_exhaustive()
    }
}

/// The names of one directive's keys, for errors.
pub(super) struct Keys {
    pub(super) key: &'static str,
    alg: &'static str,
    issuer: &'static str,
    audience: &'static str,
}

pub(super) const PUBLISHER_KEYS: Keys = Keys {
    key: "mercure.publisher_jwt.key",
    alg: "mercure.publisher_jwt.alg",
    issuer: "mercure.publisher_jwt.issuer",
    audience: "mercure.publisher_jwt.audience",
};
pub(super) const SUBSCRIBER_KEYS: Keys = Keys {
    key: "mercure.subscriber_jwt.key",
    alg: "mercure.subscriber_jwt.alg",
    issuer: "mercure.subscriber_jwt.issuer",
    audience: "mercure.subscriber_jwt.audience",
};

/// Draft-08 tokens are verified against the issuer the key belongs to and
/// the hub's resource identifier: with draft-08 only, both must be set.
pub(super) fn require_issuer_and_audience(
    key: &MercureKey,
    keys: &Keys,
) -> Result<(), InvalidSetting> {
    if key.issuer.is_none() {
        return Err(InvalidSetting::new(
            keys.issuer,
            "is not set; with mercure.protocol_version_compatibility = 8 every token is a \
             draft-08 access token whose `iss` must be the issuer the key belongs to (e.g. \
             your application's URL, https://example.com)",
        ));
    }
    if key.audience.is_none() {
        return Err(InvalidSetting::new(
            keys.audience,
            "is not set; with mercure.protocol_version_compatibility = 8 every token is a \
             draft-08 access token whose `aud` must name this hub (e.g. \
             https://hub.example.com/.well-known/mercure)",
        ));
    }
    Ok(())
}

pub(super) fn parse_key(
    config: &MercureJwtConfig,
    keys: &Keys,
) -> Result<Option<MercureKey>, InvalidSetting> {
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
    let source = if algorithm.family() == AlgorithmFamily::Hmac {
        secret(text, &config.alg, keys)?
    } else if text.trim_start().starts_with("-----BEGIN") {
        KeySource::Static(public_key(text, algorithm, &config.alg, keys)?)
    } else {
        KeySource::Jwks(jwks(text, keys)?)
    };
    Ok(Some(MercureKey {
        algorithm,
        source,
        issuer: config.issuer.clone(),
        audience: config.audience.clone(),
    }))
}

/// An HMAC secret, refusing what is plainly a public key or a JWKS given
/// with the default `HS256` (the secret would be its text).
fn secret(text: &str, alg: &str, keys: &Keys) -> Result<KeySource, InvalidSetting> {
    let key_material = ["-----BEGIN", "http://", "https://", "file://"]
        .iter()
        .any(|prefix| text.trim_start().starts_with(prefix));
    if key_material {
        return Err(InvalidSetting::new(
            keys.key,
            format!(
                "is a PEM key or a JWKS location, but {} is {alg:?}, an HMAC algorithm: set it \
                 to the algorithm the tokens are signed with (RS256, ES256, EdDSA, …)",
                keys.alg
            ),
        ));
    }
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
        .map(KeySource::Static)
        .map_err(|error| InvalidSetting::new(keys.key, format!("is not a usable secret: {error}")))
}

fn public_key(
    text: &str,
    algorithm: Algorithm,
    alg: &str,
    keys: &Keys,
) -> Result<DecodingKey, InvalidSetting> {
    match algorithm {
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
                format!("is {alg:?}; not an algorithm ssehub verifies"),
            ));
        }
    }
    .map_err(|error| {
        InvalidSetting::new(
            keys.key,
            format!(
                "is not a PEM public key for {alg} ({error}); give the public key's PEM text \
                 (-----BEGIN PUBLIC KEY----- …)"
            ),
        )
    })
}

/// A JWKS as `auth.jwt.jwks` reads one: a URL fetched in the background
/// (at start, every `auth.jwt.jwks_refresh`'s default, and on an unknown
/// `kid`), or a file read now (`file://` as the Mercure hub's `jwks_uri`).
fn jwks(text: &str, keys: &Keys) -> Result<Arc<Jwks>, InvalidSetting> {
    let not_a_key = |reason: String| {
        InvalidSetting::new(
            keys.key,
            format!(
                "is neither a PEM public key (-----BEGIN PUBLIC KEY----- …) nor a JWKS ssehub \
                 can read (an http(s):// URL, or a file path): {reason}"
            ),
        )
    };
    let location =
        JwksLocation::parse(text.strip_prefix("file://").unwrap_or(text)).map_err(not_a_key)?;
    Jwks::new(
        location,
        JWKS_REFRESH_DEFAULT,
        JWKS_REFETCH_COOLDOWN_DEFAULT,
    )
    .map(Arc::new)
    .map_err(not_a_key)
}

#[cfg(test)]
mod tests {
    use super::super::config::tests::{enabled, refused};
    use super::super::config::{MercureConfig, validate};
    use super::*;

    #[test]
    fn a_short_secret_is_refused_even_when_off() {
        let mut config = MercureConfig::default();
        config.publisher_jwt.key = Some("short".to_owned());
        let error = refused(&config);
        assert_eq!(error.key, "mercure.publisher_jwt.key");
        assert!(error.reason.contains("5 bytes"), "{}", error.reason);
    }

    #[test]
    fn a_key_that_is_neither_pem_nor_a_jwks_for_an_asymmetric_algorithm_is_refused() {
        let mut config = enabled();
        config.publisher_jwt.alg = "RS256".to_owned();
        let error = refused(&config);
        assert_eq!(error.key, "mercure.publisher_jwt.key");
        assert!(
            error.reason.contains("neither a PEM public key"),
            "{}",
            error.reason
        );
        config.publisher_jwt.key =
            Some("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----".to_owned());
        assert!(
            refused(&config)
                .reason
                .contains("not a PEM public key for RS256")
        );
    }

    #[test]
    fn a_jwks_location_or_pem_with_an_hmac_algorithm_is_refused() {
        for key in [
            "https://idp.example/.well-known/jwks.json",
            "file:///etc/ssehub/jwks.json",
            "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----",
        ] {
            let mut config = MercureConfig::default();
            config.subscriber_jwt.key = Some(key.to_owned());
            let error = refused(&config);
            assert_eq!(error.key, "mercure.subscriber_jwt.key");
            assert!(
                error
                    .reason
                    .contains("mercure.subscriber_jwt.alg is \"HS256\""),
                "{}",
                error.reason
            );
        }
    }

    #[test]
    fn a_jwks_url_is_a_key_set_fetched_later() {
        let mut config = enabled();
        config.publisher_jwt.alg = "RS256".to_owned();
        config.publisher_jwt.key = Some("https://idp.example/jwks.json".to_owned());
        let settings = validate(&config).unwrap().unwrap();
        assert!(matches!(settings.publisher.source, KeySource::Jwks(_)));
        assert_eq!(settings.jwks().len(), 1);
    }

    #[test]
    fn a_jwks_file_is_read_now_and_a_bad_one_is_named() {
        let directory =
            std::env::temp_dir().join(format!("ssehub-mercure-jwks-{}", std::process::id()));
        std::fs::create_dir_all(&directory).unwrap();
        let good = directory.join("jwks.json");
        std::fs::write(
            &good,
            r#"{"keys": [{"kty": "EC", "crv": "P-256", "kid": "ec",
                "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
                "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}"#,
        )
        .unwrap();
        let bad = directory.join("bad.json");
        std::fs::write(&bad, "not json").unwrap();
        let mut config = enabled();
        config.subscriber_jwt.alg = "ES256".to_owned();
        for key in [
            good.display().to_string(),
            format!("file://{}", good.display()),
        ] {
            config.subscriber_jwt.key = Some(key);
            let settings = validate(&config).unwrap().unwrap();
            assert!(matches!(
                settings.subscriber.unwrap().source,
                KeySource::Jwks(jwks) if jwks.is_loaded()
            ));
        }
        config.subscriber_jwt.key = Some(bad.display().to_string());
        let error = refused(&config);
        assert_eq!(error.key, "mercure.subscriber_jwt.key");
        assert!(
            error.reason.contains("not a JWKS document"),
            "{}",
            error.reason
        );
        std::fs::remove_dir_all(&directory).unwrap();
    }
}
