//! Traces exported by the real binary to a test OTLP receiver, over gRPC and
//! over HTTP/protobuf: span names, parent/child structure, attributes, a
//! caller's `traceparent` honoured, subscriptions linked to publishes, and
//! the last spans flushed at exit.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::helpers::Subscriber;
use crate::support::otlp::{Collector, KIND_INTERNAL, KIND_SERVER, Protocol, ReceivedSpan};
use crate::support::process::HubProcess;

/// A W3C trace context a caller might send.
struct RemoteParent {
    trace_id: String,
    span_id: String,
}

impl RemoteParent {
    fn new() -> Self {
        Self {
            trace_id: format!("{:032x}", fastrand::u128(1..)),
            span_id: format!("{:016x}", fastrand::u64(1..)),
        }
    }

    fn traceparent(&self) -> String {
        format!("00-{}-{}-01", self.trace_id, self.span_id)
    }
}

/// Starts the binary with tracing to `collector`, set either by the standard
/// variables or by ssehub's own keys.
fn start_traced_hub(collector: &Collector, protocol: Protocol, by_config: bool) -> HubProcess {
    let endpoint = collector.endpoint();
    let mut env = vec![
        ("SSEHUB_DRAIN__DELAY", "0s"),
        ("SSEHUB_DRAIN__SPREAD", "100ms"),
        ("SSEHUB_DRAIN__TIMEOUT", "5s"),
    ];
    if by_config {
        env.extend([
            ("SSEHUB_TELEMETRY__OTLP_ENDPOINT", endpoint.as_str()),
            ("SSEHUB_TELEMETRY__PROTOCOL", protocol.as_env()),
            ("SSEHUB_TELEMETRY__SERVICE_NAME", "ssehub-under-test"),
        ]);
    } else {
        env.extend([
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol.as_env()),
            ("OTEL_SERVICE_NAME", "ssehub-under-test"),
        ]);
    }
    HubProcess::start(&env)
}

async fn subscribe(
    client: &reqwest::Client,
    hub: &HubProcess,
    last_event_id: Option<&str>,
) -> Subscriber {
    let mut request = client.get(hub.url("/v1/events?topic=traced"));
    if let Some(id) = last_event_id {
        request = request.header("Last-Event-ID", id);
    }
    Subscriber::from_response(request.send().await.unwrap()).await
}

/// SIGTERM, then the exit: the drain ends the streams and the exit flushes
/// the spans still buffered (the batch delay is 5 s, the exit much sooner).
async fn drain_and_exit(hub: HubProcess) {
    hub.signal("TERM");
    let (status, _, log) = hub.exit_within(Duration::from_secs(20)).await;
    assert!(status.success(), "exit status {status:?}: {log}");
}

fn one<'a>(
    spans: &'a [ReceivedSpan],
    what: &str,
    test: impl Fn(&ReceivedSpan) -> bool,
) -> &'a ReceivedSpan {
    let found: Vec<_> = spans.iter().filter(|span| test(span)).collect();
    assert_eq!(
        found.len(),
        1,
        "expected one {what}, found {found:#?} among {spans:#?}"
    );
    found[0]
}

