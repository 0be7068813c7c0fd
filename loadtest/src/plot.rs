//! SVG line charts: latency over the run's seconds, or (saturate) latency
//! against the publish rate.

use crate::report::{RunReport, SaturateReport};
use anyhow::{Result, anyhow};
use plotters::prelude::*;
use std::path::Path;

const SIZE_PIXELS: (u32, u32) = (960, 540);

struct Series {
    name: &'static str,
    color: RGBColor,
    points: Vec<(f64, f64)>,
}

/// p50, p99 and max latency per second of the publish schedule.
pub fn latency_over_time(report: &RunReport, path: &Path) -> Result<()> {
    let point = |value: fn(&crate::report::TimelinePoint) -> f64| {
        report
            .timeline
            .iter()
            .map(|p| (p.second as f64, value(p)))
            .collect()
    };
    let title = format!(
        "{} -> {}: latency per second of schedule ({} subscribers)",
        report.scenario, report.target, report.subscribers
    );
    draw(
        path,
        &title,
        "seconds since first publish",
        &[
            Series {
                name: "p50",
                color: BLUE,
                points: point(|p| p.p50_ms),
            },
            Series {
                name: "p99",
                color: RED,
                points: point(|p| p.p99_ms),
            },
            Series {
                name: "max",
                color: BLACK,
                points: point(|p| p.max_ms),
            },
        ],
    )
}

/// p99 latency of each saturate step against its rate.
pub fn latency_against_rate(report: &SaturateReport, path: &Path) -> Result<()> {
    let mut points: Vec<(f64, f64)> = report
        .steps
        .iter()
        .map(|s| (s.rate_per_second, s.p99_ms))
        .collect();
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    let title = format!(
        "{} -> {}: p99 latency by publish rate (highest clean {:.0}/s)",
        report.scenario, report.target, report.highest_clean_rate_per_second
    );
    draw(
        path,
        &title,
        "publishes per second",
        &[Series {
            name: "p99",
            color: RED,
            points,
        }],
    )
}

fn draw(path: &Path, title: &str, x_label: &str, series: &[Series]) -> Result<()> {
    let all = series.iter().flat_map(|s| s.points.iter());
    let x_max = all.clone().map(|p| p.0).fold(1.0, f64::max);
    let y_max = all.map(|p| p.1).fold(1.0, f64::max) * 1.1;
    let root = SVGBackend::new(path, SIZE_PIXELS).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)
        .map_err(|e| anyhow!("{e}"))?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc("latency (ms)")
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    for line in series {
        let color = line.color;
        chart
            .draw_series(LineSeries::new(
                line.points.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err(|e| anyhow!("{e}"))?
            .label(line.name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    root.present()
        .map_err(|e| anyhow!("writing {}: {e}", path.display()))?;
    Ok(())
}
