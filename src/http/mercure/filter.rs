//! What one Mercure subscriber receives of the updates on the internal
//! topic: those with a topic its selectors match, and of the private ones
//! only those its token's `mercure.subscribe` selectors also match (on
//! replay as live: the check is per delivery). Events of the ssehub topics
//! it follows are public updates its exact selectors match; their mirrors
//! of Mercure updates are skipped (the update itself comes on the
//! internal topic). Each update's frame is built once per event per
//! process ([`Update::of`]), never per subscriber. A subscription whose
//! selectors are all exact topics listens to the live queues of those
//! topics only ([`live_routes`]), so other updates don't wake it.

use std::sync::Arc;

use bytes::Bytes;

use super::selector::{Selector, any_matches};
use super::update::{MERCURE_TOPIC, Update};
use crate::hub::{FrameFilter, LiveRouter, LiveRoutes, route_key};
use crate::model::{Event, TopicName};

/// Routes each Mercure update to the live queues of its topics (canonical
/// and alternates), so a subscription whose selectors are all exact
/// topics is woken only by the updates naming one of them, not by every
/// update of the internal topic. The update's view is the one its filter
/// reads next ([`Update::of`]: built once per event per process).
struct ByTopic;

impl LiveRouter for ByTopic {
    fn routes(&self, event: &Event, route: &mut dyn FnMut(u64)) {
        if let Some(update) = Update::of(event) {
            for topic in &update.topics {
                route(route_key(topic));
            }
        }
    }
}

/// The live routes of a subscription with `selectors`: by topic when every
/// selector is an exact topic; `None` (every update wakes it) when one is
/// a template, a URL pattern or `*`, which can match topics nobody can
/// list.
pub fn live_routes(selectors: &[Selector]) -> Option<LiveRoutes> {
    let mut keys = Vec::with_capacity(selectors.len());
    for selector in selectors {
        let Selector::Exact(topic) = selector else {
            return None;
        };
        keys.push(route_key(topic));
    }
    keys.sort_unstable();
    keys.dedup();
    Some(LiveRoutes {
        topic: TopicName::parse(MERCURE_TOPIC).expect("a valid topic name"),
        keys,
        router: Arc::new(ByTopic),
    })
}

pub struct MercureFilter {
    /// The subscription's `topic` selectors (OR'ed).
    pub selectors: Vec<Selector>,
    /// The token's `mercure.subscribe` selectors; empty without a token,
    /// which then sees no private update.
    pub private_selectors: Vec<Selector>,
}

impl FrameFilter for MercureFilter {
    fn frame(&mut self, event: &Event) -> Option<Bytes> {
        let update = Update::of(event)?;
        if !any_matches(&self.selectors, &update.topics) {
            return None;
        }
        // invariant: private updates reach only subscribers whose token
        // covers one of their topics.
        if update.private && !any_matches(&self.private_selectors, &update.topics) {
            return None;
        }
        Some(update.frame.clone())
    }
}
