//! The HTTP server span of every request, the publish request metrics and a
//! debug-level access log line.
//!
//! The span follows OpenTelemetry's HTTP semantic conventions
//! (`http.request.method`, `http.route`, `http.response.status_code`,
//! `url.path`, …) and is the child of the caller's span when the request
//! carries a W3C `traceparent` (and `tracestate`), read with
//! opentelemetry-http's header extractor. poem's own `opentelemetry`
//! feature is not used: it pins an older OpenTelemetry.
//!
//! Errors raised below this middleware are turned into their problem
//! documents here, so that the span, the metrics and the client all see the
//! same final status.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use opentelemetry::trace::TraceContextExt;
use poem::PathPattern;
use poem::http::Method;
use poem::{Endpoint, IntoResponse, Middleware, Request, Response, Result};
use tracing::Instrument;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::error::problem_for_poem_error;
use super::publish_outcome;
use crate::hub::HubMetrics;
use crate::telemetry::{self, SPAN_TARGET};

pub struct Observe {
    metrics: Arc<HubMetrics>,
    routes: Arc<RouteTemplates>,
}

impl Observe {
    /// `spec_paths`: the routes as the OpenAPI spec writes them.
    pub fn new(metrics: Arc<HubMetrics>, spec_paths: impl IntoIterator<Item = String>) -> Self {
        Self {
            metrics,
            routes: Arc::new(RouteTemplates::new(spec_paths)),
        }
    }
}

impl<E: Endpoint> Middleware<E> for Observe {
    type Output = ObserveEndpoint<E>;

    fn transform(&self, inner: E) -> Self::Output {
        ObserveEndpoint {
            inner,
            metrics: self.metrics.clone(),
            routes: self.routes.clone(),
        }
    }
}

pub struct ObserveEndpoint<E> {
    inner: E,
    metrics: Arc<HubMetrics>,
    routes: Arc<RouteTemplates>,
}

/// `http.route` values. poem-openapi registers `/v1/topics/{topic}/events`
/// with poem's router as `/v1/topics/:param0/events`, which is what the
/// matched pattern says; this maps it back to the spec's spelling.
struct RouteTemplates(HashMap<String, String>);

impl RouteTemplates {
    fn new(spec_paths: impl IntoIterator<Item = String>) -> Self {
        Self(
            spec_paths
                .into_iter()
                .map(|path| {
                    let mut params = 0;
                    let pattern = path
                        .split('/')
                        .map(|segment| {
                            if segment.starts_with('{') {
                                params += 1;
                                format!(":param{}", params - 1)
                            } else {
                                segment.to_owned()
                            }
                        })
                        .collect::<Vec<_>>()
                        .join("/");
                    (pattern, path)
                })
                .collect(),
        )
    }

    fn template(&self, pattern: &str) -> String {
        self.0
            .get(pattern)
            .cloned()
            .unwrap_or_else(|| route_template(pattern))
    }
}

/// Every POST route publishes; these are their paths.
fn is_publish(method: &Method, path: &str) -> bool {
    method == Method::POST
        && (path == "/v1/events"
            || path == "/event-stream"
            || path == super::mercure::MERCURE_PATH
            || (path.starts_with("/v1/topics/") && path.ends_with("/events")))
}

/// `network.protocol.version` as the semantic conventions spell it.
fn protocol_version(version: poem::http::Version) -> &'static str {
    match version {
        poem::http::Version::HTTP_09 => "0.9",
        poem::http::Version::HTTP_10 => "1.0",
        poem::http::Version::HTTP_2 => "2",
        poem::http::Version::HTTP_3 => "3",
        _ => "1.1",
    }
}

/// poem writes path parameters as `:name`; the spec (and most tracing
/// backends) show `{name}`.
fn route_template(pattern: &str) -> String {
    pattern
        .split('/')
        .map(|segment| match segment.strip_prefix(':') {
            Some(name) => format!("{{{name}}}"),
            None => segment.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

impl<E: Endpoint> Endpoint for ObserveEndpoint<E> {
    type Output = Response;

    async fn call(&self, request: Request) -> Result<Self::Output> {
        let started = Instant::now();
        let method = request.method().clone();
        let publish = is_publish(&method, request.uri().path());
        let span = tracing::info_span!(
            target: SPAN_TARGET,
            "http.request",
            "otel.name" = method.as_str(),
            "otel.kind" = "server",
            "otel.status_code" = Empty,
            "http.request.method" = %method,
            "http.route" = Empty,
            "http.response.status_code" = Empty,
            "url.path" = request.uri().path(),
            "url.scheme" = "http",
            "network.protocol.version" = protocol_version(request.version()),
            "client.address" = Empty,
            "user_agent.original" = Empty,
        );
        if !span.is_disabled() {
            telemetry::set_parent_from_headers(&span, request.headers());
            if let Some(client) = request.remote_addr().as_socket_addr() {
                span.record("client.address", tracing::field::display(client.ip()));
            }
            if let Some(agent) = request
                .headers()
                .get(poem::http::header::USER_AGENT)
                .and_then(|value| value.to_str().ok())
            {
                span.record("user_agent.original", agent);
            }
        }
        // Only the access log needs its own copy of the path.
        let path = tracing::enabled!(target: "ssehub::http", tracing::Level::DEBUG)
            .then(|| request.uri().path().to_owned());
        let result = self
            .inner
            .call(request)
            .instrument(span.clone())
            .await
            .map(IntoResponse::into_response);
        let (route, response) = match result {
            Ok(response) => (response.data::<PathPattern>().cloned(), response),
            Err(error) => (
                error.data::<PathPattern>().cloned(),
                problem_for_poem_error(error),
            ),
        };
        let status = response.status().as_u16();
        let took = started.elapsed();
        if publish {
            publish_outcome::count_request(&self.metrics, status, took);
        }
        if !span.is_disabled() {
            if let Some(PathPattern(pattern)) = &route {
                let route = self.routes.template(pattern);
                // The span has started (it was entered), so its name is
                // changed on the OpenTelemetry span itself.
                span.context()
                    .span()
                    .update_name(format!("{method} {route}"));
                span.record("http.route", route);
            }
            span.record("http.response.status_code", status);
            if status >= 500 {
                span.record("otel.status_code", "error");
            }
        }
        span.in_scope(|| {
            tracing::debug!(
                target: "ssehub::http",
                method = %method,
                path = path.as_deref().unwrap_or(""),
                status,
                duration_ms = took.as_secs_f64() * 1000.0,
                "request"
            );
        });
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_read_like_the_spec() {
        let routes = RouteTemplates::new(["/v1/topics/{topic}/events".to_owned()]);
        assert_eq!(
            routes.template("/v1/topics/:param0/events"),
            "/v1/topics/{topic}/events"
        );
        assert_eq!(routes.template("/docs/:file"), "/docs/{file}");
        assert_eq!(routes.template("/v1/events"), "/v1/events");
    }

    #[test]
    fn only_post_routes_publish() {
        assert!(is_publish(&Method::POST, "/v1/topics/a.b/events"));
        assert!(is_publish(&Method::POST, "/v1/events"));
        assert!(is_publish(&Method::POST, "/event-stream"));
        assert!(!is_publish(&Method::GET, "/v1/events"));
        assert!(!is_publish(&Method::POST, "/metrics"));
    }
}
