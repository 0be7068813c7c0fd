//! The counters, gauges and histograms behind `GET /metrics`, named the
//! Prometheus way (`ssehub_` prefix, `_total` counters, units in names).
//!
//! Hot-path rule: nothing here takes a lock or allocates per delivery. Every
//! labelled series is created once, here, and its handle kept, so recording
//! is one atomic add; deliveries and bytes are added once per written batch,
//! not per event per subscriber. Histograms (a mutex inside) are only
//! observed per publish. Gauges that mirror hub state (subscribers, phase)
//! are read when scraped, so they cost nothing in between.
//!
//! Topic names never become label values: the number of topics is unbounded.

use std::fmt::Write as _;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};
use strum::VariantArray;

use crate::auth::{Action, RateLimit, rejection_reasons};
use crate::hub::{Phase, ShedReason};
use crate::model::GapReason;

/// One label, e.g. `reason="client_gone"`; values are always from a fixed list.
type Label = [(&'static str, &'static str); 1];

/// The content type of the classic Prometheus text format.
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
/// The content type of the OpenMetrics text format.
pub const OPENMETRICS_TEXT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Publish request duration buckets, seconds: a memory publish takes well
/// under a millisecond, one through Redis a few; seconds mean trouble.
const PUBLISH_DURATION_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Fan-out latency buckets, seconds: tens of microseconds in one process, a
/// Redis round trip (about a millisecond) across replicas.
const FANOUT_LATENCY_BUCKETS: [f64; 16] = [
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 0.5, 1.0,
];

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
}

impl SubscriptionEnd {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// What became of a publish request (by status) or of the events in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::VariantArray, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum PublishOutcome {
    /// 2xx: in history and on its way to subscribers.
    Accepted,
    /// 400, 415, 422: a malformed request or a value the hub can't take.
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

    /// The outcome an HTTP status stands for.
    pub fn from_status(status: u16) -> Self {
        match status {
            200..=299 => Self::Accepted,
            400 | 408 | 415 | 422 => Self::RejectedInvalid,
            401 | 403 => Self::RejectedUnauthorized,
            413 => Self::RejectedTooLarge,
            429 => Self::RejectedRateLimited,
            503 => Self::Unavailable,
            504 => Self::OutcomeUnknown,
            _ => Self::Error,
        }
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

/// Hub state read at scrape time.
#[derive(Debug, Clone, Copy)]
pub struct Snapshot {
    pub subscribers: usize,
    pub live_topics: usize,
    pub phase: Phase,
    /// The backplane can accept publishes (always, for memory).
    pub backplane_up: bool,
}

/// Every metric of one hub. Created with the hub; lives as long as it.
pub struct Metrics {
    registry: Registry,
    subscribers: Gauge,
    live_topics: Gauge,
    phase: [Gauge; Phase::VARIANTS.len()],
    subscriptions_opened: Counter,
    subscriptions_closed: [Counter; SubscriptionEnd::VARIANTS.len()],
    publish_requests: [Counter; PublishOutcome::VARIANTS.len()],
    events_published: [Counter; PublishOutcome::VARIANTS.len()],
    /// By `Action` (rows) and `auth::rejection_reasons()` (columns).
    auth_rejections: Vec<Counter>,
    rate_limited: [Counter; RateLimit::VARIANTS.len()],
    deliveries: Counter,
    sent_bytes: Counter,
    replays: [Counter; ReplayTrigger::VARIANTS.len()],
    gap_frames: [Counter; GapReason::VARIANTS.len()],
    history_evicted: [Counter; HistoryBound::VARIANTS.len()],
    lagged: Counter,
    publish_duration: Histogram,
    fanout_latency: Histogram,
    backplane_up: Gauge,
    backplane_reconnects: Counter,
    backplane_resyncs: Counter,
    backplane_publish_duration: Histogram,
    backplane_pubsub_lag: Histogram,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Registers a family with one label whose values are the variants of an
/// enum, and returns a handle per variant, indexed by `variant as usize`.
fn labelled<T, const N: usize>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    label: &'static str,
) -> [Counter; N]
where
    T: VariantArray + Copy + Into<&'static str>,
{
    assert_eq!(T::VARIANTS.len(), N, "one counter per variant of {name}");
    let family = Family::<Label, Counter>::default();
    let handles = std::array::from_fn(|i| {
        family
            .get_or_create(&[(label, T::VARIANTS[i].into())])
            .clone()
    });
    registry.register(name, help, family);
    handles
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("ssehub");

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
            &mut registry,
            "subscriptions_closed",
            "SSE streams ended, by reason; opened - closed = streams open now",
            "reason",
        );
        let publish_requests = labelled::<PublishOutcome, _>(
            &mut registry,
            "publish_requests",
            "Publish requests answered, by outcome (from the status code)",
            "outcome",
        );
        let events_published = labelled::<PublishOutcome, _>(
            &mut registry,
            "events_published",
            "Events in publish requests the hub handled, by outcome (a batch counts each event)",
            "outcome",
        );

        let rejection_family = Family::<[(&'static str, &'static str); 2], Counter>::default();
        let auth_rejections = Action::VARIANTS
            .iter()
            .flat_map(|action| {
                let family = &rejection_family;
                rejection_reasons().map(move |reason| {
                    family
                        .get_or_create(&[("action", action.label()), ("reason", reason)])
                        .clone()
                })
            })
            .collect();
        registry.register(
            "auth_rejections",
            "Requests refused for their credentials (401, 403), by action and reason",
            rejection_family,
        );
        let rate_limited = labelled::<RateLimit, _>(
            &mut registry,
            "rate_limited",
            "Requests over a rate limit: publishes answered 429, subscribes shed",
            "limit",
        );

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
            &mut registry,
            "history_replays",
            "Reads of history for a subscriber: on resume (Last-Event-ID), after it lagged, or after a backplane resync",
            "trigger",
        );
        let gap_frames = labelled::<GapReason, _>(
            &mut registry,
            "gap_frames",
            "Gap frames sent (events a subscriber could not be given), by reason",
            "reason",
        );
        let history_evicted = labelled::<HistoryBound, _>(
            &mut registry,
            "history_evicted_events",
            "Events evicted from history before their time to keep it within history.max_topics or history.max_bytes, by bound",
            "bound",
        );
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

