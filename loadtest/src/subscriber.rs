//! One SSE subscriber: dial, send the GET, read the response head, then
//! undo chunking, parse events and check each against the ledger until the
//! stream ends — and, when the plan says so, reopen it the way EventSource
//! does (wait the `retry:` time, send `Last-Event-ID`), keeping one ledger
//! across connections so a loss or duplicate at a reconnect is caught. Per
//! connection it keeps one read buffer, the parser's small buffers and a
//! bitmap of what arrived: a few KiB, so 20,000 fit easily.

use crate::http::body::BodyDecoder;
use crate::http::connection::read_head;
use crate::http::request;
use crate::http::url::HttpUrl;
use crate::latency::{HistogramDump, LatencyRecorder, new_histogram};
use crate::loss::ConnectionLog;
use crate::payload;
use crate::protocol::{RECONNECT_BUCKET_NANOS, ReconnectDump};
use crate::sse::{SseEvent, SseParser};
use crate::verify::{Delivery, DeliveryLedger};
use anyhow::{Context, Result, bail};
use hdrhistogram::Histogram;
use std::collections::BTreeMap;
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
/// Reconnect attempts in a row that may fail before a subscriber gives up:
/// at the usual 1–3 s `retry:` that is minutes without a server, far longer
/// than any restart, and it keeps a run against a dead server bounded.
const RECONNECT_ATTEMPTS_MAX: u32 = 60;

fn unix_millis() -> u64 {
    unix_nanos() / 1_000_000
}

pub fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// The reconnects of a worker's subscribers, as they happen.
pub struct ReconnectRecorder {
    count: AtomicU64,
    failed_attempts: AtomicU64,
    gave_up: AtomicU64,
    /// From a stream's end to its reopening, in µs.
    latency: Mutex<Histogram<u64>>,
    /// Reopened streams per `RECONNECT_BUCKET_NANOS` of unix time.
    per_bucket: Mutex<BTreeMap<u64, u64>>,
}

impl ReconnectRecorder {
    fn new() -> Self {
        Self {
            count: AtomicU64::new(0),
            failed_attempts: AtomicU64::new(0),
            gave_up: AtomicU64::new(0),
            latency: Mutex::new(new_histogram(3)),
            per_bucket: Mutex::new(BTreeMap::new()),
        }
    }

    fn reopened(&self, waited: Duration, at_unix_nanos: u64) {
        self.count.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(waited.as_micros()).unwrap_or(u64::MAX);
        self.latency
            .lock()
            .expect("reconnect histogram poisoned")
            .saturating_record(micros.max(1));
        *self
            .per_bucket
            .lock()
            .expect("reconnect buckets poisoned")
            .entry(at_unix_nanos / RECONNECT_BUCKET_NANOS)
            .or_default() += 1;
    }

    pub fn dump(&self) -> ReconnectDump {
        ReconnectDump {
            count: self.count.load(Ordering::Relaxed),
            failed_attempts: self.failed_attempts.load(Ordering::Relaxed),
            gave_up: self.gave_up.load(Ordering::Relaxed),
            latency: HistogramDump::from(&*self.latency.lock().expect("poisoned")),
            per_bucket: self
                .per_bucket
                .lock()
                .expect("poisoned")
                .iter()
                .map(|(bucket, count)| (*bucket, *count))
                .collect(),
        }
    }
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
    /// Reopen ended streams after this default wait (`None`: don't).
    pub reconnect_default_retry: Option<Duration>,
    pub reconnects: ReconnectRecorder,
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
            reconnect_default_retry: plan
                .reconnect
                .map(|reconnect| Duration::from_millis(reconnect.default_retry_ms)),
            reconnects: ReconnectRecorder::new(),
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
    /// The stream ended; waiting to reopen it.
    Reconnecting,
    /// The stream ended or broke after opening, for good.
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
    /// Its latest connections, to explain a loss.
    pub connections: ConnectionLog,
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
                connections: ConnectionLog::default(),
            }),
        }
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, SubscriberState> {
        self.state.lock().expect("subscriber state poisoned")
    }
}

