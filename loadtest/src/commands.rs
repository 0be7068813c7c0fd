//! What each subcommand does, from parsed arguments to output and verdict.

use crate::cli::RunArgs;
use crate::disrupt::Disruption;
use crate::progress::Progress;
use crate::report::append_json;
use crate::run;
use crate::scenario::{BUILT_IN, Scenario};
use crate::settings::RunSettings;
use crate::target::Target;
use crate::{plot, saturate};
use anyhow::{Result, bail};

/// Runs a scenario; `Ok(false)` when the run did not pass.
pub async fn run(args: RunArgs) -> Result<bool> {
    let mut scenario = Scenario::load(&args.scenario)?;
    scenario.apply(&args.load)?;
    let disruption = Disruption::from_args(&args.disrupt);
    if disruption.is_some() && scenario.saturate.is_some() {
        bail!("--disrupt runs one scenario; a saturate scenario runs many");
    }
    if disruption.is_some() && scenario.publish.is_none() {
        bail!("--disrupt needs a scenario that publishes");
    }
    let settings = RunSettings {
        target: Target::from_args(&args.target)?,
        server_pids: args.server_pids.clone(),
        label: args.label.clone(),
        scenario,
        disruption,
        verdict: args.verdict.clone(),
    };
    let progress = Progress::new(args.quiet);
    let json_out = args.json_out.as_deref();

    if let Some(load) = settings.scenario.saturate.clone() {
        let report = saturate::saturate(&settings, &load, &progress, |step| {
            progress.note(&step.table());
            append_json(json_out, step)
        })
        .await?;
        println!("{}", report.table());
        append_json(json_out, &report)?;
        if let Some(path) = &args.plot {
            plot::latency_against_rate(&report, path)?;
        }
        // Saturating means reaching unclean steps; only a first step that
        // wasn't clean says something is wrong.
        return Ok(report.highest_clean_rate_per_second > 0.0);
    }

    let report = run::run_once(
        &settings,
        settings.scenario.publish.as_ref(),
        None,
        &progress,
    )
    .await?;
    println!("{}", report.table());
    append_json(json_out, &report)?;
    if let Some(path) = &args.plot {
        plot::latency_over_time(&report, path)?;
    }
    Ok(report.passed)
}

/// Churns subscriptions; `Ok(false)` when the server did not give back
/// what they held.
pub async fn churn(args: &crate::churn::ChurnArgs) -> Result<bool> {
    let report = crate::churn::churn(args).await?;
    println!("{}", report.table());
    append_json(args.json_out.as_deref(), &report)?;
    Ok(report.passed)
}

pub fn list_scenarios() -> Result<()> {
    for (name, _) in BUILT_IN {
        let scenario = Scenario::load(name)?;
        println!("{name:<14} {}", scenario.description);
    }
    Ok(())
}
