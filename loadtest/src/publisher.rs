//! Open-loop publishing: publish `i` is due at `start + i / rate`, whatever
//! the server does. A scheduler hands due publishes to whichever keep-alive
//! connection is free; if all are busy, publishes wait in line and their
//! latency, counted from the due time, shows it. A stalled server can't hide
//! its stall by slowing the load down (no coordinated omission).
//!
//! Retries: with `target.publish_retries` above 0 (the ssehub and mercure
//! presets) each
//! publish carries an `Idempotency-Key` naming it (`<run>-<topic>-<seq>`),
//! and one left unanswered (no answer in time, a broken connection, a 5xx)
//! or answered 409 (its first attempt still in flight) is sent again, the
//! same bytes with the same key, up to that many times: the server answers
//! a retry of a publish it already took with the first answer, so the
//! subscribers' counting still shows any event lost or delivered twice.
//!
//! A target whose publish answers the update's id (Mercure) has each 2xx
//! answer read for it: a 2xx without one is a failed publish, counted as
//! an error with its reason and not retried (the server answered).

use crate::http::connection::KeepAliveConnection;
use crate::http::request::{self, Header};
use crate::http::url::HttpUrl;
use crate::latency::new_histogram;
use crate::loss::Answered;
use crate::mercure;
use crate::payload::PayloadToken;
use crate::seq_set::SeqSet;
use crate::subscriber::unix_nanos;
use crate::target::{self, PublishAnswer, Target};
use anyhow::Result;
use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// Head start before the first publish is due, so connections are dialed
/// and the first publishes aren't late from the start.
const START_DELAY: Duration = Duration::from_millis(100);
const ERROR_EXAMPLES_KEPT: usize = 5;
/// The wait before the first retry, doubled for each next one up to
/// [`RETRY_BACKOFF_MAX`]: a replica restarting or a Redis failing over
/// takes a second or two, so a few retries span it.
const RETRY_BACKOFF_FIRST: Duration = Duration::from_millis(100);
const RETRY_BACKOFF_MAX: Duration = Duration::from_secs(2);

pub struct PublishPlan {
    pub run_id: String,
    pub topics: u32,
    pub rate_per_second: f64,
    /// Publishes to schedule, unless `stop` ends the schedule first.
    pub count: u64,
    /// Ends the schedule when it turns true (open-ended runs: publishing goes
    /// on until a disruption is over). Publishes already due are still sent.
    pub stop: Option<watch::Receiver<bool>>,
    pub payload_bytes: usize,
    pub connections: u32,
    pub timeout: Duration,
    pub target: Target,
}

/// Live counters for the progress bar.
#[derive(Default)]
pub struct PublishProgress {
    pub answered: AtomicU64,
}

pub struct PublishOutcome {
    /// Per topic: publishes answered 2xx.
    pub acked: Vec<SeqSet>,
    /// Per topic: publishes the server said it did not take (see `is_refusal`).
    pub refused: Vec<SeqSet>,
    /// Per topic: the id each acked publish was answered with, and when
    /// (to name a lost one).
    pub answers: Vec<BTreeMap<u64, Answered>>,
    pub scheduled: u64,
    pub acked_count: u64,
    /// Answered, but not 2xx.
    pub rejected: u64,
    /// No answer: connection errors and timeouts (after the last retry).
    pub errors: u64,
    /// Attempts sent again with the same idempotency key.
    pub retries: u64,
    pub statuses: BTreeMap<u16, u64>,
    pub error_examples: Vec<String>,
    /// From the due time to the answer, in µs.
    pub ack_latency: Histogram<u64>,
    pub first_due_unix_nanos: u64,
    pub last_answer_unix_nanos: u64,
}

/// Per topic: which publishes have been answered, and the number below which all have.
#[derive(Default)]
struct TopicProgress {
    answered: SeqSet,
    completed_before: u64,
}

impl TopicProgress {
    fn mark_answered(&mut self, seq: u64) {
        self.answered.insert(seq);
        while self.answered.contains(self.completed_before) {
            self.completed_before += 1;
        }
    }
}

