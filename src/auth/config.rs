//! Auth's settings (`auth.*`, `rate_limits.*`), their check, which parses
//! each value once into the [`AuthSettings`] the authenticator is built
//! from, and the key files they name.

use std::path::{Path, PathBuf};
use std::time::Duration;

use governor::Quota;
use serde::{Deserialize, Serialize};

use super::rate::RateSettings;
use super::token::ClaimRules;
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

/// Auth's settings once checked: every value parsed here, once (topic
/// patterns, the JWKS location, trusted proxies, rate quotas), and handed
/// to [`Authenticator::new`](super::Authenticator::new). Files are only
/// named here; they are read when the authenticator is built. Its `Debug`
/// shows no key.
pub struct AuthSettings {
    pub(super) publish_keys: Vec<String>,
    pub(super) publish_keys_file: Option<PathBuf>,
    pub(super) metrics_keys: Vec<String>,
    pub(super) metrics_keys_file: Option<PathBuf>,
    pub(super) subscribe: SubscribeAuth,
    pub(super) public_topics: Vec<TopicPattern>,
    pub(super) cookie_name: String,
    /// `None`: no key source under `auth.jwt`, so no token is accepted.
    pub(super) jwt: Option<JwtSettings>,
    pub(super) rate: RateSettings,
    pub(super) proxies: TrustedProxies,
}

/// `auth.jwt.*` once checked.
pub(super) struct JwtSettings {
    pub(super) secret: Option<String>,
    pub(super) secret_file: Option<PathBuf>,
    pub(super) public_key_file: Option<PathBuf>,
    pub(super) jwks: Option<JwksLocation>,
    pub(super) jwks_refresh: Duration,
    pub(super) jwks_refetch_cooldown: Duration,
    pub(super) rules: ClaimRules,
}

impl std::fmt::Debug for AuthSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthSettings")
            .field("subscribe", &self.subscribe)
            .field("public_topics", &self.public_topics)
            .field("jwt", &self.jwt.is_some())
            .finish_non_exhaustive()
    }
}

