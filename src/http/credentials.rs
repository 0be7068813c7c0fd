//! Where credentials are found in a request, and how the spec describes
//! them (security schemes, so Swagger UI's "Authorize" fills them in).
//! What they allow is decided in `crate::auth`, not here.
//!
//! - Publish routes: `Authorization: Bearer <key or JWT>` only. A token in
//!   a URL leaks into logs and histories, and a cookie would let any page
//!   the user visits publish on their behalf.
//! - The subscribe routes: `Authorization: Bearer`, else the `access_token`
//!   query parameter (EventSource can't set headers), else the
//!   `auth.cookie_name` cookie (EventSource `withCredentials`).
//! - `/metrics`: `Authorization: Bearer` (Prometheus' `authorization`).

use std::net::{IpAddr, Ipv4Addr};

use poem::http::header;
use poem::{Request, RequestBody};
use poem_openapi::registry::{MetaSecurityScheme, Registry};
use poem_openapi::{ApiExtractor, ApiExtractorType, ExtractParamOptions};

use crate::auth::AUTH_COOKIE_DEFAULT;
use crate::auth::{Authenticator, Credential, CredentialSource};

/// Name of the query parameter a subscriber's token may travel in (the
/// OAuth 2.0 bearer token usage name, RFC 6750 section 2.3).
pub const ACCESS_TOKEN_PARAMETER: &str = "access_token";

const PUBLISHER_SCHEME: &str = "publisherBearer";
const SUBSCRIBER_BEARER_SCHEME: &str = "subscriberBearer";
const SUBSCRIBER_QUERY_SCHEME: &str = "subscriberAccessToken";
const SUBSCRIBER_COOKIE_SCHEME: &str = "subscriberCookie";
const METRICS_SCHEME: &str = "metricsBearer";

/// The bearer value of `Authorization: Bearer …` (scheme case-insensitive).
pub(super) fn bearer(request: &Request) -> Option<String> {
    let value = request
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.to_owned())
}

fn access_token(request: &Request) -> Option<String> {
    let query = request.uri().query()?;
    form_urlencoded::parse(query.as_bytes())
        .find(|(name, value)| name == ACCESS_TOKEN_PARAMETER && !value.is_empty())
        .map(|(_, value)| value.into_owned())
}

/// The value of cookie `name`. `Cookie` is a plain `a=b; c=d` list (RFC
/// 6265 section 4.2); a cookie crate would bring a jar, expiry parsing and
/// a date library for this one lookup.
pub(super) fn cookie(request: &Request, name: &str) -> Option<String> {
    request
        .headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, value)| *key == name && !value.is_empty())
        .map(|(_, value)| value.trim_matches('"').to_owned())
}

/// The client's address: the peer, or behind a trusted proxy the client
/// it names (see `auth::TrustedProxies`).
pub(super) fn client_address(request: &Request, authenticator: &Authenticator) -> IpAddr {
    let forwarded = request
        .headers()
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .collect::<Vec<_>>();
    authenticator.client_address(peer(request), forwarded.into_iter())
}

fn bearer_scheme(description: &'static str) -> MetaSecurityScheme {
    MetaSecurityScheme {
        ty: "http",
        description: Some(description),
        name: None,
        key_in: None,
        scheme: Some("bearer"),
        bearer_format: Some("JWT or static key"),
        flows: None,
        openid_connect_url: None,
    }
}

fn api_key_scheme(
    description: &'static str,
    name: &'static str,
    key_in: &'static str,
) -> MetaSecurityScheme {
    MetaSecurityScheme {
        ty: "apiKey",
        description: Some(description),
        name: Some(name),
        key_in: Some(key_in),
        scheme: None,
        bearer_format: None,
        flows: None,
        openid_connect_url: None,
    }
}

