//! `churn`: many short subscriptions against one server process, then a
//! check that it gave back what they held.
//!
//! Each cycle opens an SSE stream and leaves it one of three ways, in turn:
//! - `clean`: reads the stream's opening, then closes (FIN);
//! - `reset`: reads the opening, then resets the connection (`SO_LINGER 0`,
//!   RST), as a crashed client or a dropped NAT mapping does;
//! - `mid_resume`: resumes with `Last-Event-ID` from the start of a long
//!   history and resets after the first bytes, while the server replays.
//!
//! Before: a warm-up (the allocator's arenas and the server's tables reach
//! their working size), then the baseline: resident memory and open file
//! descriptors from /proc. After: the server is given up to `--settle` to
//! notice every departed client (`ssehub_subscribers_connected` back to 0)
//! and to close the sockets still closing, then measured again. The run
//! passes when no subscription is left, no descriptor leaked and memory is
//! back within `--max-rss-growth-mib`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::http::url::HttpUrl;
use crate::server_stats;

#[derive(Debug, Clone, Args)]
pub struct ChurnArgs {
    /// Base URL of the ssehub under test.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// The server's process id (memory and descriptors come from /proc).
    #[arg(long = "server-pid", value_name = "PID")]
    pub server_pid: u32,
    /// Subscribe/disconnect cycles after the warm-up.
    #[arg(long, default_value_t = 5_000)]
    pub cycles: u64,
    /// Cycles before the baseline is taken.
    #[arg(long, default_value_t = 3_000)]
    pub warmup: u64,
    /// Cycles in flight at once.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Events published to the topic first, so a resume has history to
    /// replay (they are replayed by every `mid_resume` cycle).
    #[arg(long, default_value_t = 200)]
    pub history_events: u32,
    /// Longest wait for the server to free every slot after the cycles.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "30s")]
    pub settle: Duration,
    /// Allowed growth of resident memory over the baseline, in MiB.
    #[arg(long, default_value_t = 4.0)]
    pub max_rss_growth_mib: f64,
    /// Append the figures as one JSON line to this file.
    #[arg(long)]
    pub json_out: Option<std::path::PathBuf>,
}

/// How long one cycle may take before it counts as failed; a healthy
/// server answers a subscribe in well under a millisecond on loopback.
const CYCLE_TIMEOUT: Duration = Duration::from_secs(10);
const TOPIC: &str = "churn";

#[derive(Debug, Clone, Copy)]
enum Leave {
    Clean,
    Reset,
    MidResume,
}

