//! `compare`: reads the JSON lines of runs against two targets and prints
//! each figure side by side with the ratio candidate/baseline, as markdown.

use crate::report::{RunReport, SaturateReport};
use anyhow::{Context, Result};
use clap::Args;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::PathBuf;

#[derive(Debug, Clone, Args)]
pub struct CompareArgs {
    /// JSON-lines files written by `run --json-out`.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Target whose figures come first (the numerator of the ratio).
    #[arg(long, default_value = "ssehub")]
    pub candidate: String,
    /// Target compared against (the denominator).
    #[arg(long, default_value = "nchan")]
    pub baseline: String,
    /// Only the figures that weigh two ways into one server against each
    /// other (e.g. its Mercure routes against its own): deliveries/s,
    /// latency p50 and p99, lost + duplicated + out of order, server CPU
    /// per delivery (in µs: the same number as CPU s per million) and
    /// server RSS per connection.
    #[arg(long)]
    pub brief: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Better {
    Lower,
    Higher,
}

/// One comparable figure: name, which way is better, how to read it.
struct Figure {
    name: &'static str,
    /// Its name in a `--brief` table; `None`: not in one.
    brief: Option<&'static str>,
    better: Better,
    read: fn(&RunReport) -> Option<f64>,
}

const FIGURES: &[Figure] = &[
    Figure {
        name: "connects/s",
        brief: None,
        better: Better::Higher,
        read: |r| Some(r.connect.per_second),
    },
    Figure {
        name: "publishes acked/s",
        brief: None,
        better: Better::Higher,
        read: |r| r.publish.as_ref().map(|p| p.achieved_rate_per_second),
    },
    Figure {
        name: "deliveries/s",
        brief: Some("deliveries/s"),
        better: Better::Higher,
        read: |r| r.publish.as_ref().map(|_| r.delivery.per_second),
    },
    Figure {
        name: "latency p50 ms",
        brief: Some("latency p50 ms"),
        better: Better::Lower,
        read: |r| r.publish.as_ref().map(|_| r.latency_ms.p50),
    },
    Figure {
        name: "latency p90 ms",
        brief: None,
        better: Better::Lower,
        read: |r| r.publish.as_ref().map(|_| r.latency_ms.p90),
    },
    Figure {
        name: "latency p99 ms",
        brief: Some("latency p99 ms"),
        better: Better::Lower,
        read: |r| r.publish.as_ref().map(|_| r.latency_ms.p99),
    },
    Figure {
        name: "latency p99.9 ms",
        brief: None,
        better: Better::Lower,
        read: |r| r.publish.as_ref().map(|_| r.latency_ms.p999),
    },
    Figure {
        name: "latency max ms",
        brief: None,
        better: Better::Lower,
        read: |r| r.publish.as_ref().map(|_| r.latency_ms.max),
    },
    Figure {
        name: "lost + duplicated + out of order",
        brief: Some("lost + duplicated + out of order"),
        better: Better::Lower,
        read: |r| {
            let a = r.verification.audit;
            r.publish
                .as_ref()
                .map(|_| (a.lost + a.duplicated + a.out_of_order) as f64)
        },
    },
    Figure {
        name: "server CPU s per million deliveries",
        brief: Some("server CPU µs per delivery"),
        better: Better::Lower,
        read: |r| {
            r.server
                .as_ref()
                .and_then(|s| s.cpu_seconds_per_million_deliveries)
        },
    },
    Figure {
        name: "server RSS per connection KiB",
        brief: Some("server RSS per connection KiB"),
        better: Better::Lower,
        read: |r| {
            r.server
                .as_ref()
                .map(|s| s.rss_per_connection_bytes / 1024.0)
        },
    },
    Figure {
        name: "server RSS at end MiB",
        brief: None,
        better: Better::Lower,
        read: |r| r.server.as_ref().map(|s| s.rss_end_kib as f64 / 1024.0),
    },
];

/// The latest record of each (scenario, target).
#[derive(Default)]
struct Records {
    runs: BTreeMap<(String, String), RunReport>,
    saturations: BTreeMap<(String, String), SaturateReport>,
    scenario_order: Vec<String>,
}

impl Records {
    fn read(files: &[PathBuf]) -> Result<Self> {
        let mut records = Self::default();
        for file in files {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("reading {}", file.display()))?;
            for (number, line) in text
                .lines()
                .enumerate()
                .filter(|(_, l)| !l.trim().is_empty())
            {
                let value: serde_json::Value = serde_json::from_str(line)
                    .with_context(|| format!("{}:{}", file.display(), number + 1))?;
                match value.get("kind").and_then(|k| k.as_str()) {
                    Some("run") => {
                        let run: RunReport = serde_json::from_value(value)?;
                        // Saturate steps are summarised by their saturate record.
                        if run.step.is_none() {
                            records.note_scenario(&run.scenario);
                            records
                                .runs
                                .insert((run.scenario.clone(), run.target.clone()), run);
                        }
                    }
                    Some("saturate") => {
                        let saturation: SaturateReport = serde_json::from_value(value)?;
                        records.note_scenario(&saturation.scenario);
                        records.saturations.insert(
                            (saturation.scenario.clone(), saturation.target.clone()),
                            saturation,
                        );
                    }
                    _ => {}
                }
            }
        }
        Ok(records)
    }

