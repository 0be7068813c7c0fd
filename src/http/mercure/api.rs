//! The Mercure route as the OpenAPI spec describes it: the form publish
//! with its fields, the subscription as `text/event-stream`, and the
//! subscriptions API (`application/ld+json`). Documented
//! in every configuration (the spec is one document); while
//! `mercure.enabled` is off both operations answer 404.

use std::borrow::Cow;
use std::sync::Arc;

use bytes::Bytes;
use poem::http::StatusCode;
use poem::web::Data;
use poem::{Request, RequestBody};
use poem_openapi::param::{Header, Path, Query};
use poem_openapi::payload::{Payload, PlainText};
use poem_openapi::registry::{MetaSchema, MetaSchemaRef, Registry};
use poem_openapi::types::{ParseFromParameter, ParseResult, Type};
use poem_openapi::{ApiResponse, OpenApi, impl_apirequest_for_payload};

use super::config::MercureSettings;
use super::subscriptions::{self, Listed, Subscription, Subscriptions, Wanted};
use super::{publish, subscribe};
use crate::auth::Authenticator;
use crate::http::ApiError;
use crate::http::ApiTags;
use crate::http::error::MercureRouteError;
use crate::http::idempotency::IdempotencyKeyHeader;
use crate::http::publish::MaxEventsPerRequest;
use crate::http::sse::EventStreamBody;
use crate::hub::Hub;

/// The Mercure settings the operations read; `None`: the protocol is off.
#[derive(Clone)]
pub struct MercureRoute(pub Option<Arc<MercureSettings>>);

impl MercureRoute {
    /// False until every JWKS the Mercure keys name by URL has been read once.
    pub fn keys_are_loaded(&self) -> bool {
        self.0
            .as_deref()
            .is_none_or(|settings| settings.jwks().iter().all(|jwks| jwks.is_loaded()))
    }

    fn settings(&self) -> Result<&MercureSettings, ApiError> {
        self.0.as_deref().ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not-found",
                "the Mercure protocol is off on this hub (mercure.enabled = false)",
            )
        })
    }
}

/// A selector of the subscription's query (`topic`, `match`,
/// `match_exact`, `match_urlpattern`) as the spec documents it: not empty.
/// Parsed as any text: the subscription reads its query itself and refuses
/// a bad selector with its own problem (`bad-mercure-request`, naming it),
/// so the schema only says what it will refuse.
pub struct SelectorParameter;

impl Type for SelectorParameter {
    const IS_REQUIRED: bool = true;
    type RawValueType = Self;
    type RawElementValueType = Self;

    fn name() -> Cow<'static, str> {
        "string(mercure-selector)".into()
    }

    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Inline(Box::new(non_empty("a topic selector")))
    }

    fn as_raw_value(&self) -> Option<&Self> {
        Some(self)
    }

    fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a Self> + 'a> {
        Box::new(std::iter::once(self))
    }
}

impl ParseFromParameter for SelectorParameter {
    fn parse_from_parameter(_value: &str) -> ParseResult<Self> {
        Ok(Self)
    }
}

/// A string the hub refuses when empty.
fn non_empty(description: &'static str) -> MetaSchema {
    MetaSchema {
        description: Some(description),
        min_length: Some(1),
        ..MetaSchema::new("string")
    }
}

/// A Mercure publish form, as read by the body limit; its fields are
/// checked by the publish itself (repeated `topic`, unknown fields ignored:
/// more than a typed form extractor allows).
pub struct MercureForm(Bytes);

impl Payload for MercureForm {
    const CONTENT_TYPE: &'static str = "application/x-www-form-urlencoded";

    fn check_content_type(content_type: &str) -> bool {
        content_type
            .split(';')
            .next()
            .is_some_and(|media| media.trim().eq_ignore_ascii_case(Self::CONTENT_TYPE))
    }

