//! Steps the publish rate up until a run is no longer clean, then bisects
//! between the last clean and the first unclean rate. Each step is a full,
//! fresh run so an overloaded step can't spoil the next.

use crate::progress::Progress;
use crate::report::{RunReport, SaturateReport, SaturateStep};
use crate::run;
use crate::scenario::SaturateLoad;
use crate::settings::RunSettings;
use anyhow::Result;

/// Runs the steps; `on_step` sees each run's report as it completes.
pub async fn saturate(
    settings: &RunSettings,
    load: &SaturateLoad,
    progress: &Progress,
    mut on_step: impl FnMut(&RunReport) -> Result<()>,
) -> Result<SaturateReport> {
    let base = settings
        .scenario
        .publish
        .clone()
        .expect("validated: saturate has [publish]");
    let mut steps = Vec::new();
    let mut best_cpu_per_million = None;
    let mut clean_rate: Option<f64> = None;
    let mut unclean_rate: Option<f64> = None;
    let mut rate = load.start_rate_per_second;
    let mut step_number = 0;
    let mut refinements = 0;
    loop {
        step_number += 1;
        let mut publish = base.clone();
        publish.rate_per_second = rate;
        publish.duration = Some(load.step_duration);
        publish.count = None;
        let report = run::run_once(settings, Some(&publish), Some(step_number), progress).await?;
        on_step(&report)?;
        let step = judge(&report, rate, load);
        if step.clean {
            clean_rate = Some(rate);
            best_cpu_per_million = report
                .server
                .as_ref()
                .and_then(|s| s.cpu_seconds_per_million_deliveries);
        } else {
            unclean_rate = Some(rate);
        }
        steps.push(step);
        rate = match (clean_rate, unclean_rate) {
            // Still climbing.
            (_, None) if rate * load.growth_factor <= load.max_rate_per_second => {
                rate * load.growth_factor
            }
            (_, None) => break,
            (None, Some(_)) => break,
            (Some(clean), Some(unclean)) => {
                if refinements == load.refine_steps {
                    break;
                }
                refinements += 1;
                (clean + unclean) / 2.0
            }
        };
        // Bisection only moves between the bounds it has.
        if let (Some(clean), Some(unclean)) = (clean_rate, unclean_rate)
            && (rate <= clean || rate >= unclean)
        {
            break;
        }
    }
    Ok(SaturateReport {
        kind: "saturate".to_owned(),
        scenario: settings.scenario.name.clone(),
        target: settings.target.name.clone(),
        label: settings.label.clone(),
        subscribers: settings.scenario.subscribers,
        highest_clean_rate_per_second: clean_rate.unwrap_or(0.0),
        steps,
        server_cpu_seconds_per_million_deliveries: best_cpu_per_million,
    })
}

/// A step is clean when the run passed (nothing lost, duplicated, out of
/// order, refused) and p99 latency is within the bound.
fn judge(report: &RunReport, rate: f64, load: &SaturateLoad) -> SaturateStep {
    let max_p99_ms = load.max_p99.as_secs_f64() * 1_000.0;
    let mut why_not_clean = report.problems.clone();
    if report.latency_ms.p99 > max_p99_ms {
        why_not_clean.push(format!(
            "p99 {:.1} ms > {max_p99_ms:.0} ms",
            report.latency_ms.p99
        ));
    }
    SaturateStep {
        rate_per_second: rate,
        clean: why_not_clean.is_empty(),
        p99_ms: report.latency_ms.p99,
        deliveries_per_second: report.delivery.per_second,
        lost: report.verification.audit.lost,
        why_not_clean,
    }
}
