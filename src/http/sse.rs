//! The subscribe route and the `text/event-stream` response it returns.
//!
//! Frames come from the hub already encoded; this layer only sets headers
//! and hands the byte stream to the server. poem's own `SSE` type is not
//! used: it re-encodes every event per subscriber into a new `String`.

use std::pin::Pin;

use bytes::Bytes;
use poem::http::header;
use poem::web::Data;
use poem::{Body, IntoResponse, Request, Response};
use poem_openapi::param::{Header, Query};
use poem_openapi::payload::{Json, Payload};
use poem_openapi::registry::{MetaSchema, MetaSchemaRef};
use poem_openapi::{ApiResponse, OpenApi};

use super::ApiTags;
use super::credentials::{PublisherCredential, SubscriberCredential};
use super::error::ApiError;
use super::fields::TopicField;
use super::idempotency::IdempotencyKeyHeader;
use super::publish::{self, BatchRequest, BatchResponse, MaxEventsPerRequest};
use crate::auth::Authenticator;
use crate::hub::{Admission, Hub, ShedReason, SubscribeRequest};
use crate::model::{EventId, ResumePoint, TopicName};
use crate::server::{EventSource, EventStreamMarker, FramesSource};

/// An SSE response body; documented in the spec as `text/event-stream`.
/// The server's stream writer takes its source from the marker; anything
/// else reading the response reads the same source through the body.
pub struct EventStreamBody {
    body: Body,
    marker: EventStreamMarker,
}

impl EventStreamBody {
    pub(super) fn from_source(source: Pin<Box<dyn EventSource>>) -> Self {
        let (marker, frames) = EventStreamMarker::new(source);
        Self {
            body: Body::from_bytes_stream(frames),
            marker,
        }
    }

