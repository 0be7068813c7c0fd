//! Turns what the workers, the publisher and /proc reported into the run's
//! figures, and decides whether the run passed.

use crate::latency::new_histogram;
use crate::protocol::{ConnectSummary, WorkerPlan, WorkerReport};
use crate::publisher::PublishOutcome;
use crate::report::{
    ConnectFigures, DeliveryFigures, Percentiles, PublishFigures, RunReport, ServerFigures,
    TimelinePoint, Verification,
};
use crate::run::RunSettings;
use crate::scenario::PublishLoad;
use crate::server_stats::ServerSample;
use crate::verify::Audit;
use std::collections::BTreeMap;

const NANOS_PER_SECOND: f64 = 1e9;

pub struct RunResults<'a> {
    pub settings: &'a RunSettings,
    pub run_id: String,
    pub started_unix_seconds: u64,
    pub step: Option<u32>,
    pub plans: Vec<WorkerPlan>,
    pub connect: Vec<ConnectSummary>,
    pub reports: Vec<WorkerReport>,
    pub publish: Option<PublishLoad>,
    pub outcome: Option<PublishOutcome>,
    /// Before connecting, after connecting, at the end.
    pub server: Option<[ServerSample; 3]>,
    /// The harness's own processes, after connecting and at the end.
    pub harness: [ServerSample; 2],
}

pub fn assemble(results: RunResults<'_>) -> RunReport {
    let scenario = &results.settings.scenario;
    let connect = connect_figures(&results.connect);
    let publish = results
        .outcome
        .as_ref()
        .zip(results.publish.as_ref())
        .map(|(o, load)| publish_figures(o, load));
    let delivery = delivery_figures(&results);
    let mut audit = Audit::default();
    for report in &results.reports {
        audit.add(report.audit);
    }
    let mut latency = new_histogram(3);
    for report in &results.reports {
        report.latency.total.add_to(&mut latency);
    }
    let first_due = results.outcome.as_ref().map(|o| o.first_due_unix_nanos);
    let server = results.server.map(|samples| {
        server_figures(
            &results.settings.server_pids,
            samples,
            connect.connected,
            delivery.deliveries,
        )
    });
    let problems = problems(&connect, publish.as_ref(), &delivery, &audit);
    RunReport {
        kind: "run".to_owned(),
        scenario: scenario.name.clone(),
        target: results.settings.target.name.clone(),
        label: results.settings.label.clone(),
        run_id: results.run_id,
        started_unix_seconds: results.started_unix_seconds,
        subscribers: scenario.subscribers,
        topics: scenario.topics,
        workers: results.plans.len() as u32,
        step: results.step,
        connect,
        publish,
        delivery,
        verification: Verification { audit },
        latency_ms: Percentiles::from_micros(&latency),
        server,
        harness_cpu_seconds: results.harness[1].cpu_seconds - results.harness[0].cpu_seconds,
        timeline: first_due
            .map(|due| timeline(&results.reports, due))
            .unwrap_or_default(),
        passed: problems.is_empty(),
        problems,
    }
}

fn connect_figures(summaries: &[ConnectSummary]) -> ConnectFigures {
    let mut latency = new_histogram(3);
    for summary in summaries {
        summary.connect_latency.add_to(&mut latency);
    }
    let connected = summaries.iter().map(|s| s.connected).sum();
    let first = summaries
        .iter()
        .map(|s| s.first_attempt_unix_nanos)
        .min()
        .unwrap_or(0);
    let last = summaries
        .iter()
        .map(|s| s.last_connected_unix_nanos)
        .max()
        .unwrap_or(0);
    let seconds = last.saturating_sub(first) as f64 / NANOS_PER_SECOND;
    ConnectFigures {
        connected,
        failed: summaries.iter().map(|s| s.failed).sum(),
        seconds,
        per_second: if seconds > 0.0 {
            connected as f64 / seconds
        } else {
            0.0
        },
        latency_ms: Percentiles::from_micros(&latency),
        failure_examples: summaries
            .iter()
            .flat_map(|s| s.failure_examples.iter().cloned())
            .take(5)
            .collect(),
    }
}

fn publish_figures(outcome: &PublishOutcome, load: &PublishLoad) -> PublishFigures {
    let seconds = outcome
        .last_answer_unix_nanos
        .saturating_sub(outcome.first_due_unix_nanos) as f64
        / NANOS_PER_SECOND;
    PublishFigures {
        target_rate_per_second: load.rate_per_second,
        scheduled: outcome.scheduled,
        acked: outcome.acked_count,
        rejected: outcome.rejected,
        errors: outcome.errors,
        statuses: outcome.statuses.clone(),
        achieved_rate_per_second: if seconds > 0.0 {
            outcome.acked_count as f64 / seconds
        } else {
            0.0
        },
        ack_latency_ms: Percentiles::from_micros(&outcome.ack_latency),
        error_examples: outcome.error_examples.clone(),
    }
}

