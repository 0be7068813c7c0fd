//! Every error the HTTP API answers is built here, as
//! `application/problem+json` (RFC 9457) with a message a person can act on.
//! Domain errors map to statuses in one place ([`ApiError`]'s `From` impls;
//! a publish error's, with the outcome label it counts under, in
//! `publish_outcome`);
//! errors raised by poem or poem-openapi before a handler runs (bad JSON,
//! wrong content type, unknown route) are rewritten by [`problem_for_poem_error`].

use std::marker::PhantomData;
use std::time::Duration;

use poem::http::{HeaderValue, StatusCode, header};
use poem::{IntoResponse, Response};
use poem_openapi::registry::{MetaMediaType, MetaResponse, MetaResponses, Registry};
use poem_openapi::types::ToJSON;
use poem_openapi::{ApiResponse, Object};

use super::fields::field_and_form;
use crate::auth::AuthError;
use crate::hub::SubscribeError;
use crate::model::{InvalidEventType, InvalidTopicName};
use crate::server::HeadError;

pub const PROBLEM_JSON: &str = "application/problem+json";

/// An RFC 9457 problem document.
#[derive(Debug, Clone, Object)]
pub struct Problem {
    /// A URI naming the kind of problem, stable for programs to match on.
    #[oai(rename = "type")]
    pub kind: String,
    /// Short summary of the kind of problem.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong with this request and how to fix it.
    pub detail: String,
}

/// An error answer: status, problem document and any headers it needs.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub slug: &'static str,
    pub detail: String,
    /// Sent as `Retry-After` (whole seconds, rounded up) on 429 and 503;
    /// never on 504 `publish-outcome-unknown`, which must not invite a
    /// blind retry.
    pub retry_after: Option<Duration>,
}

/// `WWW-Authenticate` of a 401 (RFC 6750 section 3): a missing token, or
/// one that was presented and refused.
const CHALLENGE: &str = "Bearer realm=\"ssehub\"";
const CHALLENGE_INVALID_TOKEN: &str = "Bearer realm=\"ssehub\", error=\"invalid_token\"";
/// `WWW-Authenticate` of a 400 about how a token was presented (RFC 6750
/// section 3.1 `invalid_request`), e.g. one in a URL where none may be.
const CHALLENGE_INVALID_REQUEST: &str = "Bearer realm=\"ssehub\", error=\"invalid_request\"";

/// The problem type of a 400 about the way a token was presented; it
/// carries the `invalid_request` challenge.
pub const INVALID_TOKEN_REQUEST: &str = "invalid-token-request";

/// Seconds a client should wait before publishing again to a hub that is
/// draining or whose backplane is down: long enough for a load balancer to
/// route elsewhere or Redis to come back.
const RETRY_AFTER_UNAVAILABLE: Duration = Duration::from_secs(5);

