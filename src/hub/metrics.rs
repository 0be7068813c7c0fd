//! The hub's metric families (streams, publishes, deliveries, fan-out) and
//! their labels, and the order in which every family of the process is
//! registered ([`register`]): `GET /metrics` lists them in that order.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use strum::VariantArray;

use super::{IdempotencyOutcome, Phase, ShedReason};
use crate::backplane::BackplaneMetrics;
use crate::metrics::{
    FANOUT_LATENCY_BUCKETS, Label, PUBLISH_DURATION_BUCKETS, Registry, Unit, labelled,
    register_build, registry,
};
use crate::model::GapReason;

/// Why a subscription's stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::VariantArray, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum SubscriptionEnd {
    /// The client went away (noticed at the next write to it).
    ClientGone,
    /// The hub ended it during a drain, with a `retry:` hint.
    Drained,
    /// Ended at the drain deadline (`drain.timeout`), still with a hint.
    Cut,
    /// Ended at the `exp` of the token that opened it, with a
    /// `token_expired` frame.
    TokenExpired,
    /// Shed on arrival: the hub was at `limits.max_subscribers`.
    ShedCapacity,
    /// Shed on arrival: the hub was draining.
    ShedDraining,
    /// Shed on arrival: its client address is over
    /// `rate_limits.subscribe_per_address`.
    ShedRateLimited,
    /// Shed on arrival: where it resumes could not be looked up in history.
    ShedHistoryUnavailable,
}

impl SubscriptionEnd {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// What became of a publish request or of the events in it: the labels of
/// the publish families. Which answer counts under which is decided in one
/// place, `http::publish_outcome`, which counts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::VariantArray, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum PublishOutcome {
    /// 2xx: in history and on its way to subscribers.
    Accepted,
    /// 400, 408, 409, 415, 422: a malformed request, a value the hub can't
    /// take, or an idempotency key still in flight or reused.
    RejectedInvalid,
    /// 401, 403: no publish key or a wrong one.
    RejectedUnauthorized,
    /// 413: an event or the body over its limit.
    RejectedTooLarge,
    /// 429: over a publish rate limit.
    RejectedRateLimited,
    /// 503: draining, or the backplane is down; nothing was published.
    Unavailable,
    /// 504: sent to the backplane, no answer in time; may be published.
    OutcomeUnknown,
    /// Anything else (a bug if it ever counts).
    Error,
}

impl PublishOutcome {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// Why history was read for a subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::VariantArray, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum ReplayTrigger {
    /// A reconnect with `Last-Event-ID`.
    Resume,
    /// The subscriber fell a whole live queue behind.
    Lagged,
    /// The backplane resynced this replica (after a reconnect to Redis).
    Resync,
}

impl ReplayTrigger {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// Hub state read at scrape time.
#[derive(Debug, Clone, Copy)]
pub struct Snapshot {
    pub subscribers: usize,
    pub live_topics: usize,
    pub phase: Phase,
}

/// What the hub is given of the process's metrics: the registry it renders,
/// its own families and the backplane's (handed on to the backplane).
pub struct Instruments {
    pub registry: Registry,
    pub hub: Arc<HubMetrics>,
    pub backplane: Arc<BackplaneMetrics>,
}

/// Registers every family of the process in the order `GET /metrics` has
/// always listed them (hub, auth, backplane families interleaved), the
/// families of auth by `auth`, whose result is handed back.
pub fn register<A>(auth: impl FnOnce(&mut Registry) -> A) -> (Instruments, A) {
    let mut registry = registry();
    let streams = Streams::register(&mut registry);
    let auth = auth(&mut registry);
    let deliveries = Deliveries::register(&mut registry);
    let history_evicted = BackplaneMetrics::register_history_evicted(&mut registry);
    let latencies = Latencies::register(&mut registry);
    let backplane = BackplaneMetrics::register(&mut registry, history_evicted);
    register_build(&mut registry);
    let hub = HubMetrics {
        streams,
        deliveries,
        latencies,
    };
    let instruments = Instruments {
        registry,
        hub: Arc::new(hub),
        backplane: Arc::new(backplane),
    };
    (instruments, auth)
}

/// Every metric the hub counts. Created with the hub; lives as long as it.
pub struct HubMetrics {
    streams: Streams,
    deliveries: Deliveries,
    latencies: Latencies,
}

impl std::fmt::Debug for HubMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HubMetrics")
    }
}

/// Streams and publishes: the families registered first.
struct Streams {
    subscribers: Gauge,
    live_topics: Gauge,
    streams_parked: Gauge,
    phase: [Gauge; Phase::VARIANTS.len()],
    subscriptions_opened: Counter,
    subscriptions_closed: [Counter; SubscriptionEnd::VARIANTS.len()],
    publish_requests: [Counter; PublishOutcome::VARIANTS.len()],
    events_published: [Counter; PublishOutcome::VARIANTS.len()],
    idempotent_publishes: [Counter; IdempotencyOutcome::VARIANTS.len()],
}

