//! The subscriber side, run as a child process (`ssehub-loadtest worker`) so
//! that subscribers can be spread over several processes when one process's
//! open-file limit can't hold them all. It reads a plan on stdin, opens the
//! subscribers with the planned ramp, reports progress, and on `Expect` waits
//! for the acked publishes, audits every subscriber and reports.

use crate::http::url::HttpUrl;
use crate::latency::HistogramDump;
use crate::limits;
use crate::loss::{self, LostBySubscriber};
use crate::protocol::{
    ConnectSummary, Expectation, FromWorker, ToWorker, WorkerPlan, WorkerProgress, WorkerReport,
};
use crate::seq_set::SeqSet;
use crate::subscriber::{self, Stage, SubscriberContext, SubscriberSlot, unix_nanos};
use crate::target;
use crate::verify::Audit;
use anyhow::{Context, Result, bail};
use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader, Lines, Stdin};
use tokio::sync::Semaphore;
use tokio::time::Instant;

/// How often the worker tells the coordinator how far it got.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(250);
/// How often draining checks whether every subscriber has everything.
const DRAIN_POLL_INTERVAL: Duration = Duration::from_millis(50);
/// Once everything expected is in, reading goes on this long before the
/// audit, so a duplicate sent right behind the last event is still counted
/// (a few event intervals at any rate the scenarios use).
const DRAIN_GRACE: Duration = Duration::from_millis(200);