impl Leave {
    fn for_cycle(cycle: u64) -> Self {
        match cycle % 3 {
            0 => Self::Clean,
            1 => Self::Reset,
            _ => Self::MidResume,
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Default)]
pub struct ProcessFigures {
    pub rss_kib: u64,
    pub open_fds: usize,
    pub cpu_seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ChurnReport {
    pub kind: &'static str,
    pub cycles: u64,
    pub clean: u64,
    pub reset: u64,
    pub mid_resume: u64,
    pub failed: u64,
    pub failure_examples: Vec<String>,
    pub seconds: f64,
    pub cycles_per_second: f64,
    pub baseline: ProcessFigures,
    pub after: ProcessFigures,
    pub rss_growth_mib: f64,
    /// `ssehub_subscribers_connected` when the wait ended.
    pub subscribers_connected: u64,
    /// From the last cycle to the gauge reading 0.
    pub settle_seconds: f64,
    pub passed: bool,
    pub problems: Vec<String>,
}

impl ChurnReport {
    pub fn table(&self) -> String {
        let mib = |kib: u64| kib as f64 / 1024.0;
        format!(
            "churn: {} cycles ({} clean, {} reset, {} mid-resume), {} failed, {:.1} s ({:.0}/s)\n\
             rss:   {:.1} MiB before, {:.1} MiB after ({:+.2} MiB)\n\
             fds:   {} before, {} after\n\
             subscribers connected after: {} (settled in {:.1} s)\n\
             verdict: {}",
            self.cycles,
            self.clean,
            self.reset,
            self.mid_resume,
            self.failed,
            self.seconds,
            self.cycles_per_second,
            mib(self.baseline.rss_kib),
            mib(self.after.rss_kib),
            self.rss_growth_mib,
            self.baseline.open_fds,
            self.after.open_fds,
            self.subscribers_connected,
            self.settle_seconds,
            if self.passed {
                "passed".to_owned()
            } else {
                format!("FAILED: {}", self.problems.join("; "))
            }
        )
    }
}

/// Resident memory, descriptors and CPU time of one process.
pub fn process_figures(pid: u32) -> Result<ProcessFigures> {
    let sample = server_stats::sample(&[pid])?;
    let open_fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .with_context(|| format!("counting /proc/{pid}/fd"))?
        .count();
    Ok(ProcessFigures {
        rss_kib: sample.rss_kib,
        open_fds,
        cpu_seconds: sample.cpu_seconds,
    })
}

/// The process's figures once its descriptors are back to `fds_before`, or
/// after `limit`. The gauge reaches 0 when a stream ends, which can be a
/// moment before its socket (or the `/metrics` request's own, answered with
/// `connection: close`) is closed; a leaked descriptor stays past the limit.
async fn settled_figures(pid: u32, fds_before: usize, limit: Duration) -> Result<ProcessFigures> {
    let started = Instant::now();
    loop {
        let figures = process_figures(pid)?;
        if figures.open_fds <= fds_before || started.elapsed() >= limit {
            return Ok(figures);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Everything a run of cycles needs to know about the server.
#[derive(Clone)]
pub struct Churner {
    address: SocketAddr,
    host: String,
    first_id: String,
}

#[derive(Debug, Default)]
pub struct CycleCounts {
    pub clean: u64,
    pub reset: u64,
    pub mid_resume: u64,
    pub failed: u64,
    pub failure_examples: Vec<String>,
}

impl Churner {
    /// A churner that only reads the server's figures (no history of its own).
    pub async fn observer(url: &str) -> Result<Self> {
        let address = HttpUrl::parse(url)?.resolve().await?;
        Ok(Self {
            address,
            host: address.to_string(),
            first_id: String::new(),
        })
    }

    /// Resolves the server and publishes the history the resumes replay.
    pub async fn prepare(url: &str, history_events: u32) -> Result<Self> {
        let url = HttpUrl::parse(url)?;
        let address = url.resolve().await?;
        let host = address.to_string();
        let mut first_id = String::new();
        let payload = "x".repeat(200);
        // Two at least: a resume after the first has something to replay.
        for n in 0..history_events.max(2) {
            let body = format!(r#"{{"data":"{n} {payload}"}}"#);
            let answer = exchange(
                address,
                &format!(
                    "POST /v1/topics/{TOPIC}/events HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                ),
            )
            .await?;
            if !answer.starts_with("HTTP/1.1 202") {
                bail!("publishing the history was refused: {answer}");
            }
            if n == 0 {
                first_id = answer
                    .split("\"id\":\"")
                    .nth(1)
                    .and_then(|rest| rest.split('"').next())
                    .context("the publish answer has no id")?
                    .to_owned();
            }
        }
        Ok(Self {
            address,
            host,
            first_id,
        })
    }

    /// Runs `cycles` cycles, `concurrency` at a time, numbered from `first`.
    pub async fn cycles(&self, first: u64, cycles: u64, concurrency: usize) -> CycleCounts {
        let mut counts = CycleCounts::default();
        let mut in_flight = tokio::task::JoinSet::new();
        let mut next = first;
        let end = first + cycles;
        loop {
            while next < end && in_flight.len() < concurrency.max(1) {
                let churner = self.clone();
                let leave = Leave::for_cycle(next);
                in_flight.spawn(async move {
                    let outcome = tokio::time::timeout(CYCLE_TIMEOUT, churner.cycle(leave)).await;
                    (
                        leave,
                        outcome.unwrap_or_else(|_| Err(anyhow::anyhow!("timed out"))),
                    )
                });
                next += 1;
            }
            let Some(done) = in_flight.join_next().await else {
                break;
            };
            match done {
                Ok((leave, Ok(()))) => match leave {
                    Leave::Clean => counts.clean += 1,
                    Leave::Reset => counts.reset += 1,
                    Leave::MidResume => counts.mid_resume += 1,
                },
                Ok((leave, Err(error))) => {
                    counts.failed += 1;
                    if counts.failure_examples.len() < 5 {
                        counts
                            .failure_examples
                            .push(format!("{leave:?}: {error:#}"));
                    }
                }
                Err(panic) => {
                    counts.failed += 1;
                    counts.failure_examples.push(format!("task: {panic}"));
                }
            }
        }
        counts
    }

    async fn cycle(&self, leave: Leave) -> Result<()> {
        let mut stream = TcpStream::connect(self.address).await?;
        stream.set_nodelay(true)?;
        let resume = match leave {
            Leave::MidResume => format!("last-event-id: {}\r\n", self.first_id),
            _ => String::new(),
        };
        stream
            .write_all(
                format!(
                    "GET /v1/events?topic={TOPIC} HTTP/1.1\r\nhost: {}\r\naccept: text/event-stream\r\n{resume}\r\n",
                    self.host
                )
                .as_bytes(),
            )
            .await?;
        // The stream's opening (head, `retry:`, the open comment); for a
        // resume also the first replayed event, so the reset lands while the
        // server is still replaying (the replay is `--history-events` long,
        // many reads' worth).
        let until: &[u8] = match leave {
            Leave::MidResume => b"\nid: ",
            _ => b"stream open",
        };
        let mut buffer = vec![0u8; 4096];
        let mut seen = Vec::new();
        while !contains(&seen, until) {
            let read = stream.read(&mut buffer).await?;
            if read == 0 {
                bail!(
                    "the server closed the stream: {}",
                    String::from_utf8_lossy(&seen)
                );
            }
            seen.extend_from_slice(&buffer[..read]);
        }
        if !seen.starts_with(b"HTTP/1.1 200") {
            bail!(
                "not a stream: {}",
                String::from_utf8_lossy(&seen[..seen.len().min(200)])
            );
        }
        match leave {
            Leave::Clean => {
                stream.shutdown().await?;
                drop(stream);
            }
            Leave::Reset | Leave::MidResume => {
                stream.set_zero_linger()?;
                drop(stream);
            }
        }
        Ok(())
    }

    /// `ssehub_subscribers_connected` from `/metrics`.
    pub async fn subscribers_connected(&self) -> Result<u64> {
        let answer = exchange(
            self.address,
            &format!(
                "GET /metrics HTTP/1.1\r\nhost: {}\r\nconnection: close\r\n\r\n",
                self.host
            ),
        )
        .await?;
        answer
            .lines()
            .find_map(|line| line.strip_prefix("ssehub_subscribers_connected "))
            .and_then(|value| value.trim().parse::<f64>().ok())
            .map(|value| value as u64)
            .context("/metrics has no ssehub_subscribers_connected")
    }

    /// Waits up to `limit` for the gauge to read 0; returns its last value
    /// and how long the wait took.
    pub async fn settle(&self, limit: Duration) -> Result<(u64, Duration)> {
        self.settle_to(0, limit).await
    }

    /// Waits up to `limit` for the gauge to read `at_most` or less.
    pub async fn settle_to(&self, at_most: u64, limit: Duration) -> Result<(u64, Duration)> {
        let started = Instant::now();
        loop {
            let connected = self.subscribers_connected().await?;
            if connected <= at_most || started.elapsed() >= limit {
                return Ok((connected, started.elapsed()));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    memchr::memmem::find(haystack, needle).is_some()
}

/// One request on its own connection; the whole answer as text.
async fn exchange(address: SocketAddr, request: &str) -> Result<String> {
    let mut stream = TcpStream::connect(address).await?;
    stream.write_all(request.as_bytes()).await?;
    let mut answer = Vec::new();
    tokio::time::timeout(CYCLE_TIMEOUT, stream.read_to_end(&mut answer))
        .await
        .context("no answer in time")??;
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

/// `ssehub-loadtest churn`.
pub async fn churn(args: &ChurnArgs) -> Result<ChurnReport> {
    let churner = Churner::prepare(&args.url, args.history_events).await?;
    let warm = churner.cycles(0, args.warmup, args.concurrency).await;
    if warm.failed > 0 {
        bail!("the warm-up failed: {:?}", warm.failure_examples);
    }
    churner.settle(args.settle).await?;
    let baseline = process_figures(args.server_pid)?;

    let started = Instant::now();
    let counts = churner
        .cycles(args.warmup, args.cycles, args.concurrency)
        .await;
    let seconds = started.elapsed().as_secs_f64();
    let (subscribers_connected, settled) = churner.settle(args.settle).await?;
    let after = settled_figures(args.server_pid, baseline.open_fds, args.settle).await?;

    let rss_growth_mib = (after.rss_kib as f64 - baseline.rss_kib as f64) / 1024.0;
    let mut problems = Vec::new();
    if counts.failed > 0 {
        problems.push(format!(
            "{} cycles failed: {:?}",
            counts.failed, counts.failure_examples
        ));
    }
    if subscribers_connected > 0 {
        problems.push(format!(
            "{subscribers_connected} subscriptions still open {:.0?} after the last cycle",
            args.settle
        ));
    }
    if after.open_fds > baseline.open_fds {
        problems.push(format!(
            "{} file descriptors more than before",
            after.open_fds - baseline.open_fds
        ));
    }
    if rss_growth_mib > args.max_rss_growth_mib {
        problems.push(format!(
            "resident memory grew {rss_growth_mib:.1} MiB (allowed {} MiB)",
            args.max_rss_growth_mib
        ));
    }
    Ok(ChurnReport {
        kind: "churn",
        cycles: args.cycles,
        clean: counts.clean,
        reset: counts.reset,
        mid_resume: counts.mid_resume,
        failed: counts.failed,
        failure_examples: counts.failure_examples,
        seconds,
        cycles_per_second: args.cycles as f64 / seconds.max(f64::EPSILON),
        baseline,
        after,
        rss_growth_mib,
        subscribers_connected,
        settle_seconds: settled.as_secs_f64(),
        passed: problems.is_empty(),
        problems,
    })
}
