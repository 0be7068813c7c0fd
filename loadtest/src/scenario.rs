//! Scenario files: the load (subscribers, topics, rates, sizes), never the
//! server. The files in `loadtest/scenarios/` are built into the binary so a
//! bare name works from anywhere; a path to any other TOML file works too.

use anyhow::{Context, Result, bail};
use clap::Args;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Duration;

/// Built-in scenarios, by name.
pub const BUILT_IN: &[(&str, &str)] = &[
    ("smoke", include_str!("../scenarios/smoke.toml")),
    (
        "broadcast-1k",
        include_str!("../scenarios/broadcast-1k.toml"),
    ),
    (
        "broadcast-10k",
        include_str!("../scenarios/broadcast-10k.toml"),
    ),
    ("saturate-1k", include_str!("../scenarios/saturate-1k.toml")),
    ("idle-10k", include_str!("../scenarios/idle-10k.toml")),
    ("idle-20k", include_str!("../scenarios/idle-20k.toml")),
    ("topics-10k", include_str!("../scenarios/topics-10k.toml")),
    (
        "rolling-restart",
        include_str!("../scenarios/rolling-restart.toml"),
    ),
];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    pub description: String,
    pub subscribers: u32,
    /// Subscriber `i` takes topic `i % topics`.
    #[serde(default = "one")]
    pub topics: u32,
    /// Subscriber processes; 0 = as many as the open-file limit requires.
    #[serde(default)]
    pub workers: u32,
    #[serde(default)]
    pub connect: ConnectLoad,
    /// Absent: the subscribers stay idle (see `idle`).
    pub publish: Option<PublishLoad>,
    #[serde(default)]
    pub idle: IdleLoad,
    #[serde(default)]
    pub drain: DrainLoad,
    /// Present: the publish rate is stepped up until the run is no longer clean.
    pub saturate: Option<SaturateLoad>,
    #[serde(default)]
    pub reconnect: ReconnectLoad,
}

/// What a subscriber does when its stream ends: by default nothing (the
/// stream counts as closed early); with `enabled`, what EventSource does —
/// wait the server's `retry:` time (or `default_retry`) and reopen with
/// `Last-Event-ID`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReconnectLoad {
    pub enabled: bool,
    /// The wait before reconnecting when the server sent no `retry:`.
    #[serde(with = "humantime_serde")]
    pub default_retry: Duration,
}

