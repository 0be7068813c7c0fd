//! The harness end to end against a tiny fake SSE server that can misbehave
//! on purpose: a clean server passes, and each kind of fault is caught and
//! counted, with a non-zero exit code for CI. The server ends streams when
//! asked to, so that reconnecting subscribers (`--reconnect`) are tested too:
//! a server that resumes from `Last-Event-ID` passes, one that resumes wrong
//! is caught. It also speaks Mercure's request shapes (`--target mercure`):
//! the form publish with its publisher token, answered with the update id,
//! and the subscription by topic IRI.

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
    /// Ends every stream after every n-th event (with `retry: 20`) and, on a
    /// reconnect, resumes as asked after `Last-Event-ID`.
    EndStreamsEvery(u64),
    /// Ends streams like `EndStreamsEvery`, but a reconnect gets live events only.
    EndStreamsAndForgetEvery(u64),
    /// Ends streams like `EndStreamsEvery`, but a reconnect gets the whole history.
    EndStreamsAndReplayAllEvery(u64),
    /// Answers a Mercure publish 200 with an empty body instead of its id.
    NoUpdateId,
}

/// The key the Mercure publisher tokens of these tests are signed with.
const MERCURE_KEY: &str = "!ChangeThisMercureHubJWTSecretKey!";

impl Fault {
    fn ends_streams_every(self) -> Option<u64> {
        match self {
            Fault::EndStreamsEvery(n)
            | Fault::EndStreamsAndForgetEvery(n)
            | Fault::EndStreamsAndReplayAllEvery(n) => Some(n),
            _ => None,
        }
    }
}

/// What a stream task is sent: a frame, or the order to end the response.
enum Push {
    Frame(Vec<u8>),
    End,
}

#[derive(Default)]
struct Topic {
    subscribers: Vec<mpsc::UnboundedSender<Push>>,
    published: u64,
    held: Option<Vec<u8>>,
    /// Every frame published, by number, for resuming.
    history: Vec<Vec<u8>>,
}

type Topics = Arc<Mutex<HashMap<String, Topic>>>;

/// Serves `GET /sub/<topic>` as chunked SSE and `POST /pub/<topic>` (raw
/// body) on a keep-alive connection, like Nchan's URL scheme; and Mercure's
/// `GET /.well-known/mercure?topic=<IRI>` and form `POST
/// /.well-known/mercure`, the topic being the IRI.
async fn start_fake_server(fault: Fault) -> SocketAddr {
    start_fake_server_with_control(fault).await.0
}

