//! What the hub tells operators: the spans of an accept, of a fan-out and of
//! a subscription, and the counters behind `/metrics`.
//!
//! Spans are `tracing` spans with target [`SPAN_TARGET`]; while tracing is
//! off they are disabled callsites and every call here on them is a no-op.
//! Nothing here runs per delivery except [`SubscriptionObserver::event`] (a
//! plain add on the subscriber's own struct); metrics are counted per
//! written batch (invariant "slow subscriber": nothing here waits).
//!
//! The trace context of a publish travels with its events
//! ([`Event::trace`]), so the fan-out span joins the publish's trace even
//! when a backplane delivers the event on another replica.
//!
//! A subscription is one span from connect to close, with its totals
//! recorded at close. It is *linked* to publishes rather than parented by
//! them (a subscription outlives any publish, and one span per delivery
//! would be one span per event per subscriber). Links are kept cheap: only
//! the publish at which delivery resumed after each gap is linked, at most
//! [`MAX_LINKS`] per subscription, because a gap is what an operator comes
//! to a subscription's trace to explain.

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use tracing::Span;
use tracing::field::Empty;

use super::{HubMetrics, ReplayTrigger, SubscriptionEnd};
use super::{PublishError, Receipt};
use crate::model::GapReason;
use crate::model::ResumePoint;
use crate::model::TopicName;
use crate::model::{Event, EventDraft};
use crate::telemetry::{self, SPAN_TARGET};

/// Most span links one subscription records (one per gap).
pub(super) const MAX_LINKS: u8 = 8;

/// The accept span of one publish call (one event or a batch).
pub(super) struct AcceptObserver {
    span: Span,
}

impl AcceptObserver {
    /// Opens the span and hands its trace context to the drafts.
    pub(super) fn start(drafts: &mut [EventDraft]) -> Self {
        let bytes: usize = drafts.iter().map(|draft| draft.data.len()).sum();
        let span = tracing::info_span!(
            target: SPAN_TARGET,
            "hub.accept",
            "messaging.system" = "ssehub",
            "messaging.operation.type" = "publish",
            "messaging.destination.name" = Empty,
            "messaging.message.id" = Empty,
            "messaging.message.body.size" = bytes,
            "messaging.batch.message_count" = Empty,
            "ssehub.last_event_id" = Empty,
            "ssehub.idempotency" = Empty,
            "otel.status_code" = Empty,
            "otel.status_description" = Empty,
        );
        if !span.is_disabled() {
            if let Some(first) = drafts.first()
                && drafts.iter().all(|draft| draft.topic == first.topic)
            {
                span.record("messaging.destination.name", first.topic.as_str());
            }
            if drafts.len() > 1 {
                span.record("messaging.batch.message_count", drafts.len());
            }
            let trace = telemetry::trace_context(&span);
            for draft in drafts.iter_mut() {
                draft.trace.clone_from(&trace);
            }
        }
        Self { span }
    }

    pub(super) fn span(&self) -> &Span {
        &self.span
    }

    /// Records the result on the span. (The events' outcome is counted by
    /// the caller, who also answers it: `http::publish_outcome`.)
    pub(super) fn finish(self, result: &Result<Receipt, PublishError>) {
        match result {
            Ok(Receipt::Replayed(ids)) => {
                // Nothing published now: the span names the recorded ids.
                self.span
                    .record("messaging.message.id", tracing::field::display(ids.first));
                self.span.record("ssehub.idempotency", "replayed");
            }
            Ok(Receipt::Published(events)) => {
                if let (Some(first), Some(last)) = (events.first(), events.last()) {
                    self.span
                        .record("messaging.message.id", tracing::field::display(first.id));
                    if events.len() > 1 {
                        self.span
                            .record("ssehub.last_event_id", tracing::field::display(last.id));
                    }
                }
            }
            Err(error) => {
                self.span.record("otel.status_code", "error");
                self.span
                    .record("otel.status_description", tracing::field::display(error));
            }
        }
    }
}

/// The fan-out span of one hand-off of accepted events to the live queues.
pub(super) struct FanOutObserver {
    span: Span,
}

impl FanOutObserver {
    pub(super) fn start(events: &[Arc<Event>]) -> Self {
        let span = tracing::info_span!(
            target: SPAN_TARGET,
            parent: None,
            "hub.fan_out",
            "messaging.system" = "ssehub",
            "messaging.operation.type" = "process",
            "messaging.destination.name" = Empty,
            "messaging.message.id" = Empty,
            "messaging.batch.message_count" = Empty,
            "ssehub.fan_out.receivers" = Empty,
        );
        if !span.is_disabled()
            && let Some(first) = events.first()
        {
            // The publish's trace, from this process or (with a backplane
            // that carries it) from another replica.
            if let Some(trace) = &first.trace {
                telemetry::set_parent(&span, trace);
            }
            if events.len() == 1 {
                span.record("messaging.destination.name", first.topic.as_str());
                span.record("messaging.message.id", tracing::field::display(first.id));
            } else {
                span.record("messaging.batch.message_count", events.len());
            }
        }
        Self { span }
    }

