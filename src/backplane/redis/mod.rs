//! The Redis backplane: several replicas share ids, history and events
//! through one Redis (a real `redis-server`, 7.0 or later).
//!
//! # How it works
//! - **Publish** runs one script (`scripts::PUBLISH_LUA`) per publish call,
//!   one event or a whole batch: it assigns contiguous sequence numbers
//!   from one counter, appends each event to its topic's stream (trimmed by
//!   `history.size` and `history.ttl`), and publishes one message for the
//!   call on the hub's channel. Redis runs a script as one step, so a batch
//!   is atomic and no replica can see ids without history or history
//!   without the message. The answer is 2xx only once the script returned.
//! - **Ids** stay `<epoch>-<seq>`. The epoch lives in Redis, so every
//!   replica hands out and recognises the same ids; the history stream's
//!   entry id *is* the event id. A Redis that came back empty (or from an
//!   older snapshot) gets a new, larger epoch: streams get one
//!   `epoch_changed` gap frame instead of a silent reset.
//! - **Fan-out**: each replica's reader ([`reader`]) subscribes to the one
//!   channel and hands every message to the local live queues, in order.
//!   Also the publishing replica's own events come back this way, so all
//!   replicas see one order. One channel for the whole hub is what gives
//!   that order across topics (per-topic channels would interleave
//!   differently on each replica and break multi-topic resume). What it
//!   costs: every replica receives every event, also of topics nobody
//!   follows there, so the hub's total event rate is bounded by what one
//!   replica can read and parse (tens of thousands of events a second),
//!   not by the number of replicas. For a fan-out service, where the cost
//!   is in deliveries (events × subscribers), not events, that is the
//!   right trade; a hub that needs more publishes than that needs sharding
//!   by topic into several hubs (key prefixes).
//! - **No silent loss on the feed**: because a call's seqs are contiguous
//!   and follow the previous call's, the reader knows the next seq it must
//!   see. A jump (a message lost when Redis cut the subscriber at its
//!   output-buffer limit, or a reconnect) makes it resync: read where ids
//!   stand, and tell every local stream to re-read history from its cursor
//!   (`FanOut::resync`). On (re)connect it subscribes *first*, then reads
//!   where ids stand, so every later event arrives on the channel and every
//!   earlier one is in history; messages already covered are dropped.
//! - **Bounded**: the same script keeps `history.max_topics` and
//!   `history.max_bytes` for all replicas together (a sorted set of topics
//!   by last publish, each topic's counted bytes and their sum) and evicts
//!   beyond them, least recently published topic first, oldest events
//!   first; see `scripts::PUBLISH_LUA`. A topic dropped whole leaves its
//!   newest id in the `evicted` key, so a resume on it still gets its gap.
//! - **Exact gaps**: each topic keeps the id of the newest entry trimmed
//!   from its history (by count or age), so "is anything after this id
//!   gone?" has an exact answer; see `scripts::HISTORY_LUA`, also for topics
//!   whose keys expired.
//! - **Resume on any replica**: `last_id` asks Redis, so an id handed out on
//!   replica A a moment ago is valid on C before C has received its event;
//!   C's live queue then skips it when it arrives (no gap, no duplicate).
//! - **High availability**: the master is the one `url` names, or the one
//!   Redis Sentinel names at the start of each session ([`target`]); a
//!   failover ends the session (connections break, or the demoted master
//!   answers `READONLY`) and the next one lands on the new master. With
//!   `replicas_ack` a publish is answered 2xx only once that many replicas
//!   hold it ([`replication`]: `WAIT`), else 503 `publish-not-replicated`.
//! - **Failure**: a publish needs Redis now. Known down before the script
//!   is sent (no working session), or refused by Redis (out of memory): 503
//!   with `Retry-After`, and nothing was stored. `/readyz` turns 503 while
//!   the reader has no working session. Streams stay open (heartbeats go on)
//!   and the reader reconnects with jittered, capped backoff, then resyncs.
//!
//! # The ambiguous case: outcome unknown
//! A publish whose script was sent but whose answer did not arrive within
//! `backplane.redis.command_timeout` (Redis stalled, or the connection broke
//! with the script in flight) may have run, or may still run: a stalled
//! Redis runs the queued script when it resumes. It is reported as
//! [`BackplaneError::OutcomeUnknown`] (HTTP 504 `publish-outcome-unknown`),
//! never as the plain 503 that means "nothing published". A publisher that
//! retries it without an idempotency key may publish twice (with new ids);
//! with one, the retry finds the record the script wrote with the events
//! (and gets their ids) or publishes them itself. ssehub promises:
//! nothing answered 2xx is lost, nothing answered 503 was stored, and
//! nothing is delivered that Redis did not store.

