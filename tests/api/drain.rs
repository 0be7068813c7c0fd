//! Graceful drain of the real binary on SIGTERM.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::helpers::{read_to_end, spawn_app};
use crate::support::process::HubProcess;

/// Polls readiness until it fails (the signal is handled asynchronously,
/// within milliseconds); returns the 503 answer.
async fn wait_not_ready(client: &reqwest::Client, hub: &HubProcess) -> reqwest::Response {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let ready = client.get(hub.url("/readyz")).send().await.unwrap();
        if ready.status() == 503 {
            return ready;
        }
        assert!(
            Instant::now() < deadline,
            "readiness still {}",
            ready.status()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn data_lines(text: &str) -> Vec<u64> {
    text.lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .map(|data| data.parse().unwrap())
        .collect()
}

fn ends_with_retry_hint(text: &str) -> bool {
    text.rsplit_once("retry: ").is_some_and(|(_, tail)| {
        tail.strip_suffix("\n\n")
            .is_some_and(|ms| ms.parse::<u64>().is_ok())
    })
}

async fn wait_for_subscribers(client: &reqwest::Client, hub: &HubProcess, count: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let health: serde_json::Value = client
            .get(hub.url("/healthz"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if health["subscribers"].as_u64() == Some(count) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "subscribers never reached {count}: {health}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_stream_delivers_everything_accepted_then_ends_streams_spread_out() {
    const SUBSCRIBERS: usize = 200;
    let (delay, spread) = (Duration::from_secs(1), Duration::from_secs(2));
    let hub = HubProcess::start(&[
        ("SSEHUB_DRAIN__DELAY", "1s"),
        ("SSEHUB_DRAIN__SPREAD", "2s"),
        ("SSEHUB_DRAIN__TIMEOUT", "10s"),
    ]);
    let client = reqwest::Client::new();
    let mut readers = Vec::new();
    for _ in 0..SUBSCRIBERS {
        let response = client
            .get(hub.url("/v1/events?topic=drain"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        readers.push(tokio::spawn(read_to_end(response)));
    }
    wait_for_subscribers(&client, &hub, SUBSCRIBERS as u64).await;

    // A publisher keeps publishing through the signal until it is refused;
    // it records what was answered 2xx.
    let accepted = Arc::new(Mutex::new(Vec::<u64>::new()));
    let refused_status = Arc::new(Mutex::new(None));
    let publisher = {
        let (accepted, refused_status) = (accepted.clone(), refused_status.clone());
        let url = hub.url("/v1/topics/drain/events");
        let client = client.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            for n in 0..200_000u64 {
                if started.elapsed() > Duration::from_secs(30) {
                    break;
                }
                match client.post(&url).json(&json!({ "data": n })).send().await {
                    Ok(response) if response.status() == 202 => accepted.lock().unwrap().push(n),
                    Ok(response) => {
                        *refused_status.lock().unwrap() = Some(response.status().as_u16());
                        break;
                    }
                    Err(_) => break,
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;

    let signalled = Instant::now();
    hub.signal("TERM");
    let accepted_at_signal = accepted.lock().unwrap().len();

    // Readiness fails at once; liveness doesn't.
    let ready = wait_not_ready(&client, &hub).await;
    assert!(ready.headers().contains_key("retry-after"));
    assert_eq!(
        client
            .get(hub.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    let (status, _, _) = hub.exit_within(Duration::from_secs(15)).await;
    let exited_after = signalled.elapsed();
    assert_eq!(status.code(), Some(0));
    assert!(
        exited_after <= delay + spread + Duration::from_secs(1),
        "exit took {exited_after:?}"
    );
    println!("drain: exit {exited_after:?} after SIGTERM (delay 1s, spread 2s)");

    publisher.await.unwrap();
    let accepted = accepted.lock().unwrap().clone();
    assert!(
        accepted.len() > accepted_at_signal,
        "publishing went on during drain.delay"
    );
    assert_eq!(
        *refused_status.lock().unwrap(),
        Some(503),
        "then publishes were refused"
    );

    let mut ends = Vec::new();
    for reader in readers {
        let end = reader.await.unwrap();
        assert!(end.clean, "a stream was cut instead of ended");
        assert_eq!(
            data_lines(&end.text),
            accepted,
            "every 2xx event, in order, once"
        );
        assert!(
            ends_with_retry_hint(&end.text),
            "no closing retry hint: {:?}",
            &end.text[end.text.len().saturating_sub(80)..]
        );
        ends.push(end.ended_at);
    }
    let first = *ends.iter().min().unwrap();
    let last = *ends.iter().max().unwrap();
    let window = last - first;
    println!("drain: stream ends spread over {window:?} (drain.spread 2s)");
    assert!(
        window >= spread.mul_f64(0.8),
        "ends bunched within {window:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn during_drain_publishes_get_503_and_subscribes_a_retry_hint() {
    let hub = HubProcess::start(&[
        ("SSEHUB_DRAIN__DELAY", "1s"),
        ("SSEHUB_DRAIN__SPREAD", "4s"),
        ("SSEHUB_DRAIN__TIMEOUT", "10s"),
    ]);
    let client = reqwest::Client::new();
    // One keep-alive connection, opened before the signal: the listener
    // closes during drain, connections already open go on. One connection
    // by construction, not a pool's choice: a pool may open a new one
    // (refused) while the old one is still on its way back to it.
    let mut kept = OneConnection::open(hub.addr).await;
    let mut streams = Vec::new();
    for _ in 0..4 {
        let other = reqwest::Client::new();
        let response = other
            .get(hub.url("/v1/events?topic=t"))
            .send()
            .await
            .unwrap();
        streams.push(tokio::spawn(read_to_end(response)));
    }
    assert_eq!(kept.request("GET", "/healthz", None).await.0, 200);

    hub.signal("TERM");
    // drain.delay: not ready, but still serving.
    wait_not_ready(&client, &hub).await;
    let publish = kept
        .request(
            "POST",
            "/v1/topics/t/events",
            Some(json!({"data": "during delay"})),
        )
        .await;
    assert_eq!(publish.0, 202);

    tokio::time::sleep(Duration::from_millis(1300)).await;
    // Closing: the same connection now gets refusals a client can act on.
    let (status, headers, _) = kept
        .request(
            "POST",
            "/v1/topics/t/events",
            Some(json!({"data": "too late"})),
        )
        .await;
    assert_eq!(status, 503);
    assert!(headers.contains_key("retry-after"));
    let (status, _, text) = kept.request("GET", "/v1/events?topic=t", None).await;
    assert_eq!(status, 200);
    assert!(
        text.starts_with("retry: ") && text.ends_with("\n\n") && !text.contains("data:"),
        "{text:?}"
    );
    assert_eq!(kept.request("GET", "/healthz", None).await.0, 200);
    // New connections are refused.
    let fresh = reqwest::Client::new().get(hub.url("/healthz")).send().await;
    assert!(fresh.is_err(), "a new connection was accepted during drain");

    for stream in streams {
        let end = stream.await.unwrap();
        assert!(end.clean);
        assert_eq!(data_lines_text(&end.text), ["during delay"]);
    }
    let (status, _, _) = hub.exit_within(Duration::from_secs(15)).await;
    assert_eq!(status.code(), Some(0));
}

/// An HTTP/1.1 client on exactly one connection.
struct OneConnection {
    sender: hyper::client::conn::http1::SendRequest<http_body_util::Full<bytes::Bytes>>,
}

impl OneConnection {
    async fn open(addr: std::net::SocketAddr) -> Self {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(connection);
        Self { sender }
    }

    /// Status, headers and the whole body (read within 5 s).
    async fn request(
        &mut self,
        method: &str,
        path: &str,
        json: Option<serde_json::Value>,
    ) -> (u16, reqwest::header::HeaderMap, String) {
        use http_body_util::BodyExt;
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", "localhost");
        let body = match json {
            Some(json) => {
                request = request.header("content-type", "application/json");
                bytes::Bytes::from(json.to_string())
            }
            None => bytes::Bytes::new(),
        };
        self.sender.ready().await.unwrap();
        let response = self
            .sender
            .send_request(request.body(http_body_util::Full::new(body)).unwrap())
            .await
            .unwrap();
        let (parts, body) = response.into_parts();
        let body = tokio::time::timeout(Duration::from_secs(5), body.collect())
            .await
            .expect("the body ended within 5 s")
            .unwrap()
            .to_bytes();
        (
            parts.status.as_u16(),
            parts.headers,
            String::from_utf8(body.to_vec()).unwrap(),
        )
    }
}

fn data_lines_text(text: &str) -> Vec<&str> {
    text.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_shorter_than_the_spread_ends_the_rest_at_the_deadline() {
    let hub = HubProcess::start(&[
        ("SSEHUB_DRAIN__DELAY", "0s"),
        ("SSEHUB_DRAIN__SPREAD", "20s"),
        ("SSEHUB_DRAIN__TIMEOUT", "1s"),
    ]);
    let client = reqwest::Client::new();
    let mut streams = Vec::new();
    for _ in 0..50 {
        let response = client
            .get(hub.url("/v1/events?topic=t"))
            .send()
            .await
            .unwrap();
        streams.push(tokio::spawn(read_to_end(response)));
    }
    wait_for_subscribers(&client, &hub, 50).await;

    let signalled = Instant::now();
    hub.signal("TERM");
    let (status, _, log) = hub.exit_within(Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(0));
    let took = signalled.elapsed();
    assert!(took < Duration::from_secs(5), "exit took {took:?}");
    assert!(log.contains("drain.timeout reached"), "{log}");
    for stream in streams {
        let end = stream.await.unwrap();
        assert!(end.clean, "cut streams still end cleanly");
        assert!(ends_with_retry_hint(&end.text));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_exits_at_once() {
    let hub = HubProcess::start(&[
        ("SSEHUB_DRAIN__DELAY", "20s"),
        ("SSEHUB_DRAIN__TIMEOUT", "60s"),
    ]);
    let client = reqwest::Client::new();
    let _stream = client
        .get(hub.url("/v1/events?topic=t"))
        .send()
        .await
        .unwrap();
    hub.signal("TERM");
    tokio::time::sleep(Duration::from_millis(300)).await;
    hub.signal("TERM");
    let (status, took, _) = hub.exit_within(Duration::from_secs(3)).await;
    assert_eq!(status.code(), Some(130));
    assert!(took < Duration::from_secs(2), "took {took:?}");
}

#[tokio::test]
async fn an_in_process_drain_reports_what_it_closed() {
    let app = spawn_app().await;
    let first = app.subscribe(&["t"]).await;
    let second = app.subscribe(&["t"]).await;
    let report = app.shut_down().await;
    assert_eq!(report.streams_at_signal, 2);
    assert_eq!(report.streams_closed, 2);
    assert_eq!(report.streams_cut, 0);
    drop((first, second));
}
