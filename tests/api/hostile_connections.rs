//! Connections that cost the hub a descriptor or a seat without sending it
//! anything useful: HTTP/2 prefaces with nothing after them, subscribes that
//! carry a body, and keep-alive connections between requests. Against the
//! real binary; each test prints its figure.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::helpers::{PATIENCE, within};
use crate::support::process::HubProcess;
use crate::support::raw::RawClient;

/// The HTTP/2 connection preface (RFC 9113 §3.4), with nothing after it:
/// not even the client's SETTINGS frame.
const HTTP2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

const HEALTHZ: &str = "GET /healthz HTTP/1.1\r\nHost: hub\r\n\r\n";

/// The problem document of a raw answer, after checking its status.
fn problem(raw: &str, status: u16) -> Value {
    assert!(
        raw.starts_with(&format!("HTTP/1.1 {status} "))
            || raw.starts_with(&format!("HTTP/1.0 {status} ")),
        "expected {status}, got:\n{}",
        &raw[..raw.len().min(400)]
    );
    let body = raw.split_once("\r\n\r\n").expect("a head").1;
    let problem: Value = serde_json::from_str(body).expect("a problem document");
    assert_eq!(problem["status"], status);
    problem
}

#[tokio::test]
async fn http2_prefaces_with_nothing_after_them_are_closed_and_the_hub_recovers() {
    const OPEN_FILES: u64 = 96;
    let hub = HubProcess::start_with_open_file_limit(
        &[("SSEHUB_LIMITS__HEADER_READ_TIMEOUT", "1s")],
        OPEN_FILES,
    );
    let started = Instant::now();
    // Twice what the hub has descriptors for: the rest wait in the listen
    // queue until the first ones are closed.
    let mut prefaces = Vec::new();
    for _ in 0..OPEN_FILES * 2 {
        let mut client = RawClient::connect(hub.addr).await;
        client.send(HTTP2_PREFACE).await;
        prefaces.push(client);
    }
    let closing: Vec<_> = prefaces
        .into_iter()
        .map(|mut client| tokio::spawn(async move { client.read_to_close(PATIENCE * 2).await }))
        .collect();
    let mut still_open = 0;
    for task in closing {
        if !task.await.unwrap() {
            still_open += 1;
        }
    }
    let all_closed = started.elapsed();
    assert_eq!(
        still_open,
        0,
        "{still_open} of {} preface-only connections still open",
        OPEN_FILES * 2
    );
    let recovered = within(PATIENCE, || async {
        matches!(
            tokio::time::timeout(Duration::from_secs(1), reqwest::get(hub.url("/healthz"))).await,
            Ok(Ok(response)) if response.status() == 200
        )
    })
    .await;
    println!(
        "h2c prefaces: {} connections on a {OPEN_FILES}-descriptor hub all closed by the server \
         {all_closed:?} after they were opened (header timeout 1 s); served again after {recovered:?}",
        OPEN_FILES * 2
    );
    assert!(recovered.is_some(), "no request served after the prefaces");
}

#[tokio::test]
async fn http2_preface_alone_is_closed_within_about_the_header_timeout() {
    let hub = HubProcess::start(&[
        ("SSEHUB_LIMITS__HEADER_READ_TIMEOUT", "1s"),
        ("SSEHUB_LIMITS__KEEP_ALIVE_TIMEOUT", "60s"),
    ]);
    let mut client = RawClient::connect(hub.addr).await;
    let started = Instant::now();
    client.send(HTTP2_PREFACE).await;
    assert!(
        client.read_to_close(PATIENCE).await,
        "a preface-only connection stayed open for {PATIENCE:?}"
    );
    println!(
        "h2c preface alone: closed after {:?} (header timeout 1 s, keep-alive 60 s)",
        started.elapsed()
    );
}

/// Subscribes whose request carries a body, each on its own connection:
/// `Content-Length`, chunked, and HTTP/1.0 with `Content-Length`. Each asks
/// for its connection to close after the answer, so a refusal ends in a
/// close and a stream (which stays open) can be told from it.
fn subscribes_with_a_body() -> Vec<String> {
    let mut heads = Vec::new();
    for n in 0..100 {
        let head = match n % 3 {
            0 => {
                "GET /v1/events?topic=body HTTP/1.1\r\nHost: hub\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhello"
            }
            1 => {
                "GET /v1/events?topic=body HTTP/1.1\r\nHost: hub\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n\
                 5\r\nhello\r\n0\r\n\r\n"
            }
            _ => {
                "GET /v1/events?topic=body HTTP/1.0\r\nHost: hub\r\nContent-Length: 5\r\n\r\nhello"
            }
        };
        heads.push(head.to_owned());
    }
    heads
}

