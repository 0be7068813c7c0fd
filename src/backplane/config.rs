//! The backplane's settings (`backplane.*`) and their check.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::setting::{InvalidSetting, mask_userinfo};

/// How long to wait for a TCP (and TLS) connection to Redis and its
/// handshake. A hub that can't connect stays not ready and tries again.
pub const REDIS_CONNECT_TIMEOUT_DEFAULT: Duration = Duration::from_secs(3);
/// How long a Redis command may take before it counts as failed: a publish
/// then answers 503. A loaded Redis answers in about a millisecond; a whole
/// second means it is hung (or swapping), not busy.
pub const REDIS_COMMAND_TIMEOUT_DEFAULT: Duration = Duration::from_secs(1);
/// Prefix of every key and channel ssehub uses, so several hubs (or other
/// applications) can share one Redis.
pub const REDIS_KEY_PREFIX_DEFAULT: &str = "ssehub:";
/// How long a publish waits for `backplane.redis.replicas_ack` replicas to
/// confirm it (`WAIT`) before answering 503. On one network a replica
/// confirms within a millisecond; a second means it is gone or far behind,
/// and a publisher should not hang longer than a command timeout for it.
pub const REDIS_REPLICAS_ACK_TIMEOUT_DEFAULT: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum BackplaneKind {
    /// One process; ids and history in memory.
    #[default]
    Memory,
    /// Several replicas sharing ids, history and events through Redis.
    Redis,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct BackplaneConfig {
    pub kind: BackplaneKind,
    pub redis: RedisConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port/db`, or `rediss://` for TLS; may
    /// carry a password, so it is masked in output and logs.
    pub url: String,
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub command_timeout: Duration,
    /// Prefix of every key and the pub/sub channel.
    pub key_prefix: String,
    /// Replicas that must hold a publish before it is answered 2xx (Redis
    /// `WAIT`); 0 answers once the master has it.
    pub replicas_ack: u32,
    #[serde(with = "humantime_serde")]
    pub replicas_ack_timeout: Duration,
    /// Find the master through Redis Sentinel (empty: `url` names Redis).
    pub sentinel: SentinelConfig,
}

/// `backplane.redis.sentinel.*`: the master is found through these
/// sentinels. The data nodes' TLS, user, password and database come from
/// `backplane.redis.url`, whose host is then the master's name.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct SentinelConfig {
    /// The name the sentinels monitor the master under (`sentinel monitor <name> ...`).
    pub master_name: String,
    /// `host:port` of each sentinel; any one that answers is enough.
    pub addresses: Vec<String>,
    /// The sentinels' own user (ACL) and password (`requirepass` in
    /// sentinel.conf), if they have one; masked in output.
    pub username: String,
    pub password: String,
}

impl SentinelConfig {
    /// Whether the master is found through sentinels.
    pub fn is_enabled(&self) -> bool {
        !self.addresses.is_empty() || !self.master_name.is_empty()
    }
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            connect_timeout: REDIS_CONNECT_TIMEOUT_DEFAULT,
            command_timeout: REDIS_COMMAND_TIMEOUT_DEFAULT,
            key_prefix: REDIS_KEY_PREFIX_DEFAULT.to_owned(),
            replicas_ack: 0,
            replicas_ack_timeout: REDIS_REPLICAS_ACK_TIMEOUT_DEFAULT,
            sentinel: SentinelConfig::default(),
        }
    }
}

