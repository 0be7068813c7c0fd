//! Active subscriptions (Mercure's `subscriptions` option, draft-07 as
//! Mercure 0.x speaks it), on when `mercure.subscriptions`:
//! - **events**: when a Mercure subscription opens, and when it ends, the
//!   hub publishes one private update per selector, on the topic
//!   `/.well-known/mercure/subscriptions/{topic}/{subscriber}` (both
//!   percent-encoded), whose data is the subscription's JSON-LD document
//!   ([`Subscription`]). They go through the one publish path, so they
//!   reach every replica and resume like any update.
//! - **the list**: the subscription's documents are this replica's
//!   presence records (`backplane::presence`), which the subscriptions API
//!   ([`list`]) reads for the whole cluster.
//!
//! The subscriber is `urn:uuid:<random>`, one per connection, as the
//! Mercure hub makes it: never taken from the client.

use bytes::Bytes;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use poem::Request;
use poem::http::StatusCode;
use poem_openapi::Object;
use serde::{Deserialize, Serialize};

use super::config::MercureSettings;
use super::token;
use super::update::{Envelope, MERCURE_TOPIC, generated_id};
use crate::auth::{Action, Authenticator, RejectionReason};
use crate::http::ApiError;
use crate::http::publish_outcome;
use crate::hub::{Hub, Phase};
use crate::model::{EventDraft, TopicName};

/// The JSON-LD context of every document (the spec's fixed value).
pub const JSONLD_CONTEXT: &str = "https://mercure.rocks/";
/// Where the subscriptions API and the events' topics live.
pub const SUBSCRIPTIONS_PATH: &str = "/.well-known/mercure/subscriptions";

/// What a topic or subscriber keeps unencoded in a subscription's path:
/// RFC 3986's unreserved characters, as the Mercure hub's
/// `url.QueryEscape` does (but a space is `%20`, not `+`).
const PATH_PART: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// One subscription's document: the data of its events, an item of the
/// collections, and (with `@context` and `lastEventID`) the answer for
/// one subscription.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Object)]
#[oai(rename = "MercureSubscription")]
pub struct Subscription {
    /// `https://mercure.rocks/`; left out of a collection's items.
    #[serde(rename = "@context", default, skip_serializing_if = "Option::is_none")]
    #[oai(rename = "@context", skip_serializing_if_is_none)]
    pub context: Option<String>,
    /// The subscription's path, also the topic of its events.
    pub id: String,
    /// Always `Subscription`.
    #[serde(rename = "type")]
    #[oai(rename = "type")]
    pub kind: String,
    /// The topic selector the subscriber named.
    pub topic: String,
    /// The subscriber: `urn:uuid:…`, one per connection.
    pub subscriber: String,
    /// True while the subscription is open; false in the event of its end.
    pub active: bool,
    /// The `mercure.payload` claim of the subscriber's token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[oai(skip_serializing_if_is_none)]
    pub payload: Option<serde_json::Value>,
    /// With one subscription asked for: as the collections' `lastEventID`.
    #[serde(
        rename = "lastEventID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[oai(rename = "lastEventID", skip_serializing_if_is_none)]
    pub last_event_id: Option<String>,
}

/// A collection of subscriptions.
#[derive(Debug, Serialize, Object)]
#[oai(rename = "MercureSubscriptions")]
pub struct Subscriptions {
    /// `https://mercure.rocks/`.
    #[serde(rename = "@context")]
    #[oai(rename = "@context")]
    pub context: String,
    /// The path this collection was read from.
    pub id: String,
    /// Always `Subscriptions`.
    #[serde(rename = "type")]
    #[oai(rename = "type")]
    pub kind: String,
    /// The id of the newest update when the list was read (`earliest`
    /// before the first): subscribe from it (`Last-Event-ID`) to follow the
    /// list's changes with nothing missed.
    #[serde(rename = "lastEventID")]
    #[oai(rename = "lastEventID")]
    pub last_event_id: String,
    /// Every open subscription the path names, on any replica.
    pub subscriptions: Vec<Subscription>,
}

/// The path (and event topic) of the subscription of `topic` by `subscriber`.
pub fn subscription_path(topic: &str, subscriber: &str) -> String {
    format!(
        "{SUBSCRIPTIONS_PATH}/{}/{}",
        utf8_percent_encode(topic, PATH_PART),
        utf8_percent_encode(subscriber, PATH_PART)
    )
}

