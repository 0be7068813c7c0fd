//! The one typed configuration of ssehub, layered by figment:
//! built-in defaults < TOML file (`--config` / `SSEHUB_CONFIG`) < `SSEHUB_*`
//! environment variables (nested keys joined with `__`).
//!
//! Everything is validated here, before any port is bound, so a bad value
//! stops the process with a message that names the key.

mod describe;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use describe::describe_figment_error;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

pub use crate::auth::{
    AUTH_COOKIE_DEFAULT, AuthConfig, AuthConfigError, AuthSettings, JWKS_REFETCH_COOLDOWN_DEFAULT,
    JWKS_REFRESH_DEFAULT, JWT_LEEWAY_DEFAULT, JWT_SECRET_MIN_BYTES, JwtConfig, PublishCount,
    RateConfig, RateLimitsConfig, SubscribeAuth,
};
pub use crate::backplane::{
    BackplaneConfig, BackplaneKind, IDEMPOTENCY_KEYS_DEFAULT, IDEMPOTENCY_WINDOW_DEFAULT,
    REDIS_COMMAND_TIMEOUT_DEFAULT, REDIS_CONNECT_TIMEOUT_DEFAULT, REDIS_KEY_PREFIX_DEFAULT,
    RedisConfig,
};
pub use crate::http::{
    ConsoleConfig, CorsConfig, EventStreamConfig, MercureConfig, MercureJwtConfig, MercureSettings,
};
pub use crate::server::ListenAddress;
use crate::setting::InvalidSetting;
pub use crate::setting::mask_userinfo;
pub use crate::shutdown::{
    DRAIN_DELAY_DEFAULT, DRAIN_SPREAD_DEFAULT, DRAIN_TIMEOUT_DEFAULT, DrainConfig,
};
pub use crate::telemetry::{
    LogConfig, LogFormat, OtlpProtocol, TELEMETRY_SAMPLE_RATIO_DEFAULT, TelemetryConfig,
};

/// Heartbeat default: well below nginx's 60 s `proxy_read_timeout` and the
/// 30–60 s idle timeouts of common cloud load balancers.
pub const HEARTBEAT_DEFAULT: Duration = Duration::from_secs(15);
/// Events kept per topic for `Last-Event-ID` resume (Mercure and Centrifugo
/// default to a few hundred to a few thousand).
pub const HISTORY_SIZE_DEFAULT: usize = 1_000;
/// How long an event stays resumable: long enough for a laptop lid close.
pub const HISTORY_TTL_DEFAULT: Duration = Duration::from_secs(3_600);
/// Topics with retained history, hub-wide (one process, or one Redis).
/// Beyond it the topic published to least recently is evicted whole. A
/// topic with one small event costs about 0.5 KiB, so 100,000 of them are
/// ~50 MiB; that many topics with recent events covers per-user topics of a
/// large audience, while a flood of fresh topic names can't outgrow it.
pub const HISTORY_MAX_TOPICS_DEFAULT: usize = 100_000;
/// Bytes all history may hold, hub-wide (events as encoded, plus their
/// bookkeeping). 256 MiB fits a pod with a 512 MiB limit next to 10,000
/// streams, and holds the default per-topic history (1,000 events) of a
/// few hundred busy topics with 1 KiB events; beyond it the oldest events
/// of the least recently published topics are evicted.
pub const HISTORY_MAX_BYTES_DEFAULT: usize = 256 * 1024 * 1024;
/// `retry:` hint on connect; browsers default to about 3 s as well.
pub const STREAM_RETRY_DEFAULT: Duration = Duration::from_secs(3);
/// Events a subscriber may fall behind the live feed of a topic before it
/// must catch up from history. Only bursts need to fit: history is the real
/// bound, so this stays small to keep per-topic memory low (64 slots ≈ 3 KiB).
pub const STREAM_QUEUE_DEFAULT: usize = 64;
/// How long a stream's socket may accept nothing (its client stopped
/// reading, its TCP window is full) before the hub ends the stream: four
/// heartbeat intervals, so a client that merely pauses (a busy tab, a
/// mobile one between cells) is not cut, while a dead one frees its slot
/// within a minute. (nginx's `send_timeout`, the same idea, defaults to 60 s.)
pub const STREAM_WRITE_TIMEOUT_DEFAULT: Duration = Duration::from_secs(60);
/// How long after a write a stream waits before its next one, gathering
/// what arrives meanwhile into it. Off by default: every event goes out as
/// soon as the stream can take it. A few milliseconds cut the syscalls of
/// busy streams (a write per window, not per event) at that much latency;
/// a stream quiet for longer than the window writes at once.
pub const STREAM_COALESCE_DEFAULT: Duration = Duration::ZERO;
/// Most writer shards (`stream.shards`) accepted.
pub const STREAM_SHARDS_MAX: usize = 256;

