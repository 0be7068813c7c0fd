//! Where the load goes: subscribe and publish request templates. A scenario
//! names the load; a target names the server. Presets cover ssehub (its own
//! routes, and its Mercure routes), Nchan and the floor (`../shared/floor`,
//! the least work an SSE fan-out server can do); every part can be
//! overridden for any other SSE server.

use crate::http::request::Header;
use crate::mercure;
use anyhow::{Result, bail};
use clap::{Args, ValueEnum};
use serde::{Deserialize, Serialize};

/// ssehub's default listen address (contract: `listen = "127.0.0.1:8080"`).
const SSEHUB_BASE_URL: &str = "http://127.0.0.1:8080";
/// Where `loadtest/peers/nchan.conf` listens when the compare script runs it.
const NCHAN_BASE_URL: &str = "http://127.0.0.1:8081";
/// Where the compare script runs the floor server.
const FLOOR_BASE_URL: &str = "http://127.0.0.1:8082";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// `GET /v1/events?topic=`, `POST /v1/topics/{topic}/events` with `{"data": ...}`.
    Ssehub,
    /// Nchan: `GET /sub/{topic}` (EventSource), `POST /pub/{topic}` with the raw payload.
    Nchan,
    /// The floor (a yardstick, not a competitor): Nchan's request shapes,
    /// `GET /sub/{topic}` and `POST /pub/{topic}` with the raw payload.
    Floor,
    /// A Mercure hub (ssehub's Mercure routes by default):
    /// `GET /.well-known/mercure?topic=<IRI>`, and a form `POST
    /// /.well-known/mercure` (`topic`, `data`) with a publisher JWT,
    /// answered with the update's id.
    Mercure,
}

/// What a 2xx answer to a publish must say besides its status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PublishAnswer {
    /// Nothing: the status is the answer.
    #[default]
    Status,
    /// The update's id, as the whole `text/plain` body (Mercure): a 2xx
    /// without one is a failed publish.
    UpdateId,
}

#[derive(Debug, Clone, Args)]
pub struct TargetArgs {
    /// Server preset whose request templates are used.
    #[arg(long, value_enum, default_value = "ssehub")]
    pub target: Preset,
    /// Replaces the preset's `http://host:port` (ssehub and mercure: 127.0.0.1:8080, nchan: 127.0.0.1:8081, floor: 127.0.0.1:8082).
    #[arg(long)]
    pub base_url: Option<String>,
    /// Subscribe URL template; `{topic}` is replaced by the topic name,
    /// `{topic_uri}` by `https://example.com/t/<topic name>` form-encoded.
    #[arg(long)]
    pub subscribe_url: Option<String>,
    /// Publish URL template; `{topic}` and `{topic_uri}` as in
    /// `--subscribe-url`, `{event_key}` by `<run>-<topic index>-<seq>`.
    #[arg(long)]
    pub publish_url: Option<String>,
    /// Publish body template; `{payload}` is replaced by the payload token,
    /// `{topic}`, `{topic_uri}` and `{event_key}` as in `--publish-url`
    /// (with `id={event_key}`, a Mercure hub's ids are the publisher's).
    #[arg(long)]
    pub publish_body: Option<String>,
    /// Content type of the publish body.
    #[arg(long)]
    pub content_type: Option<String>,
    /// Extra header on every publish, `Name: value` (e.g. `Authorization: Bearer KEY`). Repeatable.
    #[arg(long = "publish-header", value_name = "HEADER")]
    pub publish_headers: Vec<String>,
    /// Extra header on every subscribe, `Name: value`. Repeatable.
    #[arg(long = "subscribe-header", value_name = "HEADER")]
    pub subscribe_headers: Vec<String>,
    /// Times an unanswered publish (timeout, broken connection, 5xx, 409) is
    /// sent again, with the `Idempotency-Key` every publish then carries.
    /// Default: 5 for ssehub, 0 (no key, no retry) for servers without
    /// idempotent publish, whose retries could publish twice.
    #[arg(long)]
    pub publish_retries: Option<u32>,
    /// The Mercure hub's publisher key (an HMAC secret): the `mercure`
    /// target publishes with an HS256 token signed with it that may
    /// publish to every topic (`mercure.publish: ["*"]`). Other targets
    /// ignore it.
    #[arg(long, env = "LOADTEST_MERCURE_PUBLISHER_KEY", hide_env_values = true)]
    pub mercure_publisher_key: Option<String>,
}

/// A resolved target: templates with the base URL filled in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    pub name: String,
    pub subscribe_url: String,
    pub subscribe_headers: Vec<(String, String)>,
    pub publish_url: String,
    pub publish_body: String,
    pub publish_content_type: String,
    pub publish_headers: Vec<(String, String)>,
    /// See [`TargetArgs::publish_retries`]; above 0, publishes carry keys.
    pub publish_retries: u32,
    /// What a 2xx publish answer must carry.
    #[serde(default)]
    pub publish_answer: PublishAnswer,
}

/// Retries of an unanswered publish by default, against ssehub: with the
/// backoff of `publisher`, five span about three seconds (a restart, a
/// failover).
const SSEHUB_PUBLISH_RETRIES: u32 = 5;

