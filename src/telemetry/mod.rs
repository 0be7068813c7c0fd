//! Logs and traces.
//!
//! **Logs**: human-readable text by default, JSON lines with
//! `log.format = "json"` (the container's setting). The level comes from
//! `RUST_LOG` when set, else `log.level`. While a trace is active, each JSON
//! line carries its `trace_id` and `span_id`.
//!
//! **Traces**: OpenTelemetry spans exported over OTLP (gRPC or HTTP/protobuf)
//! by a batch processor on its own thread, so a request never waits for an
//! export. Only ssehub's own spans (target [`SPAN_TARGET`]) are exported;
//! the HTTP clients of the exporter are never traced into themselves.
//!
//! Where a setting comes from, highest first:
//! - the standard variables: `OTEL_SDK_DISABLED`, `OTEL_TRACES_EXPORTER`
//!   (`otlp` or `none`), `OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT`,
//!   `OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL`, `OTEL_TRACES_SAMPLER[_ARG]`,
//!   `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_EXPORTER_OTLP_HEADERS`,
//!   `OTEL_BSP_*`;
//! - the `telemetry.*` keys of the ssehub configuration.
//!
//! Tracing is off when no endpoint is named. Then no span is created at all:
//! the log layer doesn't take ssehub's spans either, so every span site is a
//! disabled callsite (one relaxed load) and the hot path pays nothing.

mod propagation;
mod settings;

use std::fmt;
use std::time::Duration;

use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::resource::{
    EnvResourceDetector, ResourceDetector, TelemetryResourceDetector,
};
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider,
};
use tracing::{Level, Metadata, Span};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::{EnvFilter, FilterExt, filter_fn};
use tracing_subscriber::fmt::format::{Format, Json, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

pub use propagation::{add_link, set_parent, set_parent_from_headers, trace_context};
pub use settings::{
    LogConfig, LogFormat, OtlpProtocol, TELEMETRY_SAMPLE_RATIO_DEFAULT, TelemetryConfig,
    check_endpoint,
};

use crate::setting::mask_userinfo;

/// The `tracing` target of every span that is exported. Spans of other
/// targets (dependencies) are neither exported nor logged as spans.
pub const SPAN_TARGET: &str = "ssehub::span";

/// How long the exit waits for the last spans to be exported.
const SHUTDOWN_FLUSH_TIMEOUT: Duration = Duration::from_secs(5);
/// Spans the batch processor holds before it drops new ones (the SDK's
/// default is 2,048). A drain ends every stream within `drain.spread`, and
/// each ends two spans (the subscription and its request), so 10,000
/// subscribers close 20,000 spans in seconds; this keeps most of such a
/// burst (~1 KiB a span). `OTEL_BSP_MAX_QUEUE_SIZE` overrides it.
const SPAN_QUEUE_DEFAULT: usize = 16_384;

/// Where traces go, once the configuration and the `OTEL_*` variables are
/// merged; `None` from [`TraceSettings::resolve`] means tracing is off.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceSettings {
    pub protocol: OtlpProtocol,
    /// The endpoint from `telemetry.otlp_endpoint`, when no `OTEL_*`
    /// variable names one (the exporter reads those itself).
    pub config_endpoint: Option<String>,
    /// What the log says: the endpoint in force, credentials masked.
    pub endpoint_shown: String,
    /// `None`: `OTEL_TRACES_SAMPLER` is set and the SDK reads it.
    pub sample_ratio: Option<f64>,
    pub service_name: String,
}

/// A standard variable with a value ssehub can't use.
#[derive(Debug, thiserror::Error)]
#[error("invalid value for `{variable}`: {reason}")]
pub struct TelemetryError {
    pub variable: &'static str,
    pub reason: String,
}