/// The open subscriptions of one connection: on this replica's presence
/// while it lives; dropped (the stream ended), they leave it and their
/// end is published.
pub struct ActiveSubscriptions {
    hub: Hub,
    documents: Vec<Subscription>,
}

impl ActiveSubscriptions {
    /// Enters a new subscriber's subscriptions, one per distinct selector
    /// of `selectors`, and publishes their start.
    pub async fn open(hub: &Hub, selectors: &[&str], payload: Option<serde_json::Value>) -> Self {
        let subscriber = format!("urn:uuid:{}", uuid::Uuid::new_v4());
        let mut documents: Vec<Subscription> = Vec::with_capacity(selectors.len());
        for topic in selectors {
            if documents.iter().any(|document| document.topic == *topic) {
                continue;
            }
            documents.push(Subscription {
                context: None,
                id: subscription_path(topic, &subscriber),
                kind: "Subscription".to_owned(),
                topic: (*topic).to_owned(),
                subscriber: subscriber.clone(),
                active: true,
                payload: payload.clone(),
                last_event_id: None,
            });
        }
        let presence = hub.backplane().presence();
        for document in &documents {
            let record = serde_json::to_vec(document).expect("a document serializes");
            presence.enter(document.id.clone(), Bytes::from(record));
        }
        announce(hub, &documents).await;
        Self {
            hub: hub.clone(),
            documents,
        }
    }
}

impl Drop for ActiveSubscriptions {
    fn drop(&mut self) {
        let presence = self.hub.backplane().presence();
        for document in &mut self.documents {
            presence.leave(&document.id);
            document.active = false;
        }
        // The end is published in the background: a stream's end waits
        // for nothing. A closing hub publishes nothing (every stream ends
        // then: their refusals would only flood the log), and without a
        // runtime the process is ending.
        if self.hub.lifecycle().phase() == Phase::Closing {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let hub = self.hub.clone();
        let documents = std::mem::take(&mut self.documents);
        runtime.spawn(async move { announce(&hub, &documents).await });
    }
}

/// Publishes one private update per document (one batch), on the
/// document's own topic, with the document (and `@context`) as data. A
/// refusal (a draining hub, Redis down) is logged: the list stays right,
/// only the event is missed.
async fn announce(hub: &Hub, documents: &[Subscription]) {
    if documents.is_empty() {
        return;
    }
    let topic = TopicName::parse(MERCURE_TOPIC).expect("a valid topic name");
    let drafts = documents
        .iter()
        .map(|document| {
            let data = serde_json::to_string(&Subscription {
                context: Some(JSONLD_CONTEXT.to_owned()),
                ..document.clone()
            })
            .expect("a document serializes");
            let envelope = Envelope {
                topics: vec![document.id.clone()],
                id: None,
                event_type: None,
                retry: None,
                private: true,
                data,
            };
            EventDraft {
                topic: topic.clone(),
                event_type: None,
                retry: None,
                data: serde_json::to_string(&envelope).expect("an envelope serializes"),
                trace: None,
                mirror: false,
            }
        })
        .collect();
    if let Err(error) = publish_outcome::publish(hub, drafts, None).await {
        tracing::warn!(
            detail = %error.detail,
            "a Mercure subscription event was not published"
        );
    }
}

/// What the subscriptions API was asked for: everything, one topic's
/// subscriptions, or one subscription.
pub struct Wanted<'a> {
    pub topic: Option<&'a str>,
    pub subscriber: Option<&'a str>,
}

/// The answer of the subscriptions API.
pub enum Listed {
    Collection(Subscriptions),
    One(Subscription),
}