async fn a_publish_is_traced_from_the_caller_to_its_subscribers(
    protocol: Protocol,
    by_config: bool,
) {
    let collector = Collector::start(protocol).await;
    let hub = start_traced_hub(&collector, protocol, by_config);
    let client = reqwest::Client::new();
    let mut live = subscribe(&client, &hub, None).await;

    let caller = RemoteParent::new();
    let response = client
        .post(hub.url("/v1/topics/traced/events"))
        .header("traceparent", caller.traceparent())
        .header("tracestate", "caller=1")
        .json(&json!({"data": "hello"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let id = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(live.next().await.id, id);
    // An id from another system: a gap frame, then the event, whose
    // publish the subscription links to.
    let mut resumed = subscribe(&client, &hub, Some("from-another-system")).await;
    assert_eq!(resumed.next().await.event, "gap");
    assert_eq!(resumed.next().await.id, id);

    drain_and_exit(hub).await;
    let spans = collector.spans();
    assert!(
        spans
            .iter()
            .all(|span| span.service_name == "ssehub-under-test"),
        "service.name: {spans:#?}"
    );

    // The publish: server span (child of the caller) > accept > fan-out,
    // and nothing else in that trace (no span per delivery).
    let in_trace: Vec<_> = spans
        .iter()
        .filter(|span| span.trace_id == caller.trace_id)
        .cloned()
        .collect();
    let server = one(&in_trace, "publish server span", |s| {
        s.name == "POST /v1/topics/{topic}/events"
    });
    assert_eq!(server.kind, KIND_SERVER);
    assert_eq!(
        server.parent_span_id, caller.span_id,
        "child of the caller's span"
    );
    assert_eq!(server.trace_state, "caller=1", "tracestate carried");
    assert_eq!(server.attribute("http.request.method"), "POST");
    assert_eq!(server.attribute("http.route"), "/v1/topics/{topic}/events");
    assert_eq!(server.attribute("url.path"), "/v1/topics/traced/events");
    assert_eq!(server.attribute_number("http.response.status_code"), 202);
    assert_eq!(server.attribute("network.protocol.version"), "1.1");
    assert_eq!(server.attribute("client.address"), "127.0.0.1");

    let accept = one(&in_trace, "accept span", |s| s.name == "hub.accept");
    assert_eq!(accept.parent_span_id, server.span_id);
    assert_eq!(accept.kind, KIND_INTERNAL);
    assert_eq!(accept.attribute("messaging.destination.name"), "traced");
    assert_eq!(accept.attribute("messaging.message.id"), id);
    assert_eq!(accept.attribute_number("messaging.message.body.size"), 5);

    let fan_out = one(&in_trace, "fan-out span", |s| s.name == "hub.fan_out");
    assert_eq!(
        fan_out.parent_span_id, accept.span_id,
        "the event carried the accept's context"
    );
    assert_eq!(fan_out.attribute("messaging.message.id"), id);
    assert_eq!(
        fan_out.attribute_number("ssehub.fan_out.receivers"),
        1,
        "one subscriber was attached when it was sent"
    );
    assert_eq!(in_trace.len(), 3, "only these three: {in_trace:#?}");

    // The subscriptions: one span each, from connect to close, a child of
    // its own request's server span, with totals recorded at close.
    let subscriptions: Vec<_> = spans
        .iter()
        .filter(|s| s.name == "hub.subscription")
        .collect();
    assert_eq!(subscriptions.len(), 2, "{subscriptions:#?}");
    for subscription in &subscriptions {
        let request = one(&spans, "subscribe server span", |s| {
            s.span_id == subscription.parent_span_id
        });
        assert_eq!(request.name, "GET /v1/events");
        assert_eq!(request.kind, KIND_SERVER);
        assert_eq!(request.trace_id, subscription.trace_id);
        assert_eq!(request.attribute_number("http.response.status_code"), 200);
        assert_eq!(
            subscription.attribute("messaging.destination.name"),
            "traced"
        );
        assert_eq!(subscription.attribute_number("ssehub.events"), 1);
        assert_eq!(subscription.attribute("ssehub.end"), "drained");
        assert!(subscription.attribute_number("ssehub.bytes") > 0);
    }
    let live_span = one(&spans, "live subscription", |s| {
        s.name == "hub.subscription"
            && s.attributes.get("ssehub.resume").map(String::as_str) == Some("live")
    });
    assert!(live_span.links.is_empty(), "no gap, no link");
    assert_eq!(live_span.attribute_number("ssehub.gaps"), 0);
    assert!(
        live_span.start_nanos < accept.start_nanos && live_span.end_nanos > fan_out.end_nanos,
        "the subscription spans the publish"
    );
    let resumed_span = one(&spans, "resumed subscription", |s| {
        s.name == "hub.subscription"
            && s.attributes.get("ssehub.resume").map(String::as_str) == Some("foreign_id")
    });
    assert_eq!(resumed_span.attribute_number("ssehub.gaps"), 1);
    assert_eq!(resumed_span.attribute_number("ssehub.replays"), 1);
    assert_eq!(
        resumed_span.links,
        vec![(caller.trace_id.clone(), accept.span_id.clone())],
        "linked to the publish it resumed at, not parented by it"
    );
    assert_ne!(resumed_span.trace_id, caller.trace_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_a_grpc_collector_named_by_the_standard_variables() {
    a_publish_is_traced_from_the_caller_to_its_subscribers(Protocol::Grpc, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_an_http_protobuf_collector_named_by_the_config() {
    a_publish_is_traced_from_the_caller_to_its_subscribers(Protocol::HttpProtobuf, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_an_http_protobuf_collector_named_by_the_standard_variables() {
    a_publish_is_traced_from_the_caller_to_its_subscribers(Protocol::HttpProtobuf, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otel_sdk_disabled_turns_tracing_off() {
    let collector = Collector::start(Protocol::Grpc).await;
    let endpoint = collector.endpoint();
    let hub = HubProcess::start(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ("OTEL_SDK_DISABLED", "true"),
        ("SSEHUB_DRAIN__DELAY", "0s"),
    ]);
    let client = reqwest::Client::new();
    let response = client
        .post(hub.url("/v1/topics/traced/events"))
        .header("traceparent", RemoteParent::new().traceparent())
        .json(&json!({"data": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let log = hub.log_text();
    drain_and_exit(hub).await;
    assert_eq!(collector.exports(), 0, "nothing exported");
    assert!(!log.contains("exporting traces"), "{log}");
}
