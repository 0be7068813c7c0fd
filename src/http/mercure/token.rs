//! Mercure's tokens, signed with the configured key (an HMAC secret, a PEM
//! public key or a JWKS) and algorithm, in two profiles told apart by the
//! header's `typ`:
//! - draft-07 (as Mercure 0.x accepts them): a `mercure` claim lists
//!   `publish` and `subscribe` topic selectors; `exp` is checked when
//!   present, not required; `iss` and `aud` when configured;
//! - draft-08 (`typ: at+jwt`, RFC 9068 access tokens): `exp`, `iss` and
//!   `aud` required and checked against `mercure.*_jwt.issuer` /
//!   `.audience` (which must be set for such tokens to be accepted), and
//!   the grants in `authorization_details` of type
//!   `https://mercure.rocks/authorization-detail`.
//!
//! With `protocol_version_compatibility = 8` only the second is accepted.
//! Where a token travels: `Authorization: Bearer` (always first), then in
//! draft-07 the `authorization` query parameter (subscribers), then the
//! cookies (draft-08's `__Secure-mercure_access_token`, draft-07's
//! `mercureAuthorization`).

use std::time::{Duration, SystemTime};

use jsonwebtoken::Validation;
use poem::Request;
use poem::http::StatusCode;
use serde::Deserialize;

use super::config::ProtocolVersion;
use super::keys::{KeySource, MercureKey};
use super::selector::Selector;
use crate::auth::{Action, Authenticator, MAX_TOKEN_EXP, RejectionReason, TokenRejection};
use crate::http::ApiError;
use crate::http::credentials;
use crate::http::error::INVALID_TOKEN_REQUEST;

/// The cookie a browser's token travels in: draft-08's recommended name
/// (`__Secure-`: browsers set it over HTTPS only, and on http://localhost).
pub const COOKIE_NAME: &str = "__Secure-mercure_access_token";
/// Draft-07's cookie (the Mercure hub 0.x's default name).
pub const COOKIE_NAME_DRAFT_07: &str = "mercureAuthorization";
/// The query parameter a subscriber's token may travel in (draft-07 only:
/// draft-08 forbids tokens in URLs, RFC 9700).
pub const QUERY_PARAMETER: &str = "authorization";
/// Clock skew allowed on `exp` and `nbf`, as `auth.jwt.leeway`'s default.
const LEEWAY: Duration = Duration::from_secs(5);

#[derive(Debug, Default, Deserialize)]
struct Claims {
    #[serde(default)]
    mercure: MercureClaim,
    exp: Option<u64>,
    /// Read leniently (any JSON): a draft-07 token's `iss` and `sub` are
    /// checked by nobody, and only name its holder.
    iss: Option<serde_json::Value>,
    sub: Option<serde_json::Value>,
    /// Draft-08's grants (RFC 9396).
    authorization_details: Option<Vec<serde_json::Value>>,
}

/// The type of draft-08's authorization details.
const AUTHORIZATION_DETAIL_TYPE: &str = "https://mercure.rocks/authorization-detail";

/// Whether the token's header says it is an RFC 9068 access token
/// (`at+jwt`, or `application/at+jwt`, compared case-insensitively).
fn is_access_token(token: &str) -> bool {
    jsonwebtoken::decode_header(token)
        .ok()
        .and_then(|header| header.typ)
        .is_some_and(|typ| {
            let typ = typ.to_ascii_lowercase();
            typ == "at+jwt" || typ == "application/at+jwt"
        })
}

/// A presented token refused: the 401 to answer, and the reason `auth`'s
/// metrics count it under (`ssehub_auth_rejections_total`), as for
/// ssehub's own tokens.
#[derive(Debug)]
pub struct Refused {
    pub reason: TokenRejection,
    pub answer: ApiError,
}

impl Refused {
    /// Counts the refusal of `action` and gives the answer.
    pub fn counted(self, auth: &Authenticator, action: Action) -> ApiError {
        auth.count_rejection(action, RejectionReason::Token(self.reason));
        self.answer
    }
}

