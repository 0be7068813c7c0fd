//! Publish routes: one event to a topic, or a batch across topics.

use poem::web::Data;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use std::borrow::Cow;

use poem_openapi::registry::{MetaSchema, MetaSchemaRef};
use poem_openapi::types::{ParseError, ParseFromJSON, ParseResult, ToJSON, Type};
use poem_openapi::{ApiResponse, Object, OpenApi};
use serde_json::Value;

use super::ApiTags;
use super::credentials::PublisherCredential;
use super::error::ApiError;
use super::fields::{BatchEvents, EventTypeField, MAX_EVENT_RETRY_MS, RetryField, TopicField};
use super::publish_outcome;
use crate::auth::Authenticator;
use crate::hub::Hub;
use crate::model::{EventDraft, EventType, TopicName};

/// An event's `data`: any JSON value, but present. (poem-openapi reads a
/// missing `serde_json::Value` as `null`; a publisher that forgot the field
/// should hear about it instead.)
#[derive(Debug, Clone)]
pub struct EventData(pub Value);

impl Type for EventData {
    const IS_REQUIRED: bool = true;
    type RawValueType = Value;
    type RawElementValueType = Value;

    fn name() -> Cow<'static, str> {
        "any".into()
    }

    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Inline(Box::new(MetaSchema::ANY))
    }

    fn as_raw_value(&self) -> Option<&Value> {
        Some(&self.0)
    }

    fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a Value> + 'a> {
        Box::new(std::iter::once(&self.0))
    }
}

impl ParseFromJSON for EventData {
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        value
            .map(Self)
            .ok_or_else(|| ParseError::custom("`data` is required (use null for no payload)"))
    }
}

impl ToJSON for EventData {
    fn to_json(&self) -> Option<Value> {
        Some(self.0.clone())
    }
}

/// One event to publish to the topic named in the path.
#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct PublishRequest {
    /// The payload. A JSON string is sent as its text; any other JSON value
    /// is sent as compact JSON. Line breaks become several `data:` lines.
    pub data: EventData,
    /// SSE event type (`event:` field); subscribers listen for it with
    /// `addEventListener(type)`. Default: `message`. `gap` and
    /// `token_expired` are the hub's own frames and refused (422).
    pub event: Option<EventTypeField>,
    /// Reconnection delay, in milliseconds, to set on receiving clients
    /// (until their next reconnect): at most 60000, a minute.
    pub retry: Option<RetryField>,
}

/// One event of a batch.
#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct BatchItem {
    /// Topic to publish to.
    pub topic: TopicField,
    /// See `PublishRequest.data`.
    pub data: EventData,
    /// See `PublishRequest.event`.
    pub event: Option<EventTypeField>,
    /// See `PublishRequest.retry`.
    pub retry: Option<RetryField>,
}

/// Several events, possibly to several topics, accepted all or none.
#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct BatchRequest {
    pub events: BatchEvents<BatchItem>,
}

/// Where an accepted event went.
#[derive(Debug, Object)]
pub struct Accepted {
    /// The event's id: subscribers see it as `id:` and resume after it.
    pub id: String,
    pub topic: String,
}

#[derive(Debug, Object)]
pub struct BatchAccepted {
    /// In the order of the request.
    pub events: Vec<Accepted>,
}

#[derive(ApiResponse)]
pub enum PublishResponse {
    /// Accepted: the event has its id and is on its way to subscribers.
    #[oai(status = 202)]
    Accepted(Json<Accepted>),
}

#[derive(ApiResponse)]
pub enum BatchResponse {
    /// Every event accepted, in order.
    #[oai(status = 202)]
    Accepted(Json<BatchAccepted>),
}

pub struct PublishApi;

