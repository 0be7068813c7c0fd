//! JWT verification (by `jsonwebtoken`) into a [`Grant`].
//!
//! The token's `alg` picks the key family before anything is verified:
//! HMAC tokens (HS256/384/512) are checked with `auth.jwt.secret` only, and
//! RSA/EC/EdDSA tokens with the public key file or the JWKS only. So an
//! HS256 token "signed" with the RSA public key as its secret is refused
//! (alg confusion), and `alg: none` is not an algorithm at all.
//!
//! Claims: `exp` is required, a whole number of seconds, and at most
//! [`MAX_TOKEN_EXP`]; `nbf`, `iss` and `aud` are checked when present, and
//! `iss`/`aud` are required when `auth.jwt.issuer` / `auth.jwt.audience`
//! are set. The grant comes from
//! `{"ssehub": {"publish": [patterns], "subscribe": [patterns]}}`.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, Validation};
use serde::Deserialize;

use super::error::{TokenRefusal, TokenRejection};
use super::grant::{Grant, PublisherId, Scope};
use super::jwks::Jwks;
use super::keys::VerifyingKey;
use super::pattern::TopicPattern;

/// Most patterns one claim list may hold; each subscribe checks every topic
/// against them, so the list bounds that work.
const MAX_PATTERNS_PER_CLAIM: usize = 256;

/// The latest `exp` accepted: 9999-12-31T23:59:59Z, the last second a
/// four-digit year (RFC 3339, most JWT libraries' date types) can state.
/// The stream of a token ends at its `exp`, on the runtime's clock; a later
/// `exp` (1e19, 2^64 - 1) is no real expiry, and would overflow that clock
/// (a panic in the connection task). Up to this bound it can't: a few
/// hundred billion seconds is far inside both `SystemTime` and `Instant`.
pub const MAX_TOKEN_EXP: u64 = 253_402_300_799;

/// What the token's claims are checked against.
#[derive(Debug, Clone, Default)]
pub struct ClaimRules {
    pub issuer: Option<String>,
    pub audience: Option<String>,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway: Duration,
}

/// The keys tokens are verified with.
pub struct TokenVerifier {
    secret: Option<DecodingKey>,
    public_key: Option<VerifyingKey>,
    jwks: Option<Arc<Jwks>>,
    rules: ClaimRules,
}

#[derive(Deserialize)]
struct Claims {
    sub: Option<String>,
    iss: Option<String>,
    // A whole number of seconds: `jsonwebtoken` has already refused any
    // other `exp` (a float, a string) as a malformed claim.
    exp: u64,
    #[serde(default)]
    ssehub: SsehubClaim,
}

#[derive(Deserialize, Default)]
struct SsehubClaim {
    #[serde(default)]
    publish: Vec<String>,
    #[serde(default)]
    subscribe: Vec<String>,
}

impl TokenVerifier {
    pub fn new(
        secret: Option<Vec<u8>>,
        public_key: Option<VerifyingKey>,
        jwks: Option<Arc<Jwks>>,
        rules: ClaimRules,
    ) -> Result<Self, String> {
        let secret = secret
            .map(|secret| DecodingKey::from_secret(&secret))
            .transpose()
            .map_err(|error| format!("unusable secret: {error}"))?;
        Ok(Self {
            secret,
            public_key,
            jwks,
            rules,
        })
    }

    pub fn jwks(&self) -> Option<&Arc<Jwks>> {
        self.jwks.as_ref()
    }

