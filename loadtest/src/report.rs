//! A run's figures: what is printed as a table and appended as one JSON line.

use crate::loss::{self, LostBySubscriber};
use crate::verify::Audit;
use anyhow::{Context, Result};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

/// One JSON line per run (`kind = "run"`), per saturate summary (`kind = "saturate"`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunReport {
    pub kind: String,
    pub scenario: String,
    pub target: String,
    pub label: Option<String>,
    pub run_id: String,
    pub started_unix_seconds: u64,
    pub subscribers: u32,
    pub topics: u32,
    pub workers: u32,
    /// Saturate step number, when part of a saturate run.
    pub step: Option<u32>,
    pub connect: ConnectFigures,
    pub publish: Option<PublishFigures>,
    pub delivery: DeliveryFigures,
    pub verification: Verification,
    pub latency_ms: Percentiles,
    pub server: Option<ServerFigures>,
    /// CPU the harness itself (coordinator and workers) used from the end of
    /// connecting to the end of the run: near 2 s per wall second on two
    /// cores means the harness, not the server, may be the bottleneck.
    pub harness_cpu_seconds: f64,
    /// Latency per second of the publish schedule.
    pub timeline: Vec<TimelinePoint>,
    /// Streams reopened after they ended (runs with reconnecting subscribers).
    #[serde(default)]
    pub reconnect: Option<ReconnectFigures>,
    /// The command run in the middle of publishing (`--disrupt`), and the
    /// latency before, during and after it.
    #[serde(default)]
    pub disruption: Option<DisruptionFigures>,
    pub passed: bool,
    /// Why the run did not pass, in words.
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ConnectFigures {
    pub connected: u64,
    pub failed: u64,
    /// From the first dial to the last stream open.
    pub seconds: f64,
    pub per_second: f64,
    /// Per connection, dial to response head.
    pub latency_ms: Percentiles,
    pub failure_examples: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PublishFigures {
    pub target_rate_per_second: f64,
    pub scheduled: u64,
    pub acked: u64,
    pub rejected: u64,
    pub errors: u64,
    /// Attempts sent again with the same `Idempotency-Key` (timeouts, broken
    /// connections, 5xx, 409).
    #[serde(default)]
    pub retries: u64,
    pub statuses: BTreeMap<u16, u64>,
    /// Acked publishes over the time from the first due time to the last answer.
    pub achieved_rate_per_second: f64,
    /// From the scheduled time to the answer.
    pub ack_latency_ms: Percentiles,
    pub error_examples: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DeliveryFigures {
    /// First deliveries of this run's publishes, all subscribers.
    pub deliveries: u64,
    /// Acked publishes times the subscribers of their topic.
    pub expected: u64,
    /// Deliveries over the time from the first due publish to the last delivery.
    pub per_second: f64,
    pub foreign_events: u64,
    pub gap_frames: u64,
    pub other_events: u64,
    pub closed_early: u64,
    pub close_examples: Vec<String>,
    /// Every subscriber had everything before the drain timeout.
    pub drained: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Verification {
    #[serde(flatten)]
    pub audit: Audit,
    /// The first few subscribers that lost something: what they missed and
    /// their connections.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lost_detail: Vec<LostBySubscriber>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    pub count: u64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Percentiles {
    /// From a histogram of microseconds, in milliseconds.
    pub fn from_micros(histogram: &Histogram<u64>) -> Self {
        if histogram.is_empty() {
            return Self::default();
        }
        let ms = |quantile: f64| histogram.value_at_quantile(quantile) as f64 / 1_000.0;
        Self {
            count: histogram.len(),
            p50: ms(0.5),
            p90: ms(0.9),
            p99: ms(0.99),
            p999: ms(0.999),
            max: histogram.max() as f64 / 1_000.0,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ServerFigures {
    pub pids: Vec<u32>,
    pub processes: usize,
    /// CPU spent while subscribers connected.
    pub cpu_seconds_connect: f64,
    /// CPU spent from the end of connecting to the end of the run.
    pub cpu_seconds_load: f64,
    pub cpu_seconds_per_million_deliveries: Option<f64>,
    pub rss_before_kib: u64,
    pub rss_after_connect_kib: u64,
    pub rss_end_kib: u64,
    pub rss_per_connection_bytes: f64,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct TimelinePoint {
    /// Seconds since the first publish was due.
    pub second: u64,
    pub count: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ReconnectFigures {
    pub reconnects: u64,
    /// Attempts that failed (refused, no answer) and were tried again.
    pub failed_attempts: u64,
    /// Subscribers that stopped trying (a status other than 200, or too many failures).
    pub gave_up: u64,
    /// From a stream's end to its reopening, the `retry:` wait included.
    pub latency_ms: Percentiles,
    /// The drain windows the disruption announced, each with its reconnects.
    pub drain_windows: Vec<DrainWindowFigures>,
    /// Over all drain windows: reconnects / window seconds.
    pub mean_per_second: f64,
    /// Over all drain windows: the busiest bucket, as a rate.
    pub max_per_second: f64,
    /// Reconnects that fell in no drain window.
    pub outside_windows: u64,
    /// Reconnects per bucket: (seconds since the first publish was due, count).
    pub timeline: Vec<(f64, u64)>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DrainWindowFigures {
    pub label: String,
    /// Seconds since the first publish was due.
    pub start_s: f64,
    pub seconds: f64,
    pub reconnects: u64,
    pub mean_per_second: f64,
    pub max_per_second: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DisruptionFigures {
    pub command: String,
    pub exit_code: Option<i32>,
    pub timed_out: bool,
    /// When it started, in seconds since the first publish was due, and how long it ran.
    pub start_s: f64,
    pub seconds: f64,
    /// Delivery latency of the publishes due before it started, while it ran
    /// (seconds of the schedule that overlap it), and after it ended.
    pub latency_before_ms: Percentiles,
    pub latency_during_ms: Percentiles,
    pub latency_after_ms: Percentiles,
}

/// `kind = "saturate"`: the result of stepping the rate.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SaturateReport {
    pub kind: String,
    pub scenario: String,
    pub target: String,
    pub label: Option<String>,
    pub subscribers: u32,
    /// Highest rate whose step was clean; 0 when even the first wasn't.
    pub highest_clean_rate_per_second: f64,
    pub steps: Vec<SaturateStep>,
    pub server_cpu_seconds_per_million_deliveries: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SaturateStep {
    pub rate_per_second: f64,
    pub clean: bool,
    pub p99_ms: f64,
    pub deliveries_per_second: f64,
    pub lost: u64,
    pub why_not_clean: Vec<String>,
}

impl RunReport {
    /// The table printed at the end of a run.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let mut row = |name: &str, value: String| {
            let _ = writeln!(out, "  {name:<38} {value}");
        };
        let step = self.step.map(|s| format!(" step {s}")).unwrap_or_default();
        row(
            "run",
            format!(
                "{}{} against {} ({}), run id {}",
                self.scenario,
                step,
                self.target,
                self.label.as_deref().unwrap_or("-"),
                self.run_id
            ),
        );
        row(
            "subscribers / topics / workers",
            format!("{} / {} / {}", self.subscribers, self.topics, self.workers),
        );
        let c = &self.connect;
        row(
            "connected / failed",
            format!(
                "{} / {} in {:.2} s ({:.0}/s)",
                c.connected, c.failed, c.seconds, c.per_second
            ),
        );
        row(
            "connect latency ms p50/p99/max",
            format!(
                "{:.2} / {:.2} / {:.2}",
                c.latency_ms.p50, c.latency_ms.p99, c.latency_ms.max
            ),
        );
        if let Some(p) = &self.publish {
            row(
                "published acked / scheduled",
                format!(
                    "{} / {} at {:.0}/s (target {:.0}/s); rejected {}, errors {}, retries {}",
                    p.acked,
                    p.scheduled,
                    p.achieved_rate_per_second,
                    p.target_rate_per_second,
                    p.rejected,
                    p.errors,
                    p.retries
                ),
            );
            row(
                "publish answer ms p50/p99/max",
                format!(
                    "{:.2} / {:.2} / {:.2}",
                    p.ack_latency_ms.p50, p.ack_latency_ms.p99, p.ack_latency_ms.max
                ),
            );
        }
        let d = &self.delivery;
        // Idle runs deliver nothing: no delivery or latency figures to show.
        if self.publish.is_some() {
            row(
                "deliveries / expected",
                format!("{} / {} ({:.0}/s)", d.deliveries, d.expected, d.per_second),
            );
            let l = &self.latency_ms;
            row(
                "latency ms p50/p90/p99/p99.9/max",
                format!(
                    "{:.2} / {:.2} / {:.2} / {:.2} / {:.2}",
                    l.p50, l.p90, l.p99, l.p999, l.max
                ),
            );
        }
        if let Some(x) = &self.disruption {
            row(
                "disruption",
                format!(
                    "{:?} from {:.1} s for {:.1} s, exit {}{}",
                    x.command,
                    x.start_s,
                    x.seconds,
                    x.exit_code.map_or("-".to_owned(), |c| c.to_string()),
                    if x.timed_out { " (timed out)" } else { "" }
                ),
            );
            for (name, p) in [
                ("latency ms p50/p99 before", &x.latency_before_ms),
                ("latency ms p50/p99 during", &x.latency_during_ms),
                ("latency ms p50/p99 after", &x.latency_after_ms),
            ] {
                row(
                    name,
                    format!("{:.2} / {:.2} ({} deliveries)", p.p50, p.p99, p.count),
                );
            }
        }
        if let Some(r) = &self.reconnect {
            row(
                "reconnects / failed attempts / gave up",
                format!("{} / {} / {}", r.reconnects, r.failed_attempts, r.gave_up),
            );
            row(
                "reconnect wait ms p50/p99/max",
                format!(
                    "{:.0} / {:.0} / {:.0}",
                    r.latency_ms.p50, r.latency_ms.p99, r.latency_ms.max
                ),
            );
            for w in &r.drain_windows {
                row(
                    &format!("reconnects/s in {} mean / max", w.label),
                    format!(
                        "{:.1} / {:.1} ({} over {:.1} s from {:.1} s)",
                        w.mean_per_second, w.max_per_second, w.reconnects, w.seconds, w.start_s
                    ),
                );
            }
            if !r.drain_windows.is_empty() {
                row(
                    "reconnects/s in drain windows mean / max",
                    format!(
                        "{:.1} / {:.1}; {} outside them",
                        r.mean_per_second, r.max_per_second, r.outside_windows
                    ),
                );
            }
        }
        let v = &self.verification.audit;
        row(
            "lost / duplicated / out of order",
            format!("{} / {} / {}", v.lost, v.duplicated, v.out_of_order),
        );
        row(
            "unacked deliveries / gap frames",
            format!("{} / {}", v.unacked_deliveries, d.gap_frames),
        );
        row("refused but delivered", format!("{}", v.refused_delivered));
        row(
            "foreign events / streams closed early",
            format!("{} / {}", d.foreign_events, d.closed_early),
        );
        if let Some(s) = &self.server {
            row(
                "server CPU s connect / load",
                format!(
                    "{:.2} / {:.2} ({} processes)",
                    s.cpu_seconds_connect, s.cpu_seconds_load, s.processes
                ),
            );
            if let Some(per_million) = s.cpu_seconds_per_million_deliveries {
                row(
                    "server CPU s per million deliveries",
                    format!("{per_million:.3}"),
                );
            }
            row(
                "server RSS MiB before/connected/end",
                format!(
                    "{:.1} / {:.1} / {:.1}",
                    s.rss_before_kib as f64 / 1024.0,
                    s.rss_after_connect_kib as f64 / 1024.0,
                    s.rss_end_kib as f64 / 1024.0
                ),
            );
            row(
                "server RSS per connection",
                format!("{:.0} B", s.rss_per_connection_bytes),
            );
        }
        row(
            "harness CPU s (load)",
            format!("{:.2}", self.harness_cpu_seconds),
        );
        row(
            "verdict",
            if self.passed {
                "PASS".to_owned()
            } else {
                format!("FAIL: {}", self.problems.join("; "))
            },
        );
        out.push_str(&loss::describe(&self.verification.lost_detail));
        out
    }
}

impl SaturateReport {
    pub fn table(&self) -> String {
        let mut out = format!(
            "  saturate {} against {}: highest clean rate {:.0} msg/s ({} subscribers)\n",
            self.scenario, self.target, self.highest_clean_rate_per_second, self.subscribers
        );
        for step in &self.steps {
            let _ = writeln!(
                out,
                "    {:>8.0} msg/s  {}  p99 {:>8.2} ms  {:>10.0} deliveries/s  {}",
                step.rate_per_second,
                if step.clean { "clean  " } else { "UNCLEAN" },
                step.p99_ms,
                step.deliveries_per_second,
                step.why_not_clean.join("; ")
            );
        }
        out
    }
}

/// Appends `record` as one JSON line to `path`, if there is one: a run's
/// report, a saturate step or summary, a churn report, a soak sample.
pub fn append_json(path: Option<&Path>, record: &impl Serialize) -> Result<()> {
    let Some(path) = path else { return Ok(()) };
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    let mut line = serde_json::to_vec(record)?;
    line.push(b'\n');
    std::io::Write::write_all(&mut file, &line)?;
    Ok(())
}
