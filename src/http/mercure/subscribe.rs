//! `GET /.well-known/mercure?topic=…`: a Mercure subscription, served by
//! the hub's own stream machinery (heartbeats, drain, limits, sheds) on the
//! internal topic, filtered per subscriber ([`MercureFilter`]); plus the
//! ssehub topics its exact selectors name ([`ssehub_topics`]), whose
//! events it gets as public updates. Ids are one hub-wide sequence, so one
//! cursor resumes them all. With `mercure.subscriptions`, an open stream's
//! subscriptions are announced and listed while it lives
//! ([`ActiveSubscriptions`]).

use futures_util::StreamExt;
use poem::Request;

use super::config::{MercureSettings, ProtocolVersion};
use super::filter::{MercureFilter, live_routes};
use super::hub_url;
use super::publish::bad;
use super::selector::Selector;
use super::subscriptions::ActiveSubscriptions;
use super::token;
use super::update::{MERCURE_TOPIC, is_reserved};
use crate::auth::{Action, Authenticator, RejectionReason};
use crate::http::ApiError;
use crate::http::credentials;
use crate::http::sse::{EventStreamBody, refuse_body};
use crate::hub::{Admission, Hub, ShedReason, SubscribeRequest};
use crate::model::{ResumePoint, TopicName};

/// How a selector of the query is to be read.
#[derive(Clone, Copy)]
enum Kind {
    /// Draft-07's `topic`: `*`, a URI template or an exact string.
    Topic,
    /// Draft-08's `match` / `match_exact`.
    Exact,
    /// Draft-08's `match_urlpattern`.
    UrlPattern,
}

/// What the query string says.
#[derive(Default)]
struct Query {
    topics: Vec<(Kind, String)>,
    last_event_id: Option<String>,
    authorization: Option<String>,
}

/// What draft-08 calls what draft-07 named `name`, when `name` is one of
/// draft-07's query names (refused with draft-08 only).
fn draft_08_name_for(name: &str) -> Option<&'static str> {
    match name {
        "topic" => Some(
            "`match` (an exact topic) or `match_urlpattern` (a URL pattern: `:id` where a URI \
             template had `{id}`)",
        ),
        "Last-Event-ID" | "lastEventID" => {
            Some("the `last_event_id` query parameter or the `Last-Event-ID` header")
        }
        _ => None,
    }
}

fn query(request: &Request, protocol: ProtocolVersion) -> Result<Query, ApiError> {
    let mut query = Query::default();
    let Some(text) = request.uri().query() else {
        return Ok(query);
    };
    for (name, value) in form_urlencoded::parse(text.as_bytes()) {
        if !protocol.accepts_draft_07() {
            if let Some(replacement) = draft_08_name_for(&name) {
                return Err(bad(format!(
                    "`{name}` is draft-07's, refused with \
                     mercure.protocol_version_compatibility = 8: use {replacement}"
                )));
            }
            if name == token::QUERY_PARAMETER {
                return Err(token::in_query());
            }
        }
        match &*name {
            "topic" => query.topics.push((Kind::Topic, value.into_owned())),
            "match" | "match_exact" => query.topics.push((Kind::Exact, value.into_owned())),
            "match_urlpattern" => query.topics.push((Kind::UrlPattern, value.into_owned())),
            // The spec reserves the whole `match` prefix: a matcher type
            // this hub doesn't know fails loudly rather than matching nothing.
            // `get`, not a slice: a name whose fifth byte is inside a
            // multi-byte character must not panic.
            name if name
                .get(..5)
                .is_some_and(|prefix| prefix.eq_ignore_ascii_case("match")) =>
            {
                return Err(bad(format!(
                    "`{name}` is not a matcher this hub knows: use `match` (or \
                     `match_exact`), `match_urlpattern`, or draft-07's `topic`"
                )));
            }
            // `Last-Event-ID` is draft-07's name (the Mercure hub 0.x's),
            // `lastEventID` a later draft's, `last_event_id` draft-08's.
            "Last-Event-ID" | "lastEventID" | "last_event_id" => {
                query.last_event_id = Some(value.into_owned());
            }
            name if name == token::QUERY_PARAMETER => {
                query.authorization = Some(value.into_owned());
            }
            _ => {}
        }
    }
    Ok(query)
}