impl ApiError {
    pub fn new(status: StatusCode, slug: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            slug,
            detail: detail.into(),
            retry_after: None,
        }
    }

    pub fn bad_request(slug: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, slug, detail)
    }

    pub fn unavailable(slug: &'static str, detail: impl Into<String>) -> Self {
        Self {
            retry_after: Some(RETRY_AFTER_UNAVAILABLE),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, slug, detail)
        }
    }

    /// Prefixes the detail with the place in the request it is about
    /// (e.g. `events[3]`), so a rejected batch names the bad item.
    pub fn at(mut self, place: &str) -> Self {
        self.detail = format!("{place}: {}", self.detail);
        self
    }

    pub fn problem(&self) -> Problem {
        Problem {
            kind: format!("urn:ssehub:problem:{}", self.slug),
            title: self.status.canonical_reason().unwrap_or("Error").to_owned(),
            status: self.status.as_u16(),
            detail: self.detail.clone(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = self.problem().to_json_string();
        let mut response = Response::builder()
            .status(self.status)
            .header(header::CONTENT_TYPE, PROBLEM_JSON)
            .body(body);
        if let Some(after) = self.retry_after {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(after.as_millis().div_ceil(1000).max(1) as u64),
            );
        }
        let challenge = match (self.status, self.slug) {
            (StatusCode::UNAUTHORIZED, "invalid-token") => Some(CHALLENGE_INVALID_TOKEN),
            (StatusCode::UNAUTHORIZED, _) => Some(CHALLENGE),
            (StatusCode::BAD_REQUEST, INVALID_TOKEN_REQUEST) => Some(CHALLENGE_INVALID_REQUEST),
            _ => None,
        };
        if let Some(challenge) = challenge {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        response
    }
}

/// A request head the server refused before any route saw it.
impl From<HeadError> for ApiError {
    fn from(error: HeadError) -> Self {
        let detail = error.to_string();
        match error {
            HeadError::UriTooLong => Self::new(StatusCode::URI_TOO_LONG, "uri_too_long", detail),
            HeadError::TooLarge => Self::new(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "request_head_too_large",
                detail,
            ),
            HeadError::Malformed(_) => Self::bad_request("malformed_request", detail),
            HeadError::TimedOut => {
                Self::new(StatusCode::REQUEST_TIMEOUT, "request_head_timeout", detail)
            }
        }
    }
}

/// The server's answer to a request head it can't serve
/// (`ServerSettings::refusal`).
pub fn refusal(error: HeadError) -> poem::Response {
    ApiError::from(error).into_response()
}

impl From<ApiError> for poem::Error {
    fn from(error: ApiError) -> Self {
        poem::Error::from_response(error.into_response())
    }
}

/// The statuses any API operation may answer with a problem document.
const DOCUMENTED_STATUSES: &[(u16, &str)] = &[
    (
        400,
        "Malformed request: bad JSON, unknown field, bad topic name, a malformed or \
         over-long Idempotency-Key (`invalid-idempotency-key`)",
    ),
    (
        401,
        "No token, or one that was refused (`WWW-Authenticate` says which)",
    ),
    (
        403,
        "The token does not cover this topic (the detail names it)",
    ),
    (
        408,
        "The body did not arrive in full within limits.body_read_timeout",
    ),
    (
        413,
        "Event or body larger than the configured limit (`event-too-large`), a batch \
         worth more events than a publish rate limit's burst (`over-rate-limit-burst`), or \
         a Mercure update naming more topics than limits.max_events_per_request \
         (`too-many-topics`)",
    ),
    (
        409,
        "`idempotency-key-in-flight`: a publish with the same Idempotency-Key is still \
         being answered; retry once it is, and the retry gets its answer",
    ),
    (415, "Content-Type is not application/json"),
    (
        422,
        "A field has a value the hub can't accept (`too-many-events`: a batch over \
         limits.max_events_per_request), or `idempotency-key-reused`: the \
         Idempotency-Key was used within limits.idempotency_window for a different \
         request (route, topic or body); nothing was published",
    ),
    (
        429,
        "Over a publish rate limit; retry after `Retry-After` seconds",
    ),
    (
        503,
        "Draining or backplane down, known before anything was sent: nothing was \
         published; retry after `Retry-After` seconds. `publish-not-replicated`: stored \
         on the Redis master but fewer than backplane.redis.replicas_ack replicas \
         confirmed it in time, so it may or may not be kept; a retry with the same \
         Idempotency-Key is safe",
    ),
    (
        504,
        "`publish-outcome-unknown`: the publish was sent to the backplane (Redis) but \
         no answer came within backplane.redis.command_timeout; it may have been \
         published, and a retry may publish it twice",
    ),
];

/// The problem responses of `statuses` (a subset of [`DOCUMENTED_STATUSES`]).
fn problem_responses(documented: impl Fn(u16) -> bool) -> MetaResponses {
    MetaResponses {
        responses: DOCUMENTED_STATUSES
            .iter()
            .filter(|(status, _)| documented(*status))
            .map(|(status, description)| MetaResponse {
                description,
                status: Some(*status),
                status_range: None,
                content: vec![MetaMediaType {
                    content_type: PROBLEM_JSON,
                    schema: <Problem as poem_openapi::types::Type>::schema_ref(),
                }],
                headers: vec![],
            })
            .collect(),
    }
}

impl ApiResponse for ApiError {
    fn meta() -> MetaResponses {
        problem_responses(|_| true)
    }

    fn register(registry: &mut Registry) {
        <Problem as poem_openapi::types::Type>::register(registry);
    }
}

/// An [`ApiError`] of a route whose spec lists other problem statuses than
/// [`ApiError`]'s: `D` says which ([`DocumentedProblems`]). The answer is
/// the `ApiError`'s own; only the documentation differs.
pub struct RouteError<D>(pub ApiError, PhantomData<fn() -> D>);

/// The problem responses a [`RouteError`]'s route documents.
pub trait DocumentedProblems {
    fn responses() -> MetaResponses;
}

impl<D: DocumentedProblems> ApiResponse for RouteError<D> {
    fn meta() -> MetaResponses {
        D::responses()
    }

    fn register(registry: &mut Registry) {
        ApiError::register(registry);
    }
}

impl<D> IntoResponse for RouteError<D> {
    fn into_response(self) -> Response {
        self.0.into_response()
    }
}

impl<D> From<RouteError<D>> for poem::Error {
    fn from(error: RouteError<D>) -> Self {
        error.0.into()
    }
}

impl<D, E: Into<ApiError>> From<E> for RouteError<D> {
    fn from(error: E) -> Self {
        Self(error.into(), PhantomData)
    }
}

/// The tutorials' `POST /event-stream` answers every bad request with its
/// own JSend 400: the spec lists only the problem statuses that route can
/// still answer (a refused token, body over the limit, a draining hub), so
/// it never shows two bodies for one status.
pub enum TutorialProblems {}

/// What [`TutorialProblems`] documents.
const SEED_ROUTE_STATUSES: &[u16] = &[401, 403, 408, 409, 413, 422, 429, 503, 504];

impl DocumentedProblems for TutorialProblems {
    fn responses() -> MetaResponses {
        problem_responses(|status| SEED_ROUTE_STATUSES.contains(&status))
    }
}

pub type TutorialRouteError = RouteError<TutorialProblems>;

/// The Mercure routes: every problem status, and the 404 they answer while
/// `mercure.enabled` is false (the routes stay in the spec either way, so
/// the spec must say so).
pub enum MercureProblems {}

/// The Mercure routes' 404.
const MERCURE_OFF: &str = "The Mercure protocol is off on this hub (`mercure.enabled = false`)";

impl DocumentedProblems for MercureProblems {
    fn responses() -> MetaResponses {
        let mut meta = problem_responses(|_| true);
        meta.responses.push(MetaResponse {
            description: MERCURE_OFF,
            status: Some(404),
            status_range: None,
            content: vec![MetaMediaType {
                content_type: PROBLEM_JSON,
                schema: <Problem as poem_openapi::types::Type>::schema_ref(),
            }],
            headers: vec![],
        });
        meta.responses.sort_by_key(|response| response.status);
        meta
    }
}

pub type MercureRouteError = RouteError<MercureProblems>;

impl From<InvalidTopicName> for ApiError {
    fn from(error: InvalidTopicName) -> Self {
        Self::bad_request("invalid-topic", error.to_string())
    }
}

impl From<InvalidEventType> for ApiError {
    fn from(error: InvalidEventType) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-event-type",
            error.to_string(),
        )
    }
}

