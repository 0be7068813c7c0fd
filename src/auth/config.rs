//! Auth's settings (`auth.*`, `rate_limits.*`), their check and the key
//! files they name.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{JwksLocation, TopicPattern, TrustedProxies, quota};
use crate::setting::InvalidSetting;

/// Clock skew allowed on a token's `exp` and `nbf`: NTP keeps servers
/// within milliseconds; a few seconds cover a laggard without keeping an
/// expired token useful for long.
pub const JWT_LEEWAY_DEFAULT: Duration = Duration::from_secs(5);
/// How often a JWKS is re-read: providers publish a new key well ahead of
/// signing with it (hours), and an unknown `kid` triggers a re-read anyway.
pub const JWKS_REFRESH_DEFAULT: Duration = Duration::from_secs(300);
/// Least time between two re-reads caused by unknown `kid`s, so tokens with
/// made-up `kid`s can't make the hub hammer the identity provider.
pub const JWKS_REFETCH_COOLDOWN_DEFAULT: Duration = Duration::from_secs(30);
/// Cookie a browser's token travels in (`EventSource` with `withCredentials`).
pub const AUTH_COOKIE_DEFAULT: &str = "ssehub_token";
/// Shortest HMAC secret: RFC 7518 section 3.2 asks for a key at least as
/// long as the hash (32 bytes for HS256).
pub const JWT_SECRET_MIN_BYTES: usize = 32;

/// Why auth's settings can't be used.
#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    #[error(transparent)]
    Invalid(#[from] InvalidSetting),
    #[error("cannot read `auth.publish_keys_file` {path}: {source}")]
    KeysFile {
        path: PathBuf,
        source: std::io::Error,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Bearer keys accepted on publish routes. Empty (with no file and no
    /// `auth.jwt`): open.
    pub publish_keys: Vec<String>,
    /// A file with one publish key per line (a mounted Kubernetes Secret).
    pub publish_keys_file: Option<PathBuf>,
    /// Who may subscribe: anyone, or holders of a JWT (see `public_topics`).
    pub subscribe: SubscribeAuth,
    /// Topic patterns that stay open when `subscribe = "jwt"`.
    pub public_topics: Vec<String>,
    /// Cookie a subscriber's token may travel in.
    pub cookie_name: String,
    /// Bearer keys `/metrics` asks for; empty: `/metrics` is open.
    pub metrics_keys: Vec<String>,
    /// A file with one metrics key per line.
    pub metrics_keys_file: Option<PathBuf>,
    pub jwt: JwtConfig,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum SubscribeAuth {
    /// Anyone who reaches the port may subscribe to any topic.
    #[default]
    Open,
    /// A JWT whose `ssehub.subscribe` covers the topic, unless it is public.
    Jwt,
}

/// How JWTs are verified. Any mix of the three key sources may be set:
/// the token's `alg` picks the one that applies.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct JwtConfig {
    /// HMAC secret (HS256, HS384, HS512).
    pub secret: Option<String>,
    /// A file holding the HMAC secret (a mounted Secret); trailing
    /// whitespace is ignored.
    pub secret_file: Option<PathBuf>,
    /// A PEM public key: RSA (RS*/PS*), EC P-256/P-384 (ES256/ES384) or Ed25519 (EdDSA).
    pub public_key_file: Option<PathBuf>,
    /// A JWKS: a file path, or an `http(s)://` URL fetched in the background.
    pub jwks: Option<String>,
    #[serde(with = "humantime_serde")]
    pub jwks_refresh: Duration,
    #[serde(with = "humantime_serde")]
    pub jwks_refetch_cooldown: Duration,
    /// Required `iss`, when set.
    pub issuer: Option<String>,
    /// Required member of `aud`, when set.
    pub audience: Option<String>,
    #[serde(with = "humantime_serde")]
    pub leeway: Duration,
}

impl JwtConfig {
    /// Whether any key source is configured.
    pub fn is_configured(&self) -> bool {
        self.secret.is_some()
            || self.secret_file.is_some()
            || self.public_key_file.is_some()
            || self.jwks.is_some()
    }
}

impl Default for JwtConfig {
    fn default() -> Self {
        Self {
            secret: None,
            secret_file: None,
            public_key_file: None,
            jwks: None,
            jwks_refresh: JWKS_REFRESH_DEFAULT,
            jwks_refetch_cooldown: JWKS_REFETCH_COOLDOWN_DEFAULT,
            issuer: None,
            audience: None,
            leeway: JWT_LEEWAY_DEFAULT,
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            publish_keys: Vec::new(),
            publish_keys_file: None,
            subscribe: SubscribeAuth::Open,
            public_topics: Vec::new(),
            cookie_name: AUTH_COOKIE_DEFAULT.to_owned(),
            metrics_keys: Vec::new(),
            metrics_keys_file: None,
            jwt: JwtConfig::default(),
        }
    }
}

/// One rate limit: `burst` at once, then `per_second` (0: off).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RateConfig {
    pub per_second: f64,
    pub burst: u32,
}

/// What one publish costs on the publish rate limits.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum PublishCount {
    /// A request of N events costs N: the limits bound the events a client
    /// sends, whatever it packs them in.
    #[default]
    Events,
    /// Every request costs one, a batch as much as a single event.
    Requests,
}

