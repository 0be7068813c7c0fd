//! Telemetry's settings: the log (`log.*`) and the OTLP trace pipeline
//! (`telemetry.*`), with their check.

use serde::{Deserialize, Serialize};

use crate::setting::InvalidSetting;

/// Share of new traces kept when no `OTEL_TRACES_SAMPLER` is set: all of
/// them. Tracing is off until an OTLP endpoint is named, and whoever names one
/// usually wants to see every publish; lower it for busy hubs.
pub const TELEMETRY_SAMPLE_RATIO_DEFAULT: f64 = 1.0;

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A `tracing` filter (`info`, `ssehub=debug,poem=info`); `RUST_LOG` wins.
    pub level: String,
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".to_owned(),
            format: LogFormat::Text,
        }
    }
}

/// How traces reach an OpenTelemetry collector. The standard `OTEL_*`
/// variables win over these keys (see the telemetry module), so a platform
/// that injects them (the OpenTelemetry Operator, a sidecar) needs no ssehub
/// setting at all.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// Base URL of the OTLP receiver (`http://collector:4318` for
    /// `http/protobuf`, `http://collector:4317` for `grpc`). Empty: no traces,
    /// unless `OTEL_EXPORTER_OTLP_ENDPOINT` names one.
    pub otlp_endpoint: String,
    pub protocol: OtlpProtocol,
    /// Share of new traces to keep (0.0–1.0); a publish that arrives with a
    /// `traceparent` follows its caller's sampling decision instead.
    pub sample_ratio: f64,
    /// `service.name` of the spans.
    pub service_name: String,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
pub enum OtlpProtocol {
    /// OTLP over HTTP/1.1 with protobuf bodies (the OpenTelemetry default).
    #[default]
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
    /// OTLP over gRPC.
    #[serde(rename = "grpc")]
    Grpc,
}

impl OtlpProtocol {
    /// The spelling of `OTEL_EXPORTER_OTLP_PROTOCOL`.
    pub fn parse(text: &str) -> Option<Self> {
        match text.trim() {
            "http/protobuf" => Some(Self::HttpProtobuf),
            "grpc" => Some(Self::Grpc),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::HttpProtobuf => "http/protobuf",
            Self::Grpc => "grpc",
        }
    }
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            otlp_endpoint: String::new(),
            protocol: OtlpProtocol::default(),
            sample_ratio: TELEMETRY_SAMPLE_RATIO_DEFAULT,
            service_name: "ssehub".to_owned(),
        }
    }
}

impl TelemetryConfig {
    /// Checks what serde can't.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        if !(0.0..=1.0).contains(&self.sample_ratio) {
            return Err(InvalidSetting::new(
                "telemetry.sample_ratio",
                "must be between 0.0 (no new traces) and 1.0 (every trace)",
            ));
        }
        if let Err(reason) = check_endpoint(&self.otlp_endpoint) {
            return Err(InvalidSetting::new("telemetry.otlp_endpoint", reason));
        }
        if self.service_name.trim().is_empty() {
            return Err(InvalidSetting::new(
                "telemetry.service_name",
                "must not be empty",
            ));
        }
        Ok(())
    }
}

/// Checks `telemetry.otlp_endpoint` (empty is fine: tracing off).
pub fn check_endpoint(endpoint: &str) -> Result<(), String> {
    if endpoint.is_empty() || endpoint.starts_with("http://") {
        return Ok(());
    }
    if endpoint.starts_with("https://") {
        return Err(
            "https is not built in: send to a collector on the pod network or a sidecar over http://"
                .to_owned(),
        );
    }
    Err("must be a URL such as http://otel-collector:4318".to_owned())
}
