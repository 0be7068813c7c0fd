//! The Mercure protocol (draft-07 profile, as Mercure 0.x speaks it) at
//! `/.well-known/mercure`, on when `mercure.enabled`: the form publish
//! (`publish`), the subscription (`subscribe`) filtered per subscriber
//! (`filter`) by topic selectors (`selector`) and tokens (`token`).
//!
//! Every update is one event on the internal topic `~mercure` (`update`):
//! ids, history, resume and the Redis backplane are the hub's own, so
//! updates reach every replica and resume works on any. The book's Mercure
//! page says what is implemented and what is not.

mod api;
mod config;
mod filter;
mod publish;
mod selector;
mod subscribe;
mod token;
mod update;

pub use api::{MercureApi, MercureRoute};
pub use config::{MercureConfig, MercureJwtConfig, MercureSettings, validate};
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
