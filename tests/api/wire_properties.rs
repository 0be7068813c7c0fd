//! The wire-format properties of `src/hub/wire_properties.rs`, through the
//! real HTTP server: fewer cases (each is a few requests), the same promise.
//! A publish is either delivered exactly as sent or refused with a problem
//! document and delivered to no one; any `Last-Event-ID` resumes right or
//! announces a gap; a topic name round-trips or is a 400.
//!
//! `PROPTEST_CASES` raises the case count for a long run.

use std::cell::RefCell;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Value, json};

use crate::support::helpers::{Subscriber, TestApp, spawn_app};

/// Cases per property in CI: each is a few requests on the loopback.
const CI_CASES: u32 = 128;

fn runner() -> TestRunner {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(CI_CASES);
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Text that stresses the SSE grammar (see the unit-level strategy).
fn hostile_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("\r".to_owned()),
        Just("\n".to_owned()),
        Just("\r\n".to_owned()),
        Just("\0".to_owned()),
        Just("\u{feff}".to_owned()),
        Just("\nid: forged\n\n".to_owned()),
        Just("retry: 1".to_owned()),
        Just(" ".to_owned()),
        "x{0,3000}",
        any::<String>(),
    ];
    prop::collection::vec(piece, 0..8).prop_map(|pieces| pieces.concat())
}

fn as_received(data: &str) -> String {
    data.replace("\r\n", "\n").replace('\r', "\n")
}

/// Whether the hub's rules take this `event` value.
fn event_type_ok(event: &str) -> bool {
    !event.is_empty()
        && !event.contains(['\r', '\n', '\0'])
        && event.chars().count() <= 64
        && !ssehub::model::RESERVED_EVENT_TYPES.contains(&event)
}

async fn assert_is_problem(response: reqwest::Response) -> u16 {
    let status = response.status().as_u16();
    assert!((400..500).contains(&status), "status {status}");
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "application/problem+json"
    );
    let problem: Value = response.json().await.unwrap();
    assert!(!problem["detail"].as_str().unwrap().is_empty(), "{problem}");
    status
}

#[test]
fn a_publish_arrives_exactly_as_sent_or_is_refused_and_reaches_no_one() {
    let runtime = runtime();
    let (app, subscriber) = runtime.block_on(async {
        let app = spawn_app().await;
        let subscriber = app.subscribe(&["props"]).await;
        (app, subscriber)
    });
    // Borrowed across awaits inside `block_on`: an async lock, uncontended.
    let subscriber = tokio::sync::Mutex::new(subscriber);
    let data = prop_oneof![
        4 => hostile_text().prop_map(Value::String),
        1 => any::<i64>().prop_map(Value::from),
        1 => hostile_text().prop_map(|text| json!({"nested": [text, null, 1.5]})),
    ];
    let event = proptest::option::of(prop_oneof![hostile_text(), "[a-z]{1,10}"]);
    let retry = proptest::option::of(prop_oneof![0u64..=60_000, any::<u64>()]);
    runner()
        .run(&(data, event, retry), |(data, event, retry)| {
            runtime.block_on(async {
                let mut body = json!({ "data": data });
                if let Some(event) = &event {
                    body["event"] = json!(event);
                }
                if let Some(retry) = retry {
                    body["retry"] = json!(retry);
                }
                let takeable = event.as_deref().is_none_or(event_type_ok)
                    && retry.is_none_or(|ms| ms <= 60_000);
                let response = app.publish_raw("props", body).await;
                let accepted = response.status() == 202;
                if accepted {
                    let id: Value = response.json().await.unwrap();
                    let event_seen = subscriber.lock().await.next().await;
                    assert_eq!(event_seen.id, id["id"].as_str().unwrap());
                    let sent = match &data {
                        Value::String(text) => text.clone(),
                        other => other.to_string(),
                    };
                    assert_eq!(event_seen.data, as_received(&sent));
                    assert_eq!(event_seen.event, event.as_deref().unwrap_or("message"));
                    assert_eq!(
                        event_seen.retry,
                        retry.map(std::time::Duration::from_millis)
                    );
                } else {
                    assert_is_problem(response).await;
                }
                assert_eq!(accepted, takeable, "event {event:?} retry {retry:?}");
                // Nothing else came through: the next event is the next publish.
                let sentinel = app.publish("props", json!("sentinel")).await;
                let next = subscriber.lock().await.next().await;
                assert_eq!(
                    (next.id.as_str(), next.data.as_str()),
                    (&*sentinel, "sentinel")
                );
            });
            Ok(())
        })
        .unwrap();
}

