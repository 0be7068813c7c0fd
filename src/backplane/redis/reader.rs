//! The Redis backplane's background task: one session at a time (a command
//! connection and a pub/sub subscription), the local fan-out of every
//! message, resyncs, health checks, and reconnection with backoff.
//!
//! Everything that calls the local fan-out (`fan_out` and `resync`) happens
//! in this one task, in message order: that is how the backplane keeps the
//! `FanOut` contract (id order across topics, calls never concurrent).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::StreamExt;
use redis::AsyncConnectionConfig;
use redis::aio::MultiplexedConnection;
use tokio_util::sync::CancellationToken;

use super::message::{self, MalformedMessage};
use super::replication::PublishLink;
use super::{RedisBackplane, known_epoch, now_ms};
use crate::backplane::BackplaneError;
use crate::model::EventId;

/// How often a session checks Redis with a small write. A hung Redis (a stopped process, a full
/// disk) keeps its TCP connections open, so only an unanswered ping shows
/// it: readiness fails within this plus `backplane.redis.command_timeout`.
const HEALTH_CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// The health key outlives the replicas that write it by a minute.
const HEALTH_KEY_LIFETIME_MS: u64 = 60_000;
/// First pause before reconnecting; doubled after each failed attempt.
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
/// Longest pause between attempts: a Redis that comes back is used within
/// this, and a hundred replicas retrying cost Redis a few connects a second.
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Longest pause with Sentinel: a lookup costs the sentinels little, and
/// during a failover the new master should be used within a second of
/// its promotion, not five.
const BACKOFF_MAX_SENTINEL: Duration = Duration::from_secs(1);

/// Why a session ended.
#[derive(Debug, thiserror::Error)]
enum SessionEnd {
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("{0}")]
    Lost(String),
    #[error(transparent)]
    Command(#[from] BackplaneError),
}

/// Exponential backoff with jitter: each pause is a random 50–100% of the
/// current step, so replicas that lost Redis together don't come back in
/// step.
struct Backoff {
    step: Duration,
    max: Duration,
}

impl Backoff {
    fn new(max: Duration) -> Self {
        Self {
            step: BACKOFF_FIRST,
            max,
        }
    }

    fn next(&mut self) -> Duration {
        let pause = self.step.mul_f64(0.5 + 0.5 * fastrand::f64());
        self.step = (self.step * 2).min(self.max);
        pause
    }
}

pub(super) async fn run(backplane: Arc<RedisBackplane>, stop: CancellationToken) {
    let mut reader = Reader {
        backplane,
        sessions: 0,
        warned_about_policy: false,
    };
    let backoff_max = if reader.backplane.target.is_sentinel() {
        BACKOFF_MAX_SENTINEL
    } else {
        BACKOFF_MAX
    };
    let mut backoff = Backoff::new(backoff_max);
    loop {
        let ended = reader.session(&stop, &mut backoff).await;
        let was_available = reader.backplane.available.swap(false, Ordering::AcqRel);
        *reader
            .backplane
            .commands
            .write()
            .unwrap_or_else(|p| p.into_inner()) = None;
        *reader
            .backplane
            .publishes
            .write()
            .unwrap_or_else(|p| p.into_inner()) = None;
        let error = match ended {
            Ok(()) => return,
            Err(error) => error,
        };
        let pause = backoff.next();
        let url = &reader.backplane.shown_url;
        if was_available {
            tracing::warn!(
                %error, redis = %url,
                "lost Redis: publishes answer 503 and readiness fails until it is back; streams stay open"
            );
        } else {
            tracing::warn!(
                %error, redis = %url, retry_in_ms = pause.as_millis() as u64,
                "Redis is not reachable; not ready, retrying"
            );
        }
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stop.cancelled() => return,
        }
    }
}

struct Reader {
    backplane: Arc<RedisBackplane>,
    /// Sessions that got as far as their first resync.
    sessions: u64,
    warned_about_policy: bool,
}