/// Writer shards: one per two cores the process may use (its cgroup's CPU
/// quota counts), at least one. Each is a thread that writes its streams'
/// events beside the runtime's workers (one per core), which serve the
/// publishes: with a shard per core as well, the server's busy threads
/// outnumber the cores two to one, and a broadcast to 10,000 streams on two
/// cores took 279 ms at p99 instead of 199 with one shard (the CPU per
/// delivery was 1.1 times as high too).
pub fn stream_shards_default() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    (cores / 2).max(1)
}

/// Longest `stream.coalesce` accepted.
pub const STREAM_COALESCE_MAX: Duration = Duration::from_secs(1);
/// Time a client has to send a complete request head (from the accept, or
/// from the first byte of a later request on the connection): nginx's
/// `client_header_timeout` is 60 s; 10 s is ample for any real client and
/// frees slowloris connections six times sooner.
pub const HEADER_READ_TIMEOUT_DEFAULT: Duration = Duration::from_secs(10);
/// How long a keep-alive connection may sit idle between requests before
/// the hub closes it. Longer than nginx's upstream `keepalive_timeout`
/// (60 s by default, 60 s in nginx/): the proxy must always be the side that
/// drops an idle connection, or it may send a request onto one the hub is
/// closing at that moment and answer its client 502.
pub const KEEP_ALIVE_TIMEOUT_DEFAULT: Duration = Duration::from_secs(75);
/// Open streams per process; each costs a few KiB and one file descriptor.
pub const MAX_SUBSCRIBERS_DEFAULT: usize = 10_000;
/// Topics one connection may follow; browsers allow ~6 connections per
/// origin, so multiplexing topics is the norm, but unbounded lists are abuse.
pub const MAX_TOPICS_PER_SUBSCRIPTION_DEFAULT: usize = 16;
/// Largest `data` of one event, in bytes (as sent on the wire).
pub const MAX_EVENT_BYTES_DEFAULT: usize = 64 * 1024;
/// Largest publish request body in bytes (a batch holds many events).
pub const MAX_BODY_BYTES_DEFAULT: usize = 1024 * 1024;
/// Events one publish request may carry. With Redis a batch is one
/// server-side script, and Redis serves nobody else while it runs: measured
/// at 10–20 µs per event (Redis 7, one core), 500 events hold Redis for
/// 5–12 ms, about Redis's own 10 ms `slowlog` threshold, where a 1 MiB body
/// of small events (~25,000) held it for 0.3–0.7 s.
pub const MAX_EVENTS_PER_REQUEST_DEFAULT: usize = 500;
/// How long a publish body may take to arrive in full. A 1 MiB body needs
/// under a second on any link a publisher should use; a body still arriving
/// after 10 s is trickled (slowloris on the body) or stalled, and holds a
/// connection and a partly filled buffer meanwhile.
pub const BODY_READ_TIMEOUT_DEFAULT: Duration = Duration::from_secs(10);
/// Bounds of `limits.idempotency_window`: Redis keeps records to the
/// millisecond but a window under a second covers no retry; over a day,
/// records of a busy hub would outweigh its history.
const IDEMPOTENCY_WINDOW_MIN: Duration = Duration::from_secs(1);
const IDEMPOTENCY_WINDOW_MAX: Duration = Duration::from_secs(24 * 60 * 60);

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address the HTTP server binds to.
    pub listen: ListenAddress,
    pub heartbeat: HeartbeatConfig,
    pub history: HistoryConfig,
    /// Every event stream's settings (see [`StreamConfig`]).
    pub stream: StreamConfig,
    pub limits: LimitsConfig,
    pub cors: CorsConfig,
    pub drain: DrainConfig,
    pub log: LogConfig,
    pub backplane: BackplaneConfig,
    pub auth: AuthConfig,
    /// The tutorial routes' topic only (see [`EventStreamConfig`]); the
    /// settings of every stream are `stream`.
    pub event_stream: EventStreamConfig,
    pub telemetry: TelemetryConfig,
    pub rate_limits: RateLimitsConfig,
    pub console: ConsoleConfig,
    /// The Mercure protocol at `/.well-known/mercure` (off by default).
    pub mercure: MercureConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HeartbeatConfig {
    /// A comment line is sent after this much silence on a stream; 0 disables
    /// (read it with [`HeartbeatConfig::interval()`]).
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HistoryConfig {
    /// Events kept per topic.
    pub size: usize,
    /// Age after which an event is no longer resumable.
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
    /// See [`HISTORY_MAX_TOPICS_DEFAULT`].
    pub max_topics: usize,
    /// See [`HISTORY_MAX_BYTES_DEFAULT`].
    pub max_bytes: usize,
}

/// `stream.*`: how every event stream the hub serves behaves, the
/// subscribe route's (`GET /v1/events`) and the tutorial's
/// (`GET /event-stream`) alike. Not to be confused with `event_stream.*`
/// ([`EventStreamConfig`]), which only names the tutorial routes' topic.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StreamConfig {
    /// Reconnection delay suggested to clients (`retry:` field).
    #[serde(with = "humantime_serde")]
    pub retry: Duration,
    /// Per-topic live queue length (events), see [`STREAM_QUEUE_DEFAULT`].
    pub queue: usize,
    /// See [`STREAM_WRITE_TIMEOUT_DEFAULT`]; `0s` never ends a stalled stream.
    #[serde(with = "humantime_serde")]
    pub write_timeout: Duration,
    /// See [`STREAM_COALESCE_DEFAULT`]; `0s` writes every event at once.
    #[serde(with = "humantime_serde")]
    pub coalesce: Duration,
    /// Threads that hold idle live streams without a task each; see
    /// [`stream_shards_default`]. `0`: every stream keeps its own task.
    pub shards: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    pub max_subscribers: usize,
    pub max_topics_per_subscription: usize,
    pub max_event_bytes: usize,
    pub max_body_bytes: usize,
    /// See [`MAX_EVENTS_PER_REQUEST_DEFAULT`]; 413 beyond.
    pub max_events_per_request: usize,
    /// See [`BODY_READ_TIMEOUT_DEFAULT`]; 408 beyond.
    #[serde(with = "humantime_serde")]
    pub body_read_timeout: Duration,
    /// See [`HEADER_READ_TIMEOUT_DEFAULT`].
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// See [`KEEP_ALIVE_TIMEOUT_DEFAULT`].
    #[serde(with = "humantime_serde")]
    pub keep_alive_timeout: Duration,
    /// How long a publish's `Idempotency-Key` is remembered; see
    /// [`IDEMPOTENCY_WINDOW_DEFAULT`].
    #[serde(with = "humantime_serde")]
    pub idempotency_window: Duration,
    /// Most keys remembered at once by the memory backplane; see
    /// [`IDEMPOTENCY_KEYS_DEFAULT`].
    pub idempotency_keys: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)).into(),
            heartbeat: HeartbeatConfig::default(),
            history: HistoryConfig::default(),
            stream: StreamConfig::default(),
            limits: LimitsConfig::default(),
            cors: CorsConfig::default(),
            drain: DrainConfig::default(),
            log: LogConfig::default(),
            backplane: BackplaneConfig::default(),
            auth: AuthConfig::default(),
            event_stream: EventStreamConfig::default(),
            telemetry: TelemetryConfig::default(),
            rate_limits: RateLimitsConfig::default(),
            console: ConsoleConfig::default(),
            mercure: MercureConfig::default(),
        }
    }
}

