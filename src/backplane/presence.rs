//! Presence: what each replica holds open right now (for the Mercure
//! protocol, its active subscriptions), listed for the whole cluster.
//!
//! A replica enters and leaves records in its own [`Presence`] (in memory,
//! so entering never waits); [`Backplane::presence_everywhere`] lists the
//! records of every live replica. The memory backplane is the whole
//! cluster already, so its list is the process's own. The Redis backplane
//! writes each replica's records to a hash of that replica's own, with a
//! TTL of [`PRESENCE_TTL`] that the replica keeps refreshing (see
//! `redis::presence`): a replica that leaves cleanly deletes its hash, and
//! one that crashes (or loses Redis) drops out of the list within the TTL,
//! with nobody left to clean up after it.
//!
//! Records are opaque to the backplane: bytes, keyed by a string unique
//! within the replica.
//!
//! [`Backplane::presence_everywhere`]: super::Backplane::presence_everywhere

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Notify;

/// How long a replica's records outlive its last refresh in Redis: the
/// longest a crashed replica's subscriptions stay listed. Short, because
/// the list is read by clients deciding who is online; long against a
/// Redis hiccup, since it is refreshed every [`PRESENCE_REFRESH`].
pub const PRESENCE_TTL: Duration = Duration::from_secs(10);

/// How often a replica refreshes its records' TTL when nothing changes:
/// a third of [`PRESENCE_TTL`], so two refreshes may fail in a row before
/// the records expire.
pub const PRESENCE_REFRESH: Duration = Duration::from_secs(3);

/// One replica's presence records.
pub struct Presence {
    state: Mutex<State>,
    /// Whether the changes are kept for a writer ([`Presence::take_changes`]):
    /// only a backplane that writes them out (Redis) wants them.
    tracks_changes: bool,
    /// Woken on each change, for that writer.
    changed: Notify,
}

#[derive(Default)]
struct State {
    records: HashMap<String, Bytes>,
    /// Keys entered or left since the writer last took the changes.
    changed: HashSet<String>,
}

/// What changed since the writer last looked.
pub struct Changes {
    /// Each changed key with its record now; `None`: it left.
    pub keys: Vec<(String, Option<Bytes>)>,
    /// How many records the replica holds after these changes.
    pub held: usize,
}

impl Presence {
    /// Records for this process only (the memory backplane).
    pub fn local() -> Self {
        Self::new(false)
    }

    /// Records a backplane writes out, taking their changes.
    pub fn written_out() -> Self {
        Self::new(true)
    }

    fn new(tracks_changes: bool) -> Self {
        Self {
            state: Mutex::new(State::default()),
            tracks_changes,
            changed: Notify::new(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds (or replaces) the record `key`.
    pub fn enter(&self, key: String, record: Bytes) {
        let mut state = self.state();
        if self.tracks_changes {
            state.changed.insert(key.clone());
        }
        state.records.insert(key, record);
        drop(state);
        self.changed.notify_one();
    }

    /// Removes the record `key`, if held.
    pub fn leave(&self, key: &str) {
        let mut state = self.state();
        if state.records.remove(key).is_none() {
            return;
        }
        if self.tracks_changes {
            state.changed.insert(key.to_owned());
        }
        drop(state);
        self.changed.notify_one();
    }

    /// This replica's records.
    pub fn records(&self) -> Vec<Bytes> {
        self.state().records.values().cloned().collect()
    }

    /// The changes since the last call, and how many records are held.
    pub fn take_changes(&self) -> Changes {
        let mut state = self.state();
        let changed = std::mem::take(&mut state.changed);
        let keys = changed
            .into_iter()
            .map(|key| {
                let record = state.records.get(&key).cloned();
                (key, record)
            })
            .collect();
        Changes {
            keys,
            held: state.records.len(),
        }
    }

    /// Every record with its key, for a writer that rewrites them all; the
    /// changes so far are covered by it.
    pub fn take_all(&self) -> Vec<(String, Bytes)> {
        let mut state = self.state();
        state.changed.clear();
        state
            .records
            .iter()
            .map(|(key, record)| (key.clone(), record.clone()))
            .collect()
    }

    /// Resolves at the next change (or at once when one came since the
    /// last call).
    pub async fn changed(&self) {
        self.changed.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_enter_and_leave() {
        let presence = Presence::local();
        presence.enter("a".into(), Bytes::from_static(b"1"));
        presence.enter("b".into(), Bytes::from_static(b"2"));
        presence.enter("a".into(), Bytes::from_static(b"3"));
        presence.leave("b");
        presence.leave("never entered");
        assert_eq!(presence.records(), [Bytes::from_static(b"3")]);
    }

    #[test]
    fn a_local_presence_keeps_no_changes() {
        let presence = Presence::local();
        presence.enter("a".into(), Bytes::from_static(b"1"));
        let changes = presence.take_changes();
        assert!(changes.keys.is_empty());
        assert_eq!(changes.held, 1);
    }

    #[test]
    fn changes_are_taken_once_with_each_key_as_it_is_now() {
        let presence = Presence::written_out();
        presence.enter("a".into(), Bytes::from_static(b"1"));
        presence.enter("b".into(), Bytes::from_static(b"2"));
        presence.leave("a");
        let mut changes = presence.take_changes();
        changes.keys.sort();
        assert_eq!(
            changes.keys,
            [
                ("a".to_owned(), None),
                ("b".to_owned(), Some(Bytes::from_static(b"2")))
            ]
        );
        assert_eq!(changes.held, 1);
        assert!(presence.take_changes().keys.is_empty());
        presence.enter("c".into(), Bytes::from_static(b"3"));
        assert_eq!(presence.take_all().len(), 2);
        assert!(
            presence.take_changes().keys.is_empty(),
            "covered by take_all"
        );
    }
}