#[tokio::test]
async fn a_subscribe_with_a_body_never_holds_a_seat_after_its_client_leaves() {
    // Without heartbeats nothing is written to an idle stream: only the
    // read side could tell that its client has gone.
    let hub = HubProcess::start(&[
        ("SSEHUB_HEARTBEAT__INTERVAL", "0s"),
        ("SSEHUB_LIMITS__MAX_SUBSCRIBERS", "100"),
    ]);
    let mut clients = Vec::new();
    for head in subscribes_with_a_body() {
        let mut client = RawClient::connect(hub.addr).await;
        client.send(head).await;
        clients.push(client);
    }
    // A refusal closes the connection; a stream keeps it open.
    let answers: Vec<_> = clients
        .into_iter()
        .map(|mut client| {
            tokio::spawn(async move {
                let closed = client.read_to_close(Duration::from_secs(3)).await;
                (closed.then(|| client.text()), client)
            })
        })
        .collect();
    let mut refused = 0;
    let mut clients = Vec::new();
    for answer in answers {
        let (answer, client) = answer.await.unwrap();
        clients.push(client);
        let Some(answer) = answer else { continue };
        let problem = problem(&answer, 400);
        assert_eq!(problem["type"], "urn:ssehub:problem:malformed_request");
        assert!(
            problem["detail"].as_str().unwrap().contains("body"),
            "{problem}"
        );
        refused += 1;
    }
    drop(clients);
    let freed = within(PATIENCE, || async { hub.subscribers().await == 0.0 }).await;
    println!(
        "subscribes with a body: {refused} of 100 refused with 400; seats back to 0 after {freed:?} \
         once their clients left (heartbeats off)"
    );
    assert!(
        freed.is_some(),
        "{} seats still held by departed clients",
        hub.subscribers().await
    );
    assert_eq!(refused, 100);
    // Every seat is free for an ordinary subscriber.
    let mut ordinary = RawClient::connect(hub.addr).await;
    ordinary
        .send(crate::support::raw::subscribe_head("topic=body"))
        .await;
    ordinary.read_until(": ssehub stream open", PATIENCE).await;
}

#[tokio::test]
async fn a_get_with_a_body_to_a_route_without_get_is_405_not_400() {
    // The body refusal is the stream routes' own: routing still answers
    // first for a method a path doesn't take.
    let hub = HubProcess::start(&[]);
    let mut client = RawClient::connect(hub.addr).await;
    client
        .send(
            "GET /v1/topics/t/events HTTP/1.1\r\nHost: hub\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: 10\r\n\r\n{\"data\":1}",
        )
        .await;
    assert!(client.read_to_close(PATIENCE).await);
    let answer = client.text();
    assert!(answer.starts_with("HTTP/1.1 405"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("\r\nallow: post"),
        "{answer}"
    );
}

#[tokio::test]
async fn an_idle_keep_alive_connection_outlives_the_header_timeout_and_closes_at_its_own() {
    let hub = HubProcess::start(&[
        ("SSEHUB_LIMITS__HEADER_READ_TIMEOUT", "1s"),
        ("SSEHUB_LIMITS__KEEP_ALIVE_TIMEOUT", "4s"),
    ]);
    let mut client = RawClient::connect(hub.addr).await;
    client.send(HEALTHZ).await;
    client.read_until("\"status\":\"ok\"", PATIENCE).await;

    // Twice the header timeout idle: still usable (a proxy reusing it from
    // its pool gets an answer, not a reset).
    tokio::time::sleep(Duration::from_secs(2)).await;
    client.send(HEALTHZ).await;
    client
        .read_until_count("\"status\":\"ok\"", 2, PATIENCE)
        .await;
    let answered = client.received.len();

    // Then, left idle, it is closed at the keep-alive timeout, quietly.
    let idle_from = Instant::now();
    assert!(
        client.read_to_close(PATIENCE).await,
        "an idle keep-alive connection was never closed"
    );
    let idle_for = idle_from.elapsed();
    println!(
        "keep-alive: usable after 2 s idle (header timeout 1 s); closed after {idle_for:?} idle \
         (keep-alive timeout 4 s)"
    );
    assert_eq!(
        client.received.len(),
        answered,
        "an idle connection was answered something before its close: {}",
        client.text()
    );
    assert!(
        idle_for > Duration::from_secs(2),
        "closed after {idle_for:?}: the header timeout, not the keep-alive one"
    );
}

#[tokio::test]
async fn a_half_sent_head_on_a_kept_alive_connection_still_times_out_at_the_header_timeout() {
    let hub = HubProcess::start(&[
        ("SSEHUB_LIMITS__HEADER_READ_TIMEOUT", "1s"),
        ("SSEHUB_LIMITS__KEEP_ALIVE_TIMEOUT", "30s"),
    ]);
    let mut client = RawClient::connect(hub.addr).await;
    client.send(HEALTHZ).await;
    client.read_until("\"status\":\"ok\"", PATIENCE).await;
    let answered = client.received.len();
    tokio::time::sleep(Duration::from_millis(500)).await;

    let started = Instant::now();
    client.send("GET /healthz HTTP/1.1\r\nHost: hu").await;
    assert!(client.read_to_close(PATIENCE).await, "a half head was kept");
    let cut_after = started.elapsed();
    let after = String::from_utf8_lossy(&client.received[answered..]).into_owned();
    let problem = problem(&after, 408);
    assert_eq!(problem["type"], "urn:ssehub:problem:request_head_timeout");
    println!(
        "half head after keep-alive: 408 {cut_after:?} after its first byte (header timeout 1 s)"
    );
    assert!(
        cut_after < Duration::from_secs(15),
        "the head waited for the keep-alive timeout: {cut_after:?}"
    );
}
