//! Messages between the coordinator and its subscriber worker processes:
//! one JSON object per line, on the worker's stdin and stdout. (Worker logs
//! go to stderr so they can't corrupt the stream.)

use crate::latency::{HistogramDump, LatencyDump};
use crate::loss::LostBySubscriber;
use crate::seq_set::SeqSet;
use crate::verify::Audit;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ToWorker {
    /// First message: open these subscribers.
    Plan(WorkerPlan),
    /// Publishing is over: these were answered 2xx; wait for them, then report.
    Expect(Expectation),
    /// Close everything and exit.
    Shutdown,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerPlan {
    pub worker: u32,
    pub run_id: String,
    /// Global index of this worker's first subscriber; subscriber `i` takes topic `i % topics`.
    pub first_subscriber: u32,
    pub subscribers: u32,
    pub topics: u32,
    /// Subscribe URL template with `{topic}`.
    pub subscribe_url: String,
    pub subscribe_headers: Vec<(String, String)>,
    pub connect_concurrency: u32,
    pub connect_rate_per_second: f64,
    pub connect_timeout_ms: u64,
    pub client_threads: u32,
    /// Largest event accepted before a stream is declared broken.
    pub max_event_bytes: usize,
    /// Reopen streams that end, as EventSource does; `None`: an ended stream
    /// stays closed (and counts as closed early).
    #[serde(default)]
    pub reconnect: Option<ReconnectPlan>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconnectPlan {
    /// Wait before reconnecting when the server never sent `retry:`.
    pub default_retry_ms: u64,
}

impl WorkerPlan {
    pub fn topic_of(&self, subscriber: u32) -> u32 {
        subscriber % self.topics
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Expectation {
    /// Per topic this worker subscribes to: the publishes answered 2xx.
    pub acked: Vec<(u32, SeqSet)>,
    /// Per topic: the publishes the server answered as not taken (4xx, 503),
    /// which nobody may receive.
    #[serde(default)]
    pub refused: Vec<(u32, SeqSet)>,
    pub drain_timeout_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FromWorker {
    Progress(WorkerProgress),
    /// Every subscriber has connected or failed.
    Connected(ConnectSummary),
    Report(Box<WorkerReport>),
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct WorkerProgress {
    pub connected: u64,
    pub failed: u64,
    pub deliveries: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConnectSummary {
    pub connected: u64,
    pub failed: u64,
    /// A few failure messages, to say why.
    pub failure_examples: Vec<String>,
    /// Per connection: from dialing to the stream's response head, in µs.
    pub connect_latency: HistogramDump,
    pub first_attempt_unix_nanos: u64,
    pub last_connected_unix_nanos: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WorkerReport {
    pub audit: Audit,
    /// The first few subscribers that lost something, in detail.
    #[serde(default)]
    pub lost_detail: Vec<LostBySubscriber>,
    /// First deliveries of this run's publishes (duplicates not counted).
    pub deliveries: u64,
    /// Events that were not this run's payload for the subscriber's topic.
    pub foreign_events: u64,
    /// `event: gap` frames: the server announcing a loss.
    pub gap_frames: u64,
    /// Events of other named types.
    pub other_events: u64,
    pub comments: u64,
    /// Streams that ended or broke before the run did.
    pub closed_early: u64,
    pub close_examples: Vec<String>,
    /// Every subscriber had every acked publish before the drain timeout.
    pub drained: bool,
    pub last_delivery_unix_nanos: Option<u64>,
    pub latency: LatencyDump,
    #[serde(default)]
    pub reconnects: ReconnectDump,
}

/// Reconnects of one worker's subscribers.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ReconnectDump {
    /// Streams reopened after they ended.
    pub count: u64,
    /// Reconnect attempts that failed (refused, timed out) and were tried again.
    pub failed_attempts: u64,
    /// Subscribers that stopped reconnecting: an HTTP status other than 200
    /// (EventSource gives up for good on those) or too many failed attempts.
    pub gave_up: u64,
    /// From the end of a stream to its reopening, in µs (the `retry:` wait included).
    pub latency: HistogramDump,
    /// Reopened streams per `RECONNECT_BUCKET` of unix time: `(bucket, count)`.
    pub per_bucket: Vec<(u64, u64)>,
}

/// Width of the buckets reconnects are counted in: fine enough to show a
/// burst within a second.
pub const RECONNECT_BUCKET_NANOS: u64 = 250_000_000;
