//! Hostile and broken clients against the real binary: slowloris, huge
//! request heads, a subscriber that never reads, one that vanishes, and more
//! connections than the process may open. Each prints its figure.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::support::helpers::{PATIENCE, Subscriber, within};
use crate::support::process::HubProcess;
use crate::support::raw::{RawClient, subscribe_head};

fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"))
}

fn rss_kib(pid: u32) -> u64 {
    proc_status_kib(pid, "VmRSS:")
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// User plus system CPU time the process has used.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which is in parentheses).
    let fields: Vec<&str> = stat.rsplit_once(") ").unwrap().1.split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_millis(ticks * 1000 / per_second)
}

/// Sockets of the hub's port in CLOSE_WAIT (state 08 in /proc/net/tcp):
/// the client has gone, the server has not closed its end yet.
fn close_wait_sockets(port: u16) -> usize {
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .map(|table| {
            table
                .lines()
                .skip(1)
                .filter(|line| {
                    let fields: Vec<&str> = line.split_whitespace().collect();
                    let local_port = fields[1]
                        .rsplit_once(':')
                        .and_then(|(_, hex)| u16::from_str_radix(hex, 16).ok());
                    local_port == Some(port) && fields[3] == "08"
                })
                .count()
        })
        .sum::<usize>()
}

