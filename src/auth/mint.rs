//! Minting tokens the hub accepts (`ssehub token`): the claims [`token`]
//! reads, signed with the hub's own HMAC secret (`auth.jwt.secret` or
//! `auth.jwt.secret_file`, used as raw bytes) or with a PEM private key
//! whose public half the hub verifies with (`auth.jwt.public_key_file`, or
//! a key of its JWKS). `iss` and `aud` default to what the hub requires.
//!
//! [`token`]: super::token

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Map, Value, json};

use super::config::AuthSettings;
use super::pattern::{TopicPattern, subject_segment};
use super::token::MAX_TOKEN_EXP;

/// What the token says.
#[derive(Debug, Clone, Default)]
pub struct MintRequest {
    /// `sub`: the subject `{sub}` patterns stand for.
    pub subject: Option<String>,
    /// `ssehub.publish` patterns.
    pub publish: Vec<String>,
    /// `ssehub.subscribe` patterns.
    pub subscribe: Vec<String>,
    /// `exp` is this long after now.
    pub ttl: Duration,
    /// `iss`; `None`: `auth.jwt.issuer` (when set).
    pub issuer: Option<String>,
    /// `aud`; `None`: `auth.jwt.audience` (when set).
    pub audience: Option<String>,
    /// `kid` header, for a key the hub finds in a JWKS by id.
    pub key_id: Option<String>,
}

/// A minted token and the claims it carries.
#[derive(Debug, Clone)]
pub struct Minted {
    pub token: String,
    pub algorithm: Algorithm,
    /// The parsed `ssehub.publish` and `ssehub.subscribe` patterns.
    pub publish: Vec<TopicPattern>,
    pub subscribe: Vec<TopicPattern>,
    pub subject: Option<String>,
    /// Why the hub, as configured, would refuse the token anyway.
    pub warning: Option<&'static str>,
}

/// Why no token could be minted; each says what to set or pass.
#[derive(Debug, thiserror::Error)]
pub enum MintError {
    #[error(
        "no key to sign with: set auth.jwt.secret (or auth.jwt.secret_file) in the hub's \
         configuration for an HS256 token, or pass --key FILE with the PEM private key \
         (RSA, EC P-256/P-384, Ed25519) whose public key the hub verifies with"
    )]
    NoKey,
    #[error(
        "the hub verifies tokens with {verified_by} (RS/ES/EdDSA): signing needs the private key; \
         pass --key FILE with it in PEM form"
    )]
    PrivateKeyNeeded { verified_by: &'static str },
    #[error("cannot read {key} {path}: {error}")]
    Read {
        key: &'static str,
        path: PathBuf,
        error: std::io::Error,
    },
    #[error(
        "--key {0}: not a PEM private key (RSA, EC P-256/P-384 or Ed25519; e.g. from \
         `openssl genpkey -algorithm ED25519`)"
    )]
    NotPrivateKey(PathBuf),
    #[error("--{claim} {pattern:?}: {reason}")]
    BadPattern {
        claim: &'static str,
        pattern: String,
        reason: String,
    },
    #[error("--ttl: {0}")]
    BadTtl(String),
    #[error("a token that grants nothing: pass --publish PATTERN and/or --subscribe PATTERN")]
    EmptyGrant,
    #[error("cannot sign: {0}")]
    Sign(String),
}

/// Signs `request` with `private_key` (a PEM file) or, without one, the
/// hub's HMAC secret from `settings`.
pub fn mint(
    settings: &AuthSettings,
    private_key: Option<&Path>,
    request: &MintRequest,
) -> Result<Minted, MintError> {
    let publish = patterns("publish", &request.publish)?;
    let subscribe = patterns("subscribe", &request.subscribe)?;
    if publish.is_empty() && subscribe.is_empty() {
        return Err(MintError::EmptyGrant);
    }
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    if request.ttl.is_zero() {
        return Err(MintError::BadTtl(
            "must be longer than 0s, e.g. 1h or 30m".to_owned(),
        ));
    }
    let exp = now
        .checked_add(request.ttl.as_secs().max(1))
        .filter(|exp| *exp <= MAX_TOKEN_EXP)
        .ok_or_else(|| {
            MintError::BadTtl(format!(
                "ends after {MAX_TOKEN_EXP} (9999-12-31T23:59:59Z), the latest `exp` the hub accepts"
            ))
        })?;
    let (key, algorithms) = signing_key(settings, private_key)?;
    let rules = settings.jwt.as_ref().map(|jwt| &jwt.rules);
    let verifies_key_pairs = settings
        .jwt
        .as_ref()
        .is_some_and(|jwt| jwt.public_key_file.is_some() || jwt.jwks.is_some());
    let warning = (private_key.is_some() && !verifies_key_pairs).then_some(
        "the hub's configuration has no auth.jwt.public_key_file or auth.jwt.jwks: \
         it will refuse this token until one holds the public key",
    );
    let mut claims = Map::new();
    if let Some(subject) = &request.subject {
        claims.insert("sub".into(), json!(subject));
    }
    let issuer = request
        .issuer
        .clone()
        .or_else(|| rules.and_then(|rules| rules.issuer.clone()));
    if let Some(issuer) = issuer {
        claims.insert("iss".into(), json!(issuer));
    }
    let audience = request
        .audience
        .clone()
        .or_else(|| rules.and_then(|rules| rules.audience.clone()));
    if let Some(audience) = audience {
        claims.insert("aud".into(), json!(audience));
    }
    claims.insert("iat".into(), json!(now));
    claims.insert("exp".into(), json!(exp));
    let mut grant = Map::new();
    if !request.publish.is_empty() {
        grant.insert("publish".into(), json!(request.publish));
    }
    if !request.subscribe.is_empty() {
        grant.insert("subscribe".into(), json!(request.subscribe));
    }
    claims.insert("ssehub".into(), Value::Object(grant));
    let claims = Value::Object(claims);
    // An EC key's curve decides between ES256 and ES384: the first that
    // signs is the one.
    let mut last_error = None;
    for algorithm in algorithms {
        let mut header = Header::new(*algorithm);
        header.kid = request.key_id.clone();
        match jsonwebtoken::encode(&header, &claims, &key) {
            Ok(token) => {
                return Ok(Minted {
                    token,
                    algorithm: *algorithm,
                    publish,
                    subscribe,
                    subject: request.subject.clone(),
                    warning,
                });
            }
            Err(error) => last_error = Some(error.to_string()),
        }
    }
    Err(MintError::Sign(last_error.unwrap_or_default()))
}

