//! A JWKS (JSON Web Key Set) from a file or a URL, kept fresh in the
//! background and looked up by `kid`.
//!
//! Identity providers rotate keys by publishing the next key before they
//! sign with it, and drop the old one later. The set is re-read every
//! `auth.jwt.jwks_refresh`; a token whose `kid` is not in the set triggers
//! a re-read at once (at most once per `auth.jwt.jwks_refetch_cooldown`, so
//! tokens with made-up `kid`s can't make the hub hammer the provider). A
//! failed read keeps the keys already held.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::time::Instant;

use super::keys::{KeySet, VerifyingKey};

/// Longest JWKS document read from a URL: real ones are a few KiB.
const JWKS_MAX_BYTES: usize = 1024 * 1024;
/// A fetch that takes longer has failed; the keys held stay in use.
const JWKS_FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the key set comes from.
#[derive(Debug, Clone)]
pub enum JwksLocation {
    File(PathBuf),
    Url(reqwest::Url),
}

impl JwksLocation {
    /// `http://` and `https://` are URLs; anything else is a file path.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.starts_with("http://") || text.starts_with("https://") {
            reqwest::Url::parse(text)
                .map(Self::Url)
                .map_err(|error| format!("not a URL: {error}"))
        } else {
            Ok(Self::File(PathBuf::from(text)))
        }
    }
}

impl std::fmt::Display for JwksLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File(path) => write!(f, "{}", path.display()),
            // A URL may carry credentials; show where, not who.
            Self::Url(url) => write!(
                f,
                "{}://{}{}",
                url.scheme(),
                url.host_str().unwrap_or(""),
                url.path()
            ),
        }
    }
}

pub struct Jwks {
    location: JwksLocation,
    client: Option<reqwest::Client>,
    /// The keys in use; replaced whole by each successful read.
    keys: RwLock<Option<Arc<KeySet>>>,
    /// When the set was last read (or tried), for the cooldown.
    last_read: Mutex<Option<Instant>>,
    /// One re-read at a time; others wait for it and use its result.
    reading: tokio::sync::Mutex<()>,
    pub refresh: Duration,
    refetch_cooldown: Duration,
}

impl Jwks {
    /// A file is read now (a bad file is a configuration error); a URL is
    /// fetched by [`Self::reload`], first when the server starts.
    pub fn new(
        location: JwksLocation,
        refresh: Duration,
        refetch_cooldown: Duration,
    ) -> Result<Self, String> {
        let client = match &location {
            JwksLocation::File(_) => None,
            JwksLocation::Url(_) => Some(
                reqwest::Client::builder()
                    .timeout(JWKS_FETCH_TIMEOUT)
                    .user_agent(concat!("ssehub/", env!("CARGO_PKG_VERSION")))
                    .build()
                    .map_err(|error| format!("cannot build an HTTP client: {error}"))?,
            ),
        };
        let jwks = Self {
            location,
            client,
            keys: RwLock::new(None),
            last_read: Mutex::new(None),
            reading: tokio::sync::Mutex::new(()),
            refresh,
            refetch_cooldown,
        };
        if let JwksLocation::File(path) = &jwks.location {
            let set = read_file(path)?;
            jwks.install(set);
        }
        Ok(jwks)
    }

    pub fn location(&self) -> &JwksLocation {
        &self.location
    }

    /// Whether a key set has been read at least once.
    pub fn is_loaded(&self) -> bool {
        self.current().is_some()
    }

    fn current(&self) -> Option<Arc<KeySet>> {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn install(&self, set: KeySet) {
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(set));
    }

    /// Reads the set again; on failure the keys held stay in use. One read
    /// at a time: a token that comes while the first read is under way
    /// waits for it rather than finding no keys.
    pub async fn reload(&self) -> Result<usize, String> {
        let _one_at_a_time = self.reading.lock().await;
        self.reload_holding_the_lock().await
    }

    async fn reload_holding_the_lock(&self) -> Result<usize, String> {
        *self.last_read.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        let set = match (&self.location, &self.client) {
            (JwksLocation::File(path), _) => read_file(path)?,
            (JwksLocation::Url(url), Some(client)) => fetch(client, url).await?,
            (JwksLocation::Url(_), None) => return Err("no HTTP client".to_owned()),
        };
        let count = set.keys.len();
        if set.skipped > 0 {
            tracing::debug!(jwks = %self.location, skipped = set.skipped, "JWKS keys that can't verify signatures were skipped");
        }
        self.install(set);
        Ok(count)
    }

    /// The keys that may verify a token with `kid`: the key with that id
    /// (re-reading the set once if it is unknown), or every key when the
    /// token names none.
    pub async fn keys_for(&self, kid: Option<&str>) -> Vec<VerifyingKey> {
        let pick = |set: &KeySet| -> Vec<VerifyingKey> {
            set.keys
                .iter()
                .filter(|key| kid.is_none() || key.kid.as_deref() == kid)
                .cloned()
                .collect()
        };
        let found = self.current().map(|set| pick(&set)).unwrap_or_default();
        if !found.is_empty() || kid.is_none() {
            return found;
        }
        // An unknown kid: perhaps the provider has rotated.
        let _one_at_a_time = self.reading.lock().await;
        if let Some(set) = self.current() {
            let found = pick(&set);
            if !found.is_empty() {
                return found;
            }
        }
        let cooled_down = self
            .last_read
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_none_or(|at| at.elapsed() >= self.refetch_cooldown);
        if !cooled_down {
            return Vec::new();
        }
        match self.reload_holding_the_lock().await {
            Ok(count) => {
                tracing::info!(jwks = %self.location, keys = count, "JWKS re-read for an unknown kid")
            }
            Err(error) => {
                tracing::warn!(jwks = %self.location, %error, "cannot re-read the JWKS")
            }
        }
        self.current().map(|set| pick(&set)).unwrap_or_default()
    }

    /// Re-reads the set every `refresh` (and at once when none is held
    /// yet), until the task is dropped.
    pub async fn keep_fresh(self: Arc<Self>) {
        let mut first = !self.is_loaded();
        loop {
            if !first {
                tokio::time::sleep(self.refresh).await;
            }
            first = false;
            match self.reload().await {
                Ok(count) => tracing::debug!(jwks = %self.location, keys = count, "JWKS read"),
                Err(error) => tracing::warn!(
                    jwks = %self.location,
                    %error,
                    "cannot read the JWKS; the keys held stay in use"
                ),
            }
        }
    }
}

fn read_file(path: &PathBuf) -> Result<KeySet, String> {
    let bytes =
        std::fs::read(path).map_err(|error| format!("cannot read {}: {error}", path.display()))?;
    KeySet::from_jwks(&bytes).map_err(|error| format!("{}: {error}", path.display()))
}

async fn fetch(client: &reqwest::Client, url: &reqwest::Url) -> Result<KeySet, String> {
    let mut response = client
        .get(url.clone())
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|error| format!("fetch failed: {}", error.without_url()))?;
    if !response.status().is_success() {
        return Err(format!("answered {}", response.status()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|error| format!("reading the body failed: {}", error.without_url()))?
    {
        if body.len() + chunk.len() > JWKS_MAX_BYTES {
            return Err(format!("the document is over {JWKS_MAX_BYTES} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    KeySet::from_jwks(&body)
}