impl TraceSettings {
    /// Merges `config` with the `OTEL_*` variables that `env` returns
    /// (the variables win).
    pub fn resolve(
        config: &TelemetryConfig,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Self>, TelemetryError> {
        let var = |name: &str| env(name).filter(|value| !value.trim().is_empty());
        if var("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
            return Ok(None);
        }
        match var("OTEL_TRACES_EXPORTER").as_deref().map(str::trim) {
            None | Some("otlp") => {}
            Some("none") => return Ok(None),
            Some(other) => {
                return Err(TelemetryError {
                    variable: "OTEL_TRACES_EXPORTER",
                    reason: format!("`{other}` is not supported; use `otlp` or `none`"),
                });
            }
        }
        let env_endpoint = [
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
        ]
        .into_iter()
        .find_map(|name| Some((name, var(name)?)));
        let (config_endpoint, mut endpoint_shown) = match env_endpoint {
            Some((name, value)) => {
                if let Err(reason) = check_endpoint(value.trim()) {
                    return Err(TelemetryError {
                        variable: if name.contains("TRACES") {
                            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
                        } else {
                            "OTEL_EXPORTER_OTLP_ENDPOINT"
                        },
                        reason,
                    });
                }
                (None, value)
            }
            None if config.otlp_endpoint.is_empty() => return Ok(None),
            None => (
                Some(config.otlp_endpoint.clone()),
                config.otlp_endpoint.clone(),
            ),
        };
        mask_userinfo(&mut endpoint_shown);
        let protocol = match [
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ]
        .into_iter()
        .find_map(|name| Some((name, var(name)?)))
        {
            None => config.protocol,
            Some((name, value)) => OtlpProtocol::parse(&value).ok_or_else(|| TelemetryError {
                variable: if name.contains("TRACES") {
                    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
                } else {
                    "OTEL_EXPORTER_OTLP_PROTOCOL"
                },
                reason: format!("`{value}` is not supported; use `http/protobuf` or `grpc`"),
            })?,
        };
        let sample_ratio = var("OTEL_TRACES_SAMPLER")
            .is_none()
            .then_some(config.sample_ratio);
        let service_name = var("OTEL_SERVICE_NAME")
            .or_else(|| {
                var("OTEL_RESOURCE_ATTRIBUTES").and_then(|attributes| {
                    attributes.split(',').find_map(|pair| {
                        let (key, value) = pair.split_once('=')?;
                        (key.trim() == "service.name").then(|| value.trim().to_owned())
                    })
                })
            })
            .unwrap_or_else(|| config.service_name.clone());
        Ok(Some(Self {
            protocol,
            config_endpoint,
            endpoint_shown,
            sample_ratio,
            service_name,
        }))
    }
}

/// Keeps the trace pipeline alive; [`Telemetry::shutdown`] exports what is
/// still buffered. Must be created inside the tokio runtime (the gRPC
/// exporter runs its connection there).
#[derive(Debug, Default)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    pub fn tracing_enabled(&self) -> bool {
        self.provider.is_some()
    }

    /// Exports the spans still buffered and stops the exporter; waits at
    /// most [`SHUTDOWN_FLUSH_TIMEOUT`]. Called after the drain, before exit.
    pub fn shutdown(self) {
        let Some(provider) = self.provider else {
            return;
        };
        if let Err(error) = provider.shutdown_with_timeout(SHUTDOWN_FLUSH_TIMEOUT) {
            tracing::warn!(%error, "could not export the last spans");
        }
    }
}