/// What reaches subscribers: registered after auth's families.
struct Deliveries {
    deliveries: Counter,
    sent_bytes: Counter,
    replays: [Counter; ReplayTrigger::VARIANTS.len()],
    gap_frames: [Counter; GapReason::VARIANTS.len()],
}

/// Registered after the backplane's evictions.
struct Latencies {
    lagged: Counter,
    publish_duration: Histogram,
    fanout_latency: Histogram,
}

impl Streams {
    fn register(registry: &mut Registry) -> Self {
        let subscribers = Gauge::default();
        registry.register(
            "subscribers_connected",
            "Subscriptions open on this process (streams holding a subscriber slot)",
            subscribers.clone(),
        );
        let live_topics = Gauge::default();
        registry.register(
            "live_topics",
            "Topics with at least one subscriber on this process",
            live_topics.clone(),
        );
        let streams_parked = Gauge::default();
        registry.register(
            "streams_parked",
            "Streams a writer shard holds now (stream.shards): idle live streams without a task of their own",
            streams_parked.clone(),
        );
        let phase_family = Family::<Label, Gauge>::default();
        let phase = std::array::from_fn(|i| {
            let phase = Phase::VARIANTS[i];
            phase_family
                .get_or_create(&[("phase", phase.as_str())])
                .clone()
        });
        registry.register(
            "drain_phase",
            "1 for the current drain phase: serving, draining (readiness fails) or closing (streams ending)",
            phase_family,
        );

        let subscriptions_opened = Counter::default();
        registry.register(
            "subscriptions_opened",
            "SSE streams answered 200, shed ones included",
            subscriptions_opened.clone(),
        );
        let subscriptions_closed = labelled::<SubscriptionEnd, _>(
            registry,
            "subscriptions_closed",
            "SSE streams ended, by reason; opened - closed = streams open now",
            "reason",
        );
        let publish_requests = labelled::<PublishOutcome, _>(
            registry,
            "publish_requests",
            "Publish requests answered, by outcome (from the status code)",
            "outcome",
        );
        let events_published = labelled::<PublishOutcome, _>(
            registry,
            "events_published",
            "Events in publish requests the hub handled, by outcome (a batch counts each event)",
            "outcome",
        );
        let idempotent_publishes = labelled::<IdempotencyOutcome, _>(
            registry,
            "idempotent_publishes",
            "Publishes that carried an Idempotency-Key, by outcome: published, replayed from the \
             first publish's record, refused while in flight, refused for a reused key",
            "outcome",
        );
        Self {
            subscribers,
            live_topics,
            streams_parked,
            phase,
            subscriptions_opened,
            subscriptions_closed,
            publish_requests,
            events_published,
            idempotent_publishes,
        }
    }
}

impl Deliveries {
    fn register(registry: &mut Registry) -> Self {
        let deliveries = Counter::default();
        registry.register(
            "deliveries",
            "Events written to subscriber streams (one per event per subscriber, replays included)",
            deliveries.clone(),
        );
        let sent_bytes = Counter::default();
        registry.register_with_unit(
            "sent",
            "Bytes written to SSE streams: events, gap frames, heartbeats, stream open and close lines",
            Unit::Bytes,
            sent_bytes.clone(),
        );
        let replays = labelled::<ReplayTrigger, _>(
            registry,
            "history_replays",
            "Reads of history for a subscriber: on resume (Last-Event-ID), after it lagged, or after a backplane resync",
            "trigger",
        );
        let gap_frames = labelled::<GapReason, _>(
            registry,
            "gap_frames",
            "Gap frames sent (events a subscriber could not be given), by reason",
            "reason",
        );
        Self {
            deliveries,
            sent_bytes,
            replays,
            gap_frames,
        }
    }
}

impl Latencies {
    fn register(registry: &mut Registry) -> Self {
        let lagged = Counter::default();
        registry.register(
            "lagged_subscribers",
            "Times a subscriber fell a whole live queue (stream.queue) behind and caught up from history",
            lagged.clone(),
        );

        let publish_duration = Histogram::new(PUBLISH_DURATION_BUCKETS);
        registry.register_with_unit(
            "publish_request_duration",
            "Time to answer a publish request, from routing (headers read) to the answer, body read included",
            Unit::Seconds,
            publish_duration.clone(),
        );
        let fanout_latency = Histogram::new(FANOUT_LATENCY_BUCKETS);
        registry.register_with_unit(
            "fanout_latency",
            "From an event's acceptance (id assigned) to its hand-off to this process's subscriber queues",
            Unit::Seconds,
            fanout_latency.clone(),
        );
        Self {
            lagged,
            publish_duration,
            fanout_latency,
        }
    }
}