impl Default for HeartbeatConfig {
    fn default() -> Self {
        Self {
            interval: HEARTBEAT_DEFAULT,
        }
    }
}

impl Default for HistoryConfig {
    fn default() -> Self {
        Self {
            size: HISTORY_SIZE_DEFAULT,
            ttl: HISTORY_TTL_DEFAULT,
            max_topics: HISTORY_MAX_TOPICS_DEFAULT,
            max_bytes: HISTORY_MAX_BYTES_DEFAULT,
        }
    }
}

impl Default for StreamConfig {
    fn default() -> Self {
        Self {
            retry: STREAM_RETRY_DEFAULT,
            queue: STREAM_QUEUE_DEFAULT,
            write_timeout: STREAM_WRITE_TIMEOUT_DEFAULT,
            coalesce: STREAM_COALESCE_DEFAULT,
            shards: stream_shards_default(),
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_subscribers: MAX_SUBSCRIBERS_DEFAULT,
            max_topics_per_subscription: MAX_TOPICS_PER_SUBSCRIPTION_DEFAULT,
            max_event_bytes: MAX_EVENT_BYTES_DEFAULT,
            max_body_bytes: MAX_BODY_BYTES_DEFAULT,
            max_events_per_request: MAX_EVENTS_PER_REQUEST_DEFAULT,
            body_read_timeout: BODY_READ_TIMEOUT_DEFAULT,
            header_read_timeout: HEADER_READ_TIMEOUT_DEFAULT,
            keep_alive_timeout: KEEP_ALIVE_TIMEOUT_DEFAULT,
            idempotency_window: IDEMPOTENCY_WINDOW_DEFAULT,
            idempotency_keys: IDEMPOTENCY_KEYS_DEFAULT,
        }
    }
}

