//! One SSE subscriber: dial, send the GET, read the response head, then
//! undo chunking, parse events and check each against the ledger until the
//! stream ends. Per connection it keeps one read buffer, the parser's small
//! buffers and a bitmap of what arrived: a few KiB, so 20,000 fit easily.

use crate::http::body::BodyDecoder;
use crate::http::connection::read_head;
use crate::http::request;
use crate::http::url::HttpUrl;
use crate::latency::{LatencyRecorder, new_histogram};
use crate::payload;
use crate::sse::{SseEvent, SseParser};
use crate::verify::{Delivery, DeliveryLedger};
use anyhow::{Context, Result, bail};
use hdrhistogram::Histogram;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;

/// Per-connection read buffer. Events here are a few hundred bytes; a
/// longer one simply takes several reads (the parsers are incremental).
const READ_BUFFER_BYTES: usize = 4 * 1024;
/// Attempts to dial before a subscriber counts as failed: loopback refuses
/// now and then when the accept backlog overflows during a fast ramp.
const DIAL_ATTEMPTS: u32 = 4;
const DIAL_BACKOFF: Duration = Duration::from_millis(200);
/// Failure and close messages kept to explain a failed run.
const EXAMPLES_KEPT: usize = 5;

pub fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// What all subscribers of a worker share: where to go, and where results go.
pub struct SubscriberContext {
    pub address: SocketAddr,
    pub url_template: String,
    pub headers: Vec<request::Header>,
    pub run_id: String,
    pub max_event_bytes: usize,
    pub connect_timeout: Duration,
    pub latency: LatencyRecorder,
    /// From dialing to the response head, in µs.
    pub connect_latency: Mutex<Histogram<u64>>,
    pub connected: AtomicU64,
    pub failed: AtomicU64,
    /// First deliveries, all subscribers (for progress and rates).
    pub deliveries: AtomicU64,
    pub last_connected_unix_nanos: AtomicU64,
    pub failure_examples: Mutex<Vec<String>>,
    pub close_examples: Mutex<Vec<String>>,
}

impl SubscriberContext {
    pub fn new(address: SocketAddr, plan: &crate::protocol::WorkerPlan) -> Self {
        Self {
            address,
            url_template: plan.subscribe_url.clone(),
            headers: crate::target::headers(&plan.subscribe_headers),
            run_id: plan.run_id.clone(),
            max_event_bytes: plan.max_event_bytes,
            connect_timeout: Duration::from_millis(plan.connect_timeout_ms),
            // Two shards per thread keep lock contention negligible.
            latency: LatencyRecorder::new(plan.client_threads as usize * 2),
            connect_latency: Mutex::new(new_histogram(3)),
            connected: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            deliveries: AtomicU64::new(0),
            last_connected_unix_nanos: AtomicU64::new(0),
            failure_examples: Mutex::new(Vec::new()),
            close_examples: Mutex::new(Vec::new()),
        }
    }

