//! Who may publish, subscribe and read metrics: credentials in, a verdict
//! out. No HTTP types here, so every HTTP path (hyper's, the server's own
//! stream path) shares the same checks; `http` only finds the credentials in a
//! request and turns [`AuthError`] into a status.
//!
//! - [`Authenticator`] turns a bearer value into a [`Grant`]: a static key
//!   (`auth.publish_keys`, every topic) or a JWT ([`token`]) whose
//!   `ssehub.publish` / `ssehub.subscribe` claims list [`TopicPattern`]s.
//! - Subscribing is open, or (`auth.subscribe = "jwt"`) needs a token for
//!   every topic not in `auth.public_topics`. A stream opened with a token
//!   must end at the token's `exp` ([`SubscribeVerdict::expires_at`]).
//! - [`RateLimiters`] bound publishes per publisher and per client address,
//!   and new subscriptions per client address ([`TrustedProxies`] finds the
//!   client behind a proxy).
//!
//! Secrets never leave this module in a printable form: keys and tokens
//! have no `Debug` that shows them, and no log line carries one.

mod client_address;
mod config;
mod error;
mod grant;
mod jwks;
mod keys;
mod metrics;
mod mint;
mod pattern;
mod rate;
mod static_keys;
mod token;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

pub use client_address::TrustedProxies;
pub use config::{
    AUTH_COOKIE_DEFAULT, AuthConfig, AuthConfigError, AuthSettings, JWKS_REFETCH_COOLDOWN_DEFAULT,
    JWKS_REFRESH_DEFAULT, JWT_LEEWAY_DEFAULT, JWT_SECRET_MIN_BYTES, JwtConfig, PublishCount,
    RateConfig, RateLimitsConfig, SubscribeAuth, validate as validate_config,
};
pub use error::{Action, AuthError, RateLimit, TokenRefusal, TokenRejection};
pub use grant::{Grant, PublisherId, Scope};
pub use jwks::{Jwks, JwksLocation};
pub use keys::VerifyingKey;
pub use metrics::{AuthMetrics, RejectionReason};
pub use mint::{MintError, MintRequest, Minted, mint};
pub use pattern::{InvalidPattern, TopicPattern, subject_segment};
pub use rate::{Limited, RateLimiters, quota};

use crate::model::TopicName;
use crate::setting::InvalidSetting;
use rate::PublishLimited;
use static_keys::StaticKeys;
pub use token::{MAX_TOKEN_EXP, rejection as jwt_rejection};
use token::{TokenVerifier, expired_at};

/// How often idle rate-limit state is dropped: often enough that a scan of
/// many addresses doesn't pile up, rarely enough to cost nothing.
const RATE_STATE_SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Where a credential was found (for messages; never the value).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialSource {
    /// `Authorization: Bearer …`
    Header,
    /// The `access_token` query parameter.
    Query,
    /// The `auth.cookie_name` cookie.
    Cookie,
}

/// A bearer value as presented. Its `Debug` hides the value.
#[derive(Clone)]
pub struct Credential {
    token: String,
    pub source: CredentialSource,
}

impl Credential {
    pub fn new(token: impl Into<String>, source: CredentialSource) -> Self {
        Self {
            token: token.into(),
            source,
        }
    }
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credential({:?}, ***)", self.source)
    }
}

/// What a subscribe may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscribeVerdict {
    /// The stream must end by then: the `exp` of the token that opened a
    /// topic which is not public. `None`: no token was needed.
    pub expires_at: Option<SystemTime>,
}

/// Every auth check of one hub. Cheap to clone.
#[derive(Clone)]
pub struct Authenticator {
    inner: Arc<Inner>,
}

struct Inner {
    publish_keys: StaticKeys,
    metrics_keys: StaticKeys,
    tokens: Option<TokenVerifier>,
    subscribe: SubscribeAuth,
    public_topics: Vec<TopicPattern>,
    cookie_name: String,
    rate: RateLimiters,
    proxies: TrustedProxies,
    metrics: Arc<AuthMetrics>,
}

