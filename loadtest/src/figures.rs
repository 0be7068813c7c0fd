//! Turns what the workers, the publisher and /proc reported into the run's
//! figures, and decides whether the run passed.

use crate::disrupt::{DisruptionOutcome, DrainWindow};
use crate::latency::{LatencyDump, new_histogram};
use crate::protocol::{
    ConnectSummary, RECONNECT_BUCKET_NANOS, ReconnectDump, WorkerPlan, WorkerReport,
};
use crate::publisher::PublishOutcome;
use crate::report::{
    ConnectFigures, DeliveryFigures, DisruptionFigures, DrainWindowFigures, Percentiles,
    PublishFigures, ReconnectFigures, RunReport, ServerFigures, TimelinePoint, Verification,
};
use crate::scenario::PublishLoad;
use crate::server_stats::ServerSample;
use crate::settings::{RunSettings, VerdictRules};
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
    pub disruption: Option<DisruptionOutcome>,
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
    let answers = results.outcome.as_ref().map(|o| &o.answers[..]);
    let lost_detail =
        crate::loss::gather(results.reports.iter().map(|r| &r.lost_detail[..]), answers);
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
    let first_due_or_start = first_due.unwrap_or(results.started_unix_seconds * 1_000_000_000);
    let reconnect = scenario.reconnect.enabled.then(|| {
        let dumps: Vec<&ReconnectDump> = results.reports.iter().map(|r| &r.reconnects).collect();
        let windows = results
            .disruption
            .as_ref()
            .map_or(&[][..], |d| &d.drain_windows[..]);
        reconnect_figures(&dumps, windows, first_due_or_start)
    });
    let disruption = results.disruption.as_ref().map(|outcome| {
        let latencies: Vec<&LatencyDump> = results.reports.iter().map(|r| &r.latency).collect();
        disruption_figures(outcome, &latencies, first_due_or_start)
    });
    let rules = &results.settings.verdict;
    let mut problems = problems(&connect, publish.as_ref(), &delivery, &audit, rules);
    problems.extend(optional_rule_problems(
        rules,
        delivery.gap_frames,
        reconnect.as_ref(),
    ));
    if let Some(reconnect) = &reconnect
        && reconnect.gave_up > 0
    {
        problems.push(format!(
            "{} subscribers gave up reconnecting",
            reconnect.gave_up
        ));
    }
    if let Some(outcome) = &results.disruption {
        if outcome.timed_out {
            problems.push(format!("the disruption {:?} timed out", outcome.command));
        } else if outcome.exit_code != Some(0) {
            problems.push(format!(
                "the disruption {:?} failed (exit {})",
                outcome.command,
                outcome
                    .exit_code
                    .map_or("by a signal".to_owned(), |c| c.to_string())
            ));
        }
    }
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
        verification: Verification { audit, lost_detail },
        latency_ms: Percentiles::from_micros(&latency),
        server,
        harness_cpu_seconds: results.harness[1].cpu_seconds - results.harness[0].cpu_seconds,
        timeline: first_due
            .map(|due| timeline(&results.reports, due))
            .unwrap_or_default(),
        reconnect,
        disruption,
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
        retries: outcome.retries,
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

const BUCKETS_PER_SECOND: f64 = NANOS_PER_SECOND / RECONNECT_BUCKET_NANOS as f64;