    /// `receivers`: the live queue receivers the sends reached, summed over
    /// the events. That is what is known at send time: the subscribers
    /// attached to the topic on this process, including ones that will find
    /// they lagged (and catch up from history) and ones whose client left
    /// but whose next write hasn't failed yet. Who lagged or got a gap is
    /// known only when each subscriber reads; it is on the subscription
    /// spans and in the metrics.
    pub(super) fn finish(self, metrics: &HubMetrics, events: &[Arc<Event>], receivers: usize) {
        if let Some(first) = events.first() {
            // Wall clocks: across replicas this includes their clock skew.
            let latency = SystemTime::now()
                .duration_since(first.accepted_at)
                .unwrap_or_default();
            metrics.fanned_out(latency);
        }
        self.span.record("ssehub.fan_out.receivers", receivers);
    }
}

/// One subscription's span and totals, from connect to close. Owned by the
/// subscription's delivery state, so it is dropped exactly when the stream
/// ends or its client goes away.
///
/// In C order: what each write touches comes first, so that a writer
/// shard, walking many parked streams per event, reads it in the cache
/// line it reads the stream's cursor in (see `hub::shards`).
#[repr(C)]
pub(super) struct SubscriptionObserver {
    /// Events pushed into the batch being built, counted when it is written.
    batch_events: u64,
    events: u64,
    bytes: u64,
    metrics: Arc<HubMetrics>,
    span: Span,
    lags: u64,
    replays: u64,
    gaps: u64,
    links: u8,
    end: SubscriptionEnd,
}

/// Topic names joined with `,`, formatted only if the span is recorded.
struct Topics<'a>(&'a [TopicName]);

impl fmt::Display for Topics<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, topic) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str(",")?;
            }
            f.write_str(topic.as_str())?;
        }
        Ok(())
    }
}

impl SubscriptionObserver {
    /// Counts the subscription as opened; its span's parent is the current
    /// span (the subscribe request's).
    pub(super) fn open(
        metrics: Arc<HubMetrics>,
        topics: &[TopicName],
        resume: &ResumePoint,
    ) -> Self {
        metrics.subscription_opened();
        let resume = match resume {
            ResumePoint::Live => "live",
            ResumePoint::After(_) => "after_id",
            ResumePoint::Foreign => "foreign_id",
            ResumePoint::Earliest => "earliest",
        };
        let span = tracing::info_span!(
            target: SPAN_TARGET,
            "hub.subscription",
            "messaging.system" = "ssehub",
            "messaging.operation.type" = "receive",
            "messaging.destination.name" = %Topics(topics),
            "ssehub.topics" = topics.len(),
            "ssehub.resume" = resume,
            "ssehub.events" = Empty,
            "ssehub.bytes" = Empty,
            "ssehub.lags" = Empty,
            "ssehub.replays" = Empty,
            "ssehub.gaps" = Empty,
            "ssehub.end" = Empty,
        );
        Self {
            metrics,
            span,
            batch_events: 0,
            events: 0,
            bytes: 0,
            lags: 0,
            replays: 0,
            gaps: 0,
            links: 0,
            end: SubscriptionEnd::ClientGone,
        }
    }

    /// One event went into the batch being built.
    #[inline]
    pub(super) fn event(&mut self) {
        self.batch_events += 1;
    }

    /// A batch of events (and gap frames) was handed to the connection.
    #[inline]
    pub(super) fn batch_written(&mut self, bytes: usize) {
        let events = self.batch_written_uncounted(bytes);
        self.metrics.delivered(events, bytes);
    }

    /// [`Self::batch_written`] for this subscription's totals only; its
    /// events are returned for the caller to add to the metrics, summed
    /// over many streams (a writer shard's one update per topic write,
    /// not two shared atomics per stream).
    #[inline]
    pub(super) fn batch_written_uncounted(&mut self, bytes: usize) -> u64 {
        let events = std::mem::take(&mut self.batch_events);
        self.events += events;
        self.bytes += bytes as u64;
        events
    }

    /// Bytes that carry no event (stream open, heartbeat, closing hint).
    pub(super) fn wrote(&mut self, bytes: usize) {
        self.bytes += bytes as u64;
        self.metrics.sent(bytes);
    }

    pub(super) fn replayed(&mut self, trigger: ReplayTrigger) {
        self.replays += 1;
        self.metrics.replayed(trigger);
    }

    pub(super) fn lagged(&mut self) {
        self.lags += 1;
        self.metrics.lagged();
    }

    /// A gap frame went out; `resumes_at` is the event delivery resumes with.
    pub(super) fn gap(&mut self, reason: GapReason, resumes_at: Option<&Arc<Event>>) {
        self.gaps += 1;
        self.metrics.gap_frame(reason);
        if self.links < MAX_LINKS
            && let Some(trace) = resumes_at.and_then(|event| event.trace.as_ref())
        {
            self.links += 1;
            telemetry::add_link(&self.span, trace);
        }
    }

    pub(super) fn ended(&mut self, end: SubscriptionEnd) {
        self.end = end;
    }

    /// Why the stream ended (`client_gone` until told otherwise).
    pub(super) fn end(&self) -> SubscriptionEnd {
        self.end
    }
}

impl Drop for SubscriptionObserver {
    fn drop(&mut self) {
        self.metrics.subscription_closed(self.end);
        if !self.span.is_disabled() {
            self.span.record("ssehub.events", self.events);
            self.span.record("ssehub.bytes", self.bytes);
            self.span.record("ssehub.lags", self.lags);
            self.span.record("ssehub.replays", self.replays);
            self.span.record("ssehub.gaps", self.gaps);
            self.span.record("ssehub.end", self.end.as_str());
        }
    }
}