impl Default for ReconnectLoad {
    fn default() -> Self {
        Self {
            enabled: false,
            // What browsers use when the server says nothing (Chromium and
            // Firefox: 3 s, the HTML spec's suggestion).
            default_retry: Duration::from_secs(3),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectLoad {
    /// Connection attempts in flight at once (per run, split over workers).
    pub concurrency: u32,
    /// New connections per second; 0 = as fast as `concurrency` allows.
    pub rate_per_second: f64,
    /// Give up on a subscriber whose stream hasn't opened by then.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Pause after the last connect, before measuring and publishing, so the
    /// server has registered every subscription.
    #[serde(with = "humantime_serde")]
    pub settle: Duration,
    /// Subscriber threads per worker process.
    pub client_threads: u32,
}

impl Default for ConnectLoad {
    fn default() -> Self {
        Self {
            // Enough to open 10k streams in seconds without a SYN flood on
            // loopback (the accept backlog is typically 511..4096).
            concurrency: 256,
            rate_per_second: 0.0,
            timeout: Duration::from_secs(30),
            settle: Duration::from_secs(1),
            // The harness shares two cores with the server: two threads let
            // the subscriber side use both when the server waits.
            client_threads: 2,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishLoad {
    pub rate_per_second: f64,
    /// Publish for this long; or give `count`.
    #[serde(default, with = "humantime_serde")]
    pub duration: Option<Duration>,
    pub count: Option<u64>,
    #[serde(default = "default_payload_bytes")]
    pub payload_bytes: usize,
    /// Keep-alive publish connections; publishes go out on whichever is free.
    #[serde(default = "default_publish_connections")]
    pub connections: u32,
    #[serde(default = "default_publish_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

impl PublishLoad {
    /// Publishes in the run: `count`, or `rate × duration`.
    pub fn total(&self) -> u64 {
        match (self.count, self.duration) {
            (Some(count), _) => count,
            (None, Some(duration)) => {
                (self.rate_per_second * duration.as_secs_f64()).round() as u64
            }
            (None, None) => 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdleLoad {
    /// How long idle subscribers stay connected (when nothing is published)
    /// before the end figures are taken.
    #[serde(with = "humantime_serde")]
    pub hold: Duration,
}

impl Default for IdleLoad {
    fn default() -> Self {
        Self {
            hold: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DrainLoad {
    /// After the last publish, how long to wait for deliveries still on their way.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for DrainLoad {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaturateLoad {
    pub start_rate_per_second: f64,
    /// Each step multiplies the rate by this.
    pub growth_factor: f64,
    /// Stop stepping here even if still clean.
    pub max_rate_per_second: f64,
    #[serde(with = "humantime_serde")]
    pub step_duration: Duration,
    /// A step is clean when nothing is lost, duplicated or out of order, every
    /// publish was answered 2xx, and p99 latency stays at or below this.
    #[serde(with = "humantime_serde")]
    pub max_p99: Duration,
    /// Bisection steps between the last clean and the first unclean rate.
    #[serde(default)]
    pub refine_steps: u32,
}

/// False for NaN too, which a plain `<= 0.0` would let through.
fn is_positive(value: f64) -> bool {
    value > 0.0
}

fn one() -> u32 {
    1
}
fn default_payload_bytes() -> usize {
    256
}
fn default_publish_connections() -> u32 {
    4
}
fn default_publish_timeout() -> Duration {
    Duration::from_secs(10)
}

/// Command-line changes to a scenario's load.
#[derive(Debug, Clone, Default, Args)]
pub struct LoadOverrides {
    /// Number of subscriber connections.
    #[arg(long)]
    pub subscribers: Option<u32>,
    /// Number of topics the subscribers spread over.
    #[arg(long)]
    pub topics: Option<u32>,
    /// Subscriber worker processes (0 = as many as the open-file limit needs).
    #[arg(long)]
    pub workers: Option<u32>,
    /// Publishes per second.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Publish for this long (e.g. `10s`); replaces the scenario's count.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// Publish this many events; replaces the scenario's duration.
    #[arg(long)]
    pub count: Option<u64>,
    /// Payload size in bytes.
    #[arg(long)]
    pub payload_bytes: Option<usize>,
    /// Keep-alive publish connections.
    #[arg(long)]
    pub publish_connections: Option<u32>,
    /// Connection attempts in flight at once.
    #[arg(long)]
    pub connect_concurrency: Option<u32>,
    /// New connections per second (0 = unlimited).
    #[arg(long)]
    pub connect_rate: Option<f64>,
    /// Subscriber threads per worker process.
    #[arg(long)]
    pub client_threads: Option<u32>,
    /// Idle hold time when nothing is published (e.g. `30s`).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub hold: Option<Duration>,
    /// Reopen streams that end, with `Last-Event-ID`, honouring `retry:`.
    #[arg(long)]
    pub reconnect: bool,
}

impl Scenario {
    /// Loads a built-in scenario by name, or a TOML file by path.
    pub fn load(name_or_path: &str) -> Result<Self> {
        let text = match BUILT_IN.iter().find(|(name, _)| *name == name_or_path) {
            Some((_, text)) => (*text).to_owned(),
            None if Path::new(name_or_path).exists() => std::fs::read_to_string(name_or_path)
                .with_context(|| format!("reading {name_or_path}"))?,
            None => bail!(
                "no scenario {name_or_path:?}: give a file or one of {}",
                BUILT_IN
                    .iter()
                    .map(|(name, _)| *name)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        let scenario: Self =
            toml::from_str(&text).with_context(|| format!("scenario {name_or_path}"))?;
        scenario.validate()?;
        Ok(scenario)
    }

    pub fn apply(&mut self, overrides: &LoadOverrides) -> Result<()> {
        let o = overrides;
        if let Some(v) = o.subscribers {
            self.subscribers = v;
        }
        if let Some(v) = o.topics {
            self.topics = v;
        }
        if let Some(v) = o.workers {
            self.workers = v;
        }
        if let Some(v) = o.connect_concurrency {
            self.connect.concurrency = v;
        }
        if let Some(v) = o.connect_rate {
            self.connect.rate_per_second = v;
        }
        if let Some(v) = o.client_threads {
            self.connect.client_threads = v;
        }
        if let Some(v) = o.hold {
            self.idle.hold = v;
        }
        if o.reconnect {
            self.reconnect.enabled = true;
        }
        let publish_overridden = o.rate.is_some()
            || o.duration.is_some()
            || o.count.is_some()
            || o.payload_bytes.is_some()
            || o.publish_connections.is_some();
        if publish_overridden {
            let publish = self.publish.get_or_insert_with(|| PublishLoad {
                rate_per_second: 100.0,
                duration: None,
                count: Some(100),
                payload_bytes: default_payload_bytes(),
                connections: default_publish_connections(),
                timeout: default_publish_timeout(),
            });
            if let Some(v) = o.rate {
                publish.rate_per_second = v;
            }
            if let Some(v) = o.duration {
                publish.duration = Some(v);
                publish.count = None;
            }
            if let Some(v) = o.count {
                publish.count = Some(v);
                publish.duration = None;
            }
            if let Some(v) = o.payload_bytes {
                publish.payload_bytes = v;
            }
            if let Some(v) = o.publish_connections {
                publish.connections = v;
            }
        }
        self.validate()
    }

    fn validate(&self) -> Result<()> {
        if self.subscribers == 0 {
            bail!("scenario {}: subscribers must be at least 1", self.name);
        }
        if self.topics == 0 || self.topics > self.subscribers {
            bail!(
                "scenario {}: topics must be between 1 and the number of subscribers",
                self.name
            );
        }
        if self.connect.concurrency == 0 || self.connect.client_threads == 0 {
            bail!(
                "scenario {}: connect.concurrency and connect.client_threads must be at least 1",
                self.name
            );
        }
        if let Some(publish) = &self.publish {
            if !is_positive(publish.rate_per_second) {
                bail!(
                    "scenario {}: publish.rate_per_second must be positive",
                    self.name
                );
            }
            if publish.count.is_none() && publish.duration.is_none() {
                bail!(
                    "scenario {}: publish needs a count or a duration",
                    self.name
                );
            }
            if publish.connections == 0 {
                bail!(
                    "scenario {}: publish.connections must be at least 1",
                    self.name
                );
            }
        }
        if let Some(saturate) = &self.saturate {
            if self.publish.is_none() {
                bail!(
                    "scenario {}: saturate needs a [publish] section (payload, connections)",
                    self.name
                );
            }
            if !is_positive(saturate.growth_factor - 1.0)
                || !is_positive(saturate.start_rate_per_second)
            {
                bail!(
                    "scenario {}: saturate needs start_rate_per_second > 0 and growth_factor > 1",
                    self.name
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_built_in_scenario_loads() {
        for (name, _) in BUILT_IN {
            let scenario = Scenario::load(name).unwrap();
            assert_eq!(scenario.name, *name);
        }
    }

    #[test]
    fn broadcast_1k_matches_its_description() {
        let scenario = Scenario::load("broadcast-1k").unwrap();
        let publish = scenario.publish.unwrap();
        assert_eq!((scenario.subscribers, scenario.topics), (1_000, 1));
        assert_eq!(
            (
                publish.rate_per_second,
                publish.payload_bytes,
                publish.total()
            ),
            (200.0, 256, 2_000)
        );
    }

    #[test]
    fn overrides_replace_count_with_duration() {
        let mut scenario = Scenario::load("smoke").unwrap();
        scenario
            .apply(&LoadOverrides {
                subscribers: Some(10),
                rate: Some(50.0),
                duration: Some(Duration::from_secs(2)),
                ..LoadOverrides::default()
            })
            .unwrap();
        let publish = scenario.publish.unwrap();
        assert_eq!(
            (scenario.subscribers, publish.count, publish.total()),
            (10, None, 100)
        );
    }

    #[test]
    fn invalid_loads_are_refused() {
        let mut scenario = Scenario::load("smoke").unwrap();
        let more_topics_than_subscribers = LoadOverrides {
            subscribers: Some(2),
            topics: Some(3),
            ..LoadOverrides::default()
        };
        assert!(scenario.apply(&more_topics_than_subscribers).is_err());
        assert!(
            toml::from_str::<Scenario>("name='x'\ndescription=''\nsubscribers=1\nbogus=1").is_err()
        );
    }
}
