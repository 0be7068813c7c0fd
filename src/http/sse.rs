//! The subscribe route and the `text/event-stream` response it returns.
//!
//! Frames come from the hub already encoded; this layer only sets headers
//! and hands the byte stream to the server. poem's own `SSE` type is not
//! used: it re-encodes every event per subscriber into a new `String`.

use bytes::Bytes;
use futures_util::StreamExt;
use poem::http::header;
use poem::web::Data;
use poem::{Body, IntoResponse, Response};
use poem_openapi::param::{Header, Query};
use poem_openapi::payload::Payload;
use poem_openapi::registry::{MetaSchema, MetaSchemaRef};
use poem_openapi::{ApiResponse, OpenApi};

use super::ApiTags;
use super::error::ApiError;
use crate::hub::{
    EventId, Hub, ResumePoint, SubscribeError, SubscribeRequest, TopicName, retry_hint,
};
use crate::metrics::SubscriptionEnd;
use crate::server::EventStreamMarker;

/// An SSE response body; documented in the spec as `text/event-stream`.
pub struct EventStreamBody(Body);

impl EventStreamBody {
    fn from_frames(frames: impl futures_util::Stream<Item = Bytes> + Send + 'static) -> Self {
        Self(Body::from_bytes_stream(
            frames.map(Ok::<Bytes, std::io::Error>),
        ))
    }
}

impl Payload for EventStreamBody {
    const CONTENT_TYPE: &'static str = "text/event-stream";

    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Inline(Box::new(MetaSchema {
            description: Some(
                "Server-Sent Events: `id`, `event`, `data` fields per event; \
                 an `event: gap` frame announces events the hub could not replay",
            ),
            ..MetaSchema::new_with_format("string", "event-stream")
        }))
    }
}

impl IntoResponse for EventStreamBody {
    fn into_response(self) -> Response {
        Response::builder()
            .header(header::CONTENT_TYPE, "text/event-stream")
            .header(header::CACHE_CONTROL, "no-cache")
            // nginx would otherwise buffer the stream (even with its
            // `proxy_buffering on` default); this header wins per response.
            .header("x-accel-buffering", "no")
            // The lean writer takes streams it recognises by this marker.
            .extension(EventStreamMarker)
            .body(self.0)
    }
}

#[derive(ApiResponse)]
pub enum StreamResponse {
    /// The event stream. When the hub is draining or full, the stream holds
    /// only a `retry:` hint and ends, so the browser reconnects later
    /// (EventSource gives up for good on any status but 200).
    #[oai(status = 200)]
    Stream(EventStreamBody),
}

pub struct SubscribeApi;

#[OpenApi(tag = "ApiTags::Subscribe")]
impl SubscribeApi {
    /// Subscribe to topics (SSE)
    ///
    /// One connection can follow several topics (`?topic=a&topic=b`). Resume
    /// after a reconnect with the `Last-Event-ID` header (browsers send it
    /// automatically) or the `lastEventId` query parameter.
    #[oai(path = "/v1/events", method = "get")]
    async fn subscribe(
        &self,
        hub: Data<&Hub>,
        /// Topics to follow; repeat the parameter for several.
        topic: Query<Vec<String>>,
        /// Resume after this event id (for clients that can't set headers).
        #[oai(name = "lastEventId")]
        last_event_id_query: Query<Option<String>>,
        /// Resume after this event id.
        #[oai(name = "Last-Event-ID")]
        last_event_id_header: Header<Option<String>>,
    ) -> Result<StreamResponse, ApiError> {
        let topics = topic
            .0
            .iter()
            .map(|name| TopicName::parse(name))
            .collect::<Result<Vec<_>, _>>()?;
        let resume = resume_point(last_event_id_header.0.or(last_event_id_query.0));
        open_stream(&hub, SubscribeRequest { topics, resume })
    }
}

/// Opens a stream, or sheds the subscriber in a way EventSource retries.
pub fn open_stream(hub: &Hub, request: SubscribeRequest) -> Result<StreamResponse, ApiError> {
    match hub.subscribe(request) {
        Ok(subscription) => Ok(StreamResponse::Stream(EventStreamBody::from_frames(
            subscription.into_frames(),
        ))),
        Err(error @ (SubscribeError::Closing | SubscribeError::AtCapacity { .. })) => {
            // 200 + retry hint + end: the browser comes back after the
            // (jittered) delay, here or at another replica.
            let hint = retry_hint(hub.jittered_retry());
            let metrics = hub.metrics();
            metrics.subscription_opened();
            metrics.subscription_closed(match error {
                SubscribeError::Closing => SubscriptionEnd::ShedDraining,
                _ => SubscriptionEnd::ShedCapacity,
            });
            metrics.sent(hint.len());
            Ok(StreamResponse::Stream(EventStreamBody::from_frames(
                futures_util::stream::iter([hint]),
            )))
        }
        Err(other) => Err(other.into()),
    }
}

/// An id this hub could not have made (malformed, or from another system)
/// is treated like one from another epoch: the client gets a gap frame and
/// the history we have, rather than an error status EventSource can't
/// recover from.
pub fn resume_point(last_event_id: Option<String>) -> ResumePoint {
    match last_event_id.as_deref().map(str::trim) {
        None | Some("") => ResumePoint::Live,
        Some(text) => EventId::parse(text).map_or(ResumePoint::Foreign, ResumePoint::After),
    }
}
