//! One trace across two replicas: a publish on A, its fan-out on B, seen by
//! the test OTLP receiver that both real binaries export to.

use std::time::Duration;

use serde_json::{Value, json};

use super::replicas::redis_server;
use super::server::Persistence;
use crate::support::helpers::Subscriber;
use crate::support::otlp::{Collector, Protocol};
use crate::support::process::HubProcess;

fn traced_replica(name: &str, redis: &str, collector: &str) -> HubProcess {
    HubProcess::start(&[
        ("SSEHUB_BACKPLANE__KIND", "redis"),
        ("SSEHUB_BACKPLANE__REDIS__URL", redis),
        ("SSEHUB_DRAIN__DELAY", "0s"),
        ("SSEHUB_DRAIN__SPREAD", "100ms"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", collector),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ("OTEL_SERVICE_NAME", name),
    ])
}

async fn wait_ready(client: &reqwest::Client, hub: &HubProcess) {
    for _ in 0..200 {
        if client
            .get(hub.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status()
            == 200
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("never ready: {}", hub.log_text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_on_one_replica_and_its_fan_out_on_another_are_one_trace() {
    let server = redis_server(Persistence::None).await;
    let collector = Collector::start(Protocol::Grpc).await;
    let endpoint = collector.endpoint();
    let a = traced_replica("replica-a", &server.url(), &endpoint);
    let b = traced_replica("replica-b", &server.url(), &endpoint);
    let client = reqwest::Client::new();
    wait_ready(&client, &a).await;
    wait_ready(&client, &b).await;
    let response = client
        .get(b.url("/v1/events?topic=traced"))
        .send()
        .await
        .unwrap();
    let mut on_b = Subscriber::from_response(response).await;

    let trace_id = format!("{:032x}", fastrand::u128(1..));
    let caller = format!("00-{trace_id}-{:016x}-01", fastrand::u64(1..));
    let response = client
        .post(a.url("/v1/topics/traced/events"))
        .header("traceparent", caller)
        .json(&json!({"data": "hello"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let id = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(on_b.next().await.id, id);

    for hub in [a, b] {
        hub.signal("TERM");
        let (status, _, log) = hub.exit_within(Duration::from_secs(20)).await;
        assert!(status.success(), "{log}");
    }
    let spans = collector.spans();
    let in_trace: Vec<_> = spans.iter().filter(|s| s.trace_id == trace_id).collect();
    let accept = in_trace
        .iter()
        .find(|s| s.name == "hub.accept" && s.service_name == "replica-a")
        .unwrap_or_else(|| panic!("A's accept span: {in_trace:#?}"));
    let fan_out_on_b = in_trace
        .iter()
        .find(|s| s.name == "hub.fan_out" && s.service_name == "replica-b")
        .unwrap_or_else(|| panic!("B's fan-out span in the publish's trace: {in_trace:#?}"));
    assert_eq!(
        fan_out_on_b.parent_span_id, accept.span_id,
        "parented across Redis"
    );
    assert_eq!(fan_out_on_b.attribute("messaging.message.id"), id);
    assert_eq!(fan_out_on_b.attribute_number("ssehub.fan_out.receivers"), 1);
    assert!(
        in_trace
            .iter()
            .any(|s| s.name == "hub.fan_out" && s.service_name == "replica-a"),
        "A fans out its own publish too (from the channel): {in_trace:#?}"
    );
}
