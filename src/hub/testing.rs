//! The hub that tests and benchmarks build, in one place: small settings,
//! the memory backplane or one the test drives itself, and the requests and
//! drafts they send. Compiled for the crate's own tests and with the
//! `testing` feature, which the benchmarks turn on (Cargo.toml's
//! dev-dependency on this crate); the binary never has it.

use std::sync::Arc;
use std::time::Duration;

use super::{Hub, HubSettings, SubscribeRequest};
use crate::backplane::{Backplane, FanOut, HistoryLimits, MemoryBackplane};
use crate::model::{EventDraft, ResumePoint, TopicName};

/// History of a memory backplane: 100 events per topic, for an hour.
pub const HISTORY: HistoryLimits = HistoryLimits {
    size: 100,
    ttl: Duration::from_secs(3600),
};

/// Settings small enough to reason about: no heartbeat, a 3 s `retry:`,
/// 100 seats, 4 topics per subscription, events up to 1 KiB, live queues
/// of 16. A test changes what it is about with `..settings()`.
pub fn settings() -> HubSettings {
    HubSettings {
        heartbeat: None,
        retry: Duration::from_secs(3),
        max_subscribers: 100,
        max_topics_per_subscription: 4,
        max_event_bytes: 1024,
        queue: 16,
        shards: 0,
    }
}

/// A hub over the memory backplane, keeping `history`.
pub fn memory_hub(settings: HubSettings, history: HistoryLimits) -> Hub {
    Hub::new(settings, |replica| {
        Arc::new(MemoryBackplane::new(history, replica.fan_out)) as Arc<dyn Backplane>
    })
}

/// A hub over the backplane `make` builds on the hub's live queues, and
/// that backplane, for the test to drive step by step.
pub fn hub_over<B: Backplane + 'static>(
    settings: HubSettings,
    make: impl FnOnce(Arc<dyn FanOut>) -> B,
) -> (Hub, Arc<B>) {
    let mut made = None;
    let hub = Hub::new(settings, |replica| {
        let backplane = Arc::new(make(replica.fan_out));
        made = Some(backplane.clone());
        backplane as Arc<dyn Backplane>
    });
    (hub, made.expect("the hub builds its backplane"))
}

/// A subscription to `topics` from `resume`, without a token.
pub fn request(topics: &[&str], resume: ResumePoint) -> SubscribeRequest {
    SubscribeRequest {
        topics: topics
            .iter()
            .map(|topic| TopicName::parse(topic).expect("a valid topic"))
            .collect(),
        resume,
        ..SubscribeRequest::default()
    }
}

/// A live subscription (nothing to resume) to `topics`.
pub fn live(topics: &[&str]) -> SubscribeRequest {
    request(topics, ResumePoint::Live)
}

/// An event of `data` on `topic`, without type, `retry` or trace.
pub fn draft(topic: &str, data: impl Into<String>) -> EventDraft {
    EventDraft {
        topic: TopicName::parse(topic).expect("a valid topic"),
        event_type: None,
        retry: None,
        data: data.into(),
        trace: None,
        mirror: false,
    }
}