impl From<AuthError> for ApiError {
    fn from(error: AuthError) -> Self {
        let detail = error.to_string();
        match error {
            AuthError::Missing { .. } => {
                Self::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
            }
            AuthError::Rejected { .. } => {
                Self::new(StatusCode::UNAUTHORIZED, "invalid-token", detail)
            }
            AuthError::Forbidden { .. } => Self::new(StatusCode::FORBIDDEN, "forbidden", detail),
            AuthError::RateLimited { retry_after, .. } => Self {
                retry_after: Some(retry_after),
                ..Self::new(StatusCode::TOO_MANY_REQUESTS, "rate-limited", detail)
            },
            // Not 429: waiting never makes this request fit.
            AuthError::OverBurst { .. } => Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "over-rate-limit-burst",
                detail,
            ),
        }
    }
}

impl From<SubscribeError> for ApiError {
    fn from(error: SubscribeError) -> Self {
        match error {
            SubscribeError::NoTopics => Self::bad_request("no-topic", error.to_string()),
            SubscribeError::TooManyTopics { .. } => {
                Self::bad_request("too-many-topics", error.to_string())
            }
        }
    }
}

/// Turns an error raised outside our handlers into a problem document.
pub fn problem_for_poem_error(error: poem::Error) -> Response {
    if error.is_from_response() {
        // Already an answer we built (an `ApiError`).
        return error.into_response();
    }
    let status = error.status();
    let message = error.to_string();
    let api_error = if error.is::<poem_openapi::error::ContentTypeError>() {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            format!("{message}; send `Content-Type: application/json`"),
        )
    } else if error.is::<poem_openapi::error::ParseRequestPayloadError>() {
        ApiError::bad_request("malformed-body", payload_message(&message))
    } else if error.is::<poem_openapi::error::ParseParamError>() {
        ApiError::bad_request("malformed-parameter", message)
    } else if error.is::<poem::error::NotFoundError>() {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not-found",
            "no such route; the API is described at /openapi.json and /docs",
        )
    } else if error.is::<poem::error::MethodNotAllowedError>() {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method-not-allowed",
            "this route does not take that method; see /openapi.json",
        )
    } else {
        ApiError::new(status, "http-error", message)
    };
    api_error.into_response()
}

/// poem-openapi's payload messages speak of its types (`Expected input
/// type "integer(retry-ms)", found -5. (occurred while parsing
/// "optional_integer(retry-ms)")`, `failed to parse "any": …`): said here
/// in plain words that name the field and the form it takes, with an
/// example ([`field_and_form`]).
fn payload_message(message: &str) -> String {
    let reason = message
        .strip_prefix("parse request payload error: ")
        .unwrap_or(message);
    format!(
        "the request body is not a valid request: {}",
        plain_words(reason)
    )
}

fn plain_words(reason: &str) -> String {
    // Where in the nesting it happened: the words below name the field.
    let mut reason = match reason.find(" (occurred while parsing \"") {
        Some(at) => &reason[..at],
        None => reason,
    };
    // `ParseError::custom`'s prefix, around messages that are already words.
    if let Some(rest) = reason.strip_prefix("failed to parse \"")
        && let Some((_, message)) = rest.split_once("\": ")
    {
        reason = message;
    }
    let reason = reason.trim_end_matches('.');
    if let Some(rest) = reason.strip_prefix("Expected input type \"")
        && let Some((type_name, found)) = rest.split_once("\", found ")
    {
        return match field_and_form(type_name) {
            Some((field, form)) => format!("{field} must be {form}; found {found}"),
            None => format!("a value has the wrong type; found {found}"),
        };
    }
    if let Some(rest) = reason.strip_prefix("Type \"")
        && let Some(type_name) = rest.strip_suffix("\" expects an input value")
    {
        return match field_and_form(type_name) {
            Some((field, form)) => format!("{field} is required: {form}"),
            None => "a required field is missing".to_owned(),
        };
    }
    reason.to_owned()
}
