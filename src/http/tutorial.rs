//! The `/event-stream` routes of the tutorials ssehub grew from, with their
//! contract kept as their readers expect it: `{"message": "..."}` as JSON or
//! form, required, at most 100 characters → `201 {"status":"success",
//! "data":"<message>"}`, a bad request → `400 {"status":"fail","data":
//! "request validation error: ..."}`; GET streams `event: message` frames.

use poem::Request;
use poem::web::Data;
use poem_openapi::param::{Header, Query};
use poem_openapi::payload::{Form, Json};
use poem_openapi::registry::{MetaSchema, MetaSchemaRef};
use poem_openapi::types::{ParseError, ParseFromJSON, ParseResult, ToJSON, Type};
use poem_openapi::{ApiRequest, ApiResponse, Object, OpenApi};
use serde::Deserialize;
use std::borrow::Cow;

use super::ApiTags;
use super::credentials::{PublisherCredential, SubscriberCredential};
use super::error::{ApiError, TutorialRouteError};
use super::idempotency::{self, IdempotencyKeyHeader, PublishRoute};
use super::publish_outcome;
use super::sse::{StreamResponse, open_authorized_stream, resume_from};
use crate::auth::Authenticator;
use crate::hub::{Hub, SubscribeRequest};
use crate::model::{EventDraft, EventType, TopicName};

/// The seeds' limit: `binding:"required,max=100"` (characters, not bytes).
const MESSAGE_MAX_CHARS: usize = 100;

/// Name of the event type the seeds send (`c.SSEvent("message", msg)`).
const SEED_EVENT_TYPE: &str = "message";

/// Which topic the seed routes use (`event_stream.topic`).
#[derive(Clone)]
pub struct TutorialTopic(pub TopicName);

#[derive(Debug, Object, Deserialize)]
pub struct SeedMessage {
    /// The message to broadcast, 1-100 characters.
    pub message: SeedText,
}

/// The `message` field: a required string of 1-100 characters, with errors
/// that name the field (poem-openapi's own say only "expected string").
#[derive(Debug, Clone, Deserialize)]
#[serde(transparent)]
pub struct SeedText(String);

impl SeedText {
    fn check(text: String) -> Result<Self, String> {
        let length = text.chars().count();
        if length == 0 {
            Err("field `message` is required".to_owned())
        } else if length > MESSAGE_MAX_CHARS {
            Err(format!(
                "field `message` must be at most {MESSAGE_MAX_CHARS} characters, got {length}"
            ))
        } else {
            Ok(Self(text))
        }
    }
}

impl Type for SeedText {
    const IS_REQUIRED: bool = true;
    type RawValueType = String;
    type RawElementValueType = String;

    fn name() -> Cow<'static, str> {
        "string".into()
    }

    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Inline(Box::new(MetaSchema {
            min_length: Some(1),
            max_length: Some(MESSAGE_MAX_CHARS),
            ..MetaSchema::new("string")
        }))
    }

    fn as_raw_value(&self) -> Option<&String> {
        Some(&self.0)
    }

    fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a String> + 'a> {
        Box::new(std::iter::once(&self.0))
    }
}

impl ParseFromJSON for SeedText {
    fn parse_from_json(value: Option<serde_json::Value>) -> ParseResult<Self> {
        match value {
            None | Some(serde_json::Value::Null) => {
                Err(ParseError::custom("field `message` is required"))
            }
            Some(serde_json::Value::String(text)) => Self::check(text).map_err(ParseError::custom),
            Some(_) => Err(ParseError::custom("field `message` must be a string")),
        }
    }
}

impl ToJSON for SeedText {
    fn to_json(&self) -> Option<serde_json::Value> {
        Some(serde_json::Value::String(self.0.clone()))
    }
}

#[derive(ApiRequest)]
pub enum SeedMessageBody {
    Json(Json<SeedMessage>),
    Form(Form<SeedMessage>),
}

/// A JSend envelope, as the seeds answer.
#[derive(Debug, Object)]
pub struct JSend {
    /// `success` or `fail`.
    pub status: String,
    /// The message on success; what was wrong on failure.
    pub data: String,
}

#[derive(ApiResponse)]
#[oai(bad_request_handler = "tutorial_bad_request")]
pub enum TutorialPostResponse {
    /// The message was sent to the stream.
    #[oai(status = 201)]
    Created(Json<JSend>),
    /// The request was not a valid message.
    #[oai(status = 400)]
    BadRequest(Json<JSend>),
}

fn fail(reason: impl std::fmt::Display) -> TutorialPostResponse {
    TutorialPostResponse::BadRequest(Json(JSend {
        status: "fail".to_owned(),
        data: format!("request validation error: {reason}"),
    }))
}