fn patterns(claim: &'static str, texts: &[String]) -> Result<Vec<TopicPattern>, MintError> {
    texts
        .iter()
        .map(|text| {
            TopicPattern::parse(text).map_err(|error| MintError::BadPattern {
                claim,
                pattern: text.clone(),
                reason: error.to_string(),
            })
        })
        .collect()
}

/// The key to sign with and the algorithms to try with it, in order.
fn signing_key(
    settings: &AuthSettings,
    private_key: Option<&Path>,
) -> Result<(EncodingKey, &'static [Algorithm]), MintError> {
    if let Some(path) = private_key {
        let pem = std::fs::read(path).map_err(|error| MintError::Read {
            key: "--key",
            path: path.to_owned(),
            error,
        })?;
        return private_pem(&pem).ok_or_else(|| MintError::NotPrivateKey(path.to_owned()));
    }
    let Some(jwt) = &settings.jwt else {
        return Err(MintError::NoKey);
    };
    let secret = match (&jwt.secret, &jwt.secret_file) {
        (Some(secret), _) => secret.clone().into_bytes(),
        // Read as the hub reads it: trailing whitespace (a newline) is not
        // part of the secret.
        (None, Some(path)) => std::fs::read_to_string(path)
            .map_err(|error| MintError::Read {
                key: "auth.jwt.secret_file",
                path: path.clone(),
                error,
            })?
            .trim_end()
            .as_bytes()
            .to_vec(),
        (None, None) if jwt.public_key_file.is_some() => {
            return Err(MintError::PrivateKeyNeeded {
                verified_by: "auth.jwt.public_key_file",
            });
        }
        (None, None) if jwt.jwks.is_some() => {
            return Err(MintError::PrivateKeyNeeded {
                verified_by: "auth.jwt.jwks",
            });
        }
        (None, None) => return Err(MintError::NoKey),
    };
    let key =
        EncodingKey::from_secret(&secret).map_err(|error| MintError::Sign(error.to_string()))?;
    Ok((key, &[Algorithm::HS256]))
}

fn private_pem(pem: &[u8]) -> Option<(EncodingKey, &'static [Algorithm])> {
    if let Ok(key) = EncodingKey::from_rsa_pem(pem) {
        return Some((key, &[Algorithm::RS256]));
    }
    if let Ok(key) = EncodingKey::from_ec_pem(pem) {
        return Some((key, &[Algorithm::ES256, Algorithm::ES384]));
    }
    if let Ok(key) = EncodingKey::from_ed_pem(pem) {
        return Some((key, &[Algorithm::EdDSA]));
    }
    None
}

impl Minted {
    /// A topic `pattern` covers, to show in an example command: `*` made
    /// `example`, `{sub}` the subject's segment; `None` for a `{sub}`
    /// pattern of a token without a subject.
    pub fn example_topic(&self, pattern: &TopicPattern) -> Option<String> {
        let subject = self.subject.as_deref().map(subject_segment);
        let topic = pattern
            .as_str()
            .split('.')
            .map(|segment| match segment {
                "*" => Some("example".to_owned()),
                "{sub}" => subject.clone(),
                literal => Some(literal.to_owned()),
            })
            .collect::<Option<Vec<_>>>()?
            .join(".");
        pattern
            .matches(&topic, self.subject.as_deref())
            .then_some(topic)
    }
}