/// Shared by the connection tasks.
struct Ledger {
    topics: Vec<TopicProgress>,
    acked: Vec<SeqSet>,
    refused: Vec<SeqSet>,
    answers: Vec<BTreeMap<u64, Answered>>,
    outcome_counts: BTreeMap<u16, u64>,
    errors: u64,
    retries: u64,
    error_examples: Vec<String>,
    ack_latency: Histogram<u64>,
    last_answer_unix_nanos: u64,
}

struct Job {
    index: u64,
    due_unix_nanos: u64,
}

/// Publishes the plan and returns what was answered.
pub async fn publish(
    plan: PublishPlan,
    address: SocketAddr,
    progress: Arc<PublishProgress>,
) -> Result<PublishOutcome> {
    let topics = plan.topics as usize;
    let ledger = Arc::new(Mutex::new(Ledger {
        topics: (0..topics).map(|_| TopicProgress::default()).collect(),
        acked: vec![SeqSet::default(); topics],
        refused: vec![SeqSet::default(); topics],
        answers: vec![BTreeMap::new(); topics],
        outcome_counts: BTreeMap::new(),
        errors: 0,
        retries: 0,
        error_examples: Vec::new(),
        ack_latency: new_histogram(3),
        last_answer_unix_nanos: 0,
    }));
    let plan = Arc::new(plan);
    let (sender, receiver) = mpsc::unbounded_channel::<Job>();
    // One queue, many consumers: a free connection takes the next due publish.
    let receiver = Arc::new(tokio::sync::Mutex::new(receiver));
    let connections: Vec<_> = (0..plan.connections.max(1))
        .map(|_| {
            let (plan, ledger, receiver, progress) = (
                plan.clone(),
                ledger.clone(),
                receiver.clone(),
                progress.clone(),
            );
            tokio::spawn(async move {
                let mut connection = KeepAliveConnection::new(address);
                let publish_headers = target::headers(&plan.target.publish_headers);
                loop {
                    let Some(job) = receiver.lock().await.recv().await else {
                        break;
                    };
                    send_one(&plan, &publish_headers, &mut connection, &ledger, job).await;
                    progress.answered.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();

    let start = Instant::now() + START_DELAY;
    let first_due_unix_nanos = unix_nanos() + START_DELAY.as_nanos() as u64;
    let mut stop = plan.stop.clone();
    let mut scheduled = 0;
    for index in 0..plan.count {
        let offset = Duration::from_secs_f64(index as f64 / plan.rate_per_second);
        let due = start + offset;
        if stop.as_ref().is_some_and(|stop| *stop.borrow()) {
            break;
        }
        if due > Instant::now() {
            if let Some(stop) = stop.as_mut() {
                let stopped = tokio::select! {
                    () = tokio::time::sleep_until(due) => false,
                    // A dropped sender stops the schedule too: nobody is
                    // left to end it.
                    changed = stop.changed() => changed.is_err() || *stop.borrow(),
                };
                if stopped {
                    break;
                }
            }
            tokio::time::sleep_until(due).await;
        }
        let job = Job {
            index,
            due_unix_nanos: first_due_unix_nanos + offset.as_nanos() as u64,
        };
        if sender.send(job).is_err() {
            break;
        }
        scheduled += 1;
    }
    drop(sender);
    for connection in connections {
        connection.await?;
    }

    let ledger = Arc::try_unwrap(ledger)
        .map_err(|_| anyhow::anyhow!("publish connections still running"))?
        .into_inner()
        .expect("ledger poisoned");
    let acked_count = ledger.acked.iter().map(SeqSet::count).sum();
    let answered: u64 = ledger.outcome_counts.values().sum();
    Ok(PublishOutcome {
        acked: ledger.acked,
        refused: ledger.refused,
        answers: ledger.answers,
        scheduled,
        acked_count,
        rejected: answered - acked_count,
        errors: ledger.errors,
        retries: ledger.retries,
        statuses: ledger.outcome_counts,
        error_examples: ledger.error_examples,
        ack_latency: ledger.ack_latency,
        first_due_unix_nanos,
        last_answer_unix_nanos: ledger.last_answer_unix_nanos,
    })
}

async fn send_one(
    plan: &PublishPlan,
    headers: &[Header],
    connection: &mut KeepAliveConnection,
    ledger: &Mutex<Ledger>,
    job: Job,
) {
    // Round-robin over topics: publish i goes to topic i % K as its (i / K)th.
    let topic = (job.index % u64::from(plan.topics)) as u32;
    let seq = job.index / u64::from(plan.topics);
    let completed_before =
        ledger.lock().expect("ledger poisoned").topics[topic as usize].completed_before;
    let token = PayloadToken {
        run_id: plan.run_id.as_bytes(),
        topic,
        seq,
        completed_before,
        scheduled_unix_nanos: job.due_unix_nanos,
    }
    .encode(plan.payload_bytes);
    let topic_name = target::topic_name(&plan.run_id, topic);
    let retries = plan.target.publish_retries;
    // Names this publish: its Idempotency-Key, and `{event_key}` in the
    // templates (e.g. a Mercure publisher's own `id`).
    let event_key = format!("{}-{topic}-{seq}", plan.run_id);
    let keyed: Vec<Header>;
    let headers = if retries > 0 {
        keyed = headers
            .iter()
            .cloned()
            .chain(std::iter::once(Header {
                name: "Idempotency-Key".to_owned(),
                value: event_key.clone(),
            }))
            .collect();
        &keyed[..]
    } else {
        headers
    };
    // Built once: a retry must send the very same request (its key names
    // these bytes; another body would be refused as a reused key).
    let render = |template: &str, payload: &str| {
        target::render(
            &template.replace(target::EVENT_KEY_PLACEHOLDER, &event_key),
            &topic_name,
            payload,
        )
    };
    let request = match HttpUrl::parse(&render(&plan.target.publish_url, "")) {
        Ok(url) => request::post(
            &url,
            &plan.target.publish_content_type,
            render(&plan.target.publish_body, &token).as_bytes(),
            headers,
        ),
        Err(error) => return record_error(ledger, format!("{error:#}")),
    };
    let mut attempt = 0;
    let (status, id) = loop {
        let result = tokio::time::timeout(
            plan.timeout,
            exchange(connection, &request, plan.target.publish_answer),
        )
        .await;
        let unanswered = match result {
            Ok(Ok((status, id))) if !is_worth_a_retry(status) => break (status, id),
            Ok(Ok((status, _))) => format!("answered {status}"),
            // Answered: the server decided; sending it again can't help.
            Ok(Err(error)) if error.is::<NoUpdateId>() => {
                return record_error(ledger, format!("{error:#}"));
            }
            Ok(Err(error)) => format!("{error:#}"),
            Err(_) => {
                // The connection may still deliver the late answer; start afresh.
                connection.reset();
                format!("no answer within {:?}", plan.timeout)
            }
        };
        if attempt >= retries {
            match unanswered.strip_prefix("answered ") {
                Some(status) => break (status.parse().expect("a status we wrote"), None),
                None => return record_error(ledger, unanswered),
            }
        }
        let backoff = RETRY_BACKOFF_FIRST
            .saturating_mul(1 << attempt.min(16))
            .min(RETRY_BACKOFF_MAX);
        attempt += 1;
        ledger.lock().expect("ledger poisoned").retries += 1;
        tokio::time::sleep(backoff).await;
    };
    let answered_at = unix_nanos();
    let mut ledger = ledger.lock().expect("ledger poisoned");
    *ledger.outcome_counts.entry(status).or_default() += 1;
    // Any answer settles the order: the server has decided on this publish.
    ledger.topics[topic as usize].mark_answered(seq);
    if (200..300).contains(&status) {
        ledger.acked[topic as usize].insert(seq);
        ledger.answers[topic as usize].insert(
            seq,
            Answered {
                id,
                unix_ms: answered_at / 1_000_000,
            },
        );
    } else if is_refusal(status) {
        ledger.refused[topic as usize].insert(seq);
    }
    let micros = answered_at.saturating_sub(job.due_unix_nanos) / 1_000;
    ledger.ack_latency.saturating_record(micros.max(1));
    ledger.last_answer_unix_nanos = ledger.last_answer_unix_nanos.max(answered_at);
}

/// Sends one publish and returns the answer's status and the id it names,
/// if any (ssehub's JSON `{"id": ...}`, a Mercure hub's text/plain body);
/// for a target that answers with the update's id, a 2xx without one is an
/// error (whose message must not start with "answered ", which `send_one`
/// reads back).
async fn exchange(
    connection: &mut KeepAliveConnection,
    request: &[u8],
    expected: PublishAnswer,
) -> Result<(u16, Option<String>)> {
    let answer = connection.exchange_keeping_body(request).await?;
    let id = match expected {
        PublishAnswer::Status => json_id(&answer.body),
        PublishAnswer::UpdateId if (200..300).contains(&answer.status) => {
            match mercure::update_id(answer.content_type.as_deref(), &answer.body) {
                Ok(id) => Some(id.to_owned()),
                Err(why) => {
                    return Err(anyhow::Error::new(NoUpdateId(format!(
                        "status {} but no update id: {why}",
                        answer.status
                    ))));
                }
            }
        }
        PublishAnswer::UpdateId => None,
    };
    Ok((answer.status, id))
}

/// The `id` of a JSON answer such as ssehub's `{"id": "...", "topic": ...}`;
/// `None` for any other answer (only reports use it).
fn json_id(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct WithId {
        id: serde_json::Value,
    }
    match serde_json::from_slice::<WithId>(body).ok()?.id {
        serde_json::Value::String(id) => Some(id),
        serde_json::Value::Number(id) => Some(id.to_string()),
        _ => None,
    }
}

/// A 2xx answer without the update's id: answered, so never retried.
#[derive(Debug)]
struct NoUpdateId(String);

impl std::fmt::Display for NoUpdateId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NoUpdateId {}

/// Answers that say the server did not take the publish, so nobody may
/// receive it: 4xx (bad request, auth, limits) and 503 (draining, backplane
/// down). Not 502/504: a proxy answers those when it lost the upstream, which
/// may have taken the publish before it went. Not 409: the same key's first
/// attempt is still in flight and may yet be published.
fn is_refusal(status: u16) -> bool {
    ((400..500).contains(&status) && status != 409) || status == 503
}

/// Answers a keyed publish is sent again after: the server (or the proxy in
/// front) did not settle it — 5xx, or 409 while the first attempt with the
/// key is still being answered.
fn is_worth_a_retry(status: u16) -> bool {
    status >= 500 || status == 409
}

fn record_error(ledger: &Mutex<Ledger>, message: String) {
    let mut ledger = ledger.lock().expect("ledger poisoned");
    ledger.errors += 1;
    if ledger.error_examples.len() < ERROR_EXAMPLES_KEPT {
        ledger.error_examples.push(message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_json_answers_id_is_read_and_anything_else_is_none() {
        assert_eq!(
            json_id(br#"{"id":"5f3a-12","topic":"t"}"#).as_deref(),
            Some("5f3a-12")
        );
        assert_eq!(json_id(br#"{"id":7}"#).as_deref(), Some("7"));
        assert_eq!(json_id(b"accepted"), None);
        assert_eq!(json_id(br#"{"status":"success"}"#), None);
    }

    #[test]
    fn only_the_servers_own_refusals_count_as_not_taken() {
        assert!(is_refusal(400) && is_refusal(413) && is_refusal(429) && is_refusal(503));
        assert!(!is_refusal(202) && !is_refusal(502) && !is_refusal(504) && !is_refusal(500));
        assert!(
            !is_refusal(409),
            "the first attempt with the key may yet publish"
        );
    }

    #[test]
    fn unsettled_answers_are_retried_and_settled_ones_are_not() {
        for status in [409, 500, 502, 503, 504] {
            assert!(is_worth_a_retry(status), "{status}");
        }
        for status in [200, 202, 400, 401, 413, 422, 429] {
            assert!(!is_worth_a_retry(status), "{status}");
        }
    }

    #[test]
    fn completed_before_advances_only_over_a_full_prefix() {
        let mut topic = TopicProgress::default();
        topic.mark_answered(1);
        assert_eq!(topic.completed_before, 0, "0 is still in flight");
        topic.mark_answered(0);
        assert_eq!(topic.completed_before, 2);
        topic.mark_answered(3);
        assert_eq!(topic.completed_before, 2);
    }
}
