//! One run, phase by phase: start the subscriber workers and wait until they
//! have connected, let the server settle, publish (or hold idle), tell the
//! workers what was acked, collect their audits, sample the server between
//! phases, and hand everything to `figures` for the report.

use crate::disrupt::{self, DisruptionOutcome};
use crate::figures::{self, RunResults};
use crate::http::url::HttpUrl;
use crate::limits;
use crate::progress::Progress;
use crate::protocol::{
    ConnectSummary, Expectation, FromWorker, ReconnectPlan, ToWorker, WorkerPlan, WorkerProgress,
    WorkerReport,
};
use crate::publisher::{self, PublishOutcome, PublishPlan, PublishProgress};
use crate::report::RunReport;
use crate::scenario::{PublishLoad, Scenario};
use crate::seq_set::SeqSet;
use crate::server_stats::{self, ServerSample};
use crate::settings::RunSettings;
use crate::subscriber::unix_nanos;
use crate::target::{self, Target};
use crate::worker_pool::{PoolEvent, WorkerPool};
use anyhow::{Context, Result, bail};
use std::collections::BTreeSet;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::time::Instant;

/// Largest SSE event a subscriber accepts before calling the stream broken.
const MAX_EVENT_BYTES: usize = 1024 * 1024;
/// Slack on top of the scenario's own timeouts before the coordinator gives
/// up on a worker that stopped answering.
const WORKER_SLACK: Duration = Duration::from_secs(30);
const PROGRESS_REFRESH: Duration = Duration::from_millis(200);

/// What the coordinator knows about its workers so far.
struct WorkerStates {
    progress: Vec<WorkerProgress>,
    connected: Vec<Option<ConnectSummary>>,
    reports: Vec<Option<WorkerReport>>,
}

impl WorkerStates {
    fn new(workers: usize) -> Self {
        Self {
            progress: vec![WorkerProgress::default(); workers],
            connected: vec![None; workers],
            reports: vec![None; workers],
        }
    }

    fn absorb(&mut self, event: PoolEvent) -> Result<()> {
        match event {
            PoolEvent::Message(worker, FromWorker::Progress(progress)) => {
                self.progress[worker] = progress
            }
            PoolEvent::Message(worker, FromWorker::Connected(summary)) => {
                self.connected[worker] = Some(summary)
            }
            PoolEvent::Message(worker, FromWorker::Report(report)) => {
                self.reports[worker] = Some(*report)
            }
            PoolEvent::Gone(worker, reason) => {
                bail!("subscriber worker {worker} {reason} (see its messages above)")
            }
        }
        Ok(())
    }

    fn total(&self) -> WorkerProgress {
        self.progress
            .iter()
            .fold(WorkerProgress::default(), |sum, p| WorkerProgress {
                connected: sum.connected + p.connected,
                failed: sum.failed + p.failed,
                deliveries: sum.deliveries + p.deliveries,
            })
    }
}

