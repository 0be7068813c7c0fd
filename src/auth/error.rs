//! The auth boundary's one error enum, and the reasons a token is refused.
//! `http::error` maps them to statuses (401, 403, 413, 429); the reason lists of
//! the metrics are derived from these enums.

use std::time::Duration;

use crate::model::TopicName;

/// What the credentials were for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::VariantArray)]
pub enum Action {
    Publish,
    Subscribe,
    ReadMetrics,
}

impl Action {
    /// The `action` label of `ssehub_auth_rejections_total`.
    pub fn label(self) -> &'static str {
        match self {
            Self::Publish => "publish",
            Self::Subscribe => "subscribe",
            Self::ReadMetrics => "metrics",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Publish => "publish",
            Self::Subscribe => "subscribe",
            Self::ReadMetrics => "read metrics",
        }
    }
}

/// Why a presented token was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::VariantArray, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum TokenRejection {
    /// Not three base64url parts, a header or claims that aren't JSON, an
    /// unknown `alg` (`none` included).
    Malformed,
    /// The signature does not verify with the key it names (or any key).
    BadSignature,
    /// `exp` is past (beyond the leeway).
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    NotYetValid,
    /// `iss` is not `auth.jwt.issuer`, or missing while one is required.
    WrongIssuer,
    /// `aud` does not name `auth.jwt.audience`, or is missing while required.
    WrongAudience,
    /// No configured key of the token's algorithm family, or no JWKS key
    /// with its `kid`.
    UnknownKey,
    /// The `alg` is one no configured key accepts (e.g. HS256 where only
    /// an RSA key is configured: the "alg confusion" attack).
    AlgorithmNotAccepted,
    /// Registered claims fine, but `exp` is missing or not a whole number
    /// of seconds, or the `ssehub` claim is not
    /// `{"publish": [patterns], "subscribe": [patterns]}`.
    InvalidClaims,
    /// `exp` later than [`super::token::MAX_TOKEN_EXP`] (the year 9999): no
    /// real expiry, and past what a stream's end can be scheduled at.
    ExpiryOutOfRange,
    /// A bearer value that is neither a JWT nor one of the static keys.
    UnknownStaticKey,
}

impl TokenRejection {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// What a person should do about it.
    pub fn explain(self) -> &'static str {
        match self {
            Self::Malformed => {
                "the token is not a well-formed JWT (three base64url parts, JSON header and claims, a known `alg`)"
            }
            Self::BadSignature => "the token's signature does not verify",
            Self::Expired => "the token has expired (`exp`); fetch a new one",
            Self::NotYetValid => "the token is not valid yet (`nbf`)",
            Self::WrongIssuer => "the token's `iss` is not the configured issuer (auth.jwt.issuer)",
            Self::WrongAudience => {
                "the token's `aud` does not name the configured audience (auth.jwt.audience)"
            }
            Self::UnknownKey => {
                "no configured key verifies this token (its `kid` is not in the key set, or no key of its algorithm is configured)"
            }
            Self::AlgorithmNotAccepted => "the token's `alg` is not accepted by any configured key",
            Self::InvalidClaims => {
                "the token's claims are not usable: `exp` is required, in whole seconds, and `ssehub` must be {\"publish\": [patterns], \"subscribe\": [patterns]} with valid patterns"
            }
            Self::ExpiryOutOfRange => {
                "the token's `exp` is later than 253402300799 (9999-12-31T23:59:59Z), the latest expiry accepted; issue tokens that expire"
            }
            Self::UnknownStaticKey => {
                "the bearer value is not a JWT and not one of the configured keys (auth.publish_keys; auth.metrics_keys for /metrics)"
            }
        }
    }
}

/// A refused token: the reason (a metric label) and, when there is more to
/// say, what exactly (`exp` 2026-01-01T00:00:00Z; the `kid` not in the key
/// set; the audience expected). Never a key, a secret or the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRefusal {
    pub rejection: TokenRejection,
    pub specifics: Option<String>,
}

impl TokenRefusal {
    pub fn new(rejection: TokenRejection, specifics: impl Into<String>) -> Self {
        Self {
            rejection,
            specifics: Some(specifics.into()),
        }
    }
}

impl From<TokenRejection> for TokenRefusal {
    fn from(rejection: TokenRejection) -> Self {
        Self {
            rejection,
            specifics: None,
        }
    }
}

/// Which rate limit a request ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::VariantArray, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum RateLimit {
    PublishPerPublisher,
    PublishPerAddress,
    SubscribePerAddress,
}

impl RateLimit {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum AuthError {
    #[error("{}", missing_detail(*.action, .accepted))]
    Missing {
        action: Action,
        /// Where a token may be presented for this action.
        accepted: &'static str,
    },
    #[error("{}", rejected_detail(*.rejection, .specifics.as_deref()))]
    Rejected {
        action: Action,
        rejection: TokenRejection,
        /// What exactly, when the reason alone doesn't say (see [`TokenRefusal`]).
        specifics: Option<String>,
    },
    #[error("the token does not allow to {} topic `{topic}`", .action.as_str())]
    Forbidden { action: Action, topic: TopicName },
    #[error(
        "rate limited ({}); retry after {} ms",
        .limit.as_str(),
        .retry_after.as_millis()
    )]
    RateLimited {
        limit: RateLimit,
        retry_after: Duration,
    },
    #[error(
        "this request counts {cost} events against rate_limits.{}, whose burst is {burst}: \
         it could never pass; send at most {burst} events per request",
        .limit.as_str()
    )]
    OverBurst {
        limit: RateLimit,
        /// What the request would take of the limit.
        cost: u32,
        burst: u32,
    },
}

fn rejected_detail(rejection: TokenRejection, specifics: Option<&str>) -> String {
    match specifics {
        Some(specifics) => format!("{}: {specifics}", rejection.explain()),
        None => rejection.explain().to_owned(),
    }
}

fn missing_detail(action: Action, accepted: &str) -> String {
    format!("{} needs a token: {accepted}", capitalised(action.as_str()))
}

fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}