    fn note_scenario(&mut self, scenario: &str) {
        if !self.scenario_order.iter().any(|s| s == scenario) {
            self.scenario_order.push(scenario.to_owned());
        }
    }
}

pub fn compare(args: &CompareArgs) -> Result<String> {
    let records = Records::read(&args.files)?;
    let (candidate, baseline) = (&args.candidate, &args.baseline);
    let mut out = format!(
        "| scenario | figure | {candidate} | {baseline} | {candidate}/{baseline} | better |\n| --- | --- | ---: | ---: | ---: | --- |\n"
    );
    for scenario in &records.scenario_order {
        let key = |target: &String| (scenario.clone(), target.clone());
        let (c, b) = (
            records.saturations.get(&key(candidate)),
            records.saturations.get(&key(baseline)),
        );
        if c.is_some() || b.is_some() {
            let rate = |s: Option<&SaturateReport>| s.map(|s| s.highest_clean_rate_per_second);
            let cpu = |s: Option<&SaturateReport>| {
                s.and_then(|s| s.server_cpu_seconds_per_million_deliveries)
            };
            row(
                &mut out,
                scenario,
                "highest clean rate msg/s",
                rate(c),
                rate(b),
                Better::Higher,
            );
            row(
                &mut out,
                scenario,
                if args.brief {
                    "server CPU µs per delivery (at that rate)"
                } else {
                    "server CPU s per million deliveries (at that rate)"
                },
                cpu(c),
                cpu(b),
                Better::Lower,
            );
        }
        let (c, b) = (
            records.runs.get(&key(candidate)),
            records.runs.get(&key(baseline)),
        );
        if c.is_none() && b.is_none() {
            continue;
        }
        for figure in FIGURES {
            let name = match (args.brief, figure.brief) {
                (false, _) => figure.name,
                (true, Some(brief)) => brief,
                (true, None) => continue,
            };
            let (cv, bv) = (c.and_then(figure.read), b.and_then(figure.read));
            if cv.is_some() || bv.is_some() {
                row(&mut out, scenario, name, cv, bv, figure.better);
            }
        }
        let verdict =
            |r: Option<&RunReport>| r.map_or("-", |r| if r.passed { "pass" } else { "FAIL" });
        let _ = writeln!(
            out,
            "| {scenario} | verdict | {} | {} | | |",
            verdict(c),
            verdict(b)
        );
    }
    Ok(out)
}

fn row(
    out: &mut String,
    scenario: &str,
    figure: &str,
    candidate: Option<f64>,
    baseline: Option<f64>,
    better: Better,
) {
    let ratio = match (candidate, baseline) {
        (Some(c), Some(b)) if b != 0.0 => format_ratio(c / b),
        _ => "-".to_owned(),
    };
    let better = match better {
        Better::Lower => "lower",
        Better::Higher => "higher",
    };
    let _ = writeln!(
        out,
        "| {scenario} | {figure} | {} | {} | {ratio} | {better} |",
        format_figure(candidate),
        format_figure(baseline)
    );
}

/// Two significant figures for small ratios (0.0040), two decimals otherwise.
fn format_ratio(ratio: f64) -> String {
    if ratio == 0.0 || ratio.abs() >= 0.1 {
        return format!("{ratio:.2}");
    }
    let decimals = (1.0 - ratio.abs().log10().floor()) as usize;
    format!("{ratio:.decimals$}")
}

/// Three significant figures or so, without scientific notation.
fn format_figure(value: Option<f64>) -> String {
    match value {
        None => "-".to_owned(),
        Some(v) if v.abs() >= 100.0 || v.fract() == 0.0 => format!("{v:.0}"),
        Some(v) if v.abs() >= 10.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.2}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_figures_readably() {
        assert_eq!(format_figure(Some(123456.7)), "123457");
        assert_eq!(format_figure(Some(12.345)), "12.3");
        assert_eq!(format_figure(Some(0.1234)), "0.12");
        assert_eq!(format_figure(Some(0.0)), "0");
        assert_eq!(format_figure(None), "-");
    }

    #[test]
    fn small_ratios_keep_two_significant_digits() {
        assert_eq!(format_ratio(2.0), "2.00");
        assert_eq!(format_ratio(0.27), "0.27");
        assert_eq!(format_ratio(0.04), "0.040");
        assert_eq!(format_ratio(8.71 / 2177.0), "0.0040");
        assert_eq!(format_ratio(0.0), "0.00");
    }

    #[test]
    fn the_brief_table_weighs_cpu_per_delivery_latency_loss_and_memory() {
        let brief: Vec<_> = FIGURES.iter().filter_map(|figure| figure.brief).collect();
        assert_eq!(
            brief,
            [
                "deliveries/s",
                "latency p50 ms",
                "latency p99 ms",
                "lost + duplicated + out of order",
                "server CPU µs per delivery",
                "server RSS per connection KiB",
            ]
        );
    }

    #[test]
    fn rows_carry_the_ratio() {
        let mut out = String::new();
        row(&mut out, "s", "f", Some(3.0), Some(1.5), Better::Higher);
        assert_eq!(out, "| s | f | 3 | 1.50 | 2.00 | higher |\n");
        out.clear();
        row(&mut out, "s", "f", Some(3.0), Some(0.0), Better::Lower);
        assert!(out.contains("| - | lower |"));
    }
}