/// Reconnects summed over workers, and their rate inside each drain window:
/// the mean (reconnects / window length) against the busiest bucket. Closes
/// spread evenly keep the two close; a burst shows as a max far above the mean.
pub fn reconnect_figures(
    dumps: &[&ReconnectDump],
    windows: &[DrainWindow],
    first_due_unix_nanos: u64,
) -> ReconnectFigures {
    let mut per_bucket: BTreeMap<u64, u64> = BTreeMap::new();
    let mut latency = new_histogram(3);
    for dump in dumps {
        for &(bucket, count) in &dump.per_bucket {
            *per_bucket.entry(bucket).or_default() += count;
        }
        dump.latency.add_to(&mut latency);
    }
    let offset =
        |unix_nanos: u64| (unix_nanos as f64 - first_due_unix_nanos as f64) / NANOS_PER_SECOND;
    let mut in_windows = 0;
    let mut window_seconds = 0.0;
    let mut max_per_second: f64 = 0.0;
    let drain_windows: Vec<DrainWindowFigures> = windows
        .iter()
        .map(|window| {
            // Every bucket the window touches: a window's edges rarely fall
            // on a bucket's, and a reconnect just inside must count.
            let first = window.start_unix_nanos / RECONNECT_BUCKET_NANOS;
            let last = window.end_unix_nanos.div_ceil(RECONNECT_BUCKET_NANOS);
            let counts: Vec<u64> = per_bucket
                .range(first..last.max(first))
                .map(|(_, count)| *count)
                .collect();
            let reconnects: u64 = counts.iter().sum();
            let seconds = (last.max(first) - first) as f64 / BUCKETS_PER_SECOND;
            let busiest = counts.iter().copied().max().unwrap_or(0) as f64 * BUCKETS_PER_SECOND;
            in_windows += reconnects;
            window_seconds += seconds;
            max_per_second = max_per_second.max(busiest);
            DrainWindowFigures {
                label: window.label.clone(),
                start_s: offset(first * RECONNECT_BUCKET_NANOS),
                seconds,
                reconnects,
                mean_per_second: if seconds > 0.0 {
                    reconnects as f64 / seconds
                } else {
                    0.0
                },
                max_per_second: busiest,
            }
        })
        .collect();
    let reconnects: u64 = dumps.iter().map(|d| d.count).sum();
    ReconnectFigures {
        reconnects,
        failed_attempts: dumps.iter().map(|d| d.failed_attempts).sum(),
        gave_up: dumps.iter().map(|d| d.gave_up).sum(),
        latency_ms: Percentiles::from_micros(&latency),
        mean_per_second: if window_seconds > 0.0 {
            in_windows as f64 / window_seconds
        } else {
            0.0
        },
        max_per_second,
        // Overlapping windows could count a reconnect twice; never below zero.
        outside_windows: reconnects.saturating_sub(in_windows),
        drain_windows,
        timeline: per_bucket
            .iter()
            .map(|(bucket, count)| (offset(bucket * RECONNECT_BUCKET_NANOS), *count))
            .collect(),
    }
}

/// The disruption's times and the latency of what was due before, during
/// and after it. A second of the schedule that overlaps the disruption at
/// all counts as during.
pub fn disruption_figures(
    outcome: &DisruptionOutcome,
    latencies: &[&LatencyDump],
    first_due_unix_nanos: u64,
) -> DisruptionFigures {
    let mut phases = [new_histogram(2), new_histogram(2), new_histogram(2)];
    for dump in latencies {
        for (second, histogram) in &dump.per_second {
            let (start, end) = (second * 1_000_000_000, (second + 1) * 1_000_000_000);
            let phase = if end <= outcome.started_unix_nanos {
                0
            } else if start >= outcome.ended_unix_nanos {
                2
            } else {
                1
            };
            histogram.add_to(&mut phases[phase]);
        }
    }
    let [before, during, after] = phases.map(|h| Percentiles::from_micros(&h));
    DisruptionFigures {
        command: outcome.command.clone(),
        exit_code: outcome.exit_code,
        timed_out: outcome.timed_out,
        start_s: (outcome.started_unix_nanos as f64 - first_due_unix_nanos as f64)
            / NANOS_PER_SECOND,
        seconds: outcome
            .ended_unix_nanos
            .saturating_sub(outcome.started_unix_nanos) as f64
            / NANOS_PER_SECOND,
        latency_before_ms: before,
        latency_during_ms: during,
        latency_after_ms: after,
    }
}

/// What the rules the run was given (`VerdictRules`) find wrong.
fn optional_rule_problems(
    rules: &VerdictRules,
    gap_frames: u64,
    reconnect: Option<&ReconnectFigures>,
) -> Vec<String> {
    let mut problems = Vec::new();
    if rules.fail_on_gap_frames && gap_frames > 0 {
        problems.push(format!("{gap_frames} gap frames (none may come here)"));
    }
    if let (Some(limit), Some(reconnect)) = (rules.max_reconnect_spike, reconnect) {
        for window in &reconnect.drain_windows {
            if window.reconnects > 0 && window.max_per_second > limit * window.mean_per_second {
                problems.push(format!(
                    "reconnects in {} peaked at {:.0}/s, over {limit} times their mean {:.1}/s",
                    window.label, window.max_per_second, window.mean_per_second
                ));
            }
        }
    }
    problems
}

