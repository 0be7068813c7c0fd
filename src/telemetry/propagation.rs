//! Trace context in and out of HTTP headers and events: the W3C
//! `traceparent` and `tracestate` values, read from a request's headers or
//! an event's [`TraceContext`], and written from a span into one. The only
//! part of `telemetry` that `hub` and `http` use (through the re-exports in
//! `telemetry`), besides the span target.

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::model::TraceContext;

/// The trace context of `span`, to travel with events; `None` when the span
/// is not traced.
pub fn trace_context(span: &Span) -> Option<TraceContext> {
    if span.is_disabled() {
        return None;
    }
    let context = span.context();
    if !context.span().span_context().is_valid() {
        return None;
    }
    let mut headers = Headers::default();
    TraceContextPropagator::new().inject_context(&context, &mut headers);
    Some(TraceContext::new(
        headers.traceparent?,
        headers.tracestate.unwrap_or_default(),
    ))
}

/// Makes `trace` the parent of `span` (which must not have started yet).
pub fn set_parent(span: &Span, trace: &TraceContext) {
    if span.is_disabled() {
        return;
    }
    let _ = span.set_parent(extract(trace));
}

/// Adds a link from `span` to the span that `trace` names.
pub fn add_link(span: &Span, trace: &TraceContext) {
    if span.is_disabled() {
        return;
    }
    let context = extract(trace);
    span.add_link(context.span().span_context().clone());
}

/// Makes the remote parent named by request headers the parent of `span`.
pub fn set_parent_from_headers(span: &Span, headers: &poem::http::HeaderMap) {
    if span.is_disabled() {
        return;
    }
    let context =
        TraceContextPropagator::new().extract(&opentelemetry_http::HeaderExtractor(headers));
    let _ = span.set_parent(context);
}

fn extract(trace: &TraceContext) -> opentelemetry::Context {
    TraceContextPropagator::new().extract(trace)
}

impl Extractor for TraceContext {
    fn get(&self, key: &str) -> Option<&str> {
        match key {
            "traceparent" => Some(self.traceparent()),
            "tracestate" => Some(self.tracestate()).filter(|s| !s.is_empty()),
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        vec!["traceparent", "tracestate"]
    }
}

#[derive(Default)]
struct Headers {
    traceparent: Option<String>,
    tracestate: Option<String>,
}

impl Injector for Headers {
    fn set(&mut self, key: &str, value: String) {
        match key {
            "traceparent" => self.traceparent = Some(value),
            "tracestate" => self.tracestate = Some(value),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_context_round_trips_through_the_propagator() {
        let trace = TraceContext::new(
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "vendor=value",
        );
        let context = extract(&trace);
        let span = context.span();
        let span_context = span.span_context();
        assert_eq!(
            span_context.trace_id().to_string(),
            "0af7651916cd43dd8448eb211c80319c"
        );
        assert!(span_context.is_remote() && span_context.is_sampled());
        assert_eq!(span_context.trace_state().header(), "vendor=value");
    }
}
