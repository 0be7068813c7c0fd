//! The Redis backplane against a real `redis-server`: the backplane
//! contract, several replicas on one Redis, Redis killed, restarted, hung
//! and cut off under live streams, history trimmed on every replica, a
//! publish whose outcome a stall left unknown, one trace across two
//! replicas, and Sentinel failover with replicas_ack.

mod bounds;
mod failures;
mod idempotency;
mod outcome_unknown;
pub mod replicas;
mod sentinel;
pub mod server;
mod stalled_resume;
mod traces;

use std::time::Duration;

use ssehub::config::{BackplaneKind, Config};

use crate::contract::Backend;
use crate::support::helpers::{TestApp, spawn_app_with, wait_ready};
use server::{Persistence, RedisServer};

/// A Redis of its own for each contract case.
pub struct Redis(RedisServer);

impl Backend for Redis {
    async fn start() -> Self {
        Redis(
            tokio::task::spawn_blocking(|| RedisServer::start(Persistence::None))
                .await
                .unwrap(),
        )
    }

    fn configure(&self, config: &mut Config) {
        use_redis(config, &self.0);
    }
}

mod contract {
    crate::backplane_contract!(crate::redis::Redis);
}

/// Points `config` at `server`, with timeouts short enough for tests.
pub fn use_redis(config: &mut Config, server: &RedisServer) {
    config.backplane.kind = BackplaneKind::Redis;
    config.backplane.redis.url = server.url();
    config.backplane.redis.connect_timeout = Duration::from_millis(500);
    config.backplane.redis.command_timeout = Duration::from_millis(500);
}

/// A replica on `server`, ready (its first Redis session is up).
pub async fn replica(server: &RedisServer, configure: impl FnOnce(&mut Config)) -> TestApp {
    let app = spawn_app_with(|config| {
        use_redis(config, server);
        configure(config);
    })
    .await;
    wait_ready(&app, true).await;
    app
}