async fn publish(hub: &HubProcess, topic: &str, data: &str) {
    let response = reqwest::Client::new()
        .post(hub.url(&format!("/v1/topics/{topic}/events")))
        .json(&json!({ "data": data }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
}

async fn subscriber(hub: &HubProcess, topic: &str) -> Subscriber {
    let response = reqwest::get(hub.url(&format!("/v1/events?topic={topic}")))
        .await
        .unwrap();
    Subscriber::from_response(response).await
}

/// The problem document of a raw response, after checking its status.
fn problem(raw: &str, status: u16) -> Value {
    assert!(
        raw.starts_with(&format!("HTTP/1.1 {status} ")),
        "expected {status}, got:\n{}",
        &raw[..raw.len().min(400)]
    );
    assert!(
        raw.contains("content-type: application/problem+json\r\n"),
        "{raw}"
    );
    let body = raw.split_once("\r\n\r\n").expect("a head").1;
    let problem: Value = serde_json::from_str(body).expect("a problem document");
    assert_eq!(problem["status"], status);
    problem
}

/// Sends `request` (while reading, so a huge one can't dead-lock against
/// the answer) and returns everything the server sent before closing.
async fn exchange(hub: &HubProcess, request: Vec<u8>) -> String {
    let stream = TcpStream::connect(hub.addr).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let sending = tokio::spawn(async move {
        // The server may stop reading and close once it has refused.
        let _ = writer.write_all(&request).await;
        writer
    });
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, reader.read_to_end(&mut answer)).await;
    drop(sending.await);
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn slowloris_connections_time_out_without_taking_slots_or_descriptors() {
    let hub = HubProcess::start(&[("SSEHUB_LIMITS__HEADER_READ_TIMEOUT", "1s")]);
    let pid = hub.pid();
    let fds_before = open_fds(pid);
    let mut stalled = Vec::new();
    for _ in 0..100 {
        // A head that never ends.
        let mut client = RawClient::connect(hub.addr).await;
        client
            .send("GET /v1/events?topic=a HTTP/1.1\r\nHost: hub\r\n")
            .await;
        stalled.push(client);
    }
    let trickling: Vec<_> = (0..100)
        .map(|_| {
            let addr = hub.addr;
            tokio::spawn(async move {
                // One byte every 100 ms, never a blank line.
                let mut stream = TcpStream::connect(addr).await.unwrap();
                let head = b"GET /v1/events?topic=a HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
                let started = Instant::now();
                for byte in head {
                    if stream.write_all(&[*byte]).await.is_err() {
                        return Some(started.elapsed());
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                None
            })
        })
        .collect();
    // Meanwhile, an ordinary subscriber is served.
    let mut reader = subscriber(&hub, "a").await;
    publish(&hub, "a", "served meanwhile").await;
    assert_eq!(reader.next().await.data, "served meanwhile");

    let started = Instant::now();
    for mut client in stalled {
        assert!(
            client.read_to_close(PATIENCE).await,
            "an unfinished head kept its connection"
        );
        problem(&client.text(), 408);
    }
    for task in trickling {
        let cut_after = task.await.unwrap().expect("a trickled head was cut off");
        assert!(cut_after < PATIENCE, "{cut_after:?}");
    }
    let freed = within(PATIENCE, || async { open_fds(pid) <= fds_before + 2 }).await;
    println!(
        "slowloris: 200 connections closed {:?} after the 1 s header timeout; fds {} before, {} after",
        started.elapsed(),
        fds_before,
        open_fds(pid)
    );
    assert!(freed.is_some(), "descriptors still held: {}", open_fds(pid));
    assert_eq!(hub.subscribers().await, 1.0);
}

#[tokio::test]
async fn huge_request_heads_are_refused_with_a_problem_and_bounded_memory() {
    let hub = HubProcess::start(&[]);
    let pid = hub.pid();

    let huge_header = format!(
        "GET /v1/events?topic=a HTTP/1.1\r\nHost: hub\r\nX-Huge: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let problem_431 = problem(&exchange(&hub, huge_header.into_bytes()).await, 431);
    assert_eq!(
        problem_431["type"],
        "urn:ssehub:problem:request_head_too_large"
    );

    let many_fields: String = (0..200).map(|i| format!("X-Field-{i}: {i}\r\n")).collect();
    let request = format!("GET /healthz HTTP/1.1\r\nHost: hub\r\n{many_fields}\r\n");
    problem(&exchange(&hub, request.into_bytes()).await, 431);

    let ten_thousand_topics: Vec<String> = (0..10_000).map(|i| format!("topic=t{i}")).collect();
    let request = format!(
        "GET /v1/events?{} HTTP/1.1\r\nHost: hub\r\n\r\n",
        ten_thousand_topics.join("&")
    );
    let problem_414 = problem(&exchange(&hub, request.into_bytes()).await, 414);
    assert_eq!(problem_414["type"], "urn:ssehub:problem:uri_too_long");

    // Thousands of parameters that fit in the head reach the route, which
    // refuses that many topics.
    let thousands: Vec<String> = (0..2_000).map(|i| format!("topic=t{i}")).collect();
    let request = format!(
        "GET /v1/events?{} HTTP/1.1\r\nHost: hub\r\nConnection: close\r\n\r\n",
        thousands.join("&")
    );
    problem(&exchange(&hub, request.into_bytes()).await, 400);

    let rss_before = rss_kib(pid);
    let one_mib_id = format!(
        "GET /v1/events?topic=a HTTP/1.1\r\nHost: hub\r\nLast-Event-ID: {}\r\n\r\n",
        "7".repeat(1024 * 1024)
    );
    for _ in 0..20 {
        problem(&exchange(&hub, one_mib_id.clone().into_bytes()).await, 431);
    }
    let grown = rss_kib(pid).saturating_sub(rss_before);
    println!("huge heads: RSS grew {grown} KiB over 20 requests with a 1 MiB Last-Event-ID");
    assert!(grown < 8 * 1024, "RSS grew {grown} KiB");
    assert_eq!(hub.subscribers().await, 0.0);
}

#[tokio::test]
async fn a_subscriber_that_never_reads_is_ended_after_the_write_timeout_and_holds_little() {
    let hub = HubProcess::start(&[
        ("SSEHUB_STREAM__WRITE_TIMEOUT", "2s"),
        ("SSEHUB_HISTORY__SIZE", "16"),
    ]);
    let pid = hub.pid();
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut never_reads = socket.connect(hub.addr).await.unwrap();
    never_reads
        .write_all(subscribe_head("topic=flood").as_bytes())
        .await
        .unwrap();
    let mut reader = subscriber(&hub, "flood").await;
    assert!(
        within(PATIENCE, || async { hub.subscribers().await == 2.0 })
            .await
            .is_some()
    );
    let rss_before = rss_kib(pid);

    // 8 MiB of events: far more than the stalled socket's buffers take.
    let data = "x".repeat(32 * 1024);
    let mut peak = rss_before;
    for round in 0..256 {
        publish(&hub, "flood", &data).await;
        let event = reader.next().await;
        assert_eq!(event.event, "message", "round {round}: {event:?}");
        peak = peak.max(rss_kib(pid));
    }
    let freed = within(PATIENCE, || async { hub.subscribers().await == 1.0 }).await;
    println!(
        "never-reading subscriber: server RSS {rss_before} KiB before, peak {peak} KiB while stalled \
         (+{} KiB); slot freed {freed:?} after the last publish (write timeout 2 s)",
        peak - rss_before
    );
    assert!(freed.is_some(), "the stalled stream still holds its slot");
    assert!(
        peak - rss_before < 8 * 1024,
        "a stalled subscriber grew the hub by {} KiB",
        peak - rss_before
    );

    // The reader was unaffected and still is.
    publish(&hub, "flood", "after").await;
    assert_eq!(reader.next().await.data, "after");
    drop(never_reads);
}

#[tokio::test]
async fn a_vanished_subscriber_frees_its_slot_at_once_even_without_heartbeats() {
    // Without heartbeats nothing is ever written to an idle stream, so only
    // watching the read half can notice that its client has gone.
    let hub = HubProcess::start(&[("SSEHUB_HEARTBEAT__INTERVAL", "0s")]);
    let mut clients = Vec::new();
    for _ in 0..200 {
        let mut client = RawClient::connect(hub.addr).await;
        client.send(subscribe_head("topic=idle")).await;
        clients.push(client);
    }
    for client in &mut clients {
        client.read_until(": ssehub stream open", PATIENCE).await;
    }
    assert_eq!(hub.subscribers().await, 200.0);

    drop(clients);
    let port = hub.addr.port();
    let freed = within(PATIENCE, || async {
        close_wait_sockets(port) == 0 && hub.subscribers().await == 0.0
    })
    .await;
    println!("vanished subscribers: 200 slots freed and no CLOSE_WAIT after {freed:?}");
    assert!(
        freed.is_some(),
        "{} sockets in CLOSE_WAIT, {} subscribers",
        close_wait_sockets(port),
        hub.subscribers().await
    );
}

#[tokio::test]
async fn out_of_file_descriptors_the_hub_serves_what_it_has_logs_once_and_recovers() {
    const OPEN_FILES: u64 = 96;
    // Connections that never send a head stay open for the whole test.
    let hub = HubProcess::start_with_open_file_limit(
        &[("SSEHUB_LIMITS__HEADER_READ_TIMEOUT", "60s")],
        OPEN_FILES,
    );
    let pid = hub.pid();
    // A keep-alive connection opened before the descriptors run out.
    let mut kept = RawClient::connect(hub.addr).await;
    kept.send("GET /healthz HTTP/1.1\r\nHost: hub\r\n\r\n")
        .await;
    kept.read_until("\"status\":\"ok\"", PATIENCE).await;

    let mut flood = Vec::new();
    for _ in 0..OPEN_FILES * 2 {
        // The kernel completes these handshakes into the listen queue; the
        // hub accepts as many as it has descriptors for.
        flood.push(TcpStream::connect(hub.addr).await.unwrap());
    }
    let out_of_fds = within(PATIENCE, || async {
        hub.log_text().contains("accept failed")
    })
    .await;
    assert!(
        out_of_fds.is_some(),
        "accepting never failed:\n{}",
        hub.log_text()
    );

    let cpu_before = cpu_time(pid);
    let watched = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cpu_used = cpu_time(pid) - cpu_before;
    kept.send("GET /healthz HTTP/1.1\r\nHost: hub\r\n\r\n")
        .await;
    kept.read_until_count("\"status\":\"ok\"", 2, PATIENCE)
        .await;
    let logged = hub.log_text().matches("accept failed").count();
    println!(
        "fd exhaustion: {:?} of CPU in {:?} while out of descriptors; {logged} log line(s)",
        cpu_used,
        watched.elapsed()
    );
    assert!(
        cpu_used < Duration::from_millis(1000),
        "accept spun: {cpu_used:?} of CPU in 2 s"
    );
    assert_eq!(logged, 1, "{}", hub.log_text());

    drop(flood);
    let recovered = within(PATIENCE, || async {
        match tokio::time::timeout(Duration::from_secs(1), reqwest::get(hub.url("/healthz"))).await
        {
            Ok(Ok(response)) => response.status() == 200,
            _ => false,
        }
    })
    .await;
    assert!(
        recovered.is_some(),
        "no new connection served after fds freed"
    );
    assert!(hub.log_text().contains("accepting connections again"));
}