/// Runs the scenario once with `publish` as the load (`None`: idle).
pub async fn run_once(
    settings: &RunSettings,
    publish: Option<&PublishLoad>,
    step: Option<u32>,
    progress: &Progress,
) -> Result<RunReport> {
    let scenario = &settings.scenario;
    let run_id = new_run_id();
    let started_unix_seconds = unix_nanos() / 1_000_000_000;
    let plans = plan_workers(scenario, &settings.target, &run_id);
    let server_before = sample_server(&settings.server_pids)?;

    progress.note(&format!(
        "{}{}: {} subscribers on {} topic(s) over {} worker process(es) -> {}",
        scenario.name,
        step.map(|s| format!(" step {s}")).unwrap_or_default(),
        scenario.subscribers,
        scenario.topics,
        plans.len(),
        settings.target.name
    ));
    progress.phase("connecting", u64::from(scenario.subscribers));
    let mut pool = WorkerPool::start(plans.clone()).await?;
    let mut states = WorkerStates::new(pool.len());
    let ramp = if scenario.connect.rate_per_second > 0.0 {
        Duration::from_secs_f64(f64::from(scenario.subscribers) / scenario.connect.rate_per_second)
    } else {
        Duration::ZERO
    };
    let deadline = Instant::now() + ramp + scenario.connect.timeout + WORKER_SLACK;
    wait_for_workers(
        &mut pool,
        &mut states,
        deadline,
        progress,
        "connecting",
        |s| s.connected.iter().all(Option::is_some),
        |s| {
            let total = s.total();
            (
                total.connected + total.failed,
                format!("{} failed", total.failed),
            )
        },
    )
    .await?;
    let connect: Vec<ConnectSummary> = states.connected.iter().flatten().cloned().collect();

    // Let the server finish registering subscriptions, then measure it idle.
    settle(&mut pool, &mut states, scenario.connect.settle).await?;
    let server_connected = sample_server(&settings.server_pids)?;
    let harness_connected = server_stats::sample(&[std::process::id()])?;

    let mut disruption = None;
    let outcome = match publish {
        Some(load) => {
            let (outcome, disrupted) =
                publish_phase(settings, load, &run_id, &mut pool, &mut states, progress).await?;
            disruption = disrupted;
            Some(outcome)
        }
        None => {
            progress.phase("idle", scenario.idle.hold.as_secs());
            settle(&mut pool, &mut states, scenario.idle.hold).await?;
            None
        }
    };

    progress.phase("draining", plans.len() as u64);
    for (worker, plan) in plans.iter().enumerate() {
        let per_topic = |sets: fn(&PublishOutcome) -> &Vec<SeqSet>| {
            topics_of(plan)
                .into_iter()
                .map(|topic| {
                    let set = outcome.as_ref().map(|o| sets(o)[topic as usize].clone());
                    (topic, set.unwrap_or_default())
                })
                .collect()
        };
        let expectation = Expectation {
            acked: per_topic(|o| &o.acked),
            refused: per_topic(|o| &o.refused),
            drain_timeout_ms: scenario.drain.timeout.as_millis() as u64,
        };
        pool.send(worker, &ToWorker::Expect(expectation)).await?;
    }
    let deadline = Instant::now() + scenario.drain.timeout + WORKER_SLACK;
    wait_for_workers(
        &mut pool,
        &mut states,
        deadline,
        progress,
        "draining",
        |s| s.reports.iter().all(Option::is_some),
        |s| (s.reports.iter().flatten().count() as u64, String::new()),
    )
    .await?;
    let server_end = sample_server(&settings.server_pids)?;
    let harness_end = server_stats::sample(&[std::process::id()])?;
    pool.shutdown().await;
    progress.finish();

    Ok(figures::assemble(RunResults {
        settings,
        run_id,
        started_unix_seconds,
        step,
        plans,
        connect,
        reports: states.reports.into_iter().flatten().collect(),
        publish: publish.cloned(),
        outcome,
        server: match (server_before, server_connected, server_end) {
            (Some(before), Some(connected), Some(end)) => Some([before, connected, end]),
            _ => None,
        },
        harness: [harness_connected, harness_end],
        disruption,
    }))
}

async fn publish_phase(
    settings: &RunSettings,
    load: &PublishLoad,
    run_id: &str,
    pool: &mut WorkerPool,
    states: &mut WorkerStates,
    progress: &Progress,
) -> Result<(PublishOutcome, Option<DisruptionOutcome>)> {
    // With a disruption, publishing is open-ended: it stops once the
    // disruption and the recovery after it are over.
    let (stop, disrupting) = match settings.disruption.clone() {
        Some(disruption) => {
            let (stop, stopped) = tokio::sync::watch::channel(false);
            (
                Some(stopped),
                Some(tokio::spawn(disrupt::run(disruption, stop))),
            )
        }
        None => (None, None),
    };
    let plan = PublishPlan {
        run_id: run_id.to_owned(),
        topics: settings.scenario.topics,
        rate_per_second: load.rate_per_second,
        count: if stop.is_some() {
            u64::MAX
        } else {
            load.total()
        },
        stop,
        payload_bytes: load.payload_bytes,
        connections: load.connections,
        timeout: load.timeout,
        target: settings.target.clone(),
    };
    let address = HttpUrl::parse(&target::render(&settings.target.publish_url, "x", ""))?
        .resolve()
        .await?;
    progress.phase(
        "publishing",
        if disrupting.is_some() { 0 } else { plan.count },
    );
    let counters = Arc::new(PublishProgress::default());
    let mut publishing = tokio::spawn(publisher::publish(plan, address, counters.clone()));
    let mut refresh = tokio::time::interval(PROGRESS_REFRESH);
    let started = Instant::now();
    let delivered_before = states.total().deliveries;
    let outcome = loop {
        tokio::select! {
            result = &mut publishing => break result.context("publisher task")??,
            event = pool.next_event() => states.absorb(event?)?,
            _ = refresh.tick() => {
                let delivered = states.total().deliveries - delivered_before;
                let rate = delivered as f64 / started.elapsed().as_secs_f64().max(0.001);
                progress.update(counters.answered.load(Ordering::Relaxed), format!("{rate:.0} deliveries/s"));
            }
        }
    };
    let disruption = match disrupting {
        Some(task) => Some(task.await.context("disruption task")??),
        None => None,
    };
    Ok((outcome, disruption))
}