fn delivery_figures(results: &RunResults<'_>) -> DeliveryFigures {
    let reports = &results.reports;
    let deliveries = reports.iter().map(|r| r.deliveries).sum();
    let expected = results.outcome.as_ref().map_or(0, |outcome| {
        let topics = u64::from(results.settings.scenario.topics);
        let subscribers = u64::from(results.settings.scenario.subscribers);
        outcome
            .acked
            .iter()
            .enumerate()
            .map(|(topic, acked)| {
                // Subscriber i takes topic i % topics.
                let on_topic =
                    subscribers / topics + u64::from((topic as u64) < subscribers % topics);
                acked.count() * on_topic
            })
            .sum()
    });
    let last_delivery = reports
        .iter()
        .filter_map(|r| r.last_delivery_unix_nanos)
        .max();
    let per_second = match (results.outcome.as_ref(), last_delivery) {
        (Some(outcome), Some(last)) if last > outcome.first_due_unix_nanos => {
            deliveries as f64 / ((last - outcome.first_due_unix_nanos) as f64 / NANOS_PER_SECOND)
        }
        _ => 0.0,
    };
    DeliveryFigures {
        deliveries,
        expected,
        per_second,
        foreign_events: reports.iter().map(|r| r.foreign_events).sum(),
        gap_frames: reports.iter().map(|r| r.gap_frames).sum(),
        other_events: reports.iter().map(|r| r.other_events).sum(),
        closed_early: reports.iter().map(|r| r.closed_early).sum(),
        close_examples: reports
            .iter()
            .flat_map(|r| r.close_examples.iter().cloned())
            .take(5)
            .collect(),
        drained: reports.iter().all(|r| r.drained),
    }
}

fn server_figures(
    pids: &[u32],
    [before, connected, end]: [ServerSample; 3],
    connections: u64,
    deliveries: u64,
) -> ServerFigures {
    let cpu_seconds_load = end.cpu_seconds - connected.cpu_seconds;
    ServerFigures {
        pids: pids.to_vec(),
        processes: end.processes,
        cpu_seconds_connect: connected.cpu_seconds - before.cpu_seconds,
        cpu_seconds_load,
        cpu_seconds_per_million_deliveries: (deliveries > 0)
            .then(|| cpu_seconds_load / deliveries as f64 * 1e6),
        rss_before_kib: before.rss_kib,
        rss_after_connect_kib: connected.rss_kib,
        rss_end_kib: end.rss_kib,
        rss_per_connection_bytes: if connections > 0 {
            (connected.rss_kib as f64 - before.rss_kib as f64) * 1024.0 / connections as f64
        } else {
            0.0
        },
    }
}

/// Latency per second of schedule, merged over workers.
fn timeline(reports: &[WorkerReport], first_due_unix_nanos: u64) -> Vec<TimelinePoint> {
    let first_second = first_due_unix_nanos / 1_000_000_000;
    let mut merged: BTreeMap<u64, hdrhistogram::Histogram<u64>> = BTreeMap::new();
    for report in reports {
        for (second, dump) in &report.latency.per_second {
            let histogram = merged
                .entry(*second)
                .or_insert_with(|| new_histogram(dump.significant_digits));
            dump.add_to(histogram);
        }
    }
    merged
        .into_iter()
        .map(|(second, histogram)| {
            let p = Percentiles::from_micros(&histogram);
            TimelinePoint {
                second: second.saturating_sub(first_second),
                count: p.count,
                p50_ms: p.p50,
                p99_ms: p.p99,
                max_ms: p.max,
            }
        })
        .collect()
}

/// Why a run did not pass; empty when it did. Beyond lost, duplicated and
/// out-of-order events, a run that couldn't connect everyone, lost streams or
/// had publishes refused didn't test what it set out to, so it fails too.
fn problems(
    connect: &ConnectFigures,
    publish: Option<&PublishFigures>,
    delivery: &DeliveryFigures,
    audit: &Audit,
) -> Vec<String> {
    let mut problems = Vec::new();
    if audit.lost > 0 {
        let why = if delivery.drained {
            ""
        } else {
            " (still missing when the drain timeout ended)"
        };
        problems.push(format!("{} deliveries lost{why}", audit.lost));
    }
    if audit.duplicated > 0 {
        problems.push(format!("{} deliveries duplicated", audit.duplicated));
    }
    if audit.out_of_order > 0 {
        problems.push(format!("{} deliveries out of order", audit.out_of_order));
    }
    if connect.failed > 0 {
        problems.push(format!(
            "{} subscribers failed to connect (e.g. {})",
            connect.failed,
            connect.failure_examples.first().map_or("-", String::as_str)
        ));
    }
    if delivery.closed_early > 0 {
        problems.push(format!(
            "{} streams closed early (e.g. {})",
            delivery.closed_early,
            delivery.close_examples.first().map_or("-", String::as_str)
        ));
    }
    if let Some(publish) = publish {
        if publish.rejected + publish.errors > 0 {
            problems.push(format!(
                "{} publishes refused and {} unanswered (statuses {:?}{})",
                publish.rejected,
                publish.errors,
                publish.statuses,
                publish
                    .error_examples
                    .first()
                    .map(|e| format!(", e.g. {e}"))
                    .unwrap_or_default()
            ));
        }
        if publish.scheduled > 0 && publish.acked == 0 {
            problems.push("no publish was acked".to_owned());
        }
    }
    problems
}
