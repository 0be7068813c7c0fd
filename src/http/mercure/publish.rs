//! `POST /.well-known/mercure`: a form publish. Fields: `topic` (repeated:
//! the first canonical, the rest alternates), `data`, `id`, `type`,
//! `retry`, `private`; others are ignored. Answers `200 text/plain` with
//! the update's id. An `Idempotency-Key` makes a retry safe, as on
//! ssehub's own publish routes: a retry gets the first answer (the same
//! id) and publishes nothing.

use poem::Request;
use poem::http::StatusCode;

use super::config::MercureSettings;
use super::mirror;
use super::namespace::is_reserved_topic;
use super::selector::{check_characters, check_text};
use super::token;
use super::update::{Envelope, GENERATED_ID_PREFIX, MERCURE_TOPIC, generated_id};
use crate::auth::{Action, Authenticator, RejectionReason};
use crate::http::ApiError;
use crate::http::credentials;
use crate::http::idempotency::{self, PublishRoute};
use crate::http::publish::MaxEventsPerRequest;
use crate::http::publish_outcome;
use crate::hub::{Hub, Receipt};
use crate::model::{EventDraft, TopicName};

/// The problem type of a Mercure request the spec says to refuse with 400.
pub const BAD_MERCURE_REQUEST: &str = "bad-mercure-request";

pub fn bad(detail: impl Into<String>) -> ApiError {
    ApiError::bad_request(BAD_MERCURE_REQUEST, detail)
}

/// Publishes the update `body` (the form, already read in full by the
/// body limit) describes; returns its id.
pub async fn publish(
    request: &Request,
    hub: &Hub,
    auth: &Authenticator,
    settings: &MercureSettings,
    max_events: MaxEventsPerRequest,
    body: &[u8],
) -> Result<String, ApiError> {
    // The per-address rate limit first, as on ssehub's routes, so floods of
    // bad tokens are limited too.
    auth.admit_publisher(credentials::client_address(request, auth), 1)?;
    // The header is read raw: see `idempotency::key_of`.
    let key = idempotency::key_of(request)?;
    let protocol = settings.protocol;
    let Some(presented) = token::presented(request, None, protocol) else {
        auth.count_rejection(Action::Publish, RejectionReason::MissingToken);
        return Err(token::missing("publishing", request, protocol));
    };
    let hub_url = super::hub_url(request);
    let grants = token::verify(&presented, &settings.publisher, &hub_url, protocol)
        .await
        .map_err(|refused| refused.counted(auth, Action::Publish))?;
    let envelope = envelope(body, &hub_url)?;
    too_many_topics(envelope.topics.len(), max_events)?;
    let Some(allowed) = grants.publish else {
        auth.count_rejection(Action::Publish, RejectionReason::ForbiddenTopic);
        return Err(forbidden("the token has no `mercure.publish` claim"));
    };
    if let Some(topic) = envelope
        .topics
        .iter()
        .find(|topic| !allowed.iter().any(|selector| selector.matches(topic)))
    {
        auth.count_rejection(Action::Publish, RejectionReason::ForbiddenTopic);
        return Err(forbidden(format!(
            "the token's `mercure.publish` selectors don't cover topic {topic:?}"
        )));
    }
    // The per-publisher rate limit once the publisher is known, as on
    // ssehub's routes; one update is one request's worth.
    auth.admit_named_publisher(&grants.holder, 1)?;
    let publisher_id = envelope.id.clone();
    let draft = EventDraft {
        topic: TopicName::parse(MERCURE_TOPIC).expect("a valid topic name"),
        event_type: None,
        retry: None,
        data: serde_json::to_string(&envelope).expect("an envelope serializes"),
        trace: None,
        mirror: false,
    };
    // The update first: its id is the publish's first (a replay names it).
    let mut drafts = vec![draft];
    drafts.extend(mirror::mirrors(&envelope)?);
    // Keys are the token holder's: the envelope (the publisher's id
    // included) is the fingerprint, so a replay answers the same id.
    let once = idempotency::record_in(key.as_ref(), &grants.holder, PublishRoute::Mercure, &drafts);
    let first_id = match publish_outcome::publish(hub, drafts, once).await? {
        Receipt::Published(accepted) => accepted[0].id,
        Receipt::Replayed(recorded) => recorded.first,
    };
    Ok(publisher_id.unwrap_or_else(|| generated_id(first_id)))
}

