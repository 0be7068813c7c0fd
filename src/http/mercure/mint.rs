//! Minting Mercure tokens the hub accepts (`ssehub token --mercure 7|8`),
//! from `mercure.*` as the hub reads it: signed with the role's key
//! (`publisher_jwt` when the token may publish, else `subscriber_jwt`) and
//! its `alg`, or with a PEM private key for a public key or a JWKS.
//!
//! - draft-07: a `mercure` claim with `publish` / `subscribe` selectors
//!   (`*`, exact topics, URI templates) and `payload`; `exp`, and `iss` /
//!   `aud` when given or configured;
//! - draft-08: an RFC 9068 access token (`typ: at+jwt`) with every claim
//!   that profile asks issuers for (`iss`, `aud`, `exp`, `sub`,
//!   `client_id`, `iat`, `jti`) and Mercure `authorization_details`.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use jsonwebtoken::{Algorithm, AlgorithmFamily, EncodingKey, Header};
use serde_json::{Map, Value, json};

use super::config::{MercureConfig, MercureJwtConfig};
use super::selector::Selector;
use crate::auth::MAX_TOKEN_EXP;

/// The authorization detail type of draft-08's grants.
const AUTHORIZATION_DETAIL_TYPE: &str = "https://mercure.rocks/authorization-detail";
/// What draft-08 tokens minted here name as their client (`client_id`).
const CLIENT_ID: &str = "ssehub-token";

/// Which draft's token to mint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MercureDraft {
    Draft07,
    Draft08,
}

impl FromStr for MercureDraft {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "7" => Ok(Self::Draft07),
            "8" => Ok(Self::Draft08),
            _ => Err(format!(
                "{text:?}: expected 7 (a draft-07 token, `mercure` claim) or 8 (a draft-08 \
                 access token, typ at+jwt)"
            )),
        }
    }
}

/// What the token says.
#[derive(Debug, Clone)]
pub struct MercureMintRequest {
    pub draft: MercureDraft,
    /// Selectors: `*`, exact topics, (draft-07) URI templates.
    pub publish: Vec<String>,
    pub subscribe: Vec<String>,
    /// Draft-08 URL patterns (`match_type: urlpattern`).
    pub publish_url_patterns: Vec<String>,
    pub subscribe_url_patterns: Vec<String>,
    /// `mercure.payload` (draft-07) or each subscribe detail's `payload`.
    pub payload: Option<Value>,
    pub subject: Option<String>,
    /// `None`: the role's `issuer` / `audience`, when configured.
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub ttl: Duration,
    pub key_id: Option<String>,
}

/// Why no Mercure token could be minted; each says what to set or pass.
#[derive(Debug, thiserror::Error)]
pub enum MercureMintError {
    #[error("a token that grants nothing: pass --publish and/or --subscribe selectors")]
    EmptyGrant,
    #[error("--{flag} {selector:?}: {reason}")]
    BadSelector {
        flag: &'static str,
        selector: String,
        reason: String,
    },
    #[error("--{0} is draft-08's (URL patterns): pass --mercure 8, or a URI template to --{1}")]
    UrlPatternInDraft07(&'static str, &'static str),
    #[error("--payload must be a JSON object, e.g. '{{\"user\": 42}}'")]
    BadPayload,
    #[error(
        "mercure.publisher_jwt and mercure.subscriber_jwt differ: mint one token with \
         --publish and another with --subscribe"
    )]
    TwoKeys,
    #[error("no key to sign with: set {0}.key (an HMAC secret), or pass --key FILE")]
    NoKey(&'static str),
    #[error(
        "{0}.alg is {1}: signing needs the private key of the public key or JWKS the hub \
         verifies with; pass --key FILE with it in PEM form"
    )]
    PrivateKeyNeeded(&'static str, String),
    #[error("{0}.alg: {1:?} is not an algorithm ssehub signs with")]
    BadAlgorithm(&'static str, String),
    #[error("{0}.alg is {1}: the token is signed with the secret {0}.key; leave out --key")]
    KeyWithSecret(&'static str, String),
    #[error("cannot read --key {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("--key {0}: not a PEM private key for {1}")]
    NotPrivateKey(PathBuf, String),
    #[error(
        "a draft-08 token needs `{claim}`: pass --{flag}, or set {role}.{key} (what the hub \
         checks it against)"
    )]
    MissingClaim {
        claim: &'static str,
        flag: &'static str,
        role: &'static str,
        key: &'static str,
    },
    #[error(
        "--ttl ends after 9999-12-31T23:59:59Z ({MAX_TOKEN_EXP}), the latest `exp` the hub \
         accepts"
    )]
    TtlTooLong,
    #[error("cannot sign: {0}")]
    Sign(String),
}

