//! What one Mercure subscriber receives of the updates on the internal
//! topic: those with a topic its selectors match, and of the private ones
//! only those its token's `mercure.subscribe` selectors also match (on
//! replay as live: the check is per delivery). Events of the ssehub topics
//! it follows are public updates its exact selectors match; their mirrors
//! of Mercure updates are skipped (the update itself comes on the
//! internal topic). Each update's frame is built once per event per
//! process ([`Update::of`]), never per subscriber.

use bytes::Bytes;

use super::selector::{Selector, any_matches};
use super::update::Update;
use crate::hub::FrameFilter;
use crate::model::Event;

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
