//! `GET /v1/stats`: the hub's figures as JSON, what the console shows.
//!
//! Read from the hub's own state and a [`CounterSnapshot`] of its counters,
//! never by parsing the Prometheus exposition. Counters are totals since the
//! hub started; a client derives rates from two readings.

use std::time::Instant;

use poem::web::Data;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi};

use super::ApiTags;
use crate::backplane::BackplaneKind;
use crate::hub::CounterSnapshot;
use crate::hub::{Hub, Phase, Readiness};

/// What the stats route knows besides the hub: fixed when the routes are built.
#[derive(Debug, Clone, Copy)]
pub struct StatsContext {
    /// The configured backplane (`backplane.kind`).
    pub backplane: BackplaneKind,
    /// When this hub began serving, for `uptime_seconds`.
    pub started: Instant,
}

/// The hub's figures at one moment.
#[derive(Debug, Object)]
pub struct Stats {
    /// The ssehub version.
    pub version: String,
    /// Whole seconds since this hub began serving.
    pub uptime_seconds: u64,
    /// Where the hub is in a drain.
    pub phase: DrainPhase,
    /// Ready for traffic: serving and the backplane available (what `/readyz` says).
    pub ready: bool,
    pub backplane: BackplaneStats,
    pub subscribers: SubscriberStats,
    /// Topics with at least one subscriber on this process.
    pub live_topics: u64,
    pub publishes: PublishStats,
    pub deliveries: DeliveryStats,
}

/// The drain phase of the hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
pub enum DrainPhase {
    /// Normal operation.
    Serving,
    /// Readiness fails so load balancers stop routing here; everything else works.
    Draining,
    /// Nothing new is accepted; open streams are being ended.
    Closing,
}

impl From<Phase> for DrainPhase {
    fn from(phase: Phase) -> Self {
        match phase {
            Phase::Serving => Self::Serving,
            Phase::Draining => Self::Draining,
            Phase::Closing => Self::Closing,
        }
    }
}

#[derive(Debug, Object)]
pub struct BackplaneStats {
    /// `memory` (one process) or `redis` (several replicas).
    pub kind: BackplaneKindName,
    /// False while the backplane can't accept publishes.
    pub available: bool,
}

/// The backplane kinds, as `backplane.kind` spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
pub enum BackplaneKindName {
    Memory,
    Redis,
}

impl From<BackplaneKind> for BackplaneKindName {
    fn from(kind: BackplaneKind) -> Self {
        match kind {
            BackplaneKind::Memory => Self::Memory,
            BackplaneKind::Redis => Self::Redis,
        }
    }
}

#[derive(Debug, Object)]
pub struct SubscriberStats {
    /// Streams open now.
    pub connected: u64,
    /// `limits.max_subscribers`: beyond it, subscribes are shed.
    pub limit: u64,
    /// Streams answered since the start, shed ones included.
    pub opened: u64,
    /// Subscribes shed on arrival (at the limit, draining or rate limited) since the start.
    pub shed: u64,
}

#[derive(Debug, Object)]
pub struct PublishStats {
    /// Events accepted since the start (a batch counts each event).
    pub events_accepted: u64,
    /// Publish requests answered 2xx since the start.
    pub requests_accepted: u64,
    /// Publish requests answered with an error since the start.
    pub requests_rejected: u64,
}

#[derive(Debug, Object)]
pub struct DeliveryStats {
    /// Events written to subscriber streams since the start (one per event
    /// per subscriber, replays included).
    pub events: u64,
    /// Bytes written to streams since the start.
    pub bytes: u64,
    /// Times a subscriber fell a whole live queue behind and caught up from history.
    pub lagged: u64,
    /// Gap frames sent: events some subscriber could not be given.
    pub gap_frames: u64,
    /// Reads of history for a subscriber (resume, lag, backplane resync).
    pub history_replays: u64,
}

#[derive(ApiResponse)]
pub enum StatsResponse {
    #[oai(status = 200)]
    Ok(Json<Stats>),
}

pub struct StatsApi;

#[OpenApi(tag = "ApiTags::Operations")]
impl StatsApi {
    /// The hub's figures (JSON)
    ///
    /// Subscribers, live topics, publish and delivery counters (totals since
    /// the start: derive rates from two readings), drain phase and backplane
    /// state. What the console at `/` shows; `/metrics` has the same counters
    /// for Prometheus.
    #[oai(path = "/v1/stats", method = "get")]
    async fn stats(&self, hub: Data<&Hub>, context: Data<&StatsContext>) -> StatsResponse {
        StatsResponse::Ok(Json(read(&hub, &context)))
    }
}

fn read(hub: &Hub, context: &StatsContext) -> Stats {
    let CounterSnapshot {
        subscriptions_opened,
        subscriptions_shed,
        publish_requests_accepted,
        publish_requests_rejected,
        events_accepted,
        deliveries,
        sent_bytes,
        lagged,
        gap_frames,
        history_replays,
    } = hub.metrics().counters();
    Stats {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        uptime_seconds: context.started.elapsed().as_secs(),
        phase: hub.lifecycle().phase().into(),
        ready: hub.readiness() == Readiness::Ready,
        backplane: BackplaneStats {
            kind: context.backplane.into(),
            available: hub.backplane().is_available(),
        },
        subscribers: SubscriberStats {
            connected: hub.subscriber_count() as u64,
            limit: hub.settings().max_subscribers as u64,
            opened: subscriptions_opened,
            shed: subscriptions_shed,
        },
        live_topics: hub.live_topic_count() as u64,
        publishes: PublishStats {
            events_accepted,
            requests_accepted: publish_requests_accepted,
            requests_rejected: publish_requests_rejected,
        },
        deliveries: DeliveryStats {
            events: deliveries,
            bytes: sent_bytes,
            lagged,
            gap_frames,
            history_replays,
        },
    }
}
