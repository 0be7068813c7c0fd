//! Graceful drain of the real binary on SIGTERM.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::helpers::{PATIENCE, read_to_end, spawn_app};
use crate::support::process::HubProcess;
use crate::support::raw::{self, RawClient};

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
    // it records what was answered 2xx, and how its publishing ended.
    let accepted = Arc::new(Mutex::new(Vec::<u64>::new()));
    let refused = Arc::new(Mutex::new(None));
    let publisher = {
        let (accepted, refused) = (accepted.clone(), refused.clone());
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
                        *refused.lock().unwrap() = Some(Ok(response.status().as_u16()));
                        break;
                    }
                    Err(error) => {
                        *refused.lock().unwrap() = Some(Err(error.to_string()));
                        break;
                    }
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
    // Then publishes were refused: the kept-alive connection closed when
    // the listener did and a new one was refused, or a publish under way
    // at that moment got 503.
    let refused = refused.lock().unwrap().clone();
    assert!(
        matches!(refused, Some(Ok(503) | Err(_))),
        "publishing ended with {refused:?}"
    );
    println!("drain: the publisher's last answer: {refused:?}");

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
async fn when_the_listener_closes_open_connections_take_no_new_request() {
    let hub = HubProcess::start(&[
        ("SSEHUB_DRAIN__DELAY", "1s"),
        ("SSEHUB_DRAIN__SPREAD", "4s"),
        ("SSEHUB_DRAIN__TIMEOUT", "10s"),
    ]);
    let client = reqwest::Client::new();
    // Connections opened before the signal, each with a raw client so that
    // what the hub does with the connection itself shows: one idle between
    // requests (as in a proxy's pool), one carrying a stream, and one in the
    // middle of sending a publish's body.
    let mut idle = RawClient::connect(hub.addr).await;
    idle.send(raw::publish_request("t", "before")).await;
    assert_eq!(read_response(&mut idle).await.0, 202);
    let mut streaming = RawClient::connect(hub.addr).await;
    streaming.send(raw::subscribe_head("topic=t")).await;
    streaming.read_until("\r\n\r\n", PATIENCE).await;
    let late = raw::publish_request("t", "too late");
    let (late_head, late_rest) = late.split_at(late.len() - 6);
    let mut slow = RawClient::connect(hub.addr).await;
    slow.send(late_head).await;
    let mut streams = Vec::new();
    for _ in 0..4 {
        let response = reqwest::Client::new()
            .get(hub.url("/v1/events?topic=t"))
            .send()
            .await
            .unwrap();
        streams.push(tokio::spawn(read_to_end(response)));
    }
    wait_for_subscribers(&client, &hub, 5).await;

    hub.signal("TERM");
    // drain.delay: not ready, but still serving, kept connections too.
    wait_not_ready(&client, &hub).await;
    idle.send(raw::publish_request("t", "during delay")).await;
    assert_eq!(read_response(&mut idle).await.0, 202);

    // The listener closes, and with it the idle connection, at once and
    // without a word: a proxy's pooled connection goes, instead of carrying
    // requests here to be refused for the rest of the drain.
    hub.wait_until_refused().await;
    let received = idle.received.len();
    assert!(
        idle.read_to_close(Duration::from_secs(2)).await,
        "the idle connection was still open 2 s after the listener closed"
    );
    assert_eq!(idle.received.len(), received, "{}", idle.text());

    // A request under way gets an answer a client can act on, and the
    // connection closes after it.
    slow.send(late_rest).await;
    assert!(slow.read_to_close(Duration::from_secs(2)).await);
    let answer = slow.text().to_ascii_lowercase();
    assert!(answer.starts_with("http/1.1 503 "), "{answer}");
    assert!(answer.contains("\r\nretry-after: "), "{answer}");
    assert!(answer.contains("\r\nconnection: close\r\n"), "{answer}");

    // A stream ends at its slot, with what was accepted before, and its
    // connection closes after it: nothing more is served there.
    streaming
        .read_until("\r\n0\r\n\r\n", Duration::from_secs(10))
        .await;
    let ended = streaming.received.len();
    let _ = streaming
        .stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: hub\r\n\r\n")
        .await;
    assert!(streaming.read_to_close(Duration::from_secs(2)).await);
    assert_eq!(streaming.received.len(), ended, "{}", streaming.text());
    let text = streaming.text();
    assert!(text.contains("data: during delay\n"), "{text}");
    assert!(!text.contains("too late"), "{text}");

    for stream in streams {
        let end = stream.await.unwrap();
        assert!(end.clean);
        assert_eq!(data_lines_text(&end.text), ["during delay"]);
    }
    let (status, _, _) = hub.exit_within(Duration::from_secs(15)).await;
    assert_eq!(status.code(), Some(0));
}

/// Reads one response with a `Content-Length` body from `client`: its
/// status and its body; what follows it stays unread.
async fn read_response(client: &mut RawClient) -> (u16, String) {
    let start = client.received.len();
    loop {
        let text = String::from_utf8_lossy(&client.received[start..]).into_owned();
        if let Some(head_end) = text.find("\r\n\r\n") {
            let head = text[..head_end].to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length: "))
                .map_or(0, |value| value.trim().parse().unwrap());
            if text.len() >= head_end + 4 + length {
                let status = head[9..12].parse().unwrap();
                return (status, text[head_end + 4..head_end + 4 + length].to_owned());
            }
        }
        let mut chunk = [0u8; 4096];
        let read = tokio::time::timeout(PATIENCE, client.stream.read(&mut chunk))
            .await
            .expect("a whole response within the patience")
            .unwrap();
        assert!(read > 0, "closed mid-response: {}", client.text());
        client.received.extend_from_slice(&chunk[..read]);
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