    /// Verifies `token` and reads its grant; a refusal says which check
    /// failed, and how, in words that carry no key.
    pub async fn verify(&self, token: &str) -> Result<Grant, TokenRefusal> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| malformed(token))?;
        let algorithm = header.alg;
        let not_accepted = || {
            TokenRefusal::new(
                TokenRejection::AlgorithmNotAccepted,
                format!("its `alg` is {algorithm:?}; {}", self.accepted_algorithms()),
            )
        };
        let keys: Vec<DecodingKey> = if algorithm.family() == AlgorithmFamily::Hmac {
            vec![self.secret.clone().ok_or_else(not_accepted)?]
        } else {
            if self.public_key.is_none() && self.jwks.is_none() {
                return Err(not_accepted());
            }
            let mut keys: Vec<VerifyingKey> = self.public_key.iter().cloned().collect();
            if let Some(jwks) = &self.jwks {
                keys.extend(jwks.keys_for(header.kid.as_deref()).await);
            }
            if keys.is_empty() {
                let specifics = match &header.kid {
                    Some(kid) => format!("its `kid` {kid:?} is not in the key set (auth.jwt.jwks)"),
                    None => "it has no `kid`, and the key set (auth.jwt.jwks) has no key for it"
                        .to_owned(),
                };
                return Err(TokenRefusal::new(TokenRejection::UnknownKey, specifics));
            }
            let accepting: Vec<DecodingKey> = keys
                .into_iter()
                .filter(|key| key.accepts(algorithm))
                .map(|key| key.key)
                .collect();
            if accepting.is_empty() {
                return Err(not_accepted());
            }
            accepting
        };
        let validation = self.validation(algorithm);
        let mut outcome = Err(TokenRejection::BadSignature);
        let mut last_kind = None;
        for key in &keys {
            outcome = jsonwebtoken::decode::<serde_json::Value>(token, key, &validation)
                .map(|data| data.claims)
                .map_err(|error| {
                    let rejection = rejection(error.kind());
                    last_kind = Some(error.into_kind());
                    rejection
                });
            // Another key may verify it (a JWKS without `kid`s); any other
            // verdict is about the token, not the key.
            if outcome != Err(TokenRejection::BadSignature) {
                break;
            }
        }
        let claims = match outcome {
            Ok(claims) => claims,
            Err(rejection) => {
                return Err(self.refusal(rejection, last_kind.as_ref(), token, algorithm));
            }
        };
        grant(claims, token)
    }

    /// Which algorithms the configured keys verify, for a refused `alg`.
    fn accepted_algorithms(&self) -> String {
        let mut accepted = Vec::new();
        if self.secret.is_some() {
            accepted.push("HS256/HS384/HS512 (auth.jwt.secret)".to_owned());
        }
        if let Some(key) = &self.public_key {
            accepted.push(format!(
                "{} (auth.jwt.public_key_file)",
                key.algorithms
                    .iter()
                    .map(|algorithm| format!("{algorithm:?}"))
                    .collect::<Vec<_>>()
                    .join("/")
            ));
        }
        if self.jwks.is_some() {
            accepted.push("the algorithms of the key set's keys (auth.jwt.jwks)".to_owned());
        }
        format!("the configured keys accept {}", accepted.join(", "))
    }

    /// What exactly a rejection by `jsonwebtoken` was about. Claims are
    /// checked after the signature, so the claims read here are signed.
    fn refusal(
        &self,
        rejection: TokenRejection,
        kind: Option<&ErrorKind>,
        token: &str,
        algorithm: Algorithm,
    ) -> TokenRefusal {
        let claims: serde_json::Value =
            jsonwebtoken::dangerous::insecure_decode_claims(token).unwrap_or_default();
        let claim = |name: &str| {
            claims
                .get(name)
                .map(|value| value.to_string())
                .unwrap_or_else(|| "missing".to_owned())
        };
        let time = |name: &str| {
            claims
                .get(name)
                .and_then(serde_json::Value::as_u64)
                .map(timestamp)
        };
        let specifics = match rejection {
            TokenRejection::Expired => time("exp").map(|at| format!("expired at {at}")),
            TokenRejection::NotYetValid => time("nbf").map(|at| format!("not valid until {at}")),
            TokenRejection::WrongIssuer => Some(format!(
                "its `iss` is {}; expected {:?}",
                claim("iss"),
                self.rules.issuer.as_deref().unwrap_or_default()
            )),
            TokenRejection::WrongAudience => Some(format!(
                "its `aud` is {}; expected {:?}",
                claim("aud"),
                self.rules.audience.as_deref().unwrap_or_default()
            )),
            TokenRejection::InvalidClaims => match kind {
                Some(ErrorKind::MissingRequiredClaim(name)) => {
                    Some(format!("the claim `{name}` is missing"))
                }
                Some(ErrorKind::InvalidClaimFormat(name)) => Some(format!(
                    "the claim `{name}` is {}, not in the form required",
                    claim(name)
                )),
                _ => None,
            },
            TokenRejection::BadSignature => Some(if algorithm.family() == AlgorithmFamily::Hmac {
                format!("{algorithm:?} with auth.jwt.secret")
            } else {
                format!("{algorithm:?} with the configured public keys")
            }),
            _ => None,
        };
        TokenRefusal {
            rejection,
            specifics,
        }
    }

    fn validation(&self, algorithm: Algorithm) -> Validation {
        let mut validation = Validation::new(algorithm);
        validation.leeway = self.rules.leeway.as_secs();
        validation.validate_nbf = true;
        let mut required = vec!["exp"];
        if let Some(issuer) = &self.rules.issuer {
            validation.set_issuer(&[issuer]);
            required.push("iss");
        }
        match &self.rules.audience {
            Some(audience) => {
                validation.set_audience(&[audience]);
                required.push("aud");
            }
            // Nothing to compare with: a token's `aud` is not ours to judge.
            None => validation.validate_aud = false,
        }
        validation.set_required_spec_claims(&required);
        validation
    }
}

