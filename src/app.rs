//! Builds the running service from a validated [`Config`] and an already
//! bound listener, so tests run the real server on port 0 and read its
//! address back. [`token_command`] is `ssehub token`.

pub mod token_command;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::auth::{AuthMetrics, Authenticator};
use crate::backplane::{self, HistoryBounds, HistoryLimits, IdempotencyLimits, Replica};
use crate::config::{Config, ConfigError};
use crate::http::{self, HttpSettings, TutorialTopic};
use crate::hub::{self, Hub, HubParts, HubSettings, LiveQueues};
use crate::model::TopicName;
use crate::server::{self, DrainingAcceptor, ServerSettings};
use crate::shutdown::{self, DrainReport, Running};

/// Once the streams are closed, connections still open (idle keep-alive,
/// a client that stopped reading) get this long before they are dropped.
const CONNECTION_CLOSE_GRACE: Duration = Duration::from_secs(1);

pub struct App {
    config: Config,
    hub: Hub,
    listener: std::net::TcpListener,
    local_addr: SocketAddr,
    authenticator: Authenticator,
    /// `mercure.*` checked and parsed; `None`: the protocol is off.
    mercure: Option<http::MercureSettings>,
}

impl App {
    /// Everything but serving: fails only on configuration it can't use (a
    /// backplane server that can't be reached yet is not such a failure:
    /// the hub starts not ready and keeps trying).
    pub async fn build(
        config: Config,
        listener: std::net::TcpListener,
    ) -> Result<Self, ConfigError> {
        let settings = HubSettings {
            heartbeat: config.heartbeat.interval(),
            retry: config.stream.retry,
            max_subscribers: config.limits.max_subscribers,
            max_topics_per_subscription: config.limits.max_topics_per_subscription,
            max_event_bytes: config.limits.max_event_bytes,
            queue: config.stream.queue,
            // Parked streams write without the coalescing window.
            shards: if config.stream.coalesce().is_some() {
                0
            } else {
                config.stream.shards
            },
        };
        // In order: every metric family (registered in /metrics order),
        // the live queues, the backplane that fans out into them, the hub.
        let (instruments, auth_metrics) = hub::metrics::register(AuthMetrics::register);
        let live_queues = Arc::new(LiveQueues::new(settings.queue, instruments.hub.clone()));
        let limits = HistoryLimits {
            size: config.history.size,
            ttl: config.history.ttl,
        };
        let bounds = HistoryBounds {
            max_topics: config.history.max_topics,
            max_bytes: config.history.max_bytes,
        };
        let replica = Replica {
            fan_out: live_queues.clone(),
            metrics: instruments.backplane.clone(),
        };
        let idempotency = IdempotencyLimits {
            window: config.limits.idempotency_window,
            max_keys: config.limits.idempotency_keys,
        };
        let backplane =
            backplane::connect(&config.backplane, limits, bounds, idempotency, replica).await?;
        let hub = Hub::from_parts(HubParts {
            settings,
            instruments,
            live_queues,
            backplane,
        });
        // Their threads and descriptors from the start, not at the first
        // stream parked.
        hub.start_writer_shards();
        let authenticator = Authenticator::new(config.auth_settings()?, Arc::new(auth_metrics))?;
        // Checked by `Config::validate` already; a bad key fails here too.
        let mercure = config.mercure_settings()?;
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
            authenticator,
            mercure,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// Serves until `shutdown` resolves, then drains and stops in the order
    /// `shutdown` owns; returns once every connection is closed.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> io::Result<DrainReport> {
        let App {
            config,
            hub,
            listener,
            local_addr,
            authenticator,
            mercure,
        } = self;
        // Mercure's key sets are kept fresh as auth.jwt's is.
        let mercure_jwks = mercure.as_ref().map(http::MercureSettings::jwks);
        let stop_accepting = CancellationToken::new();
        let stop_server = CancellationToken::new();
        let acceptor = DrainingAcceptor::new(listener, stop_accepting.clone())?;
        let endpoint = http::routes(
            hub.clone(),
            HttpSettings {
                max_body_bytes: config.limits.max_body_bytes,
                max_events_per_request: config.limits.max_events_per_request,
                body_read_timeout: config.limits.body_read_timeout,
                cors: config.cors.clone(),
                authenticator: authenticator.clone(),
                tutorial_topic: TutorialTopic(
                    TopicName::parse(&config.event_stream.topic).expect("validated in Config"),
                ),
                console: config.console.enabled,
                backplane: config.backplane.kind,
                mercure,
            },
        );
        let server = tokio::spawn(server::serve(
            acceptor,
            endpoint,
            ServerSettings {
                header_read_timeout: config.limits.header_read_timeout,
                keep_alive_timeout: config.limits.keep_alive_timeout,
                write_timeout: config.stream.write_timeout(),
                coalesce: config.stream.coalesce(),
                refusal: http::refusal,
            },
            stop_server.clone(),
            CONNECTION_CLOSE_GRACE,
        ));
        let stop_backplane = CancellationToken::new();
        let backplane = tokio::spawn(hub.backplane().clone().run(stop_backplane.clone()));
        let mut background = authenticator.spawn_background();
        for jwks in mercure_jwks.into_iter().flatten() {
            background.push(tokio::spawn(jwks.keep_fresh()));
        }
        authenticator.log_summary(local_addr);
        tracing::info!(%local_addr, backplane = ?config.backplane.kind, "ssehub ready");

        let running = Running {
            stop_accepting,
            stop_server,
            server,
            stop_backplane,
            backplane,
            background,
        };
        shutdown::drain_then_stop(&hub, &config.drain, shutdown, running).await
    }
}