/// Also returns a control address: any connection to it ends every open
/// stream at once, as a restarting server would.
async fn start_fake_server_with_control(fault: Fault) -> (SocketAddr, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let control = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let control_address = control.local_addr().unwrap();
    let topics: Topics = Arc::default();
    let ended = topics.clone();
    tokio::spawn(async move {
        loop {
            let _ = control.accept().await.unwrap();
            for topic in ended.lock().unwrap().values_mut() {
                for subscriber in topic.subscribers.drain(..) {
                    let _ = subscriber.send(Push::End);
                }
            }
        }
    });
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::spawn(serve_connection(stream, topics.clone(), fault));
        }
    });
    (address, control_address)
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
        if let Some(query) = path.strip_prefix("/.well-known/mercure?") {
            let topic = form_field(query.as_bytes(), "topic");
            return stream_events(stream, topics, topic, last_event_id(&head), fault).await;
        }
        if path == "/.well-known/mercure" && method == "POST" {
            let answer = mercure_publish(&topics, &head, &body, fault);
            stream.write_all(answer.as_bytes()).await.unwrap();
            continue;
        }
        if let (Some(topic), "GET") = (path.strip_prefix("/sub/"), method) {
            let last_event_id = last_event_id(&head);
            return stream_events(stream, topics, topic.to_owned(), last_event_id, fault).await;
        }
        if let (Some(topic), "POST") = (path.strip_prefix("/pub/"), method) {
            // Answered as ssehub does: the event's id, in JSON.
            let id = publish(&topics, topic, &body, fault);
            let answer = format!("{{\"id\":\"{id}\"}}");
            let head = format!(
                "HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                answer.len()
            );
            stream
                .write_all([head.as_bytes(), answer.as_bytes()].concat().as_slice())
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

fn last_event_id(head: &str) -> Option<u64> {
    head.lines().find_map(|line| {
        line.to_ascii_lowercase()
            .strip_prefix("last-event-id:")
            .map(|v| v.trim().parse::<u64>().unwrap())
    })
}

/// The first value of a form field (the query, or a form body); empty if absent.
fn form_field(form: &[u8], name: &str) -> String {
    form_urlencoded::parse(form)
        .find(|(field, _)| field == name)
        .map(|(_, value)| value.into_owned())
        .unwrap_or_default()
}

/// A Mercure publish, checked as a Mercure hub would (the form, and a
/// publisher token that may publish everywhere), answered with its id:
/// the number its `id:` line carries.
fn mercure_publish(topics: &Topics, head: &str, body: &[u8], fault: Fault) -> String {
    let header = |name: &str| {
        head.lines().find_map(|line| {
            let (field, value) = line.split_once(':')?;
            field
                .eq_ignore_ascii_case(name)
                .then(|| value.trim().to_owned())
        })
    };
    let refuse = |status: &str| format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n");
    if header("content-type").as_deref() != Some("application/x-www-form-urlencoded") {
        return refuse("415 Unsupported Media Type");
    }
    let Some(token) =
        header("authorization").and_then(|v| v.strip_prefix("Bearer ").map(str::to_owned))
    else {
        return refuse("401 Unauthorized");
    };
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.required_spec_claims.clear();
    let key = jsonwebtoken::DecodingKey::from_secret(MERCURE_KEY.as_bytes()).unwrap();
    match jsonwebtoken::decode::<serde_json::Value>(&token, &key, &validation) {
        Ok(claims) if claims.claims["mercure"]["publish"] == serde_json::json!(["*"]) => {}
        _ => return refuse("403 Forbidden"),
    }
    let topic = form_field(body, "topic");
    let data = form_field(body, "data");
    // A publisher's own id, when given, must name this publish as the
    // harness's `{event_key}` does: `<run>-<topic>-<seq>`, read from the
    // payload token `<run>.<topic>.<seq>.…`.
    let given_id = form_field(body, "id");
    let token: Vec<&str> = data.splitn(4, '.').collect();
    if !given_id.is_empty() && given_id != token[..3].join("-") {
        return refuse("400 Bad Request");
    }
    let id = publish(topics, &topic, data.as_bytes(), fault);
    let id = if matches!(fault, Fault::NoUpdateId) {
        String::new()
    } else {
        id.to_string()
    };
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\r\n{id}",
        id.len()
    )
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

async fn stream_events(
    mut stream: TcpStream,
    topics: Topics,
    topic: String,
    last_event_id: Option<u64>,
    fault: Fault,
) {
    let (sender, mut events) = mpsc::unbounded_channel();
    // Registered before the head goes out: once the client sees 200, it's
    // subscribed; the replay is taken under the same lock, so nothing falls
    // between history and live.
    let replay: Vec<Vec<u8>> = {
        let mut topics = topics.lock().unwrap();
        let state = topics.entry(topic).or_default();
        state.subscribers.push(sender);
        match (last_event_id, fault) {
            (None, _) | (Some(_), Fault::EndStreamsAndForgetEvery(_)) => Vec::new(),
            (Some(_), Fault::EndStreamsAndReplayAllEvery(_)) => state.history.clone(),
            (Some(id), _) => state
                .history
                .iter()
                .skip(id as usize + 1)
                .cloned()
                .collect(),
        }
    };
    let head =
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n";
    let opening = b"retry: 20\n: ok\n\n";
    let opening = [
        format!("{:x}\r\n", opening.len()).as_bytes(),
        opening,
        b"\r\n",
    ]
    .concat();
    if stream.write_all(head).await.is_err() || stream.write_all(&opening).await.is_err() {
        return;
    }
    let mut sent = 0;
    let mut replayed = replay.into_iter().map(Push::Frame);
    loop {
        let push = match replayed.next() {
            Some(push) => push,
            None => match events.recv().await {
                Some(push) => push,
                None => return,
            },
        };
        let Push::Frame(frame) = push else { break };
        let chunk = [format!("{:x}\r\n", frame.len()).as_bytes(), &frame, b"\r\n"].concat();
        if stream.write_all(&chunk).await.is_err() {
            return;
        }
        sent += 1;
        if fault.ends_streams_every().is_some_and(|n| sent % n == 0) {
            break;
        }
    }
    // The end of the chunked body: the response is over, the client reconnects.
    let _ = stream.write_all(b"0\r\n\r\n").await;
}

/// Publishes `body` as an event's data; returns the event's id.
fn publish(topics: &Topics, topic: &str, body: &[u8], fault: Fault) -> u64 {
    let mut topics = topics.lock().unwrap();
    let state = topics.entry(topic.to_owned()).or_default();
    let number = state.published;
    state.published += 1;
    let frame = [format!("id: {number}\ndata: ").as_bytes(), body, b"\n\n"].concat();
    state.history.push(frame.clone());
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
        _ => vec![frame],
    };
    for frame in frames {
        // Streams that ended are gone from the list once their send fails.
        state
            .subscribers
            .retain(|subscriber| subscriber.send(Push::Frame(frame.clone())).is_ok());
    }
    number
}