/// **0 means off.** A duration key whose `0s` turns its feature off
/// (`heartbeat.interval`, `stream.write_timeout`, `stream.coalesce`) is
/// read through the getter beside it, which gives `None` for off. The rule
/// is written here once: nothing else compares those fields with zero.
fn off_if_zero(value: Duration) -> Option<Duration> {
    (!value.is_zero()).then_some(value)
}

impl HeartbeatConfig {
    /// Silence after which a stream gets a heartbeat; `None`: never
    /// ([`off_if_zero`]).
    pub fn interval(&self) -> Option<Duration> {
        off_if_zero(self.interval)
    }
}

impl StreamConfig {
    /// How long a stream's socket may accept nothing before the stream
    /// ends; `None`: a stalled stream is never ended ([`off_if_zero`]).
    pub fn write_timeout(&self) -> Option<Duration> {
        off_if_zero(self.write_timeout)
    }

    /// The window a stream gathers events in before its next write;
    /// `None`: every event is written at once ([`off_if_zero`]).
    pub fn coalesce(&self) -> Option<Duration> {
        off_if_zero(self.coalesce)
    }
}

/// Why the configuration could not be used; the message names the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration file {0} does not exist")]
    MissingFile(PathBuf),
    #[error("{}", describe_figment_error(.0))]
    Parse(Box<figment::Error>),
    #[error("invalid value for `{key}`: {reason}")]
    Invalid { key: &'static str, reason: String },
    #[error("cannot read `auth.publish_keys_file` {path}: {source}")]
    KeysFile {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl From<AuthConfigError> for ConfigError {
    fn from(error: AuthConfigError) -> Self {
        match error {
            AuthConfigError::Invalid(invalid) => invalid.into(),
            AuthConfigError::KeysFile { path, source } => Self::KeysFile { path, source },
        }
    }
}

impl From<InvalidSetting> for ConfigError {
    fn from(InvalidSetting { key, reason }: InvalidSetting) -> Self {
        Self::Invalid { key, reason }
    }
}

impl Config {
    /// Loads defaults < `file` (when given) < `SSEHUB_*` environment, then
    /// validates. An explicitly named file that does not exist is an error
    /// (figment's `Toml::file` would silently skip it).
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_from(file, Env::prefixed("SSEHUB_").split("__"))
    }

    fn load_from(file: Option<&Path>, env: Env) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError::MissingFile(path.to_owned()));
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        // `SSEHUB_CONFIG` names the file; it is not a key of the config.
        let env = env.ignore(&["config"]);
        let config: Config = figment
            .merge(env)
            .extract()
            .map_err(|error| ConfigError::Parse(Box::new(error)))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks the relations serde can't express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        fn invalid(key: &'static str, reason: impl Into<String>) -> ConfigError {
            ConfigError::Invalid {
                key,
                reason: reason.into(),
            }
        }
        if self.history.size == 0 {
            return Err(invalid(
                "history.size",
                "must be at least 1 (resume needs history)",
            ));
        }
        if self.history.ttl.is_zero() {
            return Err(invalid("history.ttl", "must be longer than 0s"));
        }
        if self.history.max_topics == 0 {
            return Err(invalid(
                "history.max_topics",
                "is 0; must be a number of topics of at least 1, e.g. 100000",
            ));
        }
        if self.history.max_bytes < self.limits.max_event_bytes {
            return Err(invalid(
                "history.max_bytes",
                format!(
                    "is {}; must be a number of bytes of at least limits.max_event_bytes ({}), \
                     so that an event fits, e.g. 268435456 (256 MiB)",
                    self.history.max_bytes, self.limits.max_event_bytes
                ),
            ));
        }
        if self.stream.queue == 0 {
            return Err(invalid("stream.queue", "must be at least 1"));
        }
        if self.stream.retry.is_zero() {
            return Err(invalid(
                "stream.retry",
                "must be longer than 0s (clients would reconnect in a tight loop)",
            ));
        }
        if self.stream.coalesce > STREAM_COALESCE_MAX {
            return Err(invalid(
                "stream.coalesce",
                "must be at most 1s (it delays every event of a busy stream by up to that much)",
            ));
        }
        if self.stream.shards > STREAM_SHARDS_MAX {
            return Err(invalid(
                "stream.shards",
                "must be at most 256 (one per two cores is the default; 0 turns the shards off)",
            ));
        }
        if self.limits.max_subscribers == 0 {
            return Err(invalid("limits.max_subscribers", "must be at least 1"));
        }
        if self.limits.max_topics_per_subscription == 0 {
            return Err(invalid(
                "limits.max_topics_per_subscription",
                "must be at least 1",
            ));
        }
        if self.limits.max_event_bytes == 0 {
            return Err(invalid("limits.max_event_bytes", "must be at least 1"));
        }
        if self.limits.max_events_per_request == 0 {
            return Err(invalid(
                "limits.max_events_per_request",
                "must be at least 1",
            ));
        }
        if self.limits.body_read_timeout.is_zero() {
            return Err(invalid("limits.body_read_timeout", "must be above zero"));
        }
        if self.limits.max_body_bytes < self.limits.max_event_bytes {
            return Err(invalid(
                "limits.max_body_bytes",
                format!(
                    "must be at least limits.max_event_bytes ({})",
                    self.limits.max_event_bytes
                ),
            ));
        }
        if self.limits.header_read_timeout.is_zero() {
            return Err(invalid(
                "limits.header_read_timeout",
                "must be longer than 0s (no request could arrive)",
            ));
        }
        if self.limits.keep_alive_timeout.is_zero() {
            return Err(invalid(
                "limits.keep_alive_timeout",
                "must be longer than 0s (a duration such as 75s; keep it above the proxy's upstream keepalive_timeout)",
            ));
        }
        if self.limits.idempotency_window < IDEMPOTENCY_WINDOW_MIN
            || self.limits.idempotency_window > IDEMPOTENCY_WINDOW_MAX
        {
            return Err(invalid(
                "limits.idempotency_window",
                format!(
                    "is {}; must be a duration from 1s to 24h, e.g. 5m",
                    humantime::format_duration(self.limits.idempotency_window)
                ),
            ));
        }
        if self.limits.idempotency_keys == 0 {
            return Err(invalid(
                "limits.idempotency_keys",
                "is 0; must be a number of keys of at least 1, e.g. 100000",
            ));
        }
        self.drain.validate()?;
        crate::http::validate_config(&self.cors, &self.event_stream)?;
        self.telemetry.validate()?;
        self.auth_settings()?;
        self.mercure_settings()?;
        if self.backplane.kind == BackplaneKind::Redis {
            self.backplane.redis.validate()?;
        }
        Ok(())
    }

    /// Auth's settings (`auth.*`, `rate_limits.*`) checked, and parsed
    /// once on the way: what the authenticator is built from. `validate`
    /// checks them through here too; they are not kept in `Config`, which
    /// stays plain data that callers may change before building.
    pub fn auth_settings(&self) -> Result<AuthSettings, ConfigError> {
        Ok(crate::auth::validate_config(&self.auth, &self.rate_limits)?)
    }

    /// The Mercure routes' settings (`mercure.*`) checked and their keys
    /// parsed; `None` while `mercure.enabled` is off.
    pub fn mercure_settings(&self) -> Result<Option<MercureSettings>, ConfigError> {
        Ok(crate::http::validate_mercure_config(&self.mercure)?)
    }

    /// The merged configuration as TOML with secrets masked.
    pub fn to_masked_toml(&self) -> String {
        let mut shown = self.clone();
        for key in shown
            .auth
            .publish_keys
            .iter_mut()
            .chain(shown.auth.metrics_keys.iter_mut())
            .chain(shown.auth.jwt.secret.iter_mut())
            .chain(shown.mercure.publisher_jwt.key.iter_mut())
            .chain(shown.mercure.subscriber_jwt.key.iter_mut())
        {
            *key = "***".to_owned();
        }
        if let Some(jwks) = shown.auth.jwt.jwks.as_mut().filter(|j| j.contains("://")) {
            mask_userinfo(jwks);
        }
        mask_userinfo(&mut shown.backplane.redis.url);
        if !shown.backplane.redis.sentinel.password.is_empty() {
            shown.backplane.redis.sentinel.password = "***".to_owned();
        }
        mask_userinfo(&mut shown.telemetry.otlp_endpoint);
        toml::to_string_pretty(&shown).unwrap_or_else(|error| format!("# cannot render: {error}"))
    }
}

#[cfg(test)]
mod tests;