    fn schema_ref() -> MetaSchemaRef {
        let text = |description: &'static str| {
            MetaSchemaRef::Inline(Box::new(MetaSchema {
                description: Some(description),
                ..MetaSchema::new("string")
            }))
        };
        MetaSchemaRef::Inline(Box::new(MetaSchema {
            description: Some("A Mercure update; fields not listed here are ignored"),
            required: vec!["topic"],
            properties: vec![
                (
                    "topic",
                    // A form field is sent once or repeated: one topic or
                    // several, never none, never an empty one.
                    MetaSchemaRef::Inline(Box::new(MetaSchema {
                        description: Some(
                            "The update's topics (repeat the field): the first canonical, \
                             the rest alternates; not `*`",
                        ),
                        any_of: vec![
                            MetaSchemaRef::Inline(Box::new(non_empty("a topic IRI"))),
                            MetaSchemaRef::Inline(Box::new(MetaSchema {
                                items: Some(Box::new(MetaSchemaRef::Inline(Box::new(non_empty(
                                    "a topic IRI",
                                ))))),
                                min_items: Some(1),
                                ..MetaSchema::new("array")
                            })),
                        ],
                        ..MetaSchema::ANY
                    })),
                ),
                ("data", text("The content, sent as `data:` lines")),
                (
                    "id",
                    text(
                        "The update's id (`id:` on the wire); not `#…`, `earliest` or \
                         `urn:ssehub:…`; the hub makes one when absent",
                    ),
                ),
                ("type", text("The SSE `event:` type; not `mercure`")),
                (
                    "retry",
                    MetaSchemaRef::Inline(Box::new(MetaSchema {
                        description: Some(
                            "The SSE `retry:` hint, ASCII digits (milliseconds); empty: none",
                        ),
                        pattern: Some(RETRY_PATTERN.to_owned()),
                        ..MetaSchema::new("string")
                    })),
                ),
                (
                    "private",
                    text("Present (any value): only subscribers whose token covers a topic"),
                ),
            ],
            ..MetaSchema::new("object")
        }))
    }
}

/// `retry`: ASCII digits, at most 19 of them (every such number fits the
/// hub's 64-bit milliseconds; the hub refuses more than fits).
const RETRY_PATTERN: &str = "^[0-9]{0,19}$";

impl poem_openapi::payload::ParsePayload for MercureForm {
    const IS_REQUIRED: bool = true;

    async fn from_request(request: &Request, body: &mut RequestBody) -> poem::Result<Self> {
        Ok(Self(
            <Bytes as poem::FromRequest>::from_request(request, body).await?,
        ))
    }
}

impl_apirequest_for_payload!(MercureForm);

#[derive(ApiResponse)]
pub enum MercurePublished {
    /// The update is accepted: the body is its id.
    #[oai(status = 200)]
    Accepted(PlainText<String>),
}

#[derive(ApiResponse)]
pub enum MercureStream {
    /// The event stream: `id:` is each update's Mercure id. When the hub is
    /// draining or full, only a `retry:` hint, and the end.
    #[oai(status = 200)]
    Stream(
        EventStreamBody,
        /// With a resume: the id the stream starts after, or `earliest` (draft-07).
        #[oai(header = "Last-Event-ID")]
        Option<String>,
        /// The same, as draft-08 names it.
        #[oai(header = "Mercure-Last-Event-ID")]
        Option<String>,
    ),
}

/// A JSON-LD document (`application/ld+json`, as the spec asks of the
/// subscriptions API).
pub struct JsonLd<T>(T);

const JSON_LD: &str = "application/ld+json";

impl<T: Type> Payload for JsonLd<T> {
    const CONTENT_TYPE: &'static str = JSON_LD;