/// `seconds` since the epoch as RFC 3339 (UTC), with the number itself.
fn timestamp(seconds: u64) -> String {
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(seconds.min(MAX_TOKEN_EXP));
    format!("{} ({seconds})", humantime::format_rfc3339_seconds(at))
}

/// When a token ran out, for a refusal.
pub(super) fn expired_at(at: SystemTime) -> String {
    let seconds = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    format!("expired at {}", timestamp(seconds))
}

/// A token whose header can't be read: how many parts it has says most.
fn malformed(token: &str) -> TokenRefusal {
    let parts = token.split('.').count();
    if parts == 3 {
        TokenRefusal::new(
            TokenRejection::Malformed,
            "its header is not base64url-encoded JSON with a known `alg`",
        )
    } else {
        TokenRefusal::new(
            TokenRejection::Malformed,
            format!("it has {parts} dot-separated parts; a JWT has 3"),
        )
    }
}

/// What a verification error of `jsonwebtoken` is counted as; the Mercure
/// tokens' refusals are counted under the same reasons.
pub fn rejection(kind: &ErrorKind) -> TokenRejection {
    match kind {
        ErrorKind::InvalidSignature
        | ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidEddsaKey
        | ErrorKind::InvalidRsaKey(_)
        | ErrorKind::InvalidKeyFormat => TokenRejection::BadSignature,
        ErrorKind::ExpiredSignature => TokenRejection::Expired,
        ErrorKind::ImmatureSignature => TokenRejection::NotYetValid,
        ErrorKind::InvalidIssuer => TokenRejection::WrongIssuer,
        ErrorKind::InvalidAudience => TokenRejection::WrongAudience,
        ErrorKind::MissingRequiredClaim(claim) if claim == "iss" => TokenRejection::WrongIssuer,
        ErrorKind::MissingRequiredClaim(claim) if claim == "aud" => TokenRejection::WrongAudience,
        ErrorKind::MissingRequiredClaim(_) | ErrorKind::InvalidClaimFormat(_) => {
            TokenRejection::InvalidClaims
        }
        ErrorKind::InvalidAlgorithm | ErrorKind::UnsupportedAlgorithm => {
            TokenRejection::AlgorithmNotAccepted
        }
        _ => TokenRejection::Malformed,
    }
}