#[OpenApi(tag = "ApiTags::Publish")]
impl PublishApi {
    /// Publish one event
    ///
    /// Answers 202 once the event has an id and is in the topic's history;
    /// an event answered 2xx is never lost while history holds it.
    #[oai(path = "/v1/topics/:topic/events", method = "post")]
    async fn publish(
        &self,
        hub: Data<&Hub>,
        auth: Data<&Authenticator>,
        credential: PublisherCredential,
        /// Topic name: 1-128 of `A-Z a-z 0-9 . _ - : ~`.
        topic: Path<TopicField>,
        body: Json<PublishRequest>,
    ) -> Result<PublishResponse, ApiError> {
        let Json(body) = body;
        let draft = draft(&topic.0.0, body.data, body.event, body.retry)?;
        auth.authorize_publish(
            credential.credential.as_ref(),
            credential.client,
            &[&draft.topic],
            1,
        )
        .await?;
        let accepted = publish_outcome::publish(&hub, vec![draft]).await?;
        let event = &accepted[0];
        Ok(PublishResponse::Accepted(Json(Accepted {
            id: event.id.to_string(),
            topic: event.topic.to_string(),
        })))
    }
}

/// `limits.max_events_per_request`: the most events one request may carry.
/// With Redis a batch is one script that holds Redis, for every replica,
/// while it runs; this bounds that time (see `MAX_EVENTS_PER_REQUEST_DEFAULT`).
#[derive(Debug, Clone, Copy)]
pub struct MaxEventsPerRequest(pub usize);

impl MaxEventsPerRequest {
    /// Refuses a request of `count` events over the cap, before anything
    /// else is spent on it (rate-limit budget, drafts, Redis).
    pub fn check(self, count: usize) -> Result<(), ApiError> {
        if count <= self.0 {
            return Ok(());
        }
        // 422, not 413: the body may be small, it is the `events` list that
        // is over its documented `maxItems` (a validation error to clients
        // that read the spec).
        Err(ApiError::new(
            poem::http::StatusCode::UNPROCESSABLE_ENTITY,
            "too-many-events",
            format!(
                "the request carries {count} events; limits.max_events_per_request allows {} \
                 per request: split it into several requests (nothing of this one was published)",
                self.0
            ),
        ))
    }
}

/// Publishes a batch (`POST /v1/events`, declared in `sse::EventsApi`).
///
/// All events are accepted or none is; a bad item rejects the batch and
/// the error names its index (`events[3]`).
pub(super) async fn publish_batch(
    hub: Data<&Hub>,
    auth: Data<&Authenticator>,
    max_events: Data<&MaxEventsPerRequest>,
    credential: PublisherCredential,
    body: Json<BatchRequest>,
) -> Result<BatchResponse, ApiError> {
    let Json(BatchRequest {
        events: BatchEvents(events),
    }) = body;
    max_events.check(events.len())?;
    let drafts = events
        .into_iter()
        .enumerate()
        .map(|(index, item)| {
            draft(&item.topic.0, item.data, item.event, item.retry)
                .map_err(|error| error.at(&format!("events[{index}]")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let topics: Vec<&TopicName> = drafts.iter().map(|draft| &draft.topic).collect();
    auth.authorize_publish(
        credential.credential.as_ref(),
        credential.client,
        &topics,
        drafts.len(),
    )
    .await?;
    let accepted = publish_outcome::publish(&hub, drafts).await?;
    Ok(BatchResponse::Accepted(Json(BatchAccepted {
        events: accepted
            .iter()
            .map(|event| Accepted {
                id: event.id.to_string(),
                topic: event.topic.to_string(),
            })
            .collect(),
    })))
}

/// Turns request fields into a validated draft.
pub fn draft(
    topic: &str,
    data: EventData,
    event: Option<EventTypeField>,
    retry: Option<RetryField>,
) -> Result<EventDraft, ApiError> {
    let topic = TopicName::parse(topic)?;
    super::mercure::refuse_reserved(&topic)?;
    let event_type = event
        .as_ref()
        .map(|event| EventType::parse(&event.0))
        .transpose()?;
    let retry = match retry.map(|retry| retry.0) {
        Some(ms) if ms > MAX_EVENT_RETRY_MS => {
            return Err(ApiError::new(
                poem::http::StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-retry",
                format!(
                    "`retry` is in milliseconds and at most {MAX_EVENT_RETRY_MS} (a minute): \
                     longer would keep subscribers from reconnecting that long"
                ),
            ));
        }
        other => other.map(std::time::Duration::from_millis),
    };
    Ok(EventDraft {
        topic,
        event_type,
        retry,
        data: data_text(data.0),
        trace: None,
    })
}

/// A JSON string goes on the wire as its text; anything else as compact JSON.
fn data_text(data: Value) -> String {
    match data {
        Value::String(text) => text,
        other => other.to_string(),
    }
}