mod message;
mod presence;
mod publish_reply;
mod reader;
mod replication;
mod scripts;
mod target;
mod wire;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::future::BoxFuture;
use redis::aio::MultiplexedConnection;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::RedisConfig;
use super::{
    Backplane, BackplaneError, History, HistoryBound, HistoryBounds, HistoryLimits,
    IDEMPOTENCY_WINDOW_DEFAULT, PageLimit, Publication, Replica,
};
use crate::model::{Event, EventDraft, EventId, Idempotency, TopicName};

use publish_reply::{PublishReply, Published, parse_publish};
use replication::PublishLink;
use scripts::{Keys, Scripts};
use target::Target;

/// Most entries one history read asks Redis for, whatever the caller's
/// limit (the count crosses into Lua as a double).
const MAX_PAGE_ENTRIES: usize = 1 << 20;

/// Keys of a topic outlive its last event by this much, so that a history
/// read that finds them gone knows every event they held is past the ttl.
const KEY_LIFETIME_MARGIN: Duration = Duration::from_secs(60);

pub struct RedisBackplane {
    /// Where the master is: one URL, or asked of Sentinel each session.
    target: Target,
    /// The URL with its password masked (or the Sentinel setup), for logs.
    shown_url: String,
    connect_timeout: Duration,
    command_timeout: Duration,
    /// `backplane.redis.replicas_ack` and its timeout (see [`replication`]).
    replicas_ack: u32,
    replicas_ack_timeout: Duration,
    limits: HistoryLimits,
    bounds: HistoryBounds,
    /// How long a keyed publish's record lives in Redis (its key's TTL).
    idempotency_window: Duration,
    keys: Keys,
    scripts: Scripts,
    replica: Replica,
    /// The command connection of the reader's current session: cloned by
    /// each command (it multiplexes); `None` while there is no session.
    commands: RwLock<Option<MultiplexedConnection>>,
    /// The current session's publish connection (its own with
    /// `replicas_ack`, which blocks it in `WAIT`; else `commands`).
    publishes: RwLock<Option<Arc<PublishLink>>>,
    /// Woken by a publish that found the master demoted (`READONLY`): the
    /// reader ends the session at once and finds the master again.
    demoted: tokio::sync::Notify,
    /// True while the reader has a working session (readiness follows).
    available: AtomicBool,
    /// The epoch in force as this replica knows it (0 before the first sync).
    epoch: AtomicU64,
    /// The newest id the live queues have (handed over or covered by a
    /// resync). Written by the reader only; publishes wait on it so that
    /// their 2xx comes after the local hand-off.
    position: watch::Sender<EventId>,
    /// This replica's presence records, kept in Redis by [`presence::keep`].
    presence: presence::RedisPresence,
}

impl RedisBackplane {
    /// Builds the backplane without connecting: [`Backplane::run`] does.
    pub fn new(
        config: &RedisConfig,
        limits: HistoryLimits,
        bounds: HistoryBounds,
        replica: Replica,
    ) -> Result<Self, redis::RedisError> {
        let target = Target::new(config)?;
        Ok(Self {
            shown_url: target.describe(config),
            target,
            connect_timeout: config.connect_timeout,
            command_timeout: config.command_timeout,
            replicas_ack: config.replicas_ack,
            replicas_ack_timeout: config.replicas_ack_timeout,
            limits,
            bounds,
            idempotency_window: IDEMPOTENCY_WINDOW_DEFAULT,
            keys: Keys::new(&config.key_prefix),
            scripts: Scripts::new(),
            replica,
            commands: RwLock::new(None),
            publishes: RwLock::new(None),
            demoted: tokio::sync::Notify::new(),
            available: AtomicBool::new(false),
            epoch: AtomicU64::new(0),
            position: watch::Sender::new(EventId::new(0, 0)),
            presence: presence::RedisPresence::new(),
        })
    }

    /// Keeps keyed publishes' records for `window` (`limits.idempotency_window`).
    pub fn with_idempotency_window(mut self, window: Duration) -> Self {
        self.idempotency_window = window;
        self
    }

    /// The current session's command connection. Reads need only this: the
    /// replays that a session's first resync triggers run before the
    /// session is marked available, and must not fail for that.
    fn connection(&self) -> Result<MultiplexedConnection, BackplaneError> {
        let commands = self.commands.read().unwrap_or_else(|p| p.into_inner());
        commands.clone().ok_or_else(|| self.unreachable())
    }

