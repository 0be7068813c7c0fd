//! Publish routes: one event to a topic, or a batch across topics.

use poem::Request;
use poem::web::Data;
use poem_openapi::param::{Header, Path};
use poem_openapi::payload::Json;
use std::borrow::Cow;

use poem_openapi::registry::{MetaSchema, MetaSchemaRef};
use poem_openapi::types::{Example, ParseError, ParseFromJSON, ParseResult, ToJSON, Type};
use poem_openapi::{ApiResponse, Object, OpenApi};
use serde_json::Value;

use super::ApiTags;
use super::credentials::PublisherCredential;
use super::error::ApiError;
use super::fields::{BatchEvents, EventTypeField, MAX_EVENT_RETRY_MS, RetryField, TopicField};
use super::idempotency::{self, IdempotencyKeyHeader, PublishRoute};
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
///
/// Its example (what Swagger UI's "Try it out" sends) is a realistic event
/// without `retry`: one sent unchanged must not change how subscribers
/// reconnect.
#[derive(Debug, Object)]
#[oai(deny_unknown_fields, example)]
pub struct PublishRequest {
    /// The payload. A JSON string is sent as its text; any other JSON value
    /// is sent as compact JSON. Line breaks become several `data:` lines.
    pub data: EventData,
    /// SSE event type (`event:` field); subscribers listen for it with
    /// `addEventListener(type)`. Default: `message`. `gap` and
    /// `token_expired` are the hub's own frames and refused (422).
    #[oai(skip_serializing_if_is_none)]
    pub event: Option<EventTypeField>,
    /// Usually left out. How long, in milliseconds (at most 60000, a
    /// minute), the browsers that receive this event wait before
    /// reconnecting once their stream drops: `EventSource` keeps the value
    /// until its next reconnect, when the hub's own hint
    /// (`stream.retry`, 3 s) applies again. For spreading reconnects
    /// around a planned maintenance.
    #[oai(skip_serializing_if_is_none)]
    pub retry: Option<RetryField>,
}

impl Example for PublishRequest {
    fn example() -> Self {
        Self {
            data: EventData(serde_json::json!({"status": "shipped"})),
            event: Some(EventTypeField("order".to_owned())),
            retry: None,
        }
    }
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
    #[oai(skip_serializing_if_is_none)]
    pub event: Option<EventTypeField>,
    /// See `PublishRequest.retry`.
    #[oai(skip_serializing_if_is_none)]
    pub retry: Option<RetryField>,
}

/// Several events, possibly to several topics, accepted all or none.
#[derive(Debug, Object)]
#[oai(deny_unknown_fields, example)]
pub struct BatchRequest {
    pub events: BatchEvents<BatchItem>,
}

impl Example for BatchRequest {
    fn example() -> Self {
        let item = |topic: &str, event: Option<&str>, data: Value| BatchItem {
            topic: TopicField(topic.to_owned()),
            data: EventData(data),
            event: event.map(|event| EventTypeField(event.to_owned())),
            retry: None,
        };
        Self {
            events: BatchEvents(vec![
                item(
                    "orders.42",
                    Some("order"),
                    serde_json::json!({"status": "shipped"}),
                ),
                item("news", None, Value::from("The shop opens at nine.")),
            ]),
        }
    }
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
    /// an event answered 2xx is never lost while history holds it. With an
    /// `Idempotency-Key`, a retry within `limits.idempotency_window` gets
    /// the first answer and publishes nothing.
    #[oai(path = "/v1/topics/:topic/events", method = "post")]
    // Each argument is one documented parameter or extractor of the
    // operation: poem-openapi builds the spec from the signature.
    #[allow(clippy::too_many_arguments)]
    async fn publish(
        &self,
        request: &Request,
        hub: Data<&Hub>,
        auth: Data<&Authenticator>,
        credential: PublisherCredential,
        /// Topic name: 1-128 of `A-Z a-z 0-9 . _ - : ~`.
        topic: Path<TopicField>,
        /// Makes a retry safe (IETF draft "The Idempotency-Key HTTP Header
        /// Field"): a retry with the same key within
        /// `limits.idempotency_window` gets the first answer (same status,
        /// same id) and publishes nothing; 409 while the first is in
        /// flight, 422 if the key was used for another request. A quoted
        /// string (`"4f1c…"`) or a bare printable ASCII value, at most 255
        /// bytes; keys are per publisher.
        #[oai(name = "Idempotency-Key")]
        _idempotency_key: Header<Option<IdempotencyKeyHeader>>,
        body: Json<PublishRequest>,
    ) -> Result<PublishResponse, ApiError> {
        // The header is read raw: see `idempotency::key_of`.
        let key = idempotency::key_of(request)?;
        let Json(body) = body;
        let draft = draft(&topic.0.0, body.data, body.event, body.retry)?;
        let publisher = auth
            .authorize_publish(
                credential.credential.as_ref(),
                credential.client,
                &[&draft.topic],
                1,
            )
            .await?;
        let topic = draft.topic.clone();
        let drafts = vec![draft];
        let once =
            idempotency::record(key.as_ref(), publisher.as_ref(), PublishRoute::One, &drafts);
        let receipt = publish_outcome::publish(&hub, drafts, once).await?;
        let id = idempotency::answered_ids(&receipt)[0];
        Ok(PublishResponse::Accepted(Json(Accepted {
            id: id.to_string(),
            topic: topic.to_string(),
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
    request: &Request,
    body: Json<BatchRequest>,
) -> Result<BatchResponse, ApiError> {
    let key = idempotency::key_of(request)?;
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
    let publisher = auth
        .authorize_publish(
            credential.credential.as_ref(),
            credential.client,
            &topics,
            drafts.len(),
        )
        .await?;
    let topics: Vec<TopicName> = drafts.iter().map(|draft| draft.topic.clone()).collect();
    let once = idempotency::record(
        key.as_ref(),
        publisher.as_ref(),
        PublishRoute::Batch,
        &drafts,
    );
    let receipt = publish_outcome::publish(&hub, drafts, once).await?;
    // Ids follow the drafts' order, which is the request's.
    Ok(BatchResponse::Accepted(Json(BatchAccepted {
        events: idempotency::answered_ids(&receipt)
            .into_iter()
            .zip(topics)
            .map(|(id, topic)| Accepted {
                id: id.to_string(),
                topic: topic.to_string(),
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
        mirror: false,
    })
}

/// A JSON string goes on the wire as its text; anything else as compact JSON.
fn data_text(data: Value) -> String {
    match data {
        Value::String(text) => text,
        other => other.to_string(),
    }
}
