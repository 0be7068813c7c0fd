//! The Mercure protocol (draft-07 profile, as Mercure 0.x speaks it, with
//! draft-08's matchers and access tokens) at `/.well-known/mercure`, on
//! when `mercure.enabled`: the form publish
//! (`publish`), the subscription (`subscribe`) filtered per subscriber
//! (`filter`) by topic selectors (`selector`) and tokens (`token`); with
//! `mercure.subscriptions`, the active subscriptions' events and API
//! (`subscriptions`), listed for the whole cluster.
//!
//! Every update is one event on the internal topic `~mercure` (`update`):
//! ids, history, resume and the Redis backplane are the hub's own, so
//! updates reach every replica and resume works on any. The book's Mercure
//! page says what is implemented and what is not.

mod api;
mod config;
mod filter;
mod keys;
mod mint;
mod mirror;
mod namespace;
mod publish;
mod resume;
mod selector;
mod subscribe;
mod subscriptions;
mod token;
mod update;

pub use api::{MercureApi, MercureRoute};
pub use config::{MercureConfig, MercureJwtConfig, MercureSettings, validate};
pub use mint::{MercureDraft, MercureMintError, MercureMintRequest, MercureMinted, mint};
pub use update::{MERCURE_TOPIC, is_reserved};

/// The route of the protocol (RFC 8615 well-known URI).
pub const MERCURE_PATH: &str = "/.well-known/mercure";

/// Refuses the internal topic on ssehub's own routes: its events are
/// Mercure envelopes, private ones included, for the Mercure route alone.
pub fn refuse_reserved(topic: &crate::model::TopicName) -> Result<(), crate::http::ApiError> {
    if is_reserved(topic.as_str()) {
        return Err(crate::http::ApiError::bad_request(
            "invalid-topic",
            format!(
                "topic {MERCURE_TOPIC:?} is reserved for the Mercure protocol's updates \
                 (see /.well-known/mercure)"
            ),
        ));
    }
    Ok(())
}

/// The hub's URL, which relative URL patterns and topics resolve against:
/// this route on the host the request named.
pub(super) fn hub_url(request: &poem::Request) -> url::Url {
    let host = request
        .headers()
        .get(poem::http::header::HOST)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("localhost");
    let scheme = if request.uri().scheme_str() == Some("https") {
        "https"
    } else {
        "http"
    };
    url::Url::parse(&format!("{scheme}://{host}{MERCURE_PATH}"))
        .unwrap_or_else(|_| url::Url::parse("http://localhost/.well-known/mercure").expect("a URL"))
}
