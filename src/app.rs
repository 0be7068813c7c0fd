//! Builds the running service from a validated [`Config`] and an already
//! bound listener, so tests run the real server on port 0 and read its
//! address back.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::backplane::{Backplane, HistoryLimits, MemoryBackplane};
use crate::config::{Config, ConfigError};
use crate::http::{self, HttpSettings, PublishKeys, SeedTopic};
use crate::hub::{Hub, HubSettings, TopicName};
use crate::listener::DrainingAcceptor;
use crate::server::{self, ServerSettings};
use crate::shutdown::{self, DrainReport};

/// Once the streams are closed, connections still open (idle keep-alive,
/// a client that stopped reading) get this long before they are dropped.
const CONNECTION_CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Longest pause between two sweeps of expired history.
const EXPIRY_SWEEP_MAX: Duration = Duration::from_secs(30);

pub struct App {
    config: Config,
    hub: Hub,
    listener: std::net::TcpListener,
    local_addr: SocketAddr,
    publish_keys: PublishKeys,
    memory: Option<Arc<MemoryBackplane>>,
}

impl App {
    /// Everything but serving: fails only on configuration it can't use.
    pub fn build(config: Config, listener: std::net::TcpListener) -> Result<Self, ConfigError> {
        let publish_keys = PublishKeys::new(config.publish_keys()?);
        let settings = HubSettings {
            heartbeat: (!config.heartbeat.interval.is_zero()).then_some(config.heartbeat.interval),
            retry: config.stream.retry,
            max_subscribers: config.limits.max_subscribers,
            max_topics_per_subscription: config.limits.max_topics_per_subscription,
            max_event_bytes: config.limits.max_event_bytes,
        };
        let limits = HistoryLimits {
            size: config.history.size,
            ttl: config.history.ttl,
        };
        let mut memory = None;
        let hub = Hub::new(settings, config.stream.queue, |fan_out| {
            let backplane = Arc::new(MemoryBackplane::new(limits, fan_out));
            memory = Some(backplane.clone());
            backplane as Arc<dyn Backplane>
        });
        let local_addr = listener
            .local_addr()
            .map_err(|error| ConfigError::Invalid {
                key: "listen",
                reason: error.to_string(),
            })?;
        Ok(Self {
            config,
            hub,
            listener,
            local_addr,
            publish_keys,
            memory,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// Serves until `shutdown` resolves, then drains (see `shutdown`) and
    /// returns once every connection is closed.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> io::Result<DrainReport> {
        let App {
            config,
            hub,
            listener,
            local_addr,
            publish_keys,
            memory,
        } = self;
        let stop_accepting = CancellationToken::new();
        let stop_server = CancellationToken::new();
        let acceptor = DrainingAcceptor::new(listener, stop_accepting.clone())?;
        let endpoint = http::routes(
            hub.clone(),
            HttpSettings {
                max_body_bytes: config.limits.max_body_bytes,
                cors: config.cors.clone(),
                publish_keys: publish_keys.clone(),
                seed_topic: SeedTopic(
                    TopicName::parse(&config.event_stream.topic).expect("validated in Config"),
                ),
            },
        );
        let server = tokio::spawn(server::serve(
            acceptor,
            endpoint,
            ServerSettings {
                header_read_timeout: config.limits.header_read_timeout,
                write_timeout: (!config.stream.write_timeout.is_zero())
                    .then_some(config.stream.write_timeout),
            },
            stop_server.clone(),
            CONNECTION_CLOSE_GRACE,
        ));
        let sweeper = memory.map(|memory| {
            let every = (config.history.ttl / 4).clamp(Duration::from_millis(10), EXPIRY_SWEEP_MAX);
            tokio::spawn(async move {
                let mut ticks = tokio::time::interval(every);
                loop {
                    ticks.tick().await;
                    memory.expire(std::time::Instant::now());
                }
            })
        });
        if publish_keys.is_open() {
            tracing::warn!(
                "publishing is open to anyone who can reach {local_addr}: set auth.publish_keys to require a key"
            );
        }
        tracing::info!(%local_addr, backplane = ?config.backplane.kind, "ssehub ready");

        shutdown.await;
        let report = shutdown::drain(&hub, &config.drain, &stop_accepting).await;
        stop_server.cancel();
        if let Some(sweeper) = sweeper {
            sweeper.abort();
        }
        server
            .await
            .map_err(|error| io::Error::other(format!("server task failed: {error}")))?;
        tracing::info!(
            closed = report.streams_closed,
            cut = report.streams_cut,
            "drain complete"
        );
        Ok(report)
    }
}