/// Installs the global subscriber (logs, and traces when `traces` is set).
/// A second call (tests) keeps the first subscriber.
pub fn init(log: &LogConfig, traces: Option<&TraceSettings>) -> Result<Telemetry, TelemetryError> {
    let provider = traces.map(build_provider).transpose()?;
    let mut layers: Vec<Box<dyn Layer<Registry> + Send + Sync>> = Vec::new();
    if let Some(provider) = &provider {
        let layer = tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("ssehub"))
            // Per-span extras that cost an allocation or a clock read on
            // every span and tell an operator nothing here.
            .with_threads(false)
            .with_location(false)
            .with_target(false)
            .with_tracked_inactivity(false)
            // Parents come from tracing's own span stack; attaching an
            // OpenTelemetry context on every poll of an instrumented future
            // would serve no other instrumentation here.
            .with_context_activation(false)
            .with_filter(filter_fn(exported));
        layers.push(Box::new(layer));
    }
    let level = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&log.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // The exported spans are not the log's business: leaving them out keeps
    // them disabled entirely while tracing is off.
    let log_filter = level.and(filter_fn(|metadata| metadata.target() != SPAN_TARGET));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    layers.push(match log.format {
        LogFormat::Text => Box::new(fmt.with_filter(log_filter)),
        LogFormat::Json => Box::new(
            fmt.json()
                .event_format(JsonWithTraceIds(
                    tracing_subscriber::fmt::format().json().flatten_event(true),
                ))
                .with_filter(log_filter),
        ),
    });
    let _ = tracing_subscriber::registry().with(layers).try_init();
    if let Some(traces) = traces {
        tracing::info!(
            endpoint = %traces.endpoint_shown,
            protocol = traces.protocol.as_str(),
            service = %traces.service_name,
            "exporting traces over OTLP"
        );
    }
    Ok(Telemetry { provider })
}

/// What the trace layer takes: ssehub's spans, and warnings and errors
/// logged inside them (they become span events).
fn exported(metadata: &Metadata<'_>) -> bool {
    if metadata.is_span() {
        metadata.target() == SPAN_TARGET
    } else {
        *metadata.level() <= Level::WARN && metadata.target().starts_with("ssehub")
    }
}

fn build_provider(settings: &TraceSettings) -> Result<SdkTracerProvider, TelemetryError> {
    let exporter = match settings.protocol {
        OtlpProtocol::Grpc => {
            let mut builder = opentelemetry_otlp::SpanExporter::builder().with_tonic();
            if let Some(endpoint) = &settings.config_endpoint {
                builder = builder.with_endpoint(endpoint);
            }
            builder.build()
        }
        OtlpProtocol::HttpProtobuf => {
            let mut builder = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary);
            if let Some(endpoint) = &settings.config_endpoint {
                // A given endpoint is used as is; the base URL convention of
                // OTEL_EXPORTER_OTLP_ENDPOINT applies to ours too.
                builder =
                    builder.with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')));
            }
            builder.build()
        }
    }
    .map_err(|error| TelemetryError {
        variable: "OTEL_EXPORTER_OTLP_ENDPOINT",
        reason: error.to_string(),
    })?;
    // Later sources override earlier ones: OTEL_RESOURCE_ATTRIBUTES over
    // ours, and the service name resolved above over everything.
    let resource = Resource::builder_empty()
        .with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ))
        .with_detectors(&[
            Box::new(TelemetryResourceDetector) as Box<dyn ResourceDetector>,
            Box::new(EnvResourceDetector::new()),
        ])
        .with_service_name(settings.service_name.clone());
    let mut batch = BatchConfigBuilder::default();
    if std::env::var_os("OTEL_BSP_MAX_QUEUE_SIZE").is_none() {
        batch = batch.with_max_queue_size(SPAN_QUEUE_DEFAULT);
    }
    let processor = BatchSpanProcessor::builder(exporter)
        .with_batch_config(batch.build())
        .build();
    let mut builder = SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_resource(resource.build());
    if let Some(ratio) = settings.sample_ratio {
        builder = builder.with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            ratio,
        ))));
    }
    Ok(builder.build())
}

/// The ids of the trace the current span belongs to, if it is traced.
fn current_trace_ids() -> Option<(String, String)> {
    let span = Span::current();
    if span.is_disabled() {
        return None;
    }
    let context = span.context();
    let span_ref = context.span();
    let span_context = span_ref.span_context();
    span_context.is_valid().then(|| {
        (
            span_context.trace_id().to_string(),
            span_context.span_id().to_string(),
        )
    })
}