/// Entry point of the `worker` subcommand.
pub fn main() -> Result<()> {
    limits::raise_open_file_limit();
    // The plan says how many threads to use, so it is read before the runtime starts.
    let mut first_line = String::new();
    std::io::stdin()
        .read_line(&mut first_line)
        .context("reading the plan")?;
    let ToWorker::Plan(plan) = serde_json::from_str(&first_line).context("parsing the plan")?
    else {
        bail!("the first message to a worker must be its plan");
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(plan.client_threads as usize)
        .enable_all()
        .build()?;
    runtime.block_on(serve(plan))?;
    // Closing thousands of sockets one task at a time is slow; exiting closes them at once.
    std::process::exit(0);
}

async fn serve(plan: WorkerPlan) -> Result<()> {
    let mut commands = BufReader::new(tokio::io::stdin()).lines();
    let address = HttpUrl::parse(&target::render(&plan.subscribe_url, "x", ""))?
        .resolve()
        .await?;
    let context = Arc::new(SubscriberContext::new(address, &plan));
    let slots: Arc<Vec<SubscriberSlot>> = Arc::new(
        (0..plan.subscribers)
            .map(|offset| {
                let index = plan.first_subscriber + offset;
                SubscriberSlot::new(index as usize, plan.topic_of(index))
            })
            .collect(),
    );
    let reporter = tokio::spawn(report_progress(context.clone()));
    let first_attempt_unix_nanos = unix_nanos();
    open_subscribers(&plan, &context, &slots).await;
    emit(&FromWorker::Connected(ConnectSummary {
        connected: context.connected.load(Ordering::Relaxed),
        failed: context.failed.load(Ordering::Relaxed),
        failure_examples: context.failure_examples.lock().expect("poisoned").clone(),
        connect_latency: HistogramDump::from(&*context.connect_latency.lock().expect("poisoned")),
        first_attempt_unix_nanos,
        last_connected_unix_nanos: context.last_connected_unix_nanos.load(Ordering::Relaxed),
    }))?;

    loop {
        match next_command(&mut commands).await? {
            Some(ToWorker::Expect(expectation)) => {
                let report = drain_and_audit(&context, &slots, expectation).await;
                emit(&FromWorker::Report(Box::new(report)))?;
            }
            Some(ToWorker::Plan(_)) => bail!("a worker takes one plan"),
            Some(ToWorker::Shutdown) | None => break,
        }
    }
    reporter.abort();
    Ok(())
}

/// Starts every subscriber at the planned rate and concurrency; returns when
/// each has opened its stream or failed.
async fn open_subscribers(
    plan: &WorkerPlan,
    context: &Arc<SubscriberContext>,
    slots: &Arc<Vec<SubscriberSlot>>,
) {
    let permits = Arc::new(Semaphore::new(plan.connect_concurrency.max(1) as usize));
    let spacing = (plan.connect_rate_per_second > 0.0)
        .then(|| Duration::from_secs_f64(1.0 / plan.connect_rate_per_second));
    let started = Instant::now();
    for offset in 0..slots.len() {
        let permit = permits
            .clone()
            .acquire_owned()
            .await
            .expect("semaphore never closed");
        if let Some(spacing) = spacing {
            tokio::time::sleep_until(started + spacing * offset as u32).await;
        }
        let (context, slots) = (context.clone(), slots.clone());
        let topic_name = target::topic_name(&plan.run_id, slots[offset].topic);
        tokio::spawn(async move {
            subscriber::run(&context, &slots[offset], &topic_name, permit).await;
        });
    }
    // Every permit back means every attempt has resolved.
    let _ = permits.acquire_many(plan.connect_concurrency.max(1)).await;
}

async fn report_progress(context: Arc<SubscriberContext>) {
    let mut ticker = tokio::time::interval(PROGRESS_INTERVAL);
    loop {
        ticker.tick().await;
        let progress = WorkerProgress {
            connected: context.connected.load(Ordering::Relaxed),
            failed: context.failed.load(Ordering::Relaxed),
            deliveries: context.deliveries.load(Ordering::Relaxed),
        };
        if emit(&FromWorker::Progress(progress)).is_err() {
            return;
        }
    }
}

/// Waits until every open subscriber has every acked publish of its topic
/// (or the drain timeout passes), then audits all that ever opened.
async fn drain_and_audit(
    context: &SubscriberContext,
    slots: &[SubscriberSlot],
    expectation: Expectation,
) -> WorkerReport {
    let acked: HashMap<u32, SeqSet> = expectation.acked.into_iter().collect();
    let refused: HashMap<u32, SeqSet> = expectation.refused.into_iter().collect();
    let empty = SeqSet::default();
    let acked_for = |topic: u32| acked.get(&topic).unwrap_or(&empty);
    let refused_for = |topic: u32| refused.get(&topic).unwrap_or(&empty);
    let deadline = Instant::now() + Duration::from_millis(expectation.drain_timeout_ms);
    let drained = loop {
        // A stream that is reconnecting will catch up once it is back.
        let waiting = slots.iter().any(|slot| {
            let state = slot.lock();
            matches!(state.stage, Stage::Open | Stage::Reconnecting)
                && state.ledger.audit(acked_for(slot.topic), &empty).lost > 0
        });
        if !waiting {
            tokio::time::sleep(DRAIN_GRACE).await;
            break true;
        }
        if Instant::now() >= deadline {
            break false;
        }
        tokio::time::sleep(DRAIN_POLL_INTERVAL).await;
    };

    let mut report = WorkerReport {
        drained,
        ..WorkerReport::default()
    };
    let mut audit = Audit::default();
    for slot in slots {
        let state = slot.lock();
        match state.stage {
            Stage::Failed | Stage::Connecting => continue,
            // Still away at the end: it did not get back in time.
            Stage::Closed | Stage::Reconnecting => report.closed_early += 1,
            Stage::Open => {}
        }
        let audited = state
            .ledger
            .audit(acked_for(slot.topic), refused_for(slot.topic));
        if audited.lost > 0 && report.lost_detail.len() < loss::SUBSCRIBERS_DESCRIBED {
            report.lost_detail.push(LostBySubscriber::new(
                slot.index,
                slot.topic,
                state.ledger.missing(acked_for(slot.topic)),
                &state.connections,
            ));
        }
        audit.add(audited);
        report.foreign_events += state.foreign_events;
        report.gap_frames += state.gap_frames;
        report.other_events += state.other_events;
        report.comments += state.comments;
    }
    report.audit = audit;
    report.deliveries = context.deliveries.load(Ordering::Relaxed);

    report.close_examples = context.close_examples.lock().expect("poisoned").clone();
    report.latency = context.latency.dump();
    report.last_delivery_unix_nanos = report.latency.last_arrival_unix_nanos;
    report.reconnects = context.reconnects.dump();
    report
}

async fn next_command(commands: &mut Lines<BufReader<Stdin>>) -> Result<Option<ToWorker>> {
    match commands.next_line().await? {
        Some(line) => Ok(Some(
            serde_json::from_str(&line).context("parsing a coordinator message")?,
        )),
        None => Ok(None),
    }
}

/// Writes one message line to stdout, the coordinator's only channel.
fn emit(message: &FromWorker) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    serde_json::to_writer(&mut stdout, message)?;
    stdout.write_all(b"\n")?;
    stdout.flush()?;
    Ok(())
}