impl Target {
    pub fn from_args(args: &TargetArgs) -> Result<Self> {
        let (default_base, subscribe, publish, body, content_type) = match args.target {
            Preset::Ssehub => (
                SSEHUB_BASE_URL,
                "{base}/v1/events?topic={topic}",
                "{base}/v1/topics/{topic}/events",
                r#"{"data":"{payload}"}"#,
                "application/json",
            ),
            Preset::Nchan => (
                NCHAN_BASE_URL,
                "{base}/sub/{topic}",
                "{base}/pub/{topic}",
                "{payload}",
                "text/plain",
            ),
            Preset::Floor => (
                FLOOR_BASE_URL,
                "{base}/sub/{topic}",
                "{base}/pub/{topic}",
                "{payload}",
                "text/plain",
            ),
            // The payload token is form-safe as it is (letters, digits, dots).
            Preset::Mercure => (
                SSEHUB_BASE_URL,
                "{base}/.well-known/mercure?topic={topic_uri}",
                "{base}/.well-known/mercure",
                "topic={topic_uri}&data={payload}",
                "application/x-www-form-urlencoded",
            ),
        };
        let base = args
            .base_url
            .as_deref()
            .unwrap_or(default_base)
            .trim_end_matches('/');
        let with_base = |template: &str| template.replace("{base}", base);
        Ok(Self {
            name: format!("{:?}", args.target).to_lowercase(),
            subscribe_url: args
                .subscribe_url
                .clone()
                .unwrap_or_else(|| with_base(subscribe)),
            subscribe_headers: parse_headers(&args.subscribe_headers)?,
            publish_url: args
                .publish_url
                .clone()
                .unwrap_or_else(|| with_base(publish)),
            publish_body: args.publish_body.clone().unwrap_or_else(|| body.to_owned()),
            publish_content_type: args
                .content_type
                .clone()
                .unwrap_or_else(|| content_type.to_owned()),
            publish_headers: publish_headers(args)?,
            publish_retries: args.publish_retries.unwrap_or(match args.target {
                // ssehub's Mercure publish takes `Idempotency-Key` as its
                // own routes do.
                Preset::Ssehub | Preset::Mercure => SSEHUB_PUBLISH_RETRIES,
                Preset::Nchan | Preset::Floor => 0,
            }),
            publish_answer: match args.target {
                Preset::Mercure => PublishAnswer::UpdateId,
                Preset::Ssehub | Preset::Nchan | Preset::Floor => PublishAnswer::Status,
            },
        })
    }
}

/// The `--publish-header`s, plus the Mercure target's publisher token
/// unless an `Authorization` header was given.
fn publish_headers(args: &TargetArgs) -> Result<Vec<(String, String)>> {
    let mut headers = parse_headers(&args.publish_headers)?;
    let has_authorization = headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("authorization"));
    match (args.target, &args.mercure_publisher_key) {
        (Preset::Mercure, Some(key)) if !has_authorization => headers.push((
            "Authorization".to_owned(),
            format!("Bearer {}", mercure::publisher_token(key)?),
        )),
        (Preset::Mercure, None) if !has_authorization => bail!(
            "--target mercure publishes with a publisher JWT: give the hub's publisher key \
             with --mercure-publisher-key (or LOADTEST_MERCURE_PUBLISHER_KEY), or a \
             --publish-header 'Authorization: Bearer <token>'"
        ),
        // Other targets don't speak Mercure: the key (say, exported for a
        // whole sitting) is not theirs to use.
        _ => {}
    }
    Ok(headers)
}

fn parse_headers(texts: &[String]) -> Result<Vec<(String, String)>> {
    texts
        .iter()
        .map(|text| Header::parse(text).map(|h| (h.name, h.value)))
        .collect()
}

pub fn headers(pairs: &[(String, String)]) -> Vec<Header> {
    pairs
        .iter()
        .map(|(name, value)| Header {
            name: name.clone(),
            value: value.clone(),
        })
        .collect()
}

/// Topic names carry the run id, so a run never sees another run's history.
pub fn topic_name(run_id: &str, index: u32) -> String {
    format!("lt-{run_id}-{index}")
}

/// In publish templates: `<run>-<topic index>-<seq>`, a name of the publish
/// unique to it (its `Idempotency-Key` too), e.g. a Mercure publisher's own
/// `id` (`--publish-body 'topic={topic_uri}&id={event_key}&data={payload}'`).
pub const EVENT_KEY_PLACEHOLDER: &str = "{event_key}";