    /// A connection for a publish: only while the session is fully up
    /// (synced and healthy), which is also what readiness says.
    fn publish_connection(&self) -> Result<Arc<PublishLink>, BackplaneError> {
        if !self.available.load(Ordering::Acquire) {
            return Err(self.unreachable());
        }
        let publishes = self.publishes.read().unwrap_or_else(|p| p.into_inner());
        publishes.clone().ok_or_else(|| self.unreachable())
    }

    /// A publish found the master demoted: no more publishes go to it, and
    /// the reader finds the new one.
    fn master_demoted(&self) {
        self.available.store(false, Ordering::Release);
        self.demoted.notify_one();
    }

    fn unreachable(&self) -> BackplaneError {
        BackplaneError::Unavailable {
            reason: format!("Redis at {} is unreachable; reconnecting", self.shown_url),
            source: None,
        }
    }

    /// Runs a command or script with `backplane.redis.command_timeout`.
    async fn within_timeout<T>(
        &self,
        what: &str,
        command: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, BackplaneError> {
        match tokio::time::timeout(self.command_timeout, command).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(BackplaneError::unavailable(
                format!("Redis refused {what}: {}", error_summary(&error)),
                error,
            )),
            Err(elapsed) => Err(BackplaneError::unavailable(
                format!(
                    "Redis did not answer {what} within backplane.redis.command_timeout ({})",
                    humantime::format_duration(self.command_timeout)
                ),
                elapsed,
            )),
        }
    }