    pub(super) fn from_frames(
        frames: impl futures_util::Stream<Item = Bytes> + Send + 'static,
    ) -> Self {
        Self::from_source(Box::pin(FramesSource(Box::pin(frames))))
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
            // The server's stream writer takes streams it recognises by this marker.
            .extension(self.marker)
            .body(self.body)
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

/// Both methods of `/v1/events`: poem-openapi writes each `OpenApi` impl's
/// paths separately, so a path split over two impls would appear twice in
/// the spec (and Swagger UI would show only one of its operations).
pub struct EventsApi;

#[OpenApi]
impl EventsApi {
    /// Publish a batch of events
    ///
    /// All events are accepted or none is; a bad item rejects the batch and
    /// the error names its index (`events[3]`).
    #[oai(path = "/v1/events", method = "post", tag = "ApiTags::Publish")]
    // Each argument is one documented parameter or extractor of the
    // operation: poem-openapi builds the spec from the signature.
    #[allow(clippy::too_many_arguments)]
    async fn publish_batch(
        &self,
        request: &Request,
        hub: Data<&Hub>,
        auth: Data<&Authenticator>,
        max_events: Data<&MaxEventsPerRequest>,
        credential: PublisherCredential,
        /// Makes a retry safe (IETF draft "The Idempotency-Key HTTP Header
        /// Field"): a retry with the same key within
        /// `limits.idempotency_window` gets the first answer (same status,
        /// same ids) and publishes nothing; 409 while the first is in
        /// flight, 422 if the key was used for another request. A quoted
        /// string (`"4f1c…"`) or a bare printable ASCII value, at most 255
        /// bytes; keys are per publisher.
        #[oai(name = "Idempotency-Key")]
        _idempotency_key: Header<Option<IdempotencyKeyHeader>>,
        body: Json<BatchRequest>,
    ) -> Result<BatchResponse, ApiError> {
        // The header is read raw: see `idempotency::key_of`.
        publish::publish_batch(hub, auth, max_events, credential, request, body).await
    }

    /// Subscribe to topics (SSE)
    ///
    /// **Swagger UI can't show this stream**: "Execute" waits for the
    /// response to end, and an event stream stays open for live events, so
    /// it spins until you cancel it. Run `curl -N
    /// 'http://127.0.0.1:8080/v1/events?topic=orders.42'`, or `new
    /// EventSource('/v1/events?topic=orders.42')` in a page (the console at
    /// `/` does this).
    ///
    /// One connection can follow several topics (`?topic=a&topic=b`). Resume
    /// after a reconnect with the `Last-Event-ID` header (browsers send it
    /// automatically) or the `lastEventId` query parameter.
    #[oai(path = "/v1/events", method = "get", tag = "ApiTags::Subscribe")]
    // Each argument is one documented parameter or extractor of the
    // operation: poem-openapi builds the spec from the signature.
    #[allow(clippy::too_many_arguments)]
    async fn subscribe(
        &self,
        request: &Request,
        hub: Data<&Hub>,
        auth: Data<&Authenticator>,
        credential: SubscriberCredential,
        /// Topics to follow; repeat the parameter for several.
        topic: Query<Vec<TopicField>>,
        /// Resume after this event id (for clients that can't set headers).
        #[oai(name = "lastEventId")]
        last_event_id_query: Query<Option<String>>,
        /// Resume after this event id.
        #[oai(name = "Last-Event-ID")]
        _last_event_id_header: Header<Option<String>>,
    ) -> Result<StreamResponse, ApiError> {
        let topics = topic
            .0
            .iter()
            .map(|name| TopicName::parse(&name.0))
            .collect::<Result<Vec<_>, _>>()?;
        for topic in &topics {
            super::mercure::refuse_reserved(topic)?;
        }
        let resume = resume_from(request, last_event_id_query.0);
        open_authorized_stream(
            request,
            &hub,
            &auth,
            credential,
            SubscribeRequest {
                topics,
                resume,
                expires_at: None,
                filter: None,
                live_routes: None,
            },
        )
        .await
    }
}

/// Opens a stream once the subscriber may have it: a request that carries
/// a body is refused (400), over its address's rate it is shed (a 200
/// stream, as every shed), without the right token it gets 401/403 (a retry
/// can't fix that).
pub async fn open_authorized_stream(
    request: &Request,
    hub: &Hub,
    auth: &Authenticator,
    credential: SubscriberCredential,
    subscribe: SubscribeRequest,
) -> Result<StreamResponse, ApiError> {
    refuse_body(request)?;
    let admission = if auth.admit_subscriber(credential.client).is_err() {
        Admission::Shed(hub.shed(ShedReason::RateLimited))
    } else {
        let verdict = auth
            .authorize_subscribe(credential.credential.as_ref(), &subscribe.topics)
            .await?;
        hub.subscribe(SubscribeRequest {
            expires_at: verdict.expires_at,
            ..subscribe
        })?
    };
    Ok(StreamResponse::Stream(EventStreamBody::from_source(
        admission.into_source(),
    )))
}

/// A subscribe takes everything from its URL and headers: a body has no
/// meaning on a GET (RFC 9110 §9.3.1), is a request-smuggling smell, and
/// would make a stream whose connection's read side is taken by the body,
/// where a departed client goes unnoticed until a write fails (with
/// heartbeats off: never). Refused before a subscriber slot is taken. Here,
/// on the stream routes, rather than for every GET in front of routing: a
/// GET with a body to a route that takes no GET still gets its 405.
pub(super) fn refuse_body(request: &Request) -> Result<(), ApiError> {
    let headers = request.headers();
    let announces_body = headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get_all(header::CONTENT_LENGTH)
            .iter()
            .any(|length| length.as_bytes().trim_ascii() != b"0");
    if announces_body {
        return Err(ApiError::bad_request(
            "malformed_request",
            "a subscribe must not carry a body (Content-Length above 0 or Transfer-Encoding): \
             send topics and the resume point in the URL and headers",
        ));
    }
    Ok(())
}

/// Where a subscriber resumes: the `Last-Event-ID` header, else the
/// `lastEventId` query parameter.
///
/// The header is read here rather than through its (documented) parameter:
/// poem-openapi reads a header value that is not visible ASCII as no header
/// at all, which would resume such a client live and skip what it missed
/// without a word. Any value a client sends is either one of our ids or a
/// foreign one (gap frame, then all history).
pub fn resume_from(request: &Request, query: Option<String>) -> ResumePoint {
    match request.headers().get("last-event-id") {
        Some(raw) => match std::str::from_utf8(raw.as_bytes()) {
            Ok(text) => resume_point(Some(text.to_owned())),
            Err(_) => ResumePoint::Foreign,
        },
        None => resume_point(query),
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