    fn keep_example(list: &Mutex<Vec<String>>, message: String) {
        let mut list = list.lock().expect("examples poisoned");
        if list.len() < EXAMPLES_KEPT {
            list.push(message);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Connecting,
    Open,
    /// The stream ended or broke after opening.
    Closed,
    /// Never opened.
    Failed,
}

/// One subscriber's results, read by the worker while and after it runs.
pub struct SubscriberSlot {
    pub index: usize,
    pub topic: u32,
    pub state: Mutex<SubscriberState>,
}

pub struct SubscriberState {
    pub stage: Stage,
    pub ledger: DeliveryLedger,
    pub foreign_events: u64,
    pub gap_frames: u64,
    pub other_events: u64,
    pub comments: u64,
}

impl SubscriberSlot {
    pub fn new(index: usize, topic: u32) -> Self {
        Self {
            index,
            topic,
            state: Mutex::new(SubscriberState {
                stage: Stage::Connecting,
                ledger: DeliveryLedger::default(),
                foreign_events: 0,
                gap_frames: 0,
                other_events: 0,
                comments: 0,
            }),
        }
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, SubscriberState> {
        self.state.lock().expect("subscriber state poisoned")
    }
}

/// Runs one subscriber until its stream ends. `connect_permit` is released
/// as soon as the stream is open, bounding connection attempts in flight.
pub async fn run(
    context: &SubscriberContext,
    slot: &SubscriberSlot,
    topic_name: &str,
    connect_permit: OwnedSemaphorePermit,
) {
    let dial_started = Instant::now();
    let opened =
        tokio::time::timeout(context.connect_timeout, open_stream(context, topic_name)).await;
    // The permit goes back only after the outcome is counted: the worker
    // takes "all permits back" to mean "every attempt is counted".
    let (mut stream, mut buffer, head) = match opened {
        Ok(Ok(opened)) => opened,
        Ok(Err(error)) => return fail(context, slot, format!("{error:#}")),
        Err(_) => {
            return fail(
                context,
                slot,
                format!("no response head within {:?}", context.connect_timeout),
            );
        }
    };
    let micros = u64::try_from(dial_started.elapsed().as_micros()).unwrap_or(u64::MAX);
    context
        .connect_latency
        .lock()
        .expect("connect histogram poisoned")
        .saturating_record(micros.max(1));
    context.connected.fetch_add(1, Ordering::Relaxed);
    context
        .last_connected_unix_nanos
        .fetch_max(unix_nanos(), Ordering::Relaxed);
    slot.lock().stage = Stage::Open;
    drop(connect_permit);

    let mut reader = StreamReader {
        body: BodyDecoder::new(head.framing),
        sse: SseParser::new(context.max_event_bytes),
    };
    let (body_start, body_end) = (head.head_len, head.body_end);
    let result: Result<()> = async {
        let mut finished = reader.consume(context, slot, &mut buffer[body_start..body_end])?;
        while !finished {
            let read = stream.read(&mut buffer).await?;
            if read == 0 {
                bail!("server closed the stream");
            }
            finished = reader.consume(context, slot, &mut buffer[..read])?;
        }
        bail!("server ended the response")
    }
    .await;
    slot.lock().stage = Stage::Closed;
    if let Err(error) = result {
        SubscriberContext::keep_example(&context.close_examples, format!("{error:#}"));
    }
}

fn fail(context: &SubscriberContext, slot: &SubscriberSlot, message: String) {
    slot.lock().stage = Stage::Failed;
    context.failed.fetch_add(1, Ordering::Relaxed);
    SubscriberContext::keep_example(&context.failure_examples, message);
}

/// The response head and where the body bytes that came with it lie.
struct OpenedHead {
    framing: crate::http::response::Framing,
    head_len: usize,
    body_end: usize,
}

async fn open_stream(
    context: &SubscriberContext,
    topic_name: &str,
) -> Result<(TcpStream, Vec<u8>, OpenedHead)> {
    let url = HttpUrl::parse(&crate::target::render(
        &context.url_template,
        topic_name,
        "",
    ))?;
    let mut stream = dial(context.address).await?;
    stream
        .write_all(&request::sse_get(&url, &context.headers))
        .await?;
    let mut buffer = vec![0; READ_BUFFER_BYTES];
    let mut filled = 0;
    let head = read_head(&mut stream, &mut buffer, &mut filled).await?;
    if head.status != 200 {
        bail!("HTTP {} from {}", head.status, url.target);
    }
    Ok((
        stream,
        buffer,
        OpenedHead {
            framing: head.framing,
            head_len: head.head_len,
            body_end: filled,
        },
    ))
}

async fn dial(address: SocketAddr) -> Result<TcpStream> {
    let mut attempt = 1;
    loop {
        match TcpStream::connect(address).await {
            Ok(stream) => {
                stream.set_nodelay(true)?;
                return Ok(stream);
            }
            // Retried quietly: only the last attempt's error is reported.
            Err(_) if attempt < DIAL_ATTEMPTS => {
                tokio::time::sleep(DIAL_BACKOFF * attempt).await;
                attempt += 1;
            }
            Err(error) => return Err(error).with_context(|| format!("connecting to {address}")),
        }
    }
}

/// Body decoding and SSE parsing state of one stream.
struct StreamReader {
    body: BodyDecoder,
    sse: SseParser,
}

impl StreamReader {
    /// Processes one read; `true` when the response body is complete.
    fn consume(
        &mut self,
        context: &SubscriberContext,
        slot: &SubscriberSlot,
        bytes: &mut [u8],
    ) -> Result<bool> {
        let decoded = self.body.decode_in_place(bytes)?;
        if decoded.data_len == 0 {
            return Ok(decoded.finished);
        }
        // One clock reading per read: every event in it arrived together.
        let now = unix_nanos();
        let mut state = slot.lock();
        let mut latency = context.latency.shard(slot.index);
        let mut fresh = 0u64;
        let run_id = context.run_id.as_bytes();
        let state = &mut *state;
        self.sse
            .feed(&bytes[..decoded.data_len], &mut |event: SseEvent<'_>| {
                if !event.event_type.is_empty() {
                    if event.event_type == b"gap" {
                        state.gap_frames += 1;
                    } else {
                        state.other_events += 1;
                    }
                    return;
                }
                match payload::parse(event.data) {
                    Some(token) if token.run_id == run_id && token.topic == slot.topic => {
                        if state.ledger.record(token.seq, token.completed_before)
                            != Delivery::Duplicate
                        {
                            fresh += 1;
                            latency.record(token.scheduled_unix_nanos, now);
                        }
                    }
                    _ => state.foreign_events += 1,
                }
            })?;
        state.comments = self.sse.comments;
        if fresh > 0 {
            context.deliveries.fetch_add(fresh, Ordering::Relaxed);
        }
        Ok(decoded.finished)
    }
}