    /// Runs the publish script with `backplane.redis.command_timeout`,
    /// telling a publish that certainly did not happen from one that may
    /// have (see "outcome unknown" in the module docs).
    async fn run_publish<T>(
        &self,
        script: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, BackplaneError> {
        // With replicas_ack a script may queue behind one WAIT on its connection.
        let timeout = match self.replicas_ack {
            0 => self.command_timeout,
            _ => self.command_timeout + self.replicas_ack_timeout,
        };
        match tokio::time::timeout(timeout, script).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) if script_never_ran(&error) => {
                if target::is_demoted(&error) {
                    self.master_demoted();
                }
                Err(BackplaneError::unavailable(
                    format!("Redis refused the publish: {}", error_summary(&error)),
                    error,
                ))
            }
            Ok(Err(error)) => Err(BackplaneError::OutcomeUnknown {
                reason: format!(
                    "the connection to Redis failed with the publish in flight ({})",
                    error_summary(&error)
                ),
                source: Some(error.into()),
            }),
            // Dropping the call does not take the script back: it is on the
            // connection, and a stalled Redis runs it when it resumes.
            Err(elapsed) => Err(BackplaneError::OutcomeUnknown {
                reason: format!(
                    "Redis did not answer within backplane.redis.command_timeout ({}); \
                     a stalled Redis runs the publish when it resumes",
                    humantime::format_duration(self.command_timeout)
                ),
                source: Some(elapsed.into()),
            }),
        }
    }

    /// Waits until `backplane.redis.replicas_ack` replicas hold the publish
    /// whose script was just answered on `link`.
    async fn await_replicas(&self, link: &PublishLink) -> Result<(), BackplaneError> {
        let ticket = link.script_answered();
        let held = link
            .replicas_holding(
                ticket,
                self.replicas_ack,
                self.replicas_ack_timeout,
                self.command_timeout,
            )
            .await?;
        if held < u64::from(self.replicas_ack) {
            return Err(replication::not_replicated(
                format!(
                    "{held} replica(s) confirmed it within backplane.redis.replicas_ack_timeout ({})",
                    humantime::format_duration(self.replicas_ack_timeout)
                ),
                self.replicas_ack,
            ));
        }
        Ok(())
    }

    /// Milliseconds the topic keys live after a publish.
    fn key_lifetime_ms(&self) -> u64 {
        (self.limits.ttl + KEY_LIFETIME_MARGIN).as_millis() as u64
    }

    async fn publish_drafts(
        &self,
        drafts: Vec<EventDraft>,
        once: Option<Idempotency>,
    ) -> Result<Publication, BackplaneError> {
        let link = self.publish_connection()?;
        let mut connection = link.connection.clone();
        let known = *self.position.borrow();
        let mut invocation = self.scripts.publish.prepare_invoke();
        let (record, fingerprint) = once.as_ref().map_or_else(Default::default, |once| {
            (once.record_hex(), once.fingerprint_hex())
        });
        invocation
            .key(&self.keys.epoch)
            .key(&self.keys.seq)
            .key(&self.keys.clock)
            .key(&self.keys.topics)
            .key(&self.keys.sizes)
            .key(&self.keys.bytes)
            .key(&self.keys.evicted)
            .key(self.keys.idempotency(&record));
        for draft in &drafts {
            invocation
                .key(self.keys.history(draft.topic.as_str()))
                .key(self.keys.trimmed(draft.topic.as_str()));
        }
        invocation
            .arg(known_epoch(known))
            .arg(known.seq)
            .arg(self.limits.size)
            .arg(self.limits.ttl.as_millis() as u64)
            .arg(self.key_lifetime_ms())
            .arg(&self.keys.channel)
            .arg(self.bounds.max_topics)
            .arg(self.bounds.max_bytes)
            .arg(self.keys.prefix())
            .arg(fingerprint)
            .arg(self.idempotency_window.as_millis() as u64);
        for draft in &drafts {
            let json = serde_json::to_string(&wire::WireEvent::from(draft))
                .expect("a wire event always serializes");
            invocation.arg(json);
        }
        let started = Instant::now();
        let reply: Vec<redis::Value> = self
            .run_publish(invocation.invoke_async(&mut connection))
            .await?;
        let reply = parse_publish(reply).map_err(|reason| BackplaneError::OutcomeUnknown {
            reason: format!("unreadable answer of the publish script: {reason}"),
            source: None,
        })?;
        // A replay, like its first publish, is 2xx only once replicas hold
        // it: its script rewrote the record's TTL, which this WAIT covers.
        if self.replicas_ack > 0 && reply != PublishReply::KeyReused {
            self.await_replicas(&link).await?;
        }
        let Published {
            epoch,
            first,
            accepted_ms,
            evicted_for_topics,
            evicted_for_bytes,
        } = match reply {
            PublishReply::Published(published) => published,
            PublishReply::Replayed(ids) => return Ok(Publication::Replayed(ids)),
            PublishReply::KeyReused => return Ok(Publication::KeyReused),
        };
        let metrics = &self.replica.metrics;
        metrics.published(started.elapsed());
        if evicted_for_topics > 0 {
            metrics.history_evicted(HistoryBound::MaxTopics, evicted_for_topics);
        }
        if evicted_for_bytes > 0 {
            metrics.history_evicted(HistoryBound::MaxBytes, evicted_for_bytes);
        }
        let accepted_at = UNIX_EPOCH + Duration::from_millis(accepted_ms);
        let events: Vec<_> = drafts
            .into_iter()
            .enumerate()
            .map(|(index, draft)| {
                Event::accept(
                    draft,
                    EventId::new(epoch, first + index as u64),
                    accepted_at,
                )
            })
            .collect();
        let last = first + events.len() as u64 - 1;
        // The 2xx waits for this replica's own hand-off (a pub/sub hop, well
        // under a millisecond): a publisher's next read here sees its event,
        // and a drain that waited for publishes under way has them in the
        // queues. Not waiting forever: the event is safe in Redis, and a
        // feed that stalls is caught up by a resync.
        let mut position = self.position.subscribe();
        let _ = tokio::time::timeout(
            self.command_timeout,
            position.wait_for(|at| at.epoch != epoch || at.seq >= last),
        )
        .await;
        Ok(Publication::Accepted(events))
    }

    async fn read_history(
        &self,
        topic: &TopicName,
        after_seq: u64,
        limit: PageLimit,
    ) -> Result<History, BackplaneError> {
        let mut connection = self.connection()?;
        let mut invocation = self.scripts.history.prepare_invoke();
        invocation
            .key(&self.keys.epoch)
            .key(&self.keys.seq)
            .key(&self.keys.clock)
            .key(self.keys.history(topic.as_str()))
            .key(self.keys.trimmed(topic.as_str()))
            .key(&self.keys.evicted)
            .arg(after_seq)
            .arg(self.limits.ttl.as_millis() as u64)
            .arg(self.key_lifetime_ms())
            // Lua's numbers are doubles: keep both exact and Redis's COUNT valid.
            .arg(limit.events.clamp(1, MAX_PAGE_ENTRIES))
            .arg(limit.bytes.min(MAX_PAGE_ENTRIES * 1024 * 1024));
        let reply: Vec<redis::Value> = self
            .within_timeout("a history read", invocation.invoke_async(&mut connection))
            .await?;
        parse_history(reply).map_err(|reason| BackplaneError::Unavailable {
            reason: format!("unreadable history of {topic}: {reason}"),
            source: None,
        })
    }

    async fn read_last_id(&self) -> Result<EventId, BackplaneError> {
        let mut connection = self.connection()?;
        let (epoch, seq): (Option<u64>, Option<u64>) = self
            .within_timeout(
                "a read of the last id",
                redis::cmd("MGET")
                    .arg(&self.keys.epoch)
                    .arg(&self.keys.seq)
                    .query_async(&mut connection),
            )
            .await?;
        // No epoch yet: nothing was ever assigned here, every id is foreign.
        Ok(EventId::new(epoch.unwrap_or(0), seq.unwrap_or(0)))
    }
}

