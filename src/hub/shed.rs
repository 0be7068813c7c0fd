//! Shedding: the one answer to a subscribe the hub won't serve right now.
//!
//! EventSource gives up for good on any status but 200 (503 included), so a
//! shed subscriber gets a `200` stream that holds only a `retry:` hint with
//! jitter and then ends: the browser comes back after the hint, here or at
//! another replica. Who decides to shed varies (the hub itself at capacity
//! or while draining, a caller's rate limit); how a shed is answered and
//! counted is decided here only.

use bytes::Bytes;

use super::Hub;
use super::SubscriptionEnd;
use crate::model::sse;

/// Why a subscribe was shed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::VariantArray)]
pub enum ShedReason {
    /// The hub holds `limits.max_subscribers` streams.
    Capacity,
    /// The hub is draining before shutdown.
    Draining,
    /// The client's address is over its subscribe rate limit.
    RateLimited,
    /// Where the client resumes could not be found: history, which holds
    /// it, could not be read (a Mercure resume by a publisher's id while
    /// the backplane is down or slow). Coming back later resumes exactly;
    /// replaying everything instead would deliver what it already has.
    HistoryUnavailable,
}

impl ShedReason {
    /// The end reason the subscription counters record.
    pub(crate) fn end(self) -> SubscriptionEnd {
        match self {
            Self::Capacity => SubscriptionEnd::ShedCapacity,
            Self::Draining => SubscriptionEnd::ShedDraining,
            Self::RateLimited => SubscriptionEnd::ShedRateLimited,
            Self::HistoryUnavailable => SubscriptionEnd::ShedHistoryUnavailable,
        }
    }
}

/// A shed subscribe: counted when made, a retry hint when turned into bytes.
#[derive(Debug)]
pub struct Shed {
    reason: ShedReason,
    hint: Bytes,
}

impl Shed {
    /// Counts the shed stream (opened and closed at once, with its bytes).
    pub(super) fn new(hub: &Hub, reason: ShedReason) -> Self {
        let hint = sse::retry_hint(hub.jittered_retry());
        let metrics = hub.metrics();
        metrics.subscription_opened();
        metrics.subscription_closed(reason.end());
        metrics.sent(hint.len());
        Self { reason, hint }
    }

    pub fn reason(&self) -> ShedReason {
        self.reason
    }

    /// The whole stream: one `retry:` hint.
    pub fn into_frames(self) -> impl futures_util::Stream<Item = Bytes> + Send + 'static {
        futures_util::stream::iter([self.hint])
    }
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;

    use crate::hub::testing::{self, HISTORY};
    use crate::hub::{Admission, Hub, HubSettings, Phase, ShedReason, SubscribeRequest};

    fn hub(max_subscribers: usize) -> Hub {
        let settings = HubSettings {
            max_subscribers,
            ..testing::settings()
        };
        testing::memory_hub(settings, HISTORY)
    }

    fn request() -> SubscribeRequest {
        testing::live(&["t"])
    }

    fn shed_reason(admission: &Admission) -> Option<ShedReason> {
        match admission {
            Admission::Open(_) => None,
            Admission::Shed(shed) => Some(shed.reason()),
        }
    }

    #[tokio::test]
    async fn beyond_capacity_a_subscribe_is_shed_with_a_jittered_hint_and_gives_its_seat_back() {
        let hub = hub(1);
        let first = hub.subscribe(request()).unwrap();
        assert_eq!(shed_reason(&first), None);
        let second = hub.subscribe(request()).unwrap();
        assert_eq!(shed_reason(&second), Some(ShedReason::Capacity));
        assert_eq!(hub.subscriber_count(), 1, "the shed one holds no seat");
        let frames: Vec<_> = second.into_frames().collect().await;
        assert_eq!(frames.len(), 1);
        let hint = std::str::from_utf8(&frames[0]).unwrap();
        let millis: u64 = hint
            .strip_prefix("retry: ")
            .and_then(|rest| rest.trim_end().parse().ok())
            .unwrap_or_else(|| panic!("not a retry hint: {hint:?}"));
        assert!((3000..=6000).contains(&millis), "{millis}");
        let metrics = hub.render_metrics(false);
        assert!(
            metrics.contains("ssehub_subscriptions_closed_total{reason=\"shed_capacity\"} 1\n"),
            "{metrics}"
        );
    }

    #[tokio::test]
    async fn while_closing_a_subscribe_is_shed() {
        let hub = hub(10);
        hub.lifecycle().stop_accepting().await;
        assert_eq!(hub.lifecycle().phase(), Phase::Closing);
        let admission = hub.subscribe(request()).unwrap();
        assert_eq!(shed_reason(&admission), Some(ShedReason::Draining));
    }
}