    fn schema_ref() -> MetaSchemaRef {
        T::schema_ref()
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}

impl<T: serde::Serialize + Send> poem::IntoResponse for JsonLd<T> {
    fn into_response(self) -> poem::Response {
        poem::Response::builder()
            .content_type(JSON_LD)
            .body(serde_json::to_vec(&self.0).expect("a document serializes"))
    }
}

#[derive(ApiResponse)]
pub enum MercureSubscriptionList {
    /// The open subscriptions, on every replica.
    #[oai(status = 200)]
    Listed(JsonLd<Subscriptions>),
}

#[derive(ApiResponse)]
pub enum MercureSubscriptionOne {
    /// The subscription, open now.
    #[oai(status = 200)]
    Found(JsonLd<Subscription>),
}

/// The subscriptions API's answer for a collection.
/// What the three routes of the subscriptions API share: the route's
/// settings, then the listing they ask for (`wanted`).
async fn list(
    request: &Request,
    hub: &Hub,
    auth: &Authenticator,
    route: &MercureRoute,
    authorization: &Query<Option<String>>,
    wanted: Wanted<'_>,
) -> Result<Listed, MercureRouteError> {
    let settings = route.settings()?;
    Ok(subscriptions::list(
        request,
        hub,
        auth,
        settings,
        authorization.0.as_deref(),
        wanted,
    )
    .await?)
}

fn collection(listed: Listed) -> MercureSubscriptionList {
    match listed {
        Listed::Collection(all) => MercureSubscriptionList::Listed(JsonLd(all)),
        Listed::One(_) => unreachable!("a collection was asked for"),
    }
}

pub struct MercureApi;

#[OpenApi]
impl MercureApi {
    /// Publish a Mercure update
    ///
    /// Authorised by a publisher JWT whose grants cover every topic (a
    /// draft-07 `mercure.publish` claim, or a draft-08 access token) in
    /// `Authorization: Bearer` or the `__Secure-mercure_access_token` cookie
    /// (or, with `protocol_version_compatibility = 7`, `mercureAuthorization`).
    /// 404 unless `mercure.enabled`.
    #[oai(
        path = "/.well-known/mercure",
        method = "post",
        tag = "ApiTags::Mercure"
    )]
    // Each argument is one documented parameter of the operation or data
    // it reads (the subscription's route does the same).
    #[allow(clippy::too_many_arguments)]
    async fn publish(
        &self,
        request: &Request,
        hub: Data<&Hub>,
        auth: Data<&Authenticator>,
        route: Data<&MercureRoute>,
        max_events: Data<&MaxEventsPerRequest>,
        /// Makes a retry safe, as on ssehub's own publish routes: a retry
        /// with the same key within `limits.idempotency_window` gets the
        /// first answer (the same id) and publishes nothing; 409 while the
        /// first is in flight, 422 if the key was used for another update.
        /// Keys are per token holder (issuer and subject).
        #[oai(name = "Idempotency-Key")]
        _idempotency_key: Header<Option<IdempotencyKeyHeader>>,
        body: MercureForm,
    ) -> Result<MercurePublished, MercureRouteError> {
        let settings = route.settings()?;
        let id = publish::publish(request, &hub, &auth, settings, **max_events, &body.0).await?;
        Ok(MercurePublished::Accepted(PlainText(id)))
    }

    /// Subscribe to Mercure updates (SSE)
    ///
    /// **Swagger UI can't show this stream**: "Execute" waits for the
    /// response to end, and an event stream stays open for live updates, so
    /// it spins until you cancel it. Run `curl -N
    /// 'http://127.0.0.1:8080/.well-known/mercure?topic=https://example.com/books/1'`,
    /// or `new EventSource('/.well-known/mercure?topic=…')` in a page.
    ///
    /// Selectors are OR'ed. A subscriber token (`Authorization: Bearer`,
    /// the `__Secure-mercure_access_token` cookie; with
    /// `protocol_version_compatibility = 7` also `?authorization=` and the
    /// `mercureAuthorization` cookie) is needed unless `mercure.anonymous`;
    /// its subscribe grants open private updates. With `8`, `topic`,
    /// `Last-Event-ID`, `lastEventID` and `authorization` in the query are
    /// 400s. 404 unless `mercure.enabled`.
    #[oai(
        path = "/.well-known/mercure",
        method = "get",
        tag = "ApiTags::Mercure"
    )]
    // Each argument is one documented parameter of the operation; the
    // query is read again by the subscription (repeated and reserved names).
    #[allow(clippy::too_many_arguments)]
    async fn subscribe(
        &self,
        request: &Request,
        hub: Data<&Hub>,
        auth: Data<&Authenticator>,
        route: Data<&MercureRoute>,
        /// Draft-07 selectors: `*`, a URI template (RFC 6570 levels 1-2) or an exact topic.
        #[oai(name = "topic")]
        _topic: Query<Option<Vec<SelectorParameter>>>,
        /// Draft-08 exact matchers.
        #[oai(name = "match")]
        _match: Query<Option<Vec<SelectorParameter>>>,
        /// Draft-08 exact matchers, explicit spelling.
        #[oai(name = "match_exact")]
        _match_exact: Query<Option<Vec<SelectorParameter>>>,
        /// Draft-08 URL Pattern matchers (relative ones resolve against the hub's URL).
        #[oai(name = "match_urlpattern")]
        _match_urlpattern: Query<Option<Vec<SelectorParameter>>>,
        /// Resume after this update id, or `earliest` (draft-07's query name).
        #[oai(name = "Last-Event-ID")]
        _last_event_id_07: Query<Option<String>>,
        /// The same, as later drafts spelled it.
        #[oai(name = "lastEventID")]
        _last_event_id_camel: Query<Option<String>>,
        /// Resume after this update id, or `earliest` (draft-08 name).
        #[oai(name = "last_event_id")]
        _last_event_id_08: Query<Option<String>>,
        /// A subscriber token (draft-07, with `protocol_version_compatibility = 7` only).
        #[oai(name = "authorization")]
        _authorization: Query<Option<String>>,
        /// Resume after this update id; wins over the query.
        #[oai(name = "Last-Event-ID")]
        _last_event_id_header: Header<Option<String>>,
    ) -> Result<MercureStream, MercureRouteError> {
        let settings = route.settings()?;
        let (stream, cursor) = subscribe::subscribe(request, &hub, &auth, settings).await?;
        Ok(MercureStream::Stream(stream, cursor.clone(), cursor))
    }

    /// List the active subscriptions
    ///
    /// Every open Mercure subscription, on any replica (`mercure.subscriptions`).
    /// Authorised by a subscriber token whose `mercure.subscribe` selectors
    /// match this path (e.g. `/.well-known/mercure/subscriptions{+rest}`,
    /// or `*`). `lastEventID`: subscribe from it to follow the changes.
    /// 404 unless `mercure.enabled` and `mercure.subscriptions`.
    #[oai(
        path = "/.well-known/mercure/subscriptions",
        method = "get",
        tag = "ApiTags::Mercure"
    )]
    async fn subscriptions(
        &self,
        request: &Request,
        hub: Data<&Hub>,
        auth: Data<&Authenticator>,
        route: Data<&MercureRoute>,
        /// A subscriber token, for clients that can't set headers.
        #[oai(name = "authorization")]
        authorization: Query<Option<String>>,
    ) -> Result<MercureSubscriptionList, MercureRouteError> {
        let wanted = Wanted {
            topic: None,
            subscriber: None,
        };
        let listed = list(request, &hub, &auth, &route, &authorization, wanted).await?;
        Ok(collection(listed))
    }

    /// List the active subscriptions of one topic selector
    ///
    /// The subscriptions whose selector is `topic` (percent-encoded whole,
    /// e.g. `https%3A%2F%2Fexample.com%2Fbooks%2F%7Bid%7D`), on any replica.
    /// Authorised as the whole list, by this path.
    #[oai(
        path = "/.well-known/mercure/subscriptions/:topic",
        method = "get",
        tag = "ApiTags::Mercure"
    )]
    async fn subscriptions_of_topic(
        &self,
        request: &Request,
        hub: Data<&Hub>,
        auth: Data<&Authenticator>,
        route: Data<&MercureRoute>,
        /// The topic selector the subscriptions were opened with.
        topic: Path<String>,
        /// A subscriber token, for clients that can't set headers.
        #[oai(name = "authorization")]
        authorization: Query<Option<String>>,
    ) -> Result<MercureSubscriptionList, MercureRouteError> {
        let wanted = Wanted {
            topic: Some(&topic.0),
            subscriber: None,
        };
        let listed = list(request, &hub, &auth, &route, &authorization, wanted).await?;
        Ok(collection(listed))
    }

    /// One active subscription
    ///
    /// The subscription of `topic` by `subscriber` (both percent-encoded:
    /// the path is the `id` of its document and the topic of its events),
    /// with `lastEventID`; 404 when it is not open (anymore).
    #[oai(
        path = "/.well-known/mercure/subscriptions/:topic/:subscriber",
        method = "get",
        tag = "ApiTags::Mercure"
    )]
    #[allow(clippy::too_many_arguments)]
    async fn subscription(
        &self,
        request: &Request,
        hub: Data<&Hub>,
        auth: Data<&Authenticator>,
        route: Data<&MercureRoute>,
        /// The topic selector the subscription was opened with.
        topic: Path<String>,
        /// The subscriber, `urn:uuid:…`.
        subscriber: Path<String>,
        /// A subscriber token, for clients that can't set headers.
        #[oai(name = "authorization")]
        authorization: Query<Option<String>>,
    ) -> Result<MercureSubscriptionOne, MercureRouteError> {
        let wanted = Wanted {
            topic: Some(&topic.0),
            subscriber: Some(&subscriber.0),
        };
        match list(request, &hub, &auth, &route, &authorization, wanted).await? {
            Listed::One(one) => Ok(MercureSubscriptionOne::Found(JsonLd(one))),
            Listed::Collection(_) => unreachable!("one subscription was asked for"),
        }
    }
}