/// The epoch argument of the scripts: '' before the first sync.
fn known_epoch(known: EventId) -> String {
    if known.epoch == 0 {
        String::new()
    } else {
        known.epoch.to_string()
    }
}

/// Whether a failed publish certainly stored nothing: Redis answered with
/// an error (the publish script is `#!lua` without `allow-oom`, so Redis
/// refuses it whole, before it runs, when out of memory), or the connection
/// was refused so nothing was sent. Any other failure (a broken connection,
/// an unreadable reply) may have come after Redis ran the script.
fn script_never_ran(error: &redis::RedisError) -> bool {
    error.code().is_some() || error.is_connection_refusal()
}

/// A Redis error in a few words, never with the URL (which may hold a password).
fn error_summary(error: &redis::RedisError) -> String {
    match error.code() {
        Some(code) => format!("{code} {}", error.detail().unwrap_or_default()),
        None => error.category().to_owned(),
    }
}

/// `{epoch, complete, {id, ms, json, ...}, next}` from `HISTORY_LUA`.
fn parse_history(reply: Vec<redis::Value>) -> Result<History, String> {
    use redis::FromRedisValue;
    let mut reply = reply.into_iter();
    let epoch = reply.next().ok_or("empty reply")?;
    let epoch = String::from_redis_value(epoch).map_err(|e| e.to_string())?;
    if epoch.is_empty() {
        return Err("no epoch in Redis yet".to_owned());
    }
    let epoch: u64 = epoch.parse().map_err(|_| format!("epoch {epoch:?}"))?;
    let complete = reply.next().ok_or("no completeness")?;
    let complete = i64::from_redis_value(complete).map_err(|e| e.to_string())? == 1;
    let entries = reply.next().ok_or("no entries")?;
    let entries = Vec::<String>::from_redis_value(entries).map_err(|e| e.to_string())?;
    let mut events = Vec::with_capacity(entries.len() / 3);
    for entry in entries.chunks(3) {
        let [id, ms, json] = entry else {
            return Err("an entry without its fields".to_owned());
        };
        let (entry_epoch, seq) = id.split_once('-').ok_or_else(|| format!("entry id {id}"))?;
        let id = EventId::new(
            entry_epoch.parse().map_err(|_| format!("entry id {id}"))?,
            seq.parse().map_err(|_| format!("entry id {id}"))?,
        );
        let ms: u64 = ms.parse().map_err(|_| format!("entry time {ms}"))?;
        let accepted_at = UNIX_EPOCH + Duration::from_millis(ms);
        events.push(message::decode(json, id, accepted_at).map_err(|e| e.to_string())?);
    }
    let next = reply.next().ok_or("no page end")?;
    let next = String::from_redis_value(next).map_err(|e| e.to_string())?;
    let next_after = match next.as_str() {
        "" => None,
        seq => Some(seq.parse().map_err(|_| format!("page end {seq:?}"))?),
    };
    Ok(History {
        epoch,
        events,
        complete,
        next_after,
    })
}

impl Backplane for RedisBackplane {
    fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    fn last_id(&self) -> BoxFuture<'_, Result<EventId, BackplaneError>> {
        Box::pin(self.read_last_id())
    }

    fn publish(
        &self,
        drafts: Vec<EventDraft>,
        once: Option<Idempotency>,
    ) -> BoxFuture<'_, Result<Publication, BackplaneError>> {
        Box::pin(self.publish_drafts(drafts, once))
    }

    fn history<'a>(
        &'a self,
        topic: &'a TopicName,
        after_seq: u64,
        limit: PageLimit,
    ) -> BoxFuture<'a, Result<History, BackplaneError>> {
        Box::pin(self.read_history(topic, after_seq, limit))
    }

    fn is_available(&self) -> bool {
        self.available.load(Ordering::Acquire)
    }

    fn presence(&self) -> &super::presence::Presence {
        &self.presence.local
    }

    fn presence_everywhere(&self) -> BoxFuture<'_, Result<Vec<bytes::Bytes>, BackplaneError>> {
        Box::pin(self.read_presence())
    }

    fn run(self: Arc<Self>, stop: CancellationToken) -> BoxFuture<'static, ()> {
        let presence = presence::keep(self.clone(), stop.clone());
        Box::pin(async move {
            futures_util::future::join(reader::run(self, stop), presence).await;
        })
    }
}

/// Seconds since the Unix epoch by this replica's clock, in ms.
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests;
