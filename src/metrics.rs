//! The counters, gauges and histograms behind `GET /metrics`, named the
//! Prometheus way (`ssehub_` prefix, `_total` counters, units in names).
//!
//! The families themselves belong to the parts that count them
//! (`hub::metrics`, `auth::metrics`, `backplane::metrics`); this module holds
//! what they share: the registry, the buckets, labelled families, the build
//! family and the exposition. It imports nothing of ours.
//!
//! Hot-path rule: nothing here takes a lock or allocates per delivery. Every
//! labelled series is created once, with its family, and its handle kept, so
//! recording is one atomic add; deliveries and bytes are added once per written batch,
//! not per event per subscriber. Histograms (a mutex inside) are only
//! observed per publish. Gauges that mirror hub state (subscribers, phase)
//! are read when scraped, so they cost nothing in between.
//!
//! Topic names never become label values: the number of topics is unbounded.

use std::fmt::Write as _;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::info::Info;
pub use prometheus_client::registry::{Registry, Unit};
use strum::VariantArray;

/// One label, e.g. `reason="client_gone"`; values are always from a fixed list.
pub type Label = [(&'static str, &'static str); 1];

/// The content type of the classic Prometheus text format.
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
/// The content type of the OpenMetrics text format.
pub const OPENMETRICS_TEXT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Publish request duration buckets, seconds: a memory publish takes well
/// under a millisecond, one through Redis a few; seconds mean trouble.
pub const PUBLISH_DURATION_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Fan-out latency buckets, seconds: tens of microseconds in one process, a
/// Redis round trip (about a millisecond) across replicas.
pub const FANOUT_LATENCY_BUCKETS: [f64; 16] = [
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 0.5, 1.0,
];

/// Registers a family with one label whose values are the variants of an
/// enum, and returns a handle per variant, indexed by `variant as usize`.
pub fn labelled<T, const N: usize>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    label: &'static str,
) -> [Counter; N]
where
    T: VariantArray + Copy + Into<&'static str>,
{
    assert_eq!(T::VARIANTS.len(), N, "one counter per variant of {name}");
    let family = Family::<Label, Counter>::default();
    let handles = std::array::from_fn(|i| {
        family
            .get_or_create(&[(label, T::VARIANTS[i].into())])
            .clone()
    });
    registry.register(name, help, family);
    handles
}

/// An empty registry whose families are named `ssehub_…`.
pub fn registry() -> Registry {
    Registry::with_prefix("ssehub")
}

/// The `build` family, registered last.
pub fn register_build(registry: &mut Registry) {
    registry.register(
        "build",
        "The running ssehub build",
        Info::new([("version", env!("CARGO_PKG_VERSION"))]),
    );
}

/// The exposition, OpenMetrics or classic Prometheus text.
pub fn render(registry: &Registry, openmetrics: bool) -> String {
    let mut text = String::with_capacity(8 * 1024);
    // Writing into a String can't fail.
    let _ = encode(&mut text, registry);
    if openmetrics {
        text
    } else {
        openmetrics_to_prometheus(&text)
    }
}

/// Rewrites prometheus-client's OpenMetrics text as the classic Prometheus
/// text format (0.0.4), for scrapers that don't ask for OpenMetrics: the
/// samples are the same; only the metadata differs. A counter family is
/// named with its `_total` suffix, an info family becomes a gauge named
/// `…_info`, and `# UNIT` and `# EOF` go (0.0.4 has neither).
fn openmetrics_to_prometheus(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    // HELP comes before TYPE; hold it until the TYPE says how to name it.
    let mut help: Option<(&str, &str)> = None;
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            help = rest.split_once(' ').or(Some((rest, "")));
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            let (name, kind) = match kind {
                "counter" => (format!("{name}_total"), "counter"),
                "info" => (format!("{name}_info"), "gauge"),
                "stateset" | "gaugehistogram" | "unknown" => (name.to_owned(), "untyped"),
                other => (name.to_owned(), other),
            };
            if let Some((_, text)) = help.take() {
                let _ = writeln!(out, "# HELP {name} {text}");
            }
            let _ = writeln!(out, "# TYPE {name} {kind}");
            continue;
        }
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}
