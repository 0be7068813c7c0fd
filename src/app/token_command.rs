//! `ssehub token`: mints a token from the hub's own configuration (the
//! same layers as the server: defaults < `--config` < `SSEHUB_*`), so that
//! trying auth needs no JWT library and no guess at how the secret is used.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::auth::{MintError, MintRequest, Minted, mint};
use crate::config::{Config, ConfigError};
use crate::http::{MercureDraft, MercureMintError, MercureMintRequest, mint_mercure_token};

/// The arguments of `ssehub token`.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// The subject (`sub`): who the token is for; `{sub}` in a pattern
    /// stands for it.
    #[arg(long)]
    pub sub: Option<String>,
    /// A topic pattern the token may publish to (`ssehub.publish`), e.g.
    /// `orders.*`; repeat for several. With `--mercure`: a Mercure topic
    /// selector (`*`, an exact topic, with 7 a URI template).
    #[arg(long = "publish", value_name = "PATTERN")]
    pub publish: Vec<String>,
    /// A topic pattern the token may subscribe to (`ssehub.subscribe`),
    /// e.g. `user.{sub}`; repeat for several. With `--mercure`: as
    /// `--publish`.
    #[arg(long = "subscribe", value_name = "PATTERN")]
    pub subscribe: Vec<String>,
    /// Mint a Mercure token (signed with `mercure.publisher_jwt` when it
    /// may publish, else `mercure.subscriber_jwt`): `7` a draft-07 token
    /// (`mercure` claim), `8` a draft-08 access token (`typ: at+jwt`,
    /// `authorization_details`).
    #[arg(long, value_name = "DRAFT")]
    pub mercure: Option<MercureDraft>,
    /// With `--mercure 8`: a URL pattern the token may publish to
    /// (`match_type: urlpattern`), e.g. `https://example.com/books/:id`.
    #[arg(long = "publish-urlpattern", value_name = "PATTERN")]
    pub publish_url_patterns: Vec<String>,
    /// With `--mercure 8`: a URL pattern the token may subscribe to.
    #[arg(long = "subscribe-urlpattern", value_name = "PATTERN")]
    pub subscribe_url_patterns: Vec<String>,
    /// With `--mercure`: a JSON object shown in the subscriber's active
    /// subscriptions (`mercure.payload`, or the subscribe detail's).
    #[arg(long, value_name = "JSON", value_parser = parse_payload)]
    pub payload: Option<serde_json::Value>,
    /// How long the token is valid (`exp` = now + TTL), e.g. `30m`, `1h`, `7d`.
    #[arg(long, default_value = "1h", value_parser = parse_ttl)]
    pub ttl: Duration,
    /// The audience (`aud`); defaults to `auth.jwt.audience` when set.
    #[arg(long)]
    pub aud: Option<String>,
    /// The issuer (`iss`); defaults to `auth.jwt.issuer` when set.
    #[arg(long)]
    pub iss: Option<String>,
    /// A PEM private key (RSA, EC P-256/P-384, Ed25519) to sign with, for a
    /// hub that verifies with `auth.jwt.public_key_file` or a JWKS; without
    /// it the token is HS256 with `auth.jwt.secret`.
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// The `kid` header, for a hub that looks the key up in a JWKS.
    #[arg(long, value_name = "ID")]
    pub kid: Option<String>,
    /// Print curl command lines that publish and subscribe with the token
    /// on the configured `listen` address, after the token.
    #[arg(long)]
    pub curl: bool,
}