/// Reads the cluster's subscriptions `wanted` names, for a subscriber
/// whose token's `mercure.subscribe` selectors cover the request's path.
pub async fn list(
    request: &Request,
    hub: &Hub,
    auth: &Authenticator,
    settings: &MercureSettings,
    authorization: Option<&str>,
    wanted: Wanted<'_>,
) -> Result<Listed, ApiError> {
    if !settings.subscriptions {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not-found",
            "active subscriptions are off on this hub (mercure.subscriptions = false)",
        ));
    }
    authorize(request, auth, settings, authorization).await?;
    // The cursor before the list: a change made meanwhile is in both, never
    // in neither.
    let last = hub.backplane().last_id().await.map_err(unavailable)?;
    let last_event_id = if last.seq == 0 {
        "earliest".to_owned()
    } else {
        generated_id(last)
    };
    let records = hub
        .backplane()
        .presence_everywhere()
        .await
        .map_err(unavailable)?;
    let mut subscriptions: Vec<Subscription> = records
        .iter()
        .filter_map(|record| serde_json::from_slice::<Subscription>(record).ok())
        .filter(|found| wanted.topic.is_none_or(|topic| found.topic == topic))
        .filter(|found| wanted.subscriber.is_none_or(|id| found.subscriber == id))
        .collect();
    subscriptions.sort_by(|a, b| a.id.cmp(&b.id));
    if wanted.subscriber.is_some() {
        let Some(found) = subscriptions.into_iter().next() else {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not-found",
                "no active subscription of this topic by this subscriber",
            ));
        };
        return Ok(Listed::One(Subscription {
            context: Some(JSONLD_CONTEXT.to_owned()),
            last_event_id: Some(last_event_id),
            ..found
        }));
    }
    Ok(Listed::Collection(Subscriptions {
        context: JSONLD_CONTEXT.to_owned(),
        id: request.uri().path().to_owned(),
        kind: "Subscriptions".to_owned(),
        last_event_id,
        subscriptions,
    }))
}

/// The spec's rule: a subscriber token whose `mercure.subscribe`
/// selectors match the requested path (as sent, percent-encoded: the form
/// the events' topics have), so one selector covers both.
async fn authorize(
    request: &Request,
    auth: &Authenticator,
    settings: &MercureSettings,
    authorization: Option<&str>,
) -> Result<(), ApiError> {
    let protocol = settings.protocol;
    if authorization.is_some() && !protocol.accepts_draft_07() {
        return Err(token::in_query());
    }
    let Some(presented) = token::presented(request, authorization, protocol) else {
        auth.count_rejection(Action::Subscribe, RejectionReason::MissingToken);
        return Err(token::missing("the subscriptions API", request, protocol));
    };
    let Some(key) = &settings.subscriber else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid-token",
            "this hub takes no subscriber tokens (mercure.subscriber_jwt.key is not set), \
             so nobody may read its subscriptions",
        ));
    };
    let grants = token::verify(&presented, key, &super::hub_url(request), protocol)
        .await
        .map_err(|refused| refused.counted(auth, Action::Subscribe))?;
    let path = request.uri().path();
    if !grants
        .subscribe
        .iter()
        .any(|selector| selector.matches(path))
    {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "the token's `mercure.subscribe` selectors don't cover {path:?} (e.g. \
                 `{SUBSCRIPTIONS_PATH}/{{topic}}/{{subscriber}}` covers one subscription's path)"
            ),
        ));
    }
    Ok(())
}

fn unavailable(error: crate::backplane::BackplaneError) -> ApiError {
    ApiError::unavailable("backplane-unavailable", error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_subscriptions_live_under_the_hub_path() {
        assert_eq!(
            SUBSCRIPTIONS_PATH,
            format!("{}/subscriptions", super::super::MERCURE_PATH)
        );
    }

    #[test]
    fn a_subscription_path_encodes_its_parts_whole() {
        assert_eq!(
            subscription_path(
                "https://example.com/{selector}",
                "urn:uuid:bb3de268-05b0-4c65-b44e-8f9acefc29d6"
            ),
            "/.well-known/mercure/subscriptions/https%3A%2F%2Fexample.com%2F%7Bselector%7D/\
             urn%3Auuid%3Abb3de268-05b0-4c65-b44e-8f9acefc29d6"
        );
        assert_eq!(
            subscription_path("a b%/c", "s"),
            "/.well-known/mercure/subscriptions/a%20b%25%2Fc/s"
        );
    }

    #[test]
    fn a_document_reads_back_and_leaves_out_what_it_lacks() {
        let document = Subscription {
            context: None,
            id: subscription_path("t", "s"),
            kind: "Subscription".to_owned(),
            topic: "t".to_owned(),
            subscriber: "s".to_owned(),
            active: true,
            payload: None,
            last_event_id: None,
        };
        let text = serde_json::to_string(&document).unwrap();
        assert!(
            !text.contains("@context") && !text.contains("payload"),
            "{text}"
        );
        assert_eq!(
            serde_json::from_str::<Subscription>(&text).unwrap(),
            document
        );
    }
}