/// A `Last-Event-ID` as a test case: something the hub sent, or made from
/// one, or anything at all.
#[derive(Debug, Clone)]
enum ResumeFrom {
    Sent(usize),
    SentOtherTopic,
    SentUppercasePadded(usize),
    FutureSeq(u64),
    OtherEpoch(usize),
    Text(String),
}

fn resume_from() -> impl Strategy<Value = ResumeFrom> {
    prop_oneof![
        (0usize..6).prop_map(ResumeFrom::Sent),
        Just(ResumeFrom::SentOtherTopic),
        (0usize..6).prop_map(ResumeFrom::SentUppercasePadded),
        (1u64..1000).prop_map(ResumeFrom::FutureSeq),
        (0usize..6).prop_map(ResumeFrom::OtherEpoch),
        hostile_text().prop_map(ResumeFrom::Text),
        "[0-9a-fA-F]{1,17}-[0-9a-fA-F]{0,17}".prop_map(ResumeFrom::Text),
    ]
}

fn split_id(id: &str) -> (u64, u64) {
    let (epoch, seq) = id.split_once('-').unwrap();
    (
        u64::from_str_radix(epoch, 16).unwrap(),
        u64::from_str_radix(seq, 16).unwrap(),
    )
}

/// Subscribes to `resume` with `value` as `Last-Event-ID` (header when it
/// can be one and `by_header`, else the query parameter).
async fn resume(app: &TestApp, value: &str, by_header: bool) -> reqwest::Response {
    let request = app.client.get(app.url("/v1/events"));
    let header = reqwest::header::HeaderValue::from_bytes(value.as_bytes()).ok();
    match header {
        Some(header) if by_header => request
            .query(&[("topic", "resume")])
            .header("Last-Event-ID", header),
        _ => request.query(&[("topic", "resume"), ("lastEventId", value)]),
    }
    .send()
    .await
    .unwrap()
}

