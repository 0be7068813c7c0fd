//! `soak`: hours of fan-out plus churn against one server process, sampled
//! every interval, to see flat lines or a leak.
//!
//! The load is a scenario (`broadcast-1k` by default) run again and again,
//! each round publishing for one sample interval; meanwhile a second thread
//! churns subscriptions (see [`crate::churn`]) without pause. After each
//! round: the server's resident memory, open descriptors and CPU share over
//! the round, the round's p99 delivery latency and whether it passed (no
//! loss, no duplicate, in order). The samples go to a JSON-lines file and
//! an SVG with one panel per figure.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use clap::Args;
use plotters::prelude::*;
use serde::Serialize;

use crate::churn::{Churner, process_figures};
use crate::progress::Progress;
use crate::report::append_json;
use crate::run;
use crate::scenario::{LoadOverrides, Scenario};
use crate::settings::{RunSettings, VerdictRules};
use crate::target::{Target, TargetArgs};

#[derive(Debug, Clone, Args)]
pub struct SoakArgs {
    /// The traffic: a built-in scenario name or a scenario TOML file.
    #[arg(long, default_value = "broadcast-1k")]
    pub scenario: String,
    #[command(flatten)]
    pub target: TargetArgs,
    /// The scenario's load, changed (`--rate`, `--subscribers`, …); the
    /// publish duration is always `--sample-every`.
    #[command(flatten)]
    pub load: LoadOverrides,
    /// The server's process id (memory, descriptors and CPU from /proc).
    #[arg(long = "server-pid", value_name = "PID")]
    pub server_pid: u32,
    /// How long to soak (`--duration` is the scenario's, and ignored: each
    /// round publishes for `--sample-every`).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "1h")]
    pub soak_duration: Duration,
    /// One sample (and one round of the scenario) per interval.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "1m")]
    pub sample_every: Duration,
    /// Churn cycles in flight at once, alongside the scenario (0: no churn).
    #[arg(long, default_value_t = 4)]
    pub churn_concurrency: usize,
    /// Write the samples as a chart (SVG) to this file.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Append each sample as one JSON line to this file.
    #[arg(long)]
    pub json_out: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SoakSample {
    pub kind: &'static str,
    /// Since the soak started.
    pub minute: f64,
    pub rss_mib: f64,
    pub open_fds: usize,
    /// Server CPU over the round, in % of one core.
    pub cpu_percent: f64,
    pub p99_ms: f64,
    pub deliveries: u64,
    pub churn_cycles: u64,
    pub churn_failed: u64,
    pub round_passed: bool,
    /// `ssehub_subscribers_connected` when sampled (churn's own in flight).
    pub subscribers_left_open: u64,
}

/// Longest wait after a round for its subscribers to be gone.
const ROUND_SETTLE: Duration = Duration::from_secs(30);

/// How often the churn's resume history is published again: well inside any
/// `history.ttl` a soak is run with (a minute is the shortest that makes sense).
const CHURN_HISTORY_REFRESH: Duration = Duration::from_secs(30);

/// Churn cycles in flight for as long as `running` holds, on a thread of
/// its own so that it never delays the scenario's publish schedule.
fn start_churn(
    url: String,
    concurrency: usize,
    running: Arc<AtomicBool>,
    cycles: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
) -> std::thread::JoinHandle<Result<()>> {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async {
            let mut churner = Churner::prepare(&url, 200).await?;
            let mut prepared_at = std::time::Instant::now();
            let mut next = 0;
            // Small batches, so a stop request is seen within a second.
            const BATCH: u64 = 200;
            while running.load(Ordering::Relaxed) {
                // The mid-resume cycles replay the history published by
                // `prepare`; a hub with a short `history.ttl` expires it
                // during an hour's soak, and those resumes would then get a
                // gap frame instead of a replay. Publish it afresh in time.
                if prepared_at.elapsed() >= CHURN_HISTORY_REFRESH {
                    churner = Churner::prepare(&url, 200).await?;
                    prepared_at = std::time::Instant::now();
                }
                let counts = churner.cycles(next, BATCH, concurrency).await;
                next += BATCH;
                cycles.fetch_add(BATCH - counts.failed, Ordering::Relaxed);
                failed.fetch_add(counts.failed, Ordering::Relaxed);
            }
            Ok(())
        })
    })
}