impl AuthSettings {
    /// Publish keys from `auth.publish_keys` and `auth.publish_keys_file`.
    pub(super) fn read_publish_keys(&self) -> Result<Vec<String>, AuthConfigError> {
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
    pub(super) fn read_metrics_keys(&self) -> Result<Vec<String>, AuthConfigError> {
        let mut keys = self.metrics_keys.clone();
        if let Some(path) = &self.metrics_keys_file {
            keys.extend(read_key_lines(path, "auth.metrics_keys_file")?);
        }
        Ok(keys)
    }
}

fn invalid(key: &'static str, reason: impl Into<String>) -> InvalidSetting {
    InvalidSetting::new(key, reason)
}

/// Checks the auth keys whose values can be checked without reading files
/// (those are read, and checked, when the authenticator is built), and
/// parses them on the way: the result is what the authenticator is built
/// from.
pub fn validate(
    auth: &AuthConfig,
    rate_limits: &RateLimitsConfig,
) -> Result<AuthSettings, InvalidSetting> {
    let jwt = &auth.jwt;
    if auth.subscribe == SubscribeAuth::Jwt && !jwt.is_configured() {
        return Err(invalid(
            "auth.subscribe",
            "\"jwt\" needs a key: set auth.jwt.secret, auth.jwt.public_key_file or auth.jwt.jwks",
        ));
    }
    let mut public_topics = Vec::with_capacity(auth.public_topics.len());
    for pattern in &auth.public_topics {
        match TopicPattern::parse(pattern) {
            Err(error) => return Err(invalid("auth.public_topics", error.to_string())),
            Ok(pattern) if pattern.uses_subject() => {
                return Err(invalid(
                    "auth.public_topics",
                    format!("{pattern:?}: `{{sub}}` needs a token; public topics have none"),
                ));
            }
            Ok(pattern) => public_topics.push(pattern),
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
    let jwks = jwt
        .jwks
        .as_deref()
        .map(JwksLocation::parse)
        .transpose()
        .map_err(|reason| invalid("auth.jwt.jwks", reason))?;
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
    let rate = RateSettings {
        publish_counts: limits.publish_counts,
        publish_per_publisher: rate_quota(
            "rate_limits.publish_per_publisher",
            &limits.publish_per_publisher,
        )?,
        publish_per_address: rate_quota(
            "rate_limits.publish_per_address",
            &limits.publish_per_address,
        )?,
        subscribe_per_address: rate_quota(
            "rate_limits.subscribe_per_address",
            &limits.subscribe_per_address,
        )?,
    };
    let proxies = TrustedProxies::parse(&limits.trusted_proxies)
        .map_err(|reason| invalid("rate_limits.trusted_proxies", reason))?;
    let jwt = jwt.is_configured().then(|| JwtSettings {
        secret: jwt.secret.clone(),
        secret_file: jwt.secret_file.clone(),
        public_key_file: jwt.public_key_file.clone(),
        jwks,
        jwks_refresh: jwt.jwks_refresh,
        jwks_refetch_cooldown: jwt.jwks_refetch_cooldown,
        rules: ClaimRules {
            issuer: jwt.issuer.clone(),
            audience: jwt.audience.clone(),
            leeway: jwt.leeway,
        },
    });
    Ok(AuthSettings {
        publish_keys: auth.publish_keys.clone(),
        publish_keys_file: auth.publish_keys_file.clone(),
        metrics_keys: auth.metrics_keys.clone(),
        metrics_keys_file: auth.metrics_keys_file.clone(),
        subscribe: auth.subscribe,
        public_topics,
        cookie_name: auth.cookie_name.clone(),
        jwt,
        rate,
        proxies,
    })
}

/// The quota of one rate limit (`None`: off), or why `key` can't be one.
fn rate_quota(key: &'static str, rate: &RateConfig) -> Result<Option<Quota>, InvalidSetting> {
    if !rate.per_second.is_finite() || rate.per_second < 0.0 {
        return Err(invalid(key, "per_second must be 0 (off) or more"));
    }
    if rate.per_second == 0.0 {
        return Ok(None);
    }
    if rate.burst == 0 {
        return Err(invalid(
            key,
            "burst must be at least 1 when the limit is on",
        ));
    }
    match quota(rate) {
        Some(quota) => Ok(Some(quota)),
        None => Err(invalid(key, "per_second is too high to be a limit")),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_check_hands_over_what_it_parsed() {
        let auth = AuthConfig {
            subscribe: SubscribeAuth::Jwt,
            public_topics: vec!["news.*".into()],
            jwt: JwtConfig {
                jwks: Some("https://idp.example/jwks.json".into()),
                issuer: Some("https://idp.example".into()),
                ..JwtConfig::default()
            },
            ..AuthConfig::default()
        };
        let rate_limits = RateLimitsConfig {
            subscribe_per_address: RateConfig {
                per_second: 2.0,
                burst: 5,
            },
            trusted_proxies: vec!["10.0.0.0/8".into()],
            ..RateLimitsConfig::default()
        };
        let settings = validate(&auth, &rate_limits).unwrap();
        assert!(settings.public_topics[0].matches("news.today", None));
        let jwt = settings.jwt.expect("a key source is set");
        assert!(matches!(jwt.jwks, Some(JwksLocation::Url(_))));
        assert_eq!(jwt.rules.issuer.as_deref(), Some("https://idp.example"));
        let burst = |quota: Option<Quota>| quota.map(|quota| quota.burst_size().get());
        assert_eq!(burst(settings.rate.subscribe_per_address), Some(5));
        assert_eq!(burst(settings.rate.publish_per_address), None, "off");
        let client = settings
            .proxies
            .client_address("10.1.2.3".parse().unwrap(), ["203.0.113.7"].into_iter());
        assert_eq!(client, "203.0.113.7".parse::<std::net::IpAddr>().unwrap());
    }

    #[test]
    fn no_key_source_means_no_token_settings() {
        let settings = validate(&AuthConfig::default(), &RateLimitsConfig::default()).unwrap();
        assert!(settings.jwt.is_none());
        assert!(settings.public_topics.is_empty());
    }
}
