//! Mercure's tokens, draft-07 profile (as Mercure 0.x accepts them): a JWT
//! signed with the configured key and algorithm, whose `mercure` claim
//! lists `publish` and `subscribe` topic selectors. `exp` is checked when
//! present, not required; `iss` and `aud` when configured.

use std::time::{Duration, SystemTime};

use jsonwebtoken::Validation;
use poem::Request;
use poem::http::StatusCode;
use serde::Deserialize;

use super::config::MercureKey;
use super::selector::Selector;
use crate::http::ApiError;
use crate::http::credentials;

/// The cookie a browser's token travels in (draft-07).
pub const COOKIE_NAME: &str = "mercureAuthorization";
/// The query parameter a subscriber's token may travel in (draft-07).
pub const QUERY_PARAMETER: &str = "authorization";
/// Clock skew allowed on `exp` and `nbf`, as `auth.jwt.leeway`'s default.
const LEEWAY: Duration = Duration::from_secs(5);

#[derive(Debug, Default, Deserialize)]
struct Claims {
    #[serde(default)]
    mercure: MercureClaim,
    exp: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
struct MercureClaim {
    publish: Option<Vec<String>>,
    subscribe: Option<Vec<String>>,
}

/// A verified token's grants.
#[derive(Debug)]
pub struct Grants {
    /// `mercure.publish`; `None`: the claim is absent.
    pub publish: Option<Vec<Selector>>,
    /// `mercure.subscribe`; empty when absent.
    pub subscribe: Vec<Selector>,
    /// The token's `exp`, when it has one.
    pub expires_at: Option<SystemTime>,
}

/// The token of a request: the `Authorization: Bearer` header first, then
/// the cookie, then (for subscribers) the query parameter.
pub fn presented(request: &Request, query_token: Option<&str>) -> Option<String> {
    credentials::bearer(request)
        .or_else(|| credentials::cookie(request, COOKIE_NAME))
        .or_else(|| {
            query_token
                .filter(|token| !token.is_empty())
                .map(str::to_owned)
        })
}

/// Verifies `token` with `key`: a 401 `invalid-token` when it is not one.
pub fn verify(token: &str, key: &MercureKey) -> Result<Grants, ApiError> {
    let mut validation = Validation::new(key.algorithm);
    validation.required_spec_claims.clear();
    validation.leeway = LEEWAY.as_secs();
    validation.validate_nbf = true;
    match &key.issuer {
        Some(issuer) => {
            validation.set_issuer(&[issuer]);
            validation.required_spec_claims.insert("iss".to_owned());
        }
        None => validation.iss = None,
    }
    match &key.audience {
        Some(audience) => {
            validation.set_audience(&[audience]);
            validation.required_spec_claims.insert("aud".to_owned());
        }
        None => validation.validate_aud = false,
    }
    let claims = jsonwebtoken::decode::<Claims>(token, &key.key, &validation)
        .map_err(|error| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid-token",
                format!("the Mercure token was refused: {error}"),
            )
        })?
        .claims;
    let selectors = |list: Vec<String>| {
        list.iter()
            .map(|text| Selector::parse(text))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| {
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "invalid-token",
                    format!("the Mercure token's `mercure` claim holds a bad selector: {error}"),
                )
            })
    };
    Ok(Grants {
        publish: claims.mercure.publish.map(selectors).transpose()?,
        subscribe: selectors(claims.mercure.subscribe.unwrap_or_default())?,
        expires_at: claims
            .exp
            .map(|exp| SystemTime::UNIX_EPOCH + Duration::from_secs(exp)),
    })
}

/// A 401 for a request that needs a token and has none.
pub fn missing(what: &str) -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        format!(
            "{what} needs a Mercure token: `Authorization: Bearer <jwt>` or the \
             `{COOKIE_NAME}` cookie"
        ),
    )
}