/// Abuse limits. Off by default in the binary (a hub on 127.0.0.1 serves
/// its own machine); the Helm chart turns them on.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitsConfig {
    /// Whether the two publish limits count events or requests.
    pub publish_counts: PublishCount,
    /// Publishes per publisher (static key, or JWT issuer + subject).
    pub publish_per_publisher: RateConfig,
    /// Publishes per client address (IPv6: per /64).
    pub publish_per_address: RateConfig,
    /// New subscriptions per client address; over it a subscribe is shed.
    pub subscribe_per_address: RateConfig,
    /// Proxies (addresses or CIDRs) whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<String>,
}

impl AuthConfig {
    /// Publish keys from `auth.publish_keys` and `auth.publish_keys_file`.
    pub fn publish_keys(&self) -> Result<Vec<String>, AuthConfigError> {
        let mut keys: Vec<String> = self.publish_keys.clone();
        if let Some(path) = &self.publish_keys_file {
            let text =
                std::fs::read_to_string(path).map_err(|source| AuthConfigError::KeysFile {
                    path: path.clone(),
                    source,
                })?;
            keys.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|line| !line.is_empty() && !line.starts_with('#'))
                    .map(str::to_owned),
            );
        }
        Ok(keys)
    }

    /// Metrics keys from `auth.metrics_keys` and `auth.metrics_keys_file`.
    pub fn metrics_keys(&self) -> Result<Vec<String>, AuthConfigError> {
        let mut keys = self.metrics_keys.clone();
        if let Some(path) = &self.metrics_keys_file {
            keys.extend(read_key_lines(path, "auth.metrics_keys_file")?);
        }
        Ok(keys)
    }
}

/// The auth keys whose values can be checked without reading files
/// (those are read, and checked, when the authenticator is built).
pub fn validate(auth: &AuthConfig, rate_limits: &RateLimitsConfig) -> Result<(), InvalidSetting> {
    fn invalid(key: &'static str, reason: impl Into<String>) -> InvalidSetting {
        InvalidSetting::new(key, reason)
    }
    let jwt = &auth.jwt;
    if auth.subscribe == SubscribeAuth::Jwt && !jwt.is_configured() {
        return Err(invalid(
            "auth.subscribe",
            "\"jwt\" needs a key: set auth.jwt.secret, auth.jwt.public_key_file or auth.jwt.jwks",
        ));
    }
    for pattern in &auth.public_topics {
        match TopicPattern::parse(pattern) {
            Err(error) => return Err(invalid("auth.public_topics", error.to_string())),
            Ok(pattern) if pattern.uses_subject() => {
                return Err(invalid(
                    "auth.public_topics",
                    format!("{pattern:?}: `{{sub}}` needs a token; public topics have none"),
                ));
            }
            Ok(_) => {}
        }
    }
    let cookie_ok = !auth.cookie_name.is_empty()
        && auth
            .cookie_name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !cookie_ok {
        return Err(invalid(
            "auth.cookie_name",
            "a cookie name is 1 or more of A-Z a-z 0-9 and !#$%&'*+-.^_`|~",
        ));
    }
    if jwt.secret.is_some() && jwt.secret_file.is_some() {
        return Err(invalid(
            "auth.jwt.secret_file",
            "set auth.jwt.secret or auth.jwt.secret_file, not both",
        ));
    }
    if let Some(secret) = &jwt.secret
        && secret.len() < JWT_SECRET_MIN_BYTES
    {
        return Err(invalid(
            "auth.jwt.secret",
            format!("must be at least {JWT_SECRET_MIN_BYTES} bytes (RFC 7518 section 3.2)"),
        ));
    }
    if let Some(jwks) = &jwt.jwks
        && let Err(reason) = JwksLocation::parse(jwks)
    {
        return Err(invalid("auth.jwt.jwks", reason));
    }
    if jwt.jwks_refresh.is_zero() {
        return Err(invalid("auth.jwt.jwks_refresh", "must be longer than 0s"));
    }
    if jwt.issuer.as_deref().is_some_and(str::is_empty) {
        return Err(invalid("auth.jwt.issuer", "must not be empty when set"));
    }
    if jwt.audience.as_deref().is_some_and(str::is_empty) {
        return Err(invalid("auth.jwt.audience", "must not be empty when set"));
    }
    let limits = rate_limits;
    for (key, rate) in [
        (
            "rate_limits.publish_per_publisher",
            &limits.publish_per_publisher,
        ),
        (
            "rate_limits.publish_per_address",
            &limits.publish_per_address,
        ),
        (
            "rate_limits.subscribe_per_address",
            &limits.subscribe_per_address,
        ),
    ] {
        if !rate.per_second.is_finite() || rate.per_second < 0.0 {
            return Err(invalid(key, "per_second must be 0 (off) or more"));
        }
        if rate.per_second > 0.0 && rate.burst == 0 {
            return Err(invalid(
                key,
                "burst must be at least 1 when the limit is on",
            ));
        }
        if rate.per_second > 0.0 && quota(rate).is_none() {
            return Err(invalid(key, "per_second is too high to be a limit"));
        }
    }
    if let Err(reason) = TrustedProxies::parse(&limits.trusted_proxies) {
        return Err(invalid("rate_limits.trusted_proxies", reason));
    }
    Ok(())
}

/// The keys of a key file: one per line, blank lines and `#` comments skipped.
fn read_key_lines(path: &Path, key: &'static str) -> Result<Vec<String>, InvalidSetting> {
    let text = std::fs::read_to_string(path).map_err(|error| {
        InvalidSetting::new(key, format!("cannot read {}: {error}", path.display()))
    })?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_owned)
        .collect())
}
