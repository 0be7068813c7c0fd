//! The `/event-stream` routes of the tutorials ssehub grew from, with their
//! contract kept as their readers expect it: `{"message": "..."}` as JSON or
//! form, required, at most 100 characters → `201 {"status":"success",
//! "data":"<message>"}`, a bad request → `400 {"status":"fail","data":
//! "request validation error: ..."}`; GET streams `event: message` frames.

use poem::Request;
use poem::web::Data;
use poem_openapi::param::{Header, Query};
use poem_openapi::payload::{Form, Json};
use poem_openapi::{ApiRequest, ApiResponse, Object, OpenApi};
use serde::Deserialize;

use super::ApiTags;
use super::auth::PublishKeys;
use super::error::ApiError;
use super::sse::{StreamResponse, open_stream, resume_point};
use crate::hub::{EventDraft, EventType, Hub, SubscribeRequest, TopicName};

/// The seeds' limit: `binding:"required,max=100"` (characters, not bytes).
const MESSAGE_MAX_CHARS: usize = 100;

/// Name of the event type the seeds send (`c.SSEvent("message", msg)`).
const SEED_EVENT_TYPE: &str = "message";

/// Which topic the seed routes use (`event_stream.topic`).
#[derive(Clone)]
pub struct SeedTopic(pub TopicName);

#[derive(Debug, Object, Deserialize)]
pub struct SeedMessage {
    /// The message to broadcast, 1-100 characters.
    #[oai(validator(min_length = 1, max_length = 100))]
    pub message: String,
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
#[oai(bad_request_handler = "seed_bad_request")]
pub enum SeedPostResponse {
    /// The message was sent to the stream.
    #[oai(status = 201)]
    Created(Json<JSend>),
    /// The request was not a valid message.
    #[oai(status = 400)]
    BadRequest(Json<JSend>),
}

fn fail(reason: impl std::fmt::Display) -> SeedPostResponse {
    SeedPostResponse::BadRequest(Json(JSend {
        status: "fail".to_owned(),
        data: format!("request validation error: {reason}"),
    }))
}

/// Any body poem-openapi can't parse (missing field, bad JSON, wrong
/// content type, too long) becomes the seeds' 400 JSend answer.
fn seed_bad_request(error: poem::Error) -> SeedPostResponse {
    let message = error.to_string();
    let reason = message
        .strip_prefix("parse request payload error: ")
        .unwrap_or(&message);
    fail(reason)
}

pub struct SeedApi;

#[OpenApi(tag = "ApiTags::Seed")]
impl SeedApi {
    /// Send a message (tutorial contract)
    #[oai(path = "/event-stream", method = "post")]
    async fn post_message(
        &self,
        request: &Request,
        hub: Data<&Hub>,
        keys: Data<&PublishKeys>,
        topic: Data<&SeedTopic>,
        body: SeedMessageBody,
    ) -> Result<SeedPostResponse, ApiError> {
        keys.authorize(request)?;
        let message = match body {
            SeedMessageBody::Json(Json(body)) | SeedMessageBody::Form(Form(body)) => body.message,
        };
        // Form bodies skip poem-openapi's validators; check both the same way.
        let length = message.chars().count();
        if length == 0 {
            return Ok(fail("field `message` is required"));
        }
        if length > MESSAGE_MAX_CHARS {
            return Ok(fail(format!(
                "field `message` must be at most {MESSAGE_MAX_CHARS} characters, got {length}"
            )));
        }
        let draft = EventDraft {
            topic: topic.0.0.clone(),
            event_type: Some(EventType::parse(SEED_EVENT_TYPE).expect("valid constant")),
            retry: None,
            data: message.clone(),
        };
        hub.publish(vec![draft]).await?;
        Ok(SeedPostResponse::Created(Json(JSend {
            status: "success".to_owned(),
            data: message,
        })))
    }

    /// Stream messages (tutorial contract, SSE)
    ///
    /// Streams `event: message` frames of the default topic
    /// (`event_stream.topic`). Resumable like `/v1/events`.
    #[oai(path = "/event-stream", method = "get")]
    async fn stream_messages(
        &self,
        hub: Data<&Hub>,
        topic: Data<&SeedTopic>,
        /// Resume after this event id (for clients that can't set headers).
        #[oai(name = "lastEventId")]
        last_event_id_query: Query<Option<String>>,
        /// Resume after this event id.
        #[oai(name = "Last-Event-ID")]
        last_event_id_header: Header<Option<String>>,
    ) -> Result<StreamResponse, ApiError> {
        let resume = resume_point(last_event_id_header.0.or(last_event_id_query.0));
        open_stream(
            &hub,
            SubscribeRequest {
                topics: vec![topic.0.0.clone()],
                resume,
            },
        )
    }
}