impl HubMetrics {
    /// A writer shard took a stream (`1`) or gave one back (`-1`).
    pub fn streams_parked_by(&self, change: i64) {
        self.streams.streams_parked.inc_by(change);
    }

    pub fn subscription_opened(&self) {
        self.streams.subscriptions_opened.inc();
    }

    pub fn subscription_closed(&self, end: SubscriptionEnd) {
        self.streams.subscriptions_closed[end as usize].inc();
    }

    /// One written batch: `events` deliveries in `bytes` bytes.
    #[inline]
    pub fn delivered(&self, events: u64, bytes: usize) {
        if events > 0 {
            self.deliveries.deliveries.inc_by(events);
        }
        self.deliveries.sent_bytes.inc_by(bytes as u64);
    }

    /// Bytes written that carry no event (heartbeats, stream open and close).
    #[inline]
    pub fn sent(&self, bytes: usize) {
        self.deliveries.sent_bytes.inc_by(bytes as u64);
    }

    pub fn replayed(&self, trigger: ReplayTrigger) {
        self.deliveries.replays[trigger as usize].inc();
    }

    pub fn gap_frame(&self, reason: GapReason) {
        self.deliveries.gap_frames[reason as usize].inc();
    }

    pub fn lagged(&self) {
        self.latencies.lagged.inc();
    }

    pub fn events_published(&self, outcome: PublishOutcome, events: usize) {
        self.streams.events_published[outcome as usize].inc_by(events as u64);
    }

    pub fn idempotent_publish(&self, outcome: IdempotencyOutcome) {
        self.streams.idempotent_publishes[outcome as usize].inc();
    }

    pub fn publish_request(&self, outcome: PublishOutcome, took: Duration) {
        self.streams.publish_requests[outcome as usize].inc();
        self.latencies.publish_duration.observe(took.as_secs_f64());
    }

    pub fn fanned_out(&self, latency: Duration) {
        self.latencies.fanout_latency.observe(latency.as_secs_f64());
    }

    /// Sets the gauges that mirror hub state, before a scrape.
    pub fn set_state(&self, snapshot: Snapshot) {
        let streams = &self.streams;
        streams.subscribers.set(snapshot.subscribers as i64);
        streams.live_topics.set(snapshot.live_topics as i64);
        for (phase, gauge) in Phase::VARIANTS.iter().zip(&streams.phase) {
            gauge.set(i64::from(*phase == snapshot.phase));
        }
    }
}

/// The counters' values at one moment, read without going through the
/// exposition text (for `GET /v1/stats`; the console derives rates from two
/// readings). Totals since the hub started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CounterSnapshot {
    /// SSE streams answered 200, shed ones included.
    pub subscriptions_opened: u64,
    /// Of those, shed on arrival (at capacity, draining or rate limited).
    pub subscriptions_shed: u64,
    /// Publish requests answered 2xx.
    pub publish_requests_accepted: u64,
    /// Publish requests answered with an error status, whatever the reason.
    pub publish_requests_rejected: u64,
    /// Events accepted (a batch counts each of its events).
    pub events_accepted: u64,
    /// Events written to subscriber streams.
    pub deliveries: u64,
    /// Bytes written to SSE streams.
    pub sent_bytes: u64,
    /// Times a subscriber fell a whole live queue behind.
    pub lagged: u64,
    /// Gap frames sent, every reason.
    pub gap_frames: u64,
    /// Reads of history for a subscriber, every trigger (resume, lag, resync).
    pub history_replays: u64,
}

