//! Log lines of the real binary: JSON that parses, trace and span ids while
//! a trace is active, and no secrets.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::otlp::{Collector, Protocol};
use crate::support::process::HubProcess;

const PUBLISH_KEY: &str = "s3cret-publish-key";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_lines_carry_the_trace_of_the_request_they_were_logged_in() {
    let collector = Collector::start(Protocol::Grpc).await;
    let endpoint = collector.endpoint();
    let keys = format!("[\"{PUBLISH_KEY}\"]");
    let mut hub = HubProcess::start(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ("RUST_LOG", "info,ssehub::http=debug"),
        ("SSEHUB_AUTH__PUBLISH_KEYS", keys.as_str()),
        ("SSEHUB_DRAIN__DELAY", "0s"),
    ]);
    let trace_id = format!("{:032x}", fastrand::u128(1..));
    let response = reqwest::Client::new()
        .post(hub.url("/v1/topics/logged/events"))
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .header("authorization", format!("Bearer {PUBLISH_KEY}"))
        .json(&json!({"data": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);

    hub.signal("TERM");
    let hub = tokio::task::spawn_blocking(move || {
        assert!(hub.wait_exit(Duration::from_secs(20)).is_some(), "exits");
        hub
    })
    .await
    .unwrap();
    let lines: Vec<Value> = hub
        .log
        .lock()
        .unwrap()
        .iter()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect();
    let access = lines
        .iter()
        .find(|line| line["message"] == "request" && line["path"] == "/v1/topics/logged/events")
        .unwrap_or_else(|| panic!("no access log line: {lines:#?}"));
    assert_eq!(access["level"], "DEBUG");
    assert_eq!(access["status"], 202);
    assert_eq!(access["trace_id"], trace_id.as_str());
    // The span id is that of the request's server span, as exported.
    let server = collector
        .spans()
        .into_iter()
        .find(|span| span.trace_id == trace_id && span.name.starts_with("POST"))
        .expect("the server span was exported");
    assert_eq!(access["span_id"], server.span_id.as_str());

    let startup = lines
        .iter()
        .find(|line| {
            line["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("listening on"))
        })
        .unwrap();
    assert!(
        startup.get("trace_id").is_none(),
        "no trace outside a request: {startup}"
    );
    assert!(
        lines
            .iter()
            .any(|line| line["message"] == "exporting traces over OTLP"),
        "the log says where traces go"
    );
    let text = hub.log_text();
    assert!(
        !text.contains(PUBLISH_KEY),
        "a publish key was logged: {text}"
    );
}

#[test]
fn text_is_the_default_format() {
    // A port already taken: the hub logs why it can't listen, and exits.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_ssehub"));
    for (key, _) in std::env::vars() {
        if key.starts_with("SSEHUB_") || key.starts_with("OTEL_") || key == "RUST_LOG" {
            command.env_remove(key);
        }
    }
    let output = command
        .env("SSEHUB_LISTEN", taken.local_addr().unwrap().to_string())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let line = stderr
        .lines()
        .find(|line| line.contains("cannot listen"))
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(line.contains("ERROR"), "{line}");
    assert!(
        serde_json::from_str::<Value>(line).is_err(),
        "text, not JSON: {line}"
    );
}