        registry.register(
            "build",
            "The running ssehub build",
            Info::new([("version", env!("CARGO_PKG_VERSION"))]),
        );

        Self {
            registry,
            subscribers,
            live_topics,
            phase,
            subscriptions_opened,
            subscriptions_closed,
            publish_requests,
            events_published,
            auth_rejections,
            rate_limited,
            deliveries,
            sent_bytes,
            replays,
            gap_frames,
            history_evicted,
            lagged,
            publish_duration,
            fanout_latency,
            backplane_up,
            backplane_reconnects,
            backplane_resyncs,
            backplane_publish_duration,
            backplane_pubsub_lag,
        }
    }

    pub fn subscription_opened(&self) {
        self.subscriptions_opened.inc();
    }

    pub fn subscription_closed(&self, end: SubscriptionEnd) {
        self.subscriptions_closed[end as usize].inc();
    }

    /// A request refused for its credentials; `reason` is one of
    /// `auth::rejection_reasons()`.
    pub fn auth_rejected(&self, action: Action, reason: &str) {
        let reasons = rejection_reasons().count();
        if let Some(column) = rejection_reasons().position(|known| known == reason) {
            self.auth_rejections[action as usize * reasons + column].inc();
        }
    }

    pub fn rate_limited(&self, limit: RateLimit) {
        self.rate_limited[limit as usize].inc();
    }

    /// One written batch: `events` deliveries in `bytes` bytes.
    #[inline]
    pub fn delivered(&self, events: u64, bytes: usize) {
        if events > 0 {
            self.deliveries.inc_by(events);
        }
        self.sent_bytes.inc_by(bytes as u64);
    }

    /// Bytes written that carry no event (heartbeats, stream open and close).
    #[inline]
    pub fn sent(&self, bytes: usize) {
        self.sent_bytes.inc_by(bytes as u64);
    }

    pub fn replayed(&self, trigger: ReplayTrigger) {
        self.replays[trigger as usize].inc();
    }

    pub fn gap_frame(&self, reason: GapReason) {
        self.gap_frames[reason as usize].inc();
    }

    /// `events` evicted from history to stay within `bound`.
    pub fn history_evicted(&self, bound: HistoryBound, events: u64) {
        self.history_evicted[bound as usize].inc_by(events);
    }

    pub fn lagged(&self) {
        self.lagged.inc();
    }

    pub fn events_published(&self, outcome: PublishOutcome, events: usize) {
        self.events_published[outcome as usize].inc_by(events as u64);
    }

    pub fn publish_request(&self, outcome: PublishOutcome, took: Duration) {
        self.publish_requests[outcome as usize].inc();
        self.publish_duration.observe(took.as_secs_f64());
    }

    pub fn fanned_out(&self, latency: Duration) {
        self.fanout_latency.observe(latency.as_secs_f64());
    }

    pub fn backplane_reconnected(&self) {
        self.backplane_reconnects.inc();
    }

    pub fn backplane_resynced(&self) {
        self.backplane_resyncs.inc();
    }

    /// One publish call's round trip to the backplane's server.
    pub fn backplane_published(&self, took: Duration) {
        self.backplane_publish_duration.observe(took.as_secs_f64());
    }

    /// How long a message took from acceptance to this replica.
    pub fn backplane_message_lag(&self, lag: Duration) {
        self.backplane_pubsub_lag.observe(lag.as_secs_f64());
    }

    /// The exposition, OpenMetrics or classic Prometheus text.
    pub fn render(&self, snapshot: Snapshot, openmetrics: bool) -> String {
        self.subscribers.set(snapshot.subscribers as i64);
        self.live_topics.set(snapshot.live_topics as i64);
        self.backplane_up.set(i64::from(snapshot.backplane_up));
        for (phase, gauge) in Phase::VARIANTS.iter().zip(&self.phase) {
            gauge.set(i64::from(*phase == snapshot.phase));
        }
        let mut text = String::with_capacity(8 * 1024);
        // Writing into a String can't fail.
        let _ = encode(&mut text, &self.registry);
        if openmetrics {
            text
        } else {
            openmetrics_to_prometheus(&text)
        }
    }
}