/// A signed Mercure token.
#[derive(Debug, Clone)]
pub struct MercureMinted {
    pub token: String,
    pub algorithm: Algorithm,
}

/// Signs `request` with `private_key` (a PEM file) or the role's secret.
pub fn mint(
    config: &MercureConfig,
    private_key: Option<&Path>,
    request: &MercureMintRequest,
) -> Result<MercureMinted, MercureMintError> {
    let draft_08 = request.draft == MercureDraft::Draft08;
    if !draft_08 {
        if !request.publish_url_patterns.is_empty() {
            return Err(MercureMintError::UrlPatternInDraft07(
                "publish-urlpattern",
                "publish",
            ));
        }
        if !request.subscribe_url_patterns.is_empty() {
            return Err(MercureMintError::UrlPatternInDraft07(
                "subscribe-urlpattern",
                "subscribe",
            ));
        }
    }
    let publishes = !request.publish.is_empty() || !request.publish_url_patterns.is_empty();
    let subscribes = !request.subscribe.is_empty() || !request.subscribe_url_patterns.is_empty();
    if !publishes && !subscribes {
        return Err(MercureMintError::EmptyGrant);
    }
    if request
        .payload
        .as_ref()
        .is_some_and(|payload| !payload.is_object())
    {
        return Err(MercureMintError::BadPayload);
    }
    if publishes && subscribes && config.publisher_jwt != config.subscriber_jwt {
        return Err(MercureMintError::TwoKeys);
    }
    let (role, jwt) = if publishes {
        ("mercure.publisher_jwt", &config.publisher_jwt)
    } else {
        ("mercure.subscriber_jwt", &config.subscriber_jwt)
    };
    let (key, algorithm) = signing_key(role, jwt, private_key)?;
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let mut claims = Map::new();
    let issuer = request.issuer.clone().or_else(|| jwt.issuer.clone());
    let audience = request.audience.clone().or_else(|| jwt.audience.clone());
    let required = |claim, flag, key| MercureMintError::MissingClaim {
        claim,
        flag,
        role,
        key,
    };
    match (issuer, draft_08) {
        (Some(issuer), _) => {
            claims.insert("iss".into(), json!(issuer));
        }
        (None, true) => return Err(required("iss", "iss", "issuer")),
        (None, false) => {}
    }
    match (audience, draft_08) {
        (Some(audience), _) => {
            claims.insert("aud".into(), json!(audience));
        }
        (None, true) => return Err(required("aud", "aud", "audience")),
        (None, false) => {}
    }
    claims.insert("iat".into(), json!(now));
    let exp = now
        .checked_add(request.ttl.as_secs().max(1))
        .filter(|exp| *exp <= MAX_TOKEN_EXP)
        .ok_or(MercureMintError::TtlTooLong)?;
    claims.insert("exp".into(), json!(exp));
    if let Some(subject) = &request.subject {
        claims.insert("sub".into(), json!(subject));
    }
    let mut header = Header::new(algorithm);
    header.kid = request.key_id.clone();
    if draft_08 {
        header.typ = Some("at+jwt".to_owned());
        claims.entry("sub").or_insert_with(|| json!(CLIENT_ID));
        claims.insert("client_id".into(), json!(CLIENT_ID));
        claims.insert("jti".into(), json!(format!("{:032x}", fastrand::u128(..))));
        claims.insert(
            "authorization_details".into(),
            Value::Array(authorization_details(request)?),
        );
    } else {
        claims.insert("mercure".into(), mercure_claim(request)?);
    }
    let token = jsonwebtoken::encode(&header, &Value::Object(claims), &key)
        .map_err(|error| MercureMintError::Sign(error.to_string()))?;
    Ok(MercureMinted { token, algorithm })
}

fn checked(
    flag: &'static str,
    texts: &[String],
    parse: impl Fn(&str) -> Result<Selector, super::selector::InvalidSelector>,
) -> Result<(), MercureMintError> {
    for text in texts {
        parse(text).map_err(|error| MercureMintError::BadSelector {
            flag,
            selector: text.clone(),
            reason: error.to_string(),
        })?;
    }
    Ok(())
}