fn refused_as(reason: TokenRejection, detail: impl Into<String>) -> Refused {
    Refused {
        reason,
        answer: ApiError::new(StatusCode::UNAUTHORIZED, "invalid-token", detail),
    }
}

/// A token whose claims are not what Mercure's say they must be.
fn invalid(detail: impl Into<String>) -> Refused {
    refused_as(TokenRejection::InvalidClaims, detail)
}

/// Draft-08's grants: (publish, subscribe) selectors. A malformed Mercure
/// detail rejects the whole token (no partial acceptance); details of
/// other types and unknown actions grant nothing.
fn authorization_details(
    details: &[serde_json::Value],
    base: &url::Url,
) -> Result<(Vec<Selector>, Vec<Selector>), Refused> {
    let mut publish = Vec::new();
    let mut subscribe = Vec::new();
    for detail in details {
        let detail = detail
            .as_object()
            .ok_or_else(|| invalid("an authorization detail is not a JSON object"))?;
        if detail.get("type").and_then(|t| t.as_str()) != Some(AUTHORIZATION_DETAIL_TYPE) {
            continue;
        }
        let actions = detail
            .get("actions")
            .and_then(|a| a.as_array())
            .filter(|a| !a.is_empty())
            .ok_or_else(|| invalid("a Mercure authorization detail needs non-empty `actions`"))?
            .iter()
            .map(|action| {
                action
                    .as_str()
                    .ok_or_else(|| invalid("an action is not a string"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if detail
            .get("payload")
            .is_some_and(|payload| !payload.is_object())
        {
            return Err(invalid(
                "a Mercure authorization detail's `payload` is not a JSON object",
            ));
        }
        let topics = detail
            .get("topics")
            .and_then(|t| t.as_array())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| invalid("a Mercure authorization detail needs non-empty `topics`"))?;
        for action in actions {
            let into = match action {
                "publish" => &mut publish,
                "subscribe" => &mut subscribe,
                _ => continue,
            };
            for matcher in topics {
                into.push(matcher_selector(matcher, base)?);
            }
        }
    }
    Ok((publish, subscribe))
}

/// One `{"match": …, "match_type"?: …}` of a detail's `topics`.
fn matcher_selector(matcher: &serde_json::Value, base: &url::Url) -> Result<Selector, Refused> {
    let text = matcher
        .get("match")
        .and_then(|m| m.as_str())
        .ok_or_else(|| invalid("a topic matcher needs a string `match`"))?;
    let bad =
        |error: super::selector::InvalidSelector| invalid(format!("a topic matcher: {error}"));
    if text == "*" {
        return Ok(Selector::Any);
    }
    match matcher.get("match_type").map(|t| t.as_str()) {
        None | Some(Some("exact")) => Selector::exact(text).map_err(bad),
        Some(Some("urlpattern")) => Selector::url_pattern(text, base).map_err(bad),
        _ => Err(invalid(
            "a topic matcher's `match_type` is not `exact` or `urlpattern`",
        )),
    }
}

#[derive(Debug, Default, Deserialize)]
struct MercureClaim {
    publish: Option<Vec<String>>,
    subscribe: Option<Vec<String>>,
    /// Draft-07's `mercure.payload`: any JSON the subscriber's application
    /// wants shown in its subscription.
    payload: Option<serde_json::Value>,
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
    /// Who holds the token, by a name the same on every replica: its issuer
    /// and subject, or its signature when it has no subject. The scope of
    /// a publisher's idempotency keys.
    pub holder: String,
    /// `mercure.payload`: the subscriber's data, shown in its subscription
    /// events and in the subscriptions API.
    pub payload: Option<serde_json::Value>,
}

/// [`Grants::holder`]: tagged so that the two kinds never meet, the issuer
/// and subject split by a NUL, which neither can hold.
fn holder(token: &str, issuer: Option<&str>, subject: Option<&str>) -> String {
    match subject {
        Some(subject) => format!("mercure-jwt:{}\0{subject}", issuer.unwrap_or_default()),
        None => format!(
            "mercure-token:{}",
            token.rsplit('.').next().unwrap_or_default()
        ),
    }
}

/// The token of a request: the `Authorization: Bearer` header first, then
/// (draft-07 only, for subscribers) the query parameter, then the cookies.
/// A header wins over a cookie (cookies are ambient: draft-08 says to
/// ignore them then), and in draft-07 the query parameter does too.
pub fn presented(
    request: &Request,
    query_token: Option<&str>,
    protocol: ProtocolVersion,
) -> Option<String> {
    let draft_07 = protocol.accepts_draft_07();
    credentials::bearer(request)
        .or_else(|| {
            query_token
                .filter(|token| draft_07 && !token.is_empty())
                .map(str::to_owned)
        })
        .or_else(|| credentials::cookie(request, COOKIE_NAME))
        .or_else(|| {
            draft_07
                .then(|| credentials::cookie(request, COOKIE_NAME_DRAFT_07))
                .flatten()
        })
}

/// A token in the query with draft-08 only: a 400 whose challenge says
/// `invalid_request` (the token's presentation is what is malformed).
pub fn in_query() -> ApiError {
    ApiError::bad_request(
        INVALID_TOKEN_REQUEST,
        format!(
            "the `{QUERY_PARAMETER}` query parameter is draft-07's, refused with \
             mercure.protocol_version_compatibility = 8 (draft-08 forbids tokens in URLs): send \
             `Authorization: Bearer <jwt>` or the `{COOKIE_NAME}` cookie"
        ),
    )
}

/// Draft-07 tokens are refused with draft-08 only.
fn refuse_draft_07(protocol: ProtocolVersion) -> Result<(), Refused> {
    if protocol.accepts_draft_07() {
        return Ok(());
    }
    Err(invalid(
        "a draft-07 token (its header has no `typ: at+jwt`) is refused: with \
         mercure.protocol_version_compatibility = 8 the hub takes draft-08 access tokens only \
         (header `typ: at+jwt`; claims `iss`, `aud`, `exp` and `authorization_details`)",
    ))
}

/// Decodes `token` with the key (or the JWKS keys for its `kid` that
/// verify the configured algorithm).
async fn decode(token: &str, key: &MercureKey, validation: &Validation) -> Result<Claims, Refused> {
    let refused = |error: jsonwebtoken::errors::Error| {
        refused_as(
            crate::auth::jwt_rejection(error.kind()),
            format!("the Mercure token was refused: {error}"),
        )
    };
    let jwks = match &key.source {
        KeySource::Static(decoding) => {
            return jsonwebtoken::decode::<Claims>(token, decoding, validation)
                .map(|data| data.claims)
                .map_err(refused);
        }
        KeySource::Jwks(jwks) => jwks,
    };
    let kid = jsonwebtoken::decode_header(token).map_err(refused)?.kid;
    let keys: Vec<_> = jwks
        .keys_for(kid.as_deref())
        .await
        .into_iter()
        .filter(|candidate| candidate.accepts(key.algorithm))
        .collect();
    if keys.is_empty() {
        return Err(refused_as(
            TokenRejection::UnknownKey,
            match kid {
                Some(kid) => format!(
                    "the Mercure token was refused: its `kid` {kid:?} is not in the key set \
                 (JWKS) for {:?}",
                    key.algorithm
                ),
                None => format!(
                    "the Mercure token was refused: the key set (JWKS) has no key for {:?}",
                    key.algorithm
                ),
            },
        ));
    }
    let mut last = None;
    for candidate in &keys {
        match jsonwebtoken::decode::<Claims>(token, &candidate.key, validation) {
            Ok(data) => return Ok(data.claims),
            // Another key of a set without `kid`s may verify it.
            Err(error) if *error.kind() == jsonwebtoken::errors::ErrorKind::InvalidSignature => {
                last = Some(error)
            }
            Err(error) => return Err(refused(error)),
        }
    }
    Err(refused(last.expect("at least one key was tried")))
}

/// Verifies `token` with `key`: a 401 `invalid-token` when it is not one.
/// `base` is the hub's URL, for draft-08's relative URL patterns.
pub async fn verify(
    token: &str,
    key: &MercureKey,
    base: &url::Url,
    protocol: ProtocolVersion,
) -> Result<Grants, Refused> {
    let access_token = is_access_token(token);
    if !access_token {
        refuse_draft_07(protocol)?;
    }
    if access_token && (key.issuer.is_none() || key.audience.is_none()) {
        return Err(invalid(
            "a draft-08 access token (typ at+jwt) needs the hub's issuer and audience \
             configured (mercure.*_jwt.issuer and .audience)",
        ));
    }
    let mut validation = Validation::new(key.algorithm);
    validation.required_spec_claims.clear();
    if access_token {
        for claim in ["exp", "iss", "aud"] {
            validation.required_spec_claims.insert(claim.to_owned());
        }
    }
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
    let claims = decode(token, key, &validation).await?;
    let selectors = |list: Vec<String>| {
        list.iter()
            .map(|text| Selector::parse(text))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| {
                invalid(format!(
                    "the Mercure token's `mercure` claim holds a bad selector: {error}"
                ))
            })
    };
    // The stream ends at `exp` on the runtime's clock, which a later one
    // (u64::MAX) would overflow: refused as auth refuses it.
    if claims.exp.is_some_and(|exp| exp > MAX_TOKEN_EXP) {
        return Err(refused_as(
            TokenRejection::ExpiryOutOfRange,
            format!(
                "the Mercure token's `exp` is after {MAX_TOKEN_EXP} (9999-12-31T23:59:59Z), \
             the latest the hub accepts"
            ),
        ));
    }
    let expires_at = claims
        .exp
        .map(|exp| SystemTime::UNIX_EPOCH + Duration::from_secs(exp));
    let holder = holder(
        token,
        claims.iss.as_ref().and_then(|iss| iss.as_str()),
        claims.sub.as_ref().and_then(|sub| sub.as_str()),
    );
    if access_token {
        let (publish, subscribe) =
            authorization_details(claims.authorization_details.as_deref().unwrap_or(&[]), base)?;
        return Ok(Grants {
            publish: Some(publish),
            subscribe,
            expires_at,
            holder,
            payload: None,
        });
    }
    Ok(Grants {
        publish: claims.mercure.publish.map(selectors).transpose()?,
        subscribe: selectors(claims.mercure.subscribe.unwrap_or_default())?,
        expires_at,
        holder,
        payload: claims.mercure.payload,
    })
}

/// A 401 for a request that needs a token and has none: where it may
/// travel, and why a draft-07 cookie present was not read.
pub fn missing(what: &str, request: &Request, protocol: ProtocolVersion) -> ApiError {
    let detail = if protocol.accepts_draft_07() {
        format!(
            "{what} needs a Mercure token: `Authorization: Bearer <jwt>`, the `{COOKIE_NAME}` \
             or `{COOKIE_NAME_DRAFT_07}` cookie"
        )
    } else if credentials::cookie(request, COOKIE_NAME_DRAFT_07).is_some() {
        format!(
            "{what} needs a Mercure token; the `{COOKIE_NAME_DRAFT_07}` cookie is draft-07's, \
             not read with mercure.protocol_version_compatibility = 8: send \
             `Authorization: Bearer <jwt>` or the `{COOKIE_NAME}` cookie"
        )
    } else {
        format!(
            "{what} needs a Mercure token: `Authorization: Bearer <jwt>` or the \
             `{COOKIE_NAME}` cookie"
        )
    };
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
}