/// Fills `{topic}`, `{topic_uri}` (see [`mercure::encoded_topic_uri`]) and
/// `{payload}` into a template.
pub fn render(template: &str, topic: &str, payload: &str) -> String {
    let template = if template.contains(mercure::TOPIC_URI_PLACEHOLDER) {
        std::borrow::Cow::Owned(template.replace(
            mercure::TOPIC_URI_PLACEHOLDER,
            &mercure::encoded_topic_uri(topic),
        ))
    } else {
        std::borrow::Cow::Borrowed(template)
    };
    template
        .replace("{topic}", topic)
        .replace("{payload}", payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrapper {
        #[command(flatten)]
        target: TargetArgs,
    }

    fn target(args: &[&str]) -> Target {
        let wrapper = Wrapper::parse_from(std::iter::once("test").chain(args.iter().copied()));
        Target::from_args(&wrapper.target).unwrap()
    }

    #[test]
    fn ssehub_preset() {
        let t = target(&[]);
        assert_eq!(
            t.subscribe_url,
            "http://127.0.0.1:8080/v1/events?topic={topic}"
        );
        assert_eq!(
            t.publish_url,
            "http://127.0.0.1:8080/v1/topics/{topic}/events"
        );
        assert_eq!(render(&t.publish_body, "a", "tok"), r#"{"data":"tok"}"#);
        assert_eq!(t.publish_content_type, "application/json");
    }

    #[test]
    fn nchan_preset_with_overrides() {
        let t = target(&[
            "--target",
            "nchan",
            "--base-url",
            "http://127.0.0.1:9000/",
            "--publish-header",
            "Authorization: Bearer k",
        ]);
        assert_eq!(t.name, "nchan");
        assert_eq!(
            render(&t.subscribe_url, "lt-x-1", ""),
            "http://127.0.0.1:9000/sub/lt-x-1"
        );
        assert_eq!(t.publish_body, "{payload}");
        assert_eq!(
            t.publish_headers,
            vec![("Authorization".into(), "Bearer k".into())]
        );
    }

    #[test]
    fn floor_preset() {
        let t = target(&["--target", "floor"]);
        assert_eq!(t.name, "floor");
        assert_eq!(
            render(&t.subscribe_url, "lt-x-1", ""),
            "http://127.0.0.1:8082/sub/lt-x-1"
        );
        assert_eq!(
            render(&t.publish_url, "lt-x-1", ""),
            "http://127.0.0.1:8082/pub/lt-x-1"
        );
        assert_eq!(t.publish_content_type, "text/plain");
    }

    const MERCURE_KEY: &str = "!ChangeThisMercureHubJWTSecretKey!";

    #[test]
    fn mercure_preset_subscribes_by_topic_iri_and_publishes_a_form() {
        let t = target(&[
            "--target",
            "mercure",
            "--mercure-publisher-key",
            MERCURE_KEY,
        ]);
        assert_eq!(t.name, "mercure");
        assert_eq!(
            render(&t.subscribe_url, "lt-x-1", ""),
            "http://127.0.0.1:8080/.well-known/mercure?topic=https%3A%2F%2Fexample.com%2Ft%2Flt-x-1"
        );
        assert_eq!(
            render(&t.publish_url, "lt-x-1", ""),
            "http://127.0.0.1:8080/.well-known/mercure"
        );
        assert_eq!(t.publish_content_type, "application/x-www-form-urlencoded");
        let body = render(&t.publish_body, "lt-x-1", "r1.0.3.2.17.xx");
        let fields: Vec<(String, String)> = form_urlencoded::parse(body.as_bytes())
            .map(|(name, value)| (name.into_owned(), value.into_owned()))
            .collect();
        assert_eq!(
            fields,
            vec![
                ("topic".into(), "https://example.com/t/lt-x-1".into()),
                ("data".into(), "r1.0.3.2.17.xx".into()),
            ]
        );
        assert_eq!(
            t.publish_retries, SSEHUB_PUBLISH_RETRIES,
            "ssehub's Mercure publish takes a key, so it is retried"
        );
        assert_eq!(t.publish_answer, PublishAnswer::UpdateId);
        let [(name, value)] = &t.publish_headers[..] else {
            panic!("one header: {:?}", t.publish_headers);
        };
        assert_eq!(name, "Authorization");
        assert_eq!(
            value.strip_prefix("Bearer "),
            Some(&*mercure::publisher_token(MERCURE_KEY).unwrap())
        );
    }

    #[test]
    fn mercure_preset_needs_a_publisher_key_or_token() {
        let parse = |args: &[&str]| {
            let wrapper = Wrapper::parse_from(std::iter::once("test").chain(args.iter().copied()));
            Target::from_args(&wrapper.target)
        };
        let error = parse(&["--target", "mercure"]).unwrap_err().to_string();
        assert!(error.contains("--mercure-publisher-key"), "{error}");
        let t = parse(&[
            "--target",
            "mercure",
            "--publish-header",
            "authorization: Bearer given",
        ])
        .unwrap();
        assert_eq!(
            t.publish_headers,
            vec![("authorization".into(), "Bearer given".into())]
        );
        let own = target(&["--mercure-publisher-key", MERCURE_KEY]);
        assert!(
            own.publish_headers.is_empty(),
            "ssehub's routes take no Mercure token"
        );
        assert_eq!(own.publish_answer, PublishAnswer::Status);
    }

    #[test]
    fn explicit_templates_win() {
        let t = target(&[
            "--subscribe-url",
            "http://h/s?t={topic}",
            "--content-type",
            "text/x",
        ]);
        assert_eq!(t.subscribe_url, "http://h/s?t={topic}");
        assert_eq!(t.publish_content_type, "text/x");
    }
}