/// Draft-07's `{"publish": [...], "subscribe": [...], "payload": {...}}`.
fn mercure_claim(request: &MercureMintRequest) -> Result<Value, MercureMintError> {
    checked("publish", &request.publish, Selector::parse)?;
    checked("subscribe", &request.subscribe, Selector::parse)?;
    let mut claim = Map::new();
    if !request.publish.is_empty() {
        claim.insert("publish".into(), json!(request.publish));
    }
    if !request.subscribe.is_empty() {
        claim.insert("subscribe".into(), json!(request.subscribe));
    }
    if let Some(payload) = &request.payload {
        claim.insert("payload".into(), payload.clone());
    }
    Ok(Value::Object(claim))
}

/// One Mercure detail per action, its topics `{"match": …}` matchers.
fn authorization_details(request: &MercureMintRequest) -> Result<Vec<Value>, MercureMintError> {
    // Relative patterns resolve against the hub's URL when verified; any
    // base serves to check their syntax here.
    let base = url::Url::parse("http://localhost/.well-known/mercure").expect("a URL");
    checked("publish", &request.publish, Selector::exact)?;
    checked("subscribe", &request.subscribe, Selector::exact)?;
    let url_pattern = |text: &str| Selector::url_pattern(text, &base);
    checked(
        "publish-urlpattern",
        &request.publish_url_patterns,
        url_pattern,
    )?;
    checked(
        "subscribe-urlpattern",
        &request.subscribe_url_patterns,
        url_pattern,
    )?;
    let topics = |exact: &[String], patterns: &[String]| -> Vec<Value> {
        exact
            .iter()
            .map(|text| json!({"match": text}))
            .chain(
                patterns
                    .iter()
                    .map(|text| json!({"match": text, "match_type": "urlpattern"})),
            )
            .collect()
    };
    let mut details = Vec::new();
    let publish = topics(&request.publish, &request.publish_url_patterns);
    if !publish.is_empty() {
        details.push(json!({
            "type": AUTHORIZATION_DETAIL_TYPE, "actions": ["publish"], "topics": publish,
        }));
    }
    let subscribe = topics(&request.subscribe, &request.subscribe_url_patterns);
    if !subscribe.is_empty() {
        let mut detail = json!({
            "type": AUTHORIZATION_DETAIL_TYPE, "actions": ["subscribe"], "topics": subscribe,
        });
        if let Some(payload) = &request.payload {
            detail["payload"] = payload.clone();
        }
        details.push(detail);
    }
    Ok(details)
}

/// The role's HMAC secret, or the PEM private key given, for its `alg`.
fn signing_key(
    role: &'static str,
    jwt: &MercureJwtConfig,
    private_key: Option<&Path>,
) -> Result<(EncodingKey, Algorithm), MercureMintError> {
    let algorithm = Algorithm::from_str(&jwt.alg)
        .map_err(|_| MercureMintError::BadAlgorithm(role, jwt.alg.clone()))?;
    let hmac = algorithm.family() == AlgorithmFamily::Hmac;
    let key = match private_key {
        Some(path) => {
            let pem = std::fs::read(path).map_err(|error| MercureMintError::Read {
                path: path.to_owned(),
                error,
            })?;
            match algorithm.family() {
                AlgorithmFamily::Rsa => EncodingKey::from_rsa_pem(&pem),
                AlgorithmFamily::Ec => EncodingKey::from_ec_pem(&pem),
                AlgorithmFamily::Ed => EncodingKey::from_ed_pem(&pem),
                AlgorithmFamily::Hmac => {
                    return Err(MercureMintError::KeyWithSecret(role, jwt.alg.clone()));
                }
            }
            .map_err(|_| MercureMintError::NotPrivateKey(path.to_owned(), jwt.alg.clone()))?
        }
        None if !hmac => return Err(MercureMintError::PrivateKeyNeeded(role, jwt.alg.clone())),
        None => {
            let secret = jwt.key.as_deref().ok_or(MercureMintError::NoKey(role))?;
            EncodingKey::from_secret(secret.as_bytes())
                .map_err(|error| MercureMintError::Sign(error.to_string()))?
        }
    };
    Ok((key, algorithm))
}