/// tracing-subscriber's JSON lines plus `trace_id` and `span_id` while a
/// trace is active. (tracing-opentelemetry keeps the ids in the span's
/// extensions and offers no log field of its own.)
struct JsonWithTraceIds(Format<Json>);

impl<S, N> FormatEvent<S, N> for JsonWithTraceIds
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> fmt::Result {
        let Some((trace_id, span_id)) = current_trace_ids() else {
            return self.0.format_event(ctx, writer, event);
        };
        let mut line = String::new();
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        // The formatter writes one JSON object and a newline.
        match line.trim_end().strip_suffix('}') {
            Some(object) => writeln!(
                writer,
                "{object},\"trace_id\":\"{trace_id}\",\"span_id\":\"{span_id}\"}}"
            ),
            None => writer.write_str(&line),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn resolve(config: &TelemetryConfig, vars: &[(&str, &str)]) -> Option<TraceSettings> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        TraceSettings::resolve(config, |name| vars.get(name).cloned()).unwrap()
    }

    fn configured() -> TelemetryConfig {
        TelemetryConfig {
            otlp_endpoint: "http://config:4318".into(),
            ..TelemetryConfig::default()
        }
    }

    #[test]
    fn off_without_an_endpoint() {
        assert_eq!(resolve(&TelemetryConfig::default(), &[]), None);
    }

    #[test]
    fn the_config_endpoint_turns_tracing_on() {
        let settings = resolve(&configured(), &[]).unwrap();
        assert_eq!(
            settings.config_endpoint.as_deref(),
            Some("http://config:4318")
        );
        assert_eq!(settings.protocol, OtlpProtocol::HttpProtobuf);
        assert_eq!(settings.sample_ratio, Some(1.0));
        assert_eq!(settings.service_name, "ssehub");
    }

    #[test]
    fn standard_variables_win_over_the_config() {
        let settings = resolve(
            &configured(),
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://user:secret@env:4317"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
                ("OTEL_TRACES_SAMPLER", "always_on"),
                (
                    "OTEL_RESOURCE_ATTRIBUTES",
                    "team=a,service.name=from-attributes",
                ),
            ],
        )
        .unwrap();
        assert_eq!(
            settings.config_endpoint, None,
            "the exporter reads the variable"
        );
        assert_eq!(settings.endpoint_shown, "http://***@env:4317");
        assert_eq!(settings.protocol, OtlpProtocol::Grpc);
        assert_eq!(
            settings.sample_ratio, None,
            "the SDK reads OTEL_TRACES_SAMPLER"
        );
        assert_eq!(settings.service_name, "from-attributes");
        let settings = resolve(
            &configured(),
            &[
                ("OTEL_SERVICE_NAME", "named"),
                ("OTEL_RESOURCE_ATTRIBUTES", "service.name=other"),
            ],
        )
        .unwrap();
        assert_eq!(settings.service_name, "named");
    }

    #[test]
    fn the_standard_switches_turn_tracing_off() {
        assert_eq!(
            resolve(&configured(), &[("OTEL_SDK_DISABLED", "true")]),
            None
        );
        assert_eq!(
            resolve(&configured(), &[("OTEL_TRACES_EXPORTER", "none")]),
            None
        );
    }

    #[test]
    fn unsupported_values_name_their_variable() {
        let error = TraceSettings::resolve(&configured(), |name| {
            (name == "OTEL_EXPORTER_OTLP_PROTOCOL").then(|| "http/json".to_owned())
        })
        .unwrap_err();
        assert_eq!(error.variable, "OTEL_EXPORTER_OTLP_PROTOCOL");
        let error = TraceSettings::resolve(&configured(), |name| {
            (name == "OTEL_TRACES_EXPORTER").then(|| "zipkin".to_owned())
        })
        .unwrap_err();
        assert_eq!(error.variable, "OTEL_TRACES_EXPORTER");
    }
}