impl HubMetrics {
    pub fn counters(&self) -> CounterSnapshot {
        let total = |counters: &[Counter]| counters.iter().map(Counter::get).sum::<u64>();
        let accepted = PublishOutcome::Accepted as usize;
        let requests = total(&self.streams.publish_requests);
        let requests_accepted = self.streams.publish_requests[accepted].get();
        CounterSnapshot {
            subscriptions_opened: self.streams.subscriptions_opened.get(),
            subscriptions_shed: ShedReason::VARIANTS
                .iter()
                .map(|reason| self.streams.subscriptions_closed[reason.end() as usize].get())
                .sum(),
            publish_requests_accepted: requests_accepted,
            publish_requests_rejected: requests - requests_accepted,
            events_accepted: self.streams.events_published[accepted].get(),
            deliveries: self.deliveries.deliveries.get(),
            sent_bytes: self.deliveries.sent_bytes.get(),
            lagged: self.latencies.lagged.get(),
            gap_frames: total(&self.deliveries.gap_frames),
            history_replays: total(&self.deliveries.replays),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::render;

    fn snapshot() -> Snapshot {
        Snapshot {
            subscribers: 3,
            live_topics: 1,
            phase: Phase::Draining,
        }
    }

    /// The families of a process without auth, and its exposition.
    struct Process(Instruments);

    impl Process {
        fn new() -> Self {
            Self(register(|_| ()).0)
        }

        fn render(&self, snapshot: Snapshot, openmetrics: bool) -> String {
            self.0.hub.set_state(snapshot);
            render(&self.0.registry, openmetrics)
        }
    }

    impl std::ops::Deref for Process {
        type Target = HubMetrics;

        fn deref(&self) -> &HubMetrics {
            &self.0.hub
        }
    }

    #[test]
    fn classic_text_names_counters_with_total_and_drops_openmetrics_lines() {
        let metrics = Process::new();
        metrics.delivered(5, 100);
        let text = metrics.render(snapshot(), false);
        assert!(
            text.contains("# TYPE ssehub_deliveries_total counter\n"),
            "{text}"
        );
        assert!(text.contains("\nssehub_deliveries_total 5\n"), "{text}");
        assert!(
            text.contains("# TYPE ssehub_sent_bytes_total counter\n"),
            "{text}"
        );
        assert!(text.contains("# TYPE ssehub_build_info gauge\n"), "{text}");
        assert!(
            text.contains("ssehub_drain_phase{phase=\"draining\"} 1\n"),
            "{text}"
        );
        assert!(
            !text.contains("# EOF") && !text.contains("# UNIT"),
            "{text}"
        );
    }

    #[test]
    fn openmetrics_text_ends_with_eof() {
        let text = Process::new().render(snapshot(), true);
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert!(
            text.contains("# TYPE ssehub_deliveries counter\n"),
            "{text}"
        );
    }

    #[test]
    fn the_counter_snapshot_reads_the_same_counters_as_the_exposition() {
        let metrics = Process::new();
        metrics.delivered(3, 120);
        metrics.sent(10);
        metrics.gap_frame(GapReason::Lagged);
        metrics.gap_frame(GapReason::UnknownEpoch);
        metrics.lagged();
        metrics.publish_request(PublishOutcome::Accepted, Duration::ZERO);
        metrics.publish_request(PublishOutcome::RejectedTooLarge, Duration::ZERO);
        metrics.publish_request(PublishOutcome::Unavailable, Duration::ZERO);
        metrics.events_published(PublishOutcome::Accepted, 4);
        metrics.events_published(PublishOutcome::RejectedTooLarge, 1);
        metrics.subscription_opened();
        metrics.subscription_opened();
        metrics.subscription_closed(SubscriptionEnd::ShedCapacity);
        metrics.subscription_closed(SubscriptionEnd::ShedRateLimited);
        metrics.subscription_closed(SubscriptionEnd::ClientGone);
        metrics.replayed(ReplayTrigger::Resume);
        assert_eq!(
            metrics.counters(),
            CounterSnapshot {
                subscriptions_opened: 2,
                subscriptions_shed: 2,
                publish_requests_accepted: 1,
                publish_requests_rejected: 2,
                events_accepted: 4,
                deliveries: 3,
                sent_bytes: 130,
                lagged: 1,
                gap_frames: 2,
                history_replays: 1,
            }
        );
    }

    #[test]
    fn every_labelled_series_exists_from_the_start() {
        let text = Process::new().render(snapshot(), false);
        for &reason in SubscriptionEnd::VARIANTS {
            let series = format!(
                "ssehub_subscriptions_closed_total{{reason=\"{}\"}} 0\n",
                reason.as_str()
            );
            assert!(text.contains(&series), "{series} missing from {text}");
        }
        assert!(
            text.contains("ssehub_gap_frames_total{reason=\"lagged\"} 0\n"),
            "{text}"
        );
    }

    #[test]
    fn the_console_shed_count_counts_every_shed_reason_and_nothing_else() {
        let metrics = Process::new();
        for &reason in ShedReason::VARIANTS {
            metrics.subscription_closed(reason.end());
        }
        metrics.subscription_closed(SubscriptionEnd::ClientGone);
        metrics.subscription_closed(SubscriptionEnd::Drained);
        assert_eq!(
            metrics.counters().subscriptions_shed,
            ShedReason::VARIANTS.len() as u64
        );
    }

    #[test]
    fn label_values_are_the_snake_case_names_of_their_variants() {
        assert_eq!(
            SubscriptionEnd::ShedRateLimited.as_str(),
            "shed_rate_limited"
        );
        assert_eq!(
            PublishOutcome::RejectedTooLarge.as_str(),
            "rejected_too_large"
        );
        assert_eq!(Phase::Draining.as_str(), "draining");
    }
}