impl Reader {
    /// One session, until it fails (`Err`) or `stop` is cancelled (`Ok`).
    async fn session(
        &mut self,
        stop: &CancellationToken,
        backoff: &mut Backoff,
    ) -> Result<(), SessionEnd> {
        let backplane = self.backplane.clone();
        let connect = async {
            // With Sentinel: the master as the sentinels name it now.
            let client = backplane.target.master().await?;
            let config = AsyncConnectionConfig::new()
                .set_connection_timeout(Some(backplane.connect_timeout))
                .set_response_timeout(Some(backplane.command_timeout));
            let commands = client
                .get_multiplexed_async_connection_with_config(&config)
                .await?;
            let publishes = if backplane.replicas_ack > 0 {
                // WAIT blocks its connection: publishes get their own,
                // without a response timeout (run_publish has its own).
                let config = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(backplane.connect_timeout))
                    .set_response_timeout(None);
                client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await?
            } else {
                commands.clone()
            };
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&backplane.keys.channel).await?;
            Ok::<_, redis::RedisError>((commands, publishes, pubsub))
        };
        let (mut commands, publishes, pubsub) = tokio::select! {
            connected = tokio::time::timeout(backplane.connect_timeout, connect) => match connected {
                Ok(Ok(connected)) => connected,
                Ok(Err(error)) => return Err(SessionEnd::Connect(super::error_summary(&error))),
                Err(_) => return Err(SessionEnd::Connect(format!(
                    "no answer within backplane.redis.connect_timeout ({})",
                    humantime::format_duration(backplane.connect_timeout)
                ))),
            },
            _ = stop.cancelled() => return Ok(()),
        };
        let mut messages = pubsub.into_on_message();
        // A READONLY seen in an earlier session was about a master left behind.
        let _ = futures_util::FutureExt::now_or_never(backplane.demoted.notified());
        self.check_eviction_policy(&mut commands).await;
        *backplane
            .commands
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Some(commands.clone());
        *backplane
            .publishes
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(PublishLink::new(publishes)));

        // Subscribed first, then where ids stand: every later event arrives
        // on the channel, every earlier one is in history.
        self.resync(&mut commands).await?;
        backplane.available.store(true, Ordering::Release);
        *backoff = Backoff::new(backoff.max);
        self.sessions += 1;
        if self.sessions > 1 {
            backplane.replica.metrics.reconnected();
            tracing::info!(redis = %backplane.shown_url, "reconnected to Redis; streams caught up from history");
        } else {
            tracing::info!(redis = %backplane.shown_url, "connected to Redis");
        }

        let mut health = tokio::time::interval(HEALTH_CHECK_INTERVAL);
        health.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = stop.cancelled() => return Ok(()),
                _ = backplane.demoted.notified() => {
                    return Err(SessionEnd::Lost(
                        "Redis answered READONLY: the master was demoted (a failover); finding the master again".to_owned(),
                    ));
                }
                message = messages.next() => {
                    let Some(message) = message else {
                        return Err(SessionEnd::Lost(
                            "Redis closed the subscription (CLIENT KILL, a restart, or the pub/sub output-buffer limit)".to_owned(),
                        ));
                    };
                    self.on_message(message.get_payload_bytes(), &mut commands).await?;
                }
                _ = health.tick() => {
                    // A write, not a PING: a Redis out of memory answers
                    // PING but refuses publishes, and readiness must say so.
                    let mut check = redis::cmd("SET");
                    check
                        .arg(&backplane.keys.health)
                        .arg(now_ms())
                        .arg("PX")
                        .arg(HEALTH_KEY_LIFETIME_MS);
                    backplane
                        .within_timeout("a health check", check.query_async::<()>(&mut commands))
                        .await?;
                }
            }
        }
    }

    /// Hands a message's events to the local fan-out, or resyncs when the
    /// message doesn't follow the last one.
    async fn on_message(
        &mut self,
        payload: &[u8],
        commands: &mut MultiplexedConnection,
    ) -> Result<(), SessionEnd> {
        let backplane = &self.backplane;
        let parsed = std::str::from_utf8(payload)
            .map_err(|_| MalformedMessage("not UTF-8".to_owned()))
            .and_then(message::header);
        let (header, body) = match parsed {
            Ok(parsed) => parsed,
            Err(error) => {
                // invariant: no silent loss — whatever it was, history has it.
                tracing::warn!(%error, "resyncing from history");
                return self.resync(commands).await;
            }
        };
        backplane.replica.metrics.message_lag(Duration::from_millis(
            now_ms().saturating_sub(header.accepted_ms),
        ));
        let at = *backplane.position.borrow();
        // Epochs only grow: an older one's message was sent before the
        // resync that moved this replica on, which covered it.
        let covered =
            header.epoch < at.epoch || (header.epoch == at.epoch && header.last_seq() <= at.seq);
        if covered {
            return Ok(());
        }
        if header.epoch == at.epoch && header.first_seq == at.seq + 1 {
            match message::events(&header, body) {
                Ok(events) => {
                    // contract: fan-out order — messages in channel order,
                    // each following the last, from this one task.
                    backplane.replica.fan_out.fan_out(&events);
                    backplane
                        .position
                        .send_replace(EventId::new(header.epoch, header.last_seq()));
                    return Ok(());
                }
                Err(error) => tracing::warn!(%error, "resyncing from history"),
            }
        } else if header.epoch == at.epoch {
            tracing::info!(
                expected = at.seq + 1,
                received = header.first_seq,
                "a backplane message was missed; resyncing from history"
            );
        }
        // A seq jump (a message lost) or a new epoch: history has the rest.
        self.resync(commands).await
    }

    /// Reads where ids stand (starting an epoch if Redis lost its data)
    /// and has every local stream catch up from history to there.
    async fn resync(&mut self, commands: &mut MultiplexedConnection) -> Result<(), SessionEnd> {
        let backplane = &self.backplane;
        let known = *backplane.position.borrow();
        let mut sync = backplane.scripts.sync.prepare_invoke();
        sync.key(&backplane.keys.epoch)
            .key(&backplane.keys.seq)
            .arg(known_epoch(known))
            .arg(known.seq);
        let (epoch, seq): (u64, u64) = backplane
            .within_timeout("a resync", sync.invoke_async(commands))
            .await?;
        let through = EventId::new(epoch, seq);
        if known.epoch != 0 && epoch != known.epoch {
            tracing::warn!(
                old_epoch = known.epoch,
                new_epoch = epoch,
                "Redis's history started over (it came back without its data): every stream gets a gap frame"
            );
        }
        backplane.epoch.store(epoch, Ordering::Release);
        backplane.replica.fan_out.resync(through);
        backplane.position.send_replace(through);
        if known.epoch != 0 {
            backplane.replica.metrics.resynced();
        }
        Ok(())
    }

    /// Warns once when Redis may evict ssehub's keys to make room: every
    /// history key has a TTL, so `volatile-*` policies pick them as readily
    /// as `allkeys-*` ones. An evicted history is a gap frame for its
    /// subscribers (and an evicted counter a new epoch), never a silent loss,
    /// but with `noeviction` a full Redis refuses publishes (503) instead.
    async fn check_eviction_policy(&mut self, commands: &mut MultiplexedConnection) {
        if self.warned_about_policy {
            return;
        }
        let mut query = redis::cmd("CONFIG");
        query.arg("GET").arg("maxmemory-policy");
        match self
            .backplane
            .within_timeout("CONFIG GET", query.query_async::<Vec<String>>(commands))
            .await
        {
            Ok(reply) => {
                let policy = reply.get(1).map(String::as_str).unwrap_or("noeviction");
                if policy != "noeviction" {
                    self.warned_about_policy = true;
                    tracing::warn!(
                        maxmemory_policy = policy,
                        "Redis may evict ssehub's history keys when it is full (subscribers would get gap frames); set maxmemory-policy noeviction"
                    );
                }
            }
            // Managed Redis services often disable CONFIG.
            Err(error) => tracing::debug!(%error, "cannot read Redis's maxmemory-policy"),
        }
    }
}
