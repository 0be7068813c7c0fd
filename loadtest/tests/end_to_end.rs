//! The harness end to end against a tiny fake SSE server that can misbehave
//! on purpose: a clean server passes, and each kind of fault is caught and
//! counted, with a non-zero exit code for CI.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// What the fake server does wrong, per topic.
#[derive(Clone, Copy, Debug)]
enum Fault {
    None,
    /// Never delivers every n-th publish (but answers it 202).
    DropEvery(u64),
    /// Delivers every n-th publish twice.
    DuplicateEvery(u64),
    /// Holds each even-numbered publish back and delivers it after the next.
    SwapPairs,
}

#[derive(Default)]
struct Topic {
    subscribers: Vec<mpsc::UnboundedSender<Vec<u8>>>,
    published: u64,
    held: Option<Vec<u8>>,
}

type Topics = Arc<Mutex<HashMap<String, Topic>>>;

/// Serves `GET /sub/<topic>` as chunked SSE and `POST /pub/<topic>` (raw
/// body) on a keep-alive connection, like Nchan's URL scheme.
async fn start_fake_server(fault: Fault) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let topics: Topics = Arc::default();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::spawn(serve_connection(stream, topics.clone(), fault));
        }
    });
    address
}

async fn serve_connection(mut stream: TcpStream, topics: Topics, fault: Fault) {
    let mut buffer = Vec::new();
    loop {
        let Some(head_end) = read_until_head_end(&mut stream, &mut buffer).await else {
            return;
        };
        let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
        let mut words = head.split_whitespace();
        let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
        let content_length: usize = head
            .lines()
            .find_map(|line| {
                line.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().parse().unwrap())
            })
            .unwrap_or(0);
        while buffer.len() < head_end + content_length {
            let mut chunk = [0; 4096];
            let read = stream.read(&mut chunk).await.unwrap();
            if read == 0 {
                return;
            }
            buffer.extend_from_slice(&chunk[..read]);
        }
        let body = buffer[head_end..head_end + content_length].to_vec();
        buffer.drain(..head_end + content_length);
        if let (Some(topic), "GET") = (path.strip_prefix("/sub/"), method) {
            return stream_events(stream, topics, topic.to_owned()).await;
        }
        if let (Some(topic), "POST") = (path.strip_prefix("/pub/"), method) {
            publish(&topics, topic, &body, fault);
            stream
                .write_all(b"HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\nok")
                .await
                .unwrap();
            continue;
        }
        stream
            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
            .await
            .unwrap();
    }
}

async fn read_until_head_end(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<usize> {
    loop {
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            return Some(at + 4);
        }
        let mut chunk = [0; 4096];
        let read = stream.read(&mut chunk).await.ok()?;
        if read == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..read]);
    }
}

async fn stream_events(mut stream: TcpStream, topics: Topics, topic: String) {
    let (sender, mut events) = mpsc::unbounded_channel();
    // Registered before the head goes out: once the client sees 200, it's subscribed.
    topics
        .lock()
        .unwrap()
        .entry(topic)
        .or_default()
        .subscribers
        .push(sender);
    let head =
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n";
    if stream.write_all(head).await.is_err()
        || stream.write_all(b"6\r\n: ok\n\n\r\n").await.is_err()
    {
        return;
    }
    while let Some(frame) = events.recv().await {
        let chunk = [format!("{:x}\r\n", frame.len()).as_bytes(), &frame, b"\r\n"].concat();
        if stream.write_all(&chunk).await.is_err() {
            return;
        }
    }
}