/// Runs the harness against the fake server; returns the exit code and the run's JSON record.
async fn run_harness(address: SocketAddr) -> (i32, serde_json::Value) {
    run_harness_with(address, &[]).await
}

async fn run_harness_with(address: SocketAddr, extra: &[String]) -> (i32, serde_json::Value) {
    run_harness_against(address, "nchan", extra).await
}

async fn run_harness_against(
    address: SocketAddr,
    target: &str,
    extra: &[String],
) -> (i32, serde_json::Value) {
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
        let extra = extra.to_vec();
        let target = target.to_owned();
        move || {
            Command::new(harness)
                .args([
                    "run",
                    scenario.to_str().unwrap(),
                    "--target",
                    &target,
                    "--quiet",
                ])
                .args([
                    "--base-url",
                    &format!("http://{address}"),
                    "--json-out",
                    json.to_str().unwrap(),
                ])
                .args(extra)
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

fn reconnect() -> Vec<String> {
    vec!["--reconnect".into()]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnecting_subscribers_resume_without_loss() {
    let server = start_fake_server(Fault::EndStreamsEvery(7)).await;
    let (code, record) = run_harness_with(server, &reconnect()).await;
    assert_eq!(audit(&record), (0, 0, 0), "{record:#}");
    assert_eq!(record["delivery"]["deliveries"], 20 * 20);
    // 20 events per topic, streams end after every 7th: twice per subscriber
    // (after the 7th and the 14th), 20 subscribers.
    assert_eq!(record["reconnect"]["reconnects"], 2 * 20);
    assert_eq!(record["reconnect"]["gave_up"], 0);
    assert_eq!(record["delivery"]["closed_early"], 0);
    assert_eq!(record["passed"], true, "{record:#}");
    assert_eq!(code, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_reconnect_an_ended_stream_fails_the_run() {
    let server = start_fake_server(Fault::EndStreamsEvery(7)).await;
    let (code, record) = run_harness(server).await;
    assert_eq!(record["delivery"]["closed_early"], 20);
    assert_eq!(record["reconnect"], serde_json::Value::Null);
    assert_eq!(code, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_that_forgets_is_caught_as_lost() {
    let server = start_fake_server(Fault::EndStreamsAndForgetEvery(7)).await;
    let (code, record) = run_harness_with(server, &reconnect()).await;
    let (lost, duplicated, _) = audit(&record);
    assert!(lost > 0, "{record:#}");
    assert_eq!(duplicated, 0);
    assert_eq!(code, 1);
    // The report names who missed what, and where: the publishes lost at a
    // resume fall between two connections, the second opened with the
    // first one's last id.
    let detail = record["verification"]["lost_detail"].as_array().unwrap();
    assert!(!detail.is_empty(), "{record:#}");
    let first = &detail[0];
    let missing = first["missing"].as_array().unwrap();
    assert!(!missing.is_empty() && first["missing_total"].as_u64().unwrap() > 0);
    // The fake server answers a publish with `{"id": "<n>"}`.
    assert!(missing[0]["id"].is_string(), "{first:#}");
    let connections = first["connections"].as_array().unwrap();
    assert!(connections.len() >= 2, "{first:#}");
    assert_eq!(connections[0]["resumed_from"], "");
    assert_eq!(
        connections[1]["resumed_from"], connections[0]["last"]["id"],
        "{first:#}"
    );
    assert!(connections[0]["local_port"].as_u64().unwrap() > 0);
    assert_eq!(connections[0]["events"], 7, "{first:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_that_replays_everything_is_caught_as_duplicated() {
    let server = start_fake_server(Fault::EndStreamsAndReplayAllEvery(7)).await;
    let (code, record) = run_harness_with(server, &reconnect()).await;
    // Each reconnect starts again from the first event, so the stream never
    // gets further than its first ends: duplicates, and the rest never comes.
    let (_, duplicated, _) = audit(&record);
    assert!(duplicated > 0, "{record:#}");
    assert_eq!(code, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disruption_is_timed_and_its_reconnects_counted_in_its_drain_window() {
    let (server, control) = start_fake_server_with_control(Fault::None).await;
    // Marks a window from now on for 1.5 s, then ends every stream.
    let command = format!(
        "echo drain fake 0 1500; bash -c 'exec 3<>/dev/tcp/127.0.0.1/{}'; sleep 1",
        control.port()
    );
    let extra = [
        "--reconnect",
        "--rate",
        "100",
        "--disrupt",
        &command,
        // Latency phases are taken in whole seconds of the schedule: over
        // two seconds before and after leave at least one whole second each.
        "--disrupt-after",
        "2200ms",
        "--recover-for",
        "2200ms",
    ]
    .map(String::from);
    let (code, record) = run_harness_with(server, &extra).await;
    assert_eq!(audit(&record), (0, 0, 0), "{record:#}");
    assert_eq!(record["reconnect"]["reconnects"], 20, "{record:#}");
    let window = &record["reconnect"]["drain_windows"][0];
    assert_eq!(window["label"], "fake");
    assert_eq!(window["reconnects"], 20, "{record:#}");
    assert_eq!(record["reconnect"]["outside_windows"], 0);
    let disruption = &record["disruption"];
    assert_eq!(disruption["exit_code"], 0);
    assert!(
        disruption["seconds"].as_f64().unwrap() >= 1.0,
        "{disruption:#}"
    );
    // Publishing went on through it: 100/s for at least 2.1 + 1 + 2.2 s.
    assert!(
        record["publish"]["acked"].as_u64().unwrap() >= 500,
        "{record:#}"
    );
    for phase in ["latency_before_ms", "latency_during_ms", "latency_after_ms"] {
        assert!(
            disruption[phase]["count"].as_u64().unwrap() > 0,
            "{phase}: {disruption:#}"
        );
    }
    assert_eq!(code, 0);
}

/// The flags of a run through Mercure's request shapes.
fn mercure(extra: &[&str]) -> Vec<String> {
    ["--mercure-publisher-key", MERCURE_KEY]
        .iter()
        .chain(extra)
        .map(|flag| (*flag).to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_mercure_hub_passes_and_resumes_by_its_ids() {
    let server = start_fake_server(Fault::EndStreamsEvery(7)).await;
    let (code, record) = run_harness_against(server, "mercure", &mercure(&["--reconnect"])).await;
    assert_eq!(audit(&record), (0, 0, 0), "{record:#}");
    assert_eq!(record["target"], "mercure");
    assert_eq!(
        record["publish"]["acked"], 40,
        "every publish answered with its id"
    );
    assert_eq!(record["delivery"]["deliveries"], 20 * 20);
    assert_eq!(record["reconnect"]["reconnects"], 2 * 20);
    assert_eq!(record["passed"], true, "{record:#}");
    assert_eq!(code, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mercure_publisher_may_give_each_update_its_own_id() {
    let server = start_fake_server(Fault::None).await;
    let body = "topic={topic_uri}&id={event_key}&data={payload}";
    let (code, record) =
        run_harness_against(server, "mercure", &mercure(&["--publish-body", body])).await;
    assert_eq!(record["publish"]["acked"], 40, "{record:#}");
    assert_eq!(audit(&record), (0, 0, 0));
    assert_eq!(code, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mercure_publish_answered_without_its_id_fails_the_run() {
    let server = start_fake_server(Fault::NoUpdateId).await;
    let (code, record) = run_harness_against(server, "mercure", &mercure(&[])).await;
    assert_eq!(record["publish"]["acked"], 0, "{record:#}");
    assert_eq!(record["publish"]["errors"], 40, "{record:#}");
    let examples = record["publish"]["error_examples"].to_string();
    assert!(examples.contains("no update id"), "{examples}");
    assert_eq!(record["passed"], false);
    assert_eq!(code, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mercure_publisher_token_signed_with_another_key_is_refused() {
    let server = start_fake_server(Fault::None).await;
    let extra = [
        "--mercure-publisher-key",
        "another key, not the hub's, 32 bytes",
    ]
    .map(String::from);
    let (code, record) = run_harness_against(server, "mercure", &extra).await;
    assert_eq!(record["publish"]["statuses"]["403"], 40, "{record:#}");
    assert_eq!(code, 1);
}