/// Any body poem-openapi can't parse (missing field, bad JSON, wrong
/// content type, too long) becomes the seeds' 400 JSend answer.
fn tutorial_bad_request(error: poem::Error) -> TutorialPostResponse {
    let message = error.to_string();
    let reason = message
        .strip_prefix("parse request payload error: ")
        .unwrap_or(&message);
    // poem-openapi appends where it was parsing; the field name says enough.
    let reason = reason
        .split(" (occurred while parsing")
        .next()
        .unwrap_or(reason);
    let reason = if reason.contains("missing field `message`") {
        "field `message` is required"
    } else {
        reason
    };
    fail(reason)
}

pub struct TutorialApi;

#[OpenApi(tag = "ApiTags::Tutorial")]
impl TutorialApi {
    /// Send a message (tutorial contract)
    ///
    /// With an `Idempotency-Key`, a retry within `limits.idempotency_window`
    /// gets the first answer and publishes nothing.
    #[oai(path = "/event-stream", method = "post")]
    // Each argument is one documented parameter or extractor of the
    // operation: poem-openapi builds the spec from the signature.
    #[allow(clippy::too_many_arguments)]
    async fn post_message(
        &self,
        request: &Request,
        hub: Data<&Hub>,
        auth: Data<&Authenticator>,
        credential: PublisherCredential,
        topic: Data<&TutorialTopic>,
        /// Makes a retry safe (IETF draft "The Idempotency-Key HTTP Header
        /// Field"): a retry with the same key within
        /// `limits.idempotency_window` gets the first answer and publishes
        /// nothing; 409 while the first is in flight, 422 if the key was
        /// used for another message. A quoted string (`"4f1c…"`) or a bare
        /// printable ASCII value, at most 255 bytes; keys are per publisher.
        #[oai(name = "Idempotency-Key")]
        _idempotency_key: Header<Option<IdempotencyKeyHeader>>,
        body: SeedMessageBody,
    ) -> Result<TutorialPostResponse, TutorialRouteError> {
        // The header is read raw: see `idempotency::key_of`.
        let key = match idempotency::key_of(request) {
            Ok(key) => key,
            // This route's contract: every bad request is its JSend 400.
            Err(invalid) => return Ok(fail(invalid)),
        };
        let publisher = auth
            .authorize_publish(
                credential.credential.as_ref(),
                credential.client,
                &[&topic.0.0],
                1,
            )
            .await?;
        let message = match body {
            SeedMessageBody::Json(Json(body)) => body.message.0,
            // Form bodies go through serde, not poem-openapi's parser: check
            // them the same way here.
            SeedMessageBody::Form(Form(body)) => match SeedText::check(body.message.0) {
                Ok(text) => text.0,
                Err(reason) => return Ok(fail(reason)),
            },
        };
        let draft = EventDraft {
            topic: topic.0.0.clone(),
            event_type: Some(EventType::parse(SEED_EVENT_TYPE).expect("valid constant")),
            retry: None,
            data: message.clone(),
            trace: None,
            mirror: false,
        };
        let drafts = vec![draft];
        let once = idempotency::record(
            key.as_ref(),
            publisher.as_ref(),
            PublishRoute::Tutorial,
            &drafts,
        );
        publish_outcome::publish(&hub, drafts, once).await?;
        Ok(TutorialPostResponse::Created(Json(JSend {
            status: "success".to_owned(),
            data: message,
        })))
    }

    /// Stream messages (tutorial contract, SSE)
    ///
    /// **Swagger UI can't show this stream**: "Execute" waits for the
    /// response to end, and an event stream stays open for live events, so
    /// it spins until you cancel it. Run `curl -N
    /// http://127.0.0.1:8080/event-stream`, or `new
    /// EventSource('/event-stream')` in a page.
    ///
    /// Streams `event: message` frames of the default topic
    /// (`event_stream.topic`). Resumable like `/v1/events`.
    #[oai(path = "/event-stream", method = "get")]
    // Each argument is one documented parameter or extractor of the
    // operation: poem-openapi builds the spec from the signature.
    #[allow(clippy::too_many_arguments)]
    async fn stream_messages(
        &self,
        request: &Request,
        hub: Data<&Hub>,
        auth: Data<&Authenticator>,
        credential: SubscriberCredential,
        topic: Data<&TutorialTopic>,
        /// Resume after this event id (for clients that can't set headers).
        #[oai(name = "lastEventId")]
        last_event_id_query: Query<Option<String>>,
        /// Resume after this event id.
        #[oai(name = "Last-Event-ID")]
        _last_event_id_header: Header<Option<String>>,
    ) -> Result<StreamResponse, ApiError> {
        // The header is read raw: see `resume_from`.
        let resume = resume_from(request, last_event_id_query.0);
        open_authorized_stream(
            request,
            &hub,
            &auth,
            credential,
            SubscribeRequest {
                topics: vec![topic.0.0.clone()],
                resume,
                expires_at: None,
                filter: None,
                live_routes: None,
            },
        )
        .await
    }
}