impl Authenticator {
    /// Builds the checks from `settings` (see [`validate_config`]), reading
    /// every key file they name; a bad one is a configuration error that
    /// names its key.
    pub fn new(settings: AuthSettings, metrics: Arc<AuthMetrics>) -> Result<Self, AuthConfigError> {
        fn invalid(key: &'static str, reason: impl Into<String>) -> AuthConfigError {
            InvalidSetting::new(key, reason).into()
        }
        let tokens = match &settings.jwt {
            Some(jwt) => {
                let secret = match (&jwt.secret, &jwt.secret_file) {
                    (Some(secret), _) => Some(secret.clone().into_bytes()),
                    (None, Some(path)) => {
                        let text = std::fs::read_to_string(path).map_err(|error| {
                            invalid(
                                "auth.jwt.secret_file",
                                format!("cannot read {}: {error}", path.display()),
                            )
                        })?;
                        let secret = text.trim_end().to_owned();
                        if secret.len() < JWT_SECRET_MIN_BYTES {
                            return Err(invalid(
                                "auth.jwt.secret_file",
                                format!(
                                    "the secret must be at least {} bytes (RFC 7518 section 3.2)",
                                    JWT_SECRET_MIN_BYTES
                                ),
                            ));
                        }
                        Some(secret.into_bytes())
                    }
                    (None, None) => None,
                };
                let public_key = jwt
                    .public_key_file
                    .as_ref()
                    .map(|path| {
                        let pem = std::fs::read(path).map_err(|error| {
                            invalid(
                                "auth.jwt.public_key_file",
                                format!("cannot read {}: {error}", path.display()),
                            )
                        })?;
                        VerifyingKey::from_pem(&pem).map_err(|reason| {
                            invalid(
                                "auth.jwt.public_key_file",
                                format!("{}: {reason}", path.display()),
                            )
                        })
                    })
                    .transpose()?;
                let jwks = jwt
                    .jwks
                    .clone()
                    .map(|location| {
                        Jwks::new(location, jwt.jwks_refresh, jwt.jwks_refetch_cooldown)
                            .map(Arc::new)
                            .map_err(|reason| invalid("auth.jwt.jwks", reason))
                    })
                    .transpose()?;
                Some(
                    TokenVerifier::new(secret, public_key, jwks, jwt.rules.clone())
                        .map_err(|reason| invalid("auth.jwt.secret", reason))?,
                )
            }
            None => None,
        };
        let publish_keys = StaticKeys::new(settings.read_publish_keys()?);
        let metrics_keys = StaticKeys::new(settings.read_metrics_keys()?);
        let AuthSettings {
            subscribe,
            public_topics,
            cookie_name,
            rate,
            proxies,
            ..
        } = settings;
        Ok(Self {
            inner: Arc::new(Inner {
                publish_keys,
                metrics_keys,
                tokens,
                subscribe,
                public_topics,
                cookie_name,
                rate: RateLimiters::new(rate),
                proxies,
                metrics,
            }),
        })
    }

    /// No key and no JWT configured: anyone may publish.
    pub fn publishing_is_open(&self) -> bool {
        self.inner.publish_keys.is_empty() && self.inner.tokens.is_none()
    }

    pub fn subscribe_mode(&self) -> SubscribeAuth {
        self.inner.subscribe
    }

    pub fn metrics_are_open(&self) -> bool {
        self.inner.metrics_keys.is_empty()
    }

    pub fn rate_limits_are_on(&self) -> bool {
        self.inner.rate.any()
    }

    pub fn cookie_name(&self) -> &str {
        &self.inner.cookie_name
    }

    /// False until a JWKS named by URL has been read once.
    pub fn is_ready(&self) -> bool {
        self.jwks().is_none_or(|jwks| jwks.is_loaded())
    }

    fn jwks(&self) -> Option<&Arc<Jwks>> {
        self.inner.tokens.as_ref().and_then(TokenVerifier::jwks)
    }

