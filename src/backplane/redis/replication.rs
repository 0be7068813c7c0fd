//! Durable acknowledgement: with `backplane.redis.replicas_ack = N > 0` a
//! publish is answered 2xx only once N replicas hold it (Redis `WAIT`), so
//! a master that dies right after the answer loses nothing acknowledged.
//!
//! `WAIT` counts the replicas that have acknowledged this *connection's*
//! last write, and blocks the connection meanwhile (Redis processes nothing
//! else from a client blocked in `WAIT`). So publishes go over a connection
//! of their own ([`PublishLink`], one per session), and one `WAIT` answers
//! for every publish whose script was answered before it was sent (group
//! commit): a burst of publishes costs one replication round trip, not one
//! each, and a publish queued behind a `WAIT` waits at most one
//! `replicas_ack_timeout`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use tokio::sync::Mutex;

use crate::backplane::BackplaneError;

/// The connection a session's publishes (and their `WAIT`s) go over.
pub(super) struct PublishLink {
    pub connection: MultiplexedConnection,
    /// Publish scripts answered on this connection so far (a publish's
    /// ticket is the count once its own answer came).
    answered: AtomicU64,
    /// The last `WAIT`'s answer: how many answered scripts it covered, and
    /// how many replicas acknowledged them. Held while a `WAIT` runs, so
    /// there is one at a time and the publishes behind it share the next.
    last_wait: Mutex<(u64, u64)>,
}

impl PublishLink {
    pub fn new(connection: MultiplexedConnection) -> Self {
        Self {
            connection,
            answered: AtomicU64::new(0),
            last_wait: Mutex::new((0, 0)),
        }
    }

    /// Call once a publish script's answer came on `self.connection`;
    /// returns the ticket to wait with.
    pub fn script_answered(&self) -> u64 {
        self.answered.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// How many replicas hold the publish with `ticket` (and every earlier
    /// one on this connection), asking Redis at most `wanted` and waiting
    /// at most `timeout` (plus `command_timeout` for the answer itself).
    pub async fn replicas_holding(
        &self,
        ticket: u64,
        wanted: u32,
        timeout: Duration,
        command_timeout: Duration,
    ) -> Result<u64, BackplaneError> {
        let mut last = self.last_wait.lock().await;
        // A WAIT sent after this publish's answer covers it too: replication
        // offsets only grow, so its count holds for every earlier write.
        // Its answer stands either way, so a publish waits for at most two
        // WAITs (the one running when it arrived, and its own).
        if last.0 >= ticket {
            return Ok(last.1);
        }
        let covers = self.answered.load(Ordering::Acquire);
        let mut wait = redis::cmd("WAIT");
        wait.arg(wanted).arg(timeout.as_millis() as u64);
        let mut connection = self.connection.clone();
        let replicas: u64 = match tokio::time::timeout(
            timeout + command_timeout,
            wait.query_async(&mut connection),
        )
        .await
        {
            Ok(Ok(replicas)) => replicas,
            Ok(Err(error)) => {
                return Err(not_replicated(
                    format!("Redis refused WAIT ({})", super::error_summary(&error)),
                    wanted,
                ));
            }
            Err(_) => {
                return Err(not_replicated(
                    "Redis did not answer WAIT in time".to_owned(),
                    wanted,
                ));
            }
        };
        *last = (covers, replicas);
        Ok(replicas)
    }
}

/// The event is in the master (and may have been delivered) but fewer than
/// `wanted` replicas confirmed it: a failover now could lose it.
pub(super) fn not_replicated(reason: String, wanted: u32) -> BackplaneError {
    BackplaneError::NotReplicated {
        reason: format!(
            "{reason}; backplane.redis.replicas_ack asks for {wanted} replica(s) to hold it"
        ),
    }
}