/// Rewrites prometheus-client's OpenMetrics text as the classic Prometheus
/// text format (0.0.4), for scrapers that don't ask for OpenMetrics: the
/// samples are the same; only the metadata differs. A counter family is
/// named with its `_total` suffix, an info family becomes a gauge named
/// `…_info`, and `# UNIT` and `# EOF` go (0.0.4 has neither).
fn openmetrics_to_prometheus(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    // HELP comes before TYPE; hold it until the TYPE says how to name it.
    let mut help: Option<(&str, &str)> = None;
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            help = rest.split_once(' ').or(Some((rest, "")));
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            let (name, kind) = match kind {
                "counter" => (format!("{name}_total"), "counter"),
                "info" => (format!("{name}_info"), "gauge"),
                "stateset" | "gaugehistogram" | "unknown" => (name.to_owned(), "untyped"),
                other => (name.to_owned(), other),
            };
            if let Some((_, text)) = help.take() {
                let _ = writeln!(out, "# HELP {name} {text}");
            }
            let _ = writeln!(out, "# TYPE {name} {kind}");
            continue;
        }
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
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

impl Metrics {
    pub fn counters(&self) -> CounterSnapshot {
        let total = |counters: &[Counter]| counters.iter().map(Counter::get).sum::<u64>();
        let accepted = PublishOutcome::Accepted as usize;
        let requests = total(&self.publish_requests);
        let requests_accepted = self.publish_requests[accepted].get();
        CounterSnapshot {
            subscriptions_opened: self.subscriptions_opened.get(),
            subscriptions_shed: ShedReason::VARIANTS
                .iter()
                .map(|reason| self.subscriptions_closed[reason.end() as usize].get())
                .sum(),
            publish_requests_accepted: requests_accepted,
            publish_requests_rejected: requests - requests_accepted,
            events_accepted: self.events_published[accepted].get(),
            deliveries: self.deliveries.get(),
            sent_bytes: self.sent_bytes.get(),
            lagged: self.lagged.get(),
            gap_frames: total(&self.gap_frames),
            history_replays: total(&self.replays),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> Snapshot {
        Snapshot {
            subscribers: 3,
            live_topics: 1,
            phase: Phase::Draining,
            backplane_up: true,
        }
    }

    #[test]
    fn classic_text_names_counters_with_total_and_drops_openmetrics_lines() {
        let metrics = Metrics::new();
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
        let text = Metrics::new().render(snapshot(), true);
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert!(
            text.contains("# TYPE ssehub_deliveries counter\n"),
            "{text}"
        );
    }

    #[test]
    fn the_counter_snapshot_reads_the_same_counters_as_the_exposition() {
        let metrics = Metrics::new();
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
        let text = Metrics::new().render(snapshot(), false);
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
        let metrics = Metrics::new();
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
        assert_eq!(
            RateLimit::SubscribePerAddress.as_str(),
            "subscribe_per_address"
        );
        assert_eq!(Phase::Draining.as_str(), "draining");
    }
}