/// `ssehub-loadtest soak`; `Ok(false)` when a round failed or churn did.
pub async fn soak(args: &SoakArgs) -> Result<bool> {
    let mut scenario = Scenario::load(&args.scenario)?;
    scenario.apply(&args.load)?;
    let publish = scenario
        .publish
        .as_mut()
        .ok_or_else(|| anyhow!("scenario {} publishes nothing", args.scenario))?;
    publish.duration = Some(args.sample_every);
    publish.count = None;
    let settings = RunSettings {
        target: Target::from_args(&args.target)?,
        server_pids: vec![args.server_pid],
        label: Some("soak".to_owned()),
        scenario,
        disruption: None,
        verdict: VerdictRules::default(),
    };
    let progress = Progress::new(true);
    let running = Arc::new(AtomicBool::new(true));
    let churn_cycles = Arc::new(AtomicU64::new(0));
    let churn_failed = Arc::new(AtomicU64::new(0));
    let base_url = args
        .target
        .base_url
        .clone()
        .unwrap_or_else(|| "http://127.0.0.1:8080".to_owned());
    let observer = Churner::observer(&base_url).await?;
    let churn = (args.churn_concurrency > 0).then(|| {
        start_churn(
            base_url.clone(),
            args.churn_concurrency,
            running.clone(),
            churn_cycles.clone(),
            churn_failed.clone(),
        )
    });

    let started = Instant::now();
    let mut samples = Vec::new();
    let mut all_passed = true;
    let mut cpu_before = (
        process_figures(args.server_pid)?.cpu_seconds,
        Instant::now(),
    );
    while started.elapsed() < args.soak_duration {
        let report = run::run_once(
            &settings,
            settings.scenario.publish.as_ref(),
            None,
            &progress,
        )
        .await?;
        // Sample once the round's subscribers are gone (the server notices
        // each departed client on its socket's EOF), so each sample is the
        // steady state under churn, not the round's tail.
        let (left_open, _) = observer
            .settle_to(args.churn_concurrency as u64, ROUND_SETTLE)
            .await?;
        let now = process_figures(args.server_pid)?;
        let wall = cpu_before.1.elapsed().as_secs_f64();
        let sample = SoakSample {
            kind: "soak",
            subscribers_left_open: left_open,
            minute: started.elapsed().as_secs_f64() / 60.0,
            rss_mib: now.rss_kib as f64 / 1024.0,
            open_fds: now.open_fds,
            cpu_percent: 100.0 * (now.cpu_seconds - cpu_before.0) / wall.max(f64::EPSILON),
            p99_ms: report.latency_ms.p99,
            deliveries: report.delivery.deliveries,
            churn_cycles: churn_cycles.load(Ordering::Relaxed),
            churn_failed: churn_failed.load(Ordering::Relaxed),
            round_passed: report.passed,
        };
        cpu_before = (now.cpu_seconds, Instant::now());
        all_passed &= report.passed;
        println!(
            "soak {:5.1} min: rss {:6.1} MiB, fds {:5}, cpu {:5.1} %, p99 {:6.2} ms, churn {} ({} failed){}",
            sample.minute,
            sample.rss_mib,
            sample.open_fds,
            sample.cpu_percent,
            sample.p99_ms,
            sample.churn_cycles,
            sample.churn_failed,
            if report.passed {
                String::new()
            } else {
                format!(", round FAILED: {}", report.problems.join("; "))
            }
        );
        append_json(args.json_out.as_deref(), &sample)?;
        samples.push(sample);
        if let Some(path) = &args.plot {
            plot(&samples, path)?;
        }
    }
    running.store(false, Ordering::Relaxed);
    if let Some(churn) = churn {
        churn
            .join()
            .map_err(|_| anyhow!("the churn thread panicked"))??;
    }
    Ok(all_passed && churn_failed.load(Ordering::Relaxed) == 0)
}

/// A chart panel: title, unit, colour and the figure it shows.
type Panel = (&'static str, &'static str, RGBColor, fn(&SoakSample) -> f64);

/// One panel per figure, against minutes.
fn plot(samples: &[SoakSample], path: &Path) -> Result<()> {
    let root = SVGBackend::new(path, (1200, 800)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let panels = root.split_evenly((2, 2));
    let figures: [Panel; 4] = [
        ("resident memory", "MiB", BLUE, |s| s.rss_mib),
        ("open file descriptors", "fds", BLACK, |s| s.open_fds as f64),
        ("CPU", "% of one core", GREEN, |s| s.cpu_percent),
        ("delivery latency p99", "ms", RED, |s| s.p99_ms),
    ];
    let x_max = samples.iter().map(|s| s.minute).fold(1.0, f64::max);
    for (panel, (title, unit, color, value)) in panels.iter().zip(figures) {
        let y_max = samples.iter().map(value).fold(1.0, f64::max) * 1.2;
        let mut chart = ChartBuilder::on(panel)
            .caption(title, ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(55)
            .build_cartesian_2d(0.0..x_max, 0.0..y_max)
            .map_err(|e| anyhow!("{e}"))?;
        chart
            .configure_mesh()
            .x_desc("minutes")
            .y_desc(unit)
            .draw()
            .map_err(|e| anyhow!("{e}"))?;
        chart
            .draw_series(LineSeries::new(
                samples.iter().map(|s| (s.minute, value(s))),
                color.stroke_width(2),
            ))
            .map_err(|e| anyhow!("{e}"))?;
    }
    root.present()
        .map_err(|e| anyhow!("writing {}: {e}", path.display()))?;
    Ok(())
}