#[test]
fn any_last_event_id_resumes_right_or_announces_a_gap() {
    let runtime = runtime();
    let (app, sent, other_topic) = runtime.block_on(async {
        let app = spawn_app().await;
        let mut sent = Vec::new();
        let mut other = String::new();
        for n in 0..6 {
            sent.push(app.publish("resume", json!(format!("e{n}"))).await);
            other = app.publish("elsewhere", json!(n)).await;
        }
        (app, sent, other)
    });
    // Every (id, data) of topic `resume`, in order; sentinels are added.
    let history = RefCell::new(
        sent.iter()
            .enumerate()
            .map(|(n, id)| (id.clone(), format!("e{n}")))
            .collect::<Vec<_>>(),
    );
    let (epoch, _) = split_id(&sent[0]);
    runner()
        .run(&(resume_from(), any::<bool>()), |(from, by_header)| {
            runtime.block_on(async {
                let last_seq = split_id(&history.borrow().last().unwrap().0).1;
                let value = match &from {
                    ResumeFrom::Sent(n) => sent[*n].clone(),
                    ResumeFrom::SentOtherTopic => other_topic.clone(),
                    ResumeFrom::SentUppercasePadded(n) => format!(" {} ", sent[*n].to_uppercase()),
                    ResumeFrom::FutureSeq(ahead) => format!("{epoch:x}-{:x}", last_seq + ahead),
                    ResumeFrom::OtherEpoch(n) => {
                        format!("{:x}-{:x}", epoch ^ 1, split_id(&sent[*n]).1)
                    }
                    ResumeFrom::Text(text) => text.clone(),
                };
                // What the hub must do: resume after a position of its own
                // history, else a gap frame and all the history it holds.
                let watermark = last_seq.max(split_id(&other_topic).1);
                let trimmed = value.trim();
                let position = ssehub::model::EventId::parse(trimmed)
                    .ok()
                    .filter(|id| id.epoch == epoch && id.seq <= watermark);
                let expected: Vec<(String, String)> = history
                    .borrow()
                    .iter()
                    .filter(|(id, _)| position.is_none_or(|after| split_id(id).1 > after.seq))
                    .cloned()
                    .collect();
                let expect_gap = position.is_none() && !trimmed.is_empty();
                let expected = if trimmed.is_empty() && position.is_none() {
                    Vec::new()
                } else {
                    expected
                };

                let response = resume(&app, &value, by_header).await;
                assert_eq!(response.status(), 200, "{value:?} was refused");
                let mut subscriber = Subscriber::from_response(response).await;
                let sentinel = app.publish("resume", json!("sentinel")).await;
                let mut seen = Vec::new();
                loop {
                    let event = subscriber.next().await;
                    if event.id == sentinel && event.data == "sentinel" {
                        break;
                    }
                    seen.push(event);
                }
                // Before any assertion, so the model stays true while
                // proptest shrinks a failure.
                history
                    .borrow_mut()
                    .push((sentinel.clone(), "sentinel".to_owned()));
                let mut seen = seen.into_iter().peekable();
                let gap = seen.next_if(|event| event.event == "gap");
                assert_eq!(gap.is_some(), expect_gap, "{value:?}: gap frame {gap:?}");
                if let Some(gap) = gap {
                    let gap: Value = serde_json::from_str(&gap.data).unwrap();
                    assert_eq!(gap["reason"], "unknown_epoch", "{value:?}");
                }
                let seen: Vec<(String, String)> =
                    seen.map(|event| (event.id, event.data)).collect();
                assert_eq!(seen, expected, "{value:?}");
            });
            Ok(())
        })
        .unwrap();
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn path_segment(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (byte as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

#[test]
fn a_topic_name_round_trips_or_is_a_400_problem() {
    let runtime = runtime();
    let app = runtime.block_on(spawn_app());
    let name = prop_oneof![
        "[A-Za-z0-9._:~-]{1,128}",
        "[A-Za-z0-9]{129,140}",
        hostile_text(),
    ];
    runner()
        .run(&name, |name| {
            runtime.block_on(async {
                let valid = (1..=128).contains(&name.len())
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "._:~-".contains(c));
                let subscribe = app
                    .client
                    .get(app.url("/v1/events"))
                    .query(&[("topic", &name)])
                    .send()
                    .await
                    .unwrap();
                let by_path = app
                    .client
                    .post(app.url(&format!("/v1/topics/{}/events", path_segment(&name))))
                    .json(&json!({"data": "by path"}))
                    .send()
                    .await
                    .unwrap();
                if valid {
                    let mut subscriber = Subscriber::from_response(subscribe).await;
                    // URL clients turn a `.` or `..` segment into a move up
                    // the path; such names can only be published in a batch.
                    if name != "." && name != ".." {
                        assert_eq!(by_path.status(), 202, "{name:?}");
                    }
                    let batch = app
                        .client
                        .post(app.url("/v1/events"))
                        .json(&json!({"events": [{"topic": name, "data": "by batch"}]}))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(batch.status(), 202, "{name:?}");
                    let accepted: Value = batch.json().await.unwrap();
                    assert_eq!(accepted["events"][0]["topic"], json!(name));
                    if name != "." && name != ".." {
                        assert_eq!(subscriber.next().await.data, "by path");
                    }
                    assert_eq!(subscriber.next().await.data, "by batch");
                } else {
                    assert_eq!(assert_is_problem(subscribe).await, 400, "{name:?}");
                    assert_eq!(assert_is_problem(by_path).await, 400, "{name:?}");
                }
            });
            Ok(())
        })
        .unwrap();
}

/// Found by the property above: a `Last-Event-ID` header that is not
/// visible ASCII (`é`, a BOM) was read as no header, so the client resumed
/// live and silently missed what history held. It is a foreign id now.
#[tokio::test]
async fn a_last_event_id_header_of_any_bytes_gets_a_gap_and_the_history() {
    let app = spawn_app().await;
    let id = app.publish("t", json!("kept")).await;
    for raw in [&b"\xc3\xa9"[..], b"\xef\xbb\xbf x", b"\xff\xfe"] {
        let response = app
            .client
            .get(app.url("/v1/events?topic=t"))
            .header(
                "Last-Event-ID",
                reqwest::header::HeaderValue::from_bytes(raw).unwrap(),
            )
            .send()
            .await
            .unwrap();
        let mut subscriber = Subscriber::from_response(response).await;
        let gap = subscriber.next().await;
        assert_eq!(gap.event, "gap", "{raw:?}");
        let event = subscriber.next().await;
        assert_eq!((event.id.as_str(), event.data.as_str()), (&*id, "kept"));
    }
}