/// Absorbs worker messages until `done` holds, refreshing the progress bar.
async fn wait_for_workers(
    pool: &mut WorkerPool,
    states: &mut WorkerStates,
    deadline: Instant,
    progress: &Progress,
    what: &str,
    done: impl Fn(&WorkerStates) -> bool,
    position: impl Fn(&WorkerStates) -> (u64, String),
) -> Result<()> {
    while !done(states) {
        let event = tokio::time::timeout_at(deadline, pool.next_event())
            .await
            .with_context(|| format!("subscriber workers stopped answering while {what}"))??;
        states.absorb(event)?;
        let (position, message) = position(states);
        progress.update(position, message);
    }
    Ok(())
}

/// Waits, still absorbing worker messages so their pipes never fill.
async fn settle(pool: &mut WorkerPool, states: &mut WorkerStates, pause: Duration) -> Result<()> {
    let until = Instant::now() + pause;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(until) => return Ok(()),
            event = pool.next_event() => states.absorb(event?)?,
        }
    }
}

/// Splits the subscribers into contiguous ranges, one per worker process,
/// with as many processes as the open-file limit requires.
fn plan_workers(scenario: &Scenario, target: &Target, run_id: &str) -> Vec<WorkerPlan> {
    let per_process = limits::subscribers_per_process(limits::raise_open_file_limit());
    let needed = u64::from(scenario.subscribers).div_ceil(per_process) as u32;
    let workers = scenario.workers.max(needed).max(1);
    let base = scenario.subscribers / workers;
    let extra = scenario.subscribers % workers;
    let mut first_subscriber = 0;
    (0..workers)
        .map(|worker| {
            let subscribers = base + u32::from(worker < extra);
            let plan = WorkerPlan {
                worker,
                run_id: run_id.to_owned(),
                first_subscriber,
                subscribers,
                topics: scenario.topics,
                subscribe_url: target.subscribe_url.clone(),
                subscribe_headers: target.subscribe_headers.clone(),
                connect_concurrency: scenario.connect.concurrency.div_ceil(workers),
                connect_rate_per_second: scenario.connect.rate_per_second / f64::from(workers),
                connect_timeout_ms: scenario.connect.timeout.as_millis() as u64,
                client_threads: scenario.connect.client_threads,
                max_event_bytes: MAX_EVENT_BYTES,
                reconnect: scenario.reconnect.enabled.then_some(ReconnectPlan {
                    default_retry_ms: scenario.reconnect.default_retry.as_millis() as u64,
                }),
            };
            first_subscriber += subscribers;
            plan
        })
        .collect()
}

/// The topics a worker's subscribers are on.
fn topics_of(plan: &WorkerPlan) -> BTreeSet<u32> {
    if plan.subscribers >= plan.topics {
        return (0..plan.topics).collect();
    }
    (plan.first_subscriber..plan.first_subscriber + plan.subscribers)
        .map(|index| plan.topic_of(index))
        .collect()
}

fn sample_server(pids: &[u32]) -> Result<Option<ServerSample>> {
    if pids.is_empty() {
        return Ok(None);
    }
    server_stats::sample(pids).map(Some)
}

/// Eight random hex digits; `RandomState` is seeded from the OS, which is
/// all the randomness a run id needs.
fn new_run_id() -> String {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(unix_nanos());
    format!("{:08x}", hasher.finish() as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_split_subscribers_contiguously() {
        let mut scenario = Scenario::load("smoke").unwrap();
        scenario.subscribers = 10;
        scenario.topics = 3;
        scenario.workers = 3;
        let target = Target {
            name: "test".into(),
            subscribe_url: "http://127.0.0.1:1/{topic}".into(),
            subscribe_headers: Vec::new(),
            publish_url: String::new(),
            publish_body: String::new(),
            publish_content_type: String::new(),
            publish_headers: Vec::new(),
            publish_retries: 0,
            publish_answer: crate::target::PublishAnswer::Status,
        };
        let plans = plan_workers(&scenario, &target, "r");
        assert_eq!(
            plans
                .iter()
                .map(|p| (p.first_subscriber, p.subscribers))
                .collect::<Vec<_>>(),
            vec![(0, 4), (4, 3), (7, 3)]
        );
        assert_eq!(topics_of(&plans[0]), BTreeSet::from([0, 1, 2]));
    }

    #[test]
    fn a_worker_with_few_subscribers_expects_only_their_topics() {
        let plan = WorkerPlan {
            worker: 1,
            run_id: "r".into(),
            first_subscriber: 5_000,
            subscribers: 3,
            topics: 10_000,
            subscribe_url: String::new(),
            subscribe_headers: Vec::new(),
            connect_concurrency: 1,
            connect_rate_per_second: 0.0,
            connect_timeout_ms: 1,
            client_threads: 1,
            max_event_bytes: 1,
            reconnect: None,
        };
        assert_eq!(topics_of(&plan), BTreeSet::from([5_000, 5_001, 5_002]));
    }

    #[test]
    fn run_ids_are_short_alphanumeric_and_differ() {
        let (a, b) = (new_run_id(), new_run_id());
        assert_eq!(a.len(), 8);
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, b);
    }
}
