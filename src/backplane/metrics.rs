//! The backplane's metric families: whether it is up, its reconnects,
//! resyncs, round trips and pub/sub lag, and the events its history bounds
//! evicted. Registered by `hub::metrics::register`, which keeps the order of
//! every family of the process.

use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use strum::VariantArray;

use crate::metrics::{FANOUT_LATENCY_BUCKETS, PUBLISH_DURATION_BUCKETS, Registry, Unit, labelled};

/// The global history bound that made a backplane evict events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::VariantArray, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum HistoryBound {
    /// `history.max_topics`: a new topic pushed out the least recently
    /// published one, whole.
    MaxTopics,
    /// `history.max_bytes`: the oldest events of the least recently
    /// published topics went to make room.
    MaxBytes,
}

impl HistoryBound {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// The backplane's own figures. Lives as long as the hub.
pub struct BackplaneMetrics {
    up: Gauge,
    reconnects: Counter,
    resyncs: Counter,
    publish_duration: Histogram,
    pubsub_lag: Histogram,
    history_evicted: [Counter; HistoryBound::VARIANTS.len()],
}

impl std::fmt::Debug for BackplaneMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BackplaneMetrics")
    }
}

impl Default for BackplaneMetrics {
    /// Families registered nowhere (tests).
    fn default() -> Self {
        let mut registry = Registry::default();
        let history_evicted = Self::register_history_evicted(&mut registry);
        Self::register(&mut registry, history_evicted)
    }
}

impl BackplaneMetrics {
    /// The evictions family, registered before the others (its place in
    /// `GET /metrics`, among the hub's history families).
    pub fn register_history_evicted(
        registry: &mut Registry,
    ) -> [Counter; HistoryBound::VARIANTS.len()] {
        labelled::<HistoryBound, _>(
            registry,
            "history_evicted_events",
            "Events evicted from history before their time to keep it within history.max_topics or history.max_bytes, by bound",
            "bound",
        )
    }

    pub fn register(
        registry: &mut Registry,
        history_evicted: [Counter; HistoryBound::VARIANTS.len()],
    ) -> Self {
        let backplane_up = Gauge::default();
        registry.register(
            "backplane_up",
            "1 while the backplane accepts publishes (memory: always); 0 while Redis is unreachable, hung or refusing writes",
            backplane_up.clone(),
        );
        let backplane_reconnects = Counter::default();
        registry.register(
            "backplane_reconnects",
            "Times this replica connected to Redis again after losing it (the first connection is not counted)",
            backplane_reconnects.clone(),
        );
        let backplane_resyncs = Counter::default();
        registry.register(
            "backplane_resyncs",
            "Times the local subscribers were told to catch up from history: after a reconnect, a missed pub/sub message or a new epoch",
            backplane_resyncs.clone(),
        );
        let backplane_publish_duration = Histogram::new(PUBLISH_DURATION_BUCKETS);
        registry.register_with_unit(
            "backplane_publish_duration",
            "Round trip of one publish call (one event or a batch) to Redis: the script that assigns ids, appends history and publishes",
            Unit::Seconds,
            backplane_publish_duration.clone(),
        );
        let backplane_pubsub_lag = Histogram::new(FANOUT_LATENCY_BUCKETS);
        registry.register_with_unit(
            "backplane_pubsub_lag",
            "From an event's acceptance in Redis (Redis's clock) to its arrival on this replica's pub/sub connection",
            Unit::Seconds,
            backplane_pubsub_lag.clone(),
        );
        Self {
            up: backplane_up,
            reconnects: backplane_reconnects,
            resyncs: backplane_resyncs,
            publish_duration: backplane_publish_duration,
            pubsub_lag: backplane_pubsub_lag,
            history_evicted,
        }
    }

    /// Read at scrape time: the backplane can accept publishes.
    pub fn set_up(&self, up: bool) {
        self.up.set(i64::from(up));
    }

    pub fn reconnected(&self) {
        self.reconnects.inc();
    }

    pub fn resynced(&self) {
        self.resyncs.inc();
    }

    /// One publish call's round trip to the backplane's server.
    pub fn published(&self, took: Duration) {
        self.publish_duration.observe(took.as_secs_f64());
    }

    /// How long a message took from acceptance to this replica.
    pub fn message_lag(&self, lag: Duration) {
        self.pubsub_lag.observe(lag.as_secs_f64());
    }

    /// `events` evicted from history to stay within `bound`.
    pub fn history_evicted(&self, bound: HistoryBound, events: u64) {
        self.history_evicted[bound as usize].inc_by(events);
    }
}