    /// The client's address behind the trusted proxies (see [`TrustedProxies`]).
    pub fn client_address<'a>(
        &self,
        peer: IpAddr,
        forwarded_for: impl DoubleEndedIterator<Item = &'a str>,
    ) -> IpAddr {
        self.inner.proxies.client_address(peer, forwarded_for)
    }

    /// Background work: keeping a JWKS fresh, forgetting idle rate-limit
    /// state. Runs until dropped (abort the tasks at shutdown).
    pub fn spawn_background(&self) -> Vec<tokio::task::JoinHandle<()>> {
        let mut tasks = Vec::new();
        if let Some(jwks) = self.jwks() {
            tasks.push(tokio::spawn(jwks.clone().keep_fresh()));
        }
        if self.inner.rate.any() {
            let this = self.clone();
            tasks.push(tokio::spawn(async move {
                let mut ticks = tokio::time::interval(RATE_STATE_SWEEP_EVERY);
                loop {
                    ticks.tick().await;
                    this.inner.rate.forget_idle();
                }
            }));
        }
        tasks
    }

    /// Logs what is open; called once at start.
    pub fn log_summary(&self, local_addr: std::net::SocketAddr) {
        if self.publishing_is_open() {
            tracing::warn!(
                "publishing is open to anyone who can reach {local_addr}: set auth.publish_keys or auth.jwt to require a token"
            );
        }
        match self.inner.subscribe {
            SubscribeAuth::Open => tracing::info!(
                "subscribing is open (auth.subscribe = \"open\"): any client may follow any topic"
            ),
            SubscribeAuth::Jwt => tracing::info!(
                public_topics = self.inner.public_topics.len(),
                "subscribing needs a JWT for every topic outside auth.public_topics"
            ),
        }
        if let Some(jwks) = self.jwks() {
            tracing::info!(jwks = %jwks.location(), refresh = ?jwks.refresh, "verifying tokens with a JWKS");
        }
        if !self.inner.rate.any() {
            tracing::info!("no rate limits (rate_limits.*)");
        }
    }

    /// The grant of a bearer value: a static publish key, else a JWT.
    async fn grant(&self, credential: &Credential) -> Result<Grant, TokenRefusal> {
        if let Some(index) = self.inner.publish_keys.find(&credential.token) {
            return Ok(Grant::static_key(index));
        }
        let looks_like_jwt = credential.token.matches('.').count() == 2;
        match &self.inner.tokens {
            // Not a JWT's shape: most likely a mistyped static key.
            Some(_) if !looks_like_jwt && !self.inner.publish_keys.is_empty() => {
                Err(TokenRejection::UnknownStaticKey.into())
            }
            Some(tokens) => tokens.verify(&credential.token).await,
            None => Err(TokenRejection::UnknownStaticKey.into()),
        }
    }

    /// May this request publish its events to every one of `topics`? Checks
    /// the per-address limit first (so floods of bad tokens are limited
    /// too), then the credentials, then the per-publisher limit; both limits
    /// are charged for `events` events (see `rate_limits.publish_counts`).
    /// Returns who publishes: `None` while publishing is open to anyone.
    pub async fn authorize_publish(
        &self,
        credential: Option<&Credential>,
        client: IpAddr,
        topics: &[&TopicName],
        events: usize,
    ) -> Result<Option<PublisherId>, AuthError> {
        let verdict = self.check_publish(credential, client, topics, events).await;
        self.count(Action::Publish, &verdict);
        verdict
    }

    /// The per-address publish limit alone, charged for `events` events:
    /// for a publish route that checks its own tokens (Mercure's).
    /// Counted in `ssehub_rate_limited_total` as on ssehub's own routes.
    pub fn admit_publisher(&self, client: IpAddr, events: usize) -> Result<(), AuthError> {
        let verdict = self
            .inner
            .rate
            .publish_from(client, events)
            .map_err(publish_limited);
        self.count(Action::Publish, &verdict);
        verdict
    }

    /// The per-publisher publish limit alone, for a publish route that
    /// checks its own tokens: `holder` names the token's holder the same
    /// on every replica (Mercure's issuer and subject, or its signature),
    /// and is kept apart from ssehub's own publishers by its prefix.
    pub fn admit_named_publisher(&self, holder: &str, events: usize) -> Result<(), AuthError> {
        if !self.inner.rate.limits_publishers() {
            return Ok(());
        }
        let verdict = self
            .inner
            .rate
            .publish_by(&PublisherId::Token(holder.to_owned()), events)
            .map_err(publish_limited);
        self.count(Action::Publish, &verdict);
        verdict
    }

    /// Counts a refusal a route decided itself (a protocol with its own
    /// tokens: Mercure) in `ssehub_auth_rejections_total`.
    pub fn count_rejection(&self, action: Action, reason: RejectionReason) {
        self.inner.metrics.rejected(action, reason);
    }

    async fn check_publish(
        &self,
        credential: Option<&Credential>,
        client: IpAddr,
        topics: &[&TopicName],
        events: usize,
    ) -> Result<Option<PublisherId>, AuthError> {
        self.inner
            .rate
            .publish_from(client, events)
            .map_err(publish_limited)?;
        if self.publishing_is_open() {
            return Ok(None);
        }
        let credential = credential.ok_or(AuthError::Missing {
            action: Action::Publish,
            accepted: "send `Authorization: Bearer <key or JWT>`",
        })?;
        let grant = self
            .grant(credential)
            .await
            .map_err(|refusal| AuthError::Rejected {
                action: Action::Publish,
                rejection: refusal.rejection,
                specifics: refusal.specifics,
            })?;
        if let Some(topic) = topics.iter().find(|topic| !grant.may_publish(topic)) {
            return Err(AuthError::Forbidden {
                action: Action::Publish,
                topic: (*topic).clone(),
            });
        }
        self.inner
            .rate
            .publish_by(&grant.publisher, events)
            .map_err(publish_limited)?;
        Ok(Some(grant.publisher))
    }

    /// May this request subscribe to `topics`? Credentials are looked at
    /// only when a topic is not public: a stale cookie on a page that only
    /// follows public topics must not lock it out.
    pub async fn authorize_subscribe(
        &self,
        credential: Option<&Credential>,
        topics: &[TopicName],
    ) -> Result<SubscribeVerdict, AuthError> {
        let verdict = self.check_subscribe(credential, topics).await;
        self.count(Action::Subscribe, &verdict);
        verdict
    }

    async fn check_subscribe(
        &self,
        credential: Option<&Credential>,
        topics: &[TopicName],
    ) -> Result<SubscribeVerdict, AuthError> {
        let open = SubscribeVerdict { expires_at: None };
        if self.inner.subscribe == SubscribeAuth::Open {
            return Ok(open);
        }
        let private: Vec<&TopicName> = topics
            .iter()
            .filter(|topic| !self.may_read_without_credentials(topic))
            .collect();
        if private.is_empty() {
            return Ok(open);
        }
        let credential = credential.ok_or(AuthError::Missing {
            action: Action::Subscribe,
            accepted: "send `Authorization: Bearer <JWT>`, the `access_token` query parameter, or the token cookie",
        })?;
        let grant = self
            .grant(credential)
            .await
            .map_err(|refusal| AuthError::Rejected {
                action: Action::Subscribe,
                rejection: refusal.rejection,
                specifics: refusal.specifics,
            })?;
        if let Some(topic) = private.iter().find(|topic| !grant.may_subscribe(topic)) {
            return Err(AuthError::Forbidden {
                action: Action::Subscribe,
                topic: (*topic).clone(),
            });
        }
        // Past `exp` but within the leeway: the stream would end at once
        // with a `token_expired` frame, and EventSource would come back in
        // a loop. Refused instead, so the page fetches a new token.
        if grant.expires_at.is_some_and(|at| at <= SystemTime::now()) {
            return Err(AuthError::Rejected {
                action: Action::Subscribe,
                rejection: TokenRejection::Expired,
                specifics: grant.expires_at.map(expired_at),
            });
        }
        Ok(SubscribeVerdict {
            expires_at: grant.expires_at,
        })
    }

    /// Whether anyone may subscribe to `topic` without credentials:
    /// subscribing is open, or the topic is one of `auth.public_topics`.
    /// (For protocols on top of the hub that let their subscribers follow
    /// ssehub topics: Mercure.)
    pub fn may_read_without_credentials(&self, topic: &TopicName) -> bool {
        self.inner.subscribe == SubscribeAuth::Open
            || self
                .inner
                .public_topics
                .iter()
                .any(|pattern| pattern.matches(topic.as_str(), None))
    }

    /// One new subscription from `client`; over the limit the caller sheds
    /// it (a status would make EventSource give up for good).
    pub fn admit_subscriber(&self, client: IpAddr) -> Result<(), Limited> {
        let admitted = self.inner.rate.subscribe_from(client);
        if let Err(limited) = &admitted {
            self.inner.metrics.rate_limited(limited.limit);
        }
        admitted
    }

    /// May this request read `/metrics`?
    pub fn authorize_metrics(&self, credential: Option<&Credential>) -> Result<(), AuthError> {
        let verdict = match credential {
            _ if self.metrics_are_open() => Ok(()),
            None => Err(AuthError::Missing {
                action: Action::ReadMetrics,
                accepted: "send `Authorization: Bearer <key>` with a key of auth.metrics_keys",
            }),
            Some(credential) => match self.inner.metrics_keys.find(&credential.token) {
                Some(_) => Ok(()),
                None => Err(AuthError::Rejected {
                    action: Action::ReadMetrics,
                    rejection: TokenRejection::UnknownStaticKey,
                    specifics: None,
                }),
            },
        };
        self.count(Action::ReadMetrics, &verdict);
        verdict
    }

    fn count<T>(&self, action: Action, verdict: &Result<T, AuthError>) {
        let Err(error) = verdict else { return };
        let metrics = &self.inner.metrics;
        match error {
            AuthError::Missing { .. } => metrics.rejected(action, RejectionReason::MissingToken),
            AuthError::Rejected { rejection, .. } => {
                metrics.rejected(action, RejectionReason::Token(*rejection))
            }
            AuthError::Forbidden { .. } => {
                metrics.rejected(action, RejectionReason::ForbiddenTopic)
            }
            AuthError::RateLimited { limit, .. } | AuthError::OverBurst { limit, .. } => {
                metrics.rate_limited(*limit)
            }
        }
    }
}

fn publish_limited(limited: PublishLimited) -> AuthError {
    match limited {
        PublishLimited::Wait(limited) => AuthError::RateLimited {
            limit: limited.limit,
            retry_after: limited.retry_after,
        },
        PublishLimited::OverBurst(over) => AuthError::OverBurst {
            limit: over.limit,
            cost: over.cost,
            burst: over.burst,
        },
    }
}