/// Why `ssehub token` printed no token.
#[derive(Debug, thiserror::Error)]
pub enum TokenCommandError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Mint(#[from] MintError),
    #[error(transparent)]
    MercureMint(#[from] MercureMintError),
    #[error("--{0} is for Mercure tokens: add --mercure 7 or --mercure 8")]
    MercureOnly(&'static str),
}

/// `--payload`: JSON text.
fn parse_payload(text: &str) -> Result<serde_json::Value, String> {
    serde_json::from_str(text)
        .map_err(|error| format!("not JSON ({error}), e.g. '{{\"user\": 42}}'"))
}

/// `--ttl`: a humantime duration (`90s`, `30m`, `1h`, `7d`).
fn parse_ttl(text: &str) -> Result<Duration, String> {
    let ttl = humantime::parse_duration(text)
        .map_err(|error| format!("{error}; expected a duration like \"30m\", \"1h\" or \"7d\""))?;
    if ttl < Duration::from_secs(1) {
        return Err("must be at least 1s, e.g. \"30m\" or \"1h\"".to_owned());
    }
    Ok(ttl)
}

/// What `ssehub token` prints: the token, and with `--curl` the command
/// lines after it; and a warning when the hub would refuse the token.
pub fn run(
    config: &Config,
    args: &TokenArgs,
) -> Result<(String, Option<&'static str>), TokenCommandError> {
    if let Some(draft) = args.mercure {
        return run_mercure(config, args, draft);
    }
    for (flag, given) in [
        ("publish-urlpattern", !args.publish_url_patterns.is_empty()),
        (
            "subscribe-urlpattern",
            !args.subscribe_url_patterns.is_empty(),
        ),
        ("payload", args.payload.is_some()),
    ] {
        if given {
            return Err(TokenCommandError::MercureOnly(flag));
        }
    }
    let settings = config.auth_settings()?;
    let request = MintRequest {
        subject: args.sub.clone(),
        publish: args.publish.clone(),
        subscribe: args.subscribe.clone(),
        ttl: args.ttl,
        issuer: args.iss.clone(),
        audience: args.aud.clone(),
        key_id: args.kid.clone(),
    };
    let minted = mint(&settings, args.key.as_deref(), &request)?;
    let mut out = format!("{}\n", minted.token);
    if args.curl {
        out.push_str(&curl_lines(config, &minted));
    }
    Ok((out, minted.warning))
}

/// A Mercure token, from `mercure.*` (checked as the hub checks it).
fn run_mercure(
    config: &Config,
    args: &TokenArgs,
    draft: MercureDraft,
) -> Result<(String, Option<&'static str>), TokenCommandError> {
    config.mercure_settings()?;
    let request = MercureMintRequest {
        draft,
        publish: args.publish.clone(),
        subscribe: args.subscribe.clone(),
        publish_url_patterns: args.publish_url_patterns.clone(),
        subscribe_url_patterns: args.subscribe_url_patterns.clone(),
        payload: args.payload.clone(),
        subject: args.sub.clone(),
        issuer: args.iss.clone(),
        audience: args.aud.clone(),
        ttl: args.ttl,
        key_id: args.kid.clone(),
    };
    let minted = mint_mercure_token(&config.mercure, args.key.as_deref(), &request)?;
    let mut out = format!("{}\n", minted.token);
    if args.curl {
        out.push_str(&mercure_curl_lines(config, &request, &minted.token));
    }
    let warning = (draft == MercureDraft::Draft07
        && config.mercure.protocol_version_compatibility == 8)
        .then_some(
            "mercure.protocol_version_compatibility is 8: the hub refuses draft-07 tokens; \
             mint one with --mercure 8",
        );
    Ok((out, warning))
}

/// A Mercure publish and subscription with the token.
fn mercure_curl_lines(config: &Config, request: &MercureMintRequest, token: &str) -> String {
    let hub = format!("http://{}/.well-known/mercure", reachable(config));
    let (selector_name, example) = match request.draft {
        MercureDraft::Draft07 => ("topic", "https://example.com/books/1"),
        MercureDraft::Draft08 => ("match", "https://example.com/books/1"),
    };
    let exact = |selectors: &[String]| {
        selectors
            .iter()
            .find(|selector| !selector.contains('{'))
            .map(|selector| {
                if selector == "*" {
                    example.to_owned()
                } else {
                    selector.clone()
                }
            })
    };
    let mut lines = String::new();
    if let Some(topic) = exact(&request.publish) {
        lines.push_str(&format!(
            "# publish an update to {topic}\n\
             curl -sS -H 'Authorization: Bearer {token}' -d 'topic={topic}' \
             -d 'data={{\"status\":\"shipped\"}}' '{hub}'\n"
        ));
    }
    if let Some(topic) = exact(&request.subscribe) {
        lines.push_str(&format!(
            "# subscribe to {topic} (Ctrl-C to stop)\n\
             curl -N -H 'Authorization: Bearer {token}' '{hub}?{selector_name}={topic}'\n"
        ));
    }
    lines
}

/// A publish and a subscribe with the token, on a topic of each grant.
fn curl_lines(config: &Config, minted: &Minted) -> String {
    let base = format!("http://{}", reachable(config));
    let mut lines = String::new();
    let first = |patterns: &[crate::auth::TopicPattern]| {
        patterns
            .iter()
            .find_map(|pattern| minted.example_topic(pattern))
    };
    if let Some(topic) = first(&minted.publish) {
        lines.push_str(&format!(
            "# publish an event to {topic}\n\
             curl -sS -X POST '{base}/v1/topics/{topic}/events' \
             -H 'Authorization: Bearer {token}' -H 'Content-Type: application/json' \
             -d '{{\"event\":\"order\",\"data\":{{\"status\":\"shipped\"}}}}'\n",
            token = minted.token
        ));
    }
    if let Some(topic) = first(&minted.subscribe) {
        lines.push_str(&format!(
            "# subscribe to {topic} (Ctrl-C to stop)\n\
             curl -N -H 'Authorization: Bearer {token}' '{base}/v1/events?topic={topic}'\n",
            token = minted.token
        ));
    }
    lines
}

/// Where a client on this machine reaches the configured `listen`: an
/// unspecified address (`0.0.0.0`, `::`) is not one to connect to.
fn reachable(config: &Config) -> String {
    let listen = &config.listen;
    match listen.host().parse::<IpAddr>() {
        Ok(ip) if ip.is_unspecified() => {
            format!("{}:{}", IpAddr::V4(Ipv4Addr::LOCALHOST), listen.port())
        }
        _ => listen.to_string(),
    }
}
