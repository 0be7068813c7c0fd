//! `ssehub token`: mints a token from the hub's own configuration (the
//! same layers as the server: defaults < `--config` < `SSEHUB_*`), so that
//! trying auth needs no JWT library and no guess at how the secret is used.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::auth::{MintError, MintRequest, Minted, mint};
use crate::config::{Config, ConfigError};

/// The arguments of `ssehub token`.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// The subject (`sub`): who the token is for; `{sub}` in a pattern
    /// stands for it.
    #[arg(long)]
    pub sub: Option<String>,
    /// A topic pattern the token may publish to (`ssehub.publish`), e.g.
    /// `orders.*`; repeat for several.
    #[arg(long = "publish", value_name = "PATTERN")]
    pub publish: Vec<String>,
    /// A topic pattern the token may subscribe to (`ssehub.subscribe`),
    /// e.g. `user.{sub}`; repeat for several.
    #[arg(long = "subscribe", value_name = "PATTERN")]
    pub subscribe: Vec<String>,
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