/// Why a run did not pass; empty when it did. Beyond lost, duplicated and
/// out-of-order events, a run that couldn't connect everyone, lost streams or
/// had publishes refused didn't test what it set out to, so it fails too.
fn problems(
    connect: &ConnectFigures,
    publish: Option<&PublishFigures>,
    delivery: &DeliveryFigures,
    audit: &Audit,
    rules: &VerdictRules,
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
    if audit.refused_delivered > 0 {
        problems.push(format!(
            "{} deliveries of publishes the server refused",
            audit.refused_delivered
        ));
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
        if publish.rejected + publish.errors > 0 && !rules.tolerate_unanswered_publishes {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::latency::LatencyRecorder;

    const SECOND: u64 = 1_000_000_000;
    const T0: u64 = 1_700_000_000 * SECOND;

    fn dump(buckets: &[(u64, u64)]) -> ReconnectDump {
        ReconnectDump {
            count: buckets.iter().map(|(_, c)| c).sum(),
            per_bucket: buckets.to_vec(),
            ..ReconnectDump::default()
        }
    }

    fn window(label: &str, from_s: u64, to_s: u64) -> DrainWindow {
        DrainWindow {
            label: label.into(),
            start_unix_nanos: T0 + from_s * SECOND,
            end_unix_nanos: T0 + to_s * SECOND,
        }
    }

    #[test]
    fn reconnects_spread_over_a_window_have_max_near_mean() {
        let first = T0 / RECONNECT_BUCKET_NANOS;
        // 2 s window = 8 buckets of 250 ms, 5 reconnects each, over two workers.
        let a = dump(&(0..8).map(|i| (first + i, 3)).collect::<Vec<_>>());
        let b = dump(&(0..8).map(|i| (first + i, 2)).collect::<Vec<_>>());
        let figures = reconnect_figures(&[&a, &b], &[window("r1", 0, 2)], T0);
        assert_eq!(figures.reconnects, 40);
        let w = &figures.drain_windows[0];
        assert_eq!((w.reconnects, w.seconds), (40, 2.0));
        assert_eq!((w.mean_per_second, w.max_per_second), (20.0, 20.0));
        assert_eq!(figures.outside_windows, 0);
    }

    #[test]
    fn a_burst_shows_as_max_far_above_mean() {
        let first = T0 / RECONNECT_BUCKET_NANOS;
        let burst = dump(&[(first + 1, 40), (first + 12, 3)]);
        let figures = reconnect_figures(&[&burst], &[window("r1", 0, 2), window("r2", 3, 4)], T0);
        assert_eq!(figures.drain_windows[0].mean_per_second, 20.0);
        assert_eq!(figures.drain_windows[0].max_per_second, 160.0);
        assert_eq!(figures.drain_windows[1].reconnects, 3);
        assert_eq!(figures.mean_per_second, 43.0 / 3.0);
        assert_eq!(figures.max_per_second, 160.0);
        let outside = reconnect_figures(&[&burst], &[window("r2", 3, 4)], T0);
        assert_eq!(outside.outside_windows, 40);
    }

    #[test]
    fn gap_frames_and_reconnect_bursts_fail_only_when_asked_to() {
        let first = T0 / RECONNECT_BUCKET_NANOS;
        let burst = dump(&[(first + 1, 40), (first + 5, 2)]);
        let reconnect = reconnect_figures(&[&burst], &[window("r1", 0, 2)], T0);
        let lenient = VerdictRules::default();
        assert!(optional_rule_problems(&lenient, 3, Some(&reconnect)).is_empty());
        let strict = VerdictRules {
            fail_on_gap_frames: true,
            max_reconnect_spike: Some(4.0),
            tolerate_unanswered_publishes: false,
        };
        let problems = optional_rule_problems(&strict, 3, Some(&reconnect));
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].starts_with("3 gap frames"));
        // 40 in 250 ms is 160/s against a mean of 21/s.
        assert!(problems[1].contains("peaked at 160/s"), "{problems:?}");
        let spread = dump(&(0..8).map(|i| (first + i, 5)).collect::<Vec<_>>());
        let reconnect = reconnect_figures(&[&spread], &[window("r1", 0, 2)], T0);
        assert!(optional_rule_problems(&strict, 0, Some(&reconnect)).is_empty());
    }

    #[test]
    fn latency_is_split_before_during_and_after_the_disruption() {
        let recorder = LatencyRecorder::new(1);
        for (second, millis) in [(0, 2), (1, 2), (2, 50), (3, 60), (4, 3), (5, 3)] {
            let due = T0 + second * SECOND;
            recorder.shard(0).record(due, due + millis * 1_000_000);
        }
        let latency = recorder.dump();
        // From 2.5 s to 3.5 s: seconds 2 and 3 overlap it.
        let outcome = DisruptionOutcome {
            command: "restart".into(),
            started_unix_nanos: T0 + 2 * SECOND + SECOND / 2,
            ended_unix_nanos: T0 + 3 * SECOND + SECOND / 2,
            exit_code: Some(0),
            ..DisruptionOutcome::default()
        };
        let figures = disruption_figures(&outcome, &[&latency], T0);
        assert_eq!(figures.start_s, 2.5);
        assert_eq!(figures.seconds, 1.0);
        assert_eq!(figures.latency_before_ms.count, 2);
        assert_eq!(figures.latency_during_ms.count, 2);
        assert_eq!(figures.latency_after_ms.count, 2);
        assert!(
            figures.latency_during_ms.p99 >= 59.0,
            "{:?}",
            figures.latency_during_ms
        );
        assert!(figures.latency_before_ms.p99 < 3.0 && figures.latency_after_ms.p99 < 4.0);
    }
}