/// The spec's 413 for more `topic` fields than the hub takes: each may
/// become an ssehub event, so the cap is `limits.max_events_per_request`
/// (which bounds the work of one publish, the time one Redis script holds
/// Redis included).
fn too_many_topics(count: usize, max_events: MaxEventsPerRequest) -> Result<(), ApiError> {
    if count <= max_events.0 {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too-many-topics",
        format!(
            "the update names {count} topics; limits.max_events_per_request allows {} \
             per update (nothing was published)",
            max_events.0
        ),
    ))
}

fn forbidden(detail: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "forbidden", detail)
}

/// The update a form describes, checked as the spec says; `hub_url` is
/// what topics resolve against for the reserved-namespace rule.
fn envelope(body: &[u8], hub_url: &url::Url) -> Result<Envelope, ApiError> {
    let mut envelope = Envelope {
        topics: Vec::new(),
        id: None,
        event_type: None,
        retry: None,
        private: false,
        data: String::new(),
    };
    for (name, value) in form_urlencoded::parse(body) {
        match &*name {
            "topic" => {
                check_text(&value).map_err(|error| bad(format!("topic: {error}")))?;
                if value == "*" {
                    return Err(bad(
                        "topic: `*` is the selector of every topic, not a topic",
                    ));
                }
                if is_reserved_topic(&value, hub_url) {
                    return Err(bad(format!(
                        "topic: {value:?} is in the hub's reserved namespace ({}/…, \
                         for the hub's own updates such as subscription events)",
                        hub_url.path()
                    )));
                }
                envelope.topics.push(value.into_owned());
            }
            "data" => envelope.data = value.into_owned(),
            "id" if !value.is_empty() => envelope.id = Some(checked_id(&value)?),
            "type" if !value.is_empty() => {
                check_characters(&value).map_err(|error| bad(format!("type: {error}")))?;
                if value == "mercure" {
                    return Err(bad(
                        "type: `mercure` is reserved for the events the hub makes itself",
                    ));
                }
                envelope.event_type = Some(value.into_owned());
            }
            "retry" if !value.is_empty() => {
                let retry = value
                    .bytes()
                    .all(|byte| byte.is_ascii_digit())
                    .then(|| value.parse::<u64>().ok())
                    .flatten()
                    .ok_or_else(|| {
                        bad(format!(
                            "retry: {value:?} is not a number of milliseconds (ASCII digits only)"
                        ))
                    })?;
                envelope.retry = Some(retry);
            }
            // The field's presence marks the update private, whatever its value.
            "private" => envelope.private = true,
            // The spec: unknown fields are ignored, for future extensions.
            _ => {}
        }
    }
    if envelope.topics.is_empty() {
        return Err(bad("name at least one `topic`"));
    }
    Ok(envelope)
}

/// A publisher's id: no control or format characters, not `#…` (the spec's
/// fragments, hub-made), not `earliest` (the resume keyword), and not one
/// that looks like the ids this hub makes.
fn checked_id(id: &str) -> Result<String, ApiError> {
    check_text(id).map_err(|error| bad(format!("id: {error}")))?;
    if id.starts_with('#') || id == "earliest" || id.starts_with(GENERATED_ID_PREFIX) {
        return Err(bad(format!(
            "id: {id:?} is reserved (`#…`, `earliest` and `{GENERATED_ID_PREFIX}…` are the hub's)"
        )));
    }
    Ok(id.to_owned())
}