/// Runs one subscriber until its stream ends for good. `connect_permit` is
/// released as soon as the first stream is open, bounding connection
/// attempts in flight (reconnects are spread by `retry:` instead).
pub async fn run(
    context: &SubscriberContext,
    slot: &SubscriberSlot,
    topic_name: &str,
    connect_permit: OwnedSemaphorePermit,
) {
    let mut sse = SseParser::new(context.max_event_bytes);
    let dial_started = Instant::now();
    let opened = tokio::time::timeout(
        context.connect_timeout,
        open_stream(context, topic_name, sse.last_event_id()),
    )
    .await;
    // The permit goes back only after the outcome is counted: the worker
    // takes "all permits back" to mean "every attempt is counted".
    let mut opened = match opened {
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
    {
        let mut state = slot.lock();
        state.stage = Stage::Open;
        state
            .connections
            .opened(unix_millis(), opened.local_port, b"");
    }
    drop(connect_permit);

    loop {
        let ended = read_until_end(context, slot, &mut sse, opened).await;
        let ended_at = Instant::now();
        slot.lock().connections.ended(unix_millis(), &ended);
        let Some(default_retry) = context.reconnect_default_retry else {
            slot.lock().stage = Stage::Closed;
            SubscriberContext::keep_example(&context.close_examples, ended);
            return;
        };
        slot.lock().stage = Stage::Reconnecting;
        opened = match reopen(context, topic_name, &mut sse, default_retry).await {
            Ok(opened) => opened,
            Err(why) => {
                slot.lock().stage = Stage::Closed;
                context.reconnects.gave_up.fetch_add(1, Ordering::Relaxed);
                SubscriberContext::keep_example(
                    &context.close_examples,
                    format!("{ended}; then {why}"),
                );
                return;
            }
        };
        context
            .reconnects
            .reopened(ended_at.elapsed(), unix_nanos());
        let mut state = slot.lock();
        state.stage = Stage::Open;
        // The id it was opened with: resetting keeps the last dispatched one.
        state
            .connections
            .opened(unix_millis(), opened.local_port, sse.last_event_id());
    }
}

/// Reads one connection's stream until it ends; returns how it ended.
async fn read_until_end(
    context: &SubscriberContext,
    slot: &SubscriberSlot,
    sse: &mut SseParser,
    opened: OpenedStream,
) -> String {
    let OpenedStream {
        mut stream,
        mut buffer,
        head,
        local_port: _,
    } = opened;
    let mut reader = StreamReader {
        body: BodyDecoder::new(head.framing),
    };
    let (body_start, body_end) = (head.head_len, head.body_end);
    let result: Result<()> = async {
        let mut finished = reader.consume(context, slot, sse, &mut buffer[body_start..body_end])?;
        while !finished {
            let read = stream.read(&mut buffer).await?;
            if read == 0 {
                bail!("server closed the stream");
            }
            finished = reader.consume(context, slot, sse, &mut buffer[..read])?;
        }
        bail!("server ended the response")
    }
    .await;
    match result {
        Ok(()) => unreachable!("the loop above only ends with an error"),
        Err(error) => format!("{error:#}"),
    }
}

/// Reopens an ended stream as EventSource does: wait the reconnection time,
/// then GET again with `Last-Event-ID`. Network errors are retried; an HTTP
/// status other than 200 is final, as it is for EventSource.
async fn reopen(
    context: &SubscriberContext,
    topic_name: &str,
    sse: &mut SseParser,
    default_retry: Duration,
) -> Result<OpenedStream, String> {
    for _ in 0..RECONNECT_ATTEMPTS_MAX {
        tokio::time::sleep(sse.reconnection_time().unwrap_or(default_retry)).await;
        let attempt = tokio::time::timeout(
            context.connect_timeout,
            open_stream(context, topic_name, sse.last_event_id()),
        )
        .await;
        match attempt {
            Ok(Ok(opened)) => {
                sse.reset_for_new_connection();
                return Ok(opened);
            }
            Ok(Err(error)) if error.downcast_ref::<NotAStream>().is_some() => {
                return Err(format!("{error:#} on reconnect: EventSource gives up"));
            }
            Ok(Err(_)) | Err(_) => {
                context
                    .reconnects
                    .failed_attempts
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    Err(format!(
        "{RECONNECT_ATTEMPTS_MAX} reconnect attempts in a row failed"
    ))
}

fn fail(context: &SubscriberContext, slot: &SubscriberSlot, message: String) {
    slot.lock().stage = Stage::Failed;
    context.failed.fetch_add(1, Ordering::Relaxed);
    SubscriberContext::keep_example(&context.failure_examples, message);
}

/// An answer other than 200: no stream, and no point in retrying.
#[derive(Debug)]
struct NotAStream {
    status: u16,
    target: String,
}

impl std::fmt::Display for NotAStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HTTP {} from {}", self.status, self.target)
    }
}

impl std::error::Error for NotAStream {}

/// The response head and where the body bytes that came with it lie.
struct OpenedHead {
    framing: crate::http::response::Framing,
    head_len: usize,
    body_end: usize,
}

/// A stream whose response head said 200.
struct OpenedStream {
    stream: TcpStream,
    buffer: Vec<u8>,
    head: OpenedHead,
    local_port: u16,
}

async fn open_stream(
    context: &SubscriberContext,
    topic_name: &str,
    last_event_id: &[u8],
) -> Result<OpenedStream> {
    let url = HttpUrl::parse(&crate::target::render(
        &context.url_template,
        topic_name,
        "",
    ))?;
    let mut stream = dial(context.address).await?;
    let local_port = stream.local_addr().map_or(0, |address| address.port());
    stream
        .write_all(&request::sse_get(&url, &context.headers, last_event_id))
        .await?;
    let mut buffer = vec![0; READ_BUFFER_BYTES];
    let mut filled = 0;
    let head = read_head(&mut stream, &mut buffer, &mut filled).await?;
    if head.status != 200 {
        return Err(NotAStream {
            status: head.status,
            target: url.target,
        }
        .into());
    }
    Ok(OpenedStream {
        stream,
        buffer,
        head: OpenedHead {
            framing: head.framing,
            head_len: head.head_len,
            body_end: filled,
        },
        local_port,
    })
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

/// Body decoding state of one connection (the SSE parser outlives it).
struct StreamReader {
    body: BodyDecoder,
}

impl StreamReader {
    /// Processes one read; `true` when the response body is complete.
    fn consume(
        &mut self,
        context: &SubscriberContext,
        slot: &SubscriberSlot,
        sse: &mut SseParser,
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
        sse.feed(&bytes[..decoded.data_len], &mut |event: SseEvent<'_>| {
            if !event.event_type.is_empty() {
                if event.event_type == b"gap" {
                    state.gap_frames += 1;
                    report_gap_frame(slot.topic, event.data);
                } else {
                    state.other_events += 1;
                }
                return;
            }
            match payload::parse(event.data) {
                Some(token) if token.run_id == run_id && token.topic == slot.topic => {
                    state.connections.event(token.seq, event.last_event_id);
                    if state.ledger.record(token.seq, token.completed_before) != Delivery::Duplicate
                    {
                        fresh += 1;
                        latency.record(token.scheduled_unix_nanos, now);
                    }
                }
                _ => state.foreign_events += 1,
            }
        })?;
        state.comments = sse.comments;
        if fresh > 0 {
            context.deliveries.fetch_add(fresh, Ordering::Relaxed);
        }
        Ok(decoded.finished)
    }
}

/// Gap frames worth showing on stderr in one run: their reason says whether
/// the server or the run is at fault, and a few are enough to tell.
const GAP_FRAMES_SHOWN_MAX: u32 = 5;

/// Shows the first few gap frames of the run (their JSON names the reason).
fn report_gap_frame(topic: u32, data: &[u8]) {
    static SHOWN: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    if SHOWN.fetch_add(1, Ordering::Relaxed) < GAP_FRAMES_SHOWN_MAX {
        eprintln!(
            "gap frame on topic {topic}: {}",
            String::from_utf8_lossy(data)
        );
    }
}