macro_rules! credential_extractor {
    ($name:ident, [$($scheme:expr),+], |$registry:ident| $register:block, |$request:ident| $find:expr) => {
        impl<'a> ApiExtractor<'a> for $name {
            const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::SecurityScheme];
            type ParamType = ();
            type ParamRawType = ();

            fn register($registry: &mut Registry) $register

            fn security_schemes() -> Vec<&'static str> {
                vec![$($scheme),+]
            }

            /// Credentials are optional at extraction: whether the route
            /// needs them is `auth`'s decision (open hubs need none).
            fn has_security_fallback() -> bool {
                true
            }

            async fn from_request(
                $request: &'a Request,
                _body: &mut RequestBody,
                _options: ExtractParamOptions<Self::ParamType>,
            ) -> poem::Result<Self> {
                Ok($find)
            }
        }
    };
}

/// The credentials of a publish request, and where it comes from.
pub struct PublisherCredential {
    pub credential: Option<Credential>,
    pub client: IpAddr,
}

fn client_of(request: &Request) -> IpAddr {
    request
        .data::<Authenticator>()
        .map_or_else(|| peer(request), |auth| client_address(request, auth))
}

fn peer(request: &Request) -> IpAddr {
    request
        .remote_addr()
        .as_socket_addr()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |addr| addr.ip())
}

credential_extractor!(
    PublisherCredential,
    [PUBLISHER_SCHEME],
    |registry| {
        registry.create_security_scheme(
            PUBLISHER_SCHEME,
            bearer_scheme(
                "A key of auth.publish_keys, or a JWT whose `ssehub.publish` claim covers the topic",
            ),
        );
    },
    |request| PublisherCredential {
        credential: bearer(request).map(|token| Credential::new(token, CredentialSource::Header)),
        client: client_of(request),
    }
);

/// The credentials of a subscribe request, from the first place that has
/// one, and where it comes from.
pub struct SubscriberCredential {
    pub credential: Option<Credential>,
    pub client: IpAddr,
}

credential_extractor!(
    SubscriberCredential,
    [
        SUBSCRIBER_BEARER_SCHEME,
        SUBSCRIBER_QUERY_SCHEME,
        SUBSCRIBER_COOKIE_SCHEME
    ],
    |registry| {
        registry.create_security_scheme(
            SUBSCRIBER_BEARER_SCHEME,
            bearer_scheme("A JWT whose `ssehub.subscribe` claim covers the topics"),
        );
        registry.create_security_scheme(
            SUBSCRIBER_QUERY_SCHEME,
            api_key_scheme(
                "The JWT as a query parameter, for EventSource (which can't set headers); never logged",
                ACCESS_TOKEN_PARAMETER,
                "query",
            ),
        );
        registry.create_security_scheme(
            SUBSCRIBER_COOKIE_SCHEME,
            api_key_scheme(
                "The JWT in a cookie (EventSource withCredentials); its name is auth.cookie_name",
                AUTH_COOKIE_DEFAULT,
                "cookie",
            ),
        );
    },
    |request| {
        let cookie_name = request
            .data::<Authenticator>()
            .map_or(AUTH_COOKIE_DEFAULT, |auth| auth.cookie_name());
        let credential = bearer(request)
            .map(|token| Credential::new(token, CredentialSource::Header))
            .or_else(|| {
                access_token(request).map(|token| Credential::new(token, CredentialSource::Query))
            })
            .or_else(|| {
                cookie(request, cookie_name)
                    .map(|token| Credential::new(token, CredentialSource::Cookie))
            });
        SubscriberCredential {
            credential,
            client: client_of(request),
        }
    }
);

/// The credentials of a `/metrics` scrape.
pub struct MetricsCredential(pub Option<Credential>);

credential_extractor!(
    MetricsCredential,
    [METRICS_SCHEME],
    |registry| {
        registry.create_security_scheme(
            METRICS_SCHEME,
            bearer_scheme("A key of auth.metrics_keys, when they are set (else /metrics is open)"),
        );
    },
    |request| MetricsCredential(
        bearer(request).map(|token| Credential::new(token, CredentialSource::Header))
    )
);
