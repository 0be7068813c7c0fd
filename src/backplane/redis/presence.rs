//! Presence on Redis: each replica keeps its records in a hash of its own,
//! `<prefix>p:<replica>`, named in the set `<prefix>presence`; the hash
//! expires [`PRESENCE_TTL`] after the replica's last write, which it
//! repeats every [`PRESENCE_REFRESH`]. A list reads the set and every hash
//! in it, so it holds every live replica's records, and none of a replica
//! that crashed more than a TTL ago.
//!
//! One task per replica ([`keep`]) writes, so writes reach Redis in the
//! order they were made: the changes since the last write, each key as it
//! is now. A write whose outcome is unknown, or that finds the hash not
//! holding what the replica does (it expired while Redis was out of
//! reach, or Redis came back empty), is followed by a rewrite of every
//! record.

use std::sync::Arc;

use bytes::Bytes;
use redis::Script;
use tokio_util::sync::CancellationToken;

use super::RedisBackplane;
use crate::backplane::BackplaneError;
use crate::backplane::presence::{PRESENCE_REFRESH, PRESENCE_TTL, Presence};

/// Writes one replica's records.
/// `KEYS`: the set of replicas, this replica's hash. `ARGV`: the TTL in
/// ms, the replica's id, `1` to rewrite the hash whole (else: changes),
/// how many records the replica holds, how many records follow as
/// (key, record) pairs, then the keys that left. Returns 1, or 0 when
/// after the changes the hash does not hold as many records as the
/// replica: it must be rewritten.
const WRITE_LUA: &str = r#"
local ttl, replica, whole, held = ARGV[1], ARGV[2], ARGV[3] == '1', tonumber(ARGV[4])
local sets = tonumber(ARGV[5])
if whole then redis.call('DEL', KEYS[2]) end
for i = 6, 5 + 2 * sets, 2 do
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
end
for i = 6 + 2 * sets, #ARGV do
  redis.call('HDEL', KEYS[2], ARGV[i])
end
if redis.call('HLEN', KEYS[2]) ~= held then return 0 end
if held > 0 then
  redis.call('PEXPIRE', KEYS[2], ttl)
  redis.call('SADD', KEYS[1], replica)
  redis.call('PEXPIRE', KEYS[1], ttl)
end
return 1
"#;

/// A replica's presence as the Redis backplane keeps it.
pub(super) struct RedisPresence {
    /// The records this replica holds, and their changes to write.
    pub local: Presence,
    /// Random per process: names its hash.
    replica: String,
    script: Script,
}

impl RedisPresence {
    pub fn new() -> Self {
        Self {
            local: Presence::written_out(),
            replica: format!("{:032x}", fastrand::u128(..)),
            script: Script::new(&format!("#!lua\n{WRITE_LUA}")),
        }
    }
}

impl RedisBackplane {
    fn presence_key(&self, replica: &str) -> String {
        format!("{}p:{replica}", self.keys.prefix())
    }

    fn replicas_key(&self) -> String {
        format!("{}presence", self.keys.prefix())
    }

    /// Writes this replica's changes, or all its records with `whole`;
    /// false when they must be written whole next time.
    async fn write_presence(&self, whole: bool) -> bool {
        let Ok(mut connection) = self.connection() else {
            return false;
        };
        let presence = &self.presence;
        let (sets, gone, held) = if whole {
            let all = presence.local.take_all();
            let held = all.len();
            (all, Vec::new(), held)
        } else {
            let changes = presence.local.take_changes();
            let (sets, gone): (Vec<_>, Vec<_>) = changes
                .keys
                .into_iter()
                .partition(|(_, record)| record.is_some());
            let sets = sets
                .into_iter()
                .filter_map(|(key, record)| Some((key, record?)))
                .collect();
            let gone = gone.into_iter().map(|(key, _)| key).collect();
            (sets, gone, changes.held)
        };
        let mut invocation = presence.script.prepare_invoke();
        invocation
            .key(self.replicas_key())
            .key(self.presence_key(&presence.replica))
            .arg(PRESENCE_TTL.as_millis() as u64)
            .arg(&presence.replica)
            .arg(if whole { "1" } else { "0" })
            .arg(held)
            .arg(sets.len());
        for (key, record) in &sets {
            invocation.arg(key).arg(record.as_ref());
        }
        for key in &gone {
            invocation.arg(key);
        }
        let written: Result<i64, _> = self
            .within_timeout("a presence write", invocation.invoke_async(&mut connection))
            .await;
        match written {
            Ok(1) => true,
            Ok(_) => false,
            Err(error) => {
                tracing::debug!(%error, "presence not written; rewriting it on the next try");
                false
            }
        }
    }

    /// Every live replica's records: the set of replicas, then each one's
    /// hash; a replica whose hash is gone (expired, or emptied) leaves the set.
    pub(super) async fn read_presence(&self) -> Result<Vec<Bytes>, BackplaneError> {
        let mut connection = self.connection()?;
        let replicas: Vec<String> = self
            .within_timeout(
                "a presence read",
                redis::cmd("SMEMBERS")
                    .arg(self.replicas_key())
                    .query_async(&mut connection),
            )
            .await?;
        // redis-rs refuses an empty pipeline.
        if replicas.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipeline = redis::pipe();
        for replica in &replicas {
            pipeline.cmd("HVALS").arg(self.presence_key(replica));
        }
        let hashes: Vec<Vec<Vec<u8>>> = self
            .within_timeout("a presence read", pipeline.query_async(&mut connection))
            .await?;
        let gone: Vec<&String> = replicas
            .iter()
            .zip(&hashes)
            .filter(|(_, records)| records.is_empty())
            .map(|(replica, _)| replica)
            .collect();
        if !gone.is_empty() {
            // Tidying only: a replica that writes again adds itself back.
            let _: Result<i64, _> = self
                .within_timeout(
                    "a presence tidy-up",
                    redis::cmd("SREM")
                        .arg(self.replicas_key())
                        .arg(gone)
                        .query_async(&mut connection),
                )
                .await;
        }
        Ok(hashes.into_iter().flatten().map(Bytes::from).collect())
    }

    /// A clean stop: this replica's records go now, not at the TTL.
    async fn clear_presence(&self) {
        let Ok(mut connection) = self.connection() else {
            return;
        };
        let mut pipeline = redis::pipe();
        pipeline
            .cmd("DEL")
            .arg(self.presence_key(&self.presence.replica))
            .cmd("SREM")
            .arg(self.replicas_key())
            .arg(&self.presence.replica);
        let _: Result<(), _> = self
            .within_timeout("a presence clear", pipeline.query_async(&mut connection))
            .await;
    }
}

/// Writes this replica's presence to Redis until `stop`: each change as it
/// comes, and a refresh of the TTL every [`PRESENCE_REFRESH`].
pub(super) async fn keep(backplane: Arc<RedisBackplane>, stop: CancellationToken) {
    let mut whole = true;
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            () = backplane.presence.local.changed() => {}
            () = tokio::time::sleep(PRESENCE_REFRESH) => {}
        }
        whole = !backplane.write_presence(whole).await;
        if whole {
            // The hash lost records (or the outcome is unknown): rewrite it
            // now rather than a refresh later; with Redis out of reach
            // this fails at once, and the next refresh tries again.
            whole = !backplane.write_presence(true).await;
        }
    }
    backplane.clear_presence().await;
}
