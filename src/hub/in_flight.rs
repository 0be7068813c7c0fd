//! Keyed publishes under way on this process: a second request with the
//! same key (and publisher) while the first is unanswered is refused (409)
//! rather than queued behind it, as the Idempotency-Key draft asks. Across
//! replicas no claim is needed for safety: the backplane records the key
//! atomically with the events, so the later of two racing publishes finds
//! the record and is answered from it.

use std::collections::HashSet;
use std::sync::{Mutex, MutexGuard};

use crate::model::Digest256;

#[derive(Default)]
pub(super) struct InFlightKeys(Mutex<HashSet<Digest256>>);

/// A claimed key; released when dropped (answered, failed or cancelled:
/// a publisher that went away must not block its own retry).
pub(super) struct Claim<'a> {
    keys: &'a InFlightKeys,
    record: Digest256,
}

impl InFlightKeys {
    /// Claims `record`, or `None` while another publish holds it.
    pub fn claim(&self, record: Digest256) -> Option<Claim<'_>> {
        // The guard is released before a claim exists: a claim's drop locks.
        let claimed = self.keys().insert(record);
        claimed.then(|| Claim { keys: self, record })
    }

    fn keys(&self) -> MutexGuard<'_, HashSet<Digest256>> {
        // A set of digests is consistent after any panic.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.keys.keys().remove(&self.record);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_held_until_its_claim_is_dropped() {
        let keys = InFlightKeys::default();
        let first = keys.claim([1; 32]).expect("free");
        assert!(keys.claim([1; 32]).is_none());
        let other = keys.claim([2; 32]).expect("another key is free");
        drop(first);
        assert!(keys.claim([1; 32]).is_some());
        drop(other);
    }
}
