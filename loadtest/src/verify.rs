//! Checks every delivery of one subscriber: nothing lost, nothing twice,
//! nothing out of order.
//!
//! "In order" is judged only where the order is known for sure. Publishes of
//! one topic may be in flight on several connections at once, and then the
//! server picks their order. But a publish answered before another was sent
//! must be delivered first. Each payload carries `completed_before`: every
//! publish of its topic numbered below that had been answered when it was
//! sent. So an event that arrives after one whose `completed_before` exceeds
//! its number came out of order. This never flags a legitimate order and, with
//! one connection per topic, catches every swap.

use crate::seq_set::SeqSet;
use serde::{Deserialize, Serialize};

/// What one delivery turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// First delivery of this publish, in order.
    Fresh,
    /// First delivery of this publish, but after one that had to follow it.
    OutOfOrder,
    /// A publish delivered before.
    Duplicate,
}

/// The deliveries of one subscriber so far.
#[derive(Debug, Clone, Default)]
pub struct DeliveryLedger {
    received: SeqSet,
    /// Highest `completed_before` among delivered events: publishes numbered
    /// below it must not arrive any more.
    order_floor: u64,
    pub duplicates: u64,
    pub out_of_order: u64,
}

impl DeliveryLedger {
    pub fn record(&mut self, seq: u64, completed_before: u64) -> Delivery {
        if !self.received.insert(seq) {
            self.duplicates += 1;
            return Delivery::Duplicate;
        }
        let delivery = if seq < self.order_floor {
            self.out_of_order += 1;
            Delivery::OutOfOrder
        } else {
            Delivery::Fresh
        };
        self.order_floor = self.order_floor.max(completed_before);
        delivery
    }

    /// The publishes answered 2xx on the topic that never arrived, in order.
    pub fn missing<'a>(&'a self, acked: &'a SeqSet) -> impl Iterator<Item = u64> + 'a {
        acked.missing_from(&self.received)
    }

    /// Compares the deliveries with the publishes answered 2xx on the topic,
    /// and with those the server said it did not take.
    pub fn audit(&self, acked: &SeqSet, refused: &SeqSet) -> Audit {
        Audit {
            lost: acked.count_missing_from(&self.received),
            duplicated: self.duplicates,
            out_of_order: self.out_of_order,
            unacked_deliveries: self.received.count_missing_from(acked),
            refused_delivered: refused.count() - refused.count_missing_from(&self.received),
        }
    }
}

/// Verification counts, summed over subscribers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Audit {
    /// Publishes answered 2xx that a subscriber of their topic never got.
    pub lost: u64,
    /// Deliveries of a publish the subscriber had already got.
    pub duplicated: u64,
    /// Deliveries that came after one that had to follow them.
    pub out_of_order: u64,
    /// Deliveries of publishes that were not answered 2xx (failed or timed
    /// out on the publisher's side). Reported, not a failure: a timed-out
    /// publish may well have been accepted.
    pub unacked_deliveries: u64,
    /// Deliveries of publishes the server answered as not taken (4xx, 503):
    /// a refused publish must reach nobody.
    #[serde(default)]
    pub refused_delivered: u64,
}

impl Audit {
    pub fn add(&mut self, other: Audit) {
        self.lost += other.lost;
        self.duplicated += other.duplicated;
        self.out_of_order += other.out_of_order;
        self.unacked_deliveries += other.unacked_deliveries;
        self.refused_delivered += other.refused_delivered;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Publishes 0..n answered one after another: each was sent after the
    /// previous was answered.
    fn sequential(seq: u64) -> (u64, u64) {
        (seq, seq)
    }

    #[test]
    fn a_clean_stream_passes() {
        let mut ledger = DeliveryLedger::default();
        for seq in 0..100 {
            let (seq, completed_before) = sequential(seq);
            assert_eq!(ledger.record(seq, completed_before), Delivery::Fresh);
        }
        let acked: SeqSet = (0..100).collect();
        let audit = ledger.audit(&acked, &SeqSet::default());
        assert_eq!(audit, Audit::default());
        assert_eq!(ledger.missing(&acked).count(), 0);
    }

    #[test]
    fn counts_lost_duplicated_and_unacked() {
        let mut ledger = DeliveryLedger::default();
        for seq in [0, 1, 1, 3, 5] {
            ledger.record(seq, seq);
        }
        // 2 and 4 were acked but never came; 5 came but was not acked; 5
        // and 6 were refused, and 5 came all the same.
        let acked: SeqSet = (0..5).collect();
        assert_eq!(ledger.missing(&acked).collect::<Vec<_>>(), [2, 4]);
        let audit = ledger.audit(&acked, &[5, 6].into_iter().collect());
        assert_eq!(
            audit,
            Audit {
                lost: 2,
                duplicated: 1,
                out_of_order: 0,
                unacked_deliveries: 1,
                refused_delivered: 1,
            }
        );
    }

    #[test]
    fn a_swap_of_sequential_publishes_is_out_of_order() {
        let mut ledger = DeliveryLedger::default();
        assert_eq!(ledger.record(0, 0), Delivery::Fresh);
        assert_eq!(ledger.record(2, 2), Delivery::Fresh);
        assert_eq!(ledger.record(1, 1), Delivery::OutOfOrder);
        let audit = ledger.audit(&(0..3).collect(), &SeqSet::default());
        assert_eq!((audit.lost, audit.out_of_order), (0, 1));
    }

    #[test]
    fn concurrent_publishes_may_arrive_in_either_order() {
        // 1 and 2 were in flight together (both sent when only 0 was answered):
        // the server may order them either way.
        let mut ledger = DeliveryLedger::default();
        assert_eq!(ledger.record(0, 0), Delivery::Fresh);
        assert_eq!(ledger.record(2, 1), Delivery::Fresh);
        assert_eq!(ledger.record(1, 1), Delivery::Fresh);
        // 3 was sent after 1 and 2 were answered; 2 arriving after it is a violation.
        let mut ledger = DeliveryLedger::default();
        ledger.record(0, 0);
        ledger.record(1, 1);
        ledger.record(3, 3);
        assert_eq!(ledger.record(2, 1), Delivery::OutOfOrder);
    }

    #[test]
    fn audits_add_up() {
        let mut total = Audit::default();
        total.add(Audit {
            lost: 1,
            duplicated: 2,
            out_of_order: 3,
            unacked_deliveries: 4,
            refused_delivered: 5,
        });
        total.add(Audit {
            lost: 1,
            ..Audit::default()
        });
        assert_eq!(total.lost, 2);
        assert_eq!(total.unacked_deliveries, 4);
        assert_eq!(total.refused_delivered, 5);
    }
}