fn grant(claims: serde_json::Value, token: &str) -> Result<Grant, TokenRefusal> {
    let claims: Claims = serde_json::from_value(claims).map_err(|_| {
        TokenRefusal::new(
            TokenRejection::InvalidClaims,
            "the `ssehub` claim must be {\"publish\": [patterns], \"subscribe\": [patterns]}, and `sub` and `iss` strings",
        )
    })?;
    let patterns = |claim: &str, list: Vec<String>| -> Result<Scope, TokenRefusal> {
        if list.len() > MAX_PATTERNS_PER_CLAIM {
            return Err(TokenRefusal::new(
                TokenRejection::InvalidClaims,
                format!(
                    "`ssehub.{claim}` lists {} patterns; at most {MAX_PATTERNS_PER_CLAIM}",
                    list.len()
                ),
            ));
        }
        list.iter()
            .map(|text| TopicPattern::parse(text))
            .collect::<Result<Vec<_>, _>>()
            .map(Scope::Patterns)
            .map_err(|error| {
                TokenRefusal::new(
                    TokenRejection::InvalidClaims,
                    format!("`ssehub.{claim}`: {error}"),
                )
            })
    };
    if claims.exp > MAX_TOKEN_EXP {
        return Err(TokenRejection::ExpiryOutOfRange.into());
    }
    let expires_at = SystemTime::UNIX_EPOCH + Duration::from_secs(claims.exp);
    let publisher = match &claims.sub {
        Some(subject) => PublisherId::Subject {
            issuer: claims.iss.clone().unwrap_or_default(),
            subject: subject.clone(),
        },
        // The signature is what makes the token unique.
        None => PublisherId::Token(token.rsplit('.').next().unwrap_or_default().to_owned()),
    };
    Ok(Grant {
        publisher,
        publish: patterns("publish", claims.ssehub.publish)?,
        subscribe: patterns("subscribe", claims.ssehub.subscribe)?,
        subject: claims.sub,
        expires_at: Some(expires_at),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;

    const SECRET: &[u8] = b"unit-test-secret-of-at-least-32-bytes!";

    fn verifier() -> TokenVerifier {
        TokenVerifier::new(Some(SECRET.to_vec()), None, None, ClaimRules::default()).unwrap()
    }

    fn signed(claims: &serde_json::Value) -> String {
        let key = EncodingKey::from_secret(SECRET).unwrap();
        jsonwebtoken::encode(&Header::default(), claims, &key).unwrap()
    }

    async fn verdict(exp: serde_json::Value) -> Result<Grant, TokenRejection> {
        verifier()
            .verify(&signed(&json!({"sub": "42", "exp": exp})))
            .await
            .map_err(|refusal| refusal.rejection)
    }

    #[tokio::test]
    async fn an_exp_past_the_year_9999_is_refused_not_a_panic() {
        for exp in [
            json!(MAX_TOKEN_EXP + 1),
            json!(10_000_000_000_000_000_000u64),
            json!(u64::MAX),
        ] {
            assert_eq!(
                verdict(exp.clone()).await.unwrap_err(),
                TokenRejection::ExpiryOutOfRange,
                "{exp}"
            );
        }
    }

    #[tokio::test]
    async fn an_exp_at_the_bound_is_a_grant_that_expires_then() {
        let grant = verdict(json!(MAX_TOKEN_EXP)).await.unwrap();
        let at = grant.expires_at.unwrap();
        assert_eq!(
            at.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs(),
            MAX_TOKEN_EXP
        );
    }

    #[tokio::test]
    async fn an_exp_that_is_not_whole_seconds_is_invalid() {
        for exp in [json!(1e19), json!(4_102_444_800.5), json!("4102444800")] {
            assert_eq!(
                verdict(exp.clone()).await.unwrap_err(),
                TokenRejection::InvalidClaims,
                "{exp}"
            );
        }
    }
}
