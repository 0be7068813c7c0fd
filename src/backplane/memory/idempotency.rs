//! The memory backplane's idempotency records: keyed publishes of the last
//! window, at most `limits.idempotency_keys` of them, oldest dropped first.
//! Held under the backplane's lock, so looking a key up and recording it
//! happen in the same step as the publish (see `backplane::idempotency`).

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use crate::backplane::{IdempotencyLimits, RecordedIds};
use crate::model::{Digest256, Idempotency};

/// What a keyed publish left.
struct Record {
    fingerprint: Digest256,
    ids: RecordedIds,
    expires_at: Instant,
}

/// What a lookup found.
pub(super) enum Found {
    /// Not recorded (or expired): publish, then [`Records::insert`].
    Nothing,
    /// Recorded with the same fingerprint.
    Same(RecordedIds),
    /// Recorded with another fingerprint.
    Other,
}

pub(super) struct Records {
    limits: IdempotencyLimits,
    by_digest: HashMap<Digest256, Record>,
    /// Every record in the order it was made, which is also the order it
    /// expires in (one window for all): expiry and the cap both drop from
    /// the front. An entry whose record was made anew after it expired is
    /// stale, and recognised by its instant.
    order: VecDeque<(Digest256, Instant)>,
}

impl Default for Records {
    fn default() -> Self {
        Self::new(IdempotencyLimits::default())
    }
}

impl Records {
    pub fn new(limits: IdempotencyLimits) -> Self {
        Self {
            limits,
            by_digest: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.by_digest.len()
    }

    pub fn find(&mut self, once: &Idempotency, now: Instant) -> Found {
        self.expire(now);
        match self.by_digest.get(&once.record) {
            Some(record) if record.expires_at > now => {
                if record.fingerprint == once.fingerprint {
                    Found::Same(record.ids)
                } else {
                    Found::Other
                }
            }
            _ => Found::Nothing,
        }
    }

    /// Records a publish just made; the oldest records go while there are
    /// too many (their keys' retries then publish anew).
    pub fn insert(&mut self, once: &Idempotency, ids: RecordedIds, now: Instant) {
        while self.by_digest.len() >= self.limits.max_keys {
            if !self.drop_oldest() {
                break;
            }
        }
        let expires_at = now + self.limits.window;
        self.by_digest.insert(
            once.record,
            Record {
                fingerprint: once.fingerprint,
                ids,
                expires_at,
            },
        );
        self.order.push_back((once.record, expires_at));
    }

    /// Forgets the records whose window is over: called on each keyed
    /// lookup, so each record is dropped once, by the publish after its end
    /// (an idle hub keeps them, within the cap).
    fn expire(&mut self, now: Instant) {
        while self
            .order
            .front()
            .is_some_and(|(_, expires_at)| *expires_at <= now)
        {
            self.drop_oldest();
        }
    }

    /// Drops the oldest entry of the order, and its record unless that was
    /// made anew since; false when there is none.
    fn drop_oldest(&mut self) -> bool {
        let Some((digest, expires_at)) = self.order.pop_front() else {
            return false;
        };
        if self
            .by_digest
            .get(&digest)
            .is_some_and(|record| record.expires_at == expires_at)
        {
            self.by_digest.remove(&digest);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::model::EventId;

    fn once(record: u8, fingerprint: u8) -> Idempotency {
        Idempotency {
            record: [record; 32],
            fingerprint: [fingerprint; 32],
        }
    }

    fn ids(seq: u64) -> RecordedIds {
        RecordedIds {
            first: EventId::new(1, seq),
            count: 1,
        }
    }

    #[test]
    fn a_record_is_found_within_its_window_and_forgotten_after() {
        let window = Duration::from_secs(300);
        let mut records = Records::new(IdempotencyLimits {
            window,
            max_keys: 10,
        });
        let start = Instant::now();
        assert!(matches!(records.find(&once(1, 1), start), Found::Nothing));
        records.insert(&once(1, 1), ids(7), start);
        let later = start + window - Duration::from_millis(1);
        assert!(matches!(records.find(&once(1, 1), later), Found::Same(found) if found == ids(7)));
        assert!(matches!(records.find(&once(1, 2), later), Found::Other));
        assert!(matches!(
            records.find(&once(1, 1), start + window),
            Found::Nothing
        ));
        assert_eq!(records.len(), 0);
        // Recorded anew after its window: the new record stands.
        records.insert(&once(1, 2), ids(9), start + window);
        assert!(
            matches!(records.find(&once(1, 2), start + window), Found::Same(found) if found == ids(9))
        );
    }

    #[test]
    fn at_the_cap_the_oldest_record_goes_first() {
        let mut records = Records::new(IdempotencyLimits {
            window: Duration::from_secs(300),
            max_keys: 3,
        });
        let now = Instant::now();
        for key in 1..=5u8 {
            records.insert(&once(key, key), ids(u64::from(key)), now);
            assert!(records.len() <= 3);
        }
        assert_eq!(records.len(), 3);
        for key in [1, 2] {
            assert!(matches!(records.find(&once(key, key), now), Found::Nothing));
        }
        for key in [3, 4, 5] {
            assert!(matches!(records.find(&once(key, key), now), Found::Same(_)));
        }
    }
}
