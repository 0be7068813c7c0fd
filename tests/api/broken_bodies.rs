//! A publish body trickled slowly or cut half-way, against the real binary:
//! refused (408 or 400), and nothing of it reaches a subscriber or history.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

use serde_json::json;

use crate::support::helpers::Subscriber;
use crate::support::process::HubProcess;

/// The hub's deadline in these tests; every trickle below takes twice as
/// long at the least, so the outcome does not depend on the machine's speed.
const BODY_READ_TIMEOUT: &str = "1s";
const TRICKLE_PAUSE: Duration = Duration::from_millis(100);

const BODY: &str = r#"{"data":"must not arrive"}"#;

fn connect(hub: &HubProcess) -> TcpStream {
    let stream = TcpStream::connect(hub.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
}

fn head(length: Option<usize>) -> String {
    let framing = match length {
        Some(length) => format!("content-length: {length}"),
        None => "transfer-encoding: chunked".to_owned(),
    };
    format!(
        "POST /v1/topics/bodies/events HTTP/1.1\r\nhost: hub\r\ncontent-type: application/json\r\n{framing}\r\n\r\n"
    )
}

/// Whatever the hub answered before closing (empty if it just closed).
fn answer(mut stream: TcpStream) -> String {
    let mut text = Vec::new();
    let _ = stream.read_to_end(&mut text);
    String::from_utf8_lossy(&text).into_owned()
}

fn assert_status(answer: &str, status: &str, problem: &str) {
    assert!(
        answer.starts_with(&format!("HTTP/1.1 {status}")),
        "expected {status}: {answer}"
    );
    assert!(
        answer.contains("application/problem+json") && answer.contains(problem),
        "{answer}"
    );
}

fn trickle_with_length(hub: &HubProcess) -> String {
    let mut stream = connect(hub);
    stream.write_all(head(Some(BODY.len())).as_bytes()).unwrap();
    for byte in BODY.as_bytes() {
        if stream.write_all(&[*byte]).is_err() {
            break; // the hub gave up on us: what we want
        }
        std::thread::sleep(TRICKLE_PAUSE);
    }
    answer(stream)
}

fn trickle_chunked(hub: &HubProcess) -> String {
    let mut stream = connect(hub);
    stream.write_all(head(None).as_bytes()).unwrap();
    for byte in BODY.as_bytes() {
        let chunk = format!("1\r\n{}\r\n", *byte as char);
        if stream.write_all(chunk.as_bytes()).is_err() {
            break;
        }
        std::thread::sleep(TRICKLE_PAUSE);
    }
    let _ = stream.write_all(b"0\r\n\r\n");
    answer(stream)
}

fn cut_with_length(hub: &HubProcess) -> String {
    let mut stream = connect(hub);
    stream.write_all(head(Some(BODY.len())).as_bytes()).unwrap();
    stream
        .write_all(&BODY.as_bytes()[..BODY.len() / 2])
        .unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    answer(stream)
}

fn cut_chunked(hub: &HubProcess) -> String {
    let mut stream = connect(hub);
    stream.write_all(head(None).as_bytes()).unwrap();
    let half = &BODY[..BODY.len() / 2];
    stream
        .write_all(format!("{:x}\r\n{half}\r\n", half.len()).as_bytes())
        .unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    answer(stream)
}

/// Cut without a word: the connection is dropped mid-body.
fn dropped_mid_body(hub: &HubProcess) {
    let mut stream = connect(hub);
    stream.write_all(head(Some(BODY.len())).as_bytes()).unwrap();
    stream.write_all(&BODY.as_bytes()[..5]).unwrap();
    drop(stream);
}

#[tokio::test]
async fn a_trickled_or_cut_body_is_refused_and_nothing_of_it_is_accepted() {
    let hub = HubProcess::start(&[("SSEHUB_LIMITS__BODY_READ_TIMEOUT", BODY_READ_TIMEOUT)]);
    let client = reqwest::Client::new();
    let publish = |data: &'static str| {
        let client = client.clone();
        let url = hub.url("/v1/topics/bodies/events");
        async move {
            let response = client
                .post(url)
                .json(&json!({ "data": data }))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 202);
            let body: serde_json::Value = response.json().await.unwrap();
            body["id"].as_str().unwrap().to_owned()
        }
    };
    let before = publish("before").await;
    let live = client
        .get(hub.url("/v1/events?topic=bodies"))
        .send()
        .await
        .unwrap();
    let mut live = Subscriber::from_response(live).await;

    let hub_ref = &hub;
    let (trickled, trickled_chunked, cut, cut_chunked) = std::thread::scope(|scope| {
        let trickled = scope.spawn(|| trickle_with_length(hub_ref));
        let trickled_chunked = scope.spawn(|| trickle_chunked(hub_ref));
        let cut = scope.spawn(|| cut_with_length(hub_ref));
        let cut_chunked = scope.spawn(|| cut_chunked(hub_ref));
        dropped_mid_body(hub_ref);
        (
            trickled.join().unwrap(),
            trickled_chunked.join().unwrap(),
            cut.join().unwrap(),
            cut_chunked.join().unwrap(),
        )
    });
    assert_status(&trickled, "408", "urn:ssehub:problem:body-timeout");
    assert_status(&trickled_chunked, "408", "urn:ssehub:problem:body-timeout");
    assert_status(&cut, "400", "urn:ssehub:problem:");
    assert_status(&cut_chunked, "400", "urn:ssehub:problem:");

    // Nothing reached the live subscriber: its next event is the next
    // accepted publish.
    let after = publish("after").await;
    let next = live.next().await;
    assert_eq!((next.id.as_str(), next.data.as_str()), (&*after, "after"));
    // Nor history: resuming after `before` finds only `after`.
    let resumed = client
        .get(hub.url("/v1/events?topic=bodies"))
        .header("Last-Event-ID", &before)
        .send()
        .await
        .unwrap();
    let mut resumed = Subscriber::from_response(resumed).await;
    let replayed = resumed.next().await;
    assert_eq!(replayed.data, "after");
    assert!(
        resumed
            .next_within(Duration::from_millis(300))
            .await
            .is_none(),
        "history holds only what was answered 202"
    );
    // The hub took every broken request in its stride.
    let health = client.get(hub.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert!(!hub.log_text().contains("panicked"), "{}", hub.log_text());
}