impl RedisConfig {
    /// Checks what can be checked without connecting.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        fn invalid(key: &'static str, reason: impl Into<String>) -> InvalidSetting {
            InvalidSetting::new(key, reason)
        }
        self.sentinel.validate()?;
        if self.url.is_empty() && !self.sentinel.is_enabled() {
            return Err(invalid(
                "backplane.redis.url",
                "is required with backplane.kind = \"redis\", e.g. redis://redis:6379/0 \
                 (or set backplane.redis.sentinel.*)",
            ));
        }
        if self.url.is_empty() {
            // Sentinel without a URL: plain TCP, no password, database 0.
            return self.validate_rest();
        }
        if !(self.url.starts_with("redis://") || self.url.starts_with("rediss://")) {
            return Err(invalid(
                "backplane.redis.url",
                "must start with redis:// or rediss:// (TLS)",
            ));
        }
        if let Err(error) = redis::Client::open(self.url.as_str()) {
            // The client's message may quote the URL: never its password.
            let mut shown = self.url.clone();
            mask_userinfo(&mut shown);
            return Err(invalid(
                "backplane.redis.url",
                format!(
                    "{shown} is not a Redis URL ({})",
                    error.to_string().replace(&self.url, &shown)
                ),
            ));
        }
        if self.sentinel.is_enabled() {
            self.check_url_names_master()?;
        }
        self.validate_rest()
    }

    /// With Sentinel the URL carries what the data nodes need (scheme,
    /// user, password, database); the address comes from the sentinels, so
    /// the host must be the master's name and no port may be given, or a
    /// reader could believe that address is used.
    fn check_url_names_master(&self) -> Result<(), InvalidSetting> {
        let mut shown = self.url.clone();
        mask_userinfo(&mut shown);
        let parsed = url::Url::parse(&self.url).ok();
        let host = parsed.as_ref().and_then(|url| url.host_str());
        let port = parsed.as_ref().and_then(url::Url::port);
        if host != Some(self.sentinel.master_name.as_str()) || port.is_some() {
            return Err(InvalidSetting::new(
                "backplane.redis.url",
                format!(
                    "{shown}: with backplane.redis.sentinel.addresses the sentinels give the \
                     master's address, so the URL's host must be the master's name and it has \
                     no port: redis[s]://[user:password@]{}/0",
                    self.sentinel.master_name
                ),
            ));
        }
        Ok(())
    }

    fn validate_rest(&self) -> Result<(), InvalidSetting> {
        fn invalid(key: &'static str, reason: impl Into<String>) -> InvalidSetting {
            InvalidSetting::new(key, reason)
        }
        if self.connect_timeout.is_zero() {
            return Err(invalid(
                "backplane.redis.connect_timeout",
                "must be longer than 0s",
            ));
        }
        if self.command_timeout.is_zero() {
            return Err(invalid(
                "backplane.redis.command_timeout",
                "must be longer than 0s",
            ));
        }
        if self.key_prefix.is_empty() || self.key_prefix.chars().any(char::is_whitespace) {
            return Err(invalid(
                "backplane.redis.key_prefix",
                "must be a non-empty string without spaces, e.g. \"ssehub:\"",
            ));
        }
        if self.replicas_ack > 0 && self.replicas_ack_timeout.is_zero() {
            return Err(invalid(
                "backplane.redis.replicas_ack_timeout",
                "must be longer than 0s with backplane.redis.replicas_ack > 0 (e.g. 1s)",
            ));
        }
        Ok(())
    }
}

impl SentinelConfig {
    fn validate(&self) -> Result<(), InvalidSetting> {
        if !self.is_enabled() {
            if !self.password.is_empty() || !self.username.is_empty() {
                return Err(InvalidSetting::new(
                    "backplane.redis.sentinel.password",
                    "is set but backplane.redis.sentinel.addresses is empty: \
                     list the sentinels (host:port) or drop the sentinel credentials",
                ));
            }
            return Ok(());
        }
        if self.addresses.is_empty() {
            return Err(InvalidSetting::new(
                "backplane.redis.sentinel.addresses",
                format!(
                    "is empty but backplane.redis.sentinel.master_name is {:?}: list the \
                     sentinels as host:port, e.g. [\"sentinel-0:26379\", \"sentinel-1:26379\"]",
                    self.master_name
                ),
            ));
        }
        if self.master_name.is_empty() || self.master_name.chars().any(char::is_whitespace) {
            return Err(InvalidSetting::new(
                "backplane.redis.sentinel.master_name",
                format!(
                    "{:?} is not a master name: give the name the sentinels monitor \
                     (`sentinel monitor <name> ...`), e.g. \"mymaster\"",
                    self.master_name
                ),
            ));
        }
        for address in &self.addresses {
            if parse_host_port(address).is_none() {
                return Err(InvalidSetting::new(
                    "backplane.redis.sentinel.addresses",
                    format!("{address:?} is not host:port, e.g. sentinel-0.sentinel:26379"),
                ));
            }
        }
        Ok(())
    }
}

/// `host:port` (an IPv6 host in brackets), with a port above 0.
pub(crate) fn parse_host_port(address: &str) -> Option<(String, u16)> {
    let (host, port) = address.rsplit_once(':')?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let port: u16 = port.parse().ok().filter(|port| *port > 0)?;
    let valid = !host.is_empty()
        && !host.contains(['/', '@', ' ', '[', ']'])
        && (address.starts_with('[') || !host.contains(':'));
    valid.then(|| (host.to_owned(), port))
}