fn publish(topics: &Topics, topic: &str, body: &[u8], fault: Fault) {
    let mut topics = topics.lock().unwrap();
    let state = topics.entry(topic.to_owned()).or_default();
    let number = state.published;
    state.published += 1;
    let frame = [format!("id: {number}\ndata: ").as_bytes(), body, b"\n\n"].concat();
    let frames = match fault {
        Fault::None => vec![frame],
        Fault::DropEvery(n) if number % n == n - 1 => vec![],
        Fault::DropEvery(_) => vec![frame],
        Fault::DuplicateEvery(n) if number % n == n - 1 => vec![frame.clone(), frame],
        Fault::DuplicateEvery(_) => vec![frame],
        Fault::SwapPairs if number.is_multiple_of(2) => {
            state.held = Some(frame);
            vec![]
        }
        Fault::SwapPairs => [Some(frame), state.held.take()]
            .into_iter()
            .flatten()
            .collect(),
    };
    for frame in frames {
        for subscriber in &state.subscribers {
            let _ = subscriber.send(frame.clone());
        }
    }
}

/// Runs the harness against the fake server; returns the exit code and the run's JSON record.
async fn run_harness(address: SocketAddr) -> (i32, serde_json::Value) {
    let dir = std::env::temp_dir().join(format!(
        "ssehub-loadtest-e2e-{}-{}",
        std::process::id(),
        address.port()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let scenario = dir.join("scenario.toml");
    // One publish connection: publishes are sequential, so every swap is an order violation.
    std::fs::write(
        &scenario,
        r#"
name = "e2e"
description = "20 subscribers on 2 topics, 40 events"
subscribers = 20
topics = 2
[connect]
settle = "200ms"
[publish]
rate_per_second = 400
count = 40
payload_bytes = 64
connections = 1
[drain]
timeout = "1s"
"#,
    )
    .unwrap();
    let json = dir.join("runs.jsonl");
    let harness = env!("CARGO_BIN_EXE_ssehub-loadtest");
    let output = tokio::task::spawn_blocking({
        let (scenario, json) = (scenario.clone(), json.clone());
        move || {
            Command::new(harness)
                .args([
                    "run",
                    scenario.to_str().unwrap(),
                    "--target",
                    "nchan",
                    "--quiet",
                ])
                .args([
                    "--base-url",
                    &format!("http://{address}"),
                    "--json-out",
                    json.to_str().unwrap(),
                ])
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let record = std::fs::read_to_string(&json).unwrap_or_else(|_| {
        panic!(
            "no JSON written; stdout: {}\nstderr: {}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    let _ = std::fs::remove_dir_all(&dir);
    (
        output.status.code().unwrap_or(-1),
        serde_json::from_str(record.trim()).unwrap(),
    )
}

fn audit(record: &serde_json::Value) -> (u64, u64, u64) {
    let verification = &record["verification"];
    let count = |name: &str| verification[name].as_u64().unwrap();
    (count("lost"), count("duplicated"), count("out_of_order"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_server_passes() {
    let (code, record) = run_harness(start_fake_server(Fault::None).await).await;
    assert_eq!(audit(&record), (0, 0, 0));
    assert_eq!(
        record["delivery"]["deliveries"],
        20 * 20,
        "40 events over 2 topics of 10 subscribers"
    );
    assert_eq!(record["connect"]["connected"], 20);
    assert_eq!(record["passed"], true);
    assert_eq!(code, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_events_are_counted_and_fail_the_run() {
    let (code, record) = run_harness(start_fake_server(Fault::DropEvery(5)).await).await;
    // Each topic has 20 publishes; every 5th is dropped: 4 per topic, for each of its 10 subscribers.
    assert_eq!(audit(&record), (2 * 4 * 10, 0, 0));
    assert_eq!(code, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_are_counted_and_fail_the_run() {
    let (code, record) = run_harness(start_fake_server(Fault::DuplicateEvery(10)).await).await;
    assert_eq!(audit(&record), (0, 2 * 2 * 10, 0));
    assert_eq!(code, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swapped_events_are_out_of_order_and_fail_the_run() {
    let (code, record) = run_harness(start_fake_server(Fault::SwapPairs).await).await;
    // 10 swapped pairs per topic, each seen by its 10 subscribers.
    assert_eq!(audit(&record), (0, 0, 2 * 10 * 10));
    assert_eq!(code, 1);
}