/// A stream of the updates the request's selectors and token allow, and
/// the cursor it starts after when a resume was asked for.
pub async fn subscribe(
    request: &Request,
    hub: &Hub,
    auth: &Authenticator,
    settings: &MercureSettings,
) -> Result<(EventStreamBody, Option<String>), ApiError> {
    refuse_body(request)?;
    let protocol = settings.protocol;
    let query = query(request, protocol)?;
    if query.topics.is_empty() {
        return Err(bad(if protocol.accepts_draft_07() {
            "name at least one selector: `topic` (draft-07, e.g. ?topic=*), `match` or \
             `match_urlpattern` (draft-08)"
        } else {
            "name at least one selector: `match` (e.g. ?match=*) or `match_urlpattern`"
        }));
    }
    let limit = hub.settings().max_topics_per_subscription;
    if query.topics.len() > limit {
        return Err(bad(format!(
            "{} topic selectors, over the limit of {limit} per subscription \
             (limits.max_topics_per_subscription)",
            query.topics.len()
        )));
    }
    let base = hub_url(request);
    let selectors = query
        .topics
        .iter()
        .map(|(kind, text)| match kind {
            Kind::Topic => Selector::parse(text),
            Kind::Exact => Selector::exact(text),
            Kind::UrlPattern => Selector::url_pattern(text, &base),
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| bad(format!("selector: {error}")))?;
    let (private_selectors, expires_at, payload) =
        match token::presented(request, query.authorization.as_deref(), protocol) {
            Some(presented) => {
                let Some(key) = &settings.subscriber else {
                    return Err(ApiError::new(
                        poem::http::StatusCode::UNAUTHORIZED,
                        "invalid-token",
                        "this hub takes no subscriber tokens (mercure.subscriber_jwt.key is \
                         not set): subscribe without one",
                    ));
                };
                let grants = token::verify(&presented, key, &base, protocol)
                    .await
                    .map_err(|refused| refused.counted(auth, Action::Subscribe))?;
                (grants.subscribe, grants.expires_at, grants.payload)
            }
            None if settings.anonymous => (Vec::new(), None, None),
            None => {
                auth.count_rejection(Action::Subscribe, RejectionReason::MissingToken);
                return Err(token::missing("subscribing", request, protocol));
            }
        };
    // The subscribe rate limit before any history is read for a resume.
    let client = credentials::client_address(request, auth);
    if auth.admit_subscriber(client).is_err() {
        let shed = Admission::Shed(hub.shed(ShedReason::RateLimited));
        return Ok((EventStreamBody::from_frames(shed.into_frames()), None));
    }
    let last_event_id = request
        .headers()
        .get("last-event-id")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
        .or(query.last_event_id)
        .filter(|id| !id.trim().is_empty());
    let resume = match &last_event_id {
        None => None,
        Some(id) => match settings.resume_lookups.resolve(hub, id.trim()).await {
            Ok(resume) => Some(resume),
            // History, where the id is, can't be read now: the client comes
            // back after the hint and resumes exactly then.
            Err(_) => {
                let shed = Admission::Shed(hub.shed(ShedReason::HistoryUnavailable));
                return Ok((EventStreamBody::from_frames(shed.into_frames()), None));
            }
        },
    };
    let mut topics = ssehub_topics(&selectors, &private_selectors, auth);
    topics.push(TopicName::parse(MERCURE_TOPIC).expect("a valid topic name"));
    if topics.len() > limit {
        return Err(bad(format!(
            "{} exact selectors name ssehub topics: with the Mercure updates' own, that is \
             over the limit of {limit} topics per subscription \
             (limits.max_topics_per_subscription)",
            topics.len() - 1
        )));
    }
    let live_routes = live_routes(&selectors);
    let admission = hub.subscribe(SubscribeRequest {
        topics,
        resume: resume
            .as_ref()
            .map_or(ResumePoint::Live, |(point, _)| *point),
        expires_at,
        live_routes,
        filter: Some(Box::new(MercureFilter {
            selectors,
            private_selectors,
        })),
    })?;
    let cursor = resume.map(|(_, cursor)| cursor);
    if !(settings.subscriptions && matches!(admission, Admission::Open(_))) {
        return Ok((
            EventStreamBody::from_frames(admission.into_frames()),
            cursor,
        ));
    }
    let texts: Vec<&str> = query.topics.iter().map(|(_, text)| text.as_str()).collect();
    let active = ActiveSubscriptions::open(hub, &texts, payload).await;
    // The subscriptions end with the stream: the body owns them.
    let frames = admission.into_frames().map(move |frame| {
        let _owned = &active;
        frame
    });
    Ok((EventStreamBody::from_frames(frames), cursor))
}

/// The ssehub topics a subscription follows besides the Mercure updates':
/// those its exact selectors name (`chat`, `urn:orders:42`: whatever
/// [`TopicName`] accepts; not the internal topic), each only if this
/// subscriber may read it as ssehub would let it, without credentials
/// (subscribing open, or `auth.public_topics`), or as Mercure would let it
/// read a private update there (its token's `mercure.subscribe` covers
/// it). Templates and URL patterns follow no ssehub topic: ssehub can't
/// list the names they match.
fn ssehub_topics(
    selectors: &[Selector],
    private_selectors: &[Selector],
    auth: &Authenticator,
) -> Vec<TopicName> {
    let mut topics: Vec<TopicName> = Vec::new();
    for selector in selectors {
        let Selector::Exact(text) = selector else {
            continue;
        };
        let Ok(topic) = TopicName::parse(text) else {
            continue;
        };
        let readable = auth.may_read_without_credentials(&topic)
            || private_selectors
                .iter()
                .any(|selector| selector.matches(text));
        if readable && !is_reserved(text) && !topics.contains(&topic) {
            topics.push(topic);
        }
    }
    topics
}
